//! Config errors written for the person who made the mistake: where it is (file, line and
//! column, or the `--set` that caused it), which key, what was expected, and a likely fix.

use std::fmt;
use std::path::PathBuf;

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    File {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// A `--set KEY=VALUE` on the command line.
    Override(String),
    /// Not written anywhere: a default or a value derived from other keys.
    Default { path: PathBuf },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Origin::Override(set) => write!(f, "--set {set}"),
            Origin::Default { path } => write!(f, "{} (default value)", path.display()),
        }
    }
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub origin: Origin,
    /// Dotted key path, such as `optimizer.lr`; empty for the file as a whole.
    pub key: String,
    pub message: String,
    /// A suggested fix, shown on its own line.
    pub hint: Option<String>,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if self.key.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "`{}`: {}", self.key, self.message)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  {hint}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_issues(.0))]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    pub fn issue(issue: Issue) -> Self {
        ConfigError::Invalid(vec![issue])
    }

    pub fn issues(&self) -> &[Issue] {
        match self {
            ConfigError::Invalid(issues) => issues,
            ConfigError::Read { .. } => &[],
        }
    }
}

fn render_issues(issues: &[Issue]) -> String {
    let lines: Vec<String> = issues.iter().map(Issue::to_string).collect();
    lines.join("\n")
}

/// "did you mean …?": the candidate closest to `given`, when it is close enough to be a typo,
/// an abbreviation (`learning_rate` → `lr`) or a longer or shorter form (`num_epochs` →
/// `epochs`).
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let given = given.to_ascii_lowercase();
    let initials: String = given
        .split(['_', '-', '.'])
        .filter_map(|word| word.chars().next())
        .collect();
    candidates
        .into_iter()
        .map(|candidate| {
            let similarity = strsim::jaro_winkler(&given, candidate);
            let related = candidate.len() >= 2 && initials == candidate
                || candidate.len() >= 4
                    && (given.contains(candidate) || candidate.contains(&given));
            (
                if related {
                    similarity.max(0.9)
                } else {
                    similarity
                },
                candidate,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// Rewrites serde's Rust type names ("expected usize") into words a config author uses.
pub fn humanize_serde_message(message: &str) -> String {
    const TYPES: [(&str, &str); 10] = [
        ("expected usize", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a string", "expected a string"),
        ("expected a sequence", "expected an array such as [1, 2]"),
        (
            "expected an array of length 2",
            "expected an array of 2 numbers",
        ),
    ];
    let mut message = message.trim().to_string();
    for (from, to) in TYPES {
        message = message.replace(from, to);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(did_you_mean("lrr", ["lr", "beta1", "epsilon"]), Some("lr"));
        assert_eq!(
            did_you_mean("epohcs", ["epochs", "batch_size"]),
            Some("epochs")
        );
        assert_eq!(did_you_mean("zzz", ["epochs", "batch_size"]), None);
        assert_eq!(
            did_you_mean("learning_rate", ["kind", "lr", "beta1"]),
            Some("lr")
        );
        assert_eq!(
            did_you_mean("num_epochs", ["epochs", "batch_size"]),
            Some("epochs")
        );
    }

    #[test]
    fn humanizes_rust_type_names() {
        assert_eq!(
            humanize_serde_message("invalid value: integer `-1`, expected usize"),
            "invalid value: integer `-1`, expected a non-negative integer"
        );
    }
}
