//! Kill-safe, exact resume: runs killed at random moments, killed mid-checkpoint, interrupted
//! with Ctrl-C, diverging, or resumed with changed settings.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command as Process};
use std::time::{Duration, Instant};

use common::{metrics, read_json, stoke, train};
use predicates::prelude::*;
use serde_json::Value;

/// A short run with frequent step checkpoints: 360 training images in batches of 30 is 12
/// steps an epoch; 4 epochs; checkpoints every 5 steps, validation every 7.
fn sets() -> Vec<String> {
    [
        "run.backend=flex",
        "data.limit=400",
        "data.workers=1",
        "train.epochs=4",
        "train.batch_size=30",
        "train.log_every=2",
        "train.eval_every=7",
        "train.progress=plain",
        "checkpoint.every_steps=5",
        "checkpoint.keep_last=2",
        "checkpoint.keep_best=2",
    ]
    .map(String::from)
    .to_vec()
}

/// The reproducible part of a run's records: everything but the timings.
fn records(run: &Path) -> Vec<(u64, u64, String, f64, f64, f64)> {
    ["train", "valid", "test"]
        .iter()
        .flat_map(|split| metrics(run, split))
        .map(|r: Value| {
            (
                r["step"].as_u64().unwrap(),
                r["epoch"].as_u64().unwrap(),
                r["split"].as_str().unwrap().to_string(),
                r["loss"].as_f64().unwrap(),
                r["accuracy"].as_f64().unwrap(),
                r["lr"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn spawn(args: &[&str], run: &Path, sets: &[String], fault: &str) -> Child {
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    args.push(run.as_os_str());
    common::spawn_with_fault(&args, sets, fault)
}

/// Waits up to `delay` for the child; kills it (SIGKILL) if it is still running. Returns
/// whether it was killed, else its exit status.
fn kill_after(mut child: Child, delay: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

/// Pseudo-random delays from a fixed seed (xorshift), so the kill points repeat run to run.
fn delays(seed: u64, count: usize) -> Vec<Duration> {
    let mut x = seed;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(200 + x % 600)
        })
        .collect()
}

#[test]
fn runs_killed_at_random_moments_finish_exactly_like_an_uninterrupted_run() {
    killed_runs_finish_like_an_uninterrupted_one(&sets(), 0x5eed);
}

/// The same, streaming from shards: the shard order and shuffle buffer are rebuilt exactly.
#[test]
fn streamed_runs_killed_at_random_moments_finish_exactly_like_an_uninterrupted_run() {
    let data = tempfile::tempdir().unwrap();
    let shards = data.path().join("shards");
    stoke()
        .args(["data", "synth", "--records", "400", "--test-records", "100"])
        .args(["--shard-size", "40KiB", "--out"])
        .arg(&shards)
        .assert()
        .success();
    let mut sets = sets();
    sets.retain(|set| !set.starts_with("data.limit"));
    sets.extend([
        "data.dataset=image-shards".to_string(),
        format!("data.path={}", shards.display()),
        "data.shuffle_buffer=64".into(),
        "data.memory_budget=64MiB".into(),
    ]);
    killed_runs_finish_like_an_uninterrupted_one(&sets, 0x57ea);
}

/// Trains the MNIST MLP with `sets` once uninterrupted and once killed (SIGKILL) at
/// pseudo-random moments from `seed` and resumed each time; the two must agree exactly.
fn killed_runs_finish_like_an_uninterrupted_one(sets: &[String], seed: u64) {
    let reference = tempfile::tempdir().unwrap();
    train("configs/mnist-mlp.toml", sets, reference.path());
    let expected_summary = read_json(&reference.path().join("summary.json"));

    let killed = tempfile::tempdir().unwrap();
    let run = killed.path().join("run");
    // 40 ms per step stretches the 48 steps over a few seconds so that kills land mid-run.
    let slow = "slow-steps:40";
    let mut kills = 0;
    let mut finished = false;
    for (attempt, delay) in delays(seed, 40).into_iter().enumerate() {
        let child = if attempt == 0 {
            spawn(
                &["train", "configs/mnist-mlp.toml", "--run-dir"],
                &run,
                sets,
                slow,
            )
        } else {
            spawn(&["train", "--resume"], &run, &[], slow)
        };
        // Later attempts wait longer, so a slow machine still finishes.
        let delay = delay * (1 + attempt as u32 / 8);
        match kill_after(child, delay) {
            None => {
                kills += 1;
                let latest = fs::read_to_string(run.join("checkpoints/latest")).unwrap_or_default();
                let lines =
                    fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count());
                eprintln!(
                    "kill {kills} after {delay:?}: latest checkpoint {latest:?}, {lines} metric lines"
                );
            }
            Some(status) => {
                assert!(status.success(), "attempt {attempt} failed: {status}");
                finished = true;
                break;
            }
        }
    }
    assert!(finished, "the run never finished");
    assert!(kills >= 5, "only {kills} kills landed");
    eprintln!("the run was killed {kills} times");

    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["steps"], 48);
    assert_eq!(
        summary["weights_sha256"], expected_summary["weights_sha256"],
        "final weights differ"
    );
    assert_eq!(summary["test"], expected_summary["test"]);
    assert_eq!(summary["best"]["name"], expected_summary["best"]["name"]);
    assert_eq!(
        records(&run),
        records(reference.path()),
        "metrics.jsonl differs"
    );
}

/// Starts the short run in `run` with an abort inside the write of checkpoint `step-<step>`.
fn abort_while_writing_checkpoint(run: &Path, step: usize) {
    let child = spawn(
        &["train", "configs/mnist-mlp.toml", "--run-dir"],
        run,
        &sets(),
        &format!("abort-in-checkpoint:{step}"),
    );
    let status = kill_after(child, Duration::from_secs(120)).expect("the fault aborts the run");
    assert!(!status.success());
}

/// Resumes `run`, expecting `says` on stderr, and checks it ends exactly as `reference`.
fn resume_matches(run: &Path, says: &str, reference: &Path) {
    stoke()
        .args(["train", "--resume"])
        .arg(run)
        .assert()
        .success()
        .stderr(predicate::str::contains(says));
    assert_eq!(
        read_json(&run.join("summary.json"))["weights_sha256"],
        read_json(&reference.join("summary.json"))["weights_sha256"]
    );
    assert_eq!(records(run), records(reference), "metrics.jsonl differs");
    assert_eq!(record_files(run), record_files(reference));
}

/// The SHA-256 of the record files of a run's latest checkpoint (model, optimizer,
/// scheduler), by name.
fn record_files(run: &Path) -> Vec<(String, String)> {
    let checkpoints = run.join("checkpoints");
    let latest = fs::read_to_string(checkpoints.join("latest")).unwrap();
    ["model.bpk", "optimizer.bpk", "scheduler.bpk"]
        .iter()
        .map(|file| {
            let path = checkpoints.join(latest.trim()).join(file);
            let sha256 = stoke::files::digest(&fs::read(path).unwrap()).sha256;
            (format!("{latest}/{file}"), sha256)
        })
        .collect()
}

#[test]
fn the_same_config_and_seed_write_the_same_files() {
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train("configs/mnist-mlp.toml", &sets(), first.path());
    train("configs/mnist-mlp.toml", &sets(), second.path());
    // Byte for byte, so that `sha256sum` shows what resume and reproducibility promise.
    assert_eq!(record_files(first.path()), record_files(second.path()));
    let exported = |run: &Path| {
        let out = run.join("artifact");
        stoke()
            .arg("export")
            .arg(run)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let weights = ["model.safetensors", "model.bpk"]
            .map(|file| stoke::files::digest(&fs::read(out.join(file)).unwrap()).sha256);
        // The drift reference, but for the sentence naming the run it was made from.
        let mut profile = read_json(&out.join("profile.json"));
        profile["source"] = Value::Null;
        (weights, profile)
    };
    assert_eq!(
        exported(first.path()),
        exported(second.path()),
        "the artifacts differ"
    );
}

#[test]
fn a_kill_while_writing_a_checkpoint_leaves_the_previous_one_loadable() {
    let reference = tempfile::tempdir().unwrap();
    train("configs/mnist-mlp.toml", &sets(), reference.path());

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    abort_while_writing_checkpoint(&run, 15);
    let checkpoints = run.join("checkpoints");
    assert!(
        checkpoints.join(".tmp-step-15").is_dir(),
        "the write was not interrupted"
    );
    assert!(!checkpoints.join("step-15").exists());
    // Step 12 ended the first epoch, the last checkpoint before the interrupted one.
    assert_eq!(
        fs::read_to_string(checkpoints.join("latest")).unwrap(),
        "step-12"
    );
    resume_matches(&run, "from checkpoint step-12", reference.path());
    assert!(
        !checkpoints.join(".tmp-step-15").exists(),
        "the leftover was not cleaned up"
    );

    // Killed in its first checkpoint, a run has nothing to continue from: resume starts it
    // again from step 0, replacing what it had logged.
    let run = dir.path().join("first");
    abort_while_writing_checkpoint(&run, 5);
    assert!(!run.join("checkpoints/latest").exists());
    assert_eq!(metrics(&run, "train").len(), 2, "steps 2 and 4 were logged");
    resume_matches(
        &run,
        "has no checkpoint yet: starting it again from step 0 (its 2 metric records are replaced)",
        reference.path(),
    );
    assert!(
        !run.join("checkpoints/.tmp-step-5").exists(),
        "the leftover was not cleaned up"
    );
}

#[test]
fn a_corrupt_checkpoint_is_detected_and_resume_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut partial = sets();
    partial.push("train.max_steps=20".into());
    train("configs/mnist-mlp.toml", &partial, &run);
    let checkpoints = run.join("checkpoints");
    let latest = fs::read_to_string(checkpoints.join("latest")).unwrap();
    assert_eq!(latest, "step-20");
    // Truncate the newest checkpoint's weights, as a full disk or a bad copy would.
    let model = checkpoints.join("step-20/model.bpk");
    let bytes = fs::read(&model).unwrap();
    fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();

    stoke()
        .args(["eval"])
        .arg(&run)
        .args(["--checkpoint", "last"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "step-20 is damaged: model.bpk does not match its checksum",
        ));
    stoke()
        .args(["train", "--resume"])
        .arg(&run)
        .args(["--set", "train.max_steps=25"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: skipping checkpoint step-20",
        ))
        .stderr(predicate::str::contains("from checkpoint step-15"));
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = spawn(
        &["train", "configs/mnist-mlp.toml", "--run-dir"],
        &run,
        &sets(),
        "slow-steps:50",
    );
    // Wait until training is under way, then interrupt once.
    let metrics_file = run.join("metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::read_to_string(&metrics_file).map_or(0, |t| t.lines().count()) < 3 {
        assert!(Instant::now() < deadline, "training did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(
        Process::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "continue with: stoke train --resume {}",
            run.display()
        )),
        "{stderr}"
    );
    let latest = fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let step: usize = latest.strip_prefix("step-").unwrap().parse().unwrap();
    assert!(step > 0 && step < 48, "{latest}");
    assert!(!run.join("summary.json").exists());

    // Resuming finishes the run exactly as if it had never stopped.
    stoke()
        .args(["train", "--resume"])
        .arg(&run)
        .assert()
        .success();
    let reference = tempfile::tempdir().unwrap();
    train("configs/mnist-mlp.toml", &sets(), reference.path());
    assert_eq!(records(&run), records(reference.path()));
    assert_eq!(
        read_json(&run.join("summary.json"))["weights_sha256"],
        read_json(&reference.path().join("summary.json"))["weights_sha256"]
    );
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut absurd = sets();
    absurd.extend(
        [
            "optimizer.lr=1e12",
            "scheduler.kind=constant",
            "checkpoint.every_steps=1",
            "train.log_every=1",
        ]
        .map(String::from),
    );
    let mut command = stoke();
    command
        .args(["train", "configs/mnist-mlp.toml", "--run-dir"])
        .arg(&run);
    for set in &absurd {
        command.args(["--set", set]);
    }
    command
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "the training loss became NaN by step 2",
        ))
        .stderr(predicate::str::contains(
            "the run stopped without saving that state",
        ))
        .stderr(predicate::str::contains(
            "the last good checkpoint is step-1",
        ))
        .stderr(predicate::str::contains("panicked").not());
    // Checkpoints are saved every step, but none of the diverged state.
    let checkpoints = run.join("checkpoints");
    assert!(checkpoints.join("step-1").is_dir());
    assert!(!checkpoints.join("step-2").exists());
    for entry in fs::read_dir(&checkpoints).unwrap().flatten() {
        let state = entry.path().join("state.json");
        if state.is_file() {
            let state = read_json(&state);
            assert!(state["interval"]["loss_sum"].as_f64().unwrap().is_finite());
        }
    }
    assert!(
        metrics(&run, "train")
            .iter()
            .all(|r| r["loss"].as_f64().is_some())
    );
}

