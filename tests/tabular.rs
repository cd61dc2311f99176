//! Tables with no Rust written: regression and multi-label classification on CSV columns
//! (`dataset = "tabular"`, `kind = "tabular-mlp"`), their metrics, reports and predictions,
//! and the messages bad tables get.

mod common;

use std::fs;
use std::path::Path;

use common::{metrics, read_json, stdout_of, stoke, write_fake_diamonds, write_fake_yeast};

fn sets(data: &Path, extra: &[&str]) -> Vec<String> {
    let mut sets: Vec<String> = [
        "run.backend=flex",
        "data.workers=1",
        "train.epochs=3",
        "train.batch_size=32",
        "train.log_every=5",
        "train.progress=plain",
        "model.hidden=[32]",
    ]
    .map(String::from)
    .to_vec();
    sets.push(format!("data.path={}", data.display()));
    sets.extend(extra.iter().map(|s| s.to_string()));
    sets
}

fn train(config: &str, sets: &[String], run: &Path) -> std::process::Output {
    let mut command = stoke();
    command.args(["train", config, "--run-dir"]).arg(run);
    for set in sets {
        command.args(["--set", set]);
    }
    command.output().unwrap()
}

#[test]
fn a_regression_on_a_csv_trains_reports_and_predicts_in_the_targets_units() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("diamonds.csv");
    write_fake_diamonds(&data, 600);
    let run = dir.path().join("run");
    let output = common::succeeded(train(
        "configs/diamonds-tabular.toml",
        &sets(
            &data,
            &[
                "checkpoint.monitor=valid.rmse",
                "scheduler.warmup_steps=5",
                "train.epochs=10",
            ],
        ),
        &run,
    ));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RMSE"), "{stderr}");
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["data"]["task"], "tabular");
    let test = &summary["test"];
    for metric in ["mae", "rmse", "r2"] {
        assert!(test[metric].is_number(), "{metric}: {test}");
    }
    // In dollars: the fake prices run from about 300 to 40,000, and the model beats their mean.
    assert!(test["rmse"].as_f64().unwrap() > 10.0, "{test}");
    assert!(test["r2"].as_f64().unwrap() > 0.3, "{test}");
    let valid = metrics(&run, "valid");
    assert!(
        valid
            .iter()
            .all(|r| r["rmse"].is_number() && r.get("accuracy").is_none())
    );
    // The best checkpoint is the one of the lowest validation RMSE.
    let best = summary["best"]["value"].as_f64().unwrap();
    let lowest = valid
        .iter()
        .map(|r| r["rmse"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!((best - lowest).abs() < 1e-9, "best {best}, lowest {lowest}");

    // The report: each target's scores and the rows predicted worst.
    let report = read_json(&run.join("report/report.json"));
    let target = &report["regression"]["targets"][0];
    assert_eq!(target["target"], "price");
    assert!((target["rmse"].as_f64().unwrap() - test["rmse"].as_f64().unwrap()).abs() < 0.5);
    assert!(
        !report["regression"]["worst_rows"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let page = fs::read_to_string(run.join("report/index.html")).unwrap();
    assert!(page.contains("Per target") && page.contains("price"));
    assert!(run.join("plots/rmse.svg").is_file());

    // Predictions from an exported model, in dollars, one per row; a bad row alone fails.
    let model = dir.path().join("model");
    stdout_of(stoke().arg("export").arg(&run).arg("--out").arg(&model));
    let rows = dir.path().join("rows.csv");
    fs::write(
        &rows,
        "carat,cut,color,clarity,depth,table,x,y,z\n\
         0.3,Ideal,E,SI1,61,55,4.3,4.3,2.6\n\
         2.5,Premium,G,VS1,62,58,6.5,6.5,3.9\n\
         big,Ideal,E,SI1,61,55,4.3,4.3,2.6\n",
    )
    .unwrap();
    let output = stoke()
        .args(["predict", "--backend", "flex"])
        .arg(&model)
        .arg("--rows")
        .arg(&rows)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let answers: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(answers.len(), 3);
    let small = answers[0]["values"]["price"].as_f64().unwrap();
    let large = answers[1]["values"]["price"].as_f64().unwrap();
    assert!(large > small, "{answers:?}");
    assert!(answers[2]["error"].as_str().unwrap().contains("carat"));
}

#[test]
fn a_multi_label_table_reports_each_label() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("yeast.csv");
    write_fake_yeast(&data, 400);
    let run = dir.path().join("run");
    common::succeeded(train(
        "configs/yeast-multilabel.toml",
        &sets(
            &data,
            &["train.epochs=15", "optimizer.lr=3e-3", "model.dropout=0.0"],
        ),
        &run,
    ));
    let summary = read_json(&run.join("summary.json"));
    let test = &summary["test"];
    for metric in ["micro_f1", "macro_f1", "exact_match"] {
        assert!(test[metric].is_number(), "{metric}: {test}");
    }
    // The fake labels follow the features: far better than chance.
    assert!(test["micro_f1"].as_f64().unwrap() > 0.6, "{test}");
    let report = read_json(&run.join("report/report.json"));
    let labels = report["multi_label"]["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 14);
    assert_eq!(labels[0]["label"], "Class1");
    for key in ["precision", "recall", "f1", "support"] {
        assert!(labels[0][key].is_number(), "{key}");
    }
    let page = fs::read_to_string(run.join("report/index.html")).unwrap();
    assert!(page.contains("Per label") && page.contains("Class14"));
}

#[test]
fn categories_unseen_in_training_are_read_as_unknown_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("table.csv");
    let mut text = String::from("size,colour,split,y\n");
    for i in 0..120 {
        let (colour, split) = match i % 10 {
            0 => ("violet", "test"),
            1 => ("red", "valid"),
            _ => (if i % 2 == 0 { "red" } else { "blue" }, "train"),
        };
        text.push_str(&format!("{},{colour},{split},{}\n", i % 7, 2 * (i % 7)));
    }
    fs::write(&data, text).unwrap();
    let config = dir.path().join("table.toml");
    fs::write(
        &config,
        format!(
            "[data]\ndataset = \"tabular\"\npath = \"{}\"\n\n[data.tabular]\nnumeric = [\"size\"]\n\
             categorical = [\"colour\"]\ntargets = [\"y\"]\nsplit_column = \"split\"\n\n\
             [model]\nkind = \"tabular-mlp\"\nhidden = [8]\n\n[train]\nepochs = 1\nbatch_size = 16\n",
            data.display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let output = common::succeeded(train(config.to_str().unwrap(), &[], &run));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("colour: 12"), "{stderr}");
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["unseen_categories"]["colour"], 12);
    assert_eq!(summary["test"]["samples"], 12);
}

#[test]
fn bad_tables_are_refused_with_the_file_the_line_and_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("diamonds.csv");
    write_fake_diamonds(&data, 50);
    let config = "configs/diamonds-tabular.toml";
    let refused = |extra: &[&str], expected: &[&str]| {
        let output = train(config, &sets(&data, extra), &dir.path().join("never"));
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for part in expected {
            assert!(stderr.contains(part), "{part}: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    // A column the file lacks.
    refused(
        &["data.tabular.targets=[\"cost\"]"],
        &["diamonds.csv", "no column \"cost\"", "price"],
    );
    // A key of another task, and a monitor this task does not report.
    refused(&["task.threshold=0.3"], &["task.threshold", "regression"]);
    refused(
        &["checkpoint.monitor=valid.accuracy"],
        &["valid.accuracy", "valid.rmse"],
    );
    // A value that is not a number, at its line; skipped and counted with on_error = "skip".
    let text = fs::read_to_string(&data).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let bad = lines[7].replacen(|c: char| c.is_ascii_digit(), "x", 1);
    lines[7] = &bad;
    fs::write(&data, lines.join("\n") + "\n").unwrap();
    refused(&[], &["diamonds.csv:8", "carat", "is not a number"]);
    let run = dir.path().join("lenient");
    common::succeeded(train(config, &sets(&data, &["data.on_error=skip"]), &run));
    assert_eq!(
        read_json(&run.join("summary.json"))["skipped_records"]["count"],
        1
    );
}
