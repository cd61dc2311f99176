//! Mixed precision (`train.precision`): every model family trains in bf16 and f16 close to
//! f32, f16's loss scale survives a resume exactly, and a backend without the half type is
//! refused before anything runs.

mod common;

use std::path::Path;

use common::{classifier_sets, lm_sets, losses, read_json, stoke, tiny, train, write_labelled_set};
use predicates::prelude::*;

/// Each family's config and overrides for a 12-step run on flex, logging every step.
fn families(text_data: &Path) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let images = |extra: &[&str]| {
        let mut sets = tiny(384, 12);
        sets.extend(
            [
                "run.backend=flex",
                "train.log_every=1",
                "train.batch_size=32",
            ]
            .map(String::from),
        );
        sets.extend(extra.iter().map(|s| s.to_string()));
        sets
    };
    let short = |mut sets: Vec<String>| {
        sets.extend(
            [
                "train.max_steps=12",
                "train.log_every=1",
                "train.eval_every=6",
            ]
            .map(String::from),
        );
        sets
    };
    vec![
        ("mlp", "configs/mnist-mlp.toml", images(&[])),
        (
            "cnn",
            "configs/mnist-cnn.toml",
            images(&["model.channels=[8, 16]", "model.hidden=32"]),
        ),
        (
            "resnet",
            "configs/mnist-resnet.toml",
            images(&["model.width=4"]),
        ),
        (
            "text classifier",
            "configs/spam-transformer.toml",
            short(classifier_sets(text_data, "flex")),
        ),
        (
            "language model",
            "configs/mobydick-char-lm.toml",
            short(lm_sets("flex")),
        ),
    ]
}

#[test]
fn every_model_family_trains_in_bf16_and_f16_close_to_f32() {
    let text = tempfile::tempdir().unwrap();
    write_labelled_set(text.path(), 200);
    for (family, config, sets) in families(&text.path().join("train.jsonl")) {
        let run = |precision: &str| {
            let dir = tempfile::tempdir().unwrap();
            let mut sets = sets.clone();
            sets.push(format!("train.precision={precision}"));
            let stderr = train(config, &sets, dir.path());
            assert!(
                stderr.contains(&format!("{precision} precision;")),
                "{stderr}"
            );
            // On a CPU backend the user is told that mixed precision is for GPUs.
            assert_eq!(
                stderr.contains("slower than f32 there"),
                precision != "f32",
                "{stderr}"
            );
            let summary = read_json(&dir.path().join("summary.json"));
            assert_eq!(summary["precision"], precision, "{family}");
            (
                losses(dir.path(), "train"),
                losses(dir.path(), "valid"),
                summary,
            )
        };
        let (f32_train, f32_valid, _) = run("f32");
        for precision in ["bf16-mixed", "f16-mixed"] {
            let (train, valid, summary) = run(precision);
            assert_eq!(train.len(), f32_train.len(), "{family} {precision}");
            // Computing in the half type changes the rounding: equal losses would mean it did
            // not compute in it at all.
            assert_ne!(
                train, f32_train,
                "{family} {precision}: no different from f32"
            );
            // The first step's loss is the initial weights' in the half type.
            let (first, f32_first) = (train[0], f32_train[0]);
            assert!(
                (first - f32_first).abs() <= 0.01 * f32_first,
                "{family} {precision}: first loss {first} against f32's {f32_first}"
            );
            // Training works as in f32: the loss falls and validation ends up close (a skipped
            // f16 step or different rounding moves the path a little).
            let (last, f32_last) = (valid[valid.len() - 1], f32_valid[f32_valid.len() - 1]);
            assert!(
                train.iter().all(|loss| loss.is_finite())
                    && train[train.len() - 1] < first
                    && last <= 1.2 * f32_last + 0.05,
                "{family} {precision}: valid loss {last} against f32's {f32_last}\n{train:?}\n{f32_train:?}"
            );
            eprintln!(
                "{family} {precision}: first loss {first:.5} (f32 {f32_first:.5}), last valid loss {last:.4} (f32 {f32_last:.4}), loss scale {}",
                summary["loss_scale"]
            );
            let scale = &summary["loss_scale"];
            if precision == "f16-mixed" {
                assert!(scale["scale"].as_f64().unwrap() >= 1.0, "{family}: {scale}");
            } else {
                assert!(scale.is_null(), "{family}: {scale}");
            }
        }
    }
}

