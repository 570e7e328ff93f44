//! The documentation a newcomer reads (README.md, docs/**/*.md, and the README of deploy/ and
//! services/) stays readable and navigable: every relative link resolves to a file of the
//! repository (and, for a markdown page, to one of its headings), no link leaves the repository,
//! the benchmark table exists once, and the pages use none of the project's internal planning
//! vocabulary (seed documents, issue numbers).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn markdown_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            markdown_under(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    Ok(())
}

/// The pages checked, relative to the repository root.
fn pages() -> Result<Vec<PathBuf>> {
    let mut pages = Vec::new();
    markdown_under(&root().join("docs"), &mut pages)?;
    for page in ["README.md", "deploy/README.md", "services/README.md"] {
        if root().join(page).exists() {
            pages.push(root().join(page));
        }
    }
    let mut relative = Vec::new();
    for page in pages {
        relative.push(page.strip_prefix(root())?.to_path_buf());
    }
    relative.sort();
    Ok(relative)
}

/// The text outside fenced code blocks, line by line (links and words in code are code).
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push((n + 1, line));
        }
    }
    lines
}

/// `(line number, target)` of the inline links `[text](target)` and images of `text`, outside
/// fenced blocks and inline code (which may span lines).
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut joined = String::new();
    for (n, line) in prose(text) {
        lines.push((joined.len(), n));
        joined.push_str(line);
        joined.push('\n');
    }
    let line_at = |offset: usize| {
        lines
            .iter()
            .take_while(|(start, _)| *start <= offset)
            .last()
            .map_or(0, |(_, n)| *n)
    };
    let mut targets = Vec::new();
    let mut offset = 0;
    for (i, part) in joined.split('`').enumerate() {
        if i % 2 == 0 {
            let mut rest = part;
            let mut at = offset;
            while let Some(found) = rest.find("](") {
                let after = &rest[found + 2..];
                let Some(end) = after.find(')') else { break };
                // `[text](url "title")`
                let target = after[..end].split_whitespace().next().unwrap_or_default();
                targets.push((
                    line_at(at + found),
                    target.trim_matches(['<', '>']).to_owned(),
                ));
                at += found + 2 + end;
                rest = &after[end..];
            }
        }
        offset += part.len() + 1;
    }
    targets
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(heading.trim_start_matches('#'));
        // GitHub numbers repeated headings: `x`, `x-1`, `x-2`…
        let mut anchor = base.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// `base/../x` → `x`; `None` when the path climbs above the repository root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// What is wrong with each relative link of `page` (repository-relative path).
fn broken_links(page: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = page.parent().unwrap_or(Path::new(""));
    for (n, target) in link_targets(text) {
        let at = format!("{}:{n}: {target}", page.display());
        if target.is_empty() {
            problems.push(format!("{at}: empty link"));
            continue;
        }
        if target.contains("://") || target.starts_with("mailto:") {
            continue; // external address: not this test's business
        }
        if target.starts_with('/') {
            problems.push(format!("{at}: absolute path, use a relative link"));
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.as_str(), None),
        };
        if file.is_empty() {
            let anchor = anchor.unwrap_or_default();
            if !anchors(text).contains(anchor) {
                problems.push(format!("{at}: no heading #{anchor} on this page"));
            }
            continue;
        }
        let Some(resolved) = normalize(&dir.join(file)) else {
            problems.push(format!("{at}: points outside the repository"));
            continue;
        };
        let full = root().join(&resolved);
        if !full.exists() {
            problems.push(format!("{at}: {} does not exist", resolved.display()));
            continue;
        }
        if let (Some(anchor), true) = (anchor, full.extension().is_some_and(|e| e == "md")) {
            let target_text = std::fs::read_to_string(&full).unwrap_or_default();
            if !anchors(&target_text).contains(anchor) {
                problems.push(format!(
                    "{at}: no heading #{anchor} in {}",
                    resolved.display()
                ));
            }
        }
    }
    problems
}

