//! Verification. Two passes:
//!
//! 1. Packs: every pack stored or indexed is checked. Metadata packs (trees, segments)
//!    are always read in full; `sample_percent` of the data packs are read (100 = all).
//!    A read pack's header is decrypted, and every blob it or the index lists is
//!    decrypted, decompressed and re-hashed. A pack that is not read is checked for
//!    presence and size.
//! 2. Restore points: every point is walked as a restore would walk it — trees, the
//!    segments of each file, the data blobs each segment's chunks are in — checking that
//!    each is indexed, present, inside its pack and not found bad in pass 1.
//!
//! The report names each point that is not restorable, or only restorable while an
//! object that a repair would replace (an index file, a pack header) stays as it is, with
//! the files affected and why.

use super::format::{self, BlobEntry, BlobKind, BlobLoc, Id, Node, NodeKind, Snapshot};
use super::{DamagedObject, RepoError, Repository, source};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// One blob that failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct BadBlob {
    pub kind: String,
    pub id: String,
    pub pack: String,
    pub detail: String,
}

/// What damage means for one restore point.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Affected {
    pub restore_point: String,
    pub time: String,
    /// False if a restore of the whole point would fail; true if it would succeed but
    /// depends on something damaged that a repair replaces (an index file, a pack header).
    pub restorable: bool,
    /// What is wrong, deduplicated.
    pub problems: Vec<String>,
    /// Paths (relative to the restore point) whose content or listing is affected; a
    /// directory ends with `/`.
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub sample_percent: u32,
    pub packs_checked: u64,
    pub packs_total: u64,
    pub blobs_checked: u64,
    pub bytes_read: u64,
    pub snapshots_checked: u64,
    pub bad_blobs: Vec<BadBlob>,
    /// Packs missing, shorter than the index says, or with an unreadable header.
    pub damaged_packs: Vec<DamagedObject>,
    pub damaged_index_files: Vec<String>,
    /// Restore-point objects that cannot be read.
    pub damaged_points: Vec<DamagedObject>,
    /// Packs no index file lists (left by interrupted runs; harmless unless a point
    /// needs them, which is then reported in `affected`).
    pub unindexed_packs: u64,
    /// Prune marks that cannot be parsed: ignored by everyone (nothing is deleted on
    /// their account), set aside by `repair`. They do not fail a verify.
    pub damaged_marks: Vec<String>,
    pub affected: Vec<Affected>,
}

impl VerifyReport {
    /// Nothing a restore point needs is damaged, and the index is whole. Damaged packs
    /// and blobs that no point uses are reported but do not fail (prune removes them).
    pub fn ok(&self) -> bool {
        self.damaged_index_files.is_empty() && self.damaged_points.is_empty() && self.affected.is_empty()
    }

    /// Points that a restore would fail on.
    pub fn unrestorable(&self) -> Vec<&Affected> {
        self.affected.iter().filter(|a| !a.restorable).collect()
    }

    /// One line for people and for the error of a failed run.
    pub fn summary(&self) -> String {
        let mut unused = if self.bad_blobs.is_empty() && self.damaged_packs.is_empty() {
            String::new()
        } else {
            format!(
                "{} bad blobs and {} damaged packs in all{}",
                self.bad_blobs.len(),
                self.damaged_packs.len(),
                if self.ok() { ", none that a restore point needs (prune removes them)" } else { "" }
            )
        };
        if !self.damaged_marks.is_empty() {
            let marks = format!("{} damaged prune marks (repair sets them aside)", self.damaged_marks.len());
            unused = if unused.is_empty() { marks } else { format!("{unused}; {marks}") };
        }
        if self.ok() {
            return if unused.is_empty() {
                "no errors".into()
            } else {
                format!("no errors in restore points; {unused}")
            };
        }
        let mut parts = Vec::new();
        if !unused.is_empty() {
            parts.push(unused);
        }
        let unrestorable = self.unrestorable().len() + self.damaged_points.len();
        if unrestorable > 0 {
            let mut names: Vec<String> = self.unrestorable().iter().map(|a| a.restore_point[..8].to_string()).collect();
            names.extend(self.damaged_points.iter().map(|d| d.key.trim_start_matches("snapshots/")[..8].to_string()));
            parts.push(format!("{unrestorable} restore points not restorable ({})", names.join(", ")));
        }
        let at_risk = self.affected.len() - self.unrestorable().len();
        if at_risk > 0 {
            parts.push(format!("{at_risk} restorable only until repaired"));
        }
        if !self.damaged_index_files.is_empty() {
            parts.push(format!("{} damaged index files", self.damaged_index_files.len()));
        }
        parts.join(", ")
    }
}

