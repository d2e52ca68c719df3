//! Exact search over a half-precision copy of the rows.
//!
//! The f32 scan is memory-bound (12k x 128 x 4 bytes = 6 MB per query, more than a core's
//! L2). A copy in f16 is half the bytes; it picks candidates with a proven error bound and
//! the f32 rows decide, so the answer is the f32 scan's answer. Needs AVX2, FMA and F16C
//! (detected at run time); without them the gallery uses the f32 scan.
//!
//! A scalar version of the same kernels (`portable`) lets the tests check the two-pass scan
//! on any CPU, and the SIMD kernels against it (same f16 bits) where the CPU has them. It is
//! hand-written (30 lines, IEEE 754 round-to-nearest-even, as F16C's `_MM_FROUND_TO_NEAREST_INT`)
//! rather than the `half` crate, to keep a test-only need out of the dependency tree.

use super::exact::l2_squared;
use super::{BiasedTopK, TopK};
use crate::face::{Embedding, EMBEDDING_DIM};

/// Values beyond this do not fit f16 with a small relative error; such a gallery (never a
/// face embedding) keeps the f32 scan.
const F16_SAFE_MAX: f32 = 60_000.0;

pub struct HalfRows {
    rows: Vec<u16>,
    kernel: Kernel,
    /// Bound on |f16 distance - f32 distance| for any query and row: rounding to f16 moves
    /// a row by at most 2^-11 of its norm (plus 2^-25 per subnormal component), and the
    /// two f32 summations differ by far less than the 1e-5 added for them.
    eps: f32,
}

/// Which arithmetic computes the f16 distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// AVX2 + FMA + F16C: what a gallery uses.
    Simd,
    /// Scalar: only built by the tests (`HalfRows::portable`), so that the scan is checked on
    /// a CPU without the SIMD features too.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
}

impl HalfRows {
    /// The f16 copy of `rows`, or `None` when the CPU lacks F16C/AVX2/FMA or a value does not fit.
    pub fn new(rows: &[f32]) -> Option<Self> {
        if !simd::supported() {
            return None;
        }
        Self::with_kernel(rows, Kernel::Simd)
    }

    /// The same scan with the scalar kernels, on any CPU (slower than the f32 scan: tests only).
    #[cfg(test)]
    pub(crate) fn portable(rows: &[f32]) -> Option<Self> {
        Self::with_kernel(rows, Kernel::Portable)
    }

