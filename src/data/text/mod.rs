//! Text datasets: labelled texts for classification, and a plain-text corpus cut into
//! windows for language modelling. Texts are tokenised once, at load time.

pub(crate) mod records;
mod tokenizer;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

pub use tokenizer::Tokenizer;

use super::{
    DataError, DataSpec, Dataset, Example, HostBatch, Samples, Skipped, Split, Splits,
    TEST_SPLIT_SALT, split_off,
};
use crate::config::{DataConfig, OnError};

/// Tokenised texts with their classes, batched with padding to the longest in the batch.
struct LabelledTokens {
    ids: Vec<Vec<u32>>,
    labels: Vec<u16>,
    pad_id: u32,
    /// Where each record came from and how it begins, when read from files.
    origins: Option<RecordOrigins>,
}

/// The file and line of each record, for reports.
struct RecordOrigins {
    files: Vec<PathBuf>,
    /// Per record: (index into `files`, 1-based line).
    records: Vec<(u16, u32)>,
}

impl Samples for LabelledTokens {
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn batch(&self, indices: &[u32]) -> HostBatch {
        let texts: Vec<&[u32]> = indices
            .iter()
            .map(|&i| self.ids[i as usize].as_slice())
            .collect();
        let labels = indices
            .iter()
            .map(|&i| i64::from(self.labels[i as usize]))
            .collect();
        padded_tokens(&texts, labels, self.pad_id)
    }

    fn resident_bytes(&self) -> usize {
        let ids: usize = self.ids.iter().map(|ids| ids.capacity() * 4 + 24).sum();
        let origins = self.origins.as_ref().map_or(0, |o| o.records.len() * 8);
        ids + self.labels.len() * 2 + origins
    }

    fn sample_bytes(&self) -> usize {
        // Ids, length and label of the longest text.
        let longest = self.ids.iter().map(Vec::len).max().unwrap_or(0);
        longest * 8 + 16
    }

    fn example(&self, index: u32) -> Option<Example> {
        let origins = self.origins.as_ref()?;
        let index = index as usize;
        let (file, line) = origins.records[index];
        Some(Example {
            file: Some(origins.files[usize::from(file)].clone()),
            line: Some(line as usize),
            image: None,
        })
    }
}

/// Token ids of `texts`, padded after each to the longest, with their `labels`.
pub(crate) fn padded_tokens(texts: &[&[u32]], labels: Vec<i64>, pad_id: u32) -> HostBatch {
    let lengths: Vec<usize> = texts.iter().map(|text| text.len()).collect();
    let width = lengths.iter().copied().max().unwrap_or(1);
    let mut ids = Vec::with_capacity(texts.len() * width);
    for text in texts {
        ids.extend(text.iter().map(|&id| i64::from(id)));
        ids.extend(std::iter::repeat_n(i64::from(pad_id), width - text.len()));
    }
    HostBatch::Tokens {
        ids,
        shape: [texts.len(), width],
        lengths,
        labels,
    }
}

/// A text's token ids as a classifier reads them: cut to `max_length`, never empty.
pub(crate) fn classifier_ids(tokenizer: &Tokenizer, text: &str, max_length: usize) -> Vec<u32> {
    let mut ids = tokenizer.encode_classified(text, max_length);
    if ids.is_empty() {
        ids.push(tokenizer.pad_id()); // An empty text still has one position to pool.
    }
    ids
}

/// `texts` tokenised and cut to `max_length` tokens, batched with padding: how a text
/// classifier sees text in training, evaluation and prediction. `labels` may be empty
/// (prediction), in which case every text is labelled 0.
pub fn labelled_texts(
    tokenizer: &Tokenizer,
    texts: &[&str],
    labels: Vec<u16>,
    max_length: usize,
) -> Arc<dyn Dataset> {
    Arc::new(tokenized(tokenizer, texts, labels, max_length))
}

fn tokenized(
    tokenizer: &Tokenizer,
    texts: &[&str],
    mut labels: Vec<u16>,
    max_length: usize,
) -> LabelledTokens {
    let pad_id = tokenizer.pad_id();
    let ids = texts
        .par_iter()
        .map(|text| classifier_ids(tokenizer, text, max_length))
        .collect();
    labels.resize(texts.len(), 0);
    LabelledTokens {
        ids,
        labels,
        pad_id,
        origins: None,
    }
}

