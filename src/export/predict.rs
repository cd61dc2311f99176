//! `stoke predict` for classifiers: image files or texts in, the top-k classes with their
//! probabilities out, batched. Inputs are read exactly as in training (images decoded,
//! resized and normalised by `data`; texts tokenised, cut and padded by `data`), so a
//! prediction equals what evaluation computed for the same input.
//!
//! A bad input (a missing file, not an image) becomes an error for that input alone.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::Loaded;
use crate::Error;
use crate::data::DeviceBatch;
use crate::data::{
    DataSpec, Dataset, ImageSet, ImageShape, labelled_texts, normalized, read_image,
};
use crate::task::TaskSpec;

/// One input's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub input: String,
    /// The `top_k` most likely classes, most likely first (for multi-label data every
    /// label, each with its own probability).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<Scored>,
    /// Regression: each target's predicted value, in the target's units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<std::collections::BTreeMap<String, f64>>,
    /// Multi-label: the labels predicted present (probability 0.5 or above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// The model's raw outputs, one per class in the manifest's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logits: Vec<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    pub label: String,
    pub probability: f64,
}

/// An input that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct PredictionError {
    pub input: String,
    pub error: String,
}

pub type Answer = Result<Prediction, PredictionError>;

/// Classifies image files `batch_size` at a time; unreadable files get an error each.
pub fn classify_images(
    loaded: &Loaded,
    paths: &[PathBuf],
    batch_size: usize,
    top_k: usize,
) -> Result<Vec<Answer>, Error> {
    let input = image_input(loaded)?;
    let resize = match &loaded.spec {
        DataSpec::ImageClassification { resize, .. } => *resize,
        _ => None,
    };
    let mut answers = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch_size.max(1)) {
        let decoded: Vec<_> = chunk
            .iter()
            .map(|path| read_image(path, input, resize.as_ref()))
            .collect();
        let readable: Vec<&[u8]> = decoded
            .iter()
            .filter_map(|image| image.as_deref().ok())
            .collect();
        let mut rows = image_logits(loaded, &readable)?.into_iter();
        for (path, image) in chunk.iter().zip(decoded) {
            let input = path.display().to_string();
            answers.push(match image {
                Ok(_) => {
                    let logits = rows.next().expect("one row per readable image");
                    Ok(Prediction::new(loaded, input, logits, top_k))
                }
                Err(err) => Err(PredictionError {
                    input,
                    error: err.to_string(),
                }),
            });
        }
    }
    Ok(answers)
}

/// Classifies texts `batch_size` at a time.
pub fn classify_texts(
    loaded: &Loaded,
    texts: &[String],
    batch_size: usize,
    top_k: usize,
) -> Result<Vec<Prediction>, Error> {
    let mut predictions = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch_size.max(1)) {
        let borrowed: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let rows = text_logits(loaded, &borrowed)?;
        predictions.extend(
            rows.into_iter()
                .zip(chunk)
                .map(|(logits, text)| Prediction::new(loaded, text.clone(), logits, top_k)),
        );
    }
    Ok(predictions)
}

/// The image shape an image classifier reads, or why `loaded` reads something else.
pub fn image_input(loaded: &Loaded) -> Result<ImageShape, Error> {
    match &loaded.spec {
        DataSpec::ImageClassification { input, .. } => Ok(*input),
        _ => Err(wrong_input(loaded, "image files")),
    }
}

/// The model's logits for decoded images (channel-major bytes of [`image_input`]'s
/// shape), run as one batch: one row per image, classes in the manifest's order.
pub fn image_logits(loaded: &Loaded, images: &[&[u8]]) -> Result<Vec<Vec<f32>>, Error> {
    image_outputs(loaded, images).map(|outputs| outputs.logits)
}

/// The model's logits for texts, tokenised and cut as in training, run as one batch.
pub fn text_logits(loaded: &Loaded, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
    text_outputs(loaded, texts).map(|outputs| outputs.logits)
}

impl Prediction {
    /// `input`'s answer from its row of logits: the `top_k` classes by probability.
    pub fn new(loaded: &Loaded, input: String, logits: Vec<f32>, top_k: usize) -> Self {
        let classes = loaded.spec.classes().unwrap_or_default();
        Prediction {
            input,
            top: top_classes(&logits, &classes, top_k),
            values: None,
            labels: None,
            logits,
        }
    }
}

