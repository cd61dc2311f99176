//! Shards of table rows: one CSV (optionally gzipped) or Parquet file each, with the run's
//! columns (`[data.tabular]`), read with the base run's statistics, vocabularies and classes
//! (`tabular::read_with_spec`): a category first seen in a shard reads as unknown, as it does
//! in serving. A missing column, a malformed value or an unknown class rejects the shard.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::incoming::{Shard, ShardKind, first_line, replay_gone};
use crate::Error;
use crate::config::DataConfig;
use crate::data::tabular::{TableRows, read_with_spec};
use crate::data::{DataSpec, Dataset};

const SUFFIXES: [&str; 3] = [".csv", ".csv.gz", ".parquet"];

/// The run's table: how its files are read and the spec its rows are read with.
pub struct TableShards {
    pub data: DataConfig,
    pub spec: DataSpec,
}

impl TableShards {
    fn rows(&self, dir: &Path, name: &str) -> Result<TableRows, String> {
        read_with_spec(&dir.join(name), &self.data, &self.spec).map_err(|err| first_line(&err))
    }
}

impl ShardKind for TableShards {
    fn describe(&self) -> &'static str {
        "CSV or Parquet files of the run's table columns"
    }

    fn suffixes(&self) -> &'static [&'static str] {
        &SUFFIXES
    }

    fn load(&self, dir: &Path, name: &str) -> Result<Arc<dyn Dataset>, String> {
        Ok(Arc::new(self.rows(dir, name)?))
    }

    fn training_set(
        &self,
        dir: &Path,
        shard: &Shard,
        replay: &[(String, u32)],
    ) -> Result<Arc<dyn Dataset>, Error> {
        let read = |name: &str| self.rows(dir, name).map_err(|err| replay_gone(dir, err));
        let mut tables: HashMap<&str, TableRows> = HashMap::new();
        tables.insert(&shard.name, read(&shard.name)?);
        for (name, _) in replay {
            if !tables.contains_key(name.as_str()) {
                tables.insert(name, read(name)?);
            }
        }
        let fresh = &tables[shard.name.as_str()];
        let mut picks: Vec<(&TableRows, u32)> =
            (0..fresh.len() as u32).map(|r| (fresh, r)).collect();
        for (name, row) in replay {
            let rows = &tables[name.as_str()];
            if *row as usize >= rows.len() {
                return Err(replay_gone(dir, format!("{name} no longer has row {row}")));
            }
            picks.push((rows, *row));
        }
        let gathered = TableRows::gather(&picks).expect("a shard holds rows");
        Ok(Arc::new(gathered))
    }
}
