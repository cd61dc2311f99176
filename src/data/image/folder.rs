//! Image folders: one sub-folder per class of PNG or JPEG files, decoded and resized to
//! `data.image.size` in grayscale or RGB. A folder with `train/` and `test/` sub-folders
//! brings its own test split. A pattern such as `data/part-*` reads a dataset split across
//! many such folders as one.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{ImageSet, ImageSets, Origins};
use crate::config::{ColorMode, DataConfig, ImageDataConfig, OnError};
use crate::data::{DataError, ImageShape, Skipped};

pub fn load(
    config: &DataConfig,
    image: &ImageDataConfig,
    seed: u64,
) -> Result<ImageSets, DataError> {
    let mut train_roots = Vec::new();
    let mut test_roots = Vec::new();
    for root in roots(&config.path)? {
        let (train, test) = (root.join("train"), root.join("test"));
        if train.is_dir() && test.is_dir() {
            train_roots.push(train);
            test_roots.push(test);
        } else {
            train_roots.push(root);
        }
    }
    let classes = class_names(&train_roots)?;
    let mut skipped = Skipped::default();
    let train = load_set(&train_roots, &classes, config, image, seed, &mut skipped)?;
    let test = if test_roots.is_empty() {
        None
    } else {
        for test_root in &test_roots {
            let test_classes = class_names(std::slice::from_ref(test_root))?;
            if let Some(unknown) = test_classes.iter().find(|name| !classes.contains(name)) {
                return Err(DataError::Corrupt {
                    path: test_root.join(unknown),
                    detail: format!("class \"{unknown}\" has no training images"),
                });
            }
        }
        Some(load_set(
            &test_roots,
            &classes,
            config,
            image,
            seed,
            &mut skipped,
        )?)
    };
    Ok(ImageSets {
        train,
        test,
        classes,
        skipped,
    })
}

/// The folders `path` names: itself, or for a pattern such as `data/part-*`, every folder
/// it matches (a dataset split across many directories), in name order.
fn roots(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    let missing = |detail: String| DataError::Missing {
        dataset: "image-folder".into(),
        path: path.to_path_buf(),
        detail,
        fetch: None,
    };
    let text = path.to_string_lossy();
    if !text.contains(['*', '?', '[']) {
        if !path.is_dir() {
            return Err(missing("the folder does not exist".into()));
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let matches =
        glob::glob(&text).map_err(|err| missing(format!("not a valid pattern: {err}")))?;
    let mut roots: Vec<PathBuf> = matches.flatten().filter(|p| p.is_dir()).collect();
    roots.sort();
    if roots.is_empty() {
        return Err(missing("the pattern matches no folder".into()));
    }
    Ok(roots)
}

/// The class sub-folder names found under any of `roots`, sorted.
fn class_names(roots: &[PathBuf]) -> Result<Vec<String>, DataError> {
    let mut classes = std::collections::BTreeSet::new();
    for root in roots {
        for path in read_dir(root)? {
            if let Some(name) = path.file_name().filter(|_| path.is_dir()) {
                classes.insert(name.to_string_lossy().into_owned());
            }
        }
    }
    if classes.is_empty() {
        return Err(DataError::Empty {
            path: roots[0].clone(),
            what: "class sub-folders".into(),
        });
    }
    Ok(classes.into_iter().collect())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|entry| entry.path()).map_err(io))
        .collect()
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| matches!(ext.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Decodes every image under `<root>/<class>/` of each of `roots`, on `data.workers` threads.
/// An unreadable image stops the load, or under `data.on_error = "skip"` is counted in
/// `skipped` with its path and reason and left out.
fn load_set(
    roots: &[PathBuf],
    classes: &[String],
    config: &DataConfig,
    image: &ImageDataConfig,
    seed: u64,
    skipped: &mut Skipped,
) -> Result<ImageSet, DataError> {
    let mut files = Vec::new();
    for root in roots {
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            if !dir.is_dir() {
                continue;
            }
            let mut images: Vec<PathBuf> = read_dir(&dir)?
                .into_iter()
                .filter(|p| is_image(p))
                .collect();
            images.sort();
            files.extend(images.into_iter().map(|path| (path, label as u16)));
        }
    }
    if files.is_empty() {
        return Err(DataError::Empty {
            path: roots[0].clone(),
            what: "PNG or JPEG images".into(),
        });
    }
    if let Some(limit) = config.limit {
        // Sorted files are grouped by class, so a limit takes a seeded sample across classes.
        files.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        files.truncate(limit);
        files.sort();
    }

    let [height, width] = image.size;
    let shape = ImageShape {
        channels: image.color.channels(),
        height,
        width,
    };
    let threads = config.workers.max(1);
    let chunk = files.len().div_ceil(threads);
    let decoded: Vec<Result<Vec<u8>, DataError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(path, _)| decode(path, shape, image.color))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("image decoding thread panicked"))
            .collect()
    });
    let mut pixels = Vec::with_capacity(files.len() * shape.len());
    let mut labels = Vec::with_capacity(files.len());
    let mut paths = Vec::with_capacity(files.len());
    for ((path, label), image) in files.iter().zip(decoded) {
        match image {
            Ok(image) => {
                pixels.extend(image);
                labels.push(*label);
                paths.push(path.clone());
            }
            Err(err) if config.on_error == OnError::Skip => skipped.add(err.to_string()),
            Err(err) => return Err(err),
        }
    }
    Ok(ImageSet {
        shape,
        pixels,
        labels,
        origins: Origins::Files(paths),
    })
}

/// One image as channel-major bytes of `shape`.
pub fn decode(path: &Path, shape: ImageShape, color: ColorMode) -> Result<Vec<u8>, DataError> {
    let image = image::ImageReader::open(path)
        .and_then(|reader| reader.with_guessed_format())
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .decode()
        .map_err(|err| DataError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("cannot decode the image: {err}"),
        })?;
    Ok(resize(&image, shape, color))
}

/// Decodes an encoded image (PNG, JPEG, ...) held in memory as [`decode`] does a file.
pub fn decode_bytes(bytes: &[u8], shape: ImageShape, color: ColorMode) -> Result<Vec<u8>, String> {
    let image = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| err.to_string())?
        .decode()
        .map_err(|err| format!("cannot decode the image: {err}"))?;
    Ok(resize(&image, shape, color))
}

/// `image` resized to `shape` as channel-major bytes.
fn resize(image: &image::DynamicImage, shape: ImageShape, color: ColorMode) -> Vec<u8> {
    let (width, height) = (shape.width as u32, shape.height as u32);
    match color {
        ColorMode::Grayscale => {
            image::imageops::resize(&image.to_luma8(), width, height, FilterType::Triangle)
                .into_raw()
        }
        ColorMode::Rgb => {
            let rgb =
                image::imageops::resize(&image.to_rgb8(), width, height, FilterType::Triangle);
            // Interleaved RGB to channel-major planes.
            let plane = shape.height * shape.width;
            let mut planes = vec![0u8; 3 * plane];
            for (i, pixel) in rgb.pixels().enumerate() {
                for channel in 0..3 {
                    planes[channel * plane + i] = pixel[channel];
                }
            }
            planes
        }
    }
}
