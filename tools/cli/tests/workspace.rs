//! The workspace's folders show which way dependencies run: `crates/` are libraries that depend
//! only on other libraries, a service depends on libraries and never on another service, `tools/`
//! compose services, and `suites/` test them. Checked over `cargo metadata`, dev-dependencies
//! included, so an upward or sideways edge fails here before it reaches review.

use std::collections::BTreeMap;
use std::path::Path;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    Library,
    Service,
    Tool,
    Suite,
}

impl Tier {
    fn of(manifest: &Path, root: &Path) -> Option<Self> {
        let relative = manifest.strip_prefix(root).ok()?;
        match relative.components().next()?.as_os_str().to_str()? {
            "crates" => Some(Self::Library),
            "services" => Some(Self::Service),
            "tools" => Some(Self::Tool),
            "suites" => Some(Self::Suite),
            _ => None,
        }
    }

    /// Whether a package of this tier may depend on a package of `other`'s.
    fn may_depend_on(self, other: Self) -> bool {
        match self {
            Self::Library => other == Self::Library,
            Self::Service => other == Self::Library,
            Self::Tool => matches!(other, Self::Library | Self::Service),
            Self::Suite => matches!(other, Self::Library | Self::Service | Self::Suite),
        }
    }
}

#[test]
fn no_package_depends_upward_or_on_another_service() -> Result {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()?;
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let root = Path::new(
        metadata["workspace_root"]
            .as_str()
            .ok_or("no workspace_root")?,
    );
    let packages = metadata["packages"].as_array().ok_or("no packages")?;

    let mut tiers = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().ok_or("package without a name")?;
        let manifest = Path::new(package["manifest_path"].as_str().ok_or("no manifest")?);
        let tier = Tier::of(manifest, root)
            .ok_or_else(|| format!("{name} ({}) is in no tier folder", manifest.display()))?;
        tiers.insert(name.to_owned(), tier);
    }
    assert!(
        tiers.values().any(|t| *t == Tier::Service) && tiers.values().any(|t| *t == Tier::Library),
        "the workspace lists no services or libraries: {tiers:?}"
    );

    let mut violations = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let tier = tiers[name];
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let Some(target) = dependency["name"].as_str() else {
                continue;
            };
            let Some(&target_tier) = tiers.get(target) else {
                continue; // a registry crate
            };
            if !tier.may_depend_on(target_tier) {
                violations.push(format!(
                    "{name} ({tier:?}) depends on {target} ({target_tier:?})"
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "dependencies against the tiers:\n{}",
        violations.join("\n")
    );
    Ok(())
}

#[test]
fn a_service_depending_on_another_is_refused() {
    assert!(!Tier::Service.may_depend_on(Tier::Service));
    assert!(!Tier::Library.may_depend_on(Tier::Service));
    assert!(!Tier::Library.may_depend_on(Tier::Tool));
    assert!(!Tier::Library.may_depend_on(Tier::Suite));
    assert!(!Tier::Service.may_depend_on(Tier::Tool));
    assert!(!Tier::Tool.may_depend_on(Tier::Suite));
    assert!(Tier::Tool.may_depend_on(Tier::Service));
    assert!(Tier::Suite.may_depend_on(Tier::Service));
}
