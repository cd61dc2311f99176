//! Text shards: JSONL files (`train-00000.jsonl`, ...) of labelled records, indexed once
//! when opened (each record's byte range and class: 14 bytes a record) and read with
//! positioned reads, then tokenised, as batches are made.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Manifest, RecordKind, hold_out, split_shards, streamed_splits};
use crate::config::{DataConfig, DatasetKind, TextDataConfig};
use crate::data::text::records::parse_json_record;
use crate::data::text::{Tokenizer, classifier_ids, padded_tokens};
use crate::data::{DataError, DataSpec, Dataset, HostBatch, Samples, Skipped, Splits, classes_of};

/// Training texts a new tokenizer learns its vocabulary from.
const TOKENIZER_SAMPLE: usize = 50_000;

/// One split's text shards: where each record is, and its class.
pub struct ShardedTexts {
    shards: Vec<(File, PathBuf)>,
    starts: Vec<u32>,
    offsets: Vec<u64>,
    lengths: Vec<u32>,
    /// 1-based line of each record in its shard, for messages.
    lines: Vec<u32>,
    labels: Vec<u16>,
    fields: TextDataConfig,
    tokenizer: Option<Arc<Tokenizer>>,
}

/// A split being indexed: records' labels as read, before classes are known.
struct Indexed {
    set: ShardedTexts,
    raw_labels: Vec<u32>,
}

impl ShardedTexts {
    /// The text of record `index`.
    fn text(&self, index: u32) -> String {
        let shard = self.starts.partition_point(|&start| start <= index) - 1;
        let (file, path) = &self.shards[shard];
        let mut raw = vec![0u8; self.lengths[index as usize] as usize];
        let location = || format!("{}:{}", path.display(), self.lines[index as usize]);
        if let Err(err) = file.read_exact_at(&mut raw, self.offsets[index as usize]) {
            panic!("cannot read {}: {err}", location());
        }
        match parse_json_record(&raw, &self.fields) {
            Ok((text, _)) => text,
            // Every record was parsed when the shard was indexed: the file changed since.
            Err(detail) => panic!("{}: {detail} (the file changed during the run)", location()),
        }
    }
}

impl Samples for ShardedTexts {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batch(&self, indices: &[u32]) -> HostBatch {
        let tokenizer = self
            .tokenizer
            .as_ref()
            .expect("a tokenizer before batching");
        let max_length = self.fields.max_length;
        let ids: Vec<Vec<u32>> = indices
            .iter()
            .map(|&i| classifier_ids(tokenizer, &self.text(i), max_length))
            .collect();
        let texts: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let labels = indices
            .iter()
            .map(|&i| i64::from(self.labels[i as usize]))
            .collect();
        padded_tokens(&texts, labels, tokenizer.pad_id())
    }

    fn resident_bytes(&self) -> usize {
        self.labels.len() * (8 + 4 + 4 + 2) + self.shards.len() * 128
    }

    fn sample_bytes(&self) -> usize {
        self.fields.max_length * 8 + 16
    }
}

/// Reads the shards `names` of `dir`, indexing every record; bad records stop the load or
/// are skipped as `on_error` says. Labels are interned in `label_ids`.
fn index(
    dir: &Path,
    names: &[String],
    config: &DataConfig,
    fields: &TextDataConfig,
    label_ids: &mut HashMap<String, u32>,
    skipped: &mut Skipped,
) -> Result<Indexed, DataError> {
    let mut set = ShardedTexts {
        shards: Vec::new(),
        starts: vec![0],
        offsets: Vec::new(),
        lengths: Vec::new(),
        lines: Vec::new(),
        labels: Vec::new(),
        fields: fields.clone(),
        tokenizer: None,
    };
    let mut raw_labels = Vec::new();
    let limit = config.limit.unwrap_or(usize::MAX);
    for name in names {
        let path = dir.join(format!("{name}.jsonl"));
        let io = |source| DataError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let mut reader = BufReader::with_capacity(1 << 20, File::open(&path).map_err(io)?);
        let (mut offset, mut line, mut raw) = (0u64, 0u32, Vec::new());
        while raw_labels.len() < limit {
            raw.clear();
            let read = reader.read_until(b'\n', &mut raw).map_err(io)?;
            if read == 0 {
                break;
            }
            line += 1;
            let start = offset;
            offset += read as u64;
            let record = raw.strip_suffix(b"\n").unwrap_or(&raw);
            if record.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_json_record(record, fields) {
                Ok((_, label)) => {
                    let next = label_ids.len() as u32;
                    raw_labels.push(*label_ids.entry(label).or_insert(next));
                    set.offsets.push(start);
                    set.lengths.push(record.len() as u32);
                    set.lines.push(line);
                }
                Err(detail) => skipped.bad_record(config.on_error, &path, line as usize, detail)?,
            }
        }
        set.starts.push(raw_labels.len() as u32);
        set.shards.push((file, path));
    }
    Ok(Indexed { set, raw_labels })
}

