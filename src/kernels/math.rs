//! `exp` and `erf` for f32 without branches, so that loops over slices vectorise (libm's are
//! scalar calls, 5–8 % of a transformer step in `perf`). `exp` is within 2 units in the last
//! place of libm, `erf` within 5e-7; the tests hold them to it.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two, so that `n · ln 2` is exact in the high part (Cody and Waite).
const LN2_HIGH: f32 = 0.693_359_4;
const LN2_LOW: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: adding and subtracting it rounds an f32 to the nearest integer.
const ROUND: f32 = 12_582_912.0;

/// eˣ; 0 below -87.3 (where f32 runs out of normal numbers) and +∞ above 88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_54, 88.722_84);
    // x = n · ln 2 + r, |r| ≤ ln 2 / 2; eˣ = 2ⁿ · eʳ.
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    // Cephes' minimax polynomial for eʳ on that range.
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2ⁿ from its exponent bits; n + 127 stays in [1, 255] after the clamp, but for the
    // lowest n, which is split in two factors.
    let n = n as i32;
    let half = n >> 1;
    let scale_a = f32::from_bits(((half + 127) as u32) << 23);
    let scale_b = f32::from_bits(((n - half + 127) as u32) << 23);
    er * scale_a * scale_b
}

/// erf(x) as a rational function of x on [-4, 4] (beyond which erf is ±1 in f32), with
/// the minimax coefficients XLA and Eigen use for f32: within 5e-7 of libm.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_6e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_2e-5_f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329e-3;
    let q = q * x2 - 1.426_474e-2;
    (x * p / q).clamp(-1.0, 1.0)
}

/// Lanes of the reductions below: as wide as an AVX-512 register.
const LANES: usize = 16;

/// Σ f(x) over `values`, in `LANES` interleaved partial sums: LLVM does not reorder a float
/// sum by itself, so a plain loop would not vectorise. The order is fixed, so the same values
/// always give the same sum.
#[inline(always)]
pub fn sum_map(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(rest) {
        *lane += f(v);
    }
    lanes.iter().sum()
}

/// Σ values.
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    sum_map(values, |v| v)
}

/// Σ a·b.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for i in 0..LANES {
            lanes[i] += ca[i] * cb[i];
        }
    }
    for (lane, (&x, &y)) in lanes.iter_mut().zip(rest_a.iter().zip(rest_b)) {
        *lane += x * y;
    }
    lanes.iter().sum()
}

/// The largest value (−∞ for none).
#[inline(always)]
pub fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(rest) {
        *lane = if v > *lane { v } else { *lane };
    }
    lanes
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i32).abs_diff(b.to_bits() as i32)
    }

    #[test]
    fn reductions_match_plain_loops() {
        let values: Vec<f32> = (0..1001)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let plain: f64 = values.iter().map(|&v| v as f64).sum();
        assert!((sum(&values) as f64 - plain).abs() < 1e-3);
        let squares: f64 = values.iter().map(|&v| (v * v) as f64).sum();
        assert!((dot(&values, &values) as f64 - squares).abs() < 1e-2);
        assert_eq!(
            max(&values),
            values.iter().cloned().fold(f32::MIN, f32::max)
        );
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        assert_eq!(sum(&values[..5]), values[..5].iter().sum::<f32>());
    }

    #[test]
    fn exp_is_within_two_ulps_of_libm() {
        let mut worst = 0;
        for i in 0..=2_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 2_000_000.0;
            worst = worst.max(ulps(exp(x), x.exp()));
        }
        assert!(worst <= 2, "{worst} ulps");
        assert_eq!(exp(-200.0), 0.0f32.max(exp(-200.0)));
        assert!(exp(-200.0) < 1e-37);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_5e_7_of_libm() {
        let mut worst = 0.0f64;
        for i in 0..=400_000 {
            let x = -6.0 + 12.0 * i as f64 / 400_000.0;
            let ours = erf(x as f32) as f64;
            worst = worst.max((ours - libm_erf(x)).abs());
        }
        assert!(worst < 5e-7, "{worst}");
        assert_eq!(erf(0.0), 0.0);
        assert!((erf(-10.0) + 1.0).abs() < 2e-7);
    }

    fn libm_erf(x: f64) -> f64 {
        unsafe extern "C" {
            fn erf(x: f64) -> f64;
        }
        // SAFETY: libm's erf is a pure function of a double.
        unsafe { erf(x) }
    }
}
