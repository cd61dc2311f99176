//! Shards of labelled text records: one JSONL, CSV or Parquet file each, read as the run's
//! text-classification data is (`data.text`: its fields and format), tokenised by the run's
//! tokenizer. A record that does not read or whose label is not one of the run's classes
//! rejects the whole shard: the classes and vocabulary are the base run's and stay fixed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::incoming::{Shard, ShardKind, first_line, replay_gone};
use crate::Error;
use crate::config::{OnError, TextDataConfig};
use crate::data::text::records;
use crate::data::{Dataset, Skipped, Tokenizer, labelled_texts};

const SUFFIXES: [&str; 4] = [".jsonl", ".ndjson", ".csv", ".parquet"];

/// The run's texts: how records are read, the tokenizer and classes they are read with.
pub struct TextShards {
    pub text: TextDataConfig,
    pub tokenizer: Arc<Tokenizer>,
    pub classes: Vec<String>,
    pub max_length: usize,
}

impl TextShards {
    /// The texts and classes of shard `name`, checked against the run's classes.
    fn texts(&self, dir: &Path, name: &str) -> Result<(Vec<String>, Vec<u16>), String> {
        let path = dir.join(name);
        let read = records::read(
            &path,
            &self.text,
            None,
            OnError::Fail,
            &mut Skipped::default(),
        )
        .map_err(|err| first_line(&err))?;
        let mut texts = Vec::with_capacity(read.len());
        let mut labels = Vec::with_capacity(read.len());
        for record in read {
            let Some(class) = self.classes.iter().position(|c| *c == record.label) else {
                return Err(format!(
                    "{}:{}: label \"{}\" is not one of the run's classes ({})",
                    path.display(),
                    record.line,
                    record.label,
                    self.classes.join(", ")
                ));
            };
            texts.push(record.text);
            labels.push(class as u16);
        }
        Ok((texts, labels))
    }

    fn dataset(&self, texts: &[String], labels: Vec<u16>) -> Arc<dyn Dataset> {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        labelled_texts(&self.tokenizer, &texts, labels, self.max_length)
    }
}

impl ShardKind for TextShards {
    fn describe(&self) -> &'static str {
        "JSONL, CSV or Parquet files of labelled texts"
    }

    fn suffixes(&self) -> &'static [&'static str] {
        &SUFFIXES
    }

    fn load(&self, dir: &Path, name: &str) -> Result<Arc<dyn Dataset>, String> {
        let (texts, labels) = self.texts(dir, name)?;
        Ok(self.dataset(&texts, labels))
    }

    fn training_set(
        &self,
        dir: &Path,
        shard: &Shard,
        replay: &[(String, u32)],
    ) -> Result<Arc<dyn Dataset>, Error> {
        let mut shards: HashMap<&str, (Vec<String>, Vec<u16>)> = HashMap::new();
        let read = |name: &str| self.texts(dir, name).map_err(|err| replay_gone(dir, err));
        let (mut texts, mut labels) = read(&shard.name)?;
        for (name, record) in replay {
            if !shards.contains_key(name.as_str()) {
                shards.insert(name, read(name)?);
            }
            let (shard_texts, shard_labels) = &shards[name.as_str()];
            let record = *record as usize;
            let (Some(text), Some(&label)) = (shard_texts.get(record), shard_labels.get(record))
            else {
                return Err(replay_gone(
                    dir,
                    format!("{name} no longer has record {record}"),
                ));
            };
            texts.push(text.clone());
            labels.push(label);
        }
        Ok(self.dataset(&texts, labels))
    }
}
