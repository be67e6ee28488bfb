//! The statistics of an experiment: a Wilson interval per run, a t interval of the mean
//! across seeds, a paired bootstrap interval of a difference on the same tasks, McNemar's
//! exact test, and the design's minimum detectable effect. Checked against scipy and statsmodels in `tests/it/stats_reference.rs`.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// An estimate with a two-sided 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// The normal quantile of a two-sided `level` interval (1.96 for 0.95).
fn z(level: f64) -> f64 {
    Normal::new(0.0, 1.0).map_or(1.959_963_984_540_054, |n| n.inverse_cdf(0.5 + level / 2.0))
}

/// The Wilson score interval of `k` successes in `n` trials (statsmodels'
/// `proportion_confint(method="wilson")`).
pub fn wilson(k: u64, n: u64, level: f64) -> Interval {
    if n == 0 {
        return Interval {
            estimate: f64::NAN,
            lo: 0.0,
            hi: 1.0,
        };
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z = z(level);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At 0 or n successes the bound is exactly 0 or 1 (rounding would leave it off by 1e-17).
    Interval {
        estimate: p,
        lo: if k == 0.0 {
            0.0
        } else {
            (center - half).max(0.0)
        },
        hi: if k == n {
            1.0
        } else {
            (center + half).min(1.0)
        },
    }
}

/// The mean of `values` with its Student-t interval (one value: the interval is the value).
pub fn mean_t(values: &[f64], level: f64) -> Interval {
    let n = values.len();
    if n == 0 {
        return Interval {
            estimate: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Interval {
            estimate: mean,
            lo: mean,
            hi: mean,
        };
    }
    let se = sample_sd(values) / (n as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .map_or(f64::NAN, |d| d.inverse_cdf(0.5 + level / 2.0));
    Interval {
        estimate: mean,
        lo: mean - t * se,
        hi: mean + t * se,
    }
}

/// The two-sided exact McNemar p-value of paired outcomes with `b` pairs right only under A
/// and `c` right only under B (statsmodels' `mcnemar(exact=True)`: a binomial test on the
/// discordant pairs).
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut cdf = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        cdf += (ln_choose + ln_half_n).exp();
    }
    (2.0 * cdf).min(1.0)
}

/// The mean of paired differences `a[i] - b[i]` with a percentile bootstrap interval
/// (`resamples` draws of the pairs with replacement, seeded).
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, level: f64, seed: u64) -> Interval {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    if n == 0 {
        return Interval {
            estimate: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
        };
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let i = (p * (means.len() - 1) as f64).round() as usize;
        means[i.min(means.len() - 1)]
    };
    Interval {
        estimate: mean,
        lo: q((1.0 - level) / 2.0),
        hi: q(1.0 - (1.0 - level) / 2.0),
    }
}

/// The smallest true mean difference that a two-sided z-test at level `alpha` detects with
/// probability `power`, from `n` paired differences whose standard deviation is `sd`
/// (statsmodels' `NormalIndPower().solve_power(nobs1=n, ratio=0, ...)` times `sd`: the
/// power counts both tails).
pub fn minimum_detectable_effect(sd: f64, n: usize, alpha: f64, power: f64) -> f64 {
    let Ok(normal) = Normal::new(0.0, 1.0) else {
        return f64::NAN;
    };
    if n == 0 || sd.is_nan() || sd <= 0.0 {
        return f64::NAN;
    }
    let crit = normal.inverse_cdf(1.0 - alpha / 2.0);
    let root_n = (n as f64).sqrt();
    let power_at =
        |es: f64| (1.0 - normal.cdf(crit - es * root_n)) + normal.cdf(-crit - es * root_n);
    // The power grows with the effect: bisect on it.
    let (mut lo, mut hi) = (0.0, 1.0);
    while power_at(hi) < power {
        hi *= 2.0;
        if hi > 1e6 {
            return f64::NAN;
        }
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if power_at(mid) < power {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    sd * (lo + hi) / 2.0
}

/// The sample standard deviation (n − 1 in the denominator).
pub fn sample_sd(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 {
        return f64::NAN;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_of_identical_arms_is_zero_and_of_a_shift_covers_it() {
        let a = vec![1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let i = paired_bootstrap(&a, &a, 500, 0.95, 1);
        assert_eq!((i.estimate, i.lo, i.hi), (0.0, 0.0, 0.0));
        let ones = vec![1.0; 200];
        let mut half = vec![1.0; 100];
        half.extend(vec![0.0; 100]);
        let i = paired_bootstrap(&ones, &half, 2000, 0.95, 2);
        assert!((i.estimate - 0.5).abs() < 1e-12);
        assert!(
            i.lo < 0.5 && i.hi > 0.5 && i.lo > 0.38 && i.hi < 0.62,
            "{i:?}"
        );
    }
}