/// Windows of a token stream: sample `i` reads `context` tokens from `starts[i]` and
/// predicts each next one.
struct Windows {
    ids: Arc<Vec<u32>>,
    starts: Vec<usize>,
    context: usize,
}

impl Windows {
    fn new(ids: Vec<u32>, context: usize, stride: usize, limit: Option<usize>) -> Self {
        let count = if ids.len() > context {
            (ids.len() - context - 1) / stride + 1
        } else {
            0
        };
        let starts = (0..count.min(limit.unwrap_or(usize::MAX)))
            .map(|i| i * stride)
            .collect();
        Self {
            ids: Arc::new(ids),
            starts,
            context,
        }
    }
}

impl Samples for Windows {
    fn len(&self) -> usize {
        self.starts.len()
    }

    fn batch(&self, indices: &[u32]) -> HostBatch {
        let mut inputs = Vec::with_capacity(indices.len() * self.context);
        let mut targets = Vec::with_capacity(indices.len() * self.context);
        for &index in indices {
            let start = self.starts[index as usize];
            let window = &self.ids[start..start + self.context + 1];
            inputs.extend(window[..self.context].iter().map(|&id| i64::from(id)));
            targets.extend(window[1..].iter().map(|&id| i64::from(id)));
        }
        HostBatch::Sequences {
            inputs,
            targets,
            shape: [indices.len(), self.context],
        }
    }

    fn resident_bytes(&self) -> usize {
        self.ids.len() * 4 + self.starts.len() * 8
    }

    fn sample_bytes(&self) -> usize {
        self.context * 16
    }
}

/// The training, validation and test files of a labelled text set: a directory holding
/// `train.*` (and optionally `valid.*`, `test.*`), or one file to split.
pub(crate) fn classification_files(path: &Path) -> Result<[Option<PathBuf>; 3], DataError> {
    if path.is_file() {
        return Ok([Some(path.to_path_buf()), None, None]);
    }
    if !path.is_dir() {
        return Err(DataError::Missing {
            dataset: "text-classification".into(),
            path: path.to_path_buf(),
            detail: "no such file or directory".into(),
            fetch: fetch_command(path),
        });
    }
    let find = |stem: &str| {
        ["jsonl", "csv", "ndjson", "parquet"]
            .iter()
            .map(|ext| path.join(format!("{stem}.{ext}")))
            .find(|candidate| candidate.is_file())
    };
    let train = find("train").ok_or_else(|| DataError::Missing {
        dataset: "text-classification".into(),
        path: path.to_path_buf(),
        detail: "the directory has no train.jsonl, train.csv or train.parquet".into(),
        fetch: fetch_command(path),
    })?;
    Ok([Some(train), find("valid"), find("test")])
}

fn fetch_command(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let known = ["spam-assassin"].contains(&name) && path.parent() == Some(Path::new("datasets"));
    known.then(|| format!("datasets/fetch {name}"))
}

