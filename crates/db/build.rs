//! Rebuild when a migration is added or edited: they are embedded in the binary. Also exports
//! `SB_MIGRATIONS_DIGEST`, a digest of exactly the migrations embedded in this build, so that a
//! cache keyed by it (the test template database) can never describe a different set.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=../../migrations");
    let dir = Path::new("../../migrations");
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.strip_prefix(dir).unwrap_or(&file).hash(&mut hasher);
        std::fs::read(&file)?.hash(&mut hasher);
    }
    println!(
        "cargo:rustc-env=SB_MIGRATIONS_DIGEST={:016x}",
        hasher.finish()
    );
    Ok(())
}