    fn with_kernel(rows: &[f32], kernel: Kernel) -> Option<Self> {
        if rows.is_empty() || rows.iter().any(|v| !v.is_finite() || v.abs() > F16_SAFE_MAX) {
            return None;
        }
        let max_norm =
            rows.chunks_exact(EMBEDDING_DIM).map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt()).fold(0f32, f32::max);
        let eps = max_norm * 2f32.powi(-11) + (EMBEDDING_DIM as f32).sqrt() * 2f32.powi(-25) + 1e-5;
        let half = match kernel {
            Kernel::Simd => simd::to_f16(rows)?,
            Kernel::Portable => rows.iter().map(|v| portable::to_f16(*v)).collect(),
        };
        Some(Self { rows: half, kernel, eps })
    }

    pub fn bytes(&self) -> usize {
        self.rows.len() * 2
    }

    /// Same contract and result as [`super::exact::search`]: the best `k` distinct
    /// identities, each at the distance of its closest row (f32), nearest first.
    pub fn search(&self, rows: &[f32], owners: &[u32], query: &Embedding, k: usize) -> Vec<(u32, f32)> {
        match self.kernel {
            Kernel::Simd => self.search_with(simd::l2_squared_f16, rows, owners, query, k),
            Kernel::Portable => self.search_with(portable::l2_squared_f16, rows, owners, query, k),
        }
    }

    fn search_with(
        &self,
        l2_squared_f16: impl Fn(&Embedding, &[u16]) -> f32,
        rows: &[f32],
        owners: &[u32],
        query: &Embedding,
        k: usize,
    ) -> Vec<(u32, f32)> {
        // Pass 1 (f16): every row that can still be within the k best identities once the
        // error bound is allowed for on both sides. A row of one of the true k best has
        // d16 <= d32 + eps <= D32_k + eps <= D16_k + 2 eps <= the bound at its turn.
        let slack = 2.0 * self.eps;
        let mut top = TopK::new(k);
        let mut bound2 = f32::INFINITY;
        let mut candidates: Vec<u32> = Vec::new();
        for (i, (row, owner)) in self.rows.chunks_exact(EMBEDDING_DIM).zip(owners).enumerate() {
            let d2 = l2_squared_f16(query, row);
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
        match self.kernel {
            Kernel::Simd => self.search_biased_with(simd::l2_squared_f16, rows, owners, query, k, bias, max_distance),
            Kernel::Portable => {
                self.search_biased_with(portable::l2_squared_f16, rows, owners, query, k, bias, max_distance)
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // the public signature plus the kernel
    fn search_biased_with(
        &self,
        l2_squared_f16: impl Fn(&Embedding, &[u16]) -> f32,
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
            if top.offer(*owner, l2_squared_f16(query, row)) {
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

/// Scalar f16 conversions and distance (IEEE 754 binary16, round to nearest, ties to even).
mod portable {
    use crate::face::EMBEDDING_DIM;

    /// f32 to f16 bits, rounded as F16C rounds (to nearest, ties to even).
    pub fn to_f16(v: f32) -> u16 {
        let x = v.to_bits();
        let sign = ((x >> 16) & 0x8000) as u16;
        let exp = ((x >> 23) & 0xff) as i32;
        let man = x & 0x7f_ffff;
        if exp == 0xff {
            // Infinity or NaN (a quiet NaN stays a NaN).
            return sign | 0x7c00 | if man == 0 { 0 } else { 0x200 };
        }
        let e = exp - 127 + 15;
        if e >= 0x1f {
            return sign | 0x7c00;
        }
        // Keeps `value >> shift`, rounded to nearest, ties to even; a carry out of the
        // significand moves to the next exponent (or to infinity), as in the encoding.
        let round = |value: u32, shift: u32| -> u32 {
            let kept = value >> shift;
            let rest = value & ((1 << shift) - 1);
            let halfway = 1 << (shift - 1);
            kept + u32::from(rest > halfway || (rest == halfway && kept & 1 == 1))
        };
        if e <= 0 {
            // An f16 subnormal (unit 2^-24) or zero: below 2^-25 everything rounds to zero.
            if e < -10 {
                return sign;
            }
            return sign | round(man | 0x80_0000, (14 - e) as u32) as u16;
        }
        sign | round(((e as u32) << 23) | man, 13) as u16
    }

    pub fn to_f32(h: u16) -> f32 {
        let sign = u32::from(h & 0x8000) << 16;
        let exp = u32::from((h >> 10) & 0x1f);
        let man = u32::from(h & 0x3ff);
        match exp {
            0 => {
                let v = man as f32 * 2f32.powi(-24);
                if sign == 0 {
                    v
                } else {
                    -v
                }
            }
            0x1f => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
            _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
        }
    }

    pub fn l2_squared_f16(q: &[f32; EMBEDDING_DIM], row: &[u16]) -> f32 {
        if row.len() < EMBEDDING_DIM {
            return f32::INFINITY;
        }
        q.iter().zip(row).map(|(a, h)| (a - to_f32(*h)).powi(2)).sum()
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

/// Every kernel this machine can run, each over `rows`: the portable one always, the SIMD
/// one when the CPU has the features (and then it must be used: a CPU with them whose
/// `HalfRows::new` refuses plain embeddings is a failure, not a skip).
#[cfg(test)]
pub(crate) fn test_kernels(rows: &[f32]) -> Vec<(&'static str, HalfRows)> {
    let mut kernels = vec![("portable", HalfRows::portable(rows).expect("rows that fit f16"))];
    match HalfRows::new(rows) {
        Some(h) => kernels.push(("simd", h)),
        None => assert!(!simd::supported(), "the CPU has AVX2/FMA/F16C but the SIMD scan was refused"),
    }
    kernels
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
        let mut base = rows(3000, 7);
        let owners: Vec<u32> = (0..3000u32).map(|i| i / 3).collect();
        let mut queries = rows(50, 99);
        // Near-ties: copies of query 0 moved by less than f16's resolution, the nearest
        // scanned first; and copies of query 1 that are one and the same row in f16 (its
        // first component an f16 value, moved by less than half its step), the nearest
        // scanned last: only the candidate bound keeps it, a row whose f16 distance merely
        // ties the best so far must still reach the f32 pass.
        queries[EMBEDDING_DIM] = portable::to_f32(portable::to_f16(0.1));
        for j in 0..20 {
            for d in 0..EMBEDDING_DIM {
                base[(2000 + j) * EMBEDDING_DIM + d] = queries[d] + (j as f32) * 1e-6;
                let moved = if d == 0 { (19 - j) as f32 * 1e-6 } else { 0.0 };
                base[(2100 + j) * EMBEDDING_DIM + d] = queries[EMBEDDING_DIM + d] + moved;
            }
        }
        let kernels = test_kernels(&base);
        let mut compared = 0;
        for (kernel, half) in &kernels {
            for q in queries.chunks_exact(EMBEDDING_DIM) {
                let q: &Embedding = q.try_into().unwrap();
                for k in [1, 3, 10] {
                    let want = exact::search(&base, &owners, q, k);
                    let got = half.search(&base, &owners, q, k);
                    assert_eq!(want.len(), k, "the f32 scan found {k} identities");
                    assert_eq!(got, want, "{kernel}, k={k}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, kernels.len() * 50 * 3, "every query compared");
    }

    /// The scalar conversion gives IEEE 754 binary16 bits, rounded to nearest, ties to even
    /// (values checked by hand), and, where the CPU has F16C, the same bits as F16C.
    #[test]
    fn portable_f16_rounds_as_f16c_does() {
        let cases: [(f32, u16); 14] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (1.0 + 2f32.powi(-11), 0x3c00),       // a tie: to the even significand
            (1.0 + 3.0 * 2f32.powi(-11), 0x3c02), // a tie: up, to the even one
            (1.0 + 2f32.powi(-11) + 2f32.powi(-20), 0x3c01), // just above a tie
            (2f32.powi(-14), 0x0400),             // the smallest normal
            (2f32.powi(-24), 0x0001),             // the smallest subnormal
            (2f32.powi(-25), 0x0000),             // a tie with zero: to zero
            (3.0 * 2f32.powi(-25), 0x0002),       // a tie between 1 and 2 units: to 2
            (2f32.powi(-14) - 2f32.powi(-26), 0x0400), // a subnormal rounding up into the normals
            (1e-9, 0x0000),
        ];
        for (v, bits) in cases {
            assert_eq!(portable::to_f16(v), bits, "{v:e}");
        }
        assert_eq!(portable::to_f32(0x3c01), 1.0 + 2f32.powi(-10));
        assert_eq!(portable::to_f32(0x8001), -(2f32.powi(-24)));
        // Every finite f16 survives the way to f32 and back.
        let finite = (0..=u16::MAX).filter(|h| h & 0x7c00 != 0x7c00);
        assert!(finite.clone().all(|h| portable::to_f16(portable::to_f32(h)) == h));
        if simd::supported() {
            // f32 patterns across the exponents an f16 holds or rounds to (ties, the float
            // just below and just above each), both signs, and embedding components.
            let mut values: Vec<f32> = (0x3000_0000u32..0x4780_0000)
                .step_by(0x800)
                .flat_map(|b| [b - 1, b, b + 1])
                .map(f32::from_bits)
                .flat_map(|v| [v, -v])
                .collect();
            values.extend(rows(500, 3));
            values.truncate(values.len() / 8 * 8);
            let hardware = simd::to_f16(&values).expect("F16C");
            assert_eq!(hardware.len(), values.len());
            let mut differ = 0;
            for (v, h) in values.iter().zip(&hardware) {
                differ += usize::from(portable::to_f16(*v) != *h);
            }
            assert!(values.len() > 1_000_000, "{} values compared", values.len());
            assert_eq!(differ, 0, "of {} values, {differ} convert differently", values.len());
        }
    }

    #[test]
    fn refuses_values_f16_cannot_hold() {
        let mut r = rows(4, 3);
        r[5] = 1e6;
        assert!(HalfRows::portable(&r).is_none());
        assert!(HalfRows::new(&r).is_none());
        r[5] = f32::NAN;
        assert!(HalfRows::portable(&r).is_none());
        assert!(HalfRows::new(&r).is_none());
    }
}