/// Opens the text shards `config.path` holds, trains the tokenizer on a sample of the
/// training split unless `tokenizer` is given, and splits as image shards do.
pub fn load_texts(
    config: &DataConfig,
    seed: u64,
    tokenizer: Option<Tokenizer>,
) -> Result<Splits, DataError> {
    let dir = &config.path;
    if !dir.is_dir() {
        return Err(DataError::Missing {
            dataset: DatasetKind::TextShards.name().into(),
            path: dir.clone(),
            detail: "no such directory (write shards with `stoke data pack`)".into(),
            fetch: None,
        });
    }
    let manifest = Manifest::read_kind(dir, RecordKind::Texts)?;
    let names = split_shards(dir, manifest.as_ref(), ".jsonl")?;
    if names[0].is_empty() {
        return Err(DataError::Empty {
            path: dir.clone(),
            what: "training shards (train-*.jsonl files or a shards.json listing them)".into(),
        });
    }
    let fields = config.text.clone().unwrap_or_default();
    let (mut label_ids, mut skipped) = (HashMap::new(), Skipped::default());
    let mut splits = Vec::new();
    for names in &names {
        splits.push(
            (!names.is_empty())
                .then(|| index(dir, names, config, &fields, &mut label_ids, &mut skipped))
                .transpose()?,
        );
    }
    let names_of: HashMap<u32, String> =
        label_ids.into_iter().map(|(name, id)| (id, name)).collect();
    let classes = match &manifest {
        Some(manifest) => manifest.classes.clone(),
        None => {
            let train = splits[0].as_ref().expect("training shards");
            let mut seen: Vec<u32> = train.raw_labels.clone();
            seen.sort_unstable();
            seen.dedup();
            classes_of(seen.iter().map(|id| names_of[id].as_str()))
        }
    };
    // Class of each interned label; a label the classes lack is a bad record.
    let class_of: HashMap<u32, u16> = names_of
        .iter()
        .filter_map(|(id, name)| Some((*id, classes.iter().position(|c| c == name)? as u16)))
        .collect();
    let mut sets = Vec::new();
    for indexed in splits {
        let Some(Indexed {
            mut set,
            raw_labels,
        }) = indexed
        else {
            sets.push(None);
            continue;
        };
        let mut keep = Vec::with_capacity(raw_labels.len());
        for (record, raw) in raw_labels.iter().enumerate() {
            match class_of.get(raw) {
                Some(&class) => {
                    set.labels.push(class);
                    keep.push(record as u32);
                }
                None => {
                    let shard = set.starts.partition_point(|&s| s as usize <= record) - 1;
                    let detail = format!(
                        "label \"{}\" does not occur in the training data",
                        names_of[raw]
                    );
                    let (path, line) = (&set.shards[shard].1, set.lines[record] as usize);
                    skipped.bad_record(config.on_error, path, line, detail)?;
                    set.labels.push(0);
                }
            }
        }
        sets.push(Some((set, keep)));
    }
    let mut sets = sets.into_iter();
    let (mut train, train_keep) = sets.next().flatten().expect("training shards");
    let (valid, test) = (sets.next().flatten(), sets.next().flatten());
    if train_keep.is_empty() {
        return Err(DataError::Empty {
            path: dir.clone(),
            what: "records in the training shards".into(),
        });
    }
    let indices = hold_out(train_keep, valid.is_some(), test.is_some(), config, seed);
    let tokenizer = Arc::new(match tokenizer {
        Some(tokenizer) => tokenizer,
        None => {
            let step = indices[0].len().div_ceil(TOKENIZER_SAMPLE).max(1);
            let sample: Vec<String> = indices[0]
                .iter()
                .step_by(step)
                .map(|&i| train.text(i))
                .collect();
            Tokenizer::train(
                &config.tokenizer.clone().unwrap_or_default(),
                sample.iter().map(String::as_str),
            )?
        }
    });
    let own = [valid, test].map(|set| {
        set.map(|(mut set, keep)| {
            set.tokenizer = Some(tokenizer.clone());
            (Arc::new(set) as Arc<dyn Dataset>, keep)
        })
    });
    train.tokenizer = Some(tokenizer.clone());
    let shard_starts = train.starts.clone();
    let [train, valid, test] = streamed_splits(Arc::new(train), shard_starts, indices, own, config);
    Ok(Splits {
        train,
        valid,
        test,
        spec: DataSpec::TextClassification {
            classes,
            vocab_size: tokenizer.vocab_size(),
            max_length: fields.max_length,
            pad_id: tokenizer.pad_id(),
        },
        tokenizer: Some(tokenizer),
        skipped,
        unseen_categories: Default::default(),
    })
}
