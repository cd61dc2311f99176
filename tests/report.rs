//! Evaluation reports through the binary. The classification report's confusion matrix
//! equals a count made independently from `stoke predict`'s answers on the same test images,
//! and its expected calibration error one recomputed from predict's probabilities; a slice
//! planted with label noise is flagged and clean ones are not; a language model's report
//! has its loss by position; the page renders in headless Chromium with every section.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{
    SpamOrHam, classifier_sets, lm_sets, read_json, stdout_of, stoke, succeeded, tiny, train,
};
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
    // A data report for the page to link, and an attribute per test image to slice by.
    stdout_of(
        stoke()
            .args(["data", "inspect"])
            .arg(data.path())
            .arg("--report")
            .arg(run.path().join("data-report.json")),
    );
    let slice_file = data.path().join("lighting.csv");
    let mut rows = String::from("path,lighting\n");
    for (i, (path, _)) in test_files.iter().enumerate() {
        let relative = path.strip_prefix(data.path()).unwrap();
        let lighting = ["indoor", "outdoor"][i % 2];
        rows.push_str(&format!("{},{lighting}\n", relative.display()));
    }
    fs::write(&slice_file, rows).unwrap();
    let report_dir = run.path().join("evaluation");
    stdout_of(
        stoke()
            .arg("eval")
            .arg(run.path())
            .args(["--backend", "flex", "--report"])
            .arg(&report_dir)
            .arg("--slice-file")
            .arg(&slice_file),
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

    // The worst errors are wrong, most confident first, and point at their files.
    let worst = report["worst_errors"].as_array().unwrap();
    assert_eq!(worst.len() as u64, wrong.min(16));
    for pair in worst.windows(2) {
        assert!(pair[0]["confidence"].as_f64() >= pair[1]["confidence"].as_f64());
    }
    for error in worst {
        assert_ne!(error["true_class"], error["predicted"]);
        let location = error["location"].as_str().unwrap();
        assert!(Path::new(location).is_file(), "{location}");
    }
    for file in [
        "index.html",
        "confusion.svg",
        "confusion.png",
        "reliability.svg",
        "reliability.png",
        "worst-errors.png",
    ] {
        assert!(report_dir.join(file).is_file(), "{file} missing");
    }
    let grid = image::open(report_dir.join("worst-errors.png")).unwrap();
    assert!(grid.width() >= 200 && grid.height() >= 160);

    let slices = &report["slices"];
    assert_eq!(slices["attribute"], "lighting");
    let sizes: Vec<u64> = (0..2)
        .map(|i| slices["slices"][i]["samples"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [30, 30], "{slices}");
    assert!(
        report["data_report"]
            .as_str()
            .unwrap()
            .ends_with("data-report.json")
    );
    page_renders_in_chromium(&report_dir.join("index.html"));

    // Training wrote the same report for its test split at the end of the run.
    let at_end = read_json(&run.path().join("report/report.json"));
    assert_eq!(
        at_end["classification"]["confusion"],
        classification["confusion"]
    );
    assert!(run.path().join("report/index.html").is_file());
}

/// Labelled texts whose class is told by their words, from four sources; the labels of
/// `noisy` are flipped for 30 % of its records, in training and test alike.
fn write_sourced_texts(dir: &Path, noisy: &str) {
    let mut words = SpamOrHam::new(11);
    fs::create_dir_all(dir).unwrap();
    for (file, count) in [("train.jsonl", 1200), ("test.jsonl", 480)] {
        let mut lines = String::new();
        for i in 0..count {
            let source = ["news", "mail", "chat", "forum"][i % 4];
            let is_spam = (i / 4) % 2 == 0;
            let flipped = source == noisy && (i / 4) % 10 < 3;
            let label = if is_spam != flipped { "spam" } else { "ham" };
            let record = serde_json::json!({
                "id": format!("{file}-{i}"),
                "text": words.text(is_spam, 8),
                "label": label,
                "source": source,
            });
            lines.push_str(&record.to_string());
            lines.push('\n');
        }
        fs::write(dir.join(file), lines).unwrap();
    }
}

#[test]
fn a_slice_planted_with_label_noise_is_flagged_and_clean_slices_are_not() {
    let data = tempfile::tempdir().unwrap();
    write_sourced_texts(data.path(), "forum");
    let run = tempfile::tempdir().unwrap();
    let mut sets = classifier_sets(data.path(), "flex");
    sets.extend([
        "train.max_steps=120".to_string(),
        "eval.slice_by=\"source\"".into(),
    ]);
    train("configs/spam-transformer.toml", &sets, run.path());

    // At the end of training (eval.slice_by), and again from `stoke eval --slice-by`.
    let at_end = read_json(&run.path().join("report/report.json"));
    let report_dir = run.path().join("again");
    let output = stoke()
        .arg("eval")
        .arg(run.path())
        .args(["--slice-by", "source", "--report"])
        .arg(&report_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("slice source=forum"), "{stderr}");
    let report = read_json(&report_dir.join("report.json"));
    assert_eq!(report["slices"], at_end["slices"]);

    let slices = report["slices"]["slices"].as_array().unwrap();
    assert_eq!(slices.len(), 4, "{slices:?}");
    let by_value = |value: &str| slices.iter().find(|s| s["value"] == value).unwrap();
    let forum = by_value("forum");
    assert_eq!(forum["samples"], 120);
    assert_eq!(forum["flagged"], true, "{forum}");
    assert!(forum["accuracy"].as_f64().unwrap() < 0.85, "{forum}");
    for clean in ["news", "mail", "chat"] {
        let slice = by_value(clean);
        assert_eq!(slice["flagged"], false, "{slice}");
        assert!(slice["accuracy"].as_f64().unwrap() > 0.9, "{slice}");
    }
    // The worst errors are texts with their file and line.
    let worst = report["worst_errors"].as_array().unwrap();
    assert!(!worst.is_empty());
    let location = worst[0]["location"].as_str().unwrap();
    assert!(location.contains("test.jsonl:"), "{location}");
    assert!(worst[0]["text"].as_str().is_some_and(|t| !t.is_empty()));
    let id = worst[0]["id"].as_str().unwrap();
    let line: usize = location.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        id,
        format!("test.jsonl-{}", line - 1),
        "the id of the record at {location}"
    );

    // A field the records lack is named, with exit 2.
    let output = stoke()
        .arg("eval")
        .arg(run.path())
        .args(["--slice-by", "region"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"region\""), "{stderr}");
}