/// The distinct data blobs a segment's chunks are in: (pack, offset, stored length).
type DataLocs = Vec<(Id, u32, u32)>;

/// What the pack pass found.
#[derive(Default)]
struct Packs {
    checked: u64,
    blobs: u64,
    bytes: u64,
    bad: Vec<BadBlob>,
    bad_at: HashSet<(Id, u32)>,
    damaged: Vec<DamagedObject>,
    /// Packs whose header cannot be read (their blobs may still be).
    bad_header: HashSet<Id>,
    /// Recipes read in this pass, by (segment, pack, offset).
    recipes: HashMap<(Id, Id, u32), DataLocs>,
}

/// Verifies the repository; see the module documentation.
pub fn run(repo: &Arc<Repository>, sample_percent: u32) -> Result<VerifyReport, RepoError> {
    let sample_percent = sample_percent.clamp(1, 100);
    // Points first: a backup makes its packs and index files durable before its point,
    // so every point listed here finds what it needs in the index and packs read after
    // it, even while backups run. (Read the other way round, a point finished between
    // the two reads would look unrestorable.)
    let points = repo.points()?;
    repo.load_index_for_reading()?;
    let files = repo.index_files()?;
    let indexed = files.entries;
    let stored: HashMap<Id, u64> = repo.stored_packs()?;
    let mut all: BTreeSet<Id> = stored.keys().copied().collect();
    all.extend(indexed.keys().copied());
    let mut report = VerifyReport {
        sample_percent,
        packs_total: all.len() as u64,
        damaged_index_files: files.damaged,
        unindexed_packs: stored.keys().filter(|p| !indexed.contains_key(p)).count() as u64,
        ..Default::default()
    };
    let found = Mutex::new(Packs::default());
    let queue = Mutex::new(all.into_iter());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(pack) = next else { break };
                    let entries = indexed.get(&pack).map(Vec::as_slice).unwrap_or_default();
                    let meta = entries.is_empty() || entries.iter().any(|e| e.kind != BlobKind::Chunk);
                    let read = meta || sample_percent >= 100 || sampled(&pack, sample_percent);
                    let one = check_pack(repo, &pack, entries, stored.get(&pack).copied(), read);
                    let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                    f.checked += u64::from(read);
                    f.blobs += one.blobs;
                    f.bytes += one.bytes;
                    f.bad_at.extend(one.bad.iter().map(|(_, at)| *at));
                    f.bad.extend(one.bad.into_iter().map(|(b, _)| b));
                    if let Some(detail) = one.damaged {
                        f.damaged.push(DamagedObject { key: format::pack_key(&pack), detail });
                    }
                    if one.bad_header {
                        f.bad_header.insert(pack);
                    }
                    f.recipes.extend(one.recipes);
                }
            });
        }
    });
    let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
    report.packs_checked = found.checked;
    report.blobs_checked = found.blobs;
    report.bytes_read = found.bytes;
    found.bad.sort();
    found.damaged.sort();
    report.bad_blobs = std::mem::take(&mut found.bad);
    report.damaged_packs = std::mem::take(&mut found.damaged);

    report.damaged_marks = super::prune::marks(repo)?.damaged;
    report.damaged_points = points.damaged;
    report.snapshots_checked = (points.good.len() + report.damaged_points.len()) as u64;
    let mut walker =
        Walker { repo, found: &found, stored: &stored, unindexed: repo.unindexed_packs(), segments: HashMap::new() };
    for (id, snap) in &points.good {
        if let Some(a) = walker.point(id, snap) {
            report.affected.push(a);
        }
    }
    Ok(report)
}

