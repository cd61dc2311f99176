//! Language models: the mean loss at each position of the context window (how much a token
//! of context helps) and the tokens the model predicts worst.

use std::collections::HashMap;

use serde::Serialize;

/// Tokens listed as the hardest.
const HARDEST: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct LanguageReport {
    /// Mean loss (nats per token) at each position of the window: position 0 predicts the
    /// second token from the first alone.
    pub loss_by_position: Vec<f64>,
    /// The tokens with the highest mean loss as targets, among those seen `min_count` times.
    pub highest_loss_tokens: Vec<TokenLoss>,
    pub min_count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenLoss {
    pub id: u32,
    pub token: String,
    pub count: u64,
    pub mean_loss: f64,
}

/// Sums of per-token losses, by position and by target token.
#[derive(Debug, Default)]
pub struct LossSums {
    by_position: Vec<(f64, u64)>,
    by_token: HashMap<u32, (f64, u64)>,
}

impl LossSums {
    /// The loss of predicting `target` at `position` of a window.
    pub fn add(&mut self, position: usize, target: u32, loss: f64) {
        if self.by_position.len() <= position {
            self.by_position.resize(position + 1, (0.0, 0));
        }
        let slot = &mut self.by_position[position];
        *slot = (slot.0 + loss, slot.1 + 1);
        let slot = self.by_token.entry(target).or_default();
        *slot = (slot.0 + loss, slot.1 + 1);
    }

    /// The report, tokens shown through `decode`.
    pub fn finish(self, decode: impl Fn(u32) -> String) -> LanguageReport {
        let total: u64 = self.by_token.values().map(|(_, n)| n).sum();
        // Rare tokens' means are noise: ask for a few occurrences, fewer on a small split.
        let min_count = (total / 2000).clamp(1, 5);
        let mut tokens: Vec<TokenLoss> = self
            .by_token
            .into_iter()
            .filter(|(_, (_, count))| *count >= min_count)
            .map(|(id, (sum, count))| TokenLoss {
                id,
                token: decode(id),
                count,
                mean_loss: sum / count as f64,
            })
            .collect();
        tokens.sort_by(|a, b| b.mean_loss.total_cmp(&a.mean_loss).then(a.id.cmp(&b.id)));
        tokens.truncate(HARDEST);
        LanguageReport {
            loss_by_position: self
                .by_position
                .iter()
                .map(|(sum, count)| sum / (*count).max(1) as f64)
                .collect(),
            highest_loss_tokens: tokens,
            min_count,
        }
    }
}
