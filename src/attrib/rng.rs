//! A small seeded generator for noise baselines and SmoothGrad draws.
//!
//! Every `(seed, sample, draw)` triple has its own stream, so a sample's noise
//! does not depend on how the batch is split or ordered.

/// SplitMix64 (Steele, Lea and Flood 2014): a 64-bit state advanced by a
/// constant and mixed on output.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix {
    /// The stream of draw `k` of sample `b` under `seed`.
    pub(crate) fn stream(seed: u64, b: usize, k: usize) -> SplitMix {
        let s = mix(seed ^ GOLDEN);
        let s = mix(s
            ^ (b as u64)
                .wrapping_add(1)
                .wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let s = mix(s
            ^ (k as u64)
                .wrapping_add(1)
                .wrapping_mul(0xA076_1D64_78BD_642F));
        SplitMix(s)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform on `[0, 1)`, 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal, by the Box–Muller transform (one of the pair is used).
    pub(crate) fn normal(&mut self) -> f64 {
        // 1 − u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_distinct_and_well_spread() {
        let a: Vec<f64> = {
            let mut r = SplitMix::stream(7, 0, 0);
            (0..4).map(|_| r.uniform()).collect()
        };
        let b: Vec<f64> = {
            let mut r = SplitMix::stream(7, 0, 0);
            (0..4).map(|_| r.uniform()).collect()
        };
        assert_eq!(a, b);
        let mut c = SplitMix::stream(7, 1, 0);
        assert_ne!(a[0], c.uniform());
        let mut r = SplitMix::stream(1, 2, 3);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
        let us: Vec<f64> = (0..n).map(|_| r.uniform()).collect();
        assert!(us.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mu = us.iter().sum::<f64>() / n as f64;
        assert!((mu - 0.5).abs() < 0.01, "{mu}");
    }
}
