//! Which group ("slice") each sample of a split belongs to, for the evaluation report's check
//! of a model that fails one group: a field of the text records (any CSV, JSONL or Parquet
//! column), the folder above an image folder's class folders, or an attribute given per
//! file in a CSV of `path,<attribute>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::text::records;
use super::{DataError, Split};
use crate::config::{DataConfig, DatasetKind};

/// What to group samples by.
#[derive(Debug, Clone, PartialEq)]
pub enum SliceBy {
    /// A field of the text records; for image folders, `folder`.
    Field(String),
    /// A CSV with a header row whose first column is a path and second the attribute.
    File(PathBuf),
}

impl SliceBy {
    /// A field, else a file, else no slicing: `--slice-by`/`--slice-file` and
    /// `eval.slice_by`/`eval.slice_file` (both are refused before this).
    pub fn chosen(field: Option<String>, file: Option<PathBuf>) -> Option<Self> {
        field.map(SliceBy::Field).or(file.map(SliceBy::File))
    }
}

/// The name image folders are sliced by: the folder that holds the class folders.
pub const FOLDER_FIELD: &str = "folder";

/// The attribute's name and each sample's value in `split`'s order (`None`: the sample has
/// no value).
pub fn slice_values(
    config: &DataConfig,
    split: &Split,
    by: &SliceBy,
) -> Result<(String, Vec<Option<String>>), DataError> {
    let origins: Vec<(Option<PathBuf>, Option<usize>)> = split
        .indices
        .iter()
        .map(|&index| match split.data.example(index) {
            Some(example) => (example.file, example.line),
            None => (None, None),
        })
        .collect();
    if origins.iter().all(|(file, _)| file.is_none()) {
        return Err(DataError::Corrupt {
            path: config.path.clone(),
            detail: format!(
                "the {} dataset does not keep where its samples came from, so it cannot be \
                 sliced",
                config.dataset.name()
            ),
        });
    }
    match by {
        SliceBy::Field(field) => match config.dataset {
            DatasetKind::TextClassification => {
                Ok((field.clone(), by_field(config, &origins, field)?))
            }
            DatasetKind::ImageFolder if field == FOLDER_FIELD => {
                Ok((field.clone(), by_folder(&origins)))
            }
            _ => Err(DataError::Corrupt {
                path: config.path.clone(),
                detail: format!(
                    "cannot slice a {} dataset by \"{field}\": text records are sliced by one of \
                     their fields, image folders by \"{FOLDER_FIELD}\" (the folder above the \
                     class folders) or by a CSV of path,attribute (--slice-file)",
                    config.dataset.name()
                ),
            }),
        },
        SliceBy::File(csv) if config.dataset == DatasetKind::ImageFolder => by_file(csv, &origins),
        SliceBy::File(csv) => Err(DataError::Corrupt {
            path: csv.clone(),
            detail: format!(
                "names image files, so it slices image-folder data, not a {} dataset",
                config.dataset.name()
            ),
        }),
    }
}

fn by_field(
    config: &DataConfig,
    origins: &[(Option<PathBuf>, Option<usize>)],
    field: &str,
) -> Result<Vec<Option<String>>, DataError> {
    let text = config.text.clone().unwrap_or_default();
    let mut columns: HashMap<&Path, HashMap<usize, String>> = HashMap::new();
    for (file, _) in origins {
        if let Some(file) = file
            && !columns.contains_key(file.as_path())
        {
            columns.insert(file, records::read_column(file, &text, field)?);
        }
    }
    Ok(origins
        .iter()
        .map(|(file, line)| {
            let column = columns.get(file.as_deref()?)?;
            column.get(&(*line)?).cloned()
        })
        .collect())
}

