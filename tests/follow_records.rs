//! `stoke train --follow` on files of records: labelled texts (JSONL, CSV, Parquet) and table
//! rows (CSV, gzipped CSV). Shards of the wrong schema or with an unknown label are rejected,
//! the gate refuses a candidate that is worse on one slice of the holdout (`eval.slice_by`)
//! though not overall (and, with `follow.on_refuse = "revert"`, undoes its round), and a run
//! stopped after each shard and resumed reaches the uninterrupted run's weights.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use common::{SpamOrHam, read_json, stoke};
use parquet::arrow::ArrowWriter;
use serde_json::Value;

/// A labelled text of `source`: mail and chat tell spam from ham by different words, so that
/// what is learnt on one barely moves the other.
struct Texts(SpamOrHam);

impl Texts {
    fn record(&mut self, source: &str, spam: bool) -> (String, String) {
        let text = match source {
            "mail" => self.0.text(spam, 6),
            _ => {
                let words = match spam {
                    true => ["bonus", "deal", "gift", "winner"],
                    false => ["hey", "dinner", "movie", "weekend"],
                };
                (0..6)
                    .map(|_| words[self.0.next(4)])
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        (text, if spam { "spam" } else { "ham" }.to_string())
    }

    /// `count` records, one in `chat_every` from chat; labels swapped on chat when `flip_chat`.
    fn records(&mut self, count: usize, chat_every: usize, flip_chat: bool) -> Vec<[String; 3]> {
        (0..count)
            .map(|i| {
                let chat = i.is_multiple_of(chat_every);
                let source = if chat { "chat" } else { "mail" };
                let spam = match chat {
                    true => (i / chat_every).is_multiple_of(2),
                    false => i % 2 == 1,
                };
                let (text, mut label) = self.record(source, spam);
                if flip_chat && source == "chat" {
                    label = if spam { "ham" } else { "spam" }.into();
                }
                [text, label, source.to_string()]
            })
            .collect()
    }
}

/// The base run's texts in `data/base/train.jsonl` (one record in ten from chat, and so in its
/// holdout), and the source of the shards' texts.
fn text_base(data: &Path) -> (Texts, std::path::PathBuf) {
    let mut texts = Texts(SpamOrHam::new(11));
    let base = data.join("base");
    fs::create_dir_all(&base).unwrap();
    jsonl(&base.join("train.jsonl"), &texts.records(800, 10, false));
    (texts, base)
}

fn jsonl(path: &Path, records: &[[String; 3]]) {
    let lines: String = records
        .iter()
        .map(|[text, label, source]| {
            serde_json::json!({"text": text, "label": label, "source": source}).to_string() + "\n"
        })
        .collect();
    fs::write(path, lines).unwrap();
}

fn csv(path: &Path, records: &[[String; 3]]) {
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(["text", "label", "source"]).unwrap();
    for record in records {
        writer.write_record(record).unwrap();
    }
    writer.flush().unwrap();
}

fn parquet(path: &Path, records: &[[String; 3]]) {
    let column = |at: usize| -> ArrayRef {
        Arc::new(StringArray::from(
            records.iter().map(|r| r[at].clone()).collect::<Vec<_>>(),
        ))
    };
    let batch = RecordBatch::try_from_iter([
        ("text", column(0)),
        ("label", column(1)),
        ("source", column(2)),
    ])
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

const TEXT_CONFIG: &str = "configs/spam-transformer.toml";
const TABLE_CONFIG: &str = "configs/diamonds-tabular.toml";

fn sets(base: &Path) -> Vec<String> {
    [
        format!("data.path={}", base.display()),
        "data.valid_fraction=0.3".into(),
        "data.test_fraction=0.05".into(),
        "data.tokenizer.vocab_size=96".into(),
        "data.text.max_length=16".into(),
        "eval.slice_by=\"source\"".into(),
        "run.backend=\"ndarray\"".into(),
        "model.d_model=32".into(),
        "model.n_layers=1".into(),
        "model.d_ff=64".into(),
        "optimizer.lr=3e-3".into(),
        "scheduler.kind=\"constant\"".into(),
        "train.batch_size=16".into(),
        "train.eval_batch_size=128".into(),
        "train.progress=\"plain\"".into(),
        "follow.passes=3".into(),
        "follow.poll_s=0.1".into(),
        "follow.idle_exit_s=1".into(),
        "follow.replay.fraction=0.25".into(),
        "follow.gate.metric=\"accuracy\"".into(),
        "follow.gate.tolerance=0.15".into(),
    ]
    .into()
}

/// `stoke train --follow` of a fresh run of `config` or (`None`) a resumed one; its stderr.
fn follow(run: &Path, incoming: &Path, config: Option<&str>, sets: &[String]) -> String {
    let mut command = stoke();
    match config {
        Some(config) => command.args(["train", config, "--run-dir"]).arg(run),
        None => command.args(["train", "--resume"]).arg(run),
    };
    command.arg("--follow").arg(incoming);
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// Follows `incoming` in a fresh run of `config`, stopped after its first shard
/// (`follow.max_shards`) and resumed for one more each time, until `shards` are taken.
fn follow_one_shard_at_a_time(
    run: &Path,
    incoming: &Path,
    config: &str,
    sets: &[String],
    shards: usize,
) {
    for taken in 1..=shards {
        let stop = format!("follow.max_shards={taken}");
        match taken {
            1 => follow(run, incoming, Some(config), &[sets, &[stop]].concat()),
            _ => follow(run, incoming, None, &[stop]),
        };
    }
}

fn rounds(run: &Path) -> Vec<Value> {
    fs::read_to_string(run.join("follow.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn text_shards_are_followed_gated_on_every_slice_and_resumed_exactly() {
    let data = tempfile::tempdir().unwrap();
    let (mut texts, base) = text_base(data.path());
    let shards = data.path().join("shards");
    fs::create_dir_all(&shards).unwrap();
    jsonl(&shards.join("s0.jsonl"), &texts.records(240, 10, false));
    csv(&shards.join("s1.csv"), &texts.records(240, 10, false));
    // Chat with its labels swapped, and mail as it was: worse on chat, hardly overall.
    parquet(&shards.join("s2.parquet"), &texts.records(240, 4, true));
    fs::write(
        shards.join("wrong.jsonl"),
        "{\"body\": \"hey\", \"label\": \"ham\"}\n",
    )
    .unwrap();
    fs::write(
        shards.join("unknown.jsonl"),
        "{\"text\": \"hey\", \"label\": \"eggs\"}\n",
    )
    .unwrap();
    // Written but not yet renamed: never read.
    fs::write(shards.join(".s3.jsonl.tmp"), "{\"text\": ").unwrap();
    let names = [
        "s0.jsonl",
        "s1.csv",
        "s2.parquet",
        "unknown.jsonl",
        "wrong.jsonl",
        ".s3.jsonl.tmp",
    ];
    let sets = sets(&base);

    // Uninterrupted.
    let whole = data.path().join("whole");
    let incoming = data.path().join("incoming-whole");
    fs::create_dir_all(&incoming).unwrap();
    for name in names {
        fs::copy(shards.join(name), incoming.join(name)).unwrap();
    }
    let stderr = follow(&whole, &incoming, Some(TEXT_CONFIG), &sets);
    let uninterrupted = rounds(&whole);
    let taken: Vec<&str> = uninterrupted
        .iter()
        .map(|r| r["shard"].as_str().unwrap())
        .collect();
    assert_eq!(taken, ["s0.jsonl", "s1.csv", "s2.parquet"], "{stderr}");
    let reason = |name: &str| {
        fs::read_to_string(incoming.join("rejected").join(format!("{name}.reason.txt"))).unwrap()
    };
    assert!(
        reason("wrong.jsonl").contains("no field \"text\""),
        "{}",
        reason("wrong.jsonl")
    );
    assert!(
        reason("unknown.jsonl").contains("label \"eggs\""),
        "{}",
        reason("unknown.jsonl")
    );
    assert!(incoming.join(".s3.jsonl.tmp").is_file());

    // The gate: per-slice figures in every decision; the clean shards promoted, the one that
    // spoils chat refused on that slice.
    let decisions: Vec<&Value> = uninterrupted.iter().map(|r| &r["decision"]).collect();
    for decision in &decisions {
        let slices: Vec<&str> = decision["slices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["slice"].as_str().unwrap())
            .collect();
        assert_eq!(slices, ["source=chat", "source=mail"], "{decision}");
    }
    // And on the newest shard, against the promoted version's figure there.
    for decision in &decisions[1..] {
        let newest = &decision["newest"];
        assert!(
            newest["candidate"].is_f64() && newest["current"].is_f64(),
            "{decision}"
        );
    }
    let figures = |d: &Value| format!("{d:#}");
    assert_eq!(decisions[0]["promoted"], true, "{}", figures(decisions[0]));
    assert_eq!(decisions[1]["promoted"], true, "{}", figures(decisions[1]));
    let refused = decisions[2];
    assert_eq!(refused["promoted"], false, "{}", figures(refused));
    let chat = &refused["slices"][0];
    assert_eq!(chat["passed"], false, "{}", figures(refused));
    let overall_drop =
        refused["current"].as_f64().unwrap() - refused["candidate"].as_f64().unwrap();
    assert!(
        overall_drop <= 0.15,
        "refused on the slice alone: {}",
        figures(refused)
    );
    assert!(
        refused["reason"].as_str().unwrap().contains("source=chat"),
        "{}",
        figures(refused)
    );
    eprintln!("refused on chat: {}", figures(refused));

    // The run's report page shows every round and its decision, and the plots the per-shard
    // scores.
    assert!(whole.join("plots/follow.svg").is_file());
    let page = fs::read_to_string(whole.join("report/index.html")).unwrap();
    let section = &page[page
        .find("Continual training")
        .expect("a following section")..];
    for shard in ["s0.jsonl", "s1.csv", "s2.parquet", "on source=chat"] {
        assert!(
            section.contains(shard),
            "{shard} not in the report's rounds"
        );
    }

    // Stopped after each shard (follow.max_shards) and resumed: the same weights each round.
    let stepwise = data.path().join("stepwise");
    let incoming = data.path().join("incoming-stepwise");
    fs::create_dir_all(&incoming).unwrap();
    for name in names {
        fs::copy(shards.join(name), incoming.join(name)).unwrap();
    }
    follow_one_shard_at_a_time(&stepwise, &incoming, TEXT_CONFIG, &sets, 3);
    assert_eq!(weights_of(&rounds(&stepwise)), weights_of(&uninterrupted));

    // The promoted checkpoint keeps its tokenizer: the exported model reads texts.
    let latest = fs::read_to_string(stepwise.join("checkpoints/latest")).unwrap();
    let state = read_json(
        &stepwise
            .join("checkpoints")
            .join(latest.trim())
            .join("state.json"),
    );
    assert_eq!(state["follow"]["ledger"].as_array().unwrap().len(), 3);
    assert!(
        stepwise
            .join("checkpoints")
            .join(latest.trim())
            .join("tokenizer.json")
            .is_file()
    );
}

fn weights_of(rounds: &[Value]) -> Vec<String> {
    rounds
        .iter()
        .map(|r| r["weights_sha256"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn table_shards_are_followed_and_resumed_exactly() {
    let data = tempfile::tempdir().unwrap();
    // One table of fake diamonds, cut into the base run's file and three shards.
    let table = data.path().join("all.csv");
    common::write_fake_diamonds(&table, 1300);
    let text = fs::read_to_string(&table).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let part = |range: std::ops::Range<usize>| {
        let mut part = format!("{header}\n");
        for row in &rows[range] {
            part.push_str(row);
            part.push('\n');
        }
        part
    };
    let base = data.path().join("base.csv");
    fs::write(&base, part(0..500)).unwrap();
    let shards = data.path().join("shards");
    fs::create_dir_all(&shards).unwrap();
    fs::write(shards.join("t0.csv"), part(500..800)).unwrap();
    let mut gzipped = flate2::write::GzEncoder::new(
        fs::File::create(shards.join("t1.csv.gz")).unwrap(),
        flate2::Compression::default(),
    );
    std::io::Write::write_all(&mut gzipped, part(800..1100).as_bytes()).unwrap();
    gzipped.finish().unwrap();
    fs::write(shards.join("t2.csv"), part(1100..1300)).unwrap();
    // Without the carat column.
    let no_carat: String = part(0..20)
        .lines()
        .map(|line| line.split_once(',').unwrap().1.to_string() + "\n")
        .collect();
    fs::write(shards.join("t3-no-carat.csv"), no_carat).unwrap();
    let sets: Vec<String> = [
        format!("data.path={}", base.display()),
        "data.valid_fraction=0.3".into(),
        "data.test_fraction=0.0".into(),
        "run.backend=\"ndarray\"".into(),
        "model.hidden=[32]".into(),
        "scheduler.kind=\"constant\"".into(),
        "train.batch_size=32".into(),
        "train.eval_batch_size=256".into(),
        "train.progress=\"plain\"".into(),
        "follow.passes=2".into(),
        "follow.poll_s=0.1".into(),
        "follow.idle_exit_s=1".into(),
        "follow.replay.fraction=0.25".into(),
        "follow.gate.metric=\"rmse\"".into(),
        "follow.gate.tolerance=1e9".into(),
    ]
    .into();
    let names = ["t0.csv", "t1.csv.gz", "t2.csv", "t3-no-carat.csv"];
    let copy_into = |incoming: &Path| {
        fs::create_dir_all(incoming).unwrap();
        for name in names {
            fs::copy(shards.join(name), incoming.join(name)).unwrap();
        }
    };

    let whole = data.path().join("whole");
    let incoming = data.path().join("incoming-whole");
    copy_into(&incoming);
    let stderr = follow(&whole, &incoming, Some(TABLE_CONFIG), &sets);
    let uninterrupted = rounds(&whole);
    let taken: Vec<&str> = uninterrupted
        .iter()
        .map(|r| r["shard"].as_str().unwrap())
        .collect();
    assert_eq!(taken, ["t0.csv", "t1.csv.gz", "t2.csv"], "{stderr}");
    let reason = fs::read_to_string(incoming.join("rejected/t3-no-carat.csv.reason.txt")).unwrap();
    assert!(reason.contains("no column \"carat\""), "{reason}");
    // Learning from the stream: each shard's RMSE before training on it falls.
    let before: Vec<f64> = uninterrupted
        .iter()
        .map(|r| {
            r["before"]["rmse"]
                .as_f64()
                .unwrap_or_else(|| panic!("{r}"))
        })
        .collect();
    assert!(before[2] < before[0], "RMSE before each shard: {before:?}");
    assert!(
        uninterrupted
            .iter()
            .all(|r| r["decision"]["promoted"] == true)
    );

    let stepwise = data.path().join("stepwise");
    let incoming = data.path().join("incoming-stepwise");
    copy_into(&incoming);
    follow_one_shard_at_a_time(&stepwise, &incoming, TABLE_CONFIG, &sets, 3);
    assert_eq!(weights_of(&rounds(&stepwise)), weights_of(&uninterrupted));
}

/// Each round as `shard: overall candidate/current, chat candidate/current, decision`.
fn slice_table(rounds: &[Value]) -> String {
    let figure = |value: &Value| value.as_f64().map_or("–".into(), |v| format!("{v:.3}"));
    rounds
        .iter()
        .map(|round| {
            let decision = &round["decision"];
            let chat = &decision["slices"][0];
            format!(
                "{}: overall {} against {}, {} {} against {}: {}\n",
                round["shard"].as_str().unwrap(),
                figure(&decision["candidate"]),
                figure(&decision["current"]),
                chat["slice"].as_str().unwrap(),
                figure(&chat["candidate"]),
                figure(&chat["current"]),
                decision["reason"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_shard_poisoned_on_one_slice_is_refused_and_undone_or_carried_on() {
    let data = tempfile::tempdir().unwrap();
    let (mut texts, base) = text_base(data.path());
    // Clean shards, but the second, which swaps chat's labels and leaves mail's alone.
    let shards = data.path().join("shards");
    fs::create_dir_all(&shards).unwrap();
    for (name, poisoned) in [("s0", false), ("s1", true), ("s2", false), ("s3", false)] {
        let records = texts.records(240, 4, poisoned);
        jsonl(&shards.join(format!("{name}.jsonl")), &records);
    }
    let followed = |on_refuse: &str| {
        let incoming = data.path().join(format!("incoming-{on_refuse}"));
        fs::create_dir_all(&incoming).unwrap();
        for name in ["s0", "s1", "s2", "s3"] {
            let file = format!("{name}.jsonl");
            fs::copy(shards.join(&file), incoming.join(&file)).unwrap();
        }
        let run = data.path().join(on_refuse);
        let mut sets = sets(&base);
        sets.push(format!("follow.on_refuse=\"{on_refuse}\""));
        follow(&run, &incoming, Some(TEXT_CONFIG), &sets);
        let rounds = rounds(&run);
        eprintln!("on_refuse = {on_refuse}:\n{}", slice_table(&rounds));
        rounds
    };
    let promoted = |rounds: &[Value]| -> Vec<bool> {
        rounds
            .iter()
            .map(|r| r["decision"]["promoted"] == true)
            .collect()
    };
    let revert = followed("revert");
    assert_eq!(
        promoted(&revert),
        [true, false, true, true],
        "{}",
        slice_table(&revert)
    );
    let refused = &revert[1]["decision"];
    assert_eq!(refused["slices"][0]["passed"], false, "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("on source=chat")
    );
    let carried = followed("continue");
    assert_eq!(
        promoted(&carried)[..2],
        [true, false],
        "{}",
        slice_table(&carried)
    );
    assert!(carried[1]["decision"]["reverted_to"].is_null());
    // The refused candidate is where the continuing learner goes on from; the reverted one
    // goes on from s0's, the promoted version.
    assert_ne!(
        carried[2]["weights_sha256"], revert[2]["weights_sha256"],
        "the learners part after the refusal"
    );
}
