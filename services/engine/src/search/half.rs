//! Exact search over a half-precision copy of the rows.
//!
//! The f32 scan is memory-bound (12k x 128 x 4 bytes = 6 MB per query, more than a core's
//! L2). A copy in f16 is half the bytes; it picks candidates with a proven error bound and
//! the f32 rows decide, so the answer is the f32 scan's answer. Needs AVX2, FMA and F16C
//! (detected at run time); without them the gallery uses the f32 scan.

use super::exact::l2_squared;
use super::{BiasedTopK, TopK};
use crate::face::{Embedding, EMBEDDING_DIM};

/// Values beyond this do not fit f16 with a small relative error; such a gallery (never a
/// face embedding) keeps the f32 scan.
const F16_SAFE_MAX: f32 = 60_000.0;

pub struct HalfRows {
    rows: Vec<u16>,
    /// Bound on |f16 distance - f32 distance| for any query and row: rounding to f16 moves
    /// a row by at most 2^-11 of its norm (plus 2^-25 per subnormal component), and the
    /// two f32 summations differ by far less than the 1e-5 added for them.
    eps: f32,
}

impl HalfRows {
    /// The f16 copy of `rows`, or `None` when the CPU lacks F16C/AVX2/FMA or a value does not fit.
    pub fn new(rows: &[f32]) -> Option<Self> {
        if !simd::supported() || rows.is_empty() || rows.iter().any(|v| !v.is_finite() || v.abs() > F16_SAFE_MAX) {
            return None;
        }
        let max_norm =
            rows.chunks_exact(EMBEDDING_DIM).map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt()).fold(0f32, f32::max);
        let eps = max_norm * 2f32.powi(-11) + (EMBEDDING_DIM as f32).sqrt() * 2f32.powi(-25) + 1e-5;
        Some(Self { rows: simd::to_f16(rows)?, eps })
    }

    pub fn bytes(&self) -> usize {
        self.rows.len() * 2
    }

    /// Same contract and result as [`super::exact::search`]: the best `k` distinct
    /// identities, each at the distance of its closest row (f32), nearest first.
    pub fn search(&self, rows: &[f32], owners: &[u32], query: &Embedding, k: usize) -> Vec<(u32, f32)> {
        // Pass 1 (f16): every row that can still be within the k best identities once the
        // error bound is allowed for on both sides. A row of one of the true k best has
        // d16 <= d32 + eps <= D32_k + eps <= D16_k + 2 eps <= the bound at its turn.
        let slack = 2.0 * self.eps;
        let mut top = TopK::new(k);
        let mut bound2 = f32::INFINITY;
        let mut candidates: Vec<u32> = Vec::new();
        for (i, (row, owner)) in self.rows.chunks_exact(EMBEDDING_DIM).zip(owners).enumerate() {
            let d2 = simd::l2_squared_f16(query, row);
            if d2 <= bound2 {
                candidates.push(i as u32);
                if d2 < top.worst() {
                    top.offer(*owner, d2);
                    let worst = top.worst();
                    if worst.is_finite() {
                        bound2 = (worst.sqrt() + slack).powi(2);
                    }
                }
            }
        }
        // Pass 2 (f32) over the few candidates decides.
        let mut exact = TopK::new(k);
        for i in candidates {
            let i = i as usize;
            if let (Some(row), Some(owner)) = (rows.get(i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM), owners.get(i)) {
                exact.offer(*owner, l2_squared(query, row));
            }
        }
        exact.into_distances()
    }

    /// The best `k` identities by `distance - bias[identity]` (the crowding correction), as
    /// (identity, plain f32 distance), best first; same two passes and the same bound: the
    /// bias is the same on both sides, so scores differ by no more than distances do. Rows
    /// farther than `max_distance` (f32) do not take part.
    pub fn search_biased(
        &self,
        rows: &[f32],
        owners: &[u32],
        query: &Embedding,
        k: usize,
        bias: &[f32],
        max_distance: f32,
    ) -> Vec<(u32, f32)> {
        // Pass 1 (f16) keeps every row within twice the error bound of the k best scores (and
        // within the limit plus the bound); pass 2 (f32) decides.
        let mut top = BiasedTopK::new(k, bias, 2.0 * self.eps, max_distance.max(0.0) + self.eps);
        let mut candidates: Vec<u32> = Vec::new();
        for (i, (row, owner)) in self.rows.chunks_exact(EMBEDDING_DIM).zip(owners).enumerate() {
            if top.offer(*owner, simd::l2_squared_f16(query, row)) {
                candidates.push(i as u32);
            }
        }
        let mut exact = BiasedTopK::new(k, bias, 0.0, max_distance);
        for i in candidates {
            let i = i as usize;
            if let (Some(row), Some(owner)) = (rows.get(i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM), owners.get(i)) {
                exact.offer(*owner, l2_squared(query, row));
            }
        }
        exact.into_distances()
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use crate::face::EMBEDDING_DIM;
    use std::arch::x86_64::*;

    pub fn supported() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    }

    pub fn to_f16(rows: &[f32]) -> Option<Vec<u16>> {
        if !supported() || !rows.len().is_multiple_of(8) {
            return None;
        }
        let mut out = vec![0u16; rows.len()];
        // SAFETY: the CPU features were checked just above.
        unsafe { to_f16_avx(rows, &mut out) };
        Some(out)
    }

    #[target_feature(enable = "avx2,f16c")]
    unsafe fn to_f16_avx(rows: &[f32], out: &mut [u16]) {
        for (src, dst) in rows.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
            // SAFETY: 8 f32 read, 8 u16 written, unaligned loads/stores.
            unsafe {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr()));
                _mm_storeu_si128(dst.as_mut_ptr().cast::<__m128i>(), h);
            }
        }
    }

    /// Squared distance between an f32 query and an f16 row. Only called on rows made by
    /// `to_f16`, which exists only when the features are present.
    #[inline]
    pub fn l2_squared_f16(q: &[f32; EMBEDDING_DIM], row: &[u16]) -> f32 {
        debug_assert_eq!(row.len(), EMBEDDING_DIM);
        // SAFETY: HalfRows is only built after `supported()`; `row` holds EMBEDDING_DIM values.
        unsafe { l2_avx(q, row) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn l2_avx(q: &[f32; EMBEDDING_DIM], row: &[u16]) -> f32 {
        if row.len() < EMBEDDING_DIM {
            return f32::INFINITY;
        }
        // SAFETY: 128 values on both sides (checked above), unaligned loads.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 4];
            for base in (0..EMBEDDING_DIM).step_by(32) {
                for (k, a) in acc.iter_mut().enumerate() {
                    let o = base + 8 * k;
                    let h = _mm256_cvtph_ps(_mm_loadu_si128(row.as_ptr().add(o).cast::<__m128i>()));
                    let d = _mm256_sub_ps(_mm256_loadu_ps(q.as_ptr().add(o)), h);
                    *a = _mm256_fmadd_ps(d, d, *a);
                }
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
            let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
            _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps::<1>(x, x)))
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use crate::face::EMBEDDING_DIM;

    pub fn supported() -> bool {
        false
    }

    pub fn to_f16(_rows: &[f32]) -> Option<Vec<u16>> {
        None
    }

    pub fn l2_squared_f16(_q: &[f32; EMBEDDING_DIM], _row: &[u16]) -> f32 {
        f32::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::exact;

    /// Rows shaped like face embeddings (components ~ +-0.1).
    fn rows(n: usize, seed: u64) -> Vec<f32> {
        crate::search::test_rows(n, seed, 0.2)
    }

    #[test]
    fn gives_the_f32_scan_answer_even_on_near_ties() {
        let Some(_) = HalfRows::new(&rows(1, 1)) else {
            eprintln!("no AVX2/F16C on this CPU: the f16 scan is not used here");
            return;
        };
        let mut base = rows(3000, 7);
        let owners: Vec<u32> = (0..3000u32).map(|i| i / 3).collect();
        let queries = rows(50, 99);
        // Near-ties: copies of query 0 moved by less than f16's resolution.
        for j in 0..20 {
            let row = 2000 + j;
            for d in 0..EMBEDDING_DIM {
                base[row * EMBEDDING_DIM + d] = queries[d] + (j as f32) * 1e-6;
            }
        }
        let half = HalfRows::new(&base).unwrap();
        for q in queries.chunks_exact(EMBEDDING_DIM) {
            let q: &Embedding = q.try_into().unwrap();
            for k in [1, 3, 10] {
                let want = exact::search(&base, &owners, q, k);
                let got = half.search(&base, &owners, q, k);
                assert_eq!(got, want, "k={k}");
            }
        }
    }

    #[test]
    fn refuses_values_f16_cannot_hold() {
        let mut r = rows(4, 3);
        r[5] = 1e6;
        assert!(HalfRows::new(&r).is_none());
        r[5] = f32::NAN;
        assert!(HalfRows::new(&r).is_none());
    }
}
