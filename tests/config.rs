//! `stoke check` on every shipped config, and the messages config mistakes get.

mod common;

use std::fs;

use common::{repo, stoke, write_fake_idx_dataset, write_labelled_set};
use predicates::prelude::*;

#[test]
fn check_validates_every_shipped_config() {
    let fake_fashion = tempfile::tempdir().unwrap();
    write_fake_idx_dataset(fake_fashion.path(), 20);
    let fake_spam = tempfile::tempdir().unwrap();
    write_labelled_set(fake_spam.path(), 40);
    let fake_synth = tempfile::tempdir().unwrap();
    let synth_dir = fake_synth.path().join("shards");
    stoke()
        .args([
            "data",
            "synth",
            "--records",
            "100",
            "--test-records",
            "20",
            "--out",
        ])
        .arg(&synth_dir)
        .assert()
        .success();
    // A small CNN run stands in for the MNIST run configs/fashion-from-mnist.toml starts from.
    let fake_runs = tempfile::tempdir().unwrap();
    let mnist_run = fake_runs.path().join("mnist-cnn");
    common::train("configs/mnist-cnn.toml", &common::tiny(64, 1), &mnist_run);
    let tiny_bert = repo().join("tests/fixtures/hf/bert-tiny");
    let fake_tables = tempfile::tempdir().unwrap();
    let diamonds = fake_tables.path().join("diamonds.csv");
    let yeast = fake_tables.path().join("yeast.csv");
    common::write_fake_diamonds(&diamonds, 60);
    common::write_fake_yeast(&yeast, 60);
    let photos = fake_tables.path().join("photos");
    common::write_photo_folder(&photos, 6);
    let tiny_lite = repo().join("tests/fixtures/timm/efficientnet-lite-tiny");
    let mut configs: Vec<_> = walk(&repo().join("configs"))
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 6, "found {configs:?}");
    for config in configs {
        let mut command = stoke();
        command.arg("check").arg(&config);
        // Fashion-MNIST, SpamAssassin and the synthetic shards are fetched or generated,
        // not shipped: check those configs
        // against stand-ins so a clean clone validates every config.
        let text = fs::read_to_string(&config).unwrap();
        for (fetched, stand_in) in [
            ("fashion-mnist", fake_fashion.path()),
            ("datasets/spam-assassin", fake_spam.path()),
            ("datasets/mnist-synth", synth_dir.as_path()),
            ("datasets/diamonds/diamonds.csv", diamonds.as_path()),
            ("datasets/yeast/yeast.csv", yeast.as_path()),
            // After fashion-mnist, which its comment names too.
            ("datasets/fashion-photos", photos.as_path()),
        ] {
            if text.contains(fetched) {
                command.args(["--set", &format!("data.path={}", stand_in.display())]);
            }
        }
        // Pretrained starts that are fetched or trained first: a tiny BERT of the same
        // family and a short run of the same model.
        for (start, stand_in) in [
            ("\"datasets/minilm\"", tiny_bert.as_path()),
            ("\"runs/mnist-cnn\"", mnist_run.as_path()),
            ("\"datasets/efficientnet-lite0\"", tiny_lite.as_path()),
        ] {
            if text.contains(start) {
                command.args(["--set", &format!("model.init_from={}", stand_in.display())]);
            }
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {stderr}", config.display());
        let resolved = String::from_utf8_lossy(&output.stdout);
        // The resolved config has every section and parses as TOML again.
        for section in [
            "[run]",
            "[data]",
            "[model]",
            "[optimizer]",
            "[scheduler]",
            "[train]",
            "[checkpoint]",
        ] {
            assert!(
                resolved.contains(section),
                "{}: {resolved}",
                config.display()
            );
        }
        toml::from_str::<toml::Table>(&resolved).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// A config file in a fresh directory, which is also the working directory of the command, so
/// a test can see that nothing was written under `runs/`.
fn scratch_config(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("experiment.toml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn misspelt_key_exits_2_naming_key_line_and_closest_key() {
    let (dir, config) = scratch_config(
        "[train]\nepochs = 1\n\n[optimizer]\nkind = \"adam\"\nlearning_rate = 0.1\n",
    );
    for command in ["check", "train"] {
        stoke()
            .current_dir(dir.path())
            .arg(command)
            .arg(&config)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("experiment.toml:6:1"))
            .stderr(predicate::str::contains("`optimizer.learning_rate`"))
            .stderr(predicate::str::contains("did you mean `lr`?"))
            .stderr(predicate::str::contains("panicked").not());
    }
    assert!(
        !dir.path().join("runs").exists(),
        "a rejected config wrote a run"
    );
}

#[test]
fn wrong_type_says_what_was_expected() {
    let (dir, config) = scratch_config("[train]\nbatch_size = \"large\"\n");
    stoke()
        .current_dir(dir.path())
        .arg("check")
        .arg(&config)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("experiment.toml:2:"))
        .stderr(predicate::str::contains("`train.batch_size`"))
        .stderr(predicate::str::contains("expected a non-negative integer"));
}

#[test]
fn out_of_range_values_are_rejected_with_the_rule() {
    let (dir, config) = scratch_config("[optimizer]\nlr = 0.0\n\n[train]\nbatch_size = 0\n");
    stoke()
        .current_dir(dir.path())
        .arg("check")
        .arg(&config)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "`optimizer.lr`: must be above 0, got 0",
        ))
        .stderr(predicate::str::contains(
            "experiment.toml:5:1: `train.batch_size`: must be at least 1",
        ));
    stoke()
        .current_dir(dir.path())
        .arg("check")
        .arg(&config)
        .args([
            "--set",
            "optimizer.lr=1e-3",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.epochs=-1",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--set train.epochs=-1"))
        .stderr(predicate::str::contains("expected a non-negative integer"));
}

