//! `stoke export`, `predict` and `inspect` through the binary: every model family exported
//! and answering as its checkpoint does, predictions that reproduce `eval`, refused
//! artifacts, per-input errors, and the weights read back by numpy.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use common::{
    classifier_sets, lm_sets, read_json, stdout_of, stoke, tiny, train, write_labelled_set,
};
use predicates::prelude::*;
use serde_json::Value;

fn export(run: &Path, out: &Path) -> Value {
    let stdout = stdout_of(stoke().args(["export"]).arg(run).arg("--out").arg(out));
    serde_json::from_str(&stdout).unwrap()
}

/// `stoke predict` on `model` (an artifact or a run) with `args`: the JSON lines it printed.
fn predict(model: &Path, args: &[&str]) -> Vec<Value> {
    let stdout = stdout_of(
        stoke()
            .arg("predict")
            .arg(model)
            .args(["--backend", "flex", "--logits"])
            .args(args),
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn logits(answers: &[Value]) -> Vec<Vec<f64>> {
    answers
        .iter()
        .map(|a| {
            a["logits"]
                .as_array()
                .unwrap_or_else(|| panic!("no logits in {a}"))
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// An image folder of RGB PNGs larger than the model's input, so prediction must resize
/// and normalise as training did: class "bright" images are light, "dark" ones dark.
fn write_image_folder(root: &Path, per_class: usize) -> Vec<(PathBuf, &'static str)> {
    let mut test_files = Vec::new();
    for split in ["train", "test"] {
        for (class, base) in [("bright", 150u32), ("dark", 40)] {
            let dir = root.join(split).join(class);
            fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class as u32 {
                let image = image::RgbImage::from_fn(20, 20, |x, y| {
                    let v = (base + (x * 7 + y * 13 + i * 29) % 90) as u8;
                    image::Rgb([v, v / 2, 255 - v])
                });
                let path = dir.join(format!("{i}.png"));
                image.save(&path).unwrap();
                if split == "test" {
                    test_files.push((path, class));
                }
            }
        }
    }
    test_files
}

#[test]
fn predictions_from_an_artifact_reproduce_eval_on_the_test_images() {
    let data = tempfile::tempdir().unwrap();
    let test_files = write_image_folder(data.path(), 12);
    let run = tempfile::tempdir().unwrap();
    let mut sets = tiny(1000, 12);
    sets.extend([
        "data.dataset=image-folder".to_string(),
        format!("data.path={}", data.path().display()),
        "data.image.size=[16, 16]".into(),
        "data.image.color=\"rgb\"".into(),
        "model.channels=[4, 8]".into(),
        "model.hidden=16".into(),
        "train.batch_size=8".into(),
    ]);
    train("configs/mnist-cnn.toml", &sets, run.path());
    let artifact = tempfile::tempdir().unwrap().path().join("cnn");
    let report = export(run.path(), &artifact);
    // The same checkpoint exported again is the same weights file: the served version (its
    // SHA-256) names the weights.
    let again = export(run.path(), &artifact.with_file_name("cnn-again"));
    assert_eq!(
        report["files"]["model.safetensors"],
        again["files"]["model.safetensors"]
    );
    // Its lineage and its drift reference (the run's validation split).
    let manifest = common::read_json(&artifact.join("manifest.json"));
    let config = std::fs::read(run.path().join("config.toml")).unwrap();
    assert_eq!(
        manifest["lineage"]["config_sha256"],
        stoke::files::digest(&config).sha256
    );
    assert!(
        manifest["lineage"]["dataset"]
            .as_str()
            .unwrap()
            .starts_with("image-folder at ")
    );
    let profile = common::read_json(&artifact.join("profile.json"));
    assert_eq!(profile["distributions"][1]["name"], "intensity_c0");
    assert_eq!(
        profile["distributions"].as_array().unwrap().len(),
        4,
        "confidence and 3 channels"
    );

    let files: Vec<&str> = test_files
        .iter()
        .map(|(p, _)| p.to_str().unwrap())
        .collect();
    let answers = predict(&artifact, &files);
    assert_eq!(answers.len(), test_files.len());
    // Cross-entropy and accuracy recomputed from the artifact's logits equal `stoke eval`'s
    // on the checkpoint: the same pixels reached the same weights.
    let classes = ["bright", "dark"]; // sorted folder names: the class order
    let (mut loss, mut correct) = (0.0, 0);
    for (answer, (_, class)) in answers.iter().zip(&test_files) {
        let row = &logits(std::slice::from_ref(answer))[0];
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let log_sum = row.iter().map(|l| (l - max).exp()).sum::<f64>().ln() + max;
        let target = classes.iter().position(|c| c == class).unwrap();
        loss += log_sum - row[target];
        correct += usize::from(answer["top"][0]["label"] == *class);
    }
    let count = test_files.len() as f64;
    let eval: Value = serde_json::from_str(&stdout_of(
        stoke()
            .arg("eval")
            .arg(run.path())
            .args(["--backend", "flex"]),
    ))
    .unwrap();
    let metrics = &eval;
    assert_eq!(metrics["samples"], test_files.len(), "{eval}");
    assert!(
        (metrics["accuracy"].as_f64().unwrap() - correct as f64 / count).abs() < 1e-9,
        "{eval}"
    );
    assert!(
        (metrics["loss"].as_f64().unwrap() - loss / count).abs() < 1e-4,
        "eval {eval}, predict {}",
        loss / count
    );
}

#[test]
fn every_model_family_exports_and_predicts_as_its_checkpoint() {
    let digits: Vec<PathBuf> = ["7", "2", "1"]
        .iter()
        .map(|digit| common::repo().join(format!("datasets/mnist/samples/{digit}.png")))
        .collect();
    let digit_args: Vec<&str> = digits.iter().map(|p| p.to_str().unwrap()).collect();
    let small_cnn = ["model.channels=[4, 8]", "model.hidden=16"];
    let small_resnet = ["model.width=4", "scheduler.warmup_steps=2"];
    for (config, extra) in [
        ("configs/mnist-mlp.toml", &[][..]),
        ("configs/mnist-cnn.toml", &small_cnn[..]),
        ("configs/mnist-resnet.toml", &small_resnet[..]),
    ] {
        let run = tempfile::tempdir().unwrap();
        let mut sets = tiny(200, 4);
        sets.extend(extra.iter().map(|s| s.to_string()));
        sets.push("train.batch_size=16".into());
        train(config, &sets, run.path());
        let out = tempfile::tempdir().unwrap();
        let artifact = out.path().join("model");
        let report = export(run.path(), &artifact);
        assert_eq!(report["checkpoint"], "step-4");
        let from_artifact = predict(&artifact, &digit_args);
        let from_run = predict(run.path(), &digit_args);
        assert_eq!(from_artifact.len(), 3, "{config}");
        assert_eq!(logits(&from_artifact), logits(&from_run), "{config}");
        assert_eq!(from_artifact[0]["top"].as_array().unwrap().len(), 3);

        let manifest = read_json(&artifact.join("manifest.json"));
        assert_eq!(manifest["format"], "stoke-artifact");
        assert_eq!(manifest["source"]["checkpoint"], "step-4");
        for file in ["model.safetensors", "model.bpk"] {
            let bytes = fs::metadata(artifact.join(file)).unwrap().len();
            assert_eq!(manifest["files"][file]["bytes"], bytes, "{config}");
        }
        // No optimizer state: the artifact is about the size of the weights twice over.
        assert!(!artifact.join("optimizer.bpk").exists());
    }

    // The text classifier, from --text and standard input alike.
    let data = tempfile::tempdir().unwrap();
    write_labelled_set(data.path(), 120);
    let run = tempfile::tempdir().unwrap();
    let mut sets = classifier_sets(data.path(), "flex");
    sets.push("train.max_steps=4".into());
    train("configs/spam-transformer.toml", &sets, run.path());
    let out = tempfile::tempdir().unwrap();
    let artifact = out.path().join("spam");
    export(run.path(), &artifact);
    assert!(artifact.join("tokenizer.json").is_file());
    stoke()
        .arg("export")
        .arg(run.path())
        .arg("--out")
        .arg(out.path().join("spam-onnx"))
        .args(["--format", "onnx"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "ONNX export covers image classifiers",
        ));
    let texts = ["win a free prize now", "meeting notes for the team"];
    let from_args = predict(&artifact, &["--text", texts[0], "--text", texts[1]]);
    let from_run = predict(run.path(), &["--text", texts[0], "--text", texts[1]]);
    assert_eq!(logits(&from_args), logits(&from_run));
    assert_eq!(from_args[0]["input"], texts[0]);
    let stdin = stoke()
        .arg("predict")
        .arg(&artifact)
        .args(["--backend", "flex", "--logits"])
        .write_stdin(format!("{}\n{}\n", texts[0], texts[1]))
        .output()
        .unwrap();
    let from_stdin: Vec<Value> = String::from_utf8(stdin.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logits(&from_stdin), logits(&from_args));

    // The language model generates the same text from its artifact as from its run.
    let run = tempfile::tempdir().unwrap();
    let mut sets = lm_sets("flex");
    sets.push("train.max_steps=4".into());
    train("configs/mobydick-char-lm.toml", &sets, run.path());
    let artifact = out.path().join("lm");
    export(run.path(), &artifact);
    let generate = |model: &Path| {
        stdout_of(stoke().arg("predict").arg(model).args([
            "--generate",
            "30",
            "--prompt",
            "Call me",
            "--seed",
            "3",
        ]))
    };
    let text = generate(&artifact);
    assert!(text.starts_with("Call me"), "{text}");
    assert_eq!(text, generate(run.path()));
    stoke()
        .arg("predict")
        .arg(&artifact)
        .args(["--text", "hello"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "is a language model: continue a prompt with --generate",
        ));
}

/// A trained tiny MLP and its artifact, for the tests that tamper with artifacts.
fn mlp_artifact() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train("configs/mnist-mlp.toml", &tiny(200, 2), &run);
    let artifact = dir.path().join("mlp");
    export(&run, &artifact);
    (dir, artifact)
}

/// `inspect` and `predict` both refuse `artifact` with exit code 2 and `expected` in the
/// one-line message.
fn refused(artifact: &Path, expected: &str) {
    let commands: [&[&str]; 2] = [
        &["inspect"],
        &[
            "predict",
            "--backend",
            "flex",
            "datasets/mnist/samples/7.png",
        ],
    ];
    for command in commands {
        stoke()
            .arg(command[0])
            .arg(artifact)
            .args(&command[1..])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("is refused"))
            .stderr(predicate::str::contains(expected))
            .stderr(predicate::str::contains("panicked").not());
    }
}

#[test]
fn altered_missing_newer_or_unknown_artifacts_are_refused() {
    let (dir, artifact) = mlp_artifact();
    let copy = |name: &str| {
        let target = dir.path().join(name);
        fs::create_dir_all(&target).unwrap();
        for entry in fs::read_dir(&artifact).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
        target
    };
    let edit_manifest = |target: &Path, edit: &dyn Fn(&mut Value)| {
        let mut manifest = read_json(&target.join("manifest.json"));
        edit(&mut manifest);
        fs::write(target.join("manifest.json"), manifest.to_string()).unwrap();
    };

    let altered = copy("altered");
    let mut bytes = fs::read(altered.join("model.bpk")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(altered.join("model.bpk"), bytes).unwrap();
    refused(&altered, "model.bpk does not match its checksum");

    let missing = copy("missing");
    fs::remove_file(missing.join("model.safetensors")).unwrap();
    refused(&missing, "model.safetensors: No such file");

    let newer = copy("newer");
    edit_manifest(&newer, &|m| m["format_version"] = 99.into());
    refused(&newer, "format version 99, newer than this stoke");

    let unknown = copy("unknown");
    edit_manifest(&unknown, &|m| m["model"]["kind"] = "diffusion".into());
    refused(&unknown, "no model kind \"diffusion\"");

    stoke()
        .arg("inspect")
        .arg(dir.path().join("run"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "manifest.json: No such file or directory (os error 2) (is it a directory written by `stoke export`?)",
        ));

    // Export refuses to overwrite unless told to.
    stoke()
        .arg("export")
        .arg(dir.path().join("run"))
        .arg("--out")
        .arg(&artifact)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--force"));
}

#[test]
fn a_bad_input_gets_its_own_error_line_and_the_others_are_answered() {
    let (dir, artifact) = mlp_artifact();
    let not_an_image = dir.path().join("notes.png");
    fs::write(&not_an_image, "not a picture").unwrap();
    let output = stoke()
        .arg("predict")
        .arg(&artifact)
        .args(["--backend", "flex", "datasets/mnist/samples/7.png"])
        .arg(&not_an_image)
        .args(["missing.png", "datasets/mnist/samples/2.png"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0]["top"].is_array());
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("cannot decode the image")
    );
    assert!(lines[2]["error"].as_str().unwrap().contains("missing.png"));
    assert!(lines[3]["top"].is_array());

    let table = stdout_of(stoke().arg("predict").arg(&artifact).args([
        "--format",
        "table",
        "--top-k",
        "1",
        "datasets/mnist/samples/7.png",
    ]));
    assert!(table.starts_with("input"), "{table}");
    assert!(table.contains("datasets/mnist/samples/7.png"), "{table}");

    let inspect = stdout_of(stoke().arg("inspect").arg(&artifact));
    for expected in [
        "mlp",
        "images of 1×28×28",
        "labels:  0, 1, 2",
        "hidden.0.weight",
    ] {
        assert!(inspect.contains(expected), "{expected}: {inspect}");
    }
}

/// The safetensors weights recomputed with numpy (scripts/check_safetensors.py) and the ONNX
/// graph run by onnxruntime give `stoke predict`'s logits to 1e-4, for the MLP and a CNN.
/// Skipped without numpy, safetensors and onnxruntime, except in CI (`common::optional`).
#[test]
fn numpy_and_onnxruntime_reproduce_the_exported_models_logits() {
    if !common::optional::available(&common::optional::NUMPY_ONNXRUNTIME) {
        return;
    }
    let small_cnn = ["model.channels=[4, 8]", "model.hidden=16"];
    for (kind, config, extra) in [
        ("mlp", "configs/mnist-mlp.toml", &[][..]),
        ("cnn", "configs/mnist-cnn.toml", &small_cnn[..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let mut sets = tiny(200, 3);
        sets.extend(extra.iter().map(|s| s.to_string()));
        train(config, &sets, &run);
        let artifact = dir.path().join(kind);
        stdout_of(
            stoke()
                .arg("export")
                .arg(&run)
                .arg("--out")
                .arg(&artifact)
                .args(["--format", "onnx"]),
        );
        assert!(artifact.join("model.onnx").is_file());
        let output = StdCommand::new("python3")
            .current_dir(common::repo())
            .arg("scripts/check_safetensors.py")
            .arg(&artifact)
            .args(["datasets/mnist/t10k-images-idx3-ubyte.gz", "--count", "32"])
            .arg("--stoke")
            .arg(assert_cmd::cargo::cargo_bin("stoke"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for checker in ["numpy", "onnxruntime"] {
            assert!(
                stdout.contains(&format!("{checker}: {kind} on 32 images")),
                "{stdout}"
            );
        }
    }
}

/// A run written by stoke 0.1 before the built-in families were kinds of their own (its
/// records name every tensor under the family, `Mlp.hidden.0.weight`): evaluated, resumed
/// and exported by this build.
#[test]
fn runs_of_earlier_versions_still_evaluate_resume_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let fixture = common::repo().join("tests/fixtures/v0.1-mlp-run");
    fs::create_dir_all(run.join("checkpoints/step-4")).unwrap();
    for file in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "status.json",
    ] {
        fs::copy(fixture.join(file), run.join(file)).unwrap();
    }
    fs::copy(
        fixture.join("checkpoints/latest"),
        run.join("checkpoints/latest"),
    )
    .unwrap();
    for entry in fs::read_dir(fixture.join("checkpoints/step-4")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(
            entry.path(),
            run.join("checkpoints/step-4").join(entry.file_name()),
        )
        .unwrap();
    }
    let eval: serde_json::Value = serde_json::from_str(&stdout_of(
        stoke().arg("eval").arg(&run).args(["--checkpoint", "last"]),
    ))
    .unwrap();
    assert!(eval["accuracy"].as_f64().unwrap() > 0.0, "{eval}");
    stdout_of(stoke().args(["train", "--resume"]).arg(&run).args([
        "--set",
        "train.max_steps=6",
        "--set",
        "train.progress=quiet",
    ]));
    assert_eq!(read_json(&run.join("summary.json"))["steps"], 6);
    let artifact = dir.path().join("artifact");
    stdout_of(stoke().arg("export").arg(&run).arg("--out").arg(&artifact));
    assert!(artifact.join("model.safetensors").is_file());
}
