//! Compiles proto/switchboard/events/v1/*.proto with protox (pure Rust: no protoc on the machine),
//! and keeps the descriptor set for tools that read events by reflection (`events tail`).

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new("../../proto");
    let dir = root.join("switchboard/events/v1");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", dir.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let mut compiler = protox::Compiler::new([root])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("switchboard.events.v1.fds"),
        compiler.encode_file_descriptor_set(),
    )?;
    prost_build::Config::new()
        // JSON of the monitoring stream; `events tail` prints the protobuf JSON mapping instead.
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
