//! The errors to look at first: the most confidently wrong examples, with where each came
//! from, and for images a PNG grid of them captioned with the true and predicted classes.

use std::path::Path;

use serde::Serialize;

use super::Outcome;
use crate::Error;
use crate::data::Example;
use crate::plot::{Tile, write_image_grid};

/// The grid's file in the report folder.
pub const GRID_FILE: &str = "worst-errors.png";

#[derive(Debug, Clone, Serialize)]
pub struct WorstError {
    /// The example's index in its dataset.
    pub index: u32,
    /// `file:line` of a text record, an image's file, `file:record` of an IDX image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub true_class: String,
    pub predicted: String,
    pub confidence: f64,
    /// The record's `id` field, when the records have one (filled in from the records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The text's first characters (filled in from the records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip)]
    pub example: Option<Example>,
}

/// The `count` most confidently wrong of `outcomes` (`indices[i]` is the dataset index of
/// `outcomes[i]`), most confident first, each described by `example`.
pub fn worst_errors(
    outcomes: &[Outcome],
    indices: &[u32],
    classes: &[String],
    count: usize,
    example: impl Fn(u32) -> Option<Example>,
) -> Vec<WorstError> {
    let mut wrong: Vec<usize> = (0..outcomes.len())
        .filter(|&i| outcomes[i].target != outcomes[i].predicted)
        .collect();
    // Stable: equal confidences keep the split's order.
    wrong.sort_by(|&a, &b| outcomes[b].confidence.total_cmp(&outcomes[a].confidence));
    wrong.truncate(count);
    wrong
        .into_iter()
        .map(|i| {
            let example = example(indices[i]);
            WorstError {
                index: indices[i],
                location: example.as_ref().and_then(Example::location),
                true_class: classes[outcomes[i].target].clone(),
                predicted: classes[outcomes[i].predicted].clone(),
                confidence: outcomes[i].confidence,
                id: None,
                text: None,
                example,
            }
        })
        .collect()
}

/// Writes the images among `errors` as a captioned grid at `path`; false when there are none.
pub fn write_grid(errors: &[WorstError], path: &Path) -> Result<bool, Error> {
    let tiles: Vec<Tile> = errors
        .iter()
        .filter_map(|error| {
            let (shape, bytes) = error.example.as_ref()?.image.as_ref()?;
            let (width, height) = (shape.width as u32, shape.height as u32);
            let plane = shape.height * shape.width;
            let image = image::RgbImage::from_fn(width, height, |x, y| {
                let at = (y * width + x) as usize;
                let channel = |c: usize| bytes[(c.min(shape.channels - 1)) * plane + at];
                image::Rgb([channel(0), channel(1), channel(2)])
            });
            Some(Tile {
                image,
                caption: [
                    format!("true {}", error.true_class),
                    format!("predicted {} ({:.2})", error.predicted, error.confidence),
                ],
            })
        })
        .collect();
    if tiles.is_empty() {
        return Ok(false);
    }
    write_image_grid(path, &tiles, 4)?;
    Ok(true)
}
