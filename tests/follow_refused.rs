//! A refused shard must not poison what comes after it. A base model trained on MNIST digits
//! is put into a models directory (`stoke promote RUN --to MODELS`) and served by a real
//! `stoke serve`; then it follows a stream of digits it never saw: clean, poisoned (every
//! label moved three classes on), truncated, clean, clean, clean. With `follow.on_refuse =
//! "revert"` (the default) the poisoned round is refused and undone, and every clean shard is
//! promoted and served; with `"continue"` training goes on from the refused candidate. Both
//! resume to the uninterrupted run's weights after kills before, during and after the refused
//! round. The first candidate is gated against the served base, and a served version of
//! another kind is refused before the first round.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::server::{Server, metric};
use common::shards::{mnist, move_labels_on, write_idx, write_mnist_dataset};
use common::{read_json, spawn_with_fault, stoke};
use serde_json::Value;

const TOLERANCE: f64 = 0.01;
const BASE_RECORDS: usize = 1000;
const SHARD_RECORDS: usize = 256;

/// MNIST's digits as (pixels, label) pairs: the training set's and the test set's.
struct Digits {
    train: Vec<(Vec<u8>, u8)>,
    test: Vec<(Vec<u8>, u8)>,
}

impl Digits {
    fn load() -> Self {
        let pairs =
            |(images, labels): (Vec<Vec<u8>>, Vec<u8>)| images.into_iter().zip(labels).collect();
        Self {
            train: pairs(mnist("train")),
            test: pairs(mnist("t10k")),
        }
    }

    /// The base dataset in `dir`: the first training digits and 500 test digits (the
    /// holdout, as there is no validation split), over `classes` classes.
    fn base(&self, dir: &Path, classes: u8) -> PathBuf {
        write_mnist_dataset(
            dir,
            usize::from(classes),
            &of_classes(&self.train, classes, BASE_RECORDS),
            &of_classes(&self.test, classes, 500),
        );
        dir.to_path_buf()
    }

    /// Stream shard `index` (digits the base never saw) written into `dir` as `name`.
    fn shard(&self, index: usize, dir: &Path, name: &str) {
        let start = BASE_RECORDS + index * SHARD_RECORDS;
        let records: Vec<(&Vec<u8>, u8)> = self.train[start..start + SHARD_RECORDS]
            .iter()
            .map(|(pixels, label)| (pixels, *label))
            .collect();
        write_idx(dir, name, &records);
    }
}

/// The first `take` records of `set` with a label below `classes`.
fn of_classes(set: &[(Vec<u8>, u8)], classes: u8, take: usize) -> Vec<(&Vec<u8>, u8)> {
    set.iter()
        .filter(|(_, label)| *label < classes)
        .take(take)
        .map(|(pixels, label)| (pixels, *label))
        .collect()
}

/// The scenario's stream in `dir`: clean, poisoned (labels moved three classes on), truncated
/// (its images file cut in half), clean, clean, clean.
fn stream(digits: &Digits, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    for (index, name) in ["s1", "s2", "s3", "s4", "s5", "s6"].iter().enumerate() {
        digits.shard(index, dir, name);
    }
    move_labels_on(dir, "s2", 3);
    let images = dir.join("s3-images-idx3-ubyte");
    let bytes = fs::read(&images).unwrap();
    fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    dir.to_path_buf()
}

/// The base run's keys: a small MLP, and what following it will use (its replay and passes
/// are fixed when it is trained; the gate and `on_refuse` may change on resume).
fn base_sets(base: &Path) -> Vec<String> {
    [
        "data.dataset=image-shards".to_string(),
        format!("data.path={}", base.display()),
        "data.valid_fraction=0".into(),
        "data.workers=1".into(),
        "model.hidden=[64]".into(),
        "train.batch_size=32".into(),
        "train.eval_batch_size=250".into(),
        "train.epochs=5".into(),
        "follow.passes=3".into(),
        "follow.poll_s=0.1".into(),
        "follow.idle_exit_s=1".into(),
        "follow.replay.capacity=1024".into(),
        format!("follow.gate.tolerance={TOLERANCE}"),
    ]
    .into()
}

/// Trains the base run at `run` on `dataset`, with `extra` keys.
fn train_base(run: &Path, dataset: &Path, extra: &[&str]) {
    let sets: Vec<String> = base_sets(dataset)
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
    stoke()
        .args(["train", "configs/follow-mnist.toml", "--run-dir"])
        .arg(run)
        .args(sets.iter().flat_map(|set| ["--set", set.as_str()]))
        .assert()
        .success();
}