#[test]
fn a_failed_checkpoint_write_stops_cleanly_and_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let child = spawn(
        &["train", "configs/mnist-mlp.toml", "--run-dir"],
        &run,
        &sets(),
        "fail-checkpoint-write:10",
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write checkpoint step-10"),
        "{stderr}"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains("the last complete checkpoint is step-5"),
        "{stderr}"
    );
    let checkpoints = run.join("checkpoints");
    assert!(!checkpoints.join(".tmp-step-10").exists());
    assert_eq!(
        fs::read_to_string(checkpoints.join("latest")).unwrap(),
        "step-5"
    );
    stoke()
        .args(["train", "--resume"])
        .arg(&run)
        .assert()
        .success();
}

#[test]
fn resume_refuses_a_changed_model_or_dataset_and_names_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut partial = sets();
    partial.push("train.max_steps=10".into());
    train("configs/mnist-mlp.toml", &partial, &run);
    stoke()
        .args(["train", "--resume"])
        .arg(&run)
        .args([
            "--set",
            "model.hidden=[32]",
            "--set",
            "data.valid_fraction=0.2",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot resume"))
        .stderr(predicate::str::contains(
            "model.hidden: [512, 256] in the run, [32] now",
        ))
        .stderr(predicate::str::contains(
            "data.valid_fraction: 0.1 in the run, 0.2 now",
        ));
}

#[test]
fn resume_checks_against_the_checkpoint_not_an_edited_config_toml() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut partial = sets();
    partial.push("train.max_steps=10".into());
    train("configs/mnist-mlp.toml", &partial, &run);
    // Keys a resume may not change, edited by hand in the run's own config.toml.
    let config = fs::read_to_string(run.join("config.toml")).unwrap();
    let edited = config
        .replace("seed = 42", "seed = 7")
        .replace("lr = 0.001", "lr = 0.5");
    assert_ne!(config, edited, "the config has the keys this test edits");
    fs::write(run.join("config.toml"), edited).unwrap();
    stoke()
        .args(["train", "--resume"])
        .arg(&run)
        .args(["--set", "train.max_steps=12"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot resume"))
        .stderr(predicate::str::contains("run.seed: 42 in the run, 7 now"))
        .stderr(predicate::str::contains(
            "optimizer.lr: 0.001 in the run, 0.5 now",
        ));
}

#[test]
fn resume_with_every_checkpoint_damaged_says_how_each_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut partial = sets();
    partial.push("train.max_steps=10".into());
    train("configs/mnist-mlp.toml", &partial, &run);
    let checkpoints = run.join("checkpoints");
    for name in ["step-5", "step-10"] {
        let model = checkpoints.join(name).join("model.bpk");
        let bytes = fs::read(&model).unwrap();
        fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    }
    stoke()
        .args(["train", "--resume"])
        .arg(&run)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("every checkpoint in"))
        .stderr(predicate::str::contains("step-10: checkpoint"))
        .stderr(predicate::str::contains(
            "step-5 is damaged: model.bpk does not match its checksum",
        ))
        .stderr(predicate::str::contains("any complete checkpoint").not());
}

