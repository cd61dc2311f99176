//! Starting from stoke's own weights (a run or an artifact), freezing parameters, a learning
//! rate per prefix, exact resume of a fine-tuning run, and `export --format hf` read back.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use burn::prelude::*;

use common::{read_json, repo, stdout_of, stoke, tiny, train};
use stoke::export::{CheckpointChoice, load};
use stoke::train::Net;

/// Every parameter of the run's `checkpoint`, by path.
fn parameters(run: &Path, checkpoint: &str) -> BTreeMap<String, Vec<f32>> {
    let choice: CheckpointChoice = checkpoint.parse().unwrap();
    let loaded = load(run, &choice, Some(stoke::config::BackendChoice::Flex)).unwrap();
    loaded
        .model
        .parameters()
        .into_iter()
        .map(|(path, data)| (path, data.try_to_vec::<f32>().unwrap()))
        .collect()
}

fn largest_change(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A short MNIST MLP run: the source the tests start from.
fn mnist_source(dir: &Path) -> std::path::PathBuf {
    let run = dir.join("mnist");
    train("configs/mnist-mlp.toml", &tiny(256, 6), &run);
    run
}

#[test]
fn a_run_starts_another_with_a_fresh_head_frozen_layers_and_a_slower_head() {
    let dir = tempfile::tempdir().unwrap();
    let source = mnist_source(dir.path());
    let run = dir.path().join("fashion-like");
    // The same data and classes: every tensor comes from the source, the head included.
    let mut sets = tiny(256, 4);
    sets.push(format!("model.init_from={}", source.display()));
    sets.push("model.freeze=[\"hidden.0\"]".into());
    sets.push("model.lr_by_prefix.output=1e-9".into());
    let stderr = train("configs/mnist-mlp.toml", &sets, &run);
    assert!(
        stderr.contains(&format!("init: 6 tensors from {}", source.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("model.freeze: 2 parameter tensors under hidden.0 are frozen"),
        "{stderr}"
    );
    let start = parameters(&source, "last");
    let end = parameters(&run, "last");
    for path in ["hidden.0.weight", "hidden.0.bias"] {
        assert_eq!(start[path], end[path], "{path} is frozen");
    }
    assert!(largest_change(&start["hidden.1.weight"], &end["hidden.1.weight"]) > 1e-5);
    assert!(
        largest_change(&start["output.weight"], &end["output.weight"]) < 1e-6,
        "the output layer's learning rate is 1e-9"
    );
}

#[test]
fn other_classes_get_a_new_head_and_the_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let source = mnist_source(dir.path());
    let artifact = dir.path().join("mnist-artifact");
    stdout_of(
        stoke()
            .args(["export"])
            .arg(&source)
            .arg("--out")
            .arg(&artifact),
    );
    // Five classes instead of ten: a folder of the same images in five class folders.
    let images = dir.path().join("five");
    for class in 0..5 {
        let folder = images.join(format!("c{class}"));
        fs::create_dir_all(&folder).unwrap();
        for i in 0..8 {
            let pixels: Vec<u8> = (0..784)
                .map(|p| ((p * (i + 3) + class * 17) % 251) as u8)
                .collect();
            image::GrayImage::from_raw(28, 28, pixels)
                .unwrap()
                .save(folder.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let run = dir.path().join("five-classes");
    let sets = vec![
        "data.dataset=image-folder".to_string(),
        format!("data.path={}", images.display()),
        "data.image.color=grayscale".into(),
        "data.image.size=[28, 28]".into(),
        format!("model.init_from={}", artifact.display()),
        "train.max_steps=2".into(),
        "train.batch_size=8".into(),
        "train.progress=plain".into(),
    ];
    let stderr = train("configs/mnist-mlp.toml", &sets, &run);
    assert!(
        stderr.contains("init: new, initialised from the seed: output.bias, output.weight"),
        "{stderr}"
    );
}

#[test]
fn a_resumed_fine_tuning_run_is_exact_and_reads_no_source() {
    let dir = tempfile::tempdir().unwrap();
    let source = mnist_source(dir.path());
    let mut sets = tiny(256, 8);
    sets.push(format!("model.init_from={}", source.display()));
    sets.push("checkpoint.every_steps=4".into());
    let whole = dir.path().join("whole");
    train("configs/mnist-mlp.toml", &sets, &whole);

    // The same run, killed while it writes its checkpoint at step 8: step 4's is the last.
    let halves = dir.path().join("halves");
    let mut killed = stoke();
    killed
        .args(["train", "configs/mnist-mlp.toml", "--run-dir"])
        .arg(&halves);
    for set in &sets {
        killed.args(["--set", set]);
    }
    let output = killed
        .env("STOKE_FAULT", "abort-in-checkpoint:8")
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "the fault should have ended the run"
    );
    // The source is gone: a resumed run needs only its own checkpoint.
    fs::remove_dir_all(&source).unwrap();
    let output = stoke()
        .args(["train", "--resume"])
        .arg(&halves)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sha = |run: &Path| read_json(&run.join("summary.json"))["weights_sha256"].clone();
    assert_eq!(sha(&whole), sha(&halves));
}

#[test]
fn a_bert_run_exports_a_hugging_face_folder_that_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("texts");
    common::write_labelled_set(&data, 96);
    let run = dir.path().join("bert");
    let fixture = repo().join("tests/fixtures/hf/bert-tiny");
    let sets = vec![
        format!("data.path={}", data.display()),
        format!("model.init_from={}", fixture.display()),
        "model.pooling=cls".into(),
        "data.text.max_length=16".into(),
        "train.max_steps=3".into(),
        "train.batch_size=16".into(),
        "train.progress=plain".into(),
    ];
    let stderr = train("configs/spam-minilm.toml", &sets, &run);
    // Two classes here, three in the checkpoint: a new classifier.
    assert!(
        stderr.contains("init: new, initialised from the seed: classifier.bias, classifier.weight"),
        "{stderr}"
    );
    let out = dir.path().join("hf");
    stdout_of(
        stoke()
            .args(["export"])
            .arg(&run)
            .args(["--format", "hf", "--out"])
            .arg(&out),
    );
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["num_labels"], 2);

    // The exported folder, read as a start, holds exactly the run's weights.
    let trained = load(
        &run,
        &CheckpointChoice::Last,
        Some(stoke::config::BackendChoice::Flex),
    )
    .unwrap();
    let mut config = stoke::config::ExperimentConfig {
        model: trained.model_config.clone(),
        ..Default::default()
    };
    config.model.init_from = Some(out.clone());
    stoke::train::resolve(&mut config).unwrap();
    let mut reread = common::build(&config.model, &trained.spec);
    stoke::train::initial_weights(reread.as_mut(), &config.model, &trained.spec).unwrap();
    assert_eq!(reread.weights_digest(), trained.model.weights_digest());

    // With transformers at hand, the same folder gives stoke's logits there.
    write_stoke_logits(trained.model.as_ref(), &fixture, &out);
    if common::optional::available(&common::optional::TRANSFORMERS) {
        common::python_check(
            "scripts/hf_fixtures.py",
            &[Path::new("check-export"), &out, &fixture],
        );
    }
}

/// stoke's logits on the fixture's inputs (token types 0), for scripts/hf_fixtures.py.
fn write_stoke_logits(model: &dyn Net, fixture: &Path, out: &Path) {
    let expected = read_json(&fixture.join("expected.json"));
    let device = Device::flex();
    let logits: Vec<Vec<Vec<f32>>> = expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let ids: Vec<Vec<i64>> = serde_json::from_value(case["input_ids"].clone()).unwrap();
            let mask: Vec<Vec<i64>> =
                serde_json::from_value(case["attention_mask"].clone()).unwrap();
            let shape = [ids.len(), ids[0].len()];
            let ids = Tensor::<2, Int>::from_ints(TensorData::new(ids.concat(), shape), &device);
            let mask = Tensor::<2, Int>::from_ints(TensorData::new(mask.concat(), shape), &device);
            let logits = model
                .scores(stoke::model::Input::Tokens {
                    ids,
                    padding: mask.equal_elem(0),
                })
                .expect("a text classifier reads tokens");
            let [rows, cols] = logits.dims();
            let flat: Vec<f32> = logits.into_data().try_to_vec().unwrap();
            (0..rows)
                .map(|r| flat[r * cols..(r + 1) * cols].to_vec())
                .collect()
        })
        .collect();
    fs::write(
        out.join("stoke_logits.json"),
        serde_json::to_string(&logits).unwrap(),
    )
    .unwrap();
}
