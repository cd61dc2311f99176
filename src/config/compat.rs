//! Which config changes a resumed run may take. Keys that define the model, the data, the
//! optimisation or the random draws must stay as they were; the run's length, its cadence of
//! evaluation, logging and checkpoints, and where it runs may change.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::schema::ExperimentConfig;

/// Keys (or whole sections, ending in `.`) a resumed run may change.
const SAFE_TO_CHANGE: &[&str] = &[
    "run.name",
    "run.backend",
    "run.cpu_backend",
    "run.runs_dir",
    "data.workers",
    "data.prefetch",
    "data.memory_budget",
    "train.epochs",
    "train.max_steps",
    "train.eval_every",
    "train.log_every",
    "train.eval_batch_size",
    "train.progress",
    "train.early_stopping",
    "checkpoint.",
    "log.",
    "eval.",
    "scheduler.min_lr",
    "follow.poll_s",
    "follow.idle_exit_s",
    "follow.max_shards",
    "follow.gate.",
    "follow.on_refuse",
];

/// A key whose value differs between a run's config and the one asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub saved: String,
    pub requested: String,
}

/// Every key a resumed run may not change, with its value: what a checkpoint records, so
/// that a resume names any key that differs from what the checkpoint was trained with, also
/// one edited by hand in the run's `config.toml`.
pub fn fixed_keys(config: &ExperimentConfig) -> BTreeMap<String, String> {
    flatten(config)
        .into_iter()
        .filter(|(key, _)| !is_safe(key))
        .collect()
}

/// The keys whose values in `requested` differ from `fixed` (from [`fixed_keys`]).
pub fn changes_from(fixed: &BTreeMap<String, String>, requested: &ExperimentConfig) -> Vec<Change> {
    let requested = fixed_keys(requested);
    let keys: std::collections::BTreeSet<&String> = fixed.keys().chain(requested.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (before, after) = (fixed.get(key), requested.get(key));
            (before != after).then(|| Change {
                key: key.clone(),
                saved: before.cloned().unwrap_or_else(|| "(not set)".into()),
                requested: after.cloned().unwrap_or_else(|| "(not set)".into()),
            })
        })
        .collect()
}

/// SHA-256 of [`fixed_keys`]: what every rank of a distributed run must agree on.
pub fn fixed_keys_digest(config: &ExperimentConfig) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (key, value) in fixed_keys(config) {
        hasher.update(format!("{key}={value}\n"));
    }
    hasher.finalize().into()
}

fn is_safe(key: &str) -> bool {
    SAFE_TO_CHANGE.iter().any(|safe| {
        key == *safe
            || key.starts_with(safe) && (safe.ends_with('.') || key[safe.len()..].starts_with('.'))
    })
}

/// SHA-256 of the keys that define the model and the data, for checkpoint manifests.
pub fn definition_hash(config: &ExperimentConfig) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in flatten(config) {
        let defines = key.starts_with("model.") || key.starts_with("data.");
        if defines && !is_safe(&key) {
            hasher.update(format!("{key}={value}\n"));
        }
    }
    format!("{:x}", hasher.finalize())
}

/// Every leaf of the config as `dotted.key → TOML value`.
pub fn flatten(config: &ExperimentConfig) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, value, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    let value = toml::Value::try_from(config).expect("the schema serializes to TOML");
    walk("", &value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OptimizerConfig;

    #[test]
    fn length_cadence_and_placement_may_change() {
        let saved = ExperimentConfig::default();
        let mut requested = saved.clone();
        requested.train.epochs = 20;
        requested.train.max_steps = Some(5);
        requested.checkpoint.keep_last = 7;
        requested.data.workers = 0;
        requested.run.backend = crate::config::BackendChoice::Ndarray;
        assert!(changes_from(&fixed_keys(&saved), &requested).is_empty());
        assert_eq!(definition_hash(&saved), definition_hash(&requested));
    }

    #[test]
    fn model_data_and_optimisation_may_not() {
        let saved = ExperimentConfig::default();
        let mut requested = saved.clone();
        requested
            .model
            .settings
            .insert("hidden".into(), toml::Value::Array(vec![10.into()]));
        if let OptimizerConfig::Adam(adam) = &mut requested.optimizer {
            adam.lr = 0.5;
        }
        requested.data.valid_fraction = 0.2;
        requested.run.seed = 1;
        let keys: Vec<String> = changes_from(&fixed_keys(&saved), &requested)
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(
            keys,
            [
                "data.valid_fraction",
                "model.hidden",
                "optimizer.lr",
                "run.seed"
            ]
        );
        assert_ne!(definition_hash(&saved), definition_hash(&requested));
    }
}
