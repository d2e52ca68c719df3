//! The similarity percentage. dlib distances mean little to a person; "you are more
//! similar to your celebrity than 87% of people are to theirs" does. The population is
//! the distance from a person who is NOT in the gallery to their best-matching gallery
//! identity, approximated at build time by leaving each sampled gallery identity out and
//! taking its nearest other identity. A normal fit of those distances gives
//! `similarity(d) = 100 * (1 - Phi((d - mean) / std))`: the share of people whose best
//! match is farther than `d`, floored and capped.
//!
//! The percentage is a function of the same key that ranks the candidates: the distance
//! minus the crowding correction (`search::crowding`) when it is on. Fitted on that key for
//! the same left-out population, the order and the numbers a person reads never contradict
//! (a lower percentage can no longer be ranked above a higher one). The fit records the
//! crowding weight it was made for (`ranking_weight`); a gallery refits when it is served
//! with another weight.

use crate::face::EMBEDDING_DIM;
use crate::search::exact::l2_squared;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    pub mean: f32,
    pub std: f32,
    /// Lowest percentage ever reported (nobody likes "0%").
    pub floor_percent: f32,
    /// What the fit was made on, in words.
    pub population: String,
    pub samples: u32,
    /// The crowding weight of the ranking key the fit was made on (0: the plain distance,
    /// as in every file written before the key was calibrated).
    #[serde(default)]
    pub ranking_weight: f32,
}

pub const CEILING_PERCENT: f32 = 99.9;
pub const DEFAULT_FLOOR_PERCENT: f32 = 1.0;

impl Calibration {
    /// The percentage for a ranking key (`Candidate::score`: the distance, minus the
    /// crowding correction when it is on). Strictly a decreasing function of the key
    /// between the floor and the ceiling.
    pub fn similarity_percent(&self, key: f32) -> f32 {
        let z = (f64::from(key) - f64::from(self.mean)) / f64::from(self.std.max(1e-6));
        let pct = (100.0 * (1.0 - normal_cdf(z))) as f32;
        pct.clamp(self.floor_percent, CEILING_PERCENT)
    }

    /// Fits the population of "ranking key from an outsider to their best gallery match".
    /// `rows`/`owners` as in the gallery; `bias` is what the ranking subtracts from the
    /// distance per identity (`weight` x crowding figure; empty for the plain distance), and
    /// `weight` that weight, recorded with the fit. At most `max_samples` rows are used as
    /// outsiders.
    pub fn fit_nearest_other(
        rows: &[f32],
        owners: &[u32],
        bias: &[f32],
        weight: f32,
        max_samples: usize,
    ) -> Option<Self> {
        let n = owners.len();
        if n < 2 || rows.len() != n * EMBEDDING_DIM {
            return None;
        }
        let bias_of = |o: u32| bias.get(o as usize).copied().unwrap_or(0.0);
        let step = n.div_ceil(max_samples.max(1)).max(1);
        let mut keys = Vec::with_capacity(n / step + 1);
        for i in (0..n).step_by(step) {
            let q: &[f32; EMBEDDING_DIM] = rows[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM].try_into().ok()?;
            let best = rows
                .chunks_exact(EMBEDDING_DIM)
                .zip(owners)
                .filter(|(_, o)| **o != owners[i])
                .map(|(r, o)| l2_squared(q, r).sqrt() - bias_of(*o))
                .fold(f32::INFINITY, f32::min);
            if best.is_finite() {
                keys.push(best);
            }
        }
        let population = if bias.is_empty() {
            "distance from a person outside the gallery to their nearest gallery identity \
             (each sampled gallery identity left out in turn)"
        } else {
            "ranking key (distance minus the crowding correction) from a person outside the gallery \
             to their best-ranked gallery identity (each sampled gallery identity left out in turn)"
        };
        let mut fit = Self::fit(&keys, population)?;
        fit.ranking_weight = if bias.is_empty() { 0.0 } else { weight };
        Some(fit)
    }

    pub fn fit(distances: &[f32], population: &str) -> Option<Self> {
        if distances.len() < 2 {
            return None;
        }
        let n = distances.len() as f64;
        let mean = distances.iter().map(|&d| f64::from(d)).sum::<f64>() / n;
        let var = distances.iter().map(|&d| (f64::from(d) - mean).powi(2)).sum::<f64>() / (n - 1.0);
        Some(Self {
            mean: mean as f32,
            std: var.sqrt().max(1e-3) as f32,
            floor_percent: DEFAULT_FLOOR_PERCENT,
            population: population.to_string(),
            samples: distances.len() as u32,
            ranking_weight: 0.0,
        })
    }
}

/// Standard normal CDF via erf (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    sign * y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((normal_cdf(-1.96) - 0.024_997_9).abs() < 1e-6);
    }

    #[test]
    fn similarity_is_monotonic_floored_and_capped() {
        let c = Calibration::fit(&[0.5, 0.6, 0.7], "test").expect("fit");
        assert!((c.mean - 0.6).abs() < 1e-6);
        let at_mean = c.similarity_percent(0.6);
        assert!((at_mean - 50.0).abs() < 0.01, "{at_mean}");
        assert!(c.similarity_percent(0.4) > c.similarity_percent(0.5));
        assert_eq!(c.similarity_percent(5.0), DEFAULT_FLOOR_PERCENT);
        assert_eq!(c.similarity_percent(0.0), CEILING_PERCENT);
    }
}