#[test]
fn unknown_override_and_backend_names_are_suggested() {
    stoke()
        .args(["check", "configs/mnist-mlp.toml", "--set", "train.epoch=3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--set train.epoch=3"))
        .stderr(predicate::str::contains("did you mean `epochs`?"));
    stoke()
        .args(["check", "configs/mnist-mlp.toml", "--backend", "flexx"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean \"flex\"?"));
}

#[test]
fn overrides_show_in_the_resolved_config() {
    stoke()
        .args([
            "check",
            "configs/mnist-cnn.toml",
            "--set",
            "train.epochs=1",
            "--set",
            "optimizer.lr=5e-4",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("epochs = 1"))
        .stdout(predicate::str::contains("lr = 0.0005"));
}

#[test]
fn missing_dataset_says_how_to_fetch_it() {
    // From an empty working directory, the default datasets/fashion-mnist is absent.
    let dir = tempfile::tempdir().unwrap();
    stoke()
        .current_dir(dir.path())
        .arg("check")
        .arg(repo().join("configs/fashion-cnn.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "dataset fashion-mnist not found at datasets/fashion-mnist",
        ))
        .stderr(predicate::str::contains("datasets/fetch fashion-mnist"));
    stoke()
        .args([
            "check",
            "configs/mnist-mlp.toml",
            "--set",
            "data.path=/nonexistent/mnist",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/mnist"))
        .stderr(predicate::str::contains("train-images-idx3-ubyte"));
}

#[test]
fn missing_config_file_is_named() {
    stoke()
        .args(["check", "configs/no-such-config.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read config file configs/no-such-config.toml",
        ));
}

#[test]
fn corrupt_dataset_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_fake_idx_dataset(dir.path(), 20);
    fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), b"not gzip").unwrap();
    stoke()
        .args(["check", "configs/mnist-mlp.toml", "--set"])
        .arg(format!("data.path={}", dir.path().display()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("train-labels-idx1-ubyte.gz"));
}
