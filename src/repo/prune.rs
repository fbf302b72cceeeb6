//! Forget (retention) and two-phase prune.

use super::format::{Id, PruneMark};
use super::{PackEntries, RepoError, Repository};
use std::collections::HashSet;

/// The prune marks as listed.
#[derive(Default)]
pub struct Marks {
    /// Every readable mark with its key.
    pub readable: Vec<(String, PruneMark)>,
    /// Keys of marks that cannot be parsed. Everyone ignores them (with a warning;
    /// `repair` sets them aside): no prune can read them either, so nothing is ever
    /// deleted on their account.
    pub damaged: Vec<String>,
}

/// Every prune mark. A mark deleted while it is read (by a prune that finished it) is
/// left out: its packs are gone from the index already.
pub fn marks(repo: &Repository) -> Result<Marks, RepoError> {
    let mut out = Marks::default();
    for obj in repo.backend().list("prune/")? {
        let raw = match repo.backend().get(&obj.key) {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<PruneMark>(&raw) {
            Ok(mark) => out.readable.push((obj.key, mark)),
            Err(e) => {
                tracing::warn!(object = %obj.key, error = %e, "damaged prune mark ignored (`lifeline repo repair` sets it aside)");
                out.damaged.push(obj.key);
            }
        }
    }
    Ok(out)
}

/// Writes a new mark for `packs`, made durable before and after (everything it names
/// exists before it does; it counts before anything it allows is written).
pub(super) fn write_mark(repo: &Repository, packs: Vec<Id>) -> Result<(), RepoError> {
    let json = serde_json::to_vec(&PruneMark { marked: lock::now(), packs }).map_err(RepoError::encode)?;
    repo.backend().flush()?;
    repo.backend().put_new(&format!("prune/{}", Id::random().hex()), Bytes::from(json))?;
    repo.backend().flush()?;
    Ok(())
}

/// Registers a writer (backup, copy) before it reads anything: a shared lock, then the
/// prune marks, then the lock rewritten to say which marks the writer has seen. Returns
/// the lock and the marked packs, which the writer must leave out of everything it
/// builds on (index, parent recipes, unindexed packs). See `docs/FORMAT.md`.
pub fn register_writer(repo: &Repository, operation: &str) -> Result<(lock::LockGuard, HashSet<Id>), RepoError> {
    let guard = lock::acquire(repo.backend().clone(), operation, false)?;
    let marks = marks(repo)?.readable;
    guard.set_marks_seen(marks.iter().map(|(k, _)| k.clone()).collect())?;
    Ok((guard, marks.into_iter().flat_map(|(_, m)| m.packs).collect()))
}

/// Records a writer's restore point: only while its lock still exists, and the lock is
/// checked again afterwards. If it was lost (removed as expired by a prune), a prune may
/// have deleted data the point needs, so the point is removed again and the run fails.
pub fn commit_point(repo: &Repository, guard: &lock::LockGuard, snap: &Snapshot) -> Result<Id, RepoError> {
    guard.confirm()?;
    let id = repo.write_snapshot(snap)?;
    if let Err(e) = guard.confirm() {
        let _ = repo.backend().delete(&format!("snapshots/{}", id.hex()));
        return Err(e);
    }
    Ok(id)
}

use super::format::{BlobKind, Snapshot};
use super::lock;
use bytes::Bytes;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Which restore points to keep (the union of the rules, as `restic forget`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<std::time::Duration>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Why a restore point is kept.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub id: String,
    pub time: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// The calendar bucket a time falls in, for one retention rule.
type BucketKey = fn(&jiff::Zoned) -> String;

/// Decides, for points of one group (same host and path), which to keep. `points` may be
/// in any order; the newest point is always kept.
pub fn plan(points: &[(Id, Timestamp)], now: Timestamp, tz: &jiff::tz::TimeZone, r: &Retention) -> Vec<Decision> {
    let mut sorted: Vec<(Id, Timestamp)> = points.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];
    if let Some(n) = r.keep_last {
        for rs in reasons.iter_mut().take(n as usize) {
            rs.push("last".into());
        }
    }
    let buckets: [(&str, Option<u32>, BucketKey); 5] = [
        ("hourly", r.hourly, |z| z.strftime("%Y-%m-%d %H").to_string()),
        ("daily", r.daily, |z| z.strftime("%Y-%m-%d").to_string()),
        ("weekly", r.weekly, |z| {
            let w = z.date().iso_week_date();
            format!("{}-W{:02}", w.year(), w.week())
        }),
        ("monthly", r.monthly, |z| z.strftime("%Y-%m").to_string()),
        ("yearly", r.yearly, |z| z.strftime("%Y").to_string()),
    ];
    for (name, count, key) in buckets {
        let Some(count) = count else { continue };
        let mut seen: Vec<String> = Vec::new();
        for (i, (_, t)) in sorted.iter().enumerate() {
            if seen.len() >= count as usize {
                break;
            }
            let k = key(&t.to_zoned(tz.clone()));
            if !seen.contains(&k) {
                seen.push(k);
                reasons[i].push(name.into());
            }
        }
    }
    if let Some(within) = r.within {
        let span = jiff::SignedDuration::try_from(within).unwrap_or(jiff::SignedDuration::MAX);
        let cutoff = now.checked_sub(span).unwrap_or(Timestamp::MIN);
        for (i, (_, t)) in sorted.iter().enumerate() {
            if *t >= cutoff {
                reasons[i].push("within".into());
            }
        }
    }
    if let Some(first) = reasons.first_mut()
        && first.is_empty()
    {
        first.push("newest".into());
    }
    sorted
        .iter()
        .zip(reasons)
        .map(|((id, t), reasons)| Decision { id: id.hex(), time: t.to_string(), keep: !reasons.is_empty(), reasons })
        .collect()
}

/// Applies `retention` to every group of restore points (same host and path) and
/// deletes the others (their data goes with the next prunes).
pub fn forget(repo: &Arc<Repository>, r: &Retention, dry_run: bool) -> Result<Vec<Decision>, RepoError> {
    if r.is_empty() {
        return Err(RepoError::Invalid(
            "no retention rule given: pass --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly or --keep-within".into(),
        ));
    }
    let _lock = lock::acquire(repo.backend().clone(), "forget", false)?;
    let mut groups: BTreeMap<(String, String), Vec<(Id, Timestamp)>> = BTreeMap::new();
    for (id, s) in repo.snapshots()? {
        let t: Timestamp = s.time.parse().map_err(|e| RepoError::corrupt(&format!("snapshot {id:?}"), e))?;
        groups.entry((s.host.clone(), s.path.clone())).or_default().push((id, t));
    }
    let mut out = Vec::new();
    for points in groups.values() {
        for d in plan(points, Timestamp::now(), &jiff::tz::TimeZone::UTC, r) {
            if !d.keep && !dry_run {
                repo.backend().delete(&format!("snapshots/{}", d.id))?;
            }
            out.push(d);
        }
    }
    Ok(out)
}

/// Deletes the given restore points, in the order given (their data goes with the next
/// prunes). Points already gone are skipped: a repeated call after a crash is harmless.
pub fn forget_ids(repo: &Arc<Repository>, ids: &[Id]) -> Result<usize, RepoError> {
    let _lock = lock::acquire(repo.backend().clone(), "forget", false)?;
    let mut n = 0;
    for id in ids {
        match repo.backend().delete(&format!("snapshots/{}", id.hex())) {
            Ok(()) => n += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Temporary files at least this old (or the grace period, if longer) are leftovers.
const INCOMPLETE_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a prune did.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub packs_total: u64,
    pub packs_referenced: u64,
    /// Packs newly marked for deletion (deleted by a prune after the grace period).
    pub packs_marked: u64,
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Marked packs kept because a writer that started before the mark still runs, or
    /// the grace period has not passed.
    pub packs_waiting: u64,
    /// Packs whose used blobs were moved to new packs (the old ones are then marked).
    pub packs_repacked: u64,
    pub bytes_repacked: u64,
    /// Leftovers of writes a crash interrupted (temporary files in a `file://` location).
    pub incomplete_removed: u64,
}

/// Two-phase prune. Phase one marks packs no restore point references (and packs it is
/// about to repack) *before* it changes anything; a later prune deletes a mark's packs
/// that are still unreferenced once `grace` has passed since the mark and every writer
/// whose lock exists has seen the mark. Writers leave marked packs out of everything they
/// build on, so a concurrent backup or copy never records a point that needs them. Runs
/// beside backups; only one prune runs at a time. The protocol and why it is safe are in
/// `docs/FORMAT.md` ("Concurrency").
pub fn prune(repo: &Arc<Repository>, grace: std::time::Duration) -> Result<PruneReport, RepoError> {
    let _lock = lock::acquire_prune(repo.backend().clone())?;
    lock::remove_stale(&**repo.backend())?;
    // No live writer takes an hour over one object.
    let incomplete_removed = repo.backend().remove_incomplete(grace.max(INCOMPLETE_AGE))?;
    // Locks before restore points and index: a writer whose lock is gone wrote its
    // restore point (and index) before releasing it, so they are read below.
    let locks = lock::present(&**repo.backend())?;
    let marks = marks(repo)?.readable;
    repo.load_index(&HashSet::new())?;
    let index_files = repo.index_files()?;
    if let Some(damaged) = index_files.damaged.first() {
        return Err(RepoError::Corrupt {
            what: damaged.clone(),
            detail: "the index is damaged; prune deletes nothing until `lifeline repo repair` has rebuilt it".into(),
        });
    }
    let u = usage(repo)?;
    let mut referenced: HashSet<Id> = u.packs.keys().copied().collect();
    let stored: HashMap<Id, u64> = repo.stored_packs()?;
    let mut report = PruneReport {
        packs_total: stored.len() as u64,
        packs_referenced: referenced.len() as u64,
        incomplete_removed,
        ..Default::default()
    };
    let now = lock::now();
    let mut already = HashSet::new();
    let mut deletable = HashSet::new();
    let mut finished_marks = Vec::new();
    for (key, mark) in marks {
        let still: Vec<Id> =
            mark.packs.iter().copied().filter(|p| !referenced.contains(p) && stored.contains_key(p)).collect();
        let writer_behind = locks.iter().any(|(_, l)| lock::blocks_deletion(l.as_ref(), &key));
        if now - mark.marked >= grace.as_secs() as i64 && !writer_behind {
            deletable.extend(still.iter().copied());
            finished_marks.push(key);
        } else {
            report.packs_waiting += still.len() as u64;
            already.extend(still);
        }
    }
    let wasteful = wasteful_packs(&u, &stored, &index_files.entries, &already);
    // The mark goes out before the repack writes anything: a writer that starts from
    // now on sees it and leaves the marked packs alone.
    let mut new: Vec<Id> = stored
        .keys()
        .copied()
        .filter(|p| !referenced.contains(p) && !already.contains(p) && !deletable.contains(p))
        .collect();
    new.extend(wasteful.iter().copied());
    new.sort();
    if !new.is_empty() {
        report.packs_marked = new.len() as u64;
        write_mark(repo, new)?;
    }
    let repacked = repack(repo, &u, &index_files.entries, &wasteful)?;
    report.packs_repacked = repacked.emptied.len() as u64;
    report.bytes_repacked = repacked.bytes;
    for p in &repacked.emptied {
        referenced.remove(p);
    }
    referenced.extend(repacked.written.iter().copied());
    if !deletable.is_empty() || !repacked.replaced.is_empty() {
        rewrite_index_without(repo, &deletable, &repacked.replaced)?;
    }
    for p in &deletable {
        repo.backend().delete(&super::format::pack_key(p))?;
        report.packs_deleted += 1;
        report.bytes_deleted += stored.get(p).copied().unwrap_or(0);
    }
    for key in finished_marks {
        repo.backend().delete(&key)?;
    }
    Ok(report)
}

/// Packs to repack: referenced packs more than [`REPACK_WASTE`] unused (the header
/// counts as used, so small packs do not churn), and referenced packs holding a segment
/// no restore point uses. Such a segment may point into data about to be deleted, and a
/// writer could otherwise reuse it by id; repacking moves the used blobs out and marks
/// the pack, so writers stop seeing that segment at all.
fn wasteful_packs(u: &Usage, stored: &HashMap<Id, u64>, index: &PackEntries, skip: &HashSet<Id>) -> HashSet<Id> {
    u.packs
        .iter()
        .filter(|(p, (used, in_use))| {
            let size = stored.get(p).copied().unwrap_or(0);
            if skip.contains(p) || size == 0 {
                return false;
            }
            let entries = index.get(p).map(Vec::as_slice).unwrap_or_default();
            let header = PACK_HEADER_OVERHEAD + PACK_HEADER_PER_BLOB * entries.len() as u64;
            let unused = size.saturating_sub(used + header);
            let stale_segment =
                entries.iter().any(|e| e.kind == BlobKind::Segment && !in_use.contains(&(e.id, e.loc.offset)));
            stale_segment || (unused as f64) > (size as f64) * REPACK_WASTE
        })
        .map(|(p, _)| *p)
        .collect()
}

/// A pack header's size: magic, version, count, seal and length; and per blob.
const PACK_HEADER_OVERHEAD: u64 = 4 + 1 + 4 + 12 + 16 + 4;
const PACK_HEADER_PER_BLOB: u64 = 1 + 1 + 32 + 4 + 4;

/// Everything restore points need: per pack, the bytes and blobs in use; and the recipe
/// of every segment (to rewrite those whose chunks move). A segment stored more than
/// once counts with every copy and every copy's data: readers may resolve it to any.
#[derive(Default)]
pub(super) struct Usage {
    pub packs: HashMap<Id, (u64, HashSet<(Id, u32)>)>,
    /// The recipe of each segment's first copy (the one readers resolve it to).
    segments: HashMap<Id, Vec<super::format::ChunkRef>>,
    /// For a segment stored more than once: the data packs its other copies point into.
    other_copies: HashMap<Id, Vec<Id>>,
}

impl Usage {
    /// The data blobs the recipes read point into: (blob id, place).
    pub(super) fn segment_chunks(&self) -> impl Iterator<Item = (Id, super::format::BlobLoc)> + '_ {
        self.segments.values().flatten().map(|c| (c.blob, c.loc))
    }

    fn use_blob(&mut self, id: Id, loc: &super::format::BlobLoc) {
        let entry = self.packs.entry(loc.pack).or_default();
        if entry.1.insert((id, loc.offset)) {
            entry.0 += loc.stored_len as u64;
        }
    }

    /// Whether any copy of `segment` points into one of `packs`.
    fn points_into(&self, segment: &Id, recipe: &[super::format::ChunkRef], packs: &HashSet<Id>) -> bool {
        recipe.iter().any(|c| packs.contains(&c.loc.pack))
            || self.other_copies.get(segment).is_some_and(|o| o.iter().any(|p| packs.contains(p)))
    }
}

fn usage(repo: &Repository) -> Result<Usage, RepoError> {
    let mut u = Usage::default();
    let mut seen = HashSet::new();
    for (_, snap) in repo.snapshots()? {
        mark_snapshot(repo, &snap, &mut seen, &mut u)?;
    }
    Ok(u)
}

/// What marking reads of a node: the segments of its content and its subtree.
#[derive(serde::Deserialize)]
struct Refs {
    #[serde(default)]
    content: Vec<super::format::SegRef>,
    #[serde(default)]
    subtree: Option<Id>,
}

/// Marks what a restore point uses. Trees are walked a window of entries at a time and
/// the recipes of a window's segments read with few requests (they sit side by side):
/// 200,000 files in one directory are never all in memory, nor read one request each.
pub(super) fn mark_snapshot(
    repo: &Repository,
    snap: &Snapshot,
    seen: &mut HashSet<Id>,
    u: &mut Usage,
) -> Result<(), RepoError> {
    let mut trees = Vec::new();
    let root = Refs { content: snap.root.content.clone(), subtree: snap.root.subtree };
    mark_nodes(repo, &[root], seen, u, &mut trees)?;
    while let Some(tree) = trees.pop() {
        repo.for_each_tree_window(&tree, |nodes: Vec<Refs>| mark_nodes(repo, &nodes, seen, u, &mut trees))?;
    }
    Ok(())
}

/// Marks the segments (every copy, and the data each copy's recipe reads) and subtrees
/// of `nodes` that were not seen yet; the subtrees are left in `trees` to walk.
fn mark_nodes(
    repo: &Repository,
    nodes: &[Refs],
    seen: &mut HashSet<Id>,
    u: &mut Usage,
    trees: &mut Vec<Id>,
) -> Result<(), RepoError> {
    let mut copies = Vec::new();
    // The first copy of a segment stored more than once.
    let mut first: HashMap<Id, (Id, u32)> = HashMap::new();
    for node in nodes {
        for seg in &node.content {
            if seen.insert(seg.id) {
                let locs = repo.locations(&seg.id);
                match locs.first() {
                    None => return Err(RepoError::MissingBlob { kind: BlobKind::Segment, id: seg.id }),
                    Some(l) if locs.len() > 1 => {
                        first.insert(seg.id, (l.pack, l.offset));
                    }
                    Some(_) => {}
                }
                copies.extend(locs.into_iter().map(|l| (seg.id, l)));
            }
        }
        if let Some(tree) = node.subtree
            && seen.insert(tree)
        {
            let locs = repo.locations(&tree);
            if locs.is_empty() {
                return Err(RepoError::MissingBlob { kind: BlobKind::Tree, id: tree });
            }
            for loc in &locs {
                u.use_blob(tree, loc);
            }
            trees.push(tree);
        }
    }
    repo.read_segments_at(copies, |id, loc, chunks| {
        u.use_blob(*id, loc);
        for c in &chunks {
            u.use_blob(c.blob, &c.loc);
        }
        if first.get(id).is_none_or(|f| *f == (loc.pack, loc.offset)) {
            u.segments.insert(*id, chunks);
        } else {
            let other = u.other_copies.entry(*id).or_default();
            other.extend(chunks.iter().map(|c| c.loc.pack));
            other.sort();
            other.dedup();
        }
        Ok(())
    })
}

/// Packs this wasteful (unused share above this) are repacked.
const REPACK_WASTE: f64 = 0.2;

/// What a repack did.
pub(super) struct Repacked {
    /// Packs whose used blobs now live elsewhere: to be marked.
    pub emptied: HashSet<Id>,
    /// Index entries (blob id, pack) that now live elsewhere.
    pub replaced: HashSet<(Id, Id)>,
    /// Packs the repack wrote.
    written: HashSet<Id>,
    bytes: u64,
}

/// Moves the used blobs of `wasteful` packs into new packs and rewrites the segments
/// that point into them.
pub(super) fn repack(
    repo: &Arc<Repository>,
    u: &Usage,
    index: &PackEntries,
    wasteful: &HashSet<Id>,
) -> Result<Repacked, RepoError> {
    let mut out = Repacked { emptied: HashSet::new(), replaced: HashSet::new(), written: HashSet::new(), bytes: 0 };
    if wasteful.is_empty() {
        return Ok(out);
    }
    // Every copy of a segment that points into a repacked pack is replaced by one recipe.
    let rewrite: Vec<Id> =
        u.segments.iter().filter(|(id, recipe)| u.points_into(id, recipe, wasteful)).map(|(id, _)| *id).collect();
    let rewrite_set: HashSet<Id> = rewrite.iter().copied().collect();
    let saver = super::pack::Saver::new(repo.clone(), 2);
    let mut moved: HashMap<(Id, u32), super::format::BlobLoc> = HashMap::new();
    for pack in wasteful {
        let entries = index.get(pack).map(Vec::as_slice).unwrap_or_default();
        let data = repo.backend().get(&super::format::pack_key(pack))?;
        let used = &u.packs[pack].1;
        for e in entries.iter().filter(|e| used.contains(&(e.id, e.loc.offset))) {
            out.replaced.insert((e.id, *pack));
            if e.kind == BlobKind::Segment && rewrite_set.contains(&e.id) {
                continue;
            }
            let sealed = data
                .get(e.loc.offset as usize..(e.loc.offset + e.loc.stored_len) as usize)
                .ok_or_else(|| RepoError::corrupt(&super::format::pack_key(pack), "shorter than its header says"))?;
            moved.insert((*pack, e.loc.offset), saver.save_sealed(e, sealed)?);
        }
    }
    for seg in rewrite {
        let recipe: Vec<super::format::ChunkRef> = u.segments[&seg]
            .iter()
            .map(|c| super::format::ChunkRef {
                loc: moved.get(&(c.loc.pack, c.loc.offset)).copied().unwrap_or(c.loc),
                ..*c
            })
            .collect();
        for old in repo.locations(&seg) {
            out.replaced.insert((seg, old.pack));
        }
        let deps: Vec<Id> = recipe.iter().map(|c| c.loc.pack).collect();
        saver.save_with_deps(BlobKind::Segment, seg, &super::format::encode_segment(&recipe), deps)?;
    }
    let stats = saver.finish()?;
    out.emptied = wasteful.clone();
    out.written = stats.pack_ids.into_iter().collect();
    out.bytes = stats.stored_bytes;
    Ok(out)
}

/// Replaces every index file with one that leaves out the packs `gone` and the
/// entries `replaced` (blob id, pack) that now live elsewhere.
pub(super) fn rewrite_index_without(
    repo: &Repository,
    gone: &HashSet<Id>,
    replaced: &HashSet<(Id, Id)>,
) -> Result<(), RepoError> {
    let files = repo.index_files()?;
    if let Some(damaged) = files.damaged.first() {
        return Err(RepoError::corrupt(damaged, "index file cannot be read"));
    }
    let keep: Vec<(Id, Vec<super::format::BlobEntry>)> = files
        .entries
        .into_iter()
        .filter(|(p, _)| !gone.contains(p))
        .map(|(p, entries)| (p, entries.into_iter().filter(|e| !replaced.contains(&(e.id, p))).collect::<Vec<_>>()))
        .filter(|(_, entries)| !entries.is_empty())
        .collect();
    repo.replace_index(&keep, &files.read)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn kept(points: &[&str], r: Retention, now: &str) -> Vec<String> {
        let pts: Vec<(Id, Timestamp)> = points.iter().enumerate().map(|(i, t)| (Id([i as u8; 32]), at(t))).collect();
        let mut out: Vec<String> =
            plan(&pts, at(now), &jiff::tz::TimeZone::UTC, &r).into_iter().filter(|d| d.keep).map(|d| d.time).collect();
        out.sort();
        out
    }

    #[test]
    fn retention_table() {
        let pts = [
            "2026-11-20T10:00:00Z",
            "2026-11-20T10:15:00Z",
            "2026-11-20T11:00:00Z",
            "2026-11-19T23:00:00Z",
            "2026-11-12T08:00:00Z",
            "2026-10-01T08:00:00Z",
            "2025-12-31T08:00:00Z",
        ];
        let now = "2026-11-20T12:00:00Z";
        let table: Vec<(Retention, Vec<&str>)> = vec![
            (
                Retention { keep_last: Some(2), ..Default::default() },
                vec!["2026-11-20T10:15:00Z", "2026-11-20T11:00:00Z"],
            ),
            (
                Retention { hourly: Some(3), ..Default::default() },
                vec!["2026-11-19T23:00:00Z", "2026-11-20T10:15:00Z", "2026-11-20T11:00:00Z"],
            ),
            (Retention { daily: Some(2), ..Default::default() }, vec!["2026-11-19T23:00:00Z", "2026-11-20T11:00:00Z"]),
            (Retention { weekly: Some(2), ..Default::default() }, vec!["2026-11-12T08:00:00Z", "2026-11-20T11:00:00Z"]),
            (
                Retention { monthly: Some(3), ..Default::default() },
                vec!["2025-12-31T08:00:00Z", "2026-10-01T08:00:00Z", "2026-11-20T11:00:00Z"],
            ),
            (Retention { yearly: Some(5), ..Default::default() }, vec!["2025-12-31T08:00:00Z", "2026-11-20T11:00:00Z"]),
            (
                Retention { within: Some(std::time::Duration::from_secs(2 * 3600)), ..Default::default() },
                vec!["2026-11-20T10:00:00Z", "2026-11-20T10:15:00Z", "2026-11-20T11:00:00Z"],
            ),
            (Retention { keep_last: Some(0), ..Default::default() }, vec!["2026-11-20T11:00:00Z"]),
        ];
        for (r, want) in table {
            assert_eq!(kept(&pts, r.clone(), now), want, "{r:?}");
        }
    }

    #[test]
    fn time_zone_moves_day_buckets() {
        let pts = ["2026-11-19T23:30:00Z", "2026-11-19T22:00:00Z"];
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let p: Vec<(Id, Timestamp)> = pts.iter().enumerate().map(|(i, t)| (Id([i as u8; 32]), at(t))).collect();
        let r = Retention { daily: Some(2), ..Default::default() };
        let keep = plan(&p, at("2026-11-20T12:00:00Z"), &berlin, &r).into_iter().filter(|d| d.keep).count();
        assert_eq!(keep, 2, "23:30Z is already the 20th in Berlin");
        let keep_utc =
            plan(&p, at("2026-11-20T12:00:00Z"), &jiff::tz::TimeZone::UTC, &r).into_iter().filter(|d| d.keep).count();
        assert_eq!(keep_utc, 1);
    }
}
