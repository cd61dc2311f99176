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
use crate::data::{DataSpec, Dataset, ImageSet, labelled_texts, normalized, read_image};
use crate::train::DeviceBatch;

/// One input's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub input: String,
    /// The `top_k` most likely classes, most likely first.
    pub top: Vec<Scored>,
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
    let DataSpec::ImageClassification {
        input,
        normalization,
        ..
    } = &loaded.spec
    else {
        return Err(wrong_input(loaded, "image files"));
    };
    let mut answers = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch_size.max(1)) {
        let decoded: Vec<_> = chunk.iter().map(|path| read_image(path, *input)).collect();
        let readable: Vec<&[u8]> = decoded
            .iter()
            .filter_map(|image| image.as_deref().ok())
            .collect();
        let set = ImageSet {
            shape: *input,
            pixels: readable.concat(),
            labels: vec![0; readable.len()],
        };
        let mut scored =
            score(loaded, &normalized(Arc::new(set), normalization), top_k)?.into_iter();
        for (path, image) in chunk.iter().zip(decoded) {
            let input = path.display().to_string();
            answers.push(match image {
                Ok(_) => Ok(scored
                    .next()
                    .expect("one score per readable image")
                    .named(input)),
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
    let (DataSpec::TextClassification { max_length, .. }, Some(tokenizer)) =
        (&loaded.spec, &loaded.tokenizer)
    else {
        return Err(wrong_input(loaded, "texts"));
    };
    let mut predictions = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch_size.max(1)) {
        let borrowed: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let data = labelled_texts(tokenizer, &borrowed, Vec::new(), *max_length);
        let scored = score(loaded, &data, top_k)?;
        predictions.extend(
            scored
                .into_iter()
                .zip(chunk)
                .map(|(prediction, text)| prediction.named(text.clone())),
        );
    }
    Ok(predictions)
}

impl Prediction {
    fn named(mut self, input: String) -> Self {
        self.input = input;
        self
    }
}

fn wrong_input(loaded: &Loaded, given: &str) -> Error {
    let expected = match loaded.spec {
        DataSpec::ImageClassification { .. } => "image files",
        DataSpec::TextClassification { .. } => "texts (--text, --file or standard input)",
        DataSpec::LanguageModel { .. } => "a prompt to continue (--generate N --prompt TEXT)",
    };
    Error::Usage(format!(
        "{} is a {} model: it takes {expected}, not {given}",
        loaded.source,
        loaded.model_config.kind()
    ))
}

/// Runs every sample of `data` through the model in one batch.
fn score(loaded: &Loaded, data: &Arc<dyn Dataset>, top_k: usize) -> Result<Vec<Prediction>, Error> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let classes = loaded.spec.classes().unwrap_or_default();
    let indices: Vec<u32> = (0..data.len() as u32).collect();
    let batch = DeviceBatch::new(data.batch(&indices), &loaded.backend.device);
    let logits = loaded.model.forward(batch.input); // [batch, classes]
    let [rows, width] = logits.dims();
    let values: Vec<f32> = logits.into_data().iter::<f32>().collect();
    Ok((0..rows)
        .map(|row| {
            let logits = values[row * width..(row + 1) * width].to_vec();
            Prediction {
                input: String::new(),
                top: top_classes(&logits, classes, top_k),
                logits,
            }
        })
        .collect())
}

/// The `k` most likely classes under the softmax of `logits`.
fn top_classes(logits: &[f32], classes: &[String], k: usize) -> Vec<Scored> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weights: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
    order
        .into_iter()
        .take(k.max(1))
        .map(|class| Scored {
            label: classes
                .get(class)
                .cloned()
                .unwrap_or_else(|| class.to_string()),
            probability: weights[class] / total,
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