#[test]
fn a_language_models_report_has_loss_by_position_and_the_hardest_tokens() {
    let run = tempfile::tempdir().unwrap();
    train(
        "configs/mobydick-char-lm.toml",
        &lm_sets("flex"),
        run.path(),
    );
    let report = read_json(&run.path().join("report/report.json"));
    let language = &report["language_model"];
    let by_position = language["loss_by_position"].as_array().unwrap();
    assert_eq!(by_position.len(), 32);
    // Every position holds as many tokens, so the curve's mean is the split's loss.
    let mean = by_position.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 32.0;
    let loss = report["eval"]["loss"].as_f64().unwrap();
    assert!(
        (mean - loss).abs() < 1e-3 * loss,
        "curve mean {mean}, loss {loss}"
    );
    // Without a test split, the report is of the validation split.
    assert_eq!(report["split"], "valid");
    let tokens = language["highest_loss_tokens"].as_array().unwrap();
    assert!(!tokens.is_empty());
    assert!(tokens[0]["mean_loss"].as_f64() >= tokens[tokens.len() - 1]["mean_loss"].as_f64());
    assert!(run.path().join("report/loss-by-position.svg").is_file());
    assert!(report.get("classification").is_none());
}

/// Headless Chromium from the distribution renders the page with every section; the
/// screenshot is kept where STOKE_REPORT_SCREENSHOT says (to look at). Skipped without a
/// Chromium, except in CI (`common::optional`).
fn page_renders_in_chromium(page: &Path) {
    if !common::optional::available(&common::optional::CHROMIUM) {
        return;
    }
    let chromium = common::optional::chromium().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let headless = |extra: &[&str]| {
        succeeded(
            std::process::Command::new(chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .args(extra)
                .arg(&url)
                .output()
                .unwrap(),
        )
    };
    let dom = String::from_utf8(headless(&["--dump-dom"]).stdout).unwrap();
    for section in [
        "summary",
        "per-class",
        "confusion",
        "calibration",
        "slices",
        "errors",
        "curves",
        "config",
        "data",
    ] {
        assert!(
            dom.contains(&format!("<section id=\"{section}\">")),
            "section {section} missing from the rendered page"
        );
    }
    // The confusion matrix, the reliability diagram and the training curves, inline.
    assert!(
        dom.matches("<svg").count() >= 4,
        "too few charts in the page"
    );
    assert!(dom.contains("data:image/png;base64,"));
    assert!(dom.contains("data-report.json"));
    // Self-contained: no script, nothing fetched from the network.
    assert!(!dom.contains("<script"));
    assert!(!dom.contains("src=\"http") && !dom.contains("href=\"http"));

    let screenshot = match std::env::var_os("STOKE_REPORT_SCREENSHOT") {
        Some(path) => PathBuf::from(path),
        None => profile.path().join("page.png"),
    };
    headless(&[
        &format!("--screenshot={}", screenshot.display()),
        "--window-size=1280,5200",
    ]);
    let shot = image::open(&screenshot).unwrap().to_rgb8();
    // Not a blank page: many pixels are neither white nor one colour.
    let inked = shot.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(
        inked > (shot.width() * shot.height() / 50) as usize,
        "the screenshot is nearly blank"
    );
}
