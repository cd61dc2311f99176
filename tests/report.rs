//! `stoke eval --report`: the classification report through the binary. Its confusion
//! matrix equals a count made independently from `stoke predict`'s answers on the same test
//! images, and its expected calibration error equals one recomputed from predict's
//! probabilities.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{read_json, stdout_of, stoke, tiny, train};
use serde_json::Value;

/// Three classes of RGB images whose brightness ranges overlap, so a small model errs.
fn write_overlapping_classes(root: &Path, per_class: u32) -> Vec<(PathBuf, usize)> {
    let mut test_files = Vec::new();
    for split in ["train", "test"] {
        for (class, base) in [("a-dim", 50u32), ("b-mid", 95), ("c-bright", 140)] {
            let dir = root.join(split).join(class);
            fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let image = image::RgbImage::from_fn(12, 12, |x, y| {
                    let v = (base + (x * 7 + y * 13 + i * 29) % 90) as u8;
                    image::Rgb([v, v, v])
                });
                let path = dir.join(format!("{i}.png"));
                image.save(&path).unwrap();
                if split == "test" {
                    let label = ["a-dim", "b-mid", "c-bright"]
                        .iter()
                        .position(|c| *c == class);
                    test_files.push((path, label.unwrap()));
                }
            }
        }
    }
    test_files
}

#[test]
fn the_reports_confusion_and_calibration_equal_recounts_from_predict() {
    let data = tempfile::tempdir().unwrap();
    let test_files = write_overlapping_classes(data.path(), 20);
    let run = tempfile::tempdir().unwrap();
    let mut sets = tiny(1000, 6);
    sets.extend([
        "data.dataset=image-folder".to_string(),
        format!("data.path={}", data.path().display()),
        "data.image.size=[12, 12]".into(),
        "data.image.color=\"rgb\"".into(),
        "model.channels=[4, 8]".into(),
        "model.hidden=16".into(),
        "train.batch_size=8".into(),
    ]);
    train("configs/mnist-cnn.toml", &sets, run.path());
    let report_dir = run.path().join("report");
    stdout_of(
        stoke()
            .arg("eval")
            .arg(run.path())
            .args(["--backend", "flex", "--report"])
            .arg(&report_dir),
    );
    let report = read_json(&report_dir.join("report.json"));
    let classification = &report["classification"];

    let files: Vec<&str> = test_files
        .iter()
        .map(|(p, _)| p.to_str().unwrap())
        .collect();
    let answers: Vec<Value> = stdout_of(
        stoke()
            .arg("predict")
            .arg(run.path())
            .args(["--backend", "flex", "--top-k", "1"])
            .args(&files),
    )
    .lines()
    .map(|line| serde_json::from_str(line).unwrap())
    .collect();
    let classes = ["a-dim", "b-mid", "c-bright"];
    let mut confusion = vec![vec![0u64; 3]; 3];
    let (mut counts, mut hits, mut confidences) = ([0f64; 15], [0f64; 15], [0f64; 15]);
    for (answer, (_, target)) in answers.iter().zip(&test_files) {
        let top = &answer["top"][0];
        let predicted = classes.iter().position(|c| *c == top["label"]).unwrap();
        confusion[*target][predicted] += 1;
        let confidence = top["probability"].as_f64().unwrap();
        let bin = ((confidence * 15.0).ceil() as usize).clamp(1, 15) - 1;
        counts[bin] += 1.0;
        hits[bin] += f64::from(u8::from(predicted == *target));
        confidences[bin] += confidence;
    }
    let reported: Vec<Vec<u64>> =
        serde_json::from_value(classification["confusion"].clone()).unwrap();
    assert_eq!(reported, confusion, "{classification}");
    let wrong: u64 = (0..3)
        .map(|t| {
            (0..3)
                .filter(|&p| p != t)
                .map(|p| confusion[t][p])
                .sum::<u64>()
        })
        .sum();
    assert!(
        wrong > 0,
        "the planted overlap should cause errors: {confusion:?}"
    );

    let total = answers.len() as f64;
    let ece: f64 = (0..15)
        .filter(|&b| counts[b] > 0.0)
        .map(|b| counts[b] / total * (hits[b] / counts[b] - confidences[b] / counts[b]).abs())
        .sum();
    let reported_ece = classification["calibration"]["ece"].as_f64().unwrap();
    assert!(
        (reported_ece - ece).abs() < 1e-6,
        "report {reported_ece}, recount {ece}"
    );
    assert_eq!(classification["calibration"]["bins"], 15);
    assert_eq!(classification["per_class"][0]["class"], "a-dim");
    assert_eq!(classification["per_class"][0]["support"], 20);
    assert_eq!(report["eval"]["samples"], 60);
}
