//! Dropout masks from a counter-based RNG: element `i` of a mask drawn with `key` is kept when
//! a hash of `(key, i)` falls below the keep probability. Any thread can compute any element,
//! so masks are filled in parallel and the backward pass recomputes the mask instead of storing
//! it, and the result never depends on the thread count.
//!
//! Keys come from the step's dropout stream: reseeded from `(run seed, step)` before every step
//! (as burn's device RNG is), restarted at each pass of the step from the pass's index among
//! all the step's passes, and each dropout call takes the next key. So a resumed run draws the
//! same masks as the uninterrupted one, and a pass draws the same masks whichever process
//! runs it: pass 3 of a step is the same on one process with 4 accumulated passes as on rank
//! 1 of 2 ranks with 2 passes each.

use std::mem::MaybeUninit;
use std::sync::Mutex;

use multiversion::multiversion;
use rayon::prelude::*;

/// The stream's state: the step's seed and how many keys it has handed out.
static STREAM: Mutex<(u64, u64)> = Mutex::new((0, 0));

/// Elements per parallel task: large enough that scheduling costs nothing next to hashing.
const CHUNK: usize = 1 << 15;

/// Restarts the dropout stream for the step seeded with `seed`.
pub fn seed_dropout(seed: u64) {
    *STREAM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = (seed, 0);
}

/// Restarts the step's stream for its pass `pass` (counted over all the step's passes, on all
/// ranks). Pass 0's keys are those of a step with no restart.
pub fn start_dropout_pass(pass: usize) {
    let mut stream = STREAM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stream.1 = (pass as u64) << 32;
}

/// The next key of the stream.
pub(super) fn next_key() -> u64 {
    let mut stream = STREAM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (seed, calls) = *stream;
    stream.1 += 1;
    splitmix64(seed ^ splitmix64(calls.wrapping_add(0x6a09_e667_f3bc_c909)))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// murmur3's finaliser: every input bit flips each output bit with probability one half.
#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// What a mask is drawn from: the key split for the hash, and the keep threshold.
#[derive(Clone, Copy)]
pub(super) struct Mask {
    low: u32,
    high: u32,
    /// Kept when the hash is below this (out of 2^32).
    threshold: u32,
    /// `1 / (1 - prob)`.
    pub scale: f32,
}

impl Mask {
    pub fn new(key: u64, prob: f64) -> Self {
        let keep = 1.0 - prob;
        Self {
            low: key as u32,
            high: (key >> 32) as u32,
            threshold: (keep * 4_294_967_296.0).round().min(u32::MAX as f64) as u32,
            scale: (1.0 / keep) as f32,
        }
    }

    /// Whether element `index` is kept. Indices past 2^32 fold their high bits into the key.
    #[inline(always)]
    fn kept(&self, index: usize) -> bool {
        let high = self.high ^ ((index as u64 >> 32) as u32).wrapping_mul(0x27d4_eb2f);
        let h = fmix32((index as u32).wrapping_mul(0x9e37_79b9) ^ self.low);
        fmix32(h ^ high) < self.threshold
    }

    /// The scaled mask itself (0 or `scale` per element), for backends that multiply by it.
    pub fn values(&self, len: usize) -> Vec<f32> {
        let mut values = vec![0.0; len];
        values
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, out)| fill_mask(self, chunk * CHUNK, out));
        values
    }

    /// `out[i] = x[i] · mask[i]`.
    pub fn apply(&self, x: &[f32], out: &mut [MaybeUninit<f32>]) {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(chunk, (out, x))| apply_mask(self, chunk * CHUNK, x, out));
    }

    /// `x[i] *= mask[first + i]`, in place, on this thread: `x` is part of a larger masked
    /// tensor that starts `first` elements earlier.
    pub fn apply_in_place_at(&self, x: &mut [f32], first: usize) {
        apply_mask_in_place(self, first, x);
    }

    /// `x[i] *= mask[i]`, in place.
    pub fn apply_in_place(&self, x: &mut [f32]) {
        x.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, x)| apply_mask_in_place(self, chunk * CHUNK, x));
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn fill_mask(mask: &Mask, first: usize, out: &mut [f32]) {
    for (i, out) in out.iter_mut().enumerate() {
        *out = if mask.kept(first + i) {
            mask.scale
        } else {
            0.0
        };
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn apply_mask(mask: &Mask, first: usize, x: &[f32], out: &mut [MaybeUninit<f32>]) {
    for (i, (out, &x)) in out.iter_mut().zip(x).enumerate() {
        out.write(if mask.kept(first + i) {
            x * mask.scale
        } else {
            0.0
        });
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512dq", "x86_64+avx2+fma"))]
fn apply_mask_in_place(mask: &Mask, first: usize, x: &mut [f32]) {
    for (i, x) in x.iter_mut().enumerate() {
        *x = if mask.kept(first + i) {
            *x * mask.scale
        } else {
            0.0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_expected_share_and_scales_it() {
        let mask = Mask::new(12345, 0.25);
        let values = mask.values(1 << 20);
        let kept = values.iter().filter(|&&v| v != 0.0).count() as f64 / values.len() as f64;
        assert!((kept - 0.75).abs() < 0.002, "{kept}");
        assert!(values.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
    }

    #[test]
    fn masks_depend_on_the_key_only_and_neighbours_are_independent() {
        let a = Mask::new(1, 0.5).values(100_000);
        let b = Mask::new(2, 0.5).values(100_000);
        assert_eq!(a, Mask::new(1, 0.5).values(100_000));
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / 1e5;
        assert!((same - 0.5).abs() < 0.01, "{same}");
        // Consecutive elements are kept together as often as chance says.
        let pairs = a.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count() as f64;
        assert!((pairs / 1e5 - 0.25).abs() < 0.01, "{pairs}");
    }

    #[test]
    fn the_stream_restarts_with_its_seed() {
        seed_dropout(7);
        let first = [next_key(), next_key()];
        seed_dropout(7);
        assert_eq!(first, [next_key(), next_key()]);
        assert_ne!(first[0], first[1]);
        seed_dropout(8);
        assert_ne!(first[0], next_key());
    }

    #[test]
    fn applying_equals_multiplying_by_the_mask() {
        let mask = Mask::new(99, 0.1);
        let x: Vec<f32> = (0..70_000).map(|i| i as f32 * 0.001 - 3.0).collect();
        let values = mask.values(x.len());
        let mut out = vec![MaybeUninit::new(0.0); x.len()];
        mask.apply(&x, &mut out);
        // SAFETY: `apply` wrote every element, which were initialised anyway.
        let out: Vec<f32> = out
            .into_iter()
            .map(|v| unsafe { v.assume_init() })
            .collect();
        let mut in_place = x.clone();
        mask.apply_in_place(&mut in_place);
        for i in 0..x.len() {
            assert_eq!(out[i], x[i] * values[i]);
            assert_eq!(in_place[i], out[i]);
        }
    }
}
