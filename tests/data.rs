//! Data at scale: synthetic shards, packing, streamed training within a memory budget,
//! Parquet files, and `stoke data inspect` on a dataset with planted problems.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray};
use common::{read_json, stdout_of, stoke, train};
use parquet::arrow::ArrowWriter;
use predicates::prelude::*;

/// `stoke data synth` of `records` training and `test` test records into `dir`, in shards
/// of about 40 KiB (52 records).
fn synth(dir: &Path, records: usize, test: usize, seed: u64) {
    stoke()
        .args(["data", "synth", "--out"])
        .arg(dir)
        .args(["--records", &records.to_string()])
        .args(["--test-records", &test.to_string()])
        .args(["--shard-size", "40KiB", "--seed", &seed.to_string()])
        .assert()
        .success()
        .stderr(predicate::str::contains("train: "));
}

/// The MNIST MLP, small and short, on the shards in `dir`.
fn streamed(dir: &Path) -> Vec<String> {
    [
        "data.dataset=image-shards".to_string(),
        format!("data.path={}", dir.display()),
        "data.shuffle_buffer=64".into(),
        "data.memory_budget=64MiB".into(),
        "data.workers=1".into(),
        "model.hidden=[32]".into(),
        "train.batch_size=32".into(),
        "train.max_steps=30".into(),
        "train.log_every=10".into(),
        "train.progress=plain".into(),
    ]
    .to_vec()
}

#[test]
fn synthetic_shards_are_seeded_and_train_streamed_within_the_budget() {
    let data = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        data.path().join("a"),
        data.path().join("b"),
        data.path().join("c"),
    );
    synth(&a, 600, 100, 1);
    synth(&b, 600, 100, 1);
    synth(&c, 600, 100, 2);
    let manifest = read_json(&a.join("shards.json"));
    assert_eq!(manifest["splits"]["train"].as_array().unwrap().len(), 12);
    assert_eq!(manifest["image"]["height"], 28);
    let shard = "train-00003-images-idx3-ubyte";
    let bytes = |dir: &Path| fs::read(dir.join(shard)).unwrap();
    assert_eq!(bytes(&a), bytes(&b), "the same seed writes the same shards");
    assert_ne!(bytes(&a), bytes(&c), "another seed writes other shards");
    assert_eq!(bytes(&a).len(), 16 + 52 * 784);

    let run = tempfile::tempdir().unwrap();
    let stderr = train("configs/mnist-mlp.toml", &streamed(&a), run.path());
    assert!(stderr.contains("of the 64.0 MiB budget"), "{stderr}");
    let summary = read_json(&run.path().join("summary.json"));
    assert_eq!(summary["steps"], 30);
    assert!(
        summary["test"]["accuracy"].as_f64().unwrap() > 0.2,
        "{summary}"
    );

    // Shards without a manifest are found by name.
    fs::remove_file(a.join("shards.json")).unwrap();
    let again = tempfile::tempdir().unwrap();
    train("configs/mnist-mlp.toml", &streamed(&a), again.path());
}

#[test]
fn damaged_shards_and_small_budgets_are_refused_with_their_reason() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("shards");
    synth(&dir, 200, 50, 0);
    let check = |sets: &[String]| {
        let mut command = stoke();
        command.args(["check", "configs/mnist-mlp.toml"]);
        for set in sets {
            command.args(["--set", set]);
        }
        command.assert()
    };
    // A budget smaller than the labels and batches in flight.
    let mut tight = streamed(&dir);
    tight.push("data.memory_budget=2KiB".into());
    tight.push("train.eval_batch_size=100".into());
    stoke()
        .args(["train", "configs/mnist-mlp.toml", "--run-dir"])
        .arg(data.path().join("run"))
        .args(tight.iter().flat_map(|s| ["--set", s.as_str()]))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "data.memory_budget = 2KiB is too small",
        ));
    // MNIST in memory does not fit 10 MiB: the message points at packing it into shards.
    stoke()
        .args(["train", "configs/mnist-mlp.toml", "--run-dir"])
        .arg(data.path().join("run2"))
        .args(["--set", "data.memory_budget=10MiB"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("stoke data pack"));
    check(&["data.memory_budget=12 parsecs".into()])
        .code(2)
        .stderr(
            predicate::str::contains("data.memory_budget")
                .and(predicate::str::contains("unknown unit")),
        );
    // A truncated shard is named with what its header promised.
    let shard = dir.join("train-00001-images-idx3-ubyte");
    let bytes = fs::read(&shard).unwrap();
    fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    check(&streamed(&dir)).code(2).stderr(
        predicate::str::contains("train-00001-images-idx3-ubyte")
            .and(predicate::str::contains("the header promises")),
    );
}

