//! What changed between two galleries, identity by identity (matched by alias): who was
//! added, who was removed, and for whom what changed (name, role, photos, embeddings,
//! thumbnail, credits), so that an operator can read a refresh before rolling it out.

use super::{Gallery, Identity};
use crate::face::EMBEDDING_DIM;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize, PartialEq)]
pub struct Person {
    pub alias: String,
    pub name: String,
    pub photos: u32,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Change {
    pub alias: String,
    pub name: String,
    /// What differs: "name", "role", "n_movies", "photos", "embeddings", "thumbnail", "credits".
    pub what: Vec<&'static str>,
    pub photos_before: u32,
    pub photos_after: u32,
    /// Distance between the identity's mean embedding before and after.
    pub moved: f32,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct GalleryDiff {
    pub old_version: String,
    pub new_version: String,
    pub added: Vec<Person>,
    pub removed: Vec<Person>,
    pub changed: Vec<Change>,
    pub unchanged: usize,
}

/// Each identity's rows, by identity index.
fn rows_by_identity(g: &Gallery) -> Vec<Vec<&[f32]>> {
    let mut out = vec![Vec::new(); g.identities.len()];
    for (row, owner) in g.rows().chunks_exact(EMBEDDING_DIM).zip(g.owners()) {
        if let Some(list) = out.get_mut(*owner as usize) {
            list.push(row);
        }
    }
    out
}

fn mean(rows: &[&[f32]]) -> Vec<f32> {
    let mut m = vec![0f32; EMBEDDING_DIM];
    for r in rows {
        m.iter_mut().zip(r.iter()).for_each(|(a, b)| *a += b);
    }
    m.iter_mut().for_each(|a| *a /= rows.len().max(1) as f32);
    m
}

fn person(i: &Identity) -> Person {
    Person { alias: i.alias.clone(), name: i.name.clone(), photos: i.photo_count }
}

pub fn diff(old: &Gallery, new: &Gallery) -> GalleryDiff {
    let (old_rows, new_rows) = (rows_by_identity(old), rows_by_identity(new));
    let index = |g: &Gallery| -> BTreeMap<String, usize> {
        g.identities.iter().enumerate().map(|(i, id)| (id.alias.clone(), i)).collect()
    };
    let (before, after) = (index(old), index(new));
    let mut d = GalleryDiff {
        old_version: old.version.clone(),
        new_version: new.version.clone(),
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        unchanged: 0,
    };
    for (alias, &i) in &before {
        if !after.contains_key(alias) {
            d.removed.push(person(&old.identities[i]));
        }
    }
    for (alias, &j) in &after {
        let b = &new.identities[j];
        let Some(&i) = before.get(alias) else {
            d.added.push(person(b));
            continue;
        };
        let a = &old.identities[i];
        let mut what = Vec::new();
        if a.name != b.name {
            what.push("name");
        }
        if a.role != b.role {
            what.push("role");
        }
        if a.n_movies != b.n_movies {
            what.push("n_movies");
        }
        if a.photo_count != b.photo_count {
            what.push("photos");
        }
        if old_rows[i] != new_rows[j] {
            what.push("embeddings");
        }
        if a.thumbnail_jpeg != b.thumbnail_jpeg {
            what.push("thumbnail");
        }
        if a.credits != b.credits {
            what.push("credits");
        }
        if what.is_empty() {
            d.unchanged += 1;
            continue;
        }
        let (ma, mb) = (mean(&old_rows[i]), mean(&new_rows[j]));
        let moved = ma.iter().zip(&mb).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
        d.changed.push(Change {
            alias: alias.clone(),
            name: b.name.clone(),
            what,
            photos_before: a.photo_count,
            photos_after: b.photo_count,
            moved,
        });
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::{BuildInfo, PhotoCredit};
    use crate::search::test_rows;

    fn identity(alias: &str, photos: u32) -> Identity {
        Identity {
            name: alias.to_uppercase(),
            alias: alias.into(),
            role: String::new(),
            n_movies: 0,
            photo_count: photos,
            thumbnail_jpeg: vec![1],
            credits: Vec::new(),
        }
    }

    fn gallery(people: Vec<(Identity, Vec<f32>)>) -> Gallery {
        let mut ids = Vec::new();
        let (mut rows, mut owners) = (Vec::new(), Vec::new());
        for (i, (id, r)) in people.into_iter().enumerate() {
            for row in r.chunks_exact(EMBEDDING_DIM) {
                rows.extend_from_slice(row);
                owners.push(i as u32);
            }
            ids.push(id);
        }
        Gallery::new(ids, rows, owners, None, BuildInfo::default()).expect("gallery")
    }

    #[test]
    fn added_removed_and_changed_by_alias() {
        let r = |seed| test_rows(1, seed, 1.0);
        let old = gallery(vec![
            (identity("a", 1), r(1)),
            (identity("b", 1), r(2)),
            (identity("c", 1), r(3)),
            (identity("d", 1), r(4)),
        ]);
        let mut credited = identity("d", 1);
        credited.credits = vec![PhotoCredit { author: "X".into(), ..Default::default() }];
        let two = [r(3), r(30)].concat();
        let new = gallery(vec![
            (identity("d", 1), r(4)), // order does not matter
            (identity("c", 2), two),
            (identity("a", 1), r(1)),
            (identity("e", 1), r(5)),
        ]);
        let d = diff(&old, &new);
        assert_eq!(d.added, vec![Person { alias: "e".into(), name: "E".into(), photos: 1 }]);
        assert_eq!(d.removed, vec![Person { alias: "b".into(), name: "B".into(), photos: 1 }]);
        assert_eq!(d.changed.len(), 1, "{:?}", d.changed);
        assert_eq!(d.changed[0].alias, "c");
        assert_eq!(d.changed[0].what, vec!["photos", "embeddings"]);
        assert!(d.changed[0].moved > 0.0);
        assert_eq!(d.unchanged, 2);
        let with_credit = gallery(vec![(identity("a", 1), r(1)), (credited, r(4))]);
        let d = diff(&old, &with_credit);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].what, vec!["credits"]);
        assert_eq!(d.removed.len(), 2);
    }
}