/// Words of the project's own planning that mean nothing to a reader: the seed documents the
/// services were specified from ("seed 004", "the seed's") and issue numbers. The `--seed` flag of
/// `switchboard up`, the `switchboard seed` command and the `SHUFFLE_SEED` variable are real
/// names and allowed.
fn jargon(page: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let lower = line.to_lowercase();
        let bytes = lower.as_bytes();
        for (i, _) in lower.match_indices("seed") {
            let word_start =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if !word_start {
                continue; // `shuffle_seed`, `proceed`…
            }
            let before = &lower[..i];
            if before.ends_with("--") || before.ends_with("switchboard ") {
                continue;
            }
            problems.push(format!("{}:{}: \"seed\": {line}", page.display(), n + 1));
        }
        for (i, _) in lower.match_indices("issue") {
            let after = lower[i + "issue".len()..].trim_start_matches([' ', '#']);
            if after.starts_with(|c: char| c.is_ascii_digit()) {
                problems.push(format!(
                    "{}:{}: issue number: {line}",
                    page.display(),
                    n + 1
                ));
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_resolves_inside_the_repository() -> Result {
    let pages = pages()?;
    assert!(
        pages.iter().any(|p| p == Path::new("README.md"))
            && pages.iter().any(|p| p == Path::new("docs/architecture.md")),
        "pages found: {pages:?}"
    );
    let mut problems = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(root().join(page))?;
        problems.extend(broken_links(page, &text));
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
    Ok(())
}

#[test]
fn the_pages_use_no_internal_planning_vocabulary() -> Result {
    let mut problems = Vec::new();
    for page in pages()? {
        let text = std::fs::read_to_string(root().join(&page))?;
        problems.extend(jargon(&page, &text));
    }
    assert!(
        problems.is_empty(),
        "internal vocabulary:\n{}",
        problems.join("\n")
    );
    Ok(())
}

#[test]
fn the_benchmark_table_exists_once_in_docs_performance() -> Result {
    let mut holders = Vec::new();
    for page in pages()? {
        let text = std::fs::read_to_string(root().join(&page))?;
        let count = text.matches("<!-- bench:start -->").count();
        for _ in 0..count {
            holders.push(page.clone());
        }
    }
    assert_eq!(holders, [PathBuf::from("docs/performance.md")]);
    Ok(())
}

#[test]
fn the_readme_stays_short() -> Result {
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    let lines = readme.lines().count();
    assert!(
        lines <= 220,
        "README.md has {lines} lines: move details into docs/"
    );
    Ok(())
}

#[test]
fn the_checks_catch_what_they_are_for() {
    let page = Path::new("docs/x.md");
    let bad = "See [design](../../shared/ARCHITECTURE.md), [gone](missing.md), \
               [up](../README.md#no-such-heading), [abs](/etc/passwd), [here](#nowhere), `x\ny` [after a \
               code span across lines](gone.md).";
    assert_eq!(
        broken_links(page, bad).len(),
        6,
        "{:?}",
        broken_links(page, bad)
    );
    let good = "See [readme](../README.md#two-commands), [self](#x), `[code](nowhere.md)`, \
                [web](https://example.com/a), `a code\nspan` [two lines](../README.md).\n\
                ```\n[in a block](nowhere.md)\n```";
    assert!(
        broken_links(page, &format!("# X\n{good}")).is_empty(),
        "{:?}",
        broken_links(page, &format!("# X\n{good}"))
    );
    let words = "Built from seed 004.\nThe seed's paths.\nSee issue 9 and issue #12.\n\
                 Run `switchboard up --seed`, then `switchboard seed`; SHUFFLE_SEED=1 replays.";
    let found = jargon(page, words);
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(
        slug("Validation (`deploy/validate`)"),
        "validation-deployvalidate"
    );
    assert_eq!(slug("1. Publish appointments"), "1-publish-appointments");
}
