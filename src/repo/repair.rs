//! Repair: make every undamaged restore point usable again after objects were lost or
//! damaged, without ever deleting pack data.
//!
//! - Restore-point objects that cannot be read are set aside under `damaged/` (copied,
//!   then removed from `snapshots/`), so listing, retention and prune work again.
//!   Unreadable prune marks are set aside the same way (a mark only delays deletion).
//! - The index is rebuilt from the packs themselves: each pack's header, or, for a pack
//!   whose header is damaged, the entries an index file still has for it, each checked by
//!   reading the blob. Segments whose data is in no stored pack are left out, so no
//!   writer can reuse them. The new index files are written before the old ones
//!   (damaged ones included) are removed.
//! - The blobs restore points use in packs with a damaged header are moved to new packs
//!   (as prune's repack does) and those packs are marked, so a later prune removes them.
//!
//! A repair runs beside backups (with the same protocol as prune), never beside a prune.

use super::format::{self, BlobEntry, BlobKind, Id};
use super::{DamagedObject, RepoError, Repository, lock, prune};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RepairReport {
    /// Restore-point objects moved to `damaged/`.
    pub points_set_aside: Vec<DamagedObject>,
    pub marks_set_aside: u64,
    pub index_files_before: u64,
    pub index_files_damaged: u64,
    pub index_files_written: u64,
    pub packs_indexed: u64,
    /// Packs whose header is damaged; their blobs came from the old index.
    pub packs_with_damaged_header: Vec<String>,
    /// Packs that could not be indexed at all (damaged header, in no readable index).
    pub packs_unreadable: Vec<String>,
    /// Segment entries left out because their data is in no stored pack.
    pub segments_dropped: u64,
    /// Packs whose used blobs were moved to new packs.
    pub packs_repacked: u64,
}

/// Repairs the repository; see the module documentation.
pub fn run(repo: &Arc<Repository>) -> Result<RepairReport, RepoError> {
    let _lock = lock::acquire_sole(repo.backend().clone(), "repair")?;
    let mut report = RepairReport::default();

    for d in repo.points()?.damaged {
        set_aside(repo, &d.key)?;
        report.points_set_aside.push(d);
    }
    for key in prune::marks(repo)?.damaged {
        set_aside(repo, &key)?;
        report.marks_set_aside += 1;
    }

    let files = repo.index_files()?;
    let old = &files.entries;
    report.index_files_before = (files.read.len() + files.damaged.len()) as u64;
    report.index_files_damaged = files.damaged.len() as u64;
    let stored = repo.stored_packs()?;
    let mut fresh: BTreeMap<Id, Vec<BlobEntry>> = BTreeMap::new();
    let mut bad_header = HashSet::new();
    for (pack, size) in &stored {
        match super::pack::read_pack_header(repo, pack, *size) {
            Ok(entries) => {
                fresh.insert(*pack, entries);
            }
            Err(RepoError::Store(e)) if e.is_not_found() => {}
            Err(RepoError::Store(e)) => return Err(e.into()),
            Err(_) => {
                bad_header.insert(*pack);
                let checked = old.get(pack).map(|entries| readable_entries(repo, pack, entries)).transpose()?;
                match checked {
                    Some(entries) if !entries.is_empty() => {
                        report.packs_with_damaged_header.push(pack.hex());
                        fresh.insert(*pack, entries);
                    }
                    _ => report.packs_unreadable.push(pack.hex()),
                }
            }
        }
    }
    report.segments_dropped = drop_segments_without_data(repo, &mut fresh, &stored)?;
    report.packs_indexed = fresh.len() as u64;

    // The new index, then the old files go (damaged ones too).
    let all: Vec<(Id, Vec<BlobEntry>)> = fresh.iter().map(|(p, e)| (*p, e.clone())).collect();
    let old_keys: Vec<String> = files.read.iter().chain(&files.damaged).cloned().collect();
    report.index_files_written = repo.replace_index(&all, &old_keys)? as u64;

    // Move what points use out of packs with a damaged header.
    repo.load_index(&HashSet::new())?;
    let mut u = prune::Usage::default();
    let mut seen = HashSet::new();
    for (id, snap) in repo.points()?.good {
        if let Err(e) = prune::mark_snapshot(repo, &snap, &mut seen, &mut u) {
            tracing::warn!(point = %id.short(), error = %e, "restore point stays damaged");
        }
    }
    let used_bad: HashSet<Id> = bad_header.iter().copied().filter(|p| u.packs.contains_key(p)).collect();
    if !bad_header.is_empty() {
        let mut packs: Vec<Id> = bad_header.iter().copied().collect();
        packs.sort();
        prune::write_mark(repo, packs)?;
    }
    if !used_bad.is_empty() {
        // A data pack in no readable index: its used blobs are known from the recipes.
        for (id, loc) in u.segment_chunks() {
            if used_bad.contains(&loc.pack) {
                let list = fresh.entry(loc.pack).or_default();
                if !list.iter().any(|e| e.id == id && e.loc.offset == loc.offset) {
                    list.push(BlobEntry { kind: BlobKind::Chunk, id, loc });
                }
            }
        }
        let repacked = prune::repack(repo, &u, &fresh, &used_bad)?;
        report.packs_repacked = repacked.emptied.len() as u64;
        prune::rewrite_index_without(repo, &HashSet::new(), &repacked.replaced)?;
    }
    Ok(report)
}

/// Copies an object to `damaged/<key>` and removes it.
fn set_aside(repo: &Repository, key: &str) -> Result<(), RepoError> {
    let backend = repo.backend();
    let raw = match backend.get(key) {
        Ok(raw) => raw,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match backend.put_new(&format!("damaged/{key}"), raw) {
        Ok(()) | Err(crate::store::StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    backend.flush()?;
    backend.delete(key)?;
    Ok(())
}

/// The entries of a pack whose header is damaged that still read back correctly.
fn readable_entries(repo: &Repository, pack: &Id, entries: &[BlobEntry]) -> Result<Vec<BlobEntry>, RepoError> {
    let data = repo.backend().get(&format::pack_key(pack))?;
    Ok(entries
        .iter()
        .filter(|e| {
            data.get(e.loc.offset as usize..(e.loc.offset + e.loc.stored_len) as usize)
                .is_some_and(|sealed| repo.decode_blob(e.kind, &e.id, &e.loc, sealed).is_ok())
        })
        .copied()
        .collect())
}

/// Leaves out segment entries whose chunks point into packs that are not stored (a run
/// interrupted before its data was uploaded, or a lost pack): a writer would otherwise
/// reuse them by id. Returns how many.
fn drop_segments_without_data(
    repo: &Repository,
    fresh: &mut BTreeMap<Id, Vec<BlobEntry>>,
    stored: &HashMap<Id, u64>,
) -> Result<u64, RepoError> {
    let mut dropped = 0;
    for (pack, entries) in fresh.iter_mut() {
        if !entries.iter().any(|e| e.kind == BlobKind::Segment) {
            continue;
        }
        let data = repo.backend().get(&format::pack_key(pack))?;
        entries.retain(|e| {
            if e.kind != BlobKind::Segment {
                return true;
            }
            let ok = data
                .get(e.loc.offset as usize..(e.loc.offset + e.loc.stored_len) as usize)
                .and_then(|sealed| repo.decode_blob(e.kind, &e.id, &e.loc, sealed).ok())
                .and_then(|plain| format::decode_segment(&plain).ok())
                .is_some_and(|chunks| chunks.iter().all(|c| stored.contains_key(&c.loc.pack)));
            if !ok {
                dropped += 1;
            }
            ok
        });
    }
    Ok(dropped)
}
