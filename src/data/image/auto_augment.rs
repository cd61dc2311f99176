//! torchvision's automatic augmentation policies on pictures: `TrivialAugmentWide` (one
//! operation of fourteen at a random strength) and `RandAugment` (`ops` operations at one
//! strength of 31 bins). The operation spaces, float32 magnitude tables and Pillow-image
//! operations are torchvision's (`_augmentation_space`, `_apply_op`), nearest interpolation
//! and black fill as its defaults; the draws come from the sample's own (seed, epoch, index)
//! stream, so a resumed run sees the same pixels.

use rand::Rng;

use super::transform::Picture;
use crate::config::AutoAugment;

/// The magnitude bins of both policies (torchvision's `num_magnitude_bins` default).
const BINS: usize = 31;

/// The operations, in the order of torchvision's augmentation spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Identity,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Rotate,
    Brightness,
    Color,
    Contrast,
    Sharpness,
    Posterize,
    Solarize,
    AutoContrast,
    Equalize,
}

const OPS: [Op; 14] = [
    Op::Identity,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
    Op::Rotate,
    Op::Brightness,
    Op::Color,
    Op::Contrast,
    Op::Sharpness,
    Op::Posterize,
    Op::Solarize,
    Op::AutoContrast,
    Op::Equalize,
];

impl Op {
    /// Whether a drawn magnitude is negated half the time.
    fn signed(self) -> bool {
        matches!(
            self,
            Op::ShearX
                | Op::ShearY
                | Op::TranslateX
                | Op::TranslateY
                | Op::Rotate
                | Op::Brightness
                | Op::Color
                | Op::Contrast
                | Op::Sharpness
        )
    }

    /// The strength of bin `bin` under `policy` for a `width × height` picture, as the
    /// float32 tables torchvision builds; `None` for the operations without one.
    fn magnitude(
        self,
        policy: AutoAugment,
        bin: usize,
        width: usize,
        height: usize,
    ) -> Option<f32> {
        let wide = matches!(policy, AutoAugment::Trivial);
        let pick = |wide_end: f32, rand_end: f32| {
            linspace(0.0, if wide { wide_end } else { rand_end }, bin)
        };
        let translate = |side: usize| (150.0 / 331.0 * side as f64) as f32;
        Some(match self {
            Op::Identity | Op::AutoContrast | Op::Equalize => return None,
            Op::ShearX | Op::ShearY => pick(0.99, 0.3),
            Op::TranslateX => pick(32.0, translate(width)),
            Op::TranslateY => pick(32.0, translate(height)),
            Op::Rotate => pick(135.0, 30.0),
            Op::Brightness | Op::Color | Op::Contrast | Op::Sharpness => pick(0.99, 0.9),
            Op::Posterize => {
                let per_bit = (BINS - 1) as f32 / if wide { 6.0 } else { 4.0 };
                8.0 - (bin as f32 / per_bit).round_ties_even()
            }
            Op::Solarize => linspace(255.0, 0.0, bin),
        })
    }

    /// torchvision's `_apply_op` on a Pillow image.
    fn apply(self, picture: &mut Picture, magnitude: f64) {
        match self {
            Op::Identity => {}
            Op::ShearX => *picture = picture.affine_nearest(shear_matrix(magnitude, 0.0)),
            Op::ShearY => *picture = picture.affine_nearest(shear_matrix(0.0, magnitude)),
            Op::TranslateX => *picture = picture.affine_nearest(translation(magnitude, 0.0)),
            Op::TranslateY => *picture = picture.affine_nearest(translation(0.0, magnitude)),
            Op::Rotate => *picture = picture.rotate_nearest(magnitude),
            Op::Brightness => picture.blend_from(|_| 0, 1.0 + magnitude),
            Op::Color => {
                let grays = picture.grays();
                let channels = picture.channels;
                picture.blend_from(|i| grays[i / channels], 1.0 + magnitude);
            }
            Op::Contrast => {
                let mean = picture.mean_gray();
                picture.blend_from(|_| mean, 1.0 + magnitude);
            }
            Op::Sharpness => picture.sharpen(1.0 + magnitude),
            Op::Posterize => picture.posterize(magnitude as u32),
            Op::Solarize => picture.solarize(magnitude),
            Op::AutoContrast => picture.autocontrast(),
            Op::Equalize => picture.equalize(),
        }
    }
}

/// Element `index` of `torch.linspace(start, end, 31)` in float32: the CPU kernel's two-sided
/// formula with the fused multiply-add its AVX2 and AVX-512 builds compile it to, so the
/// tables match torch's to the bit.
fn linspace(start: f32, end: f32, index: usize) -> f32 {
    let step = (end - start) / (BINS - 1) as f32;
    match index < BINS / 2 {
        true => step.mul_add(index as f32, start),
        false => (-step).mul_add((BINS - 1 - index) as f32, end),
    }
}