fn wrong_input(loaded: &Loaded, given: &str) -> Error {
    let expected = match loaded.spec {
        DataSpec::ImageClassification { .. } => "image files",
        DataSpec::TextClassification { .. } => "texts (--text, --file or standard input)",
        DataSpec::LanguageModel { .. } => "a prompt to continue (--generate N --prompt TEXT)",
        DataSpec::Tabular { .. } => "table rows (--rows FILE.csv)",
        DataSpec::Custom { .. } => {
            "inputs of its own, which predict cannot read (export its weights with stoke export)"
        }
    };
    Error::Usage(format!(
        "{} is a {} model: it takes {expected}, not {given}",
        loaded.source,
        loaded.model_config.kind()
    ))
}

/// Predicts the rows of a CSV file (a header row naming the columns) with a model of table
/// rows: each row read as training read its table, `batch_size` at a time; a row that cannot
/// be read gets an error of its own.
pub fn predict_rows(
    loaded: &Loaded,
    path: &std::path::Path,
    batch_size: usize,
    top_k: usize,
) -> Result<Vec<Answer>, Error> {
    let DataSpec::Tabular {
        numeric,
        categorical,
        target,
    } = &loaded.spec
    else {
        return Err(wrong_input(loaded, "table rows"));
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|err| Error::Usage(format!("{}: {err}", path.display())))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|err| Error::Usage(format!("{}: {err}", path.display())))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let line = record
            .as_ref()
            .map_or(0, |r| r.position().map_or(0, |p| p.line() as usize));
        let input = format!("{}:{line}", path.display());
        let encoded = record.map_err(|err| err.to_string()).and_then(|record| {
            let row = headers
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_string))
                .collect();
            crate::data::tabular::encode_row(&loaded.spec, &row)
        });
        rows.push((input, encoded));
    }
    let mut answers = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let readable: Vec<&(Vec<f32>, Vec<i64>)> = chunk
            .iter()
            .filter_map(|(_, row)| row.as_ref().ok())
            .collect();
        // A batch of one runs as two copies, as for images and texts.
        let copies = if readable.len() == 1 { 2 } else { 1 };
        let batch: Vec<&(Vec<f32>, Vec<i64>)> = readable
            .iter()
            .flat_map(|row| std::iter::repeat_n(*row, copies))
            .collect();
        let scores = match batch.len() {
            0 => Vec::new(),
            size => {
                let device = &loaded.backend.device;
                let numbers: Vec<f32> = batch.iter().flat_map(|(n, _)| n.clone()).collect();
                let ids: Vec<i64> = batch.iter().flat_map(|(_, c)| c.clone()).collect();
                let input = crate::data::Input::Rows {
                    numeric: burn::prelude::Tensor::from_data(
                        burn::prelude::TensorData::new(numbers, [size, numeric.len()]),
                        device,
                    ),
                    categorical: burn::prelude::Tensor::from_data(
                        burn::prelude::TensorData::new(ids, [size, categorical.len()]),
                        device,
                    ),
                };
                let scores = loaded.model.scores(input).ok_or_else(|| {
                    Error::Usage(format!(
                        "a {} model does not read table rows",
                        loaded.model_config.kind()
                    ))
                })?;
                let [_, width] = scores.dims();
                let values: Vec<f32> = scores.into_data().iter::<f32>().collect();
                values
                    .chunks_exact(width)
                    .step_by(copies)
                    .map(<[f32]>::to_vec)
                    .collect()
            }
        };
        let mut scores = scores.into_iter();
        for (input, row) in chunk {
            answers.push(match row {
                Ok(_) => {
                    let logits = scores.next().expect("one row of scores per readable row");
                    Ok(row_answer(input.clone(), logits, target, top_k))
                }
                Err(error) => Err(PredictionError {
                    input: input.clone(),
                    error: error.clone(),
                }),
            });
        }
    }
    Ok(answers)
}

/// A table row's answer from its scores, as its task reads them.
fn row_answer(input: String, logits: Vec<f32>, task: &TaskSpec, top_k: usize) -> Prediction {
    let mut prediction = Prediction {
        input,
        top: Vec::new(),
        values: None,
        labels: None,
        logits: Vec::new(),
    };
    match task {
        TaskSpec::Regression { targets, scales } => {
            prediction.values = Some(
                targets
                    .iter()
                    .enumerate()
                    .map(|(t, name)| {
                        let value = f64::from(logits[t]);
                        let value = scales.get(t).map_or(value, |scale| scale.restore(value));
                        (name.clone(), value)
                    })
                    .collect(),
            );
        }
        TaskSpec::MultiLabel { labels } => {
            let mut scored: Vec<Scored> = labels
                .iter()
                .zip(&logits)
                .map(|(label, &logit)| Scored {
                    label: label.clone(),
                    probability: 1.0 / (1.0 + (-f64::from(logit)).exp()),
                })
                .collect();
            prediction.labels = Some(
                scored
                    .iter()
                    .filter(|s| s.probability >= 0.5)
                    .map(|s| s.label.clone())
                    .collect(),
            );
            scored.sort_by(|a, b| b.probability.total_cmp(&a.probability));
            prediction.top = scored;
        }
        TaskSpec::Classification { classes } => {
            prediction.top = top_classes(&logits, classes, top_k);
        }
        TaskSpec::LanguageModel { .. } => {}
    }
    prediction.logits = logits;
    prediction
}

