//! Verification: re-read packs (all, or a sample), decrypt and re-hash every blob, and
//! report exactly which restore points and files a bad or missing blob affects.

use super::format::{self, BlobEntry, BlobKind, Id, Node, NodeKind, Snapshot};
use super::{RepoError, Repository, source};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// What a failure means for users.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Affected {
    pub restore_point: String,
    pub time: String,
    /// Paths (relative to the restore point) whose content or listing is damaged.
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
    pub affected: Vec<Affected>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.bad_blobs.is_empty()
    }
}

/// Verifies the repository. Metadata packs (trees, segments) are always read in full;
/// `sample_percent` of the data packs are read (100 = all).
pub fn run(repo: &Arc<Repository>, sample_percent: u32) -> Result<VerifyReport, RepoError> {
    let sample_percent = sample_percent.clamp(1, 100);
    repo.load_index(&HashSet::new())?;
    let mut packs: BTreeMap<Id, Vec<BlobEntry>> = BTreeMap::new();
    for obj in repo.backend().list("index/")? {
        for (pack, entries) in repo.read_index_file(&obj.key)? {
            packs.entry(pack).or_default().extend(entries);
        }
    }
    let stored: HashMap<Id, u64> = repo.stored_packs()?;
    let selected: Vec<(Id, Vec<BlobEntry>)> = packs
        .into_iter()
        .filter(|(pack, entries)| {
            let meta = entries.iter().any(|e| e.kind != BlobKind::Chunk);
            meta || sample_percent >= 100 || sampled(pack, sample_percent)
        })
        .collect();
    let mut report = VerifyReport { sample_percent, packs_total: stored.len() as u64, ..Default::default() };
    let bad = Mutex::new(Vec::<BadBlob>::new());
    let counts = Mutex::new((0u64, 0u64, 0u64));
    let queue = Mutex::new(selected.into_iter());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((pack, entries)) = next else { break };
                    let (n, bytes, problems) = check_pack(repo, &pack, &entries, stored.get(&pack).copied());
                    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                    c.0 += 1;
                    c.1 += n;
                    c.2 += bytes;
                    drop(c);
                    bad.lock().unwrap_or_else(|e| e.into_inner()).extend(problems);
                }
            });
        }
    });
    let (packs_checked, blobs, bytes) = counts.into_inner().unwrap_or_default();
    report.packs_checked = packs_checked;
    report.blobs_checked = blobs;
    report.bytes_read = bytes;
    report.bad_blobs = bad.into_inner().unwrap_or_default();
    report.bad_blobs.sort();
    let snapshots = repo.snapshots()?;
    report.snapshots_checked = snapshots.len() as u64;
    let bad_ids: HashSet<String> = report.bad_blobs.iter().map(|b| b.id.clone()).collect();
    for (id, snap) in &snapshots {
        let paths = affected_paths(repo, snap, &bad_ids)?;
        if !paths.is_empty() {
            report.affected.push(Affected { restore_point: id.hex(), time: snap.time.clone(), paths });
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

fn check_pack(repo: &Repository, pack: &Id, entries: &[BlobEntry], size: Option<u64>) -> (u64, u64, Vec<BadBlob>) {
    let bad = |e: &BlobEntry, detail: String| BadBlob {
        kind: format!("{:?}", e.kind).to_lowercase(),
        id: e.id.hex(),
        pack: pack.hex(),
        detail,
    };
    let Some(_) = size else {
        return (0, 0, entries.iter().map(|e| bad(e, "pack is missing".into())).collect());
    };
    let data = match repo.backend().get(&format::pack_key(pack)) {
        Ok(d) => d,
        Err(err) => return (0, 0, entries.iter().map(|e| bad(e, err.to_string())).collect()),
    };
    let mut problems = Vec::new();
    for e in entries {
        let (start, end) = (e.loc.offset as usize, e.loc.offset as usize + e.loc.stored_len as usize);
        let result = match data.get(start..end) {
            Some(sealed) => repo.decode_blob(e.kind, &e.id, &e.loc, sealed).map(|_| ()).map_err(|err| err.to_string()),
            None => Err("pack is shorter than the index says".into()),
        };
        if let Err(detail) = result {
            problems.push(bad(e, detail));
        }
    }
    (entries.len() as u64, data.len() as u64, problems)
}

/// Paths of `snap` that depend on a bad blob.
fn affected_paths(repo: &Repository, snap: &Snapshot, bad: &HashSet<String>) -> Result<Vec<String>, RepoError> {
    if bad.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = BTreeSet::new();
    let mut segments: HashMap<Id, bool> = HashMap::new();
    let damaged = |node: &Node, segments: &mut HashMap<Id, bool>| -> bool {
        node.content.iter().any(|s| {
            *segments.entry(s.id).or_insert_with(|| {
                bad.contains(&s.id.hex())
                    || match repo.read_segment(&s.id) {
                        Ok(chunks) => chunks.iter().any(|c| bad.contains(&c.blob.hex())),
                        Err(_) => true,
                    }
            })
        })
    };
    match snap.root.subtree {
        Some(tree) => {
            let mut unreadable = BTreeSet::new();
            let mut files = BTreeSet::new();
            walk(
                repo,
                &tree,
                "",
                bad,
                &mut |path, node| {
                    if node.kind == Some(NodeKind::File) && damaged(node, &mut segments) {
                        files.insert(path.to_string());
                    }
                },
                &mut unreadable,
            );
            out.extend(files);
            out.extend(unreadable);
        }
        None => {
            if damaged(&snap.root, &mut segments) {
                out.insert(snap.path.clone());
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// Walks trees, collecting directories whose listing is unreadable (everything below
/// them is lost with them).
fn walk(
    repo: &Repository,
    tree: &Id,
    rel: &str,
    bad: &HashSet<String>,
    f: &mut dyn FnMut(&str, &Node),
    unreadable: &mut BTreeSet<String>,
) {
    let listing = if bad.contains(&tree.hex()) { Err(()) } else { repo.read_tree(tree).map_err(|_| ()) };
    let Ok(t) = listing else {
        unreadable.insert(if rel.is_empty() { "/".into() } else { format!("{rel}/") });
        return;
    };
    for node in t.nodes {
        let path = super::backup::join_rel(rel, &source::name_of(&node).to_string_lossy());
        f(&path, &node);
        if let Some(sub) = node.subtree {
            walk(repo, &sub, &path, bad, f, unreadable);
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
        repo.decode_blob(e.kind, &e.id, &e.loc, sealed)?;
    }
    Ok(())
}
