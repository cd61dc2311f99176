//! Records the git commit stoke is built from (`STOKE_GIT_COMMIT`; "unknown" outside a git
//! checkout), which every artifact's lineage names.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=STOKE_GIT_COMMIT={commit}");
    // A commit or checkout changes HEAD or the ref it names. Only paths that exist: cargo
    // reruns a build script on every build while one it watches is missing.
    println!("cargo:rerun-if-changed=build.rs");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
