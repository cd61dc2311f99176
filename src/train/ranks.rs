//! What the training loop shares between the ranks of a distributed run (see
//! [`crate::distributed`]): the fingerprint every rank must agree on before training, the
//! per-step agreement (predictions in the global step, and whether anyone asked to stop), and
//! metric sums added over the ranks. In a world of one every function here is free.

use sha2::{Digest, Sha256};

use super::Experiment;
use crate::Error;
use crate::config;
use crate::data::Part;
use crate::distributed::World;
use crate::run::state::IntervalSums;
use crate::task::Task;

/// Checks that every rank runs the same stoke on the same backend, with the same config
/// (every key a resume may not change) and the same data (split sizes, classes or
/// vocabulary, tokenizer). Each rank may differ only in what does not change the result:
/// worker threads, prefetch, progress display.
pub fn check_same_experiment(world: &World, experiment: &Experiment) -> Result<(), Error> {
    if !world.is_distributed() {
        return Ok(());
    }
    let config = &experiment.config;
    world.check_agreement(
        "the stoke version and backend",
        digest(&[
            env!("CARGO_PKG_VERSION").as_bytes(),
            experiment.backend.name.to_string().as_bytes(),
        ]),
    )?;
    world.check_agreement("the config", config::fixed_keys_digest(config))?;
    let splits = &experiment.splits;
    let sizes = format!(
        "{} {} {}",
        splits.train.len(),
        splits.valid.len(),
        splits.test.len()
    );
    let spec = serde_json::to_vec(&splits.spec).expect("the data spec serializes");
    let tokenizer = match &splits.tokenizer {
        Some(tokenizer) => tokenizer.to_json().into_bytes(),
        None => Vec::new(),
    };
    world.check_agreement(
        "the data (split sizes, classes or vocabulary, tokenizer)",
        digest(&[sizes.as_bytes(), &spec, &tokenizer]),
    )
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// This rank's part of every global step's samples and of every round of evaluation
/// batches.
pub fn own_part(world: &World) -> Part {
    Part {
        index: world.rank(),
        count: world.size(),
    }
}

/// What the ranks agree on before each step: the predictions in the whole step (what the
/// loss is averaged over) and whether any rank was asked to stop, in one all-reduce.
pub fn agree_on_step(world: &World, predictions: usize, stop: bool) -> (usize, bool) {
    let mut values = [predictions as f64, f64::from(u8::from(stop))];
    world.sum_f64(&mut values);
    (values[0] as usize, values[1] > 0.0)
}

/// `sums` added over all ranks.
pub fn sum_over_ranks(world: &World, sums: IntervalSums, task: &Task) -> IntervalSums {
    if !world.is_distributed() {
        return sums;
    }
    let layout = task.sum_layout();
    let mut values = sums.to_values(&layout);
    world.sum_f64(&mut values);
    IntervalSums::from_values(&values, &layout)
}

/// Every rank's `sums`, by rank (for a checkpoint, which rank 0 alone writes).
pub fn gather_from_ranks(world: &World, sums: &IntervalSums, task: &Task) -> Vec<IntervalSums> {
    let layout = task.sum_layout();
    let own = sums.to_values(&layout);
    let width = own.len();
    // Each rank fills its own slot of a zeroed table; the sum is every rank's row.
    let mut table = vec![0.0; width * world.size()];
    table[world.rank() * width..][..width].copy_from_slice(&own);
    world.sum_f64(&mut table);
    table
        .chunks_exact(width)
        .map(|row| IntervalSums::from_values(row, &layout))
        .collect()
}
