//! `stoke train --follow`: continual training on shards renamed into a directory, exact under
//! kills, with its gate, its promotions and its refusals.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::server::{Server, metric};
use common::shards::{
    drop_shard, drop_shard_with_labels_moved_on, mnist, synth, write_idx, write_mnist_dataset,
};
use common::{read_json, stoke};
use serde_json::Value;

fn sets(base: &Path) -> Vec<String> {
    [
        "data.dataset=image-shards".to_string(),
        format!("data.path={}", base.display()),
        "data.valid_fraction=0.25".into(),
        "data.workers=1".into(),
        "model.hidden=[32]".into(),
        "train.batch_size=16".into(),
        "train.eval_batch_size=64".into(),
        "follow.poll_s=0.1".into(),
        "follow.idle_exit_s=1.5".into(),
        "follow.replay.capacity=64".into(),
        "follow.gate.tolerance=0.0".into(),
    ]
    .into()
}

fn spawn(args: &[&str], sets: &[String], fault: &str) -> Child {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    common::spawn_with_fault(&args, sets, fault)
}

/// Lets `child` run for `delay`, then SIGKILLs it; `None` when it was killed.
fn kill_after(mut child: Child, delay: Duration) -> Option<std::process::Output> {
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

/// The last round's weights SHA-256 and the ledger's shard names, from the latest checkpoint.
fn outcome(run: &Path) -> (String, Vec<String>) {
    let latest = fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let state = read_json(
        &run.join("checkpoints")
            .join(latest.trim())
            .join("state.json"),
    );
    let follow = &state["follow"];
    let weights = follow["rounds"].as_array().unwrap().last().unwrap()["weights_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let ledger = follow["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_string())
        .collect();
    (weights, ledger)
}

/// A base set and a stream of 10 shards in `data`, and `incoming/` with the stream's first six
/// dropped in as a0…a5.
fn six_shards_landed(data: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (base, stream) = (data.join("base"), data.join("stream"));
    synth(&base, 400, 1);
    synth(&stream, 520, 2);
    let incoming = data.join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    for index in 0..6 {
        drop_shard(&stream, index, &incoming, &format!("a{index}"));
    }
    (base, stream, incoming)
}

fn incoming_with_three_shards(data: &Path, stream: &Path) -> PathBuf {
    let incoming = data.join(format!(
        "incoming-{}",
        stream.file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir_all(&incoming).unwrap();
    for (index, name) in ["s0", "s1", "s2"].iter().enumerate() {
        drop_shard(stream, index, &incoming, name);
    }
    // A shard still being written: ignored, never rejected.
    fs::write(incoming.join(".s3-images-idx3-ubyte.tmp"), b"half").unwrap();
    incoming
}

#[test]
fn a_run_killed_at_any_moment_takes_each_shard_once_and_ends_with_the_same_weights() {
    let data = tempfile::tempdir().unwrap();
    let (base, stream) = (data.path().join("base"), data.path().join("stream"));
    synth(&base, 200, 1);
    synth(&stream, 160, 2);
    let sets = sets(&base);
    let config = "configs/follow-mnist.toml";

    let reference = data.path().join("reference");
    let incoming = incoming_with_three_shards(data.path(), &stream);
    let follow = incoming.to_str().unwrap().to_string();
    let done = kill_after(
        spawn(
            &[
                "train",
                config,
                "--run-dir",
                reference.to_str().unwrap(),
                "--follow",
                &follow,
            ],
            &sets,
            "",
        ),
        Duration::from_secs(120),
    )
    .expect("the uninterrupted run ends on its own");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let expected = outcome(&reference);
    assert_eq!(expected.1, ["s0", "s1", "s2"]);
    assert!(incoming.join(".s3-images-idx3-ubyte.tmp").exists());
    assert!(!incoming.join("rejected").exists(), "nothing rejected");

    // The same, SIGKILLed at three seeded moments (steps slowed to land the kills mid-round)
    // and resumed each time.
    let killed = data.path().join("killed");
    let incoming = incoming_with_three_shards(&data.path().join("again"), &stream);
    let follow = incoming.to_str().unwrap().to_string();
    let slow = "slow-steps:120";
    let mut kills = 0;
    for (attempt, delay_ms) in [450u64, 950, 1300, 60_000].into_iter().enumerate() {
        let child = match attempt {
            0 => spawn(
                &[
                    "train",
                    config,
                    "--run-dir",
                    killed.to_str().unwrap(),
                    "--follow",
                    &follow,
                ],
                &sets,
                slow,
            ),
            _ => spawn(
                &[
                    "train",
                    "--resume",
                    killed.to_str().unwrap(),
                    "--follow",
                    &follow,
                ],
                &[],
                slow,
            ),
        };
        match kill_after(child, Duration::from_millis(delay_ms)) {
            None => {
                kills += 1;
                let latest =
                    fs::read_to_string(killed.join("checkpoints/latest")).unwrap_or_default();
                let rounds = fs::read_to_string(killed.join("follow.jsonl"))
                    .map_or(0, |t| t.lines().count());
                eprintln!(
                    "kill {kills} after {delay_ms} ms: latest checkpoint {latest:?}, {rounds} rounds"
                );
            }
            Some(output) => {
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                break;
            }
        }
    }
    assert_eq!(kills, 3, "three kills landed before the run ended");
    assert_eq!(
        outcome(&killed),
        expected,
        "weights and ledger equal the uninterrupted run's"
    );
    let rounds = |run: &Path| fs::read_to_string(run.join("follow.jsonl")).unwrap();
    assert_eq!(rounds(&killed), rounds(&reference));
    let rounds: Vec<Value> = rounds(&reference)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rounds.len(), 3);
    // Each shard was scored before it was trained on, and replay began with the second.
    assert!(
        rounds
            .iter()
            .all(|r| r["before"]["samples"] == r["records"])
    );
    assert_eq!(rounds[0]["replayed"], 0);
    assert!(rounds[1]["replayed"].as_u64().unwrap() > 0);
}

#[test]
fn the_gate_refuses_a_candidate_trained_on_permuted_labels_and_promotes_a_clean_one() {
    let data = tempfile::tempdir().unwrap();
    let (base, stream, incoming) = six_shards_landed(data.path());
    // A shard whose labels are moved one class on: a candidate trained on it gets worse.
    drop_shard_with_labels_moved_on(&stream, 6, &incoming, "b0");
    drop_shard(&stream, 7, &incoming, "c0");
    // One that cannot be read and one of another shape: rejected with their reasons.
    fs::write(incoming.join("bad-images-idx3-ubyte"), b"not idx").unwrap();
    fs::write(incoming.join("bad-labels-idx1-ubyte"), b"not idx").unwrap();

    let models = data.path().join("models");
    let run = data.path().join("run");
    let mut sets = sets(&base);
    sets.push("optimizer.lr=0.01".into());
    // A server that does not answer: a port just closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = stoke()
        .args(["train", "configs/follow-mnist.toml", "--run-dir"])
        .arg(&run)
        .arg("--follow")
        .arg(&incoming)
        .arg("--promote")
        .arg(&models)
        .args(["--serve-url", &silent])
        .args(
            sets.iter()
                .flat_map(|set| ["--set".to_string(), set.clone()]),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let reason = fs::read_to_string(incoming.join("rejected/bad.reason.txt")).unwrap();
    assert!(reason.contains("bad-images-idx3-ubyte"), "{reason}");
    assert!(incoming.join("rejected/bad-images-idx3-ubyte").exists());
    // The silent server is one warning per promotion; the versions are promoted all the same.
    assert!(
        stderr.contains("the server keeps its model until it reloads"),
        "{stderr}"
    );
    let served = fs::read_to_string(run.join("served.jsonl")).unwrap();
    assert!(
        served.lines().all(|line| line.contains("reload_error")),
        "{served}"
    );

    let decisions: Vec<Value> = fs::read_to_string(run.join("promotions.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let decision = |shard: &str| {
        decisions
            .iter()
            .find(|d| d["shard"] == shard)
            .unwrap_or_else(|| panic!("no decision on {shard}: {decisions:?}"))["decision"]
            .clone()
    };
    let bad = decision("b0");
    assert_eq!(bad["promoted"], false, "{bad}");
    assert!(bad["candidate"].as_f64() < bad["current"].as_f64(), "{bad}");
    let served_before_bad = decisions
        .iter()
        .take_while(|d| d["shard"] != "b0")
        .filter_map(|d| d["decision"]["version"].as_str())
        .last()
        .unwrap()
        .to_string();
    let current = fs::read_link(models.join("current")).unwrap();
    let promoted_after: Vec<&str> = decisions
        .iter()
        .skip_while(|d| d["shard"] != "b0")
        .filter_map(|d| d["decision"]["version"].as_str())
        .collect();
    match promoted_after.last() {
        Some(version) => assert_eq!(current, Path::new(version)),
        None => assert_eq!(current, Path::new(&served_before_bad)),
    }
    // Rollback points `current` one version back.
    let before = fs::read_link(models.join("current")).unwrap();
    stoke()
        .args(["promote", "--rollback"])
        .arg(&models)
        .assert()
        .success();
    let after = fs::read_link(models.join("current")).unwrap();
    assert!(after < before, "{before:?} -> {after:?}");
}

#[test]
fn following_refuses_what_it_cannot_take_in_one_line() {
    let data = tempfile::tempdir().unwrap();
    let base = data.path().join("base");
    synth(&base, 100, 1);
    let sets = sets(&base);
    let refused = |extra: &[&str], says: &str| {
        let output = stoke()
            .args(["train", "configs/follow-mnist.toml", "--run-dir"])
            .arg(data.path().join("run"))
            .args(extra)
            .args(
                sets.iter()
                    .flat_map(|set| ["--set".to_string(), set.clone()]),
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "expected {says:?} in {stderr}");
        assert!(!data.path().join("run").exists(), "no run directory");
    };
    let missing = data.path().join("nowhere");
    refused(
        &["--follow", missing.to_str().unwrap()],
        "no such directory",
    );
    let file = data.path().join("a-shard.jsonl");
    fs::write(&file, "{}").unwrap();
    refused(
        &["--follow", file.to_str().unwrap()],
        "a file, not a directory",
    );
    let incoming = data.path().join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    let foreign = data.path().join("foreign");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "mine").unwrap();
    refused(
        &[
            "--follow",
            incoming.to_str().unwrap(),
            "--promote",
            foreign.to_str().unwrap(),
        ],
        "is not a stoke models directory",
    );
    refused(
        &[
            "--follow",
            incoming.to_str().unwrap(),
            "--set",
            "scheduler.kind=\"cosine\"",
        ],
        "scheduler.kind = \"cosine\"",
    );
    refused(
        &[
            "--follow",
            incoming.to_str().unwrap(),
            "--set",
            "follow.replay.fraction=1.5",
        ],
        "follow.replay.fraction",
    );
}

/// `stoke train --follow` (a fresh run, or `--resume RUN` with `resume`) into `models`,
/// telling the server at `serve_url`; panics with its stderr on failure.
fn follow_into(
    run: &Path,
    incoming: &Path,
    models: &Path,
    sets: &[String],
    serve_url: Option<&str>,
    resume: bool,
) -> String {
    let mut command = stoke();
    match resume {
        true => command.args(["train", "--resume"]).arg(run),
        false => command
            .args(["train", "configs/follow-mnist.toml", "--run-dir"])
            .arg(run),
    };
    command
        .arg("--follow")
        .arg(incoming)
        .arg("--promote")
        .arg(models);
    if let Some(url) = serve_url {
        command.args(["--serve-url", url]);
    }
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// The version `stoke serve` reports for the artifact `models/name`: its weights' SHA-256,
/// first 12 hex digits.
fn served_version(models: &Path, name: &str) -> String {
    let manifest = read_json(&models.join(name).join("manifest.json"));
    manifest["files"]["model.safetensors"]["sha256"]
        .as_str()
        .unwrap()[..12]
        .to_string()
}

fn reloads(server: &Server) -> f64 {
    let (_, page) = server.get("/metrics");
    metric(
        page.as_str().unwrap(),
        "stoke_model_reloads_total{outcome=\"swapped\"}",
    )
    .unwrap_or(0.0)
}

#[test]
fn a_real_server_serves_what_is_promoted_and_not_what_is_refused_and_rolls_back() {
    let data = tempfile::tempdir().unwrap();
    let (base, stream, incoming) = six_shards_landed(data.path());
    let (models, run) = (data.path().join("models"), data.path().join("run"));
    let mut sets = sets(&base);
    sets.push("optimizer.lr=0.01".into());
    follow_into(&run, &incoming, &models, &sets, None, false);
    let first = fs::read_link(models.join("current")).unwrap();
    let first = first.to_str().unwrap().to_string();

    // The server serves `current`; what follows is told to it.
    let server = Server::start(&models.join("current"), &[]);
    let version = || {
        server.get("/v1/model").1["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(version(), served_version(&models, &first));

    // A shard with its labels moved one class on: its candidate is refused, the server keeps
    // its version and is not reloaded.
    drop_shard_with_labels_moved_on(&stream, 6, &incoming, "b0");
    follow_into(&run, &incoming, &models, &[], Some(&server.url), true);
    let decisions = || -> Vec<Value> {
        fs::read_to_string(run.join("promotions.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let refused = decisions().last().unwrap().clone();
    assert_eq!(refused["shard"], "b0");
    assert_eq!(refused["decision"]["promoted"], false, "{refused}");
    assert_eq!(version(), served_version(&models, &first));
    assert_eq!(reloads(&server), 0.0);

    // Clean shards: a candidate is promoted, exported, and served after the reload.
    for index in 7..10 {
        drop_shard(&stream, index, &incoming, &format!("c{index}"));
    }
    follow_into(&run, &incoming, &models, &[], Some(&server.url), true);
    let promoted = decisions()
        .iter()
        .filter_map(|d| d["decision"]["version"].as_str().map(str::to_string))
        .next_back()
        .unwrap();
    assert_ne!(promoted, first, "{:?}", decisions());
    assert_eq!(version(), served_version(&models, &promoted));
    assert!(reloads(&server) >= 1.0);

    // Its lineage: the shards it was trained on, in order, the version before it, the config
    // and the code.
    let rounds = decisions();
    let at = rounds
        .iter()
        .position(|d| d["decision"]["version"] == promoted.as_str())
        .unwrap();
    // The refused round was undone (follow.on_refuse = "revert"): b0 is not in the weights.
    let trained_on: Vec<&str> = rounds[..=at]
        .iter()
        .filter(|d| d["decision"]["reverted_to"].is_null())
        .map(|d| d["shard"].as_str().unwrap())
        .collect();
    let parent = rounds[..at]
        .iter()
        .filter_map(|d| d["decision"]["version"].as_str())
        .next_back();
    let lineage = read_json(&models.join(&promoted).join("manifest.json"))["lineage"].clone();
    let shards: Vec<&str> = lineage["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|shard| shard["name"].as_str().unwrap())
        .collect();
    assert_eq!(shards, trained_on, "{lineage}");
    assert_eq!(shards[0], "a0", "the first candidate is always promoted");
    assert!(!shards.contains(&"b0"), "{lineage}");
    assert_eq!(lineage["parent"].as_str(), parent, "{lineage}");
    let config = fs::read(run.join("config.toml")).unwrap();
    assert_eq!(
        lineage["config_sha256"],
        stoke::files::digest(&config).sha256
    );
    assert!(
        lineage["code"].as_str().unwrap().starts_with("stoke 0."),
        "{lineage}"
    );
    let (_, served) = server.get("/v1/model");
    assert_eq!(served["lineage"], lineage);

    // Rollback serves the version before.
    let before = reloads(&server);
    stoke()
        .args(["promote", "--rollback"])
        .arg(&models)
        .args(["--serve-url", &server.url])
        .assert()
        .success();
    let previous = fs::read_link(models.join("current")).unwrap();
    let previous = previous.to_str().unwrap();
    assert!(previous < promoted.as_str());
    assert_eq!(version(), served_version(&models, previous));
    assert_eq!(reloads(&server), before + 1.0);
}

/// Holdout-A accuracy after a stream of task A (digits 0–4) then task B (5–9), with
/// `replay` of every batch drawn from the reservoir: (after A, after B).
fn holdout_a_after_two_tasks(dir: &Path, replay: f64) -> (f64, f64) {
    let (train, train_labels) = mnist("train");
    let (test, test_labels) = mnist("t10k");
    let task = |a: bool, label: u8| (label < 5) == a;
    // The base dataset: its test split, digits 0–4 only, is the holdout (no validation
    // split); its few training records are never trained on by following.
    let base = dir.join("base");
    let mixed: Vec<(&Vec<u8>, u8)> = train
        .iter()
        .zip(train_labels.iter().copied())
        .take(20)
        .collect();
    let holdout: Vec<(&Vec<u8>, u8)> = test
        .iter()
        .zip(test_labels.iter().copied())
        .filter(|(_, label)| task(true, *label))
        .take(500)
        .collect();
    write_mnist_dataset(&base, 10, &mixed, &holdout);
    // The stream: four shards of task A, then four of task B, 256 records each.
    let incoming = dir.join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    for (prefix, a) in [("a", true), ("b", false)] {
        let records: Vec<(&Vec<u8>, u8)> = train
            .iter()
            .zip(train_labels.iter().copied())
            .skip(20)
            .filter(|(_, label)| task(a, *label))
            .take(4 * 256)
            .collect();
        for (index, shard) in records.chunks(256).enumerate() {
            write_idx(&incoming, &format!("{prefix}{index}"), shard);
        }
    }
    let run = dir.join("run");
    let sets = [
        "data.dataset=image-shards".to_string(),
        format!("data.path={}", base.display()),
        "data.valid_fraction=0".into(),
        "data.workers=1".into(),
        "model.hidden=[64]".into(),
        "train.batch_size=32".into(),
        "train.eval_batch_size=250".into(),
        "follow.poll_s=0.1".into(),
        "follow.idle_exit_s=1".into(),
        "follow.passes=2".into(),
        "follow.replay.capacity=1024".into(),
        format!("follow.replay.fraction={replay}"),
        // The learner itself is measured: task B's candidates, worse on task A's holdout,
        // are refused, and training goes on from them all the same.
        "follow.on_refuse=\"continue\"".into(),
    ];
    let output = stoke()
        .args(["train", "configs/follow-mnist.toml", "--run-dir"])
        .arg(&run)
        .arg("--follow")
        .arg(&incoming)
        .args(
            sets.iter()
                .flat_map(|set| ["--set".to_string(), set.clone()]),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rounds: Vec<Value> = fs::read_to_string(run.join("follow.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rounds.len(), 8);
    let accuracy = |round: &Value| {
        round["holdout"]["accuracy"]
            .as_f64()
            .unwrap_or_else(|| panic!("{round}"))
    };
    (accuracy(&rounds[3]), accuracy(&rounds[7]))
}

#[test]
fn replay_keeps_what_task_a_taught_through_task_b() {
    let dir = tempfile::tempdir().unwrap();
    let none = holdout_a_after_two_tasks(&dir.path().join("none"), 0.0);
    let replay = holdout_a_after_two_tasks(&dir.path().join("replay"), 0.5);
    eprintln!(
        "holdout-A accuracy (after task A, after task B): no replay {none:?}, replay 0.5 {replay:?}"
    );
    assert!(
        none.0 > 0.9 && replay.0 > 0.9,
        "task A is learned: {none:?} {replay:?}"
    );
    assert!(
        replay.1 >= none.1 + 0.5,
        "replay keeps task A: {replay:?} against {none:?}"
    );
}