/// torchvision's `_get_inverse_affine_matrix` for a shear about (0, 0) of `atan(x)` and
/// `atan(y)` (in degrees and back, as `_apply_op` passes them).
fn shear_matrix(x: f64, y: f64) -> [f64; 6] {
    let sx = x.atan().to_degrees().to_radians();
    let sy = y.atan().to_degrees().to_radians();
    let a = (-sy).cos() / sy.cos();
    let b = -(-sy).cos() * sx.tan() / sy.cos();
    let c = (-sy).sin() / sy.cos();
    let d = -(-sy).sin() * sx.tan() / sy.cos() + 1.0;
    [d, -b, 0.0, -c, a, 0.0]
}

/// A translation by whole pixels (`int(magnitude)`, toward zero, as `_apply_op` takes it).
fn translation(x: f64, y: f64) -> [f64; 6] {
    [1.0, 0.0, -x.trunc(), 0.0, 1.0, -y.trunc()]
}

impl Picture {
    /// The picture through `policy`, drawing its operations and strengths from `rng`.
    pub fn auto_augment(&mut self, policy: AutoAugment, rng: &mut impl Rng) {
        let (rounds, fixed_bin) = match policy {
            AutoAugment::Trivial => (1, None),
            AutoAugment::Rand { ops, magnitude } => (ops, Some(magnitude)),
        };
        for _ in 0..rounds {
            let op = OPS[rng.random_range(0..OPS.len())];
            let bin = fixed_bin.unwrap_or_else(|| rng.random_range(0..BINS));
            let Some(magnitude) = op.magnitude(policy, bin, self.width, self.height) else {
                op.apply(self, 0.0);
                continue;
            };
            let mut magnitude = f64::from(magnitude);
            if op.signed() && rng.random::<bool>() {
                magnitude = -magnitude;
            }
            op.apply(self, magnitude);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Fixture {
        pictures: Vec<FixturePicture>,
    }

    #[derive(Deserialize)]
    struct FixturePicture {
        name: String,
        width: usize,
        height: usize,
        channels: usize,
        pixels: Vec<u8>,
        spaces: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<f64>>>,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        op: String,
        magnitude: f64,
        pixels: Vec<u8>,
    }

    fn fixture() -> Fixture {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/augment/pillow_ops.json"
        ))
        .unwrap()
    }

    fn op_named(name: &str) -> Op {
        *OPS.iter()
            .find(|op| format!("{op:?}") == name)
            .unwrap_or_else(|| panic!("no op {name}"))
    }

    /// The magnitude tables equal torchvision's float32 ones, bin for bin.
    #[test]
    fn magnitude_tables_are_torchvisions() {
        for picture in fixture().pictures {
            for (policy_name, space) in &picture.spaces {
                let policy = match policy_name.as_str() {
                    "trivial" => AutoAugment::Trivial,
                    _ => AutoAugment::Rand {
                        ops: 2,
                        magnitude: 9,
                    },
                };
                assert_eq!(space.len(), OPS.len());
                for (name, expected) in space {
                    let op = op_named(name);
                    for (bin, &want) in expected.iter().enumerate() {
                        let got = op.magnitude(policy, bin, picture.width, picture.height);
                        // Compared as float32: the JSON reader may be off in the f64's last bit.
                        assert_eq!(
                            got.unwrap_or(0.0),
                            want as f32,
                            "{policy_name} {name} bin {bin}"
                        );
                    }
                }
            }
        }
    }

    /// Every operation at several strengths gives the bytes torchvision's `_apply_op` gave
    /// on the same Pillow image (scripts/augment_fixtures.py).
    #[test]
    fn operations_give_pillows_bytes() {
        let mut checked = 0;
        for fixture in fixture().pictures {
            let source = Picture {
                width: fixture.width,
                height: fixture.height,
                channels: fixture.channels,
                pixels: fixture.pixels.clone(),
            };
            for case in &fixture.cases {
                let mut picture = source.clone();
                op_named(&case.op).apply(&mut picture, case.magnitude);
                let differing = picture
                    .pixels
                    .iter()
                    .zip(&case.pixels)
                    .filter(|(a, b)| a != b)
                    .count();
                assert_eq!(
                    differing,
                    0,
                    "{} {} at {}: {differing} of {} bytes differ from Pillow's",
                    fixture.name,
                    case.op,
                    case.magnitude,
                    case.pixels.len()
                );
                checked += 1;
            }
        }
        assert!(checked > 300, "only {checked} cases");
    }

    #[test]
    fn policies_follow_their_stream_and_keep_the_shape() {
        let fixture = fixture();
        let first = &fixture.pictures[0];
        let source = Picture {
            width: first.width,
            height: first.height,
            channels: first.channels,
            pixels: first.pixels.clone(),
        };
        for policy in [
            AutoAugment::Trivial,
            AutoAugment::Rand {
                ops: 2,
                magnitude: 9,
            },
        ] {
            let run = |seed: u64| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                (0..20)
                    .map(|_| {
                        let mut picture = source.clone();
                        picture.auto_augment(policy, &mut rng);
                        assert_eq!(picture.pixels.len(), source.pixels.len());
                        picture.pixels
                    })
                    .collect::<Vec<_>>()
            };
            let once = run(7);
            assert_eq!(once, run(7));
            assert_ne!(once, run(8));
            assert!(once.iter().filter(|p| **p != source.pixels).count() >= 10);
        }
    }
}
