//! Mixup and CutMix on a training batch, as timm's `Mixup` does them in its batch mode: the
//! batch is mixed with itself reversed (sample i with sample n − 1 − i), one weight λ for the
//! whole batch drawn from Beta(α, α); mixup blends whole images, CutMix pastes a box of the
//! partner image whose area sets λ. The labels become the pair (own class, partner's class)
//! with λ, and the classification loss is λ·CE(own) + (1 − λ)·CE(partner), which is timm's
//! soft-target cross-entropy on the mixed one-hot targets (label smoothing included).
//!
//! The draws come from the batch's own stream (seed, epoch, the batch's samples), so a resumed
//! run mixes exactly as the uninterrupted one did, on any number of workers.

use rand::Rng;
use rand_distr::{Beta, Distribution};

use crate::config::AugmentConfig;
use crate::data::MixedLabels;

/// Mixes `pixels` (`shape`: batch, channels, height, width; normalised) in place when the
/// batch's draw says so, returning the partners' labels and λ.
pub fn mix_batch(
    pixels: &mut [f32],
    shape: [usize; 4],
    labels: &[i64],
    augment: &AugmentConfig,
    rng: &mut impl Rng,
) -> Option<MixedLabels> {
    let (mixup, cutmix) = (augment.mixup_alpha, augment.cutmix_alpha);
    if (mixup <= 0.0 && cutmix <= 0.0) || rng.random::<f64>() >= augment.mix_prob {
        return None;
    }
    let use_cutmix = match (mixup > 0.0, cutmix > 0.0) {
        (true, true) => rng.random::<f64>() < augment.switch_prob,
        (false, true) => true,
        _ => false,
    };
    let alpha = if use_cutmix { cutmix } else { mixup };
    let lambda = Beta::new(alpha, alpha)
        .expect("alphas are checked positive")
        .sample(rng);
    let [batch, channels, height, width] = shape;
    let image = channels * height * width;
    let source = pixels.to_vec();
    let partner = |i: usize| batch - 1 - i;
    let weight = if use_cutmix {
        let (top, bottom, left, right) = cutmix_box(height, width, lambda, rng);
        for i in 0..batch {
            let (own, theirs) = (i * image, partner(i) * image);
            for c in 0..channels {
                for y in top..bottom {
                    let row = c * height * width + y * width;
                    pixels[own + row + left..own + row + right]
                        .copy_from_slice(&source[theirs + row + left..theirs + row + right]);
                }
            }
        }
        // timm's `correct_lam`: λ is the share of each image left its own.
        1.0 - ((bottom - top) * (right - left)) as f64 / (height * width) as f64
    } else {
        let keep = lambda as f32;
        for i in 0..batch {
            let (own, theirs) = (i * image, partner(i) * image);
            for k in 0..image {
                pixels[own + k] = source[own + k] * keep + source[theirs + k] * (1.0 - keep);
            }
        }
        lambda
    };
    Some(MixedLabels {
        partners: (0..batch).map(|i| labels[partner(i)]).collect(),
        weight: weight as f32,
    })
}

/// timm's `rand_bbox`: a box of `sqrt(1 − λ)` of each side, centred uniformly, clipped to
/// the image: (top, bottom, left, right).
fn cutmix_box(
    height: usize,
    width: usize,
    lambda: f64,
    rng: &mut impl Rng,
) -> (usize, usize, usize, usize) {
    let ratio = (1.0 - lambda).sqrt();
    let (cut_h, cut_w) = (
        (height as f64 * ratio) as usize,
        (width as f64 * ratio) as usize,
    );
    let (cy, cx) = (rng.random_range(0..height), rng.random_range(0..width));
    let clip = |centre: usize, half: usize, side: usize| {
        (centre.saturating_sub(half), (centre + half).min(side))
    };
    let (top, bottom) = clip(cy, cut_h / 2, height);
    let (left, right) = clip(cx, cut_w / 2, width);
    (top, bottom, left, right)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn augment(mixup: f64, cutmix: f64) -> AugmentConfig {
        AugmentConfig {
            mixup_alpha: mixup,
            cutmix_alpha: cutmix,
            ..AugmentConfig::default()
        }
    }

    /// Four 1-channel 4×4 images, image i filled with the value i.
    fn batch() -> Vec<f32> {
        (0..4).flat_map(|i| vec![i as f32; 16]).collect()
    }

    #[test]
    fn mixup_blends_each_image_with_its_mirror_partner() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut pixels = batch();
        let mixed = mix_batch(
            &mut pixels,
            [4, 1, 4, 4],
            &[0, 1, 2, 3],
            &augment(0.4, 0.0),
            &mut rng,
        )
        .expect("mix_prob 1 mixes every batch");
        assert_eq!(mixed.partners, [3, 2, 1, 0]);
        let w = mixed.weight;
        assert!((0.0..=1.0).contains(&w));
        for i in 0..4 {
            let want = i as f32 * w + (3 - i) as f32 * (1.0 - w);
            assert!(
                pixels[i * 16..(i + 1) * 16]
                    .iter()
                    .all(|&p| (p - want).abs() < 1e-5)
            );
        }
    }

    #[test]
    fn cutmix_pastes_a_box_whose_area_is_the_partners_share() {
        for seed in 0..20 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut pixels = batch();
            let mixed = mix_batch(
                &mut pixels,
                [4, 1, 4, 4],
                &[0, 1, 2, 3],
                &augment(0.0, 1.0),
                &mut rng,
            )
            .unwrap();
            for i in 0..4 {
                let image = &pixels[i * 16..(i + 1) * 16];
                let theirs = image.iter().filter(|&&p| p == (3 - i) as f32).count();
                let own = image.iter().filter(|&&p| p == i as f32).count();
                assert_eq!(own + theirs, 16);
                if i != 3 - i {
                    assert_eq!(1.0 - theirs as f32 / 16.0, mixed.weight, "seed {seed}");
                }
            }
        }
    }

    #[test]
    fn nothing_is_mixed_when_off_or_not_drawn() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut pixels = batch();
        assert!(
            mix_batch(
                &mut pixels,
                [4, 1, 4, 4],
                &[0, 1, 2, 3],
                &augment(0.0, 0.0),
                &mut rng
            )
            .is_none()
        );
        let never = AugmentConfig {
            mix_prob: 0.0,
            ..augment(0.4, 1.0)
        };
        assert!(mix_batch(&mut pixels, [4, 1, 4, 4], &[0, 1, 2, 3], &never, &mut rng).is_none());
        assert_eq!(pixels, batch());
    }
}
