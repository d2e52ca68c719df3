//! Exact nearest-identity search over a flat, row-major f32 matrix.

use super::{BiasedTopK, TopK};
use crate::face::{Embedding, EMBEDDING_DIM};

/// Squared Euclidean distance, written with independent accumulators so that the compiler
/// turns it into SIMD (a naive `zip().map().sum()` is ~5x slower: the float additions
/// cannot be reordered).
#[inline]
pub fn l2_squared(a: &[f32; EMBEDDING_DIM], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            let d = ca[i] - cb[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum()
}

/// Best `k` identities by `distance - bias[identity]` (the crowding correction), as
/// (identity, plain distance), best first; rows farther than `max_distance` do not take part
/// (filtering after ranking could let an over-limit identity take a qualifying one's place).
pub fn search_biased(
    rows: &[f32],
    owners: &[u32],
    query: &Embedding,
    k: usize,
    bias: &[f32],
    max_distance: f32,
) -> Vec<(u32, f32)> {
    let mut top = BiasedTopK::new(k, bias, 0.0, max_distance);
    for (row, owner) in rows.chunks_exact(EMBEDDING_DIM).zip(owners) {
        top.offer(*owner, l2_squared(query, row));
    }
    top.into_distances()
}

/// Best `k` distinct identities for `query`: each identity's distance is that of its
/// closest row. `owners[row]` is the identity of each row.
pub fn search(rows: &[f32], owners: &[u32], query: &Embedding, k: usize) -> Vec<(u32, f32)> {
    let mut top = TopK::new(k);
    for (row, owner) in rows.chunks_exact(EMBEDDING_DIM).zip(owners) {
        let d = l2_squared(query, row);
        if d < top.worst() {
            top.offer(*owner, d);
        }
    }
    top.into_distances()
}
