//! Text tasks end to end through the binary: the transformer classifier on a labelled JSONL
//! set, the language model on the shipped Moby Dick corpus, generation, and bad records.

mod common;

use std::fs;

use common::{
    classifier_sets, lm_sets, losses, metrics, read_json, stdout_of, stoke, train,
    write_labelled_set,
};
use predicates::prelude::*;

fn decreased(values: &[f64]) -> bool {
    values.len() >= 2 && values[values.len() - 1] < values[0]
}

#[test]
fn the_text_classifier_learns_on_ndarray_and_reports_macro_f1() {
    let data = tempfile::tempdir().unwrap();
    write_labelled_set(data.path(), 400);
    let run = tempfile::tempdir().unwrap();
    train(
        "configs/spam-transformer.toml",
        &classifier_sets(data.path(), "ndarray"),
        run.path(),
    );
    let train_losses = losses(run.path(), "train");
    assert!(decreased(&train_losses), "{train_losses:?}");
    let summary = read_json(&run.path().join("summary.json"));
    assert_eq!(summary["data"]["task"], "text-classification");
    assert_eq!(
        summary["data"]["classes"],
        serde_json::json!(["ham", "spam"])
    );
    assert!(
        summary["test"]["macro_f1"].as_f64().unwrap() > 0.8,
        "{summary}"
    );
    assert!(run.path().join("tokenizer.json").is_file());
    let valid = metrics(run.path(), "valid");
    assert!(
        valid
            .iter()
            .all(|r| r["macro_f1"].is_f64() && r["tokens_per_s"].is_f64())
    );
}

#[test]
fn the_language_model_learns_on_ndarray_and_generates() {
    let run = tempfile::tempdir().unwrap();
    train(
        "configs/mobydick-char-lm.toml",
        &lm_sets("ndarray"),
        run.path(),
    );
    let train_losses = losses(run.path(), "train");
    assert!(decreased(&train_losses), "{train_losses:?}");
    let valid = metrics(run.path(), "valid");
    let last = valid.last().unwrap();
    let (loss, perplexity, bpc) = (
        last["loss"].as_f64().unwrap(),
        last["perplexity"].as_f64().unwrap(),
        last["bits_per_char"].as_f64().unwrap(),
    );
    assert!((perplexity - loss.exp()).abs() < 1e-9);
    // One token per character: bits per character is the loss in bits.
    assert!((bpc - loss / std::f64::consts::LN_2).abs() < 1e-9);

    let generate = |seed: &str| {
        stdout_of(
            stoke()
                .args(["generate"])
                .arg(run.path())
                .args(["--prompt", "Call me", "--tokens", "40", "--seed", seed]),
        )
    };
    let text = generate("1");
    assert!(text.starts_with("Call me"), "{text}");
    assert_eq!(
        text.trim_end_matches('\n').chars().count(),
        "Call me".len() + 40,
        "{text:?}"
    );
    assert_eq!(text, generate("1"), "the same seed gives the same text");
}

#[test]
fn same_seed_gives_the_same_losses_for_text_models() {
    let data = tempfile::tempdir().unwrap();
    write_labelled_set(data.path(), 200);
    for (config, sets) in [
        (
            "configs/spam-transformer.toml",
            classifier_sets(data.path(), "flex"),
        ),
        ("configs/mobydick-char-lm.toml", lm_sets("flex")),
    ] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        train(config, &sets, a.path());
        train(config, &sets, b.path());
        assert_eq!(
            losses(a.path(), "train"),
            losses(b.path(), "train"),
            "{config}"
        );
        assert_eq!(
            losses(a.path(), "valid"),
            losses(b.path(), "valid"),
            "{config}"
        );
    }
}

#[test]
fn bad_records_stop_with_file_and_line_or_are_skipped_and_counted() {
    let data = tempfile::tempdir().unwrap();
    write_labelled_set(data.path(), 100);
    let path = data.path().join("train.jsonl");
    let mut content = fs::read(&path).unwrap();
    content.extend(b"{\"text\": \"broken\", \"label\": \n");
    content.extend(b"{\"body\": \"no text field\", \"label\": \"ham\"}\n");
    content.extend(b"{\"text\": \"bad \xff byte\", \"label\": \"spam\"}\n");
    fs::write(&path, content).unwrap();

    let mut command = stoke();
    command.args(["train", "configs/spam-transformer.toml"]);
    for set in classifier_sets(data.path(), "flex") {
        command.args(["--set", &set]);
    }
    command
        .assert()
        .code(2)
        .stderr(predicate::str::contains("train.jsonl:101: invalid JSON"))
        .stderr(predicate::str::contains("data.on_error = \"skip\""));

    let run = tempfile::tempdir().unwrap();
    let mut sets = classifier_sets(data.path(), "flex");
    sets.extend(["data.on_error=skip".into(), "train.max_steps=2".into()]);
    let stderr = train("configs/spam-transformer.toml", &sets, run.path());
    assert!(
        stderr.contains("warning: skipped 3 bad records"),
        "{stderr}"
    );
    let summary = read_json(&run.path().join("summary.json"));
    assert_eq!(summary["skipped_records"]["count"], 3);
    let examples = summary["skipped_records"]["examples"].as_array().unwrap();
    assert!(
        examples[1]
            .as_str()
            .unwrap()
            .ends_with("train.jsonl:102: no field \"text\"")
    );
    assert!(
        examples[2]
            .as_str()
            .unwrap()
            .contains("train.jsonl:103: invalid UTF-8")
    );
}

#[test]
fn a_text_run_resumes_with_its_own_tokenizer_exactly() {
    let data = tempfile::tempdir().unwrap();
    write_labelled_set(data.path(), 200);
    let mut sets = classifier_sets(data.path(), "flex");
    sets.extend([
        "checkpoint.every_steps=10".into(),
        "checkpoint.keep_last=10".into(),
    ]);
    let reference = tempfile::tempdir().unwrap();
    train("configs/spam-transformer.toml", &sets, reference.path());
    stoke()
        .args(["train", "--resume"])
        .arg(reference.path())
        .args(["--checkpoint", "step-20"])
        .assert()
        .success();
    let first = read_json(&reference.path().join("summary.json"));
    assert_eq!(first["steps"], 40);
    // The rewound run ends where the original did, bit for bit.
    let replay = tempfile::tempdir().unwrap();
    train("configs/spam-transformer.toml", &sets, replay.path());
    assert_eq!(
        first["weights_sha256"],
        read_json(&replay.path().join("summary.json"))["weights_sha256"]
    );
}

#[test]
fn generate_refuses_a_classifier() {
    let data = tempfile::tempdir().unwrap();
    write_labelled_set(data.path(), 60);
    let run = tempfile::tempdir().unwrap();
    let mut sets = classifier_sets(data.path(), "flex");
    sets.push("train.max_steps=1".into());
    train("configs/spam-transformer.toml", &sets, run.path());
    stoke()
        .arg("generate")
        .arg(run.path())
        .args(["--prompt", "hi"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("generate needs a language model"));
}
