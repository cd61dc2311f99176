//! The README's two commands share one build: `cargo run --release` compiles burn's tree once,
//! and `cargo test --release` (and the `distributed` test build) reuse every artifact of it,
//! compiling only stoke's own targets. cargo compiles a crate again whenever a build turns on
//! a feature another build did not, and a dev-dependency can do that deep under burn (ureq 2
//! turned on `icu_properties/compiled_data` through `url`, and the test build took 20 more
//! minutes). This compares, crate by crate, the features of the normal build with those of
//! the test builds, as `cargo tree` resolves them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each crate of a dependency graph (`name vX.Y.Z`) with the feature sets it is built with
/// (one for the target, another where a build script or proc macro needs it differently).
type Features = BTreeMap<String, BTreeSet<String>>;

fn resolved_features(edges: &str, cargo_features: &[&str]) -> Features {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree", "--locked", "--prefix", "none", "-f", "{p}|{f}", "-e", edges,
        ])
        .args(cargo_features)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_tree(&String::from_utf8(output.stdout).unwrap())
}

fn parse_tree(text: &str) -> Features {
    let mut features = Features::new();
    for line in text.lines() {
        let line = line.trim_end_matches(" (*)");
        let Some((package, enabled)) = line.rsplit_once('|') else {
            continue;
        };
        // Only a crate's name and version: stoke's own line carries its path, and its
        // `distributed` feature is what the distributed build is.
        let package = package.split(" (").next().unwrap().to_string();
        features
            .entry(package)
            .or_default()
            .insert(enabled.to_string());
    }
    features
}

/// Each difference of `other`'s features from `normal`'s for the crates of the normal build,
/// as one line naming the crate and the feature.
fn differences(normal: &Features, other: &Features) -> Vec<String> {
    let mut found = Vec::new();
    for (package, sets) in normal {
        if package.starts_with("stoke ") {
            continue;
        }
        let Some(other_sets) = other.get(package) else {
            found.push(format!("{package} is not in the graph"));
            continue;
        };
        if sets == other_sets {
            continue;
        }
        let flatten = |sets: &BTreeSet<String>| -> BTreeSet<String> {
            sets.iter()
                .flat_map(|set| set.split(',').filter(|f| !f.is_empty()))
                .map(str::to_string)
                .collect()
        };
        let (mine, theirs) = (flatten(sets), flatten(other_sets));
        let added: Vec<_> = theirs.difference(&mine).cloned().collect();
        let removed: Vec<_> = mine.difference(&theirs).cloned().collect();
        found.push(format!(
            "{package}: features {sets:?} in the normal build, {other_sets:?} here \
             (turned on: {added:?}; off: {removed:?})"
        ));
    }
    found
}

#[test]
fn the_test_builds_enable_no_feature_the_normal_build_does_not() {
    let normal = resolved_features("normal,build", &[]);
    assert!(normal.keys().any(|p| p.starts_with("burn ")), "{normal:?}");
    for (build, features) in [
        ("cargo test --release", &[][..]),
        (
            "cargo test --release --features distributed",
            &["--features", "distributed"][..],
        ),
    ] {
        let other = resolved_features("normal,build,dev", features);
        let found = differences(&normal, &other);
        assert!(
            found.is_empty(),
            "`{build}` resolves these crates of `cargo run --release` with other features, \
             so it compiles them and everything above them again:\n  {}",
            found.join("\n  ")
        );
    }
}

#[test]
fn a_planted_difference_is_named_by_crate_and_feature() {
    let normal = parse_tree("burn v0.22.1|std\nicu_properties v2.4.0|\nstoke v0.1.0 (/x)|\n");
    let test = parse_tree(
        "burn v0.22.1|std\nicu_properties v2.4.0|compiled_data (*)\nstoke v0.1.0 (/x)|distributed\n",
    );
    let found = differences(&normal, &test);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("icu_properties v2.4.0") && found[0].contains("[\"compiled_data\"]"),
        "{found:?}"
    );
}