#[test]
fn pack_writes_an_in_memory_dataset_as_shards_that_train() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("packed");
    stoke()
        .args([
            "data",
            "pack",
            "configs/mnist-cnn.toml",
            "--set",
            "data.limit=300",
            "--out",
        ])
        .arg(&out)
        .args(["--shard-size", "64KiB"])
        .assert()
        .success()
        .stderr(predicate::str::contains("train: 300 records in 4 shards"));
    let manifest = read_json(&out.join("shards.json"));
    assert_eq!(manifest["splits"]["test"][0]["records"], 83);
    // Packing again into the same place is refused rather than mixing two datasets.
    stoke()
        .args([
            "data",
            "pack",
            "configs/mnist-cnn.toml",
            "--set",
            "data.limit=300",
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    let run = tempfile::tempdir().unwrap();
    train("configs/mnist-mlp.toml", &streamed(&out), run.path());
}

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_text_and_image_files_train_end_to_end() {
    let data = tempfile::tempdir().unwrap();
    // Texts: the labelled set of the text tests, as a Parquet file with string labels.
    let jsonl = data.path().join("jsonl");
    common::write_labelled_set(&jsonl, 200);
    let (texts, labels): (Vec<String>, Vec<String>) = fs::read_to_string(jsonl.join("train.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                record["text"].as_str().unwrap().to_string(),
                record["label"].as_str().unwrap().to_string(),
            )
        })
        .unzip();
    let text_dir = data.path().join("texts");
    fs::create_dir_all(&text_dir).unwrap();
    write_parquet(
        &text_dir.join("train.parquet"),
        vec![
            ("text", Arc::new(StringArray::from(texts)) as ArrayRef),
            ("label", Arc::new(StringArray::from(labels)) as ArrayRef),
        ],
    );
    let run = tempfile::tempdir().unwrap();
    train(
        "configs/spam-transformer.toml",
        &common::classifier_sets(&text_dir, "flex"),
        run.path(),
    );
    let summary = read_json(&run.path().join("summary.json"));
    assert!(
        summary["test"]["accuracy"].as_f64().unwrap() > 0.6,
        "{summary}"
    );

    // Images: PNG bytes with integer labels, class c a bright square at column 4c.
    let (mut images, mut classes) = (Vec::new(), Vec::new());
    for i in 0..120usize {
        let class = i % 3;
        let picture = image::GrayImage::from_fn(12, 12, |x, y| {
            let inside = (x as usize / 4 == class) && (4..8).contains(&y);
            image::Luma([if inside { 230 } else { (i * 7 % 40) as u8 }])
        });
        let mut png = Vec::new();
        picture
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        images.push(png);
        classes.push(class as i64);
    }
    images[5] = b"not a png".to_vec();
    let image_file = data.path().join("images.parquet");
    write_parquet(
        &image_file,
        vec![
            (
                "image",
                Arc::new(BinaryArray::from_iter_values(images)) as ArrayRef,
            ),
            ("label", Arc::new(Int64Array::from(classes)) as ArrayRef),
        ],
    );
    let sets = |extra: &[&str]| -> Vec<String> {
        let mut sets: Vec<String> = [
            "data.dataset=image-parquet".to_string(),
            format!("data.path={}", image_file.display()),
            "data.image.size=[12, 12]".into(),
            "model.hidden=[16]".into(),
            "train.batch_size=16".into(),
            "train.max_steps=60".into(),
            "optimizer.lr=3e-3".into(),
            "train.progress=plain".into(),
        ]
        .to_vec();
        sets.extend(extra.iter().map(|s| s.to_string()));
        sets
    };
    // The undecodable row stops the load, named; skipped, it is counted.
    stoke()
        .args(["train", "configs/mnist-mlp.toml", "--run-dir"])
        .arg(data.path().join("refused"))
        .args(sets(&[]).iter().flat_map(|s| ["--set", s.as_str()]))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("images.parquet:6")
                .and(predicate::str::contains("cannot decode")),
        );
    let run = tempfile::tempdir().unwrap();
    train(
        "configs/mnist-mlp.toml",
        &sets(&["data.on_error=skip"]),
        run.path(),
    );
    let summary = read_json(&run.path().join("summary.json"));
    assert_eq!(summary["skipped_records"]["count"], 1);
    assert!(
        summary["test"]["accuracy"].as_f64().unwrap() > 0.6,
        "{summary}"
    );
}