/// The folder above each image's class folder, skipping a `train` or `test` level: for the
/// pattern `data/part-*`, `part-a` for `data/part-a/train/cat/1.png`.
fn by_folder(origins: &[(Option<PathBuf>, Option<usize>)]) -> Vec<Option<String>> {
    origins
        .iter()
        .map(|(file, _)| {
            let mut above = file.as_ref()?.parent()?.parent()?;
            if matches!(
                above.file_name()?.to_str(),
                Some("train" | "test" | "valid")
            ) {
                above = above.parent()?;
            }
            Some(above.file_name()?.to_string_lossy().into_owned())
        })
        .collect()
}

/// Values from a CSV of `path,<attribute>`; a row's path names an image when it is the
/// image's path or a trailing part of it (`cat/1.png` names `data/train/cat/1.png`).
fn by_file(
    csv_path: &Path,
    origins: &[(Option<PathBuf>, Option<usize>)],
) -> Result<(String, Vec<Option<String>>), DataError> {
    let corrupt = |detail: String| DataError::Corrupt {
        path: csv_path.to_path_buf(),
        detail,
    };
    if !csv_path.is_file() {
        return Err(DataError::Io {
            path: csv_path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let mut reader = csv::Reader::from_path(csv_path).map_err(|err| corrupt(err.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|err| corrupt(format!("cannot read the header row: {err}")))?
        .clone();
    if headers.len() < 2 {
        return Err(corrupt(format!(
            "expected a header row of path,<attribute>, found \"{}\"",
            headers.iter().collect::<Vec<_>>().join(",")
        )));
    }
    let attribute = headers[1].to_string();
    let mut values: HashMap<PathBuf, String> = HashMap::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|err| corrupt(format!("row {}: {err}", row + 2)))?;
        let (Some(path), Some(value)) = (record.get(0), record.get(1)) else {
            return Err(corrupt(format!(
                "row {}: expected path,{attribute}",
                row + 2
            )));
        };
        values.insert(PathBuf::from(path.trim()), value.trim().to_string());
    }
    let matched = |file: &Path| {
        let components: Vec<_> = file.components().collect();
        (0..components.len()).find_map(|skip| {
            let suffix: PathBuf = components[skip..].iter().collect();
            values.get(&suffix).cloned()
        })
    };
    let found: Vec<Option<String>> = origins
        .iter()
        .map(|(file, _)| matched(file.as_deref()?))
        .collect();
    if found.iter().all(Option::is_none) {
        return Err(corrupt(
            "no row names an image of the split (paths are matched whole or by their end, \
             such as cat/1.png)"
                .into(),
        ));
    }
    Ok((attribute, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<(Option<PathBuf>, Option<usize>)> {
        paths
            .iter()
            .map(|p| (Some(PathBuf::from(p)), None))
            .collect()
    }

    #[test]
    fn image_folders_slice_by_the_folder_above_the_classes() {
        let origins = files(&[
            "data/part-a/train/cat/1.png",
            "data/part-b/cat/2.png",
            "data/part-b/test/dog/3.png",
        ]);
        let values: Vec<Option<String>> = by_folder(&origins);
        assert_eq!(
            values,
            ["part-a", "part-b", "part-b"].map(|v| Some(v.to_string()))
        );
    }

    #[test]
    fn a_slice_file_names_images_by_their_path_or_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("attributes.csv");
        std::fs::write(
            &csv,
            "path,site\ncat/1.png,north\n/abs/data/test/dog/2.png,south\n",
        )
        .unwrap();
        let origins = files(&[
            "data/test/cat/1.png",
            "/abs/data/test/dog/2.png",
            "data/test/dog/3.png",
        ]);
        let (attribute, values) = by_file(&csv, &origins).unwrap();
        assert_eq!(attribute, "site");
        assert_eq!(
            values,
            [Some("north".to_string()), Some("south".to_string()), None]
        );
        std::fs::write(&csv, "path\ncat/1.png\n").unwrap();
        let err = by_file(&csv, &origins).unwrap_err().to_string();
        assert!(err.contains("path,<attribute>"), "{err}");
    }
}
