//! The gallery self-check: before a gallery serves (at start-up or on a reload), a few of
//! its own stored embeddings are searched through the same path a request takes
//! ([`Gallery::search`]: the prepared index, the f16 rows, the crowding correction) and each
//! must come back top-1 as the identity that owns it.
//!
//! Probes: up to [`PROBES`] identities spread evenly over the identity table (indices
//! `i * n / PROBES`), the first stored row of each. They are fixed by the file, so every
//! pod (and the pipeline's verify step) reaches the same verdict on the same file, and no
//! file format change is needed.
//!
//! Why top-1 with no tolerance is robust: a probe is a stored row, at distance 0 from
//! itself. A sound gallery and search can only rank another identity first when that
//! identity holds an identical or nearly identical row (with the crowding correction: closer
//! than the difference of the two identities' corrections, a few hundredths), that is, when
//! the gallery cannot tell two of its people apart (two names given the same photos). A
//! broken search path (an index that does not match the rows, a wrong correction, a wrong
//! owner table) misses many probes. What it cannot see: rows consistently relabelled
//! (identity A's rows filed under B with B's name): the gallery's own rows carry their
//! owner with them, so such a swap is self-consistent; `matcher gallery diff` against the
//! previous version is the check for that.

use lookalike_engine::{Embedding, Gallery, EMBEDDING_DIM};

/// Identities probed per gallery (all of them in a smaller gallery).
pub const PROBES: usize = 16;

/// One probe that did not come back as its identity.
#[derive(Debug, Clone)]
pub struct Miss {
    pub identity: u32,
    pub name: String,
    /// What ranked first instead (None: nothing came back).
    pub got: Option<(u32, String, f32)>,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.got {
            Some((id, name, d)) => {
                write!(f, "#{} {:?} came back as #{id} {name:?} (distance {d:.3})", self.identity, self.name)
            }
            None => write!(f, "#{} {:?} came back empty", self.identity, self.name),
        }
    }
}

/// The gallery answered some of its own stored faces with another identity.
#[derive(Debug, thiserror::Error)]
#[error(
    "gallery {version} failed its self-check: {failed} of {probes} probe faces did not come back as their \
     identity: {list}",
    failed = misses.len(),
    list = misses.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct SelfCheckFailed {
    pub version: String,
    pub probes: usize,
    pub misses: Vec<Miss>,
}

/// The identities probed and the row each is probed with.
pub fn probes(g: &Gallery) -> Vec<(u32, usize)> {
    let n = g.identities.len();
    let count = n.min(PROBES);
    if count == 0 {
        return Vec::new();
    }
    let wanted: Vec<u32> = (0..count).map(|i| (i * n / count) as u32).collect();
    let mut first_row: Vec<Option<usize>> = vec![None; count];
    for (row, owner) in g.owners().iter().enumerate() {
        if let Ok(slot) = wanted.binary_search(owner) {
            first_row[slot].get_or_insert(row);
        }
    }
    wanted.into_iter().zip(first_row).filter_map(|(id, row)| Some((id, row?))).collect()
}

/// Runs the probes; Ok with the number checked.
pub fn check(g: &Gallery) -> Result<usize, SelfCheckFailed> {
    let probes = probes(g);
    let name = |id: u32| g.identity(id).map(|p| p.name.clone()).unwrap_or_default();
    let mut misses = Vec::new();
    for &(identity, row) in &probes {
        let mut query: Embedding = [0.0; EMBEDDING_DIM];
        let Some(stored) = g.rows().get(row * EMBEDDING_DIM..(row + 1) * EMBEDDING_DIM) else {
            misses.push(Miss { identity, name: name(identity), got: None });
            continue;
        };
        query.copy_from_slice(stored);
        let top = g.search(&query, 1, None).into_iter().next();
        if top.as_ref().is_none_or(|c| c.identity != identity) {
            let got = top.map(|c| (c.identity, name(c.identity), c.distance));
            misses.push(Miss { identity, name: name(identity), got });
        }
    }
    if misses.is_empty() {
        Ok(probes.len())
    } else {
        Err(SelfCheckFailed { version: g.version.clone(), probes: probes.len(), misses })
    }
}
