//! Every committed fuzz input (`fuzz/corpus/<target>/` and the minimized crashes in
//! `fuzz/regressions/<target>/`) through its target, on the stable toolchain: what libFuzzer
//! once found stays fixed.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_corpus_file_passes_its_target() {
    let mut failures = Vec::new();
    for (name, target) in sb_security::TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name}/ has no seeds: commit at least one"
        );
        let regressions = files(&fuzz_dir().join("regressions").join(name));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that fail their target: {failures:#?}"
    );
}

#[test]
fn every_fuzz_target_has_a_body_here() {
    let targets = files(&fuzz_dir().join("fuzz_targets"));
    let mut names: Vec<String> = targets
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut ours: Vec<String> = sb_security::TARGETS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    ours.sort();
    assert_eq!(
        names, ours,
        "fuzz/fuzz_targets/ and sb_security::TARGETS differ"
    );
}