/// A stable pseudo-random choice of packs, so repeated samples cover different packs
/// only when the sample rate changes.
fn sampled(pack: &Id, percent: u32) -> bool {
    let salt = (jiff::Timestamp::now().as_second() / 86_400) as u8;
    (u32::from(pack.0[0] ^ salt) * 100 / 256) < percent
}

#[derive(Default)]
struct PackCheck {
    blobs: u64,
    bytes: u64,
    bad: Vec<(BadBlob, (Id, u32))>,
    damaged: Option<String>,
    bad_header: bool,
    recipes: Vec<((Id, Id, u32), DataLocs)>,
}

fn kind_name(kind: BlobKind) -> String {
    format!("{kind:?}").to_lowercase()
}

fn check_pack(repo: &Repository, pack: &Id, indexed: &[BlobEntry], size: Option<u64>, read: bool) -> PackCheck {
    let mut out = PackCheck::default();
    let bad = |e: &BlobEntry, detail: String| {
        (BadBlob { kind: kind_name(e.kind), id: e.id.hex(), pack: pack.hex(), detail }, (*pack, e.loc.offset))
    };
    let Some(size) = size else {
        out.damaged = Some("pack is missing".into());
        out.bad = indexed.iter().map(|e| bad(e, "pack is missing".into())).collect();
        return out;
    };
    if !read {
        let end = indexed.iter().map(|e| e.loc.offset as u64 + e.loc.stored_len as u64).max().unwrap_or(0);
        if end > size {
            out.damaged = Some(format!("pack is {size} bytes, shorter than its index says ({end})"));
        }
        return out;
    }
    let data = match repo.backend().get(&format::pack_key(pack)) {
        Ok(d) => d,
        Err(err) => {
            out.damaged = Some(err.to_string());
            out.bad = indexed.iter().map(|e| bad(e, err.to_string())).collect();
            return out;
        }
    };
    out.bytes = data.len() as u64;
    let mut entries: Vec<BlobEntry> = match header_of(repo, pack, &data) {
        Ok(h) => h,
        Err(detail) => {
            out.damaged = Some(format!("pack header unreadable: {detail}"));
            out.bad_header = true;
            Vec::new()
        }
    };
    for e in indexed {
        if !entries.iter().any(|x| x.id == e.id && x.loc.offset == e.loc.offset) {
            entries.push(*e);
        }
    }
    for e in &entries {
        out.blobs += 1;
        let (start, end) = (e.loc.offset as usize, e.loc.offset as usize + e.loc.stored_len as usize);
        let plain = match data.get(start..end) {
            Some(sealed) => check_blob(repo, e, sealed).map_err(|err| err.to_string()),
            None => Err("pack is shorter than the index says".into()),
        };
        match plain {
            Err(detail) => out.bad.push(bad(e, detail)),
            Ok(Some(plain)) => match format::decode_segment(&plain) {
                Ok(chunks) => out.recipes.push(((e.id, *pack, e.loc.offset), data_locs(&chunks))),
                Err(err) => out.bad.push(bad(e, err.to_string())),
            },
            Ok(None) => {}
        }
    }
    out
}