#[test]
fn a_finished_run_can_be_extended_with_more_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut short = sets();
    short.push("train.epochs=2".into());
    train("configs/mnist-mlp.toml", &short, &run);
    assert_eq!(read_json(&run.join("summary.json"))["epochs_completed"], 2);
    let tests_before = metrics(&run, "test").len();
    assert_eq!(tests_before, 1);

    stoke()
        .args(["train", "--resume"])
        .arg(&run)
        .args(["--set", "train.epochs=3"])
        .assert()
        .success()
        .stderr(predicate::str::contains("from checkpoint step-24"));
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["epochs_completed"], 3);
    assert_eq!(summary["steps"], 36);
    // The first run's test record is replaced, not duplicated; steps continue without gaps.
    assert_eq!(metrics(&run, "test").len(), 1);
    let steps: Vec<u64> = metrics(&run, "train")
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=18).map(|i| i * 2).collect::<Vec<u64>>());
    assert!(
        fs::read_to_string(run.join("config.toml"))
            .unwrap()
            .contains("epochs = 3")
    );
}

#[test]
fn early_stopping_stops_and_its_state_survives_resume() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // min_delta = 1 can never be met: the run stops after `patience` validations.
    let mut early = sets();
    early.extend(
        [
            "train.epochs=10",
            "train.early_stopping.monitor=valid.loss",
            "train.early_stopping.patience=3",
            "train.early_stopping.min_delta=1.0",
            "train.max_steps=14",
        ]
        .map(String::from),
    );
    train("configs/mnist-mlp.toml", &early, &run);
    // Validations at steps 7, 12 (epoch end) and 14: the first sets the best, one is stale.
    let state = read_json(&run.join("checkpoints/step-14/state.json"));
    assert_eq!(state["early_stopping"]["stale"], 2);

    stoke()
        .args(["train", "--resume"])
        .arg(&run)
        .args(["--set", "train.max_steps=100"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "early stopping: valid.loss has not improved in 3 validations",
        ));
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["stopped"], "early_stopping");
    // The third stale validation comes at step 21 (every 7 steps).
    assert_eq!(summary["steps"], 21);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn rewinding_to_a_mid_epoch_checkpoint_is_exact_on_ndarray_and_with_batch_norm() {
    let small_resnet = ["model.width=4", "scheduler.warmup_steps=3"].map(String::from);
    for (config, backend, extra) in [
        ("configs/mnist-mlp.toml", "ndarray", &[][..]),
        ("configs/mnist-resnet.toml", "flex", &small_resnet[..]),
    ] {
        let mut sets = sets();
        sets.extend([
            format!("run.backend={backend}"),
            "train.epochs=2".into(),
            "checkpoint.keep_last=100".into(),
        ]);
        sets.extend(extra.iter().cloned());
        let reference = tempfile::tempdir().unwrap();
        train(config, &sets, reference.path());
        let rewound = tempfile::tempdir().unwrap();
        copy_dir(reference.path(), rewound.path());
        stoke()
            .args(["train", "--resume"])
            .arg(rewound.path())
            .args(["--checkpoint", "step-15"])
            .assert()
            .success()
            .stderr(predicate::str::contains(
                "from checkpoint step-15 (epoch 2, batch 3 of 12",
            ))
            .stderr(predicate::str::contains(
                "removed the later checkpoints step-20, step-24",
            ));
        let (a, b) = (
            read_json(&reference.path().join("summary.json")),
            read_json(&rewound.path().join("summary.json")),
        );
        assert_eq!(
            a["weights_sha256"], b["weights_sha256"],
            "{config} on {backend}"
        );
        assert_eq!(
            records(reference.path()),
            records(rewound.path()),
            "{config} on {backend}"
        );
    }
}

