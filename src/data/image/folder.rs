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
    let listing = list(config, seed)?;
    let [height, width] = image.size;
    let shape = ImageShape {
        channels: image.color.channels(),
        height,
        width,
    };
    let mut skipped = Skipped::default();
    let mut read = |files: &[(PathBuf, u16)]| -> Result<ImageSet, DataError> {
        let (images, labels, paths) = decode_all(files, config, &mut skipped, |path| {
            decode(path, shape, image.color)
        })?;
        Ok(ImageSet {
            shape,
            pixels: images.concat(),
            labels,
            origins: Origins::Files(paths),
        })
    };
    let train = read(&listing.train)?;
    let test = listing.test.as_deref().map(&mut read).transpose()?;
    Ok(ImageSets {
        train,
        test,
        classes: listing.classes,
        skipped,
    })
}

/// The labelled image files of a folder dataset: the training pool, the test set when the
/// folder brings its own, and the class names.
pub(super) struct Listing {
    pub train: Vec<(PathBuf, u16)>,
    pub test: Option<Vec<(PathBuf, u16)>>,
    pub classes: Vec<String>,
}

/// Lists the image files `config.path` holds, by class (a seeded sample of `data.limit`).
pub(super) fn list(config: &DataConfig, seed: u64) -> Result<Listing, DataError> {
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
    let train = list_files(&train_roots, &classes, config, seed)?;
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
        Some(list_files(&test_roots, &classes, config, seed)?)
    };
    Ok(Listing {
        train,
        test,
        classes,
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

/// The image files under `<root>/<class>/` of each of `roots`, labelled by class.
fn list_files(
    roots: &[PathBuf],
    classes: &[String],
    config: &DataConfig,
    seed: u64,
) -> Result<Vec<(PathBuf, u16)>, DataError> {
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
    Ok(files)
}

/// Decoded images with their labels and files, in the listing's order.
pub(super) type Decoded<T> = (Vec<T>, Vec<u16>, Vec<PathBuf>);

/// Decodes `files` with `decode` on `data.workers` threads: the images, their labels and
/// paths. An unreadable image stops the load, or under `data.on_error = "skip"` is counted in
/// `skipped` with its path and reason and left out.
pub(super) fn decode_all<T: Send>(
    files: &[(PathBuf, u16)],
    config: &DataConfig,
    skipped: &mut Skipped,
    decode: impl Fn(&Path) -> Result<T, DataError> + Sync,
) -> Result<Decoded<T>, DataError> {
    let decoded = parallel_map(files, config.workers, |(path, _)| decode(path));
    let mut images = Vec::with_capacity(files.len());
    let mut labels = Vec::with_capacity(files.len());
    let mut paths = Vec::with_capacity(files.len());
    for ((path, label), image) in files.iter().zip(decoded) {
        match image {
            Ok(image) => {
                images.push(image);
                labels.push(*label);
                paths.push(path.clone());
            }
            Err(err) if config.on_error == OnError::Skip => skipped.add(err.to_string()),
            Err(err) => return Err(err),
        }
    }
    Ok((images, labels, paths))
}

/// `work` on each of `items`, on `threads` threads (at least one), results in order.
pub(super) fn parallel_map<I: Sync, T: Send>(
    items: &[I],
    threads: usize,
    work: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(work).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("image decoding thread panicked"))
            .collect()
    })
}

/// An image file decoded, whatever its format (PNG, JPEG).
pub fn open(path: &Path) -> Result<image::DynamicImage, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    open_bytes(&bytes).map_err(|detail| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    })
}

/// An encoded image (PNG, JPEG) held in memory, such as an upload, decoded. JPEGs go through
/// libjpeg's decoder as Pillow's do (`jpeg.rs`: damaged and truncated files refused as Pillow
/// refuses them); every other format, and JPEGs libjpeg does not turn into RGB or gray (CMYK),
/// through the `image` crate.
pub fn open_bytes(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| err.to_string())?;
    if reader.format() == Some(image::ImageFormat::Jpeg)
        && let Some(image) =
            super::jpeg::decode(bytes).map_err(|err| format!("cannot decode the JPEG: {err}"))?
    {
        return Ok(image);
    }
    reader
        .decode()
        .map_err(|err| format!("cannot decode the image: {err}"))
}

/// One image as channel-major bytes of `shape`.
pub fn decode(path: &Path, shape: ImageShape, color: ColorMode) -> Result<Vec<u8>, DataError> {
    Ok(resize(&open(path)?, shape, color))
}

/// Decodes an encoded image (PNG, JPEG, ...) held in memory as [`decode`] does a file.
pub fn decode_bytes(bytes: &[u8], shape: ImageShape, color: ColorMode) -> Result<Vec<u8>, String> {
    Ok(resize(&open_bytes(bytes)?, shape, color))
}

/// `image` resized to `shape` as channel-major bytes.
pub fn resize(image: &image::DynamicImage, shape: ImageShape, color: ColorMode) -> Vec<u8> {
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