/// MNIST's digits, the ten-class base dataset in `data/mnist-base` and the base run trained
/// on it in `data/base`.
fn trained_base(data: &Path) -> (Digits, PathBuf, PathBuf) {
    let digits = Digits::load();
    let dataset = digits.base(&data.join("mnist-base"), 10);
    let base = data.join("base");
    train_base(&base, &dataset, &[]);
    (digits, dataset, base)
}

/// `stoke promote RUN --to MODELS`; its stdout.
fn promote(run: &Path, models: &Path) -> String {
    let output = stoke()
        .arg("promote")
        .arg(run)
        .arg("--to")
        .arg(models)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        match entry.file_type().unwrap().is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => {
                fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}

/// `stoke train --resume RUN --follow INCOMING --promote MODELS` with `STOKE_FAULT` =
/// `fault` and `--set` `sets`; whether it ended on its own (it panics if it failed), or was
/// killed by the fault.
fn follow(
    run: &Path,
    incoming: &Path,
    models: &Path,
    serve_url: Option<&str>,
    sets: &[String],
    fault: &str,
) -> bool {
    let mut args = vec![
        "train".into(),
        "--resume".into(),
        run.as_os_str().to_owned(),
        "--follow".into(),
        incoming.as_os_str().to_owned(),
        "--promote".into(),
        models.as_os_str().to_owned(),
    ];
    if let Some(url) = serve_url {
        args.extend(["--serve-url".into(), url.into()]);
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let output = spawn_with_fault(&args, sets, fault)
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.success() {
        true => true,
        false => {
            assert!(
                !fault.is_empty() && stderr.contains("STOKE_FAULT"),
                "{}: {stderr}",
                output.status
            );
            false
        }
    }
}

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The run's follow state, from its latest checkpoint.
fn follow_state(run: &Path) -> Value {
    let latest = fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    read_json(
        &run.join("checkpoints")
            .join(latest.trim())
            .join("state.json"),
    )["follow"]
        .clone()
}

/// Each round as `shard: promoted vVVVV | refused`, with the candidate's holdout accuracy
/// and the figure it was compared with, for the log and BENCHMARKS.md.
fn table(rounds: &[Value]) -> String {
    rounds
        .iter()
        .map(|round| {
            let decision = &round["decision"];
            format!(
                "{} before {:.3} | holdout {:.3} against {:.3}: {}\n",
                round["shard"].as_str().unwrap(),
                round["before"]["accuracy"].as_f64().unwrap_or(f64::NAN),
                decision["candidate"].as_f64().unwrap(),
                decision["current"].as_f64().unwrap_or(f64::NAN),
                decision["reason"].as_str().unwrap()
            )
        })
        .collect()
}

/// The scenario with `on_refuse`: an uninterrupted run, and one killed by each of `kills`
/// (faults, their steps computed from the uninterrupted run's rounds) and resumed, each into
/// its own models directory holding the base as v0001; the killed one tells `server`. Returns
/// the uninterrupted run's rounds and the killed run.
fn follow_with_kills(
    data: &Path,
    base: &Path,
    digits: &Digits,
    on_refuse: &str,
    kills: fn(&[Value]) -> Vec<String>,
    server: Option<(&Server, &Path)>,
) -> (Vec<Value>, PathBuf) {
    let sets = [format!("follow.on_refuse=\"{on_refuse}\"")];
    let reference = data.join(format!("reference-{on_refuse}"));
    copy_dir(base, &reference);
    let models = data.join(format!("models-reference-{on_refuse}"));
    promote(&reference, &models);
    let incoming = stream(
        digits,
        &data.join(format!("incoming-reference-{on_refuse}")),
    );
    assert!(follow(&reference, &incoming, &models, None, &sets, ""));
    let rounds = lines(&reference.join("follow.jsonl"));
    eprintln!("on_refuse = {on_refuse}:\n{}", table(&rounds));

    let killed = data.join(format!("killed-{on_refuse}"));
    copy_dir(base, &killed);
    let (models, url) = match server {
        Some((server, models)) => (models.to_path_buf(), Some(server.url.as_str())),
        None => {
            let models = data.join(format!("models-killed-{on_refuse}"));
            promote(&killed, &models);
            (models, None)
        }
    };
    let incoming = stream(digits, &data.join(format!("incoming-killed-{on_refuse}")));
    let faults = kills(&rounds);
    for fault in &faults {
        assert!(
            !follow(&killed, &incoming, &models, url, &sets, fault),
            "{fault} did not land"
        );
    }
    assert!(follow(&killed, &incoming, &models, url, &sets, ""));
    assert_eq!(
        fs::read_to_string(killed.join("follow.jsonl")).unwrap(),
        fs::read_to_string(reference.join("follow.jsonl")).unwrap(),
        "after {faults:?}, every round as the uninterrupted run's"
    );
    let (state, expected) = (follow_state(&killed), follow_state(&reference));
    assert_eq!(state["ledger"], expected["ledger"]);
    assert_eq!(state["reservoir"], expected["reservoir"]);
    (rounds, killed)
}

/// The step a round ended at.
fn step(round: &Value) -> u64 {
    round["step"].as_u64().unwrap()
}

/// The version `stoke serve` reports for the artifact `models/name`.
fn served_version(models: &Path, name: &str) -> String {
    read_json(&models.join(name).join("manifest.json"))["files"]["model.safetensors"]["sha256"]
        .as_str()
        .unwrap()[..12]
        .to_string()
}

#[test]
fn a_refused_shard_is_undone_and_every_clean_shard_after_it_is_promoted_and_served() {
    let data = tempfile::tempdir().unwrap();
    let (digits, _, base) = trained_base(data.path());

    // The base is served before following begins.
    let models = data.path().join("models");
    assert_eq!(
        promote(&base, &models).trim(),
        format!("{}: current -> v0001", models.display())
    );
    let server = Server::start(&models.join("current"), &[]);
    let version = || {
        server.get("/v1/model").1["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(version(), served_version(&models, "v0001"));

    // Killed before the refused round (training on s1), during it (training on the poisoned
    // s2, and writing its checkpoint after the learner went back) and after it (on s4).
    let kills = |rounds: &[Value]| {
        vec![
            format!("kill-rank:0:{}", step(&rounds[0]) - 2),
            format!("kill-rank:0:{}", step(&rounds[1]) - 3),
            format!("abort-in-checkpoint:{}", step(&rounds[1])),
            format!("kill-rank:0:{}", step(&rounds[2]) - 3),
        ]
    };
    let (rounds, run) = follow_with_kills(
        data.path(),
        &base,
        &digits,
        "revert",
        kills,
        Some((&server, &models)),
    );

    // Every clean shard promoted, the poisoned one refused, the truncated one rejected.
    let shards: Vec<&str> = rounds
        .iter()
        .map(|r| r["shard"].as_str().unwrap())
        .collect();
    assert_eq!(shards, ["s1", "s2", "s4", "s5", "s6"], "{}", table(&rounds));
    let versions: Vec<Option<&str>> = rounds
        .iter()
        .map(|r| r["decision"]["version"].as_str())
        .collect();
    assert_eq!(
        versions,
        [
            Some("v0002"),
            None,
            Some("v0003"),
            Some("v0004"),
            Some("v0005")
        ],
        "{}",
        table(&rounds)
    );
    let incoming = data.path().join("incoming-killed-revert");
    let reason = fs::read_to_string(incoming.join("rejected/s3.reason.txt")).unwrap();
    assert!(reason.contains("truncated"), "{reason}");

    // The refusal undid the round: the learner went back to s1's checkpoint, and s2 is
    // neither in the reservoir nor in any version's lineage.
    let refused = &rounds[1]["decision"];
    assert_eq!(
        refused["reverted_to"].as_str(),
        Some(format!("step-{}", step(&rounds[0])).as_str()),
        "{refused}"
    );
    let state = follow_state(&run);
    let ledger = state["ledger"].as_array().unwrap();
    assert_eq!(ledger[1]["name"], "s2");
    assert_eq!(ledger[1]["reverted"], true);
    assert!(
        ledger[1]["refused"]
            .as_str()
            .unwrap()
            .starts_with("refused")
    );
    let replayed: Vec<&str> = state["reservoir"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[0].as_str().unwrap())
        .collect();
    assert!(
        !replayed.contains(&"s2"),
        "the refused shard is not replayed"
    );
    let lineage = read_json(&models.join("v0005/manifest.json"))["lineage"].clone();
    let trained_on: Vec<&str> = lineage["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(trained_on, ["s1", "s4", "s5", "s6"], "{lineage}");
    assert_eq!(lineage["parent"], "v0004");
    let first = read_json(&models.join("v0002/manifest.json"))["lineage"].clone();
    assert_eq!(first["parent"], "v0001", "the base it replaced: {first}");

    // The served version never regressed: each promotion was gated against the one served
    // before it, starting from the base, and the server serves the last.
    let mut served = rounds[0]["decision"]["current"].as_f64().unwrap();
    for round in &rounds {
        let decision = &round["decision"];
        assert_eq!(decision["current"].as_f64(), Some(served), "{decision}");
        if decision["promoted"] == true {
            let candidate = decision["candidate"].as_f64().unwrap();
            assert!(candidate >= served - TOLERANCE, "{decision}");
            served = candidate;
        }
    }
    assert_eq!(
        fs::read_link(models.join("current")).unwrap(),
        Path::new("v0005")
    );
    assert_eq!(version(), served_version(&models, "v0005"));
    let (_, page) = server.get("/metrics");
    let reloads = metric(
        page.as_str().unwrap(),
        "stoke_model_reloads_total{outcome=\"swapped\"}",
    );
    assert!(reloads >= Some(4.0), "{reloads:?}");
}

#[test]
fn on_refuse_continue_trains_on_from_the_refused_candidate_and_resumes_exactly() {
    let data = tempfile::tempdir().unwrap();
    let (digits, _, base) = trained_base(data.path());
    let kills = |rounds: &[Value]| {
        vec![
            format!("kill-rank:0:{}", step(&rounds[1]) - 3),
            format!("abort-in-checkpoint:{}", step(&rounds[1])),
            format!("kill-rank:0:{}", step(&rounds[2]) - 3),
        ]
    };
    let (rounds, run) = follow_with_kills(data.path(), &base, &digits, "continue", kills, None);
    let refused = &rounds[1]["decision"];
    assert_eq!(refused["promoted"], false, "{}", table(&rounds));
    assert!(refused["reverted_to"].is_null(), "{refused}");
    // The refused shard stays in the learner and in the reservoir.
    let state = follow_state(&run);
    assert_eq!(state["ledger"][1]["name"], "s2");
    assert!(state["ledger"][1]["reverted"].is_null());
    let replayed = state["reservoir"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item[0] == "s2")
        .count();
    assert!(replayed > 0, "the refused shard is replayed");
}

#[test]
fn the_first_candidate_is_gated_against_the_served_version() {
    let data = tempfile::tempdir().unwrap();
    let (digits, dataset, base) = trained_base(data.path());
    let models = data.path().join("models");
    promote(&base, &models);
    let v0001 = read_json(&models.join("v0001/manifest.json"));
    assert!(v0001["lineage"]["parent"].is_null(), "{}", v0001["lineage"]);

    // A poisoned first shard is refused against the served base, and undone.
    let incoming = data.path().join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    digits.shard(0, &incoming, "s1");
    move_labels_on(&incoming, "s1", 3);
    digits.shard(1, &incoming, "s2");
    assert!(follow(&base, &incoming, &models, None, &[], ""));
    let rounds = lines(&base.join("follow.jsonl"));
    eprintln!("{}", table(&rounds));
    let first = &rounds[0]["decision"];
    assert_eq!(first["promoted"], false, "{first}");
    let served = first["current"].as_f64().expect("the served base's figure");
    assert!(
        first["candidate"].as_f64().unwrap() < served - TOLERANCE,
        "{first}"
    );
    let start = follow_state(&base)["start"].as_str().unwrap().to_string();
    assert_eq!(first["reverted_to"].as_str(), Some(start.as_str()));
    // The clean one after it is promoted over the base, which its lineage names.
    let second = &rounds[1]["decision"];
    assert_eq!(second["version"], "v0002", "{second}");
    assert_eq!(second["current"].as_f64(), Some(served), "{second}");
    let lineage = read_json(&models.join("v0002/manifest.json"))["lineage"].clone();
    assert_eq!(lineage["parent"], "v0001", "{lineage}");
    assert_eq!(lineage["shards"].as_array().unwrap().len(), 1, "{lineage}");
    assert_eq!(lineage["shards"][0]["name"], "s2", "{lineage}");

    // A served version of another kind (five classes) is refused before the first round.
    let five = digits.base(&data.path().join("mnist-five"), 5);
    let other = data.path().join("other");
    train_base(&other, &five, &["train.max_steps=1"]);
    let foreign = data.path().join("models-five");
    promote(&other, &foreign);
    let output = stoke()
        .args(["train", "configs/follow-mnist.toml", "--run-dir"])
        .arg(data.path().join("refused"))
        .arg("--follow")
        .arg(&incoming)
        .arg("--promote")
        .arg(&foreign)
        .args(
            base_sets(&dataset)
                .iter()
                .flat_map(|set| ["--set".to_string(), set.clone()]),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("backend:"))
        .collect();
    assert_eq!(said.len(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("current version v0001 predicts 5 classes and this run's data has 10"),
        "{stderr}"
    );
    assert!(!data.path().join("refused").exists());
}
