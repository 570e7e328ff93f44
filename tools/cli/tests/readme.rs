//! The configuration reference (`docs/configuration.md`) stays true: every environment variable
//! the code reads is in its table, and every variable in the table is read somewhere. And the
//! README keeps its two commands.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != "target" && n != "tests")
            {
                rust_sources(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            // Build scripts read cargo's variables (`OUT_DIR`), not the services' configuration.
            && path.file_name().is_some_and(|n| n != "build.rs")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Upper-case quoted names passed to the config readers (`env.or("PORT", …)`, `first_of(&[…])`,
/// clap's `env = "…"`, `std::env::var("…")`).
fn variables_read() -> Result<BTreeSet<String>> {
    let mut files = Vec::new();
    for dir in ["crates", "services", "tools", "suites"] {
        let path = root().join(dir);
        if path.exists() {
            rust_sources(&path, &mut files)?;
        }
    }
    let readers = [
        ".or(",
        ".required(",
        ".optional(",
        ".flag(",
        ".duration(",
        "env = ",
        "env::var(",
    ];
    let mut found = BTreeSet::new();
    for file in files {
        let full = std::fs::read_to_string(&file)?;
        // Unit-test modules (at the end of a file, by convention) read made-up variables.
        let text = full.split("#[cfg(test)]").next().unwrap_or_default();
        for reader in readers {
            for (i, _) in text.match_indices(reader) {
                // rustfmt may break the line after the parenthesis.
                let Some(rest) = text[i + reader.len()..].trim_start().strip_prefix('"') else {
                    continue;
                };
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                if name.len() > 2 && rest[name.len()..].starts_with('"') {
                    found.insert(name);
                }
            }
        }
        for (i, _) in text.match_indices("first_of(") {
            // rustfmt may break the line after the parenthesis.
            let Some(rest) = text[i + "first_of(".len()..]
                .trim_start()
                .strip_prefix("&[")
            else {
                continue;
            };
            let list = &rest[..rest.find(']').unwrap_or(0)];
            for name in list.split('"').skip(1).step_by(2) {
                found.insert(name.to_owned());
            }
        }
    }
    Ok(found)
}

/// Names in backticks in the first column of the configuration table (its rows are the page's
/// only lines starting with ``| ` ``).
fn variables_documented(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let first_cell = line.split('|').nth(1).unwrap_or_default();
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn configuration_table_matches_the_code() -> Result {
    let page = std::fs::read_to_string(root().join("docs/configuration.md"))?;
    let read = variables_read()?;
    let documented = variables_documented(&page);
    assert!(
        read.contains("DATABASE_URL") && read.contains("PORT"),
        "scanner found {read:?}"
    );
    let undocumented: Vec<_> = read.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "read by the code but missing from the table of docs/configuration.md: {undocumented:?}"
    );
    let unused: Vec<_> = documented.difference(&read).collect();
    assert!(
        unused.is_empty(),
        "in the table of docs/configuration.md but read nowhere: {unused:?}"
    );
    Ok(())
}

#[test]
fn quick_start_has_the_two_commands() -> Result {
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    assert!(readme.contains("cargo run -p switchboard -- up"));
    assert!(readme.contains("cargo test --workspace"));
    let ci = std::fs::read_to_string(root().join(".ci/run"))?;
    assert!(
        ci.contains("cargo test --workspace"),
        ".ci/run runs the README's test command"
    );
    Ok(())
}
