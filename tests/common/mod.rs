//! Helpers for tests that run the real `stoke` binary on real files.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub mod optional;
pub mod server;
pub mod shards;

/// A model of `config`'s kind for `spec`, freshly initialised on flex.
pub fn build(
    config: &stoke::config::ModelConfig,
    spec: &stoke::data::DataSpec,
) -> Box<dyn stoke::train::Net> {
    build_on(config, spec, &burn::prelude::Device::flex())
}

/// [`build`] on `device` (flex's autodiff device, to train it).
pub fn build_on(
    config: &stoke::config::ModelConfig,
    spec: &stoke::data::DataSpec,
    device: &burn::prelude::Device,
) -> Box<dyn stoke::train::Net> {
    stoke::registry::registry()
        .model_kind(&config.kind)
        .unwrap()
        .build(config, spec, device)
        .unwrap()
}

/// The repository root: tests run the binary from here so `datasets/` and `configs/` resolve.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `stoke` with the environment the tests expect: run from the repository root, progress as
/// plain lines, the Vulkan loader quiet.
pub fn stoke() -> Command {
    let mut command = Command::cargo_bin("stoke").expect("the stoke binary is built");
    command.current_dir(repo());
    let runtime_dir = std::env::temp_dir().join("stoke-test-xdg");
    fs::create_dir_all(&runtime_dir).unwrap();
    command.env("XDG_RUNTIME_DIR", runtime_dir);
    command
}

/// Overrides that keep a training run to a few seconds.
pub fn tiny(limit: usize, steps: usize) -> Vec<String> {
    vec![
        format!("data.limit={limit}"),
        format!("train.max_steps={steps}"),
        "train.progress=plain".into(),
        "data.workers=1".into(),
    ]
}

/// Runs `stoke train` into `run_dir` and returns its stderr; panics with the output on failure.
pub fn train(config: &str, sets: &[String], run_dir: &Path) -> String {
    let mut command = stoke();
    command.args(["train", config, "--run-dir"]).arg(run_dir);
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "stoke train failed:\n{stderr}");
    stderr
}

/// Runs `command`, panics with its stderr if it fails, and returns its stdout.
pub fn stdout_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The metrics.jsonl records of one split.
pub fn metrics(run_dir: &Path, split: &str) -> Vec<Value> {
    fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["split"] == split)
        .collect()
}

pub fn losses(run_dir: &Path, split: &str) -> Vec<f64> {
    metrics(run_dir, split)
        .iter()
        .map(|record| record["loss"].as_f64().unwrap())
        .collect()
}

/// Writes an IDX set in the MNIST layout (gzipped) with `count` random-ish 28×28 images.
pub fn write_fake_idx_dataset(dir: &Path, count: usize) {
    fs::create_dir_all(dir).unwrap();
    for prefix in ["train", "t10k"] {
        let mut images = vec![0, 0, 8, 3];
        for dim in [count as u32, 28, 28] {
            images.extend(dim.to_be_bytes());
        }
        images.extend((0..count * 784).map(|i| (i * 31 % 251) as u8));
        let mut labels = vec![0, 0, 8, 1];
        labels.extend((count as u32).to_be_bytes());
        labels.extend((0..count).map(|i| (i % 10) as u8));
        for (name, bytes) in [
            (format!("{prefix}-images-idx3-ubyte.gz"), images),
            (format!("{prefix}-labels-idx1-ubyte.gz"), labels),
        ] {
            let file = fs::File::create(dir.join(name)).unwrap();
            let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            encoder.write_all(&bytes).unwrap();
            encoder.finish().unwrap();
        }
    }
}