pub fn load_classification(
    config: &DataConfig,
    seed: u64,
    tokenizer: Option<Tokenizer>,
) -> Result<Splits, DataError> {
    let text = config.text.clone().unwrap_or_default();
    let mut skipped = Skipped::default();
    let [train_file, valid_file, test_file] = classification_files(&config.path)?;
    let train_file = train_file.expect("a training file");
    let read = |path: &Path, skipped: &mut Skipped| {
        records::read(path, &text, config.limit, config.on_error, skipped)
    };
    let mut pool = read(&train_file, &mut skipped)?;
    if pool.is_empty() {
        return Err(DataError::Empty {
            path: train_file,
            what: "records".into(),
        });
    }
    let classes = super::classes_of(pool.iter().map(|r| r.label.as_str()));

    // Held-out files are read into the pool's tail; their records are split by index.
    let mut held_out = |file: &Option<PathBuf>, pool: &mut Vec<records::Record>| {
        file.as_ref()
            .map(
                |path| -> Result<(PathBuf, std::ops::Range<usize>), DataError> {
                    let records = read(path, &mut skipped)?;
                    let start = pool.len();
                    pool.extend(records);
                    Ok((path.clone(), start..pool.len()))
                },
            )
            .transpose()
    };
    let training_records = pool.len();
    let valid_part = held_out(&valid_file, &mut pool)?;
    let test_part = held_out(&test_file, &mut pool)?;

    // Labels the training file never shows cannot be learnt: each is a bad record.
    let mut labels = Vec::with_capacity(pool.len());
    let mut keep = Vec::with_capacity(pool.len());
    for (index, record) in pool.iter().enumerate() {
        match classes.iter().position(|c| *c == record.label) {
            Some(class) => {
                labels.push(class as u16);
                keep.push(index as u32);
            }
            None => {
                let file = [&valid_part, &test_part]
                    .into_iter()
                    .flatten()
                    .find(|(_, range)| range.contains(&index))
                    .map_or(&train_file, |(path, _)| path);
                let detail = format!(
                    "label \"{}\" does not occur in the training data",
                    record.label
                );
                skipped.bad_record(config.on_error, file, record.line, detail)?;
                labels.push(0);
            }
        }
    }
    let in_part = |part: &Option<(PathBuf, std::ops::Range<usize>)>| -> Option<Vec<u32>> {
        part.as_ref().map(|(_, range)| {
            keep.iter()
                .copied()
                .filter(|&i| range.contains(&(i as usize)))
                .collect()
        })
    };
    let train_pool: Vec<u32> = keep
        .iter()
        .copied()
        .filter(|&i| (i as usize) < training_records)
        .collect();
    let (train_pool, test) = match in_part(&test_part) {
        Some(test) => (train_pool, test),
        None => split_off(train_pool, config.test_fraction, seed ^ TEST_SPLIT_SALT),
    };
    let (train, valid) = match in_part(&valid_part) {
        Some(valid) => (train_pool, valid),
        None => split_off(train_pool, config.valid_fraction, seed),
    };
    if train.is_empty() {
        return Err(DataError::Empty {
            path: train_file,
            what: "records for the training split".into(),
        });
    }

    let tokenizer_config = config.tokenizer.clone().unwrap_or_default();
    let tokenizer = match tokenizer {
        Some(tokenizer) => tokenizer,
        None => Tokenizer::train(
            &tokenizer_config,
            train.iter().map(|&i| pool[i as usize].text.as_str()),
        )?,
    };
    let texts: Vec<&str> = pool.iter().map(|r| r.text.as_str()).collect();
    let pad_id = tokenizer.pad_id();
    let mut data = tokenized(&tokenizer, &texts, labels, text.max_length);
    let mut files = vec![train_file.clone()];
    let mut file_of = vec![0u16; training_records];
    for (path, range) in [&valid_part, &test_part].into_iter().flatten() {
        file_of.resize(range.start, 0);
        file_of.resize(range.end, files.len() as u16);
        files.push(path.clone());
    }
    data.origins = Some(RecordOrigins {
        files,
        records: pool
            .iter()
            .zip(file_of)
            .map(|(record, file)| (file, record.line as u32))
            .collect(),
    });
    let data: Arc<dyn Dataset> = Arc::new(data);
    Ok(Splits {
        train: Split::new(data.clone(), train),
        valid: Split::new(data.clone(), valid),
        test: Split::new(data, test),
        spec: DataSpec::TextClassification {
            classes,
            vocab_size: tokenizer.vocab_size(),
            max_length: text.max_length,
            pad_id,
        },
        tokenizer: Some(Arc::new(tokenizer)),
        skipped,
        unseen_categories: Default::default(),
    })
}

