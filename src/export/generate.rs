//! `stoke generate`: a continuation of a prompt, sampled token by token from a language
//! model with temperature and top-k.

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Loaded;
use crate::Error;
use crate::data::DataSpec;
use crate::model::Input;

pub struct GenerateOptions {
    pub prompt: String,
    pub tokens: usize,
    /// 0 picks the most likely token every time.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub seed: u64,
}

/// The prompt and its continuation.
pub fn generate(loaded: &Loaded, options: &GenerateOptions) -> Result<String, Error> {
    let DataSpec::LanguageModel { context_length, .. } = loaded.spec else {
        return Err(Error::Usage(format!(
            "generate needs a language model; this run trained a {} model",
            loaded.model_config.kind()
        )));
    };
    let tokenizer = loaded
        .tokenizer
        .as_ref()
        .ok_or_else(|| Error::Usage("the checkpoint has no tokenizer".into()))?;
    let mut ids = tokenizer.encode(&options.prompt);
    if ids.is_empty() {
        return Err(Error::Usage(
            "the prompt is empty: give at least one character".into(),
        ));
    }
    let prompt_len = ids.len();
    let device = loaded.backend.device.clone();
    let model = &loaded.model;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    for _ in 0..options.tokens {
        let window = &ids[ids.len().saturating_sub(context_length)..];
        let input: Vec<i64> = window.iter().map(|&id| i64::from(id)).collect();
        let input = Tensor::<2, Int>::from_data(TensorData::new(input, [1, window.len()]), &device);
        let logits = model.scores(Input::Sequences(input)).ok_or_else(|| {
            Error::Usage(format!(
                "a {} model takes inputs of its own: it cannot continue a prompt",
                loaded.model_config.kind()
            ))
        })?; // [window, vocab]
        let [rows, vocab] = logits.dims();
        let last: Vec<f32> = logits
            .slice([rows - 1..rows, 0..vocab])
            .into_data()
            .iter::<f32>()
            .collect();
        ids.push(sample(&last, options.temperature, options.top_k, &mut rng) as u32);
    }
    let continuation = tokenizer.decode(&ids[prompt_len..]);
    Ok(format!("{}{continuation}", options.prompt))
}

/// Draws a token from `logits` softened by `temperature`, among the `top_k` most likely.
fn sample(logits: &[f32], temperature: f64, top_k: Option<usize>, rng: &mut impl Rng) -> usize {
    let best = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(index, _)| index)
    };
    if temperature <= 0.0 {
        return best();
    }
    let mut candidates: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(index, &logit)| (index, logit as f64 / temperature))
        .collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    candidates.truncate(top_k.unwrap_or(candidates.len()).max(1));
    let max = candidates[0].1;
    let weights: Vec<f64> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
    let mut draw = rng.random::<f64>() * weights.iter().sum::<f64>();
    for ((index, _), weight) in candidates.iter().zip(&weights) {
        if draw < *weight {
            return *index;
        }
        draw -= weight;
    }
    candidates[0].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_temperature_is_greedy_and_top_1_is_too() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let logits = [0.1, 2.0, 0.5];
        assert_eq!(sample(&logits, 0.0, None, &mut rng), 1);
        for _ in 0..20 {
            assert_eq!(sample(&logits, 1.0, Some(1), &mut rng), 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let logits = [0.0, (3.0f32).ln()]; // probabilities 1/4 and 3/4
        let ones = (0..4000)
            .filter(|_| sample(&logits, 1.0, None, &mut rng) == 1)
            .count();
        assert!((2850..3150).contains(&ones), "{ones}");
    }
}
