//! What following has done, kept in every checkpoint (`state.json`'s `follow`), so that a run
//! killed at any moment resumes without taking a shard twice or skipping one: the ledger of
//! shards taken, the replay reservoir, each round's figures and each gate decision.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::metrics::Measured;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FollowState {
    /// The shards taken, in the order they were trained on.
    pub ledger: Vec<LedgerEntry>,
    pub reservoir: Reservoir,
    pub rounds: Vec<RoundRecord>,
    /// The version now promoted and its holdout figures (the gate's reference).
    pub promoted: Option<Promoted>,
    /// The checkpoint following began from: the learner before its first round, where a
    /// refused round returns to until this run promotes a version of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The version `--promote MODELS` served when following began: the first candidates are
    /// gated against it, and the first version promoted here names it as its parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_before: Option<String>,
}

impl FollowState {
    /// The checkpoint a refused round returns the learner to: the promoted version's, else
    /// the one following began from.
    pub fn revert_target(&self) -> Option<&str> {
        self.promoted
            .as_ref()
            .and_then(|p| p.checkpoint.as_deref())
            .or(self.start.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub records: usize,
    /// Why the gate refused the round's candidate, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The refusal undid the round (`follow.on_refuse = "revert"`): the learner went back,
    /// and the shard's records are neither in the weights nor in the reservoir.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promoted {
    /// `vNNNN` in the models directory (empty without `--promote`).
    pub version: String,
    pub holdout: Measured,
    /// Its figure on each slice of the holdout (`eval.slice_by`), by value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slices: BTreeMap<String, f64>,
    /// The checkpoint it was exported from (kept by pruning); none for the version that was
    /// served before following began, which is read from [`Promoted::artifact`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The artifact of a version this run did not train (the one served when it began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<PathBuf>,
}

/// One shard's round: the model's figures on it before training on it (the honest measure
/// of how it does on fresh data), the candidate's on the holdout after, and the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub shard: String,
    pub records: usize,
    /// Global step when the round ended.
    pub step: usize,
    pub before: Measured,
    /// The candidate's figures on the shard, after training on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Measured>,
    pub holdout: Measured,
    pub replayed: usize,
    /// SHA-256 of the candidate's parameters (`crate::model::weights_digest`).
    pub weights_sha256: String,
    pub decision: Decision,
}

/// The gate's verdict on a round's candidate, with the figures it compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub metric: String,
    pub candidate: f64,
    /// The current version's figure (none before the first promotion).
    pub current: Option<f64>,
    pub tolerance: f64,
    pub promoted: bool,
    /// The version written, when promoted into a models directory.
    pub version: Option<String>,
    pub reason: String,
    /// The same comparison on each slice of the holdout (`eval.slice_by`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<SliceFigures>,
    /// The same comparison on the newest shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<SliceFigures>,
    /// The checkpoint the learner returned to after this refusal (`follow.on_refuse =
    /// "revert"`); none when training went on from the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_to: Option<String>,
}

/// A slice of the holdout (or the newest shard) in a gate decision: the candidate's figure
/// on it and the promoted version's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceFigures {
    /// `field=value`, or the newest shard's name.
    pub slice: String,
    pub records: usize,
    pub candidate: f64,
    pub current: Option<f64>,
    /// Whether the candidate is within the tolerance of the current figure here.
    pub passed: bool,
}

/// A uniform sample of the records taken so far (Vitter's algorithm R), as references to
/// (shard, record); each round's draws come from (seed, round), so a resumed run keeps the
/// same sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reservoir {
    /// Records offered so far.
    pub seen: u64,
    pub items: Vec<(String, u32)>,
}

impl Reservoir {
    /// Offers shard `name`'s `records` records to a reservoir of `capacity`.
    pub fn offer(&mut self, name: &str, records: usize, capacity: usize, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for record in 0..records as u32 {
            if self.items.len() < capacity {
                self.items.push((name.to_string(), record));
            } else {
                let slot = rng.random_range(0..=self.seen) as usize;
                if slot < capacity {
                    self.items[slot] = (name.to_string(), record);
                }
            }
            self.seen += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservoir_is_a_uniform_sample_of_everything_offered() {
        let mut reservoir = Reservoir::default();
        for shard in 0..50 {
            reservoir.offer(&format!("s{shard:02}"), 200, 1000, shard);
        }
        assert_eq!(reservoir.items.len(), 1000);
        assert_eq!(reservoir.seen, 10_000);
        // Each of the 50 shards holds about 1000 / 50 = 20 of the sample.
        let early = reservoir
            .items
            .iter()
            .filter(|(s, _)| s.as_str() < "s25")
            .count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 from the first half"
        );
        let mut again = Reservoir::default();
        for shard in 0..50 {
            again.offer(&format!("s{shard:02}"), 200, 1000, shard);
        }
        assert_eq!(again, reservoir);
    }
}
