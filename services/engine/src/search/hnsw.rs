//! Approximate search with `hnsw_rs` for galleries too large for a linear scan, and its
//! (de)serialisation into the gallery file.

use super::graph::FlatGraph;
use super::TopK;
use crate::face::{Embedding, EMBEDDING_DIM};
use anndists::dist::DistL2;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct HnswParams {
    /// Links per node (hnsw_rs caps at 256); 16 is plenty for 128-d face embeddings.
    pub m: usize,
    pub ef_construction: usize,
    /// Candidate list size at query time (higher: better recall, slower).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { m: 24, ef_construction: 200, ef_search: 200 }
    }
}

/// hnsw_rs's graph (built here, stored in the gallery file) and its flat copy, which the
/// queries use (see `graph`). An index loaded from a file keeps only the flat copy:
/// hnsw_rs's structures (its own copy of the vectors, an Arc per point, 24 bytes per link)
/// take about 2.5 GB at 1M faces and are needed only to write the file again.
pub struct HnswIndex {
    graph: Option<Hnsw<'static, f32, DistL2>>,
    flat: FlatGraph,
    pub params: HnswParams,
}

impl HnswIndex {
    /// Builds the graph over `rows` (row id = position), in parallel.
    pub fn build(rows: &[f32], params: HnswParams) -> Self {
        let n = rows.len() / EMBEDDING_DIM;
        // hnsw_rs can only dump graphs built with its maximum layer count.
        let layers = 16;
        let graph = Hnsw::<f32, DistL2>::new(params.m, n.max(1), layers, params.ef_construction, DistL2 {});
        let data: Vec<(&[f32], usize)> = rows.chunks_exact(EMBEDDING_DIM).enumerate().map(|(i, r)| (r, i)).collect();
        graph.parallel_insert_slice(&data);
        let mut graph = graph;
        graph.set_searching_mode(true);
        let flat = FlatGraph::from_hnsw(&graph, n);
        Self { graph: Some(graph), flat, params }
    }

    pub fn len(&self) -> usize {
        self.flat.rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory of the flat search graph (hnsw_rs's own structures come on top).
    pub fn flat_bytes(&self) -> usize {
        self.flat.bytes()
    }

    /// Best `k` distinct identities among `rows` (the rows the index was built over). The
    /// graph returns rows and one identity may own many (LFW has people with hundreds of
    /// photos): every row the search returns (`ef` of them, at least 4k) is used, and the
    /// search is widened (2x) only when they hold fewer than `k` identities. A graph search
    /// reaches only what is linked to its entry point (a parallel build can leave a far,
    /// small cluster unreachable), so when even `ef` = every row falls short, or does not
    /// reach every row (one left out may be among the best), the exact scan answers.
    pub fn search(
        &self,
        rows: &[f32],
        owners: &[u32],
        query: &Embedding,
        k: usize,
        ef: Option<usize>,
    ) -> Vec<(u32, f32)> {
        let total = self.len();
        let mut ef = ef.unwrap_or(self.params.ef_search).max(k * 4).max(16).min(total.max(1));
        loop {
            let hits = self.flat.search(rows, query, ef);
            // With `ef` = every row, the walk returns every row it reaches.
            let unreached = ef >= total && hits.len() < total;
            let mut top = TopK::new(k);
            for (d2, row) in hits {
                if let Some(owner) = owners.get(row as usize) {
                    top.offer(*owner, d2);
                }
            }
            if top.len() >= k && !unreached {
                return top.into_distances();
            }
            if ef >= total {
                // Rows that are not the ones the index was built over get no answer at all.
                let same_rows = rows.len() == total * EMBEDDING_DIM && owners.len() == total;
                return if same_rows { super::exact::search(rows, owners, query, k) } else { top.into_distances() };
            }
            ef = (ef * 2).min(total);
        }
    }

    /// Serialises the graph (hnsw_rs dumps to two files; we keep their bytes).
    pub fn to_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let graph = self.graph.as_ref().ok_or("this HNSW index was loaded for serving only; rebuild it to save it")?;
        let base = graph.file_dump(dir.path(), "index").map_err(|e| format!("HNSW dump failed: {e}"))?;
        let graph = std::fs::read(dir.path().join(format!("{base}.hnsw.graph"))).map_err(|e| e.to_string())?;
        let data = std::fs::read(dir.path().join(format!("{base}.hnsw.data"))).map_err(|e| e.to_string())?;
        Ok((graph, data))
    }

    pub fn from_bytes(graph: &[u8], data: &[u8], params: HnswParams) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        std::fs::write(dir.path().join("index.hnsw.graph"), graph).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("index.hnsw.data"), data).map_err(|e| e.to_string())?;
        // hnsw_rs ties the loaded graph's lifetime to its loader even when the data is
        // copied into memory (no mmap, as here); the loader is a few hundred bytes and one
        // is leaked per gallery load.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir.path(), "index")));
        let mut graph: Hnsw<'static, f32, DistL2> =
            io.load_hnsw::<f32, DistL2>().map_err(|e| format!("HNSW index is unreadable: {e}"))?;
        graph.set_searching_mode(true);
        let flat = FlatGraph::from_hnsw(&graph, graph.get_nb_point());
        Ok(Self { graph: None, flat, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::exact;

    #[test]
    fn finds_k_identities_when_one_identity_owns_the_nearest_rows() {
        // Identity 0 owns 200 rows packed around the query; 50 other identities own one row
        // each, farther away along one direction, identity i at 0.5 + i/20 (so the order is
        // clear and the graph can walk it; random far rows in 128-d are all about equally
        // far and their order would vary with the parallel build). Asking the graph for
        // 4k rows would return identity 0 only; and some parallel builds leave the far rows
        // unreachable from the entry point (1 run in ~20), where the exact scan must answer.
        let mut rows = crate::search::test_rows(250, 1, 0.01);
        for (i, row) in rows.chunks_exact_mut(EMBEDDING_DIM).skip(200).enumerate() {
            row[0] += 0.5 + i as f32 / 20.0;
        }
        let owners: Vec<u32> = std::iter::repeat_n(0, 200).chain(1..=50).collect();
        let index = HnswIndex::build(&rows, HnswParams { m: 16, ef_construction: 100, ef_search: 32 });
        let query = [0f32; EMBEDDING_DIM];
        let got = index.search(&rows, &owners, &query, 5, None);
        assert_eq!(got.len(), 5, "{got:?}");
        let want = exact::search(&rows, &owners, &query, 5);
        assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), want.iter().map(|x| x.0).collect::<Vec<_>>());

        // Stored and loaded: the same answers; the loaded copy serves but cannot be saved.
        let (graph, data) = index.to_bytes().unwrap();
        let loaded = HnswIndex::from_bytes(&graph, &data, index.params).unwrap();
        assert_eq!(loaded.len(), 250);
        assert_eq!(loaded.search(&rows, &owners, &query, 5, None), got);
        assert!(loaded.to_bytes().unwrap_err().contains("rebuild"));
    }
}
