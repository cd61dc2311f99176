//! Images in Parquet files: a `train.parquet` (and optionally `test.parquet`) in
//! `data.path`, or one file, with an `image` (or `img`) column of encoded images and a
//! `label` column, decoded and resized as image folders are.

use std::path::{Path, PathBuf};

use super::folder::decode_bytes;
use super::{ImageSet, ImageSets};
use crate::config::{DataConfig, ImageDataConfig};
use crate::data::ImageShape;
use crate::data::{DataError, Skipped, classes_of, parquet};

pub(super) const IMAGE_COLUMNS: [&str; 2] = ["image", "img"];
pub(super) const LABEL_COLUMN: &str = "label";

pub fn load(config: &DataConfig, image: &ImageDataConfig) -> Result<ImageSets, DataError> {
    let (train_file, test_file) = files(&config.path)?;
    let shape = ImageShape {
        channels: image.color.channels(),
        height: image.size[0],
        width: image.size[1],
    };
    let mut skipped = Skipped::default();
    let train = read(&train_file, shape, image, config, &mut skipped)?;
    let test = test_file
        .map(|path| read(&path, shape, image, config, &mut skipped))
        .transpose()?;
    let classes = classes_of(train.iter().map(|(_, label)| label.as_str()));
    let mut to_set = |rows: Vec<(Vec<u8>, String)>, path: &Path| -> Result<ImageSet, DataError> {
        let mut set = ImageSet {
            shape,
            pixels: Vec::with_capacity(rows.len() * shape.len()),
            labels: Vec::with_capacity(rows.len()),
            origins: Default::default(),
        };
        for (row, (pixels, label)) in rows.into_iter().enumerate() {
            match classes.iter().position(|class| *class == label) {
                Some(class) => {
                    set.pixels.extend(pixels);
                    set.labels.push(class as u16);
                }
                None => {
                    let detail = format!("label \"{label}\" does not occur in the training data");
                    skipped.bad_record(config.on_error, path, row + 1, detail)?
                }
            }
        }
        Ok(set)
    };
    let train_set = to_set(train, &train_file)?;
    let test = match test {
        Some(rows) => Some(to_set(rows, &config.path.join("test.parquet"))?),
        None => None,
    };
    if train_set.is_empty() {
        return Err(DataError::Empty {
            path: train_file,
            what: "images".into(),
        });
    }
    Ok(ImageSets {
        train: train_set,
        test,
        classes,
        skipped,
    })
}

/// `train.parquet` and `test.parquet` of a directory, or one file.
pub(super) fn files(path: &Path) -> Result<(PathBuf, Option<PathBuf>), DataError> {
    if path.is_file() {
        return Ok((path.to_path_buf(), None));
    }
    let train = path.join("train.parquet");
    if !train.is_file() {
        return Err(DataError::Missing {
            dataset: "image-parquet".into(),
            path: path.to_path_buf(),
            detail: "neither a Parquet file nor a directory holding train.parquet".into(),
            fetch: None,
        });
    }
    let test = path.join("test.parquet");
    Ok((train, test.is_file().then_some(test)))
}

/// The decoded images and labels of `path`; bad rows stop the load or are counted.
fn read(
    path: &Path,
    shape: ImageShape,
    image: &ImageDataConfig,
    config: &DataConfig,
    skipped: &mut Skipped,
) -> Result<Vec<(Vec<u8>, String)>, DataError> {
    let rows = parquet::read::<Vec<u8>>(path, &IMAGE_COLUMNS, LABEL_COLUMN, config.limit)?;
    let mut images = Vec::with_capacity(rows.len());
    for row in rows {
        let decoded = row.value.and_then(|(bytes, label)| {
            decode_bytes(&bytes, shape, image.color).map(|pixels| (pixels, label))
        });
        match decoded {
            Ok(image) => images.push(image),
            Err(detail) => skipped.bad_record(config.on_error, path, row.row, detail)?,
        }
    }
    Ok(images)
}