/// Parses a pack's header from the pack's bytes.
fn header_of(repo: &Repository, pack: &Id, data: &[u8]) -> Result<Vec<BlobEntry>, String> {
    let n = data.len();
    if n < 4 {
        return Err("shorter than a header".into());
    }
    let hlen = u32::from_le_bytes(data[n - 4..].try_into().unwrap_or_default()) as usize;
    if hlen + 4 > n {
        return Err("header length exceeds the pack".into());
    }
    let plain = repo.cipher().open(&data[n - 4 - hlen..n - 4], super::AAD_PACK_HEADER).map_err(|e| e.to_string())?;
    let entries = format::decode_pack_header(*pack, &plain).map_err(|e| e.to_string())?;
    if entries.iter().any(|e| e.loc.offset as usize + e.loc.stored_len as usize > n - 4 - hlen) {
        return Err("header places blobs beyond the data".into());
    }
    Ok(entries)
}

fn data_locs(chunks: &[format::ChunkRef]) -> DataLocs {
    let mut out: DataLocs = Vec::new();
    for c in chunks {
        let at = (c.loc.pack, c.loc.offset, c.loc.stored_len);
        if !out.contains(&at) {
            out.push(at);
        }
    }
    out
}

/// A problem found while walking a point.
#[derive(Clone)]
struct Problem {
    fatal: bool,
    what: String,
}

struct Walker<'a> {
    repo: &'a Repository,
    found: &'a Packs,
    stored: &'a HashMap<Id, u64>,
    unindexed: HashSet<Id>,
    /// Verdicts by segment id.
    segments: HashMap<Id, Vec<Problem>>,
}

