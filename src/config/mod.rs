//! The experiment config: its schema and defaults, loading with `--set` overrides, and
//! validation with errors that point at the offending key.

mod bytes;
mod compat;
mod error;
mod load;
mod schema;
mod validate;

pub use bytes::{format_bytes, parse_bytes};
pub use compat::{Change, changes_from, definition_hash, fixed_keys, fixed_keys_digest, flatten};
pub use error::{ConfigError, Issue, Origin, did_you_mean, humanize_serde_message};
pub use load::{load, load_str, to_toml};
pub use schema::*;