/// Reads a corpus (plain or gzipped), decoding UTF-8; with `on_error = "skip"` invalid bytes
/// become U+FFFD and are counted, otherwise the first stops the load with its line.
fn read_corpus(path: &Path, on_error: OnError, skipped: &mut Skipped) -> Result<String, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_file() {
        return Err(DataError::Missing {
            dataset: "text-corpus".into(),
            path: path.to_path_buf(),
            detail: "no such file".into(),
            fetch: None,
        });
    }
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(io)?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(|err| DataError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("cannot decompress: {err}"),
            })?;
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) => {
            let bytes = err.into_bytes();
            let mut rest: &[u8] = &bytes;
            let mut offset = 0;
            while let Err(invalid) = std::str::from_utf8(rest) {
                let at = offset + invalid.valid_up_to();
                let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                let detail = format!("invalid UTF-8 at byte {at}");
                match on_error {
                    OnError::Fail => {
                        return Err(DataError::Record {
                            path: path.to_path_buf(),
                            line,
                            detail,
                            skippable: true,
                        });
                    }
                    OnError::Skip => skipped.add(format!("{}:{line}: {detail}", path.display())),
                }
                let skip = invalid.valid_up_to()
                    + invalid
                        .error_len()
                        .unwrap_or(rest.len() - invalid.valid_up_to());
                offset += skip;
                rest = &rest[skip..];
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// A corpus split by position: the test tail last, the validation tail before it, the
/// rest for training.
pub fn load_corpus(config: &DataConfig, tokenizer: Option<Tokenizer>) -> Result<Splits, DataError> {
    let text_config = config.text.clone().unwrap_or_default();
    let mut skipped = Skipped::default();
    let corpus = read_corpus(&config.path, config.on_error, &mut skipped)?;
    let boundaries: Vec<usize> = corpus.char_indices().map(|(at, _)| at).collect();
    let at_fraction = |fraction: f64| {
        let index = ((boundaries.len() as f64) * (1.0 - fraction)).round() as usize;
        boundaries.get(index).copied().unwrap_or(corpus.len())
    };
    let test_start = at_fraction(config.test_fraction);
    let valid_start = at_fraction(config.test_fraction + config.valid_fraction).min(test_start);
    let (train_text, valid_text, test_text) = (
        &corpus[..valid_start],
        &corpus[valid_start..test_start],
        &corpus[test_start..],
    );

    let tokenizer = match tokenizer {
        Some(tokenizer) => tokenizer,
        None => {
            let tokenizer_config = config.tokenizer.clone().unwrap_or_default();
            Tokenizer::train(&tokenizer_config, train_text.split_inclusive('\n'))?
        }
    };
    let encode = |text: &str| -> Vec<u32> {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        tokenizer.encode_all(&lines).concat()
    };
    let context = text_config.context_length;
    let stride = text_config.stride.unwrap_or(context);
    let train_ids = encode(train_text);
    let chars_per_token = train_text.chars().count() as f64 / train_ids.len().max(1) as f64;
    let windows = |ids: Vec<u32>, stride: usize| -> Arc<dyn Dataset> {
        Arc::new(Windows::new(ids, context, stride, config.limit))
    };
    let train = windows(train_ids, stride);
    if train.is_empty() {
        return Err(DataError::Empty {
            path: config.path.clone(),
            what: format!("training text for one window of {context} tokens"),
        });
    }
    // Held-out windows do not overlap, so each token is scored once.
    let valid = windows(encode(valid_text), context);
    let test = windows(encode(test_text), context);
    Ok(Splits {
        train: Split::all(train),
        valid: Split::all(valid),
        test: Split::all(test),
        spec: DataSpec::LanguageModel {
            vocab_size: tokenizer.vocab_size(),
            context_length: context,
            chars_per_token,
        },
        tokenizer: Some(Arc::new(tokenizer)),
        skipped,
        unseen_categories: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_predict_the_next_token() {
        let windows = Windows::new((0..10).collect(), 3, 2, None);
        // Starts 0, 2, 4, 6: each needs 4 tokens.
        assert_eq!(Samples::len(&windows), 4);
        let HostBatch::Sequences {
            inputs,
            targets,
            shape,
        } = Samples::batch(&windows, &[1, 3])
        else {
            panic!("a sequence batch");
        };
        assert_eq!(shape, [2, 3]);
        assert_eq!(inputs, [2, 3, 4, 6, 7, 8]);
        assert_eq!(targets, [3, 4, 5, 7, 8, 9]);
    }

    #[test]
    fn labelled_tokens_pad_to_the_longest() {
        let data = LabelledTokens {
            ids: vec![vec![5, 6, 7], vec![8]],
            labels: vec![1, 0],
            pad_id: 0,
            origins: None,
        };
        let HostBatch::Tokens {
            ids,
            shape,
            lengths,
            labels,
        } = Samples::batch(&data, &[1, 0])
        else {
            panic!("a token batch");
        };
        assert_eq!(
            (ids, shape, lengths, labels),
            (vec![8, 0, 0, 5, 6, 7], [2, 3], vec![1, 3], vec![0, 1])
        );
    }
}