/// A CSV shaped like ggplot2's diamonds (its ten columns) with `rows` rows whose price
/// follows carat, cut and clarity, seeded.
pub fn write_fake_diamonds(path: &Path, rows: usize) {
    let mut random = SpamOrHam::new(11);
    let (cuts, colors, clarities) = (
        ["Fair", "Good", "Very Good", "Premium", "Ideal"],
        ["D", "E", "F", "G", "H", "I", "J"],
        ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"],
    );
    let mut text = String::from(
        "\"carat\",\"cut\",\"color\",\"clarity\",\"depth\",\"table\",\"price\",\"x\",\"y\",\"z\"\n",
    );
    for _ in 0..rows {
        let carat = 0.2 + random.next(300) as f64 / 100.0;
        let (cut, clarity) = (random.next(5), random.next(8));
        let price =
            300.0 + 4000.0 * carat * carat * (1.0 + 0.1 * cut as f64 + 0.05 * clarity as f64);
        let side = 4.0 + carat;
        text.push_str(&format!(
            "{carat:.2},\"{}\",\"{}\",\"{}\",{},{},{price:.0},{side:.2},{side:.2},{:.2}\n",
            cuts[cut],
            colors[random.next(7)],
            clarities[clarity],
            58 + random.next(6),
            54 + random.next(6),
            side * 0.6
        ));
    }
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A CSV shaped like MULAN's yeast (103 features `Att*`, 14 labels `Class*`) with `rows`
/// rows whose first labels follow the first features, seeded.
pub fn write_fake_yeast(path: &Path, rows: usize) {
    let mut random = SpamOrHam::new(13);
    let mut header: Vec<String> = (1..=103).map(|i| format!("Att{i}")).collect();
    header.extend((1..=14).map(|i| format!("Class{i}")));
    let mut text = header.join(",") + "\n";
    for _ in 0..rows {
        let features: Vec<f64> = (0..103)
            .map(|_| random.next(200) as f64 / 100.0 - 1.0)
            .collect();
        let mut row: Vec<String> = features.iter().map(|f| format!("{f:.3}")).collect();
        row.extend((0..14).map(|l| u8::from(features[l % 103] > 0.0).to_string()));
        text.push_str(&row.join(","));
        text.push('\n');
    }
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A small labelled set whose classes depend on the words: "spam" texts sell things.
pub fn write_labelled_set(dir: &Path, count: usize) {
    let mut words = SpamOrHam::new(7);
    let mut lines = String::new();
    for i in 0..count {
        let spam = i % 2 == 0;
        let text = words.text(spam, 8);
        let label = if spam { "spam" } else { "ham" };
        lines.push_str(&serde_json::json!({"text": text, "label": label}).to_string());
        lines.push('\n');
    }
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("train.jsonl"), lines).unwrap();
}

/// Texts whose class is told by their words, drawn from a seeded xorshift.
pub struct SpamOrHam(u64);

impl SpamOrHam {
    pub fn new(seed: u64) -> Self {
        SpamOrHam(seed)
    }

    pub fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// `min_words` to twice as many words, alternately telling (spam or ham) and filler.
    pub fn text(&mut self, spam: bool, min_words: usize) -> String {
        let telling = if spam {
            [
                "win", "free", "prize", "cheap", "offer", "click", "money", "now",
            ]
        } else {
            [
                "meeting", "notes", "tuesday", "review", "patch", "lunch", "draft", "team",
            ]
        };
        let filler = ["the", "a", "for", "and", "with", "your", "our", "this"];
        let count = min_words + self.next(min_words);
        let words: Vec<&str> = (0..count)
            .map(|j| {
                if j % 2 == 0 {
                    telling[self.next(8)]
                } else {
                    filler[self.next(8)]
                }
            })
            .collect();
        words.join(" ")
    }
}

/// `output` of a command that must have succeeded; panics with its stderr otherwise.
pub fn succeeded(output: std::process::Output) -> std::process::Output {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Overrides for a small, fast text classifier on `data` (a labelled JSONL set).
pub fn classifier_sets(data: &Path, backend: &str) -> Vec<String> {
    [
        format!("data.path={}", data.display()),
        format!("run.backend={backend}"),
        "data.tokenizer.vocab_size=64".into(),
        "data.text.max_length=24".into(),
        "model.d_model=32".into(),
        "model.n_layers=1".into(),
        "model.d_ff=64".into(),
        "train.batch_size=16".into(),
        "train.max_steps=40".into(),
        "train.log_every=5".into(),
        "train.progress=plain".into(),
        "optimizer.lr=3e-3".into(),
        "scheduler.warmup_steps=5".into(),
    ]
    .to_vec()
}

/// Overrides for a small, fast language model on the shipped Moby Dick corpus.
pub fn lm_sets(backend: &str) -> Vec<String> {
    [
        format!("run.backend={backend}"),
        "data.limit=300".into(),
        "data.text.context_length=32".into(),
        "data.text.stride=32".into(),
        "model.d_model=32".into(),
        "model.n_layers=1".into(),
        "model.n_heads=2".into(),
        "model.d_ff=64".into(),
        "train.batch_size=16".into(),
        "train.max_steps=40".into(),
        "train.log_every=5".into(),
        "train.eval_every=20".into(),
        "train.progress=plain".into(),
        "optimizer.lr=3e-3".into(),
        "scheduler.warmup_steps=5".into(),
    ]
    .to_vec()
}

/// An image folder of two classes of RGB photos of assorted sizes: red horizontal stripes or
/// blue vertical ones, `per_class` PNGs each.
pub fn write_photo_folder(dir: &Path, per_class: usize) {
    for (class, name) in ["stripes", "bars"].iter().enumerate() {
        let folder = dir.join(name);
        fs::create_dir_all(&folder).unwrap();
        for i in 0..per_class {
            let (width, height) = (40 + (i * 7) % 31, 36 + (i * 11) % 29);
            let image = image::RgbImage::from_fn(width as u32, height as u32, |x, y| {
                let on = match class {
                    0 => (y / 3 + i as u32).is_multiple_of(2),
                    _ => (x / 3 + i as u32).is_multiple_of(2),
                };
                let level = if on { 220 } else { 40 } as u8;
                match class {
                    0 => image::Rgb([level, 60, 50 + (x % 20) as u8]),
                    _ => image::Rgb([50 + (y % 20) as u8, 70, level]),
                }
            });
            image.save(folder.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

/// Starts the stoke binary with `args` and `--set` each of `sets`, with `STOKE_FAULT` =
/// `fault`, stderr piped: a run a crash test can kill.
#[allow(dead_code)]
pub fn spawn_with_fault(
    args: &[&std::ffi::OsStr],
    sets: &[String],
    fault: &str,
) -> std::process::Child {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("stoke"));
    command.current_dir(repo()).args(args);
    for set in sets {
        command.args(["--set", set]);
    }
    command
        .env("STOKE_FAULT", fault)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `python3 <script> <args>` from the repository and panics with its output if it fails
/// (the checks against PyTorch libraries in `scripts/`).
pub fn python_check(script: &str, args: &[&Path]) {
    let check = std::process::Command::new("python3")
        .arg(repo().join(script))
        .args(args)
        .output()
        .unwrap();
    // What the library measured, shown with --nocapture.
    eprint!("{}", String::from_utf8_lossy(&check.stdout));
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