#[test]
fn inspect_finds_planted_problems() {
    let dir = tempfile::tempdir().unwrap();
    let line =
        |text: &str, label: &str| serde_json::json!({"text": text, "label": label}).to_string();
    let mut train: Vec<String> = (0..40)
        .map(|i| {
            line(
                &format!("message number {i} about {}", ["lunch", "patches"][i % 2]),
                ["ham", "spam"][i % 2],
            )
        })
        .collect();
    train.extend((0..3).map(|i| line(&format!("a rare bird {i}"), "rare")));
    train.push(train[4].clone()); // duplicate 1
    train.push(train[7].clone()); // duplicate 2
    train.insert(10, "{\"text\": \"cut off".into()); // corrupt 1
    train.insert(
        20,
        line("no label here", "x").replace("\"label\"", "\"tag\""),
    ); // corrupt 2
    train.insert(30, "\u{0}not json".into()); // corrupt 3
    let mut test: Vec<String> = (100..110)
        .map(|i| line(&format!("message number {i} about lunch"), "ham"))
        .collect();
    test.push(line("message number 12 about lunch", "ham")); // leaked from train
    fs::write(dir.path().join("train.jsonl"), train.join("\n") + "\n").unwrap();
    fs::write(dir.path().join("test.jsonl"), test.join("\n") + "\n").unwrap();
    let (out, json) = inspect(dir.path());
    assert_eq!(json["dataset"], "text-classification", "{json}");
    assert_eq!(json["corrupt"]["count"], 3, "{json}");
    assert!(
        json["corrupt"]["examples"][0]
            .as_str()
            .unwrap()
            .contains("train.jsonl:11"),
        "{json}"
    );
    assert_eq!(json["duplicates"]["count"], 2, "{json}");
    assert_eq!(json["leaks"]["count"], 1, "{json}");
    assert!(
        json["leaks"]["examples"][0]
            .as_str()
            .unwrap()
            .contains("test.jsonl:11"),
        "{json}"
    );
    assert_eq!(json["imbalanced_classes"][0]["class"], "rare", "{json}");
    assert_eq!(json["splits"]["train"]["records"], 45);
    assert_eq!(json["splits"]["test"]["per_class"]["ham"], 11);
    assert!(json["lengths"]["words"]["max"].as_f64().unwrap() >= 5.0);
    assert!(
        out.contains("3 unreadable records") && out.contains("leakage"),
        "{out}"
    );
    let svg = fs::read_to_string(dir.path().join("report.svg")).unwrap();
    assert!(svg.contains("records per class"), "the chart is titled");

    // A clean image set reports no problems.
    let shards = dir.path().join("shards");
    synth(&shards, 100, 20, 3);
    let out = stdout_of(
        stoke()
            .args(["data", "inspect"])
            .arg(&shards)
            .arg("--report")
            .arg(dir.path().join("shard-report.json")),
    );
    assert!(
        out.contains("images of") && out.contains("no problems found"),
        "{out}"
    );
    let json = read_json(&dir.path().join("shard-report.json"));
    assert_eq!(json["splits"]["train"]["records"], 100);
    assert_eq!(json["leaks"]["count"], 0);
}

