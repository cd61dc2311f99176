//! Runs people can see and compare: plots and metrics.csv in the run directory, `stoke
//! runs list|show|compare`, and gradient accumulation.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{metrics, read_json, stdout_of, stoke, train};

fn short(runs_dir: &Path, name: &str, lr: &str) -> Vec<String> {
    [
        format!("run.runs_dir={}", runs_dir.display()),
        format!("run.name={name}"),
        format!("optimizer.lr={lr}"),
        "run.backend=flex".into(),
        "data.limit=2000".into(),
        "train.epochs=3".into(),
        "train.batch_size=64".into(),
        "train.log_every=5".into(),
        "train.progress=plain".into(),
    ]
    .to_vec()
}

/// Pixels of `png` that are neither white nor grey: the drawn curves.
fn coloured_pixels(png: &Path) -> usize {
    let image = image::open(png).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (900, 500), "{}", png.display());
    image
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r.max(g).max(b) - r.min(g).min(b) > 60
        })
        .count()
}

#[test]
fn finished_runs_have_plots_and_csv_and_are_listed_and_compared() {
    let runs = tempfile::tempdir().unwrap();
    for (name, lr) in [("slow", "1e-4"), ("fast", "3e-3")] {
        let mut command = stoke();
        command.args(["train", "configs/mnist-mlp.toml"]);
        for set in short(runs.path(), name, lr) {
            command.args(["--set", &set]);
        }
        command.assert().success();
    }
    let run_dirs: Vec<_> = {
        let mut dirs: Vec<_> = fs::read_dir(runs.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        dirs
    };
    assert_eq!(run_dirs.len(), 2);
    let fast = run_dirs
        .iter()
        .find(|d| d.to_string_lossy().contains("fast"))
        .unwrap();

    // Plots: every chart as SVG and PNG, titled, with curves drawn.
    for chart in ["loss", "accuracy", "lr", "throughput"] {
        let svg = fs::read_to_string(fast.join(format!("plots/{chart}.svg"))).unwrap();
        assert!(svg.contains("step"), "{chart}.svg has its x axis label");
        assert!(
            coloured_pixels(&fast.join(format!("plots/{chart}.png"))) > 300,
            "{chart}.png"
        );
    }
    let svg = fs::read_to_string(fast.join("plots/loss.svg")).unwrap();
    assert!(svg.contains("Loss") && svg.contains("valid") && svg.contains("train"));
    // metrics.csv holds the records of metrics.jsonl.
    let csv = fs::read_to_string(fast.join("metrics.csv")).unwrap();
    let jsonl = fs::read_to_string(fast.join("metrics.jsonl")).unwrap();
    assert_eq!(csv.lines().count(), jsonl.lines().count() + 1);
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for column in [
        "step", "epoch", "split", "loss", "lr", "accuracy", "macro_f1",
    ] {
        assert!(header.contains(&column), "{column}: {header:?}");
    }
    assert_eq!(read_json(&fast.join("status.json"))["state"], "finished");

    let list = stdout_of(
        stoke()
            .args(["runs", "list", "--runs-dir"])
            .arg(runs.path()),
    );
    assert_eq!(list.matches("finished").count(), 2, "{list}");
    let best = metrics(fast, "valid")
        .iter()
        .map(|r| r["accuracy"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        list.contains(&format!("{:.2} % acc", best * 100.0)),
        "{list}"
    );

    let out = runs.path().join("compare");
    let compare = stdout_of(
        stoke()
            .args(["runs", "compare"])
            .args(&run_dirs)
            .arg("--out")
            .arg(&out),
    );
    assert!(compare.contains("optimizer.lr"), "{compare}");
    assert!(
        compare.contains("0.0001") && compare.contains("0.003"),
        "{compare}"
    );
    assert!(!compare.contains("run.name"), "{compare}");
    // Per-class F1 from each run's report, the second run's with its change from the first.
    assert!(compare.contains("per-class F1"), "{compare}");
    let f1 = |dir: &PathBuf, class: usize| {
        read_json(&dir.join("report/report.json"))["classification"]["per_class"][class]["f1"]
            .as_f64()
            .unwrap()
    };
    for class in 0..10 {
        let (first, second) = (f1(&run_dirs[0], class), f1(&run_dirs[1], class));
        let line = compare
            .lines()
            .find(|line| line.starts_with(&format!("  {class:<5} ")))
            .unwrap_or_else(|| panic!("no line for class {class} in\n{compare}"));
        let expected = format!("{first:.4} {second:.4} ({:+.4})", second - first);
        let cells = line
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(cells, expected, "{compare}");
    }
    let overlay = fs::read_to_string(out.join("compare-loss.svg")).unwrap();
    for dir in &run_dirs {
        let name = dir.file_name().unwrap().to_string_lossy();
        assert!(
            overlay.contains(name.as_ref()),
            "the overlay has a curve for {name}"
        );
    }
    assert!(coloured_pixels(&out.join("compare-accuracy.png")) > 300);

    // A run whose process died while running is listed as killed.
    let status = fast.join("status.json");
    fs::write(
        &status,
        r#"{"state": "running", "pid": 4000000, "updated": "now"}"#,
    )
    .unwrap();
    let list = stdout_of(
        stoke()
            .args(["runs", "list", "--runs-dir"])
            .arg(runs.path()),
    );
    assert!(list.contains("killed"), "{list}");
    let show = stdout_of(stoke().args(["runs", "show"]).arg(fast));
    assert!(show.contains("status    killed"), "{show}");
}

#[test]
fn gradient_accumulation_matches_the_larger_batch() {
    let run = |batch: usize, accum: usize| {
        let dir = tempfile::tempdir().unwrap();
        let sets: Vec<String> = [
            "run.backend=flex".to_string(),
            "data.limit=1000".into(),
            "model.dropout=0".into(),
            "model.hidden=[32]".into(),
            format!("train.batch_size={batch}"),
            format!("train.grad_accum_steps={accum}"),
            "train.max_steps=12".into(),
            "train.log_every=3".into(),
            "train.progress=plain".into(),
        ]
        .to_vec();
        train("configs/mnist-mlp.toml", &sets, dir.path());
        let losses: Vec<f64> = metrics(dir.path(), "train")
            .iter()
            .chain(metrics(dir.path(), "valid").iter())
            .map(|r| r["loss"].as_f64().unwrap())
            .collect();
        (dir, losses)
    };
    let (_whole, whole) = run(96, 1);
    let (_accumulated, accumulated) = run(24, 4);
    assert_eq!(whole.len(), accumulated.len());
    assert!(whole.len() >= 5);
    for (a, b) in whole.iter().zip(&accumulated) {
        assert!(
            (a - b).abs() < 1e-4 * a.abs().max(1.0),
            "{whole:?}\nvs\n{accumulated:?}"
        );
    }
    // Accumulating does change the result when the step batch differs.
    let (_small, small) = run(24, 1);
    assert!(small.iter().zip(&whole).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn lr_find_suggests_a_rate_near_the_shipped_one_and_overfit_batches_fit() {
    let out = tempfile::tempdir().unwrap();
    let report = stdout_of(
        stoke()
            .args([
                "lr-find",
                "configs/mnist-mlp.toml",
                "--backend",
                "flex",
                "--out",
            ])
            .arg(out.path()),
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let (suggested, shipped) = (
        report["suggested_lr"].as_f64().unwrap(),
        report["config_lr"].as_f64().unwrap(),
    );
    assert!(
        suggested > shipped / 10.0 && suggested < shipped * 10.0,
        "suggested {suggested}, shipped {shipped}"
    );
    assert!(report["points"].as_array().unwrap().len() > 50);
    assert!(coloured_pixels(&out.path().join("lr-find.png")) > 300);

    // Two batches of 32 are fitted completely.
    let run = tempfile::tempdir().unwrap();
    let sets: Vec<String> = [
        "run.backend=flex",
        "data.limit=2000",
        "train.overfit_batches=2",
        "train.batch_size=32",
        "train.epochs=60",
        "model.dropout=0",
        "optimizer.lr=3e-3",
        "scheduler.kind=constant",
        "train.progress=plain",
    ]
    .map(String::from)
    .to_vec();
    let stderr = train("configs/mnist-mlp.toml", &sets, run.path());
    assert!(stderr.contains("on the same 64 samples"), "{stderr}");
    let summary = read_json(&run.path().join("summary.json"));
    assert_eq!(summary["valid"]["accuracy"], 1.0, "{summary}");
    assert_eq!(summary["steps"], 120);
}

#[test]
fn top_k_accuracy_is_reported_and_bounded_by_the_classes() {
    let run = tempfile::tempdir().unwrap();
    let sets: Vec<String> = [
        "run.backend=flex",
        "data.limit=600",
        "train.top_k=3",
        "train.max_steps=12",
        "train.log_every=4",
        "train.progress=plain",
    ]
    .map(String::from)
    .to_vec();
    let stderr = train("configs/mnist-mlp.toml", &sets, run.path());
    assert!(stderr.contains("top-k"), "{stderr}");
    for split in ["train", "valid", "test"] {
        for record in metrics(run.path(), split) {
            let (top1, top3) = (
                record["accuracy"].as_f64().unwrap(),
                record["top_k_accuracy"].as_f64().unwrap(),
            );
            assert!(top3 >= top1 && top3 <= 1.0, "{record}");
        }
    }
    let csv = fs::read_to_string(run.path().join("metrics.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with("top_k_accuracy"));
    stoke()
        .args(["check", "configs/mnist-mlp.toml", "--set", "train.top_k=1"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("train.top_k"));
    let dir = tempfile::tempdir().unwrap();
    stoke()
        .args([
            "train",
            "configs/mnist-mlp.toml",
            "--set",
            "train.top_k=10",
            "--run-dir",
        ])
        .arg(dir.path().join("run"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("below the 10 classes"));
}

/// The event file holds every metric record as `<split>/<metric>` scalars; TensorBoard's own
/// reader (python `tensorboard`, required where CI sets STOKE_REQUIRE_PYTHON) reads it back.
#[test]
fn tensorboard_event_files_hold_the_metrics() {
    let run = tempfile::tempdir().unwrap();
    let mut sets = common::tiny(600, 12);
    sets.extend([
        "log.tensorboard=true".to_string(),
        "train.log_every=4".into(),
    ]);
    train("configs/mnist-mlp.toml", &sets, run.path());
    let dir = run.path().join("tensorboard");
    let file = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    assert!(
        file.file_name()
            .unwrap()
            .to_string_lossy()
            .contains("tfevents")
    );
    let events = stoke::run::tensorboard::read(&fs::read(&file).unwrap()).expect("valid framing");
    let scalars: Vec<(String, i64, f32)> = events
        .iter()
        .filter_map(|e| match &e.what {
            Some(stoke::run::tensorboard::What::Summary(s)) => Some((e.step, s)),
            _ => None,
        })
        .flat_map(|(step, s)| {
            s.value
                .iter()
                .map(move |v| (v.tag.clone(), step, v.simple_value))
        })
        .collect();
    let valid = metrics(run.path(), "valid");
    assert!(!valid.is_empty());
    for record in &valid {
        let step = record["step"].as_i64().unwrap();
        let loss = record["loss"].as_f64().unwrap() as f32;
        assert!(
            scalars.contains(&("valid/loss".into(), step, loss)),
            "{scalars:?}"
        );
    }

    if !common::optional::available(&common::optional::TENSORBOARD) {
        return;
    }
    let script = format!(
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
         a = EventAccumulator({:?}); a.Reload()\n\
         print(*[f'{{e.step}} {{e.value}}' for e in a.Scalars('valid/loss')])",
        dir.display().to_string()
    );
    let output = common::succeeded(
        std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap(),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let last = valid.last().unwrap();
    assert!(
        text.contains(&format!("{} ", last["step"])),
        "tensorboard read {text}"
    );
}