impl Walker<'_> {
    /// Problems of a blob's own place (not its content).
    fn place(&self, kind: BlobKind, id: &Id, loc: Option<BlobLoc>) -> Vec<Problem> {
        let name = kind_name(kind);
        let Some(loc) = loc else {
            return vec![Problem { fatal: true, what: format!("{name} {} is missing from the index", id.short()) }];
        };
        let mut out = Vec::new();
        if !self.stored.contains_key(&loc.pack) {
            out.push(Problem { fatal: true, what: format!("pack {} is missing", loc.pack.short()) });
        } else if self.found.bad_at.contains(&(loc.pack, loc.offset)) {
            out.push(Problem { fatal: true, what: format!("{name} {} is damaged", id.short()) });
        }
        if self.unindexed.contains(&loc.pack) {
            out.push(Problem {
                fatal: false,
                what: format!("pack {} is in no index file (an index file is missing)", loc.pack.short()),
            });
        }
        if self.found.bad_header.contains(&loc.pack) {
            out.push(Problem { fatal: false, what: format!("pack {} has a damaged header", loc.pack.short()) });
        }
        out
    }

    fn segment(&mut self, id: &Id) -> Vec<Problem> {
        if let Some(p) = self.segments.get(id) {
            return p.clone();
        }
        let loc = self.repo.lookup(id);
        let mut problems = self.place(BlobKind::Segment, id, loc);
        if let Some(loc) = loc.filter(|_| !problems.iter().any(|p| p.fatal)) {
            let locs = match self.found.recipes.get(&(*id, loc.pack, loc.offset)) {
                Some(l) => Ok(l.clone()),
                None => self.repo.read_segment(id).map(|c| data_locs(&c)),
            };
            match locs {
                Err(e) => problems.push(Problem { fatal: true, what: e.to_string() }),
                Ok(locs) => {
                    for (pack, offset, len) in locs {
                        match self.stored.get(&pack) {
                            None => problems
                                .push(Problem { fatal: true, what: format!("pack {} is missing", pack.short()) }),
                            Some(size) if offset as u64 + len as u64 > *size => problems.push(Problem {
                                fatal: true,
                                what: format!("pack {} is shorter than its blobs", pack.short()),
                            }),
                            Some(_) if self.found.bad_at.contains(&(pack, offset)) => problems.push(Problem {
                                fatal: true,
                                what: format!("data in pack {} is damaged", pack.short()),
                            }),
                            Some(_) => {}
                        }
                        if self.found.bad_header.contains(&pack) {
                            problems.push(Problem {
                                fatal: false,
                                what: format!("pack {} has a damaged header", pack.short()),
                            });
                        }
                    }
                }
            }
        }
        self.segments.insert(*id, problems.clone());
        problems
    }

    fn file(&mut self, node: &Node) -> Vec<Problem> {
        let segs: Vec<Id> = node.content.iter().map(|s| s.id).collect();
        segs.iter().flat_map(|s| self.segment(s)).collect()
    }

    fn point(&mut self, id: &Id, snap: &Snapshot) -> Option<Affected> {
        let mut problems: Vec<Problem> = Vec::new();
        let mut paths = BTreeSet::new();
        match snap.root.subtree {
            Some(tree) => self.dir(&tree, "", &mut problems, &mut paths),
            None => {
                let p = self.file(&snap.root);
                if !p.is_empty() {
                    paths.insert(snap.path.clone());
                    problems.extend(p);
                }
            }
        }
        if problems.is_empty() {
            return None;
        }
        let restorable = !problems.iter().any(|p| p.fatal);
        let mut what: Vec<String> = problems.into_iter().map(|p| p.what).collect::<BTreeSet<_>>().into_iter().collect();
        what.truncate(100);
        Some(Affected {
            restore_point: id.hex(),
            time: snap.time.clone(),
            restorable,
            problems: what,
            paths: paths.into_iter().collect(),
        })
    }

    fn dir(&mut self, tree: &Id, rel: &str, problems: &mut Vec<Problem>, paths: &mut BTreeSet<String>) {
        let here = if rel.is_empty() { "/".to_string() } else { format!("{rel}/") };
        let place = self.place(BlobKind::Tree, tree, self.repo.lookup(tree));
        let fatal = place.iter().any(|p| p.fatal);
        if !place.is_empty() {
            paths.insert(here.clone());
            problems.extend(place);
        }
        if fatal {
            return;
        }
        // A window of entries at a time: a directory of 200,000 files is never whole.
        let repo = self.repo;
        let walked = repo.for_each_tree_window(tree, |nodes: Vec<Node>| {
            for node in nodes {
                let path = super::backup::join_rel(rel, &source::name_of(&node).to_string_lossy());
                match node.kind {
                    Some(NodeKind::File) => {
                        let p = self.file(&node);
                        if !p.is_empty() {
                            paths.insert(path);
                            problems.extend(p);
                        }
                    }
                    Some(NodeKind::Dir) => {
                        if let Some(sub) = node.subtree {
                            self.dir(&sub, &path, problems, paths);
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        });
        if let Err(e) = walked {
            paths.insert(here);
            problems.push(Problem { fatal: true, what: e.to_string() });
        }
    }
}

/// Reads back a pack just written and checks every blob its header lists.
pub fn check_written_pack(repo: &Repository, pack: &Id) -> Result<(), RepoError> {
    let key = format::pack_key(pack);
    let data = repo.backend().get(&key)?;
    let size = data.len() as u64;
    let entries = super::pack::read_pack_header(repo, pack, size)?;
    for e in &entries {
        let sealed = data
            .get(e.loc.offset as usize..(e.loc.offset + e.loc.stored_len) as usize)
            .ok_or_else(|| RepoError::corrupt(&key, "shorter than its header says"))?;
        check_blob(repo, e, sealed)?;
    }
    Ok(())
}

/// Authenticates and re-hashes one stored blob; returns a segment's plaintext (its
/// recipe), the only kind whose content a check goes on to read. A large tree is checked
/// as it is decompressed, its JSON never whole in memory.
fn check_blob(repo: &Repository, e: &BlobEntry, sealed: &[u8]) -> Result<Option<Vec<u8>>, RepoError> {
    match e.kind {
        BlobKind::Tree => repo.check_tree(&e.id, &e.loc, sealed).map(|()| None),
        BlobKind::Segment => repo.decode_blob(e.kind, &e.id, &e.loc, sealed).map(Some),
        BlobKind::Chunk => repo.decode_blob(e.kind, &e.id, &e.loc, sealed).map(|_| None),
    }
}
