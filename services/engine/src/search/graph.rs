//! The HNSW graph flattened for searching.
//!
//! hnsw_rs builds and stores the graph well, but its search allocates per visited point
//! (Arc, HashMap of visited ids) and takes a lock per neighbour list: at 1M faces that, and
//! not the distance arithmetic, is most of a query. The same graph copied into flat arrays
//! (row ids, as in the gallery) is searched here with the standard HNSW procedure, over the
//! gallery's own rows, with a reusable visited set and neighbour prefetching.

use super::exact::l2_squared;
use crate::face::{Embedding, EMBEDDING_DIM};
use anndists::dist::DistL2;
use hnsw_rs::hnsw::Hnsw;
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

pub struct FlatGraph {
    /// Layer 0: the neighbours of row `i` are `links0[offsets0[i]..offsets0[i + 1]]`.
    offsets0: Vec<u32>,
    links0: Vec<u32>,
    /// Layers 1.. (few rows each): row -> neighbours, `upper[l - 1]` for layer `l`.
    upper: Vec<HashMap<u32, Box<[u32]>>>,
    entry: u32,
}

/// A distance ordered for heaps (distances are finite: the rows are validated).
#[derive(Clone, Copy, PartialEq)]
struct Dist(f32);

impl Eq for Dist {}

impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dist {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Visited marks reused across queries on one thread: a mark equal to the current
/// generation means "seen in this query", so nothing is cleared between queries.
struct Visited {
    marks: Vec<u32>,
    generation: u32,
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), generation: 0 }) };
}

impl FlatGraph {
    /// Copies the links of hnsw_rs's graph over `n` rows (data ids = row numbers).
    pub fn from_hnsw(graph: &Hnsw<'_, f32, DistL2>, n: usize) -> Self {
        let mut lists0: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut upper: Vec<HashMap<u32, Box<[u32]>>> = Vec::new();
        let (mut entry, mut top): (Option<u32>, usize) = (None, 0);
        for point in graph.get_point_indexation() {
            let row = point.get_origin_id();
            if row >= n {
                continue;
            }
            let level = usize::from(point.get_point_id().0);
            if entry.is_none() || level > top {
                top = level;
                entry = Some(row as u32);
            }
            for (layer, neighbours) in point.get_neighborhood_id().into_iter().enumerate() {
                let ids: Vec<u32> = neighbours.iter().filter(|nb| nb.d_id < n).map(|nb| nb.d_id as u32).collect();
                if layer == 0 {
                    lists0[row] = ids;
                } else {
                    if upper.len() < layer {
                        upper.resize_with(layer, HashMap::new);
                    }
                    upper[layer - 1].insert(row as u32, ids.into_boxed_slice());
                }
            }
        }
        upper.truncate(top);
        let mut offsets0 = Vec::with_capacity(n + 1);
        let mut links0 = Vec::with_capacity(lists0.iter().map(Vec::len).sum());
        offsets0.push(0u32);
        for list in lists0 {
            links0.extend_from_slice(&list);
            offsets0.push(links0.len() as u32);
        }
        Self { offsets0, links0, upper, entry: entry.unwrap_or(0) }
    }

    /// Rows in the graph.
    pub fn rows(&self) -> usize {
        self.offsets0.len().saturating_sub(1)
    }

    pub fn bytes(&self) -> usize {
        self.offsets0.len() * 4
            + self.links0.len() * 4
            + self.upper.iter().map(|l| l.values().map(|v| v.len() * 4 + 16).sum::<usize>()).sum::<usize>()
    }

