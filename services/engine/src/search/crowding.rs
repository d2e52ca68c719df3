//! Crowding correction ("hubness"): in a gallery of faces some identities sit in a crowded
//! region of the embedding space, close to many others, and come out as everybody's nearest
//! identity more often than they should. Each identity gets a crowding figure, the mean
//! distance to its `k` nearest *other* identities (computed from the gallery alone, when it
//! is built), and candidates are ranked by `distance - weight * crowding`: an identity in a
//! crowded region (small figure) must be genuinely closer to win a close call. On lfw-dev
//! (docs/BENCHMARKS.md) this adds half a point of rank-1 with `--mirror`, for about 10% more
//! time per exact search.
//!
//! The distance reported to callers stays the plain Euclidean distance; only the order of
//! the candidates changes.

use crate::face::{Embedding, EMBEDDING_DIM};

/// Neighbours averaged per identity. Rank-1 on lfw-dev was flat from 3 to 100.
pub const DEFAULT_NEIGHBOURS: usize = 10;
/// Weight of the crowding figure in the ranking score, fitted on one half of lfw-dev's
/// people and checked on the other half (0.3-0.5 were within 0.1 point of each other).
pub const DEFAULT_WEIGHT: f32 = 0.4;
/// Identities fetched by plain distance at first: each widening re-runs the search, and a
/// scan for 64 costs about what a scan for 1 does.
const FIRST_FETCH: usize = 64;
/// Widening stops here (or at 4k): an identity beyond the 512 nearest would need a
/// crowding figure far outside the gallery's spread to win, and unbounded widening would
/// let one query scan the gallery many times.
const MAX_FETCH: usize = 512;

/// Per-identity crowding figures of a gallery.
#[derive(Debug, Clone, PartialEq)]
pub struct Crowding {
    per_identity: Vec<f32>,
    /// The largest figure: bounds how far the correction can move a candidate up.
    max: f32,
}

impl Crowding {
    /// Takes stored figures (one per identity); `None` when they do not fit the gallery.
    pub fn from_figures(per_identity: Vec<f32>, identities: usize) -> Option<Self> {
        if per_identity.len() != identities || per_identity.iter().any(|c| !c.is_finite() || *c < 0.0) {
            return None;
        }
        Some(Self::new(per_identity))
    }

    fn new(per_identity: Vec<f32>) -> Self {
        let max = per_identity.iter().copied().fold(0.0, f32::max);
        Self { per_identity, max }
    }

