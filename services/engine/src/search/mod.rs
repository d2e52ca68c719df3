//! Nearest-identity search: exact (a vectorised linear scan, exact and faster up to tens of
//! thousands of embeddings) or HNSW (approximate, sub-linear).

pub mod crowding;
pub mod exact;
pub mod graph;
pub mod half;
pub mod hnsw;

/// The `k` smallest distances with at most one entry per identity.
pub(crate) struct TopK {
    k: usize,
    items: Vec<(u32, f32)>,
    /// Cached entry threshold: the scan asks for it once per row.
    worst: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self { k: k.max(1), items: Vec::with_capacity(k.max(1) + 1), worst: f32::INFINITY }
    }

    /// Identities held (at most `k`).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Distance a new candidate must beat to enter.
    #[inline]
    pub fn worst(&self) -> f32 {
        self.worst
    }

    fn refresh_worst(&mut self) {
        self.worst = if self.items.len() < self.k {
            f32::INFINITY
        } else {
            self.items.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max)
        };
    }

    pub fn offer(&mut self, id: u32, d: f32) {
        if let Some(slot) = self.items.iter_mut().find(|x| x.0 == id) {
            if d < slot.1 {
                slot.1 = d;
                self.refresh_worst();
            }
            return;
        }
        if self.items.len() < self.k {
            self.items.push((id, d));
        } else if let Some((i, _)) =
            self.items.iter().enumerate().max_by(|a, b| a.1 .1.total_cmp(&b.1 .1)).filter(|(_, w)| d < w.1)
        {
            self.items[i] = (id, d);
        }
        self.refresh_worst();
    }

    /// For a TopK fed squared distances: (identity, distance), nearest first.
    pub fn into_distances(self) -> Vec<(u32, f32)> {
        self.into_sorted().into_iter().map(|(id, d2)| (id, d2.sqrt())).collect()
    }

    pub fn into_sorted(mut self) -> Vec<(u32, f32)> {
        self.items.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        self.items
    }
}

/// The best `k` identities by `distance - bias[identity]` (the crowding correction), fed
/// squared distances one row at a time; the scans in `exact` and `half` share it.
pub(crate) struct BiasedTopK<'a> {
    top: TopK,
    bias: &'a [f32],
    max_bias: f32,
    /// How far above the current k-th score a row still counts as a candidate (the f16
    /// pass's error bound; 0 for an exact pass).
    slack: f32,
    /// Squared distance beyond which no row can come within `slack` of entering: those
    /// rows cost no square root.
    reach2: f32,
    /// Squared `max_distance`: farther rows do not take part.
    limit2: f32,
}

impl<'a> BiasedTopK<'a> {
    pub fn new(k: usize, bias: &'a [f32], slack: f32, max_distance: f32) -> Self {
        let limit2 = if max_distance.is_finite() { max_distance.max(0.0).powi(2) } else { f32::INFINITY };
        let max_bias = bias.iter().copied().fold(0f32, f32::max);
        Self { top: TopK::new(k), bias, max_bias, slack, reach2: f32::INFINITY, limit2 }
    }

    fn bias_of(&self, owner: u32) -> f32 {
        self.bias.get(owner as usize).copied().unwrap_or(0.0)
    }

    /// Offers a row at squared distance `d2`; true when it is within `slack` of the k best
    /// (a candidate for an exact re-check).
    #[inline]
    pub fn offer(&mut self, owner: u32, d2: f32) -> bool {
        if d2 > self.reach2 || d2 > self.limit2 {
            return false;
        }
        let score = d2.sqrt() - self.bias_of(owner);
        if score > self.top.worst() + self.slack {
            return false;
        }
        if score < self.top.worst() {
            self.top.offer(owner, score);
            let worst = self.top.worst();
            if worst.is_finite() {
                self.reach2 = (worst + self.slack + self.max_bias).max(0.0).powi(2);
            }
        }
        true
    }

    /// (identity, plain distance), best score first.
    pub fn into_distances(self) -> Vec<(u32, f32)> {
        let bias = self.bias;
        let bias_of = |id: u32| bias.get(id as usize).copied().unwrap_or(0.0);
        self.top.into_sorted().into_iter().map(|(id, score)| (id, score + bias_of(id))).collect()
    }
}

/// Deterministic pseudo-random rows (components uniform in ±scale/2) for the search tests.
#[cfg(test)]
pub(crate) fn test_rows(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n * crate::face::EMBEDDING_DIM)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * scale
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::TopK;

    #[test]
    fn keeps_best_distance_per_identity() {
        let mut t = TopK::new(2);
        for (id, d) in [(1, 0.9), (2, 0.5), (1, 0.3), (3, 0.4), (2, 0.45)] {
            t.offer(id, d);
        }
        assert_eq!(t.into_sorted(), vec![(1, 0.3), (3, 0.4)]);
    }
}