#[test]
fn a_rewound_transformer_run_with_dropout_matches_the_uninterrupted_one() {
    // Attention, residual and embedding dropout, layer norm and GELU on stoke's kernels.
    let sets: Vec<String> = [
        "run.backend=flex",
        "data.limit=300",
        "data.workers=1",
        "data.text.context_length=16",
        "data.text.stride=8",
        "model.d_model=16",
        "model.n_layers=2",
        "model.n_heads=2",
        "model.d_ff=32",
        "model.dropout=0.2",
        "model.activation=gelu",
        "train.batch_size=4",
        "train.eval_batch_size=16",
        "train.max_steps=12",
        "train.log_every=2",
        "train.eval_every=6",
        "train.progress=plain",
        "checkpoint.every_steps=4",
        "checkpoint.keep_last=100",
    ]
    .map(String::from)
    .to_vec();
    let reference = tempfile::tempdir().unwrap();
    train("configs/mobydick-char-lm.toml", &sets, reference.path());
    let rewound = tempfile::tempdir().unwrap();
    copy_dir(reference.path(), rewound.path());
    stoke()
        .args(["train", "--resume"])
        .arg(rewound.path())
        .args(["--checkpoint", "step-4"])
        .assert()
        .success();
    let (a, b) = (
        read_json(&reference.path().join("summary.json")),
        read_json(&rewound.path().join("summary.json")),
    );
    assert_eq!(a["weights_sha256"], b["weights_sha256"]);
    assert_eq!(records(reference.path()), records(rewound.path()));
}