    /// Computes the figures: for each row, the mean distance to the `k` nearest other
    /// identities (`nearest(query, n)` gives the `n` nearest identities with their
    /// distances); an identity's figure is the mean over its rows. Runs on `threads` threads.
    pub fn compute<F>(rows: &[f32], owners: &[u32], identities: usize, k: usize, threads: usize, nearest: F) -> Self
    where
        F: Fn(&Embedding, usize) -> Vec<(u32, f32)> + Sync,
    {
        let k = k.clamp(1, identities.saturating_sub(1).max(1));
        let n = owners.len();
        let per_row: Vec<f32> = {
            let chunk = n.div_ceil(threads.max(1)).max(1);
            let nearest = &nearest;
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..n)
                    .step_by(chunk)
                    .map(|start| {
                        let end = (start + chunk).min(n);
                        scope.spawn(move || {
                            (start..end)
                                .map(|r| {
                                    let mut q = [0f32; EMBEDDING_DIM];
                                    q.copy_from_slice(&rows[r * EMBEDDING_DIM..(r + 1) * EMBEDDING_DIM]);
                                    let others: Vec<f32> = nearest(&q, k + 1)
                                        .into_iter()
                                        .filter(|(id, _)| *id != owners[r])
                                        .take(k)
                                        .map(|(_, d)| d)
                                        .collect();
                                    others.iter().sum::<f32>() / others.len().max(1) as f32
                                })
                                .collect::<Vec<f32>>()
                        })
                    })
                    .collect();
                // A panicking search thread is a bug in the search code, not bad input: re-raise
                // it rather than return figures shifted against their rows.
                handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
            })
        };
        let mut sum = vec![0f64; identities];
        let mut count = vec![0u32; identities];
        for (owner, c) in owners.iter().zip(&per_row) {
            sum[*owner as usize] += f64::from(*c);
            count[*owner as usize] += 1;
        }
        let per_identity: Vec<f32> =
            sum.iter().zip(&count).map(|(s, n)| if *n == 0 { 0.0 } else { (s / f64::from(*n)) as f32 }).collect();
        Self::new(per_identity)
    }

    pub fn figures(&self) -> &[f32] {
        &self.per_identity
    }

    fn score(&self, identity: u32, distance: f32, weight: f32) -> f32 {
        distance - weight * self.per_identity.get(identity as usize).copied().unwrap_or(0.0)
    }

    /// The `k` best identities by corrected score, as (identity, plain distance).
    /// `nearest(n)` gives the `n` nearest identities by plain distance, nearest first; it
    /// is asked for more until no identity beyond those fetched could still enter (one at
    /// plain distance `d` scores at least `d - weight * max`), up to `MAX_FETCH`.
    pub fn rank(
        &self,
        k: usize,
        weight: f32,
        identities: usize,
        mut nearest: impl FnMut(usize) -> Vec<(u32, f32)>,
    ) -> Vec<(u32, f32)> {
        let k = k.max(1);
        let cap = MAX_FETCH.max(4 * k);
        let mut fetch = FIRST_FETCH.max(4 * k).min(identities.max(1));
        loop {
            let hits = nearest(fetch);
            let mut scored: Vec<(u32, f32, f32)> =
                hits.iter().map(|&(id, d)| (id, d, self.score(id, d, weight))).collect();
            scored.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
            let exhausted = hits.len() < fetch || fetch >= identities;
            let settled = match (hits.last(), scored.get(k - 1)) {
                (Some(&(_, farthest)), Some(kth)) => farthest - weight * self.max >= kth.2,
                _ => false,
            };
            if exhausted || settled || fetch >= cap {
                scored.truncate(k);
                return scored.into_iter().map(|(id, d, _)| (id, d)).collect();
            }
            fetch = (fetch * 4).min(identities).min(cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{exact, test_rows};

    fn gallery(n: usize, per_identity: usize) -> (Vec<f32>, Vec<u32>) {
        let rows = test_rows(n * per_identity, 7, 1.0);
        let owners = (0..(n * per_identity) as u32).map(|r| r / per_identity as u32).collect();
        (rows, owners)
    }

    /// The figures by brute force: every row against every row of another identity.
    fn brute_figures(rows: &[f32], owners: &[u32], identities: usize, k: usize) -> Vec<f32> {
        let mut per_id = vec![(0f64, 0u32); identities];
        for (r, owner) in owners.iter().enumerate() {
            let mut q = [0f32; EMBEDDING_DIM];
            q.copy_from_slice(&rows[r * EMBEDDING_DIM..(r + 1) * EMBEDDING_DIM]);
            let mut best = vec![f32::INFINITY; identities];
            for (s, o) in owners.iter().enumerate() {
                if o != owner {
                    let d = exact::l2_squared(&q, &rows[s * EMBEDDING_DIM..(s + 1) * EMBEDDING_DIM]).sqrt();
                    best[*o as usize] = best[*o as usize].min(d);
                }
            }
            best.sort_by(f32::total_cmp);
            per_id[*owner as usize].0 += f64::from(best[..k].iter().sum::<f32>() / k as f32);
            per_id[*owner as usize].1 += 1;
        }
        per_id.iter().map(|(s, n)| (s / f64::from(*n)) as f32).collect()
    }

    #[test]
    fn figures_match_brute_force_on_any_thread_count() {
        let (rows, owners) = gallery(60, 3);
        let want = brute_figures(&rows, &owners, 60, 5);
        assert_eq!(want.len(), 60, "one brute-force figure per identity");
        assert!(want.iter().all(|f| f.is_finite() && *f > 0.0), "{want:?}");
        for threads in [1, 3, 8] {
            let c = Crowding::compute(&rows, &owners, 60, 5, threads, |q, n| exact::search(&rows, &owners, q, n));
            assert_eq!(c.figures().len(), want.len(), "{threads} threads: one figure per identity");
            for (a, b) in c.figures().iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn ranking_equals_scoring_every_identity() {
        let (rows, owners) = gallery(300, 2);
        let c = Crowding::compute(&rows, &owners, 300, 10, 2, |q, n| exact::search(&rows, &owners, q, n));
        let queries = test_rows(40, 99, 1.0);
        for weight in [0.0, 0.4, 2.0, 10.0] {
            for q in queries.chunks_exact(EMBEDDING_DIM) {
                let mut query = [0f32; EMBEDDING_DIM];
                query.copy_from_slice(q);
                let all = exact::search(&rows, &owners, &query, 300);
                let mut want: Vec<(u32, f32, f32)> =
                    all.iter().map(|&(id, d)| (id, d, c.score(id, d, weight))).collect();
                want.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
                let want: Vec<(u32, f32)> = want.into_iter().take(5).map(|(id, d, _)| (id, d)).collect();
                let got = c.rank(5, weight, 300, |n| exact::search(&rows, &owners, &query, n));
                assert_eq!(got, want, "weight {weight}");
            }
        }
    }

    #[test]
    fn biased_scans_equal_scoring_every_row() {
        let (rows, owners) = gallery(400, 3);
        let c = Crowding::compute(&rows, &owners, 400, 10, 2, |q, n| exact::search(&rows, &owners, q, n));
        // The f16 scans: the portable kernel on any CPU, the SIMD one where the CPU has it.
        let halves = crate::search::half::test_kernels(&rows);
        let queries = test_rows(30, 5, 1.0);
        let mut limit_mattered = 0;
        for weight in [0.4, 3.0] {
            let bias: Vec<f32> = c.figures().iter().map(|f| f * weight).collect();
            for q in queries.chunks_exact(EMBEDDING_DIM) {
                let mut query = [0f32; EMBEDDING_DIM];
                query.copy_from_slice(q);
                let all = exact::search(&rows, &owners, &query, 400);
                let mut want: Vec<(u32, f32, f32)> =
                    all.iter().map(|&(id, d)| (id, d, d - bias[id as usize])).collect();
                want.sort_by(|a, b| a.2.total_cmp(&b.2).then(a.0.cmp(&b.0)));
                let ids = |v: &[(u32, f32)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
                let want_ids: Vec<u32> = want.iter().take(5).map(|x| x.0).collect();
                let got = exact::search_biased(&rows, &owners, &query, 5, &bias, f32::INFINITY);
                assert_eq!(ids(&got), want_ids, "f32 scan, weight {weight}");
                assert_eq!(got.len(), 5, "f32 scan, weight {weight}");
                for ((_, d), (_, wd, _)) in got.iter().zip(&want) {
                    assert!((d - wd).abs() < 1e-5, "plain distance reported");
                }
                for (kernel, h) in &halves {
                    let got16 = h.search_biased(&rows, &owners, &query, 5, &bias, f32::INFINITY);
                    assert_eq!(ids(&got16), want_ids, "f16 scan ({kernel}), weight {weight}");
                }
                // With a distance limit: the best within it, not the best overall then filtered.
                let limit = all[all.len() / 3].1;
                let want_within: Vec<u32> = want.iter().filter(|x| x.1 <= limit).take(5).map(|x| x.0).collect();
                limit_mattered += usize::from(want.iter().take(5).any(|x| x.1 > limit));
                assert_eq!(ids(&exact::search_biased(&rows, &owners, &query, 5, &bias, limit)), want_within);
                for (kernel, h) in &halves {
                    let got16 = h.search_biased(&rows, &owners, &query, 5, &bias, limit);
                    assert_eq!(ids(&got16), want_within, "f16 scan ({kernel}) within the limit");
                }
            }
        }
        // Filtering after the ranking would have given a different answer for these.
        assert!(limit_mattered > 0, "the limit never changed the top 5: the test proves nothing");
    }

    #[test]
    fn a_crowded_identity_gives_way_to_an_equally_near_one_in_a_sparse_region() {
        let c = Crowding::from_figures(vec![0.5, 0.7], 2).expect("fits");
        // Identity 0 is a hair nearer but lives in a crowd; identity 1 wins after correction.
        let got = c.rank(1, DEFAULT_WEIGHT, 2, |_| vec![(0, 0.50), (1, 0.52)]);
        assert_eq!(got, vec![(1, 0.52)], "plain distance is reported");
        assert!(Crowding::from_figures(vec![0.5], 2).is_none());
        assert!(Crowding::from_figures(vec![0.5, f32::NAN], 2).is_none());
    }
}
