//! End-to-end training through the binary on real MNIST subsets: every model family on both
//! CPU backends, reproducibility, learning, `eval` and `bench`.

mod common;

use common::{losses, metrics, read_json, stdout_of, stoke, tiny, train};
use predicates::prelude::*;

fn with(mut sets: Vec<String>, extra: &[&str]) -> Vec<String> {
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets
}

/// Small widths keep the convolutional families fast on ndarray, whose convolution is a loop.
const SMALL_CNN: &[&str] = &[
    "model.channels=[4, 8]",
    "model.hidden=16",
    "train.batch_size=16",
];
const SMALL_RESNET: &[&str] = &[
    "model.width=4",
    "train.batch_size=16",
    "scheduler.warmup_steps=2",
];

#[test]
fn every_model_family_trains_on_both_cpu_backends() {
    for backend in ["flex", "ndarray"] {
        for (config, extra) in [
            ("configs/mnist-mlp.toml", &[][..]),
            ("configs/mnist-cnn.toml", SMALL_CNN),
            ("configs/mnist-resnet.toml", SMALL_RESNET),
        ] {
            let run = tempfile::tempdir().unwrap();
            let sets = with(tiny(200, 6), extra);
            let sets = with(
                sets,
                &[&format!("run.backend={backend}"), "train.log_every=2"],
            );
            let stderr = train(config, &sets, run.path());
            assert!(
                stderr.contains(&format!("backend: {backend}, as configured")),
                "{stderr}"
            );

            let summary = read_json(&run.path().join("summary.json"));
            assert_eq!(summary["backend"], backend);
            assert_eq!(summary["steps"], 6);
            assert_eq!(summary["stopped"], "max_steps");
            let test = &summary["test"];
            assert_eq!(test["samples"], 200, "{summary}");
            assert!((0.0..=1.0).contains(&test["accuracy"].as_f64().unwrap()));
            assert!(run.path().join("config.toml").is_file());
            assert!(run.path().join("checkpoints/step-6/model.bpk").is_file());
            assert_eq!(
                std::fs::read_to_string(run.path().join("checkpoints/latest")).unwrap(),
                "step-6"
            );
            let train_losses = losses(run.path(), "train");
            assert_eq!(train_losses.len(), 3, "{config} on {backend}");
            assert!(train_losses.iter().all(|loss| loss.is_finite()));
        }
    }
}

#[test]
fn loss_decreases_over_a_few_hundred_steps_on_real_mnist() {
    let run = tempfile::tempdir().unwrap();
    let sets = with(
        tiny(6000, 300),
        &[
            "run.backend=flex",
            "train.batch_size=64",
            "train.log_every=25",
        ],
    );
    train("configs/mnist-mlp.toml", &sets, run.path());
    let train_losses = losses(run.path(), "train");
    let (first, last) = (train_losses[0], train_losses[train_losses.len() - 1]);
    assert!(first > 0.5, "{train_losses:?}");
    assert!(last < 0.35 * first, "{train_losses:?}");
    let summary = read_json(&run.path().join("summary.json"));
    assert!(
        summary["test"]["accuracy"].as_f64().unwrap() > 0.85,
        "{summary}"
    );
}

#[test]
fn same_seed_gives_identical_metrics_on_each_cpu_backend() {
    for backend in ["flex", "ndarray"] {
        // Dropout on: the per-step device seed must make its masks repeat too.
        let sets = with(
            tiny(300, 8),
            &[
                &format!("run.backend={backend}"),
                "train.log_every=1",
                "train.batch_size=32",
            ],
        );
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        train("configs/mnist-mlp.toml", &sets, first.path());
        train("configs/mnist-mlp.toml", &sets, second.path());
        let (a, b) = (
            losses(first.path(), "train"),
            losses(second.path(), "train"),
        );
        assert_eq!(a.len(), 8);
        assert_eq!(a, b, "{backend}: losses differ between identical runs");
        assert_eq!(
            losses(first.path(), "valid"),
            losses(second.path(), "valid")
        );

        let other_seed = tempfile::tempdir().unwrap();
        train(
            "configs/mnist-mlp.toml",
            &with(sets, &["run.seed=7"]),
            other_seed.path(),
        );
        assert_ne!(
            a,
            losses(other_seed.path(), "train"),
            "the seed changes nothing"
        );
    }
}

