//! A user's own model and data kind (`examples/forecaster`) trained through stoke's loop from
//! a binary of its own: its config keys read and checked like stoke's, `--set` on them,
//! exact kill-safe resume, export, and the stock binary refusing its runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{metrics, read_json, repo};

/// The example's binary, which `cargo test` builds beside the test binaries.
fn forecaster() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let binary = profile.join("examples").join("forecaster");
    assert!(binary.is_file(), "{} is not built", binary.display());
    binary
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(forecaster());
    command
        .current_dir(repo())
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir());
    command
}

/// A short run: engines' rows capped, 2 epochs of small batches, frequent checkpoints.
fn sets() -> Vec<String> {
    [
        "run.backend=flex",
        "data.limit=3000",
        "data.workers=1",
        "train.epochs=2",
        "train.batch_size=32",
        "train.log_every=5",
        "train.eval_every=20",
        "train.progress=plain",
        "checkpoint.every_steps=10",
        "model.hidden=16",
    ]
    .map(String::from)
    .to_vec()
}

fn train(run: &Path, sets: &[String]) -> Output {
    let mut train = command(&["train", "examples/forecaster/forecaster.toml", "--run-dir"]);
    train.arg(run);
    for set in sets {
        train.args(["--set", set]);
    }
    train.output().unwrap()
}

fn succeeded(output: Output) -> Output {
    common::succeeded(output)
}

#[test]
fn the_example_trains_from_its_config_through_its_own_main() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = succeeded(train(&run, &sets()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("forecaster model"), "{stderr}");
    // --set on the kind's own key reached the model, and the resolved config has its keys.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("hidden = 16"), "{config}");
    assert!(config.contains("window = 30"), "{config}");
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["model"], "forecaster");
    assert_eq!(summary["data"]["task"], "custom");
    let test = &summary["test"];
    for metric in ["mae", "rmse", "r2"] {
        assert!(test[metric].is_number(), "{metric}: {summary}");
    }
    // Remaining life is forecast better than by its mean: R² above 0 on unseen engines.
    assert!(test["r2"].as_f64().unwrap() > 0.0, "{test}");
    let losses: Vec<f64> = metrics(&run, "train")
        .iter()
        .map(|r| r["loss"].as_f64().unwrap())
        .collect();
    assert!(losses.last() < losses.first(), "{losses:?}");

    // The run exports: safetensors and the model record, with the kind in the manifest.
    let artifact = dir.path().join("model");
    succeeded(
        command(&["export"])
            .arg(&run)
            .arg("--out")
            .arg(&artifact)
            .output()
            .unwrap(),
    );
    let manifest = read_json(&artifact.join("manifest.json"));
    assert_eq!(manifest["model"]["kind"], "forecaster");
    assert!(artifact.join("model.safetensors").is_file());
    // predict cannot read its inputs, and says what to do instead.
    let predict = command(&["predict"]).arg(&artifact).output().unwrap();
    assert_eq!(predict.status.code(), Some(2), "{predict:?}");
    assert!(String::from_utf8_lossy(&predict.stderr).contains("engine-windows"));

    // The stock binary does not know the kind: one line, exit 2.
    let stock = common::stoke().arg("eval").arg(&run).output().unwrap();
    assert_eq!(stock.status.code(), Some(2), "{stock:?}");
    let message = String::from_utf8_lossy(&stock.stderr);
    assert!(
        message.contains("\"forecaster\"") && message.contains("another binary"),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "{message}");
}

#[test]
fn a_misspelt_key_of_the_kinds_config_is_refused_with_its_line_and_the_closest_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("typo.toml");
    let text = std::fs::read_to_string(repo().join("examples/forecaster/forecaster.toml"))
        .unwrap()
        .replace("hidden = 32", "hiden = 32");
    std::fs::write(&config, text).unwrap();
    let output = command(&["check"]).arg(&config).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("typo.toml:14") && stderr.contains("did you mean `hidden`"),
        "{stderr}"
    );
    // On the command line too.
    let output = command(&["check", "examples/forecaster/forecaster.toml"])
        .args(["--set", "data.windw=10"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--set data.windw=10") && stderr.contains("did you mean `window`"),
        "{stderr}"
    );
}

/// Pseudo-random delays from a fixed seed, so the kill moments repeat run to run.
fn delays(seed: u64) -> impl Iterator<Item = Duration> {
    let mut x = seed;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Duration::from_millis(400 + x % 800)
    })
}

fn spawn(args: &[&str], run: &Path, sets: &[String]) -> Child {
    let mut spawned = command(args);
    spawned.arg(run);
    for set in sets {
        spawned.args(["--set", set]);
    }
    // Steps slowed down so that kills land mid-run.
    spawned
        .env("STOKE_FAULT", "slow-steps:20")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The reproducible part of a run's records.
fn losses(run: &Path) -> Vec<(String, u64, f64)> {
    ["train", "valid", "test"]
        .iter()
        .flat_map(|split| metrics(run, split))
        .map(|r| {
            (
                r["split"].as_str().unwrap().to_string(),
                r["step"].as_u64().unwrap(),
                r["loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_example_killed_three_times_and_resumed_ends_as_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    succeeded(train(&reference, &sets()));

    let run = dir.path().join("killed");
    let mut kills = 0;
    let mut delays = delays(0xf0ca);
    let mut child = spawn(
        &["train", "examples/forecaster/forecaster.toml", "--run-dir"],
        &run,
        &sets(),
    );
    while kills < 3 {
        let deadline = Instant::now() + delays.next().unwrap();
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before kill {}",
            kills + 1
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        child = spawn(&["train", "--resume"], &run, &[]);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let (expected, got) = (
        read_json(&reference.join("summary.json")),
        read_json(&run.join("summary.json")),
    );
    assert_eq!(got["weights_sha256"], expected["weights_sha256"]);
    assert_eq!(losses(&run), losses(&reference));
}
