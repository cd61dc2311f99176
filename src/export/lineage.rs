//! Where an exported model came from (`manifest.json`'s `lineage`): the SHA-256 of the run's
//! resolved config, the code that trained it (stoke's version and git commit), its dataset,
//! and for a followed run (`stoke train --follow`) every shard trained on up to the exported
//! checkpoint, with its SHA-256 (not those of refused rounds that were undone), and the
//! version promoted or served before it (its parent). Also the model card `export --format
//! hf` writes (`README.md` with the Hub's YAML metadata), so a folder pushed to the Hub says
//! the same.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::files::digest;
use crate::run::Measured;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// SHA-256 of the run directory's `config.toml` (every default filled in).
    pub config_sha256: String,
    /// `stoke <version> (git <commit>)`.
    pub code: String,
    /// The dataset kind and where it was read.
    pub dataset: String,
    /// A followed run's shards, in the order they were trained on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardDigest>,
    /// The version promoted before this one, for a followed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardDigest {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub records: usize,
}

/// stoke's version and the commit it was built from.
pub fn code_version() -> String {
    format!(
        "stoke {} (git {})",
        env!("CARGO_PKG_VERSION"),
        env!("STOKE_GIT_COMMIT")
    )
}

/// The part of a checkpoint's state lineage reads: what following had taken by then.
#[derive(Deserialize)]
struct CheckpointFollow {
    follow: Option<Followed>,
}

#[derive(Deserialize)]
struct Followed {
    ledger: Vec<Taken>,
    rounds: Vec<Round>,
    /// The version served when following began.
    #[serde(default)]
    served_before: Option<String>,
}

/// A ledger entry: the shard, and whether its round was undone (a refused round with
/// `follow.on_refuse = "revert"`), so that the weights hold nothing of it.
#[derive(Deserialize)]
struct Taken {
    #[serde(flatten)]
    shard: ShardDigest,
    #[serde(default)]
    reverted: bool,
}

#[derive(Deserialize)]
struct Round {
    decision: Decision,
}

#[derive(Deserialize)]
struct Decision {
    version: Option<String>,
}

/// The lineage of the checkpoint whose state is `state`, in the run at `run` with `config`.
pub fn of_checkpoint(run: &Path, config: &ExperimentConfig, state: &serde_json::Value) -> Lineage {
    let config_sha256 = std::fs::read(run.join(crate::run::CONFIG_FILE))
        .map(|bytes| digest(&bytes).sha256)
        .unwrap_or_default();
    let followed = serde_json::from_value::<CheckpointFollow>(state.clone())
        .ok()
        .and_then(|state| state.follow);
    let (shards, parent) = match followed {
        Some(followed) => {
            // The last round is this checkpoint's own; the parent is the version promoted
            // before it, else the one served when following began.
            let earlier = followed.rounds.len().saturating_sub(1);
            let parent = followed.rounds[..earlier]
                .iter()
                .rev()
                .find_map(|round| round.decision.version.clone())
                .or(followed.served_before);
            let trained_on = followed
                .ledger
                .into_iter()
                .filter(|taken| !taken.reverted)
                .map(|taken| taken.shard)
                .collect();
            (trained_on, parent)
        }
        None => (Vec::new(), None),
    };
    Lineage {
        config_sha256,
        code: code_version(),
        dataset: format!(
            "{} at {}",
            config.data.dataset.name(),
            config.data.path.display()
        ),
        shards,
        parent,
    }
}

/// The model card of a Hugging Face folder: the Hub's YAML metadata (library, pipeline,
/// tags, the evaluation result) and what the model is and where it came from.
pub fn model_card(
    name: &str,
    library: &str,
    pipeline: Option<&str>,
    lineage: &Lineage,
    metrics: &[(&str, &Measured)],
) -> String {
    let mut yaml = format!("---\nlibrary_name: {library}\n");
    if let Some(pipeline) = pipeline {
        yaml.push_str(&format!("pipeline_tag: {pipeline}\n"));
    }
    yaml.push_str("tags:\n- stoke\n");
    let results: Vec<String> = metrics
        .iter()
        .flat_map(|(split, measured)| {
            measured.metrics.iter().map(move |(metric, value)| {
                format!(
                    "      - type: {metric}\n        value: {value}\n        name: {split} {metric}\n"
                )
            })
        })
        .collect();
    if !results.is_empty() {
        yaml.push_str(&format!(
            "model-index:\n- name: {name}\n  results:\n  - task:\n      type: {}\n    dataset:\n      name: {}\n      type: {}\n    metrics:\n{}",
            pipeline.unwrap_or("other"),
            yaml_string(&lineage.dataset),
            yaml_string(&lineage.dataset),
            results.concat()
        ));
    }
    yaml.push_str("---\n");
    let mut card = format!(
        "{yaml}\n# {name}\n\nTrained with [stoke](https://github.com/) on {}.\n\n## Lineage\n\n- code: {}\n- config SHA-256: `{}`\n",
        lineage.dataset, lineage.code, lineage.config_sha256
    );
    if let Some(parent) = &lineage.parent {
        card.push_str(&format!("- parent version: {parent}\n"));
    }
    if !lineage.shards.is_empty() {
        card.push_str("\n| shard | records | SHA-256 |\n|---|---|---|\n");
        for shard in &lineage.shards {
            card.push_str(&format!(
                "| {} | {} | `{}` |\n",
                shard.name, shard.records, shard.sha256
            ));
        }
    }
    card
}

/// `text` as a double-quoted YAML scalar.
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}
