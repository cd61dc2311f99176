//! JPEGs as Pillow reads them: on a corpus of damaged files made by
//! `scripts/jpeg_corpus.py` (cut at several points, garbage data, flipped header bytes, junk
//! after the end, bogus markers), stoke refuses every file Pillow refuses and decodes every
//! file Pillow decodes, to the same pixels byte for byte (those of libjpeg-turbo's C code,
//! which Pillow's SIMD build equals unless a damaged quantization table drives the IDCT out of
//! range).

mod common;

use std::fs;

use sha2::{Digest, Sha256};

#[test]
fn damaged_jpegs_are_refused_where_pillow_refuses_them_and_read_as_pillow_reads_the_rest() {
    let dir = common::repo().join("tests/fixtures/jpeg");
    let verdicts = common::read_json(&dir.join("verdicts.json"));
    let verdicts = verdicts.as_object().unwrap();
    let mut disagreements = Vec::new();
    let (mut decoded, mut refused, mut same_as_simd) = (0, 0, 0);
    for (file, pillow) in verdicts {
        let bytes = fs::read(dir.join(file)).unwrap();
        let ours = stoke::data::decode_pixels(&bytes);
        match (pillow["decodes"].as_bool().unwrap(), ours) {
            (true, Ok(image)) => {
                let (mode, pixels) = match image {
                    image::DynamicImage::ImageLuma8(gray) => ("L", gray.into_raw()),
                    other => ("RGB", other.to_rgb8().into_raw()),
                };
                let sha256 = format!("{:x}", Sha256::digest(&pixels));
                // stoke's decoder is libjpeg-turbo's C code: the pixels of Pillow's build
                // with its SIMD code off (`sha256_c`). Its SIMD build differs only where a
                // damaged quantization table drives the IDCT out of range.
                if mode != pillow["mode"] || sha256 != pillow["sha256_c"] {
                    disagreements.push(format!("{file}: other pixels than Pillow's ({mode})"));
                }
                same_as_simd += usize::from(sha256 == pillow["sha256"]);
                decoded += 1;
            }
            (false, Err(_)) => refused += 1,
            (true, Err(err)) => {
                disagreements.push(format!("{file}: Pillow decodes it, stoke: {err}"))
            }
            (false, Ok(_)) => disagreements.push(format!(
                "{file}: Pillow refuses it ({}), stoke decodes it",
                pillow["error"]
            )),
        }
    }
    eprintln!(
        "{} files: {decoded} decoded as Pillow decodes them ({same_as_simd} byte-equal to its SIMD build too), {refused} refused as Pillow refuses them",
        verdicts.len()
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