/// What the model made of a batch of inputs: a row of logits per input, and the features
/// drift watches (`profile::features`) of the same inputs as the model read them.
pub struct Outputs {
    pub logits: Vec<Vec<f32>>,
    pub features: Vec<Vec<f32>>,
}

/// [`image_logits`], with each image's drift features.
pub fn image_outputs(loaded: &Loaded, images: &[&[u8]]) -> Result<Outputs, Error> {
    let DataSpec::ImageClassification {
        input,
        normalization,
        ..
    } = &loaded.spec
    else {
        return Err(wrong_input(loaded, "image files"));
    };
    let set = ImageSet {
        shape: *input,
        pixels: images.concat(),
        labels: vec![0; images.len()],
        origins: Default::default(),
    };
    outputs(loaded, &normalized(Arc::new(set), normalization))
}

/// [`text_logits`], with each text's drift features.
pub fn text_outputs(loaded: &Loaded, texts: &[&str]) -> Result<Outputs, Error> {
    let (DataSpec::TextClassification { max_length, .. }, Some(tokenizer)) =
        (&loaded.spec, &loaded.tokenizer)
    else {
        return Err(wrong_input(loaded, "texts"));
    };
    outputs(
        loaded,
        &labelled_texts(tokenizer, texts, Vec::new(), *max_length),
    )
}

/// Runs every sample of `data` through the model in one batch.
///
/// A batch of one is run as two copies of its sample. On the CPU backends a one-row matrix
/// product takes another kernel (a matrix-vector product) whose sums round differently, so
/// an input alone would get logits a few ulps away from the same input in any larger batch;
/// with this, an answer does not depend on which batch the input was in (`stoke predict`'s
/// `--batch-size`, or whatever `stoke serve` gathered).
fn outputs(loaded: &Loaded, data: &Arc<dyn Dataset>) -> Result<Outputs, Error> {
    let all: Vec<u32> = (0..data.len() as u32).collect();
    outputs_at(loaded, data, &all)
}

/// [`outputs`] for the samples `at` of `data`, in one batch.
pub(crate) fn outputs_at(
    loaded: &Loaded,
    data: &Arc<dyn Dataset>,
    at: &[u32],
) -> Result<Outputs, Error> {
    let indices: Vec<u32> = match at {
        [] => {
            return Ok(Outputs {
                logits: Vec::new(),
                features: Vec::new(),
            });
        }
        [one] => vec![*one, *one],
        all => all.to_vec(),
    };
    let host = data
        .host_batch(&indices)
        .expect("predict reads inputs through stoke's own datasets");
    let unknown = loaded.tokenizer.as_ref().and_then(|t| t.unknown_id());
    let mut features = super::profile::features(&host, &loaded.spec, unknown);
    features.truncate(at.len());
    let batch = DeviceBatch::new(host, &loaded.backend.device);
    let logits = loaded.model.scores(batch.input).ok_or_else(|| {
        Error::Usage(format!(
            "{} is a {} model, which takes inputs of its own: predict reads images, texts and table rows",
            loaded.source,
            loaded.model_config.kind()
        ))
    })?; // [batch, classes]
    let [_, width] = logits.dims();
    let values: Vec<f32> = logits.into_data().iter::<f32>().collect();
    let logits = values
        .chunks_exact(width)
        .take(at.len())
        .map(<[f32]>::to_vec)
        .collect();
    Ok(Outputs { logits, features })
}

/// The `k` most likely classes under the softmax of `logits`.
fn top_classes(logits: &[f32], classes: &[String], k: usize) -> Vec<Scored> {
    let probabilities = crate::model::probabilities(logits);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(k.max(1))
        .map(|class| Scored {
            label: classes
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string()),
            probability: probabilities[class],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_classes_are_ordered_softmax_probabilities() {
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let top = top_classes(&[0.0, (3.0f32).ln(), f32::NEG_INFINITY], &classes, 2);
        assert_eq!(top[0].label, "b");
        assert!((top[0].probability - 0.75).abs() < 1e-6);
        assert_eq!(top[1].label, "a");
        assert!((top[1].probability - 0.25).abs() < 1e-6);
    }
}
