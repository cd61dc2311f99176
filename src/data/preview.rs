//! `stoke data preview`: what the model sees. A grid of training images, one row each: the
//! image as evaluation sees it, then as training sees it in successive epochs (augmented
//! when `[data.augment]` is set), drawn by the same code and from the same (seed, epoch,
//! index) streams as training, so a person can judge the augmentation before a run.

use std::path::Path;

use burn::prelude::Device;

use super::{BatchContext, DataSpec, DeviceBatch, Input, load_splits};
use crate::Error;
use crate::config::ExperimentConfig;
use crate::plot::{Tile, write_image_grid};

/// Writes the preview of `samples` training images over `epochs` epochs to `out` (PNG).
pub fn write(
    config: &ExperimentConfig,
    samples: usize,
    epochs: usize,
    out: &Path,
) -> Result<(), Error> {
    let splits = load_splits(&config.data, config.run.seed, None)?;
    let DataSpec::ImageClassification {
        input,
        classes,
        normalization,
        ..
    } = &splits.spec
    else {
        return Err(Error::Usage(format!(
            "data preview shows images; dataset = \"{}\" holds none",
            config.data.dataset.name()
        )));
    };
    let plane = input.height * input.width;
    let to_tile = |bytes: &[u8], caption: [String; 2]| Tile {
        image: image::RgbImage::from_fn(input.width as u32, input.height as u32, |x, y| {
            let at = y as usize * input.width + x as usize;
            let channel = |c: usize| bytes[c.min(input.channels - 1) * plane + at];
            image::Rgb([channel(0), channel(1), channel(2)])
        }),
        caption,
    };
    let train = &splits.train;
    let mut tiles = Vec::new();
    // Spread over the split, which lists images by class.
    let step = (train.indices.len() / samples.max(1)).max(1);
    for &index in train.indices.iter().step_by(step).take(samples) {
        let Some(example) = train.data.example(index) else {
            continue;
        };
        let label = example_label(&train.data, index, classes);
        if let Some((_, bytes)) = &example.image {
            tiles.push(to_tile(bytes, [label.clone(), "evaluation".into()]));
        }
        for epoch in 0..epochs {
            let context = BatchContext {
                device: Device::flex(),
                seed: config.run.seed,
                epoch: Some(epoch),
            };
            let batch: DeviceBatch = train
                .data
                .batch(&[index], &context)
                .take()
                .map_err(|kind| Error::Usage(format!("data preview cannot show {kind}")))?;
            let Input::Images(images) = batch.input else {
                continue;
            };
            let values: Vec<f32> = images.into_data().iter::<f32>().collect();
            let bytes: Vec<u8> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = i / plane;
                    let level = (v * normalization.std[c] + normalization.mean[c]) * 255.0;
                    level.round().clamp(0.0, 255.0) as u8
                })
                .collect();
            tiles.push(to_tile(
                &bytes,
                [label.clone(), format!("training, epoch {epoch}")],
            ));
        }
    }
    if tiles.is_empty() {
        return Err(Error::Usage(
            "the training split holds no images to show".into(),
        ));
    }
    write_image_grid(out, &tiles, epochs + 1)
}

/// The class name of sample `index`, read from a batch of it.
fn example_label(
    data: &std::sync::Arc<dyn super::Dataset>,
    index: u32,
    classes: &[String],
) -> String {
    data.host_batch(&[index])
        .and_then(|batch| match batch {
            super::HostBatch::Images { labels, .. } => labels.first().copied(),
            _ => None,
        })
        .and_then(|label| classes.get(label as usize).cloned())
        .unwrap_or_default()
}