#[test]
fn labelled_texts_pack_into_jsonl_shards_that_train_streamed() {
    let data = tempfile::tempdir().unwrap();
    let texts = data.path().join("texts");
    common::write_labelled_set(&texts, 300);
    let out = data.path().join("shards");
    stoke()
        .args(["data", "pack", "configs/spam-transformer.toml", "--set"])
        .arg(format!("data.path={}", texts.display()))
        .arg("--out")
        .arg(&out)
        .args(["--shard-size", "4KiB"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("train: 300 records in")
                .and(predicate::str::contains("text-shards")),
        );
    assert!(out.join("train-00002.jsonl").is_file());
    let mut sets = common::classifier_sets(&out, "flex");
    sets.extend([
        "data.dataset=text-shards".to_string(),
        "data.shuffle_buffer=32".into(),
        "data.memory_budget=32MiB".into(),
    ]);
    let run = tempfile::tempdir().unwrap();
    train("configs/spam-transformer.toml", &sets, run.path());
    let summary = read_json(&run.path().join("summary.json"));
    assert!(
        summary["test"]["accuracy"].as_f64().unwrap() > 0.6,
        "{summary}"
    );
    // The shards inspect like the files they came from.
    let report = data.path().join("report.json");
    stoke()
        .args(["data", "inspect"])
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .assert()
        .success();
    assert_eq!(read_json(&report)["splits"]["train"]["records"], 300);
}

#[test]
fn an_image_folder_split_across_directories_reads_as_one() {
    let data = tempfile::tempdir().unwrap();
    for (part, classes) in [("part-0", ["a", "b"]), ("part-1", ["a", "c"])] {
        for (c, class) in classes.iter().enumerate() {
            let dir = data.path().join(part).join(class);
            fs::create_dir_all(&dir).unwrap();
            for i in 0..10u8 {
                image::GrayImage::from_pixel(8, 8, image::Luma([i * 20 + c as u8]))
                    .save(dir.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
    let pattern = format!("data.path={}", data.path().join("part-*").display());
    let sets: Vec<String> = [
        "data.dataset=image-folder",
        &pattern,
        "data.image.size=[8, 8]",
        "model.hidden=[8]",
        "train.batch_size=8",
        "train.max_steps=4",
        "train.progress=plain",
    ]
    .map(String::from)
    .to_vec();
    let run = tempfile::tempdir().unwrap();
    let stderr = train("configs/mnist-mlp.toml", &sets, run.path());
    assert!(stderr.contains("32 train / 4 valid / 4 test"), "{stderr}");
    assert!(stderr.contains("3 classes"), "{stderr}");
}

#[test]
fn inspect_reports_every_unreadable_image_and_still_runs_the_other_checks() {
    let dir = tempfile::tempdir().unwrap();
    let distinct = |seed: u32| {
        image::GrayImage::from_fn(20, 20, |x, y| {
            image::Luma([((x * 7 + y * 13) * (seed + 1) % 251) as u8])
        })
    };
    let mut seed = 0;
    for (split, class, count) in [
        ("train", "a", 10),
        ("train", "b", 10),
        ("train", "rare", 1),
        ("test", "a", 3),
        ("test", "b", 3),
    ] {
        let folder = dir.path().join(split).join(class);
        fs::create_dir_all(&folder).unwrap();
        for i in 0..count {
            distinct(seed)
                .save(folder.join(format!("{i}.png")))
                .unwrap();
            seed += 1;
        }
    }
    let train_a = dir.path().join("train/a");
    for i in 0..3 {
        fs::write(
            train_a.join(format!("corrupt{i}.png")),
            b"\x89PNG not really",
        )
        .unwrap();
    }
    fs::copy(train_a.join("1.png"), train_a.join("1-copy.png")).unwrap(); // duplicate 1
    fs::copy(
        dir.path().join("train/b/2.png"),
        dir.path().join("train/b/2-copy.png"),
    )
    .unwrap(); // duplicate 2
    fs::copy(train_a.join("5.png"), dir.path().join("test/a/leaked.png")).unwrap(); // leak

    let (out, json) = inspect(dir.path());
    assert_eq!(json["corrupt"]["count"], 3, "{json}");
    let examples: Vec<&str> = json["corrupt"]["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for i in 0..3 {
        assert!(
            examples
                .iter()
                .any(|e| e.contains(&format!("corrupt{i}.png")) && e.contains("cannot decode")),
            "{examples:?}"
        );
    }
    assert_eq!(json["duplicates"]["count"], 2, "{json}");
    assert_eq!(json["leaks"]["count"], 1, "{json}");
    assert_eq!(json["imbalanced_classes"][0]["class"], "rare", "{json}");
    assert_eq!(json["splits"]["train"]["records"], 23, "{json}");
    assert!(out.contains("3 unreadable records"), "{out}");
}

/// `stoke data inspect DIR --report DIR/report.json`: what it printed, and the report.
fn inspect(dir: &Path) -> (String, serde_json::Value) {
    let report = dir.join("report.json");
    let out = stdout_of(
        stoke()
            .args(["data", "inspect"])
            .arg(dir)
            .arg("--report")
            .arg(&report),
    );
    (out, read_json(&report))
}