#[test]
fn epochs_validate_checkpoint_and_keep_the_best() {
    let run = tempfile::tempdir().unwrap();
    let sets = vec![
        "data.limit=600".into(),
        "train.epochs=3".into(),
        "train.batch_size=50".into(),
        "train.progress=plain".into(),
        "run.backend=flex".into(),
        "checkpoint.keep_last=1".into(),
    ];
    let stderr = train("configs/mnist-mlp.toml", &sets, run.path());
    assert!(
        stderr.contains(&format!("run directory: {}", run.path().display())),
        "{stderr}"
    );
    assert!(stderr.contains("epoch 3/3"), "{stderr}");

    // 540 training images / 50 = 11 steps per epoch.
    let valid = metrics(run.path(), "valid");
    assert_eq!(valid.len(), 3);
    assert_eq!(
        valid
            .iter()
            .map(|r| r["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [11, 22, 33]
    );
    assert_eq!(
        valid
            .iter()
            .map(|r| r["epoch"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for record in metrics(run.path(), "train") {
        for key in [
            "step",
            "epoch",
            "split",
            "loss",
            "accuracy",
            "lr",
            "samples_per_s",
            "time_s",
        ] {
            assert!(record.get(key).is_some(), "{key} missing in {record}");
        }
    }

    let summary = read_json(&run.path().join("summary.json"));
    assert_eq!(summary["epochs_completed"], 3);
    assert_eq!(summary["stopped"], "completed");
    assert_eq!(summary["epoch_time_s"].as_array().unwrap().len(), 3);
    let best = summary["best"]["name"].as_str().unwrap().to_string();
    assert_eq!(summary["test_checkpoint"], best);
    let checkpoints = run.path().join("checkpoints");
    assert_eq!(
        std::fs::read_to_string(checkpoints.join("best")).unwrap(),
        best
    );
    // keep_last = 1: the latest, plus the best when that is older.
    let mut kept: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("step-"))
        .collect();
    kept.sort();
    let mut expected = vec![best.clone(), "step-33".to_string()];
    expected.dedup();
    expected.sort();
    assert_eq!(kept, expected);

    // eval reproduces the test accuracy recorded in the summary.
    let report: serde_json::Value = serde_json::from_str(&stdout_of(
        stoke()
            .args(["eval"])
            .arg(run.path())
            .args(["--checkpoint", "best"]),
    ))
    .unwrap();
    assert_eq!(report["checkpoint"], best.as_str());
    assert_eq!(report["split"], "test");
    assert_eq!(report["samples"], 600);
    assert_eq!(report["accuracy"], summary["test"]["accuracy"]);

    stoke()
        .args(["eval"])
        .arg(run.path())
        .args(["--checkpoint", "step-5"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no checkpoint \"step-5\""))
        .stderr(predicate::str::contains("step-33"));
}

#[test]
fn eval_of_a_directory_that_is_not_a_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    stoke()
        .arg("eval")
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a run directory"));
}

#[test]
fn bench_prints_samples_per_second_as_json() {
    let report: serde_json::Value = serde_json::from_str(&stdout_of(
        stoke()
            .args([
                "bench",
                "configs/mnist-mlp.toml",
                "--steps",
                "5",
                "--warmup",
                "2",
            ])
            .args(["--backend", "flex", "--set", "data.limit=2000"]),
    ))
    .unwrap();
    assert_eq!(report["backend"], "flex");
    assert_eq!(report["model"], "mlp");
    assert_eq!(report["steps"], 5);
    assert!(report["samples_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["time_to_first_step_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["measured"], "training steps");

    let data_path: serde_json::Value = serde_json::from_str(&stdout_of(stoke().args([
        "bench",
        "configs/mnist-mlp.toml",
        "--data-only",
        "--steps",
        "50",
        "--backend",
        "flex",
        "--set",
        "data.limit=2000",
    ])))
    .unwrap();
    assert_eq!(data_path["measured"], "data path");
    assert_eq!(data_path["steps"], 50);
    assert!(data_path["samples_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn global_gradient_clipping_changes_training_and_per_tensor_is_offered() {
    let base = with(
        tiny(300, 4),
        &["run.backend=flex", "train.log_every=1", "model.dropout=0.0"],
    );
    let (plain, global, per_tensor) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    train("configs/mnist-mlp.toml", &base, plain.path());
    train(
        "configs/mnist-mlp.toml",
        &with(base.clone(), &["train.grad_clip_norm=0.01"]),
        global.path(),
    );
    train(
        "configs/mnist-mlp.toml",
        &with(
            base,
            &[
                "train.grad_clip_norm=0.01",
                "train.grad_clip_scope=per-tensor",
            ],
        ),
        per_tensor.path(),
    );
    let (a, b, c) = (
        losses(plain.path(), "train"),
        losses(global.path(), "train"),
        losses(per_tensor.path(), "train"),
    );
    // Step 1's loss comes before any update; clipping changes the updates after it.
    assert_eq!(a[0], b[0]);
    assert_ne!(a[3], b[3]);
    assert_ne!(b[3], c[3]);
}