    fn neighbours0(&self, row: u32) -> &[u32] {
        let i = row as usize;
        match (self.offsets0.get(i), self.offsets0.get(i + 1)) {
            (Some(&a), Some(&b)) => self.links0.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The `ef` nearest rows found (squared distance, row), nearest first.
    pub fn search(&self, rows: &[f32], query: &Embedding, ef: usize) -> Vec<(f32, u32)> {
        let n = self.rows();
        if n == 0 || rows.len() < n * EMBEDDING_DIM {
            return Vec::new();
        }
        let dist = |row: u32| {
            let i = row as usize * EMBEDDING_DIM;
            l2_squared(query, &rows[i..i + EMBEDDING_DIM])
        };
        // Greedy descent through the upper layers.
        let (mut cur, mut d_cur) = (self.entry, dist(self.entry));
        for layer in self.upper.iter().rev() {
            loop {
                let mut moved = false;
                for &nb in layer.get(&cur).map_or(&[][..], |v| &v[..]) {
                    let d = dist(nb);
                    if d < d_cur {
                        (cur, d_cur) = (nb, d);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        // Best-first search of layer 0 with a candidate list of `ef`.
        let ef = ef.max(1);
        VISITED.with(|cell| {
            let mut visited = cell.borrow_mut();
            if visited.marks.len() < n {
                visited.marks = vec![0; n];
                visited.generation = 0;
            }
            if visited.generation == u32::MAX {
                visited.marks.iter_mut().for_each(|m| *m = 0);
                visited.generation = 0;
            }
            visited.generation += 1;
            let generation = visited.generation;
            let marks = &mut visited.marks;
            marks[cur as usize] = generation;
            let mut candidates = BinaryHeap::with_capacity(ef * 2);
            let mut best: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(ef + 1);
            candidates.push(Reverse((Dist(d_cur), cur)));
            best.push((Dist(d_cur), cur));
            let mut fresh: Vec<u32> = Vec::with_capacity(64);
            while let Some(Reverse((Dist(d), c))) = candidates.pop() {
                if best.len() >= ef && best.peek().is_some_and(|w| d > w.0 .0) {
                    break;
                }
                // Mark and prefetch the unseen neighbours first, then measure them: the
                // rows' cache misses overlap instead of following one another.
                fresh.clear();
                for &nb in self.neighbours0(c) {
                    if let Some(m) = marks.get_mut(nb as usize) {
                        if *m != generation {
                            *m = generation;
                            fresh.push(nb);
                            prefetch_row(rows, nb);
                        }
                    }
                }
                for &nb in &fresh {
                    let d = dist(nb);
                    if best.len() < ef || best.peek().is_some_and(|w| d < w.0 .0) {
                        candidates.push(Reverse((Dist(d), nb)));
                        best.push((Dist(d), nb));
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
            let mut out: Vec<(f32, u32)> = best.into_iter().map(|(d, r)| (d.0, r)).collect();
            out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            out
        })
    }
}

#[inline]
fn prefetch_row(rows: &[f32], row: u32) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let i = row as usize * EMBEDDING_DIM;
        if let Some(r) = rows.get(i..i + EMBEDDING_DIM) {
            // A 128-float row is 512 bytes: 8 cache lines.
            for line in r.chunks(16) {
                // SAFETY: a prefetch is a hint; it never faults, and the address is in bounds.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast::<i8>()) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (rows, row);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::exact;
    use crate::search::hnsw::{HnswIndex, HnswParams};

    #[test]
    fn finds_what_the_exact_scan_finds() {
        let n = 3000;
        let rows = crate::search::test_rows(n, 5, 0.2);
        let owners: Vec<u32> = (0..n as u32).collect();
        let index = HnswIndex::build(&rows, HnswParams { m: 16, ef_construction: 100, ef_search: 64 });
        let queries = crate::search::test_rows(100, 77, 0.2);
        let (mut agree_ef64, mut agree_all) = (0, 0);
        for q in queries.chunks_exact(EMBEDDING_DIM) {
            let q: &Embedding = q.try_into().unwrap();
            let want = exact::search(&rows, &owners, q, 1)[0];
            let got = index.search(&rows, &owners, q, 1, Some(64))[0];
            agree_ef64 += usize::from(got.0 == want.0);
            // With ef = n the best-first search visits the whole (connected) graph: exact.
            let all = index.search(&rows, &owners, q, 1, Some(n))[0];
            agree_all += usize::from(all.0 == want.0 && (all.1 - want.1).abs() < 1e-5);
        }
        assert_eq!(agree_all, 100);
        assert!(agree_ef64 >= 95, "recall@1 at ef 64: {agree_ef64}/100");
    }

    #[test]
    fn answers_nothing_for_rows_it_was_not_built_over() {
        let rows = crate::search::test_rows(50, 1, 0.2);
        let index = HnswIndex::build(&rows, HnswParams { m: 8, ef_construction: 32, ef_search: 16 });
        let q = [0f32; EMBEDDING_DIM];
        assert!(index.search(&rows[..10 * EMBEDDING_DIM], &(0..50).collect::<Vec<u32>>(), &q, 1, None).is_empty());
    }
}