#[test]
fn f16_loss_scaling_resumes_exactly() {
    let mut sets = tiny(640, 24);
    sets.extend(
        [
            "run.backend=flex",
            "train.precision=f16-mixed",
            // Single-sample batches have gradients large enough to overflow f16 at the
            // initial scale: the run skips steps and lowers the scale before the resume.
            "train.batch_size=1",
            "train.log_every=3",
            "checkpoint.every_steps=6",
            // A schedule that does not depend on max_steps, which the two halves change.
            "scheduler.kind=constant",
        ]
        .map(String::from),
    );
    let straight = tempfile::tempdir().unwrap();
    train("configs/mnist-mlp.toml", &sets, straight.path());

    let resumed = tempfile::tempdir().unwrap();
    let mut first_half = sets.clone();
    first_half.push("train.max_steps=12".into());
    train("configs/mnist-mlp.toml", &first_half, resumed.path());
    stoke()
        .args(["train", "--resume"])
        .arg(resumed.path())
        .args(["--set", "train.max_steps=24"])
        .assert()
        .success();

    let [straight_summary, resumed_summary] =
        [straight.path(), resumed.path()].map(|run| read_json(&run.join("summary.json")));
    let scale = &straight_summary["loss_scale"];
    assert!(scale["skipped_steps"].as_u64().unwrap() > 0, "{scale}");
    assert!(scale["scale"].as_f64().unwrap() < 65536.0, "{scale}");
    assert_eq!(scale, &resumed_summary["loss_scale"]);
    assert_eq!(
        straight_summary["weights_sha256"],
        resumed_summary["weights_sha256"]
    );
    for split in ["train", "valid", "test"] {
        assert_eq!(
            losses(straight.path(), split),
            losses(resumed.path(), split),
            "{split}"
        );
    }
}

#[test]
fn a_backend_without_the_half_type_is_refused_before_training() {
    let run = tempfile::tempdir().unwrap();
    stoke()
        .args(["train", "configs/mnist-mlp.toml", "--run-dir"])
        .arg(run.path().join("run"))
        .args([
            "--backend",
            "ndarray",
            "--set",
            "train.precision=bf16-mixed",
        ])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(
                "train.precision = \"bf16-mixed\": the ndarray backend cannot compute in BF16",
            )
            .and(predicate::str::contains("--backend flex"))
            .and(predicate::str::contains("panicked").not()),
        );
    assert!(!run.path().join("run").exists());
}

#[test]
fn f16_loss_scaling_clips_the_unscaled_gradients() {
    // A norm limit that every step's gradients exceed: if clipping saw the scaled gradients,
    // or unscaling missed them, f16 would follow a different path from f32.
    let run = |precision: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut sets = tiny(640, 12);
        sets.extend(
            [
                "run.backend=flex",
                "train.batch_size=32",
                "train.log_every=1",
                "train.grad_clip_norm=0.05",
                "model.dropout=0.0",
                &format!("train.precision={precision}"),
            ]
            .map(String::from),
        );
        train("configs/mnist-mlp.toml", &sets, dir.path());
        losses(dir.path(), "train")
    };
    let (full, half) = (run("f32"), run("f16-mixed"));
    for (step, (h, f)) in half.iter().zip(&full).enumerate() {
        assert!(
            (h - f).abs() <= 0.01 * f,
            "step {}: f16 loss {h} against f32's {f}\n{half:?}\n{full:?}",
            step + 1
        );
    }
    assert!(full[11] < 0.95 * full[0], "{full:?}");
}
