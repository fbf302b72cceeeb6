//! Backup: walk a directory (or read one block image), skip files unchanged since the
//! parent restore point without reading them, and store the content of the others as
//! chunks and segments.
//!
//! Within a file the work is parallel: the calling thread reads, workers cut the read
//! blocks into chunks (the calling thread only joins their cuts across blocks, see
//! [`Engine::start_content`]), hash them and look them up; a segment whose id the index
//! knows costs nothing more; for a new segment, only chunks that are neither in the parent's version of the file
//! (a window around the same offset) nor stored earlier in this run are compressed,
//! encrypted and packed. So a database file with scattered 8 KiB page changes stores
//! little more than the changed chunks.
//!
//! Many small files: a large directory's entries are described and its small files read
//! by a scanner thread ahead of the walk; each small file is hashed on the walking thread
//! (a round trip to a worker cost more than hashing a few kilobytes), and the new chunks
//! of many files are stored together as one data blob ([`SmallBatch`]).

use super::format::{BlobKind, ChunkRef, Id, Node, NodeKind, SegRef, Snapshot, SourceKind, Summary};
use super::pack::Saver;
use super::{RepoError, Repository, source};
use crate::store::{read_once, read_spare};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// How the parent window reaches around the current offset.
const WINDOW: u64 = 64 << 20;
/// Chunks remembered across files of one run before the memory is reset: about 1 GiB of
/// recent new data, in about 6 MiB. Whole segments are deduplicated through the index
/// whatever this holds; it only catches chunks shared across segments (on the benchmark
/// data, 21 kB of 2.6 GB; at 1 << 17 it cost 25 MiB of peak memory).
const RUN_CHUNKS_CAP: usize = 1 << 15;
/// Segments of a file held in memory while their chunks are stored (the read blocks
/// bound their memory too). More than 3 kept the workers busier once cutting moved to
/// them: over a full backup of the `make bench` data, both cores went from 1.70 to 1.80
/// busy on average.
const MAX_PENDING_SEGMENTS: usize = 16;
const READ_BLOCK: usize = 2 << 20;
/// Read blocks in memory at once (chunks in flight hold them): bounds backup memory.
/// Eight: blocks now also wait to be cut by the workers ([`CUT_AHEAD`]); about 5 MiB
/// more peak RSS on a full backup than six.
const READ_BLOCKS: usize = 8;
/// Files of one directory whose last chunks may still be being stored while the next
/// files are read (the workers stay busy across small files).
pub(super) const MAX_PARKED: usize = 8;
/// A segment's new chunks are stored as data blobs of at most this many bytes (a segment
/// holds about 1 MiB, and up to 128 chunks of up to 128 KiB each).
const DATA_BLOB_MAX: usize = 2 << 20;
/// Chunks go to the workers in batches of about this many bytes: one message and one
/// wake-up per batch instead of per chunk.
const HASH_BATCH: usize = 256 << 10;
/// Files smaller than this are read into a buffer of their own size.
const SMALL_FILE: u64 = 1 << 20;
/// Files up to this size are stored through [`SmallBatch`]: read and hashed on the walking
/// thread, their new chunks gathered across files into one data blob.
pub(super) const BATCH_FILE: u64 = 64 << 10;
/// A batch is sent to the workers once its files hold about this many bytes (new chunks
/// or not: files whose content is known still wait in it for their tree).
const BATCH_BYTES: usize = 512 << 10;
/// Small files are read into buffers of this size, shared by many files.
const SMALL_BUF: usize = 1 << 20;
/// Batches with the workers at once (each holds its chunks' bytes until stored).
const BATCHES_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub tags: BTreeMap<String, String>,
    /// Parent restore point; `None` picks the newest one of the same host and path.
    pub parent: Option<Id>,
    pub host: Option<String>,
    /// Worker threads; 0 = one per CPU.
    pub workers: usize,
    /// Fail on an entry that vanishes or cannot be read while the backup runs, instead
    /// of leaving it out with a warning (counted and named in the summary).
    pub strict: bool,
}

/// What became of a file in the walk.
enum FileStep {
    /// Recorded (unchanged, or a further hard link).
    Done,
    /// Its content may still be being stored: settled later.
    Pending(Box<FileContent>),
    /// A small file whose new chunks are in the current [`SmallBatch`]: settled with it.
    Batched(SmallFile),
    /// It could not be opened (vanished, no permission): nothing was recorded.
    Unreadable(std::io::Error),
}

/// The parent's listing of a directory: its nodes, each kept as a [`Prev`], in name order
/// (as its tree keeps them), found by binary search. For 200,000 files in one directory
/// that is about 40 MB, where the nodes took 107 MB and a map of them keyed by name half
/// as much again.
#[derive(Default)]
pub(super) struct Listing(Vec<Prev>);

impl Listing {
    pub(super) fn new(mut nodes: Vec<Prev>) -> Self {
        // A tree is sorted by name bytes; one that is not (never written so) is sorted
        // here rather than found wanting.
        if !nodes.is_sorted_by(|a, b| a.name <= b.name) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Listing(nodes)
    }

    pub(super) fn get(&self, name: &std::ffi::OsStr) -> Option<&Prev> {
        use std::os::unix::ffi::OsStrExt;
        let want = name.as_bytes();
        self.0.binary_search_by(|n| n.name.as_ref().cmp(want)).ok().map(|i| &self.0[i])
    }
}

/// What a backup needs of an entry's previous version: whether it is unchanged
/// ([`unchanged`]), its content or its subtree.
pub(super) struct Prev {
    name: Box<[u8]>,
    pub(super) content: Box<[SegRef]>,
    pub(super) subtree: Option<Id>,
    pub(super) kind: Option<NodeKind>,
    hard_link: bool,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    ctime: i64,
    ctime_nsec: u32,
    inode: u64,
}

impl From<Node> for Prev {
    fn from(n: Node) -> Self {
        use std::os::unix::ffi::OsStringExt;
        let name = match n.name_b64 {
            Some(_) => source::name_of(&n).into_vec(),
            None => n.name.into_bytes(),
        };
        Prev {
            name: name.into_boxed_slice(),
            content: n.content.into_boxed_slice(),
            subtree: n.subtree,
            kind: n.kind,
            hard_link: n.hardlink_to.is_some(),
            size: n.size,
            mtime: n.mtime,
            mtime_nsec: n.mtime_nsec,
            ctime: n.ctime,
            ctime_nsec: n.ctime_nsec,
            inode: n.inode,
        }
    }
}

/// Decoded node by node: a whole [`Node`] exists only one at a time.
impl<'de> serde::Deserialize<'de> for Prev {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Node::deserialize(d).map(Prev::from)
    }
}

/// A directory's tree is compressed in frames of about this many bytes of JSON as its
/// nodes are written, once it outgrows one frame (see [`TreeOut`]).
const TREE_FRAME: usize = 1 << 20;

/// A directory's tree as the walk writes it. A node waits here only while its content is
/// still being stored; then it is serialized (the same JSON as the whole [`Tree`]'s),
/// hashed, and, once a frame's worth is written, compressed as one zstd frame. A zstd
/// decoder outputs the concatenation of consecutive frames, so readers see one tree
/// blob; its plaintext and its nodes are never all in memory. For 200,000 files in one
/// directory, the nodes took about 80 MB and the JSON 65 MB at once; the compressed
/// frames are a fraction of that.
pub(super) struct TreeOut {
    /// Index of `waiting`'s first node among the directory's nodes.
    base: usize,
    /// Nodes not yet serialized, in order, and whether each still waits for its content.
    waiting: VecDeque<(Node, bool)>,
    /// Serialized nodes not yet compressed (starts with the tree's opening).
    plain: Vec<u8>,
    /// Compressed frames so far.
    frames: Vec<u8>,
    /// Hashes what the frames hold (its count is their plaintext's length).
    hasher: blake3::Hasher,
    level: i32,
}

impl TreeOut {
    pub(super) fn new(repo: &Repository) -> Self {
        let mut plain = Vec::with_capacity(4 << 10);
        plain.extend_from_slice(b"{\"nodes\":[");
        TreeOut {
            base: 0,
            waiting: VecDeque::new(),
            plain,
            frames: Vec::new(),
            hasher: repo.chunker().id_hasher(),
            level: repo.config().zstd_level,
        }
    }

    /// Index the next pushed node will have.
    pub(super) fn next_index(&self) -> usize {
        self.base + self.waiting.len()
    }

    pub(super) fn push(&mut self, node: Node, waits: bool) -> Result<(), RepoError> {
        self.waiting.push_back((node, waits));
        self.write_ready()
    }

    /// Gives node `i` its stored content.
    fn settle(&mut self, i: usize, content: Vec<SegRef>) {
        if let Some((node, waits)) = i.checked_sub(self.base).and_then(|at| self.waiting.get_mut(at)) {
            node.content = content;
            *waits = false;
        }
    }

    /// Serializes the nodes before the first one still waiting.
    fn write_ready(&mut self) -> Result<(), RepoError> {
        while self.waiting.front().is_some_and(|(_, waits)| !waits) {
            let Some((node, _)) = self.waiting.pop_front() else { break };
            if self.base > 0 {
                self.plain.push(b',');
            }
            serde_json::to_writer(&mut self.plain, &node).map_err(RepoError::encode)?;
            self.base += 1;
            if self.plain.len() >= TREE_FRAME {
                self.compress_frame()?;
            }
        }
        Ok(())
    }

    fn compress_frame(&mut self) -> Result<(), RepoError> {
        self.hasher.update(&self.plain);
        let mut frame = Vec::new();
        // A frame is valid whether or not it shrank; tree JSON always does.
        super::pack::compress_parts(&[self.plain.as_slice()], self.level, &mut frame);
        if frame.is_empty() {
            return Err(RepoError::Invalid("compressing a tree failed".into()));
        }
        self.frames.extend_from_slice(&frame);
        self.plain.clear();
        Ok(())
    }
}

/// Paths longer than this are reached through an open handle of their directory
/// (`/proc/self/fd/N/…`), so a tree of any depth backs up and restores.
pub(super) const LONG_PATH: usize = 3000;

/// An I/O path for `path` (a directory) that stays short: `path` itself, or, when it is
/// long, the handle of the open directory (kept alive by the returned file).
pub(super) fn short_dir(path: &Path) -> std::io::Result<(PathBuf, Option<std::fs::File>)> {
    use std::os::fd::AsRawFd;
    if path.as_os_str().len() <= LONG_PATH {
        return Ok((path.to_path_buf(), None));
    }
    let f = std::fs::File::open(path)?;
    Ok((PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())), Some(f)))
}

/// Live counters, for progress reporting.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub new_bytes: AtomicU64,
}

/// Chunks known to exist, consulted by workers.
#[derive(Default)]
struct Known {
    /// Chunks of the parent's version of the current file, within the window.
    parent: HashMap<Id, (ChunkRef, u32)>,
    /// Chunks stored or met earlier in this run.
    run: HashMap<Id, ChunkRef>,
}

impl Known {
    fn get(&self, id: &Id) -> Option<ChunkRef> {
        self.parent.get(id).map(|(c, _)| *c).or_else(|| self.run.get(id).copied())
    }
}

/// A chunk to store: its id, its bytes, and the read block they were cut from, if known
/// (consecutive chunks of one block are compressed from the block in one piece, see
/// [`runs`]).
type NewChunk = (Id, Bytes, Option<Bytes>);

enum Job {
    /// Hash consecutive chunks of a file, the first being number `seq`, all cut from
    /// `block` when it is given.
    Hash { seq: u64, chunks: Vec<Bytes>, block: Option<Bytes> },
    /// Cut a file's read block number `number` into chunks as if one started at its
    /// beginning (to the end if `last`, else while a maximal chunk fits) and hash them:
    /// see [`Engine::start_content`].
    Cut { number: u64, block: Bytes, last: bool },
    /// Store the new chunks of one segment as one data blob.
    Store { chunks: Vec<NewChunk> },
}

enum Done {
    /// A [`Job::Hash`]'s chunks, in order.
    Hashed {
        seq: u64,
        chunks: Vec<SegChunk>,
    },
    /// A [`Job::Cut`]'s chunks, and where they stop in the block.
    Cut {
        number: u64,
        chunks: Vec<SegChunk>,
        end: usize,
    },
    Stored {
        chunks: Vec<ChunkRef>,
    },
    Failed(RepoError),
}

pub(super) struct Engine {
    repo: Arc<Repository>,
    saver: Arc<Saver>,
    known: Arc<RwLock<Known>>,
    jobs: Option<SyncSender<(Job, Sender<Done>)>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Segments and trees saved in this run (not yet in the index).
    saved_meta: Mutex<HashMap<Id, ()>>,
    hardlinks: HashMap<(u64, u64), String>,
    pub(super) summary: Summary,
    progress: Arc<Progress>,
    /// Read blocks, reused once every chunk cut from them is done.
    blocks: Arc<super::buffers::Pool>,
    /// See [`BackupOptions::strict`].
    strict: bool,
    /// The backed-up path, for messages.
    root: PathBuf,
    /// Files of the current directory whose last chunks may still be being stored while
    /// the next files are read, with their place in the directory's tree.
    parked: VecDeque<(usize, FileContent)>,
    /// Parked files finished outside [`Engine::settle`], for it to put into the tree.
    settled: Vec<(usize, Vec<SegRef>)>,
    /// Small files gathered for one data blob, and the batches with the workers.
    batch: SmallBatch,
    batches: VecDeque<SentBatch>,
    /// Where small files are read to (see [`read_small`]).
    small_buf: bytes::BytesMut,
}

/// New chunks of several small files, stored as one data blob: one compression window and
/// one seal for many files, instead of a zstd frame per few kilobytes (which cost more
/// than the compression itself and compressed worse).
#[derive(Default)]
struct SmallBatch {
    /// The files, with their place in the directory's tree.
    files: Vec<(usize, SmallFile)>,
    chunks: Vec<NewChunk>,
    /// Chunks in `chunks`, so a chunk two files share is stored once.
    ids: HashSet<Id>,
    bytes: usize,
}

/// A batch with the workers: where its result arrives, and its files with their place in
/// the directory's tree.
type SentBatch = (Receiver<Done>, Vec<(usize, SmallFile)>);

/// A small file's segments, each with its id.
pub(super) struct SmallFile {
    segments: Vec<(Id, Vec<SmallChunk>)>,
}

/// A chunk's id, length and, when known, where it is stored.
type SmallChunk = (Id, u32, Option<ChunkRef>);

/// Runs a backup of `path` and records a restore point.
pub fn run(
    repo: Arc<Repository>,
    path: &Path,
    opts: &BackupOptions,
    progress: Arc<Progress>,
) -> Result<(Id, Snapshot), RepoError> {
    let started = Instant::now();
    let (lock, excluded) = super::prune::register_writer(&repo, "backup")?;
    repo.load_index(&excluded)?;
    recover_unindexed(&repo, &excluded)?;
    let host = opts.host.clone().unwrap_or_else(super::keys::hostname);
    // Recorded absolute, so runs from any directory find the same parent.
    let path = &std::fs::canonicalize(path).map_err(|e| RepoError::io("find", path, e))?;
    let path_str = path.display().to_string();
    let parent = match opts.parent {
        Some(id) => Some((id, repo.read_snapshot(&id)?)),
        None => repo.points()?.good.into_iter().rev().find(|(_, s)| s.host == host && s.path == path_str),
    };
    let mut engine = Engine::start(repo.clone(), opts.workers, progress);
    engine.strict = opts.strict;
    engine.root = path.clone();
    let meta = std::fs::metadata(path).map_err(|e| RepoError::io("read", path, e))?;
    let parent_root = parent.as_ref().map(|(_, s)| &s.root);
    let (root, kind) = if meta.is_dir() {
        let mut root = source::node_from(path.file_name().unwrap_or_default(), path, &meta)?;
        let tree = engine.dir(path, "", parent_root.and_then(|n| n.subtree))?;
        root.subtree = Some(tree.ok_or_else(|| RepoError::Invalid(format!("cannot list {}", path.display())))?);
        (root, SourceKind::Filesystem)
    } else {
        let mut root = source::node_from(path.file_name().unwrap_or_default(), path, &meta)?;
        root.kind = Some(NodeKind::File);
        let parent_content = parent_root.map(|n| n.content.as_slice()).unwrap_or_default();
        let (content, size) = engine.content(path, parent_content)?;
        root.content = content;
        root.size = size;
        engine.summary.files += 1;
        (root, SourceKind::Block)
    };
    let stats = engine.finish()?;
    let mut summary = engine.summary.clone();
    summary.new_bytes = stats.raw_bytes;
    summary.stored_bytes = stats.stored_bytes;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let snap = Snapshot {
        version: super::format::VERSION,
        time: jiff::Timestamp::now().to_string(),
        host,
        path: path_str,
        source: kind,
        tags: opts.tags.clone(),
        parent: parent.map(|(id, _)| id),
        root,
        summary,
        program: format!("lifeline {}", env!("CARGO_PKG_VERSION")),
    };
    let id = super::prune::commit_point(&repo, &lock, &snap)?;
    Ok((id, snap))
}

/// Packs no index lists (an interrupted run uploaded them but never indexed them):
/// index them now, so their segments and trees are reused.
pub(super) fn recover_unindexed(repo: &Repository, excluded: &HashSet<Id>) -> Result<(), RepoError> {
    let indexed = repo.indexed_packs();
    let listing = repo.backend().list("data/")?;
    let stored: HashSet<Id> = listing.iter().filter_map(|o| o.key.rsplit('/').next().and_then(Id::parse)).collect();
    let mut batch = Vec::new();
    for obj in listing {
        let Some(id) = obj.key.rsplit('/').next().and_then(Id::parse) else { continue };
        if indexed.contains(&id) || excluded.contains(&id) {
            continue;
        }
        match super::pack::read_pack_header(repo, &id, obj.size) {
            Ok(entries) => {
                // A segment is only usable if every pack its chunks are in made it.
                let entries: Vec<_> = entries
                    .into_iter()
                    .filter(|e| {
                        e.kind != BlobKind::Segment
                            || repo
                                .read_blob(e.kind, &e.id, &e.loc)
                                .ok()
                                .and_then(|raw| super::format::decode_segment(&raw).ok())
                                .is_some_and(|chunks| {
                                    chunks
                                        .iter()
                                        .all(|c| stored.contains(&c.loc.pack) && !excluded.contains(&c.loc.pack))
                                })
                    })
                    .collect();
                batch.push((id, entries));
            }
            Err(e) => tracing::warn!(pack = %id.short(), error = %e, "unreadable unindexed pack ignored"),
        }
    }
    if !batch.is_empty() {
        tracing::info!(packs = batch.len(), "indexed packs left by an interrupted run");
        repo.write_index(&batch)?;
    }
    Ok(())
}

impl Engine {
    pub(super) fn start(repo: Arc<Repository>, workers: usize, progress: Arc<Progress>) -> Self {
        let n = if workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) } else { workers };
        // Two packs in flight: remote uploads overlap their latency, and local packs are
        // written with O_DIRECT, which waits for the device.
        let uploads = 2;
        let saver = Saver::new(repo.clone(), uploads);
        let known = Arc::new(RwLock::new(Known::default()));
        let (tx, rx) = sync_channel::<(Job, Sender<Done>)>(32);
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..n)
            .map(|i| {
                let (rx, repo, saver, known) = (rx.clone(), repo.clone(), saver.clone(), known.clone());
                std::thread::Builder::new()
                    .name(format!("lifeline-chunk-{i}"))
                    .spawn(move || worker(&rx, &repo, &saver, &known))
                    .expect("failed to spawn a worker thread")
            })
            .collect();
        Self {
            repo,
            saver,
            known,
            jobs: Some(tx),
            workers: handles,
            saved_meta: Mutex::default(),
            hardlinks: HashMap::new(),
            summary: Summary::default(),
            progress,
            blocks: super::buffers::Pool::with_limit(READ_BLOCK, READ_BLOCKS, READ_BLOCKS),
            parked: VecDeque::new(),
            settled: Vec::new(),
            batch: SmallBatch::default(),
            batches: VecDeque::new(),
            small_buf: bytes::BytesMut::new(),
            strict: false,
            root: PathBuf::new(),
        }
    }

    /// An entry that vanished or cannot be read: left out with a warning, or the end of
    /// the run when strict.
    fn skip(&mut self, rel: &str, action: &'static str, e: std::io::Error) -> Result<(), RepoError> {
        let shown = self.root.join(rel);
        if self.strict {
            return Err(RepoError::io(action, &shown, e));
        }
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "vanished during the backup".to_string()
        } else {
            e.to_string()
        };
        tracing::warn!(path = %shown.display(), reason = %reason, "left out of the restore point");
        self.summary.skipped += 1;
        if self.summary.skipped_paths.len() < 100 {
            self.summary.skipped_paths.push(format!("{rel}: {reason}"));
        }
        Ok(())
    }

    pub(super) fn finish(&mut self) -> Result<super::pack::SaveStats, RepoError> {
        self.jobs.take();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        self.saver.finish()
    }

    pub(super) fn repo(&self) -> Arc<Repository> {
        self.repo.clone()
    }

    /// Saves a segment or tree unless it exists.
    pub(super) fn save_meta(&self, kind: BlobKind, id: Id, plain: &[u8]) -> Result<(), RepoError> {
        self.save_meta_with_deps(kind, id, plain, Vec::new())
    }

    fn save_meta_with_deps(&self, kind: BlobKind, id: Id, plain: &[u8], deps: Vec<Id>) -> Result<(), RepoError> {
        self.save_meta_once(id, || self.saver.save_with_deps(kind, id, plain, deps))
    }

    /// Runs `save` for a tree or segment that neither the repository nor this run has yet.
    fn save_meta_once(
        &self,
        id: Id,
        save: impl FnOnce() -> Result<super::format::BlobLoc, RepoError>,
    ) -> Result<(), RepoError> {
        if self.repo.lookup(&id).is_some() {
            return Ok(());
        }
        let mut saved = self.saved_meta.lock().unwrap_or_else(|e| e.into_inner());
        if saved.insert(id, ()).is_none() {
            drop(saved);
            save()?;
        }
        Ok(())
    }

    pub(super) fn meta_exists(&self, id: &Id) -> bool {
        self.repo.lookup(id).is_some() || self.saved_meta.lock().unwrap_or_else(|e| e.into_inner()).contains_key(id)
    }

    /// Backs up a directory's entries; returns its tree id, or `None` if the directory
    /// vanished or cannot be listed (it is then left out, see [`Engine::skip`]). `dir` is
    /// the path to use for I/O (short, see [`short_dir`]); `rel` names it.
    fn dir(&mut self, dir: &Path, rel: &str, parent_tree: Option<Id>) -> Result<Option<Id>, RepoError> {
        let parent = match parent_tree.map(|id| self.repo.read_tree_as::<super::format::TreeOf<Prev>>(&id)) {
            Some(Ok(t)) => Listing::new(t.nodes),
            // The parent only saves reading: without its listing the directory is read
            // and stored in full (a prune removed the parent since it was chosen).
            Some(Err(e))
                if matches!(&e, RepoError::MissingBlob { .. })
                    || matches!(&e, RepoError::Store(s) if s.is_not_found()) =>
            {
                tracing::warn!(dir = %rel, error = %e, "the parent's listing is gone; this directory is read in full");
                Listing::default()
            }
            Some(Err(e)) => return Err(e),
            None => Listing::default(),
        };
        let listed = std::fs::read_dir(dir).and_then(|it| it.collect::<Result<Vec<_>, _>>());
        let mut entries = match listed {
            Ok(entries) => entries,
            Err(e) if rel.is_empty() => return Err(RepoError::io("list", dir, e)),
            Err(e) => {
                self.skip(rel, "list", e)?;
                return Ok(None);
            }
        };
        entries.sort_by_key(|e| e.file_name());
        // Shared with the scanner rather than copied (for 200,000 files, 10 MB).
        let entries = Arc::new(entries);
        let mut tree = TreeOut::new(&self.repo);
        self.summary.dirs += 1;
        let parent = Arc::new(parent);
        let mut scanner =
            if entries.len() >= SCAN_MIN { Scanner::start(entries.clone(), parent.clone()) } else { None };
        let mut ahead = ReadAhead::default();
        for (at, entry) in entries.iter().enumerate() {
            let looked = match &mut scanner {
                Some(scanner) => scanner.take(at),
                None => {
                    ahead.advise(&entries, at, &parent);
                    ahead.node(at).map(|(node, file)| (node, file, None))
                }
            };
            let name = entry.file_name();
            let path = entry.path();
            let child_rel = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            let (mut node, opened, read) = match looked {
                Some(looked) => looked,
                None => {
                    let described = std::fs::symlink_metadata(&path).and_then(|meta| {
                        source::node_from(&name, &path, &meta).map_err(|e| match e {
                            RepoError::Io { source, .. } => source,
                            other => std::io::Error::other(other.to_string()),
                        })
                    });
                    match described {
                        Ok(node) => (node, None, None),
                        Err(e) => {
                            self.skip(&child_rel, "read", e)?;
                            continue;
                        }
                    }
                }
            };
            let old = parent.get(&name);
            let mut waits = false;
            match node.kind {
                Some(NodeKind::Dir) => {
                    self.settle(&mut tree, 0)?;
                    let (io, _handle) = match short_dir(&path) {
                        Ok(short) => short,
                        Err(e) => {
                            self.skip(&child_rel, "open", e)?;
                            continue;
                        }
                    };
                    match self.dir(&io, &child_rel, old.and_then(|o| o.subtree))? {
                        Some(sub) => node.subtree = Some(sub),
                        None => continue,
                    }
                }
                Some(NodeKind::File) => match self.file(&path, opened, read, &child_rel, &mut node, old)? {
                    FileStep::Pending(fc) => {
                        self.parked.push_back((tree.next_index(), *fc));
                        waits = true;
                    }
                    FileStep::Batched(sf) => {
                        self.batch.files.push((tree.next_index(), sf));
                        waits = true;
                    }
                    FileStep::Done => {}
                    FileStep::Unreadable(e) => {
                        self.skip(&child_rel, "open", e)?;
                        continue;
                    }
                },
                _ => {}
            }
            tree.push(node, waits)?;
            self.settle(&mut tree, MAX_PARKED)?;
        }
        self.settle(&mut tree, 0)?;
        // A large directory's listing and parent are let go of before its tree's last
        // frame is compressed and sealed (for 200,000 files in one directory, each of
        // them is tens of MiB).
        drop(scanner);
        drop(entries);
        drop(parent);
        self.save_tree(tree).map(Some)
    }

    /// Seals a directory's written tree: as one blob compressed here when it is small,
    /// else as the frames compressed while it was written.
    pub(super) fn save_tree(&self, mut tree: TreeOut) -> Result<Id, RepoError> {
        if !tree.waiting.is_empty() {
            // Never a tree short of entries: every file's content is settled by now.
            return Err(RepoError::Invalid(format!(
                "{} entries of a directory still wait for their content",
                tree.waiting.len()
            )));
        }
        tree.plain.extend_from_slice(b"]}");
        if tree.frames.is_empty() {
            let id = self.repo.chunker().id(&tree.plain);
            self.save_meta(BlobKind::Tree, id, &tree.plain)?;
            return Ok(id);
        }
        tree.compress_frame()?;
        let id = Id(*tree.hasher.finalize().as_bytes());
        self.save_meta_once(id, || self.saver.save_compressed(BlobKind::Tree, id, tree.hasher.count(), &tree.frames))?;
        Ok(id)
    }

    /// Finishes parked files that are done, and waits for the oldest ones until at most
    /// `keep` remain; their content goes into their tree nodes.
    pub(super) fn settle(&mut self, tree: &mut TreeOut, keep: usize) -> Result<(), RepoError> {
        let tx = self.jobs.clone().ok_or_else(|| RepoError::Invalid("backup engine stopped".into()))?;
        if self.batch.bytes >= BATCH_BYTES || (keep == 0 && !self.batch.files.is_empty()) {
            self.send_batch(&tx)?;
        }
        self.receive_batches(if keep == 0 { 0 } else { BATCHES_IN_FLIGHT })?;
        let mut parked = std::mem::take(&mut self.parked);
        for (_, fc) in parked.iter_mut() {
            fc.drain(self, &tx, false)?;
        }
        while let Some((i, mut fc)) = parked.pop_front() {
            if parked.len() < keep && !fc.finished() {
                parked.push_front((i, fc));
                break;
            }
            fc.wait(self, &tx)?;
            self.settled.push((i, fc.content));
        }
        self.parked = parked;
        for (i, content) in self.settled.drain(..) {
            tree.settle(i, content);
        }
        tree.write_ready()
    }

    /// Sends the gathered small files' new chunks to the workers as one data blob (or,
    /// when none is new, finishes the files at once).
    fn send_batch(&mut self, tx: &SyncSender<(Job, Sender<Done>)>) -> Result<(), RepoError> {
        let batch = std::mem::take(&mut self.batch);
        let (done_tx, done_rx) = channel();
        if batch.chunks.is_empty() {
            return self.finish_batch(batch.files, &[]);
        }
        tx.send((Job::Store { chunks: batch.chunks }, done_tx))
            .map_err(|_| RepoError::Invalid("backup workers stopped".into()))?;
        self.batches.push_back((done_rx, batch.files));
        Ok(())
    }

    /// Waits for the oldest batches until at most `keep` are with the workers.
    fn receive_batches(&mut self, keep: usize) -> Result<(), RepoError> {
        while self.batches.len() > keep {
            let Some((rx, files)) = self.batches.pop_front() else { break };
            match rx.recv() {
                Ok(Done::Stored { chunks }) => {
                    self.remember_stored(&chunks);
                    self.finish_batch(files, &chunks)?;
                }
                Ok(Done::Failed(e)) => return Err(e),
                Ok(Done::Hashed { .. } | Done::Cut { .. }) | Err(_) => {
                    return Err(RepoError::Invalid("backup workers stopped".into()));
                }
            }
        }
        Ok(())
    }

    /// Chunks the workers stored: known to the rest of the run, and counted.
    fn remember_stored(&self, chunks: &[ChunkRef]) {
        let mut k = self.known.write().unwrap_or_else(|e| e.into_inner());
        if k.run.len() >= RUN_CHUNKS_CAP {
            k.run.clear();
        }
        for c in chunks {
            k.run.insert(c.id, *c);
            self.progress.new_bytes.fetch_add(u64::from(c.len), Relaxed);
        }
    }

    /// Saves a segment's recipe unless the repository has it; `recipe` gives each chunk's
    /// place, all known once the segment's new chunks are stored.
    fn save_segment(&self, id: Id, recipe: impl Iterator<Item = Option<ChunkRef>>) -> Result<(), RepoError> {
        if self.meta_exists(&id) {
            return Ok(());
        }
        let recipe = recipe
            .collect::<Option<Vec<ChunkRef>>>()
            .ok_or_else(|| RepoError::Invalid("internal: a stored segment lacks a chunk location".into()))?;
        let deps: Vec<Id> = recipe.iter().map(|c| c.loc.pack).collect();
        self.save_meta_with_deps(BlobKind::Segment, id, &super::format::encode_segment(&recipe), deps)
    }

    /// Records the segments of a batch's files, now that every chunk is stored.
    fn finish_batch(&mut self, files: Vec<(usize, SmallFile)>, stored: &[ChunkRef]) -> Result<(), RepoError> {
        let by_id: HashMap<Id, ChunkRef> = stored.iter().map(|c| (c.id, *c)).collect();
        for (i, file) in files {
            let mut content = Vec::with_capacity(file.segments.len());
            for (id, chunks) in file.segments {
                self.save_segment(id, chunks.iter().map(|(c, _, known)| known.or_else(|| by_id.get(c).copied())))?;
                content.push(SegRef { id, size: chunks.iter().map(|(_, len, _)| u64::from(*len)).sum() });
            }
            self.settled.push((i, content));
        }
        Ok(())
    }

    /// Adds a small file (see [`Engine::small_file`]) that is node `i` of `tree`'s
    /// directory to the batch; it is settled with the batch.
    pub(super) fn batch_file(&mut self, i: usize, file: SmallFile) {
        self.batch.files.push((i, file));
    }

    /// A small file's content (read whole by [`read_small`]), hashed here; its new chunks
    /// join the batch.
    pub(super) fn small_file(&mut self, data: Bytes) -> SmallFile {
        self.summary.bytes_read += data.len() as u64;
        self.progress.bytes_done.fetch_add(data.len() as u64, Relaxed);
        self.batch.bytes += data.len();
        let chunker = self.repo.chunker();
        let mut segments: Vec<Vec<SmallChunk>> = vec![Vec::new()];
        let mut pieces = Vec::new();
        let mut pos = 0;
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        while pos < data.len() {
            let len = chunker.cut(&data[pos..]);
            let piece = data.slice(pos..pos + len);
            pos += len;
            let id = chunker.id(&piece);
            let seg = segments.last_mut().expect("a segment is open");
            seg.push((id, len as u32, known.get(&id)));
            pieces.push(piece);
            if chunker.ends_segment(&id, seg.len()) && pos < data.len() {
                segments.push(Vec::new());
            }
        }
        drop(known);
        let mut pieces = pieces.into_iter();
        let mut file = SmallFile { segments: Vec::with_capacity(segments.len()) };
        for seg in segments {
            let key: Vec<(Id, u32)> = seg.iter().map(|(id, len, _)| (*id, *len)).collect();
            let id = chunker.segment_id(&key);
            // A segment the repository has (the same content under another name or time)
            // needs none of its chunks stored.
            let exists = self.meta_exists(&id);
            for ((chunk, _, found), piece) in seg.iter().zip(pieces.by_ref()) {
                if !exists && found.is_none() && self.batch.ids.insert(*chunk) {
                    self.batch.chunks.push((*chunk, piece, None));
                }
            }
            file.segments.push((id, seg));
        }
        file
    }

    /// A read block for `fc`, the file being read. When all are out, chunks cut from them
    /// are held by parked files and by `fc`'s results, which only this thread handles
    /// (waiting for a block without handling them would wait forever): the oldest parked
    /// file is finished first, then `fc`'s results are handled. Only when nothing is in
    /// flight (the open segments themselves hold every block) does the read go over the
    /// limit.
    fn take_block(&mut self, fc: &mut FileContent, tx: &SyncSender<(Job, Sender<Done>)>) -> Result<Vec<u8>, RepoError> {
        loop {
            if let Some(block) = self.blocks.try_take() {
                return Ok(block);
            }
            if let Some((i, mut parked)) = self.parked.pop_front() {
                parked.wait(self, tx)?;
                self.settled.push((i, parked.content));
            } else if fc.outstanding() {
                fc.drain(self, tx, true)?;
            } else {
                return Ok(self.blocks.take());
            }
        }
    }

    /// Backs up a file. It is counted (and becomes the target of later hard links to it)
    /// only once it is known to be readable or unchanged.
    fn file(
        &mut self,
        path: &Path,
        opened: Option<std::fs::File>,
        read: Option<Bytes>,
        rel: &str,
        node: &mut Node,
        old: Option<&Prev>,
    ) -> Result<FileStep, RepoError> {
        let link = (node.nlink > 1).then_some((node.device, node.inode));
        if let Some(first) = link.and_then(|k| self.hardlinks.get(&k)).cloned() {
            node.hardlink_to = Some(first);
            self.count(node);
            return Ok(FileStep::Done);
        }
        let reuse = old.filter(|o| unchanged(o, node) && o.content.iter().all(|s| self.meta_exists(&s.id)));
        let file = match reuse {
            Some(_) => None,
            None => match opened.map_or_else(|| std::fs::File::open(path), Ok) {
                Ok(f) => Some(f),
                Err(e) => return Ok(FileStep::Unreadable(e)),
            },
        };
        if let Some(k) = link {
            self.hardlinks.insert(k, rel.to_string());
        }
        self.count(node);
        let Some(mut file) = file else {
            node.content = reuse.map(|o| o.content.to_vec()).unwrap_or_default();
            self.summary.unchanged_files += 1;
            self.progress.bytes_done.fetch_add(node.size, Relaxed);
            return Ok(FileStep::Done);
        };
        let parent_content = old.filter(|o| o.kind == Some(NodeKind::File)).map(|o| &o.content[..]).unwrap_or_default();
        if node.size > 0 && node.size <= BATCH_FILE {
            let data = match read {
                Some(data) => Some(data),
                None => {
                    read_small(&mut file, &mut self.small_buf, node.size).map_err(|e| RepoError::io("read", path, e))?
                }
            };
            // `None`: it grew since it was described; it is read the ordinary way.
            if let Some(data) = data {
                node.size = data.len() as u64;
                return Ok(FileStep::Batched(self.small_file(data)));
            }
        }
        // A small file is read in one go (and was announced by the read-ahead).
        let mut reader = if node.size < SMALL_FILE { Prefetch::plain(file) } else { Prefetch::new(file) };
        let (fc, size) = self.start_content(&mut reader, path, parent_content, node.size)?;
        node.size = size;
        Ok(FileStep::Pending(Box::new(fc)))
    }

    fn count(&mut self, node: &Node) {
        self.summary.files += 1;
        self.summary.bytes += node.size;
        self.progress.files.fetch_add(1, Relaxed);
        self.progress.bytes_total.fetch_add(node.size, Relaxed);
    }

    /// Stores a file's content; returns its segments and length.
    fn content(&mut self, path: &Path, parent: &[SegRef]) -> Result<(Vec<SegRef>, u64), RepoError> {
        let file = std::fs::File::open(path).map_err(|e| RepoError::io("open", path, e))?;
        self.stored_content(&mut Prefetch::new(file), path, parent)
    }

    /// Stores content read from `reader` (named `path` in messages).
    pub(super) fn content_from(
        &mut self,
        reader: &mut dyn Read,
        path: &Path,
        parent: &[SegRef],
    ) -> Result<(Vec<SegRef>, u64), RepoError> {
        self.stored_content(&mut AnyReader(reader), path, parent)
    }

    fn stored_content(
        &mut self,
        reader: &mut dyn Fill,
        path: &Path,
        parent: &[SegRef],
    ) -> Result<(Vec<SegRef>, u64), RepoError> {
        let (mut fc, size) = self.start_content(reader, path, parent, 0)?;
        let tx = self.jobs.clone().ok_or_else(|| RepoError::Invalid("backup engine stopped".into()))?;
        fc.wait(self, &tx)?;
        Ok((fc.content, size))
    }

    /// Reads all of `reader` and stores its content; returns the file's assembly, whose
    /// last segments may still be being stored, and the content's length.
    ///
    /// Cutting is shared with the workers. Blocks are read one after the other (no
    /// overlap) and each is sent at once to a worker, which cuts and hashes it as if a
    /// chunk started at its beginning (a guess, [`Job::Cut`]). This thread follows the true
    /// chunking: from the uncut end of the blocks before (`tail`), it cuts across into the
    /// block itself until one of its cuts meets one of the guess's; from there on the
    /// guess's chunks are the true ones, since where a chunk ends depends only on where it
    /// starts and the bytes after. That takes a chunk or two per block here, instead of
    /// the whole block (cutting was most of this thread's time, and the thread was the
    /// backup's bottleneck on incompressible data). Where cuts never meet (a run of zeros
    /// has every chunk at the maximal length, offset from the guess's), this thread cuts
    /// the block as before, and guesses pause for a while ([`GUESS_RETRY`]).
    fn start_content(
        &mut self,
        reader: &mut dyn Fill,
        path: &Path,
        parent: &[SegRef],
        size_hint: u64,
    ) -> Result<(FileContent, u64), RepoError> {
        let tx = self.jobs.clone().ok_or_else(|| RepoError::Invalid("backup engine stopped".into()))?;
        let mut window = ParentWindow::new(parent);
        let (done_tx, done_rx) = channel();
        let mut fc = FileContent::new(path, done_rx, done_tx);
        let mut cuts = TrueCuts::default();
        // Blocks read and not yet cut here, in order, with whether a worker guesses them.
        let mut ahead: VecDeque<(u64, Bytes, bool)> = VecDeque::new();
        let (mut read_at, mut eof, mut number) = (0u64, false, 0u64);
        // Blocks still to read without a guess, after a guess that missed.
        let mut pause = 0;
        loop {
            while !eof && ahead.len() < CUT_AHEAD {
                // A small file gets a buffer of its own size, so that while it waits to be
                // stored it does not hold a whole read block. Blocks after the first are
                // only read while one is free: a block's results are handled in order here,
                // so waiting for a block with earlier ones unhandled would wait forever.
                let small = read_at == 0 && size_hint > 0 && size_hint < SMALL_FILE;
                let mut block = if small {
                    Vec::with_capacity(size_hint as usize + 1)
                } else if ahead.is_empty() {
                    self.take_block(&mut fc, &tx)?
                } else {
                    match self.blocks.try_take() {
                        Some(block) => block,
                        None => break,
                    }
                };
                // A small file is read whole, and one byte more to see its end (or that it grew).
                let want = if small { size_hint as usize + 1 } else { READ_BLOCK };
                let n = reader.fill(&mut block, want).map_err(|e| RepoError::io("read", path, e))?;
                eof = n < want;
                self.summary.bytes_read += n as u64;
                let block = if small { Bytes::from(block) } else { self.blocks.freeze(block) };
                if n == 0 {
                    break;
                }
                window.advance(self, read_at)?;
                read_at += n as u64;
                // The first block starts with a chunk: its guess is the truth.
                let guessed = number == 0 || pause == 0;
                if !guessed {
                    pause -= 1;
                }
                if guessed {
                    fc.guessing += 1;
                    tx.send((Job::Cut { number, block: block.clone(), last: eof }, fc.reply.clone()))
                        .map_err(|_| RepoError::Invalid("backup workers stopped".into()))?;
                }
                ahead.push_back((number, block, guessed));
                number += 1;
            }
            let Some((number, block, guessed)) = ahead.pop_front() else { break };
            let last = eof && ahead.is_empty();
            let guess = if guessed {
                loop {
                    if let Some(g) = fc.guesses.remove(&number) {
                        break Some(g);
                    }
                    fc.drain(self, &tx, true)?;
                }
            } else {
                None
            };
            if cuts.follow(self, &mut fc, &tx, block, last, guess)? {
                pause = GUESS_RETRY;
            }
            fc.drain(self, &tx, false)?;
            while fc.pending.len() >= MAX_PENDING_SEGMENTS {
                fc.drain(self, &tx, true)?;
            }
        }
        // The last block was full and the stream ended just after it: its uncut end is
        // cut as the end.
        if !cuts.tail.is_empty() {
            cuts.follow(self, &mut fc, &tx, Bytes::new(), true, None)?;
        }
        // The last segment is matched against the parent's chunks before they are forgotten.
        fc.seal(self, &tx)?;
        window.clear(self);
        Ok((fc, cuts.offset))
    }
}

/// Blocks guessed ahead of the one being cut on the reading thread (see
/// [`Engine::start_content`]).
const CUT_AHEAD: usize = 4;
/// Blocks of a file read without a guess after a guess that never met the true cuts.
const GUESS_RETRY: usize = 8;

/// The true chunking of one file's stream, followed block by block.
#[derive(Default)]
struct TrueCuts {
    /// The end of the blocks so far that is not yet cut (shorter than a maximal chunk).
    tail: Bytes,
    /// Where in the stream `tail` starts: the bytes cut so far.
    offset: u64,
}

impl TrueCuts {
    /// Cuts through `block`, the next stretch of the stream (`last`: the stream ends with
    /// it), starting at the tail, on this thread until a cut meets a cut of `guess` (the
    /// block's chunks, cut and hashed by a worker as if a chunk started at the block's
    /// beginning, and where they stop); then takes the guess's chunks from there. Hands
    /// every chunk to `fc` in order. Returns whether there was a guess and the cuts missed
    /// it.
    fn follow(
        &mut self,
        e: &Engine,
        fc: &mut FileContent,
        tx: &SyncSender<(Job, Sender<Done>)>,
        block: Bytes,
        last: bool,
        guess: Option<(Vec<SegChunk>, usize)>,
    ) -> Result<bool, RepoError> {
        let chunker = e.repo.chunker();
        let max = chunker.params().max as usize;
        if !last && block.len() < max {
            // Too short to cut across (only a grown small file's first block is): it
            // joins the tail.
            self.tail = [&self.tail[..], &block[..]].concat().into();
            return Ok(false);
        }
        let mut own = OwnChunks::default();
        // Where the true chunking continues in `block`.
        let mut at = 0;
        if !self.tail.is_empty() {
            // The tail and enough of the block to cut past the boundary, in one buffer
            // (at most two maximal chunks).
            let reach = block.len().min(max);
            let mut joined = Vec::with_capacity(self.tail.len() + reach);
            joined.extend_from_slice(&self.tail);
            joined.extend_from_slice(&block[..reach]);
            let joined = Bytes::from(joined);
            let mut pos = 0;
            while pos < self.tail.len() {
                let len = chunker.cut(&joined[pos..]);
                own.push(fc, tx, joined.slice(pos..pos + len), &joined)?;
                pos += len;
            }
            own.flush(e, fc, tx, &joined)?;
            at = pos - self.tail.len();
        }
        let guessed = guess.is_some();
        let (mut chunks, end) = guess.unwrap_or_default();
        // The guess's chunk that starts at or after `at`, and where it starts.
        let (mut next, mut start) = (0, 0);
        let met = loop {
            while next < chunks.len() && start < at {
                start += chunks[next].len as usize;
                next += 1;
            }
            if guessed && start == at && (next < chunks.len() || start == end) {
                break true;
            }
            if at >= block.len() || (!last && block.len() - at < max) {
                break false;
            }
            let len = chunker.cut(&block[at..]);
            own.push(fc, tx, block.slice(at..at + len), &block)?;
            at += len;
        };
        own.flush(e, fc, tx, &block)?;
        if met {
            let taken: Vec<SegChunk> = chunks.drain(next..).collect();
            if !taken.is_empty() {
                let seq = fc.number(taken.len());
                fc.handle(e, tx, Done::Hashed { seq, chunks: taken })?;
            }
            at = end;
        }
        let cut = (self.tail.len() + at) as u64;
        self.offset += cut;
        e.progress.bytes_done.fetch_add(cut, Relaxed);
        self.tail = block.slice(at..);
        Ok(guessed && !met)
    }
}

/// Chunks cut on the reading thread, handed to the file in order: hashed by the workers
/// in batches of [`HASH_BATCH`] bytes, and the last few here.
#[derive(Default)]
struct OwnChunks {
    batch: Vec<Bytes>,
    bytes: usize,
}

impl OwnChunks {
    /// Adds a chunk cut from `block`.
    fn push(
        &mut self,
        fc: &mut FileContent,
        tx: &SyncSender<(Job, Sender<Done>)>,
        chunk: Bytes,
        block: &Bytes,
    ) -> Result<(), RepoError> {
        self.bytes += chunk.len();
        self.batch.push(chunk);
        if self.bytes >= HASH_BATCH {
            let chunks = std::mem::take(&mut self.batch);
            self.bytes = 0;
            let seq = fc.number(chunks.len());
            tx.send((Job::Hash { seq, chunks, block: Some(block.clone()) }, fc.reply.clone()))
                .map_err(|_| RepoError::Invalid("backup workers stopped".into()))?;
        }
        Ok(())
    }

    /// Hashes the chunks not yet sent (cut from `block`) here and hands them to `fc`.
    fn flush(
        &mut self,
        e: &Engine,
        fc: &mut FileContent,
        tx: &SyncSender<(Job, Sender<Done>)>,
        block: &Bytes,
    ) -> Result<(), RepoError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.batch);
        self.bytes = 0;
        let seq = fc.number(chunks.len());
        let chunks = hash_chunks(&e.repo, &e.known, chunks, Some(block.clone()));
        fc.handle(e, tx, Done::Hashed { seq, chunks })
    }
}

/// The next small files of a directory that will be read, announced to the kernel: on a
/// cold page cache their data is read from disk while the current files are cut (one
/// reading thread would otherwise wait for each small file in turn). The entries it looks
/// at are described once, here, for the directory walk to take ([`ReadAhead::node`]).
#[derive(Default)]
struct ReadAhead {
    next: usize,
    advised: VecDeque<(usize, u64)>,
    bytes: u64,
    /// Nodes of the entries looked at and not yet taken, by entry index, with the files
    /// opened to announce them (the walk reads them through these handles).
    nodes: VecDeque<(usize, Node, Option<std::fs::File>)>,
}

/// How far ahead: files, bytes, and the largest file announced whole (a larger one reads
/// ahead as it is read).
const AHEAD_FILES: usize = 64;
const AHEAD_BYTES: u64 = 16 << 20;
const AHEAD_MAX_FILE: u64 = 4 << 20;

impl ReadAhead {
    fn advise(&mut self, entries: &[std::fs::DirEntry], at: usize, parent: &Listing) {
        while let Some(&(i, len)) = self.advised.front() {
            if i >= at {
                break;
            }
            self.bytes -= len;
            self.advised.pop_front();
        }
        self.next = self.next.max(at);
        while self.next < entries.len() && self.next < at + AHEAD_FILES && self.bytes < AHEAD_BYTES {
            let i = self.next;
            self.next += 1;
            let (path, name) = (entries[i].path(), entries[i].file_name());
            let Some((node, read)) = look(&name, &path, parent) else { continue };
            let size = node.size;
            if !read || size > AHEAD_MAX_FILE {
                self.nodes.push_back((i, node, None));
                continue;
            }
            let opened = open_announced(&path);
            if opened.is_some() {
                self.advised.push_back((i, size));
                self.bytes += size;
            }
            self.nodes.push_back((i, node, opened));
        }
    }

    /// The node of entry `at`, if it was looked at, and the file if it was opened.
    fn node(&mut self, at: usize) -> Option<(Node, Option<std::fs::File>)> {
        while self.nodes.front().is_some_and(|(i, _, _)| *i < at) {
            self.nodes.pop_front();
        }
        match self.nodes.front() {
            Some((i, _, _)) if *i == at => self.nodes.pop_front().map(|(_, n, f)| (n, f)),
            _ => None,
        }
    }
}

/// An entry looked at ahead of the walk: its node, and whether its content is to be read
/// (a non-empty regular file, changed since the parent; unchanged ones are not read at
/// all). `None` when it cannot be described: the walk tries again and reports why.
fn look(name: &std::ffi::OsStr, path: &Path, parent: &Listing) -> Option<(Node, bool)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let node = source::node_from(name, path, &meta).ok()?;
    let read = node.kind == Some(NodeKind::File)
        && node.size > 0
        && !parent.get(name).is_some_and(|old| unchanged(old, &node));
    Some((node, read))
}

/// A file opened and announced to the kernel, which starts reading it in the background.
fn open_announced(path: &Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).ok()?;
    // SAFETY: a valid descriptor; advice only.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
    }
    Some(f)
}

/// Directories with at least this many entries are described and read by a [`Scanner`].
const SCAN_MIN: usize = 16;
/// Entries a scanner hands over at once, at most, and how many such lots wait.
const SCAN_LOT: usize = 32;
const SCAN_LOTS: usize = 2;
/// A lot is handed over once it announced this many bytes of larger files to the kernel,
/// or holds this many bytes of small files' content.
const SCAN_ADVISED: u64 = 4 << 20;
const SCAN_READ: usize = 256 << 10;

/// One entry as a scanner saw it: its node (`None`: it could not be described; the walk
/// tries again and reports why), the file opened, and a small file's whole content.
struct Scanned {
    at: usize,
    node: Option<Node>,
    file: Option<std::fs::File>,
    data: Option<Bytes>,
}

/// A large directory's entries described (`lstat`, extended attributes) and its small
/// files read, in order, on a thread of its own while the walk hashes and stores what came
/// before: with many small files, those system calls were most of the walking thread's
/// time, and the walk was the backup's bottleneck.
struct Scanner {
    rx: Receiver<Vec<Scanned>>,
    items: VecDeque<Scanned>,
}

impl Scanner {
    fn start(entries: Arc<Vec<std::fs::DirEntry>>, parent: Arc<Listing>) -> Option<Self> {
        let (tx, rx) = sync_channel(SCAN_LOTS);
        std::thread::Builder::new().name("lifeline-scan".into()).spawn(move || scan(entries, &parent, &tx)).ok()?;
        Some(Self { rx, items: VecDeque::new() })
    }

    /// Entry `at` (entries are taken in order), if the scanner could describe it.
    fn take(&mut self, at: usize) -> Option<(Node, Option<std::fs::File>, Option<Bytes>)> {
        loop {
            while self.items.front().is_some_and(|s| s.at < at) {
                self.items.pop_front();
            }
            if let Some(front) = self.items.front() {
                if front.at != at {
                    return None;
                }
                let s = self.items.pop_front()?;
                return s.node.map(|n| (n, s.file, s.data));
            }
            self.items.extend(self.rx.recv().ok()?);
        }
    }
}

fn scan(entries: Arc<Vec<std::fs::DirEntry>>, parent: &Listing, tx: &SyncSender<Vec<Scanned>>) {
    let mut buf = bytes::BytesMut::new();
    let mut lot = Vec::with_capacity(SCAN_LOT);
    let (mut advised, mut read_bytes) = (0, 0);
    for (at, entry) in entries.iter().enumerate() {
        let (name, path) = (entry.file_name(), entry.path());
        let mut item = Scanned { at, node: None, file: None, data: None };
        if let Some((node, read)) = look(&name, &path, parent) {
            let size = node.size;
            if read && size <= BATCH_FILE {
                if let Ok(mut f) = std::fs::File::open(&path) {
                    match read_small(&mut f, &mut buf, size) {
                        Ok(Some(data)) => {
                            read_bytes += data.len();
                            item.data = Some(data);
                        }
                        Ok(None) => item.file = Some(f),
                        // Left to the walk, which reports it.
                        Err(_) => {}
                    }
                }
            } else if read
                && size <= AHEAD_MAX_FILE
                && let Some(f) = open_announced(&path)
            {
                advised += size;
                item.file = Some(f);
            }
            item.node = Some(node);
        }
        lot.push(item);
        if lot.len() >= SCAN_LOT || advised >= SCAN_ADVISED || read_bytes >= SCAN_READ {
            // The walk stopped (an error): so does the scan.
            if tx.send(std::mem::replace(&mut lot, Vec::with_capacity(SCAN_LOT))).is_err() {
                return;
            }
            (advised, read_bytes) = (0, 0);
        }
    }
    let _ = tx.send(lot);
}

/// A file read ahead of the reader: the kernel is asked for the next stretch while the
/// current one is cut and hashed, so cold data arrives while the CPU works.
struct Prefetch {
    file: std::fs::File,
    pos: u64,
    advised: u64,
}

const PREFETCH: u64 = 16 << 20;

impl Prefetch {
    fn new(file: std::fs::File) -> Self {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor; advice only.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
        let mut p = Self { file, pos: 0, advised: 0 };
        p.advise();
        p
    }

    /// Without advice: reads as they come.
    fn plain(file: std::fs::File) -> Self {
        Self { file, pos: 0, advised: u64::MAX }
    }

    fn advise(&mut self) {
        use std::os::fd::AsRawFd;
        if self.pos + PREFETCH / 2 >= self.advised {
            let from = self.advised.max(self.pos);
            // SAFETY: a valid descriptor; advice only.
            unsafe {
                libc::posix_fadvise(self.file.as_raw_fd(), from as i64, PREFETCH as i64, libc::POSIX_FADV_WILLNEED);
            }
            self.advised = from + PREFETCH;
        }
    }
}

/// A source of content: appends up to `want` bytes to `buf`, fewer only at the end.
trait Fill {
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize>;
}

impl Fill for Prefetch {
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
        let mut got = 0;
        while got < want {
            let n = read_once(&self.file, buf, want - got)?;
            if n == 0 {
                break;
            }
            got += n;
            self.pos += n as u64;
            self.advise();
        }
        Ok(got)
    }
}

/// Reads a small file of `size` bytes (as described) whole, into the shared buffer `buf`
/// (empty between files):
/// many files' contents share one allocation, freed once all are stored (an allocation
/// per file, freed on another thread, made the threads queue on the allocator's lock).
/// One read when the file is still `size` bytes; `None` (and the file rewound) when it
/// grew.
fn read_small(file: &mut std::fs::File, buf: &mut bytes::BytesMut, size: u64) -> std::io::Result<Option<Bytes>> {
    let want = size as usize + 1;
    if buf.capacity() - buf.len() < want {
        buf.reserve(want.max(SMALL_BUF));
    }
    let mut got = 0;
    loop {
        let n = match read_spare(file, buf.spare_capacity_mut(), want - got) {
            Ok(n) => n,
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        };
        // SAFETY: `read_spare` wrote the `n` bytes after the old length.
        unsafe { buf.set_len(buf.len() + n) };
        got += n;
        // Its described size read in one go: its end (a file that grows past it after
        // being described is as if it changed after the backup).
        if n == 0 || got as u64 == size || got == want {
            break;
        }
    }
    if got == want {
        use std::io::Seek;
        buf.clear();
        file.rewind()?;
        return Ok(None);
    }
    Ok(Some(buf.split().freeze()))
}

/// Any reader (content read from another repository, for example).
struct AnyReader<'a>(&'a mut dyn Read);

impl Fill for AnyReader<'_> {
    fn fill(&mut self, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
        self.0.take(want as u64).read_to_end(buf)
    }
}

/// A file is unchanged if its content-relevant metadata is: size, mtime, ctime, inode.
fn unchanged(old: &Prev, new: &Node) -> bool {
    old.kind == Some(NodeKind::File)
        && old.size == new.size
        && old.mtime == new.mtime
        && old.mtime_nsec == new.mtime_nsec
        && old.ctime == new.ctime
        && old.ctime_nsec == new.ctime_nsec
        && old.inode == new.inode
        && !old.hard_link
}

fn worker(rx: &Mutex<Receiver<(Job, Sender<Done>)>>, repo: &Repository, saver: &Saver, known: &RwLock<Known>) {
    loop {
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((job, reply)) = next else { return };
        let done = match job {
            Job::Hash { seq, chunks, block } => Done::Hashed { seq, chunks: hash_chunks(repo, known, chunks, block) },
            Job::Cut { number, block, last } => {
                let (chunks, end) = cut_block(repo, &block, last);
                Done::Cut { number, chunks: hash_chunks(repo, known, chunks, Some(block)), end }
            }
            Job::Store { chunks } => match store_blob(repo, saver, &chunks) {
                Ok(refs) => Done::Stored { chunks: refs },
                Err(e) => Done::Failed(e),
            },
        };
        let _ = reply.send(done);
    }
}

/// `block` cut into chunks from its start, to its end if `last`, else while a maximal
/// chunk fits; returns them and where they stop.
fn cut_block(repo: &Repository, block: &Bytes, last: bool) -> (Vec<Bytes>, usize) {
    let max = repo.chunker().params().max as usize;
    let (mut chunks, mut pos) = (Vec::new(), 0);
    while pos < block.len() && (last || block.len() - pos >= max) {
        let len = repo.chunker().cut(&block[pos..]);
        chunks.push(block.slice(pos..pos + len));
        pos += len;
    }
    (chunks, pos)
}

/// Hashes chunks and looks them up among the chunks known to exist.
fn hash_chunks(repo: &Repository, known: &RwLock<Known>, chunks: Vec<Bytes>, block: Option<Bytes>) -> Vec<SegChunk> {
    let ids: Vec<Id> = chunks.iter().map(|d| repo.chunker().id(d)).collect();
    let k = known.read().unwrap_or_else(|e| e.into_inner());
    let chunks = ids
        .into_iter()
        .zip(chunks)
        .map(|(id, data)| {
            let known = k.get(&id);
            let len = data.len() as u32;
            SegChunk { id, len, known, data: known.is_none().then(|| (data, block.clone())) }
        })
        .collect();
    drop(k);
    chunks
}

/// Stores consecutive new chunks as one data blob (one compression window, one seal).
fn store_blob(repo: &Repository, saver: &Saver, chunks: &[NewChunk]) -> Result<Vec<ChunkRef>, RepoError> {
    let lens: Vec<u32> = chunks.iter().map(|(_, d, _)| d.len() as u32).collect();
    let head = super::format::encode_data_header(&lens);
    let header = head.len() as u32;
    let runs = runs(chunks);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(runs.len() + 1);
    parts.push(&head);
    parts.extend(runs.iter().map(|r| &r[..]));
    let key: Vec<(Id, u32)> = chunks.iter().map(|(id, d, _)| (*id, d.len() as u32)).collect();
    let blob = repo.chunker().data_blob_id(&key);
    let loc = saver.save_parts(BlobKind::Chunk, blob, &parts)?;
    let mut offset = header;
    Ok(chunks
        .iter()
        .map(|(id, d, _)| {
            let r = ChunkRef { id: *id, blob, loc, offset, len: d.len() as u32 };
            offset += d.len() as u32;
            r
        })
        .collect())
}

/// The chunks' bytes as few pieces: consecutive chunks that lie one after the other in
/// the same read block become one slice of it, so a data blob (up to 2 MiB) is
/// compressed straight from its read block instead of being copied into one buffer
/// first (that copy was a tenth of the CPU time on incompressible data).
fn runs(chunks: &[NewChunk]) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = Vec::with_capacity(2);
    // The open run: its block and where it starts and ends in it.
    let mut open: Option<(&Bytes, usize, usize)> = None;
    for (_, data, block) in chunks {
        // Where the chunk lies in its block (it was cut from it).
        let at = block.as_ref().and_then(|b| {
            let start = (data.as_ptr() as usize).checked_sub(b.as_ptr() as usize)?;
            (start + data.len() <= b.len()).then_some((b, start))
        });
        match (open, at) {
            (Some((b, s, e)), Some((cb, start))) if b.as_ptr() == cb.as_ptr() && start == e => {
                open = Some((b, s, e + data.len()));
            }
            _ => {
                if let Some((b, s, e)) = open.take() {
                    out.push(b.slice(s..e));
                }
                match at {
                    Some((b, start)) => open = Some((b, start, start + data.len())),
                    None => out.push(data.clone()),
                }
            }
        }
    }
    if let Some((b, s, e)) = open {
        out.push(b.slice(s..e));
    }
    out
}

/// The parent's chunks around the current offset.
struct ParentWindow<'a> {
    segs: &'a [SegRef],
    starts: Vec<u64>,
    /// Index of the next parent segment to load, and of the oldest loaded one.
    next: usize,
    loaded: VecDeque<(usize, Vec<ChunkRef>)>,
    prefetched: HashMap<Id, Vec<ChunkRef>>,
}

impl<'a> ParentWindow<'a> {
    fn new(segs: &'a [SegRef]) -> Self {
        let mut starts = Vec::with_capacity(segs.len());
        let mut pos = 0;
        for s in segs {
            starts.push(pos);
            pos += s.size;
        }
        Self { segs, starts, next: 0, loaded: VecDeque::new(), prefetched: HashMap::new() }
    }

    fn advance(&mut self, e: &Engine, offset: u64) -> Result<(), RepoError> {
        while self.next < self.segs.len() && self.starts[self.next] < offset + WINDOW {
            // Fetch the recipes of the next stretch of the parent with few requests.
            if self.prefetched.is_empty() {
                let end = (self.next + 64).min(self.segs.len());
                let ids: Vec<Id> = self.segs[self.next..end].iter().map(|s| s.id).collect();
                self.prefetched = e.repo.read_segments(&ids).unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "parent segments unreadable; their chunks will be stored again");
                    HashMap::new()
                });
            }
            let seg = self.segs[self.next];
            let chunks = self.prefetched.get(&seg.id).cloned().unwrap_or_default();
            if self.next + 1 < self.segs.len() && !self.prefetched.contains_key(&self.segs[self.next + 1].id) {
                self.prefetched.clear();
            }
            // Chunks in packs a prune has marked are not built on: they are stored again.
            let chunks: Vec<ChunkRef> = chunks.into_iter().filter(|c| !e.repo.is_excluded(&c.loc.pack)).collect();
            let mut k = e.known.write().unwrap_or_else(|e| e.into_inner());
            for c in &chunks {
                k.parent.entry(c.id).or_insert((*c, 0)).1 += 1;
            }
            drop(k);
            self.loaded.push_back((self.next, chunks));
            self.next += 1;
        }
        while let Some((i, _)) = self.loaded.front() {
            let end = self.starts[*i] + self.segs[*i].size;
            if end + WINDOW >= offset {
                break;
            }
            let (_, chunks) = self.loaded.pop_front().unwrap_or_default();
            forget(e, &chunks);
        }
        Ok(())
    }

    fn clear(&mut self, e: &Engine) {
        for (_, chunks) in self.loaded.drain(..) {
            forget(e, &chunks);
        }
    }
}

fn forget(e: &Engine, chunks: &[ChunkRef]) {
    let mut k = e.known.write().unwrap_or_else(|e| e.into_inner());
    for c in chunks {
        if let Some(entry) = k.parent.get_mut(&c.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                k.parent.remove(&c.id);
            }
        }
    }
}

/// One chunk of a segment under construction.
struct SegChunk {
    id: Id,
    len: u32,
    known: Option<ChunkRef>,
    /// The bytes and the read block they were cut from, kept only while the chunk is not
    /// known to be stored.
    data: Option<(Bytes, Option<Bytes>)>,
}

struct PendingSegment {
    chunks: Vec<SegChunk>,
    missing: usize,
    /// The segment is already stored: nothing to write.
    exists: bool,
}

/// The in-order assembly of one file's chunks into segments.
struct FileContent {
    path: std::path::PathBuf,
    rx: Receiver<Done>,
    /// Where the workers answer this file's jobs.
    reply: Sender<Done>,
    sent: u64,
    next: u64,
    /// Hashed batches that arrived before an earlier one, by first sequence number.
    reorder: BTreeMap<u64, Vec<SegChunk>>,
    current: Vec<SegChunk>,
    pending: VecDeque<PendingSegment>,
    /// Sequence number of `pending[0]`.
    base: u64,
    /// Chunks being stored, and the segment slots waiting for them.
    inflight: HashMap<Id, Vec<(u64, usize)>>,
    content: Vec<SegRef>,
    /// [`Job::Cut`]s sent and not yet answered, and the answers not yet used.
    guessing: usize,
    guesses: HashMap<u64, (Vec<SegChunk>, usize)>,
}

impl FileContent {
    fn new(path: &Path, rx: Receiver<Done>, reply: Sender<Done>) -> Self {
        Self {
            path: path.to_path_buf(),
            rx,
            reply,
            sent: 0,
            next: 0,
            reorder: BTreeMap::new(),
            current: Vec::new(),
            pending: VecDeque::new(),
            base: 0,
            inflight: HashMap::new(),
            content: Vec::new(),
            guessing: 0,
            guesses: HashMap::new(),
        }
    }

    /// Sequence numbers for the file's next `n` chunks (their order in the file); returns
    /// the first.
    fn number(&mut self, n: usize) -> u64 {
        let first = self.sent;
        self.sent += n as u64;
        first
    }

    fn outstanding(&self) -> bool {
        self.next < self.sent || !self.inflight.is_empty() || self.guessing > 0
    }

    /// Everything of this file is stored and its segments are recorded.
    fn finished(&self) -> bool {
        !self.outstanding() && self.pending.is_empty()
    }

    /// Handles finished jobs; blocks for one if `wait`.
    fn drain(&mut self, e: &Engine, tx: &SyncSender<(Job, Sender<Done>)>, wait: bool) -> Result<(), RepoError> {
        let mut first = wait;
        loop {
            let msg = if first {
                first = false;
                match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => return Err(RepoError::Invalid("backup workers stopped".into())),
                }
            } else {
                match self.rx.try_recv() {
                    Ok(m) => m,
                    Err(_) => return Ok(()),
                }
            };
            self.handle(e, tx, msg)?;
        }
    }

    fn handle(&mut self, e: &Engine, tx: &SyncSender<(Job, Sender<Done>)>, msg: Done) -> Result<(), RepoError> {
        match msg {
            Done::Failed(err) => return Err(err),
            Done::Hashed { seq, chunks } => {
                self.reorder.insert(seq, chunks);
                while let Some(batch) = self.reorder.remove(&self.next) {
                    self.next += batch.len() as u64;
                    for c in batch {
                        let id = c.id;
                        self.current.push(c);
                        if e.repo.chunker().ends_segment(&id, self.current.len()) {
                            self.close_segment(e, tx)?;
                        }
                    }
                }
            }
            Done::Cut { number, chunks, end } => {
                self.guessing -= 1;
                self.guesses.insert(number, (chunks, end));
            }
            Done::Stored { chunks } => {
                e.remember_stored(&chunks);
                for c in &chunks {
                    for (s, i) in self.inflight.remove(&c.id).unwrap_or_default() {
                        if let Some(p) = self.pending.get_mut((s - self.base) as usize) {
                            p.chunks[i].known = Some(*c);
                            p.chunks[i].data = None;
                            p.missing -= 1;
                        }
                    }
                }
                self.finish_ready(e)?;
            }
        }
        Ok(())
    }

    /// Ends the current segment: reuse it if known, else store its unknown chunks as
    /// one data blob.
    fn close_segment(&mut self, e: &Engine, tx: &SyncSender<(Job, Sender<Done>)>) -> Result<(), RepoError> {
        let mut chunks = std::mem::take(&mut self.current);
        if chunks.is_empty() {
            return Ok(());
        }
        let key: Vec<(Id, u32)> = chunks.iter().map(|c| (c.id, c.len)).collect();
        let seg_id = e.repo.chunker().segment_id(&key);
        let seq = self.base + self.pending.len() as u64;
        let mut missing = 0;
        let exists = e.meta_exists(&seg_id);
        let mut new_chunks: Vec<NewChunk> = Vec::new();
        if !exists {
            let known = e.known.read().unwrap_or_else(|e| e.into_inner());
            for (i, c) in chunks.iter_mut().enumerate() {
                if c.known.is_none() {
                    c.known = known.get(&c.id);
                }
                if c.known.is_some() {
                    c.data = None;
                    continue;
                }
                missing += 1;
                let waiting = self.inflight.entry(c.id).or_default();
                waiting.push((seq, i));
                if waiting.len() == 1
                    && let Some((data, block)) = c.data.take()
                {
                    new_chunks.push((c.id, data, block));
                }
            }
        } else {
            chunks.iter_mut().for_each(|c| c.data = None);
        }
        // A long segment's new chunks become several data blobs: each is compressed in
        // one call from one buffer (see `pack::compress_parts`), and the workers share
        // the segment's work instead of one of them taking all of it.
        let store = |chunks| {
            tx.send((Job::Store { chunks }, self.reply.clone()))
                .map_err(|_| RepoError::Invalid("backup workers stopped".into()))
        };
        let (mut blob, mut bytes) = (Vec::new(), 0);
        for chunk in new_chunks {
            if !blob.is_empty() && bytes + chunk.1.len() > DATA_BLOB_MAX {
                store(std::mem::take(&mut blob))?;
                bytes = 0;
            }
            bytes += chunk.1.len();
            blob.push(chunk);
        }
        if !blob.is_empty() {
            store(blob)?;
        }
        self.pending.push_back(PendingSegment { chunks, missing, exists });
        self.finish_ready(e)
    }

    /// Writes the recipes of leading segments whose chunks are all stored.
    fn finish_ready(&mut self, e: &Engine) -> Result<(), RepoError> {
        while self.pending.front().is_some_and(|p| p.missing == 0) {
            let Some(p) = self.pending.pop_front() else { break };
            self.base += 1;
            let key: Vec<(Id, u32)> = p.chunks.iter().map(|c| (c.id, c.len)).collect();
            let seg_id = e.repo.chunker().segment_id(&key);
            let size: u64 = p.chunks.iter().map(|c| c.len as u64).sum();
            if !p.exists {
                e.save_segment(seg_id, p.chunks.iter().map(|c| c.known))?;
            }
            self.content.push(SegRef { id: seg_id, size });
        }
        Ok(())
    }

    /// Waits for the hashes of the last chunks and ends the last segment.
    fn seal(&mut self, e: &Engine, tx: &SyncSender<(Job, Sender<Done>)>) -> Result<(), RepoError> {
        while self.next < self.sent {
            self.drain(e, tx, true)?;
        }
        self.close_segment(e, tx)
    }

    /// Waits until everything of this (sealed) file is stored.
    fn wait(&mut self, e: &Engine, tx: &SyncSender<(Job, Sender<Done>)>) -> Result<(), RepoError> {
        while !self.finished() {
            if !self.outstanding() {
                return Err(RepoError::Invalid(format!(
                    "internal: segments of {} left unfinished",
                    self.path.display()
                )));
            }
            self.drain(e, tx, true)?;
        }
        Ok(())
    }
}

/// Paths of a restore point's files, for messages: joins relative paths.
pub fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Secret;
    use crate::store::{LocationOptions, open};

    /// A parent's listing finds every entry by its name's bytes, also names that are not
    /// UTF-8 (kept in base64) and in a listing that was not sorted.
    #[test]
    fn a_parent_listing_finds_entries_by_name_bytes() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let names: [&[u8]; 4] = [b"zeta", b"\xffodd", b"alpha", b"m\xc3\xa9"];
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut node = Node { size: i as u64, kind: Some(NodeKind::File), ..Node::default() };
                source::set_name(&mut node, OsStr::from_bytes(n));
                Prev::from(node)
            })
            .collect();
        let listing = Listing::new(nodes);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(listing.get(OsStr::from_bytes(n)).map(|p| p.size), Some(i as u64), "{n:?}");
        }
        assert!(listing.get(OsStr::new("beta")).is_none());
        assert!(listing.get(OsStr::from_bytes(b"\xfe")).is_none());
    }

    /// A directory whose tree outgrows one frame is written as several zstd frames while
    /// the walk goes on; readers see exactly the JSON of the whole tree, under the id of
    /// that JSON, so an unchanged re-backup finds the same tree.
    #[test]
    fn a_large_directory_tree_is_written_in_frames_readers_see_as_one_tree() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let long = "n".repeat(120);
        for i in 0..6000 {
            // Small files (batched, so their nodes wait for their content), and some
            // larger ones (stored by the workers).
            let body = if i % 500 == 0 {
                crate::repo::chunker::tests::pseudo_random(200 << 10, i as u64 + 1)
            } else {
                format!("{i}").into_bytes()
            };
            std::fs::write(src.join(format!("{long}-{i:05}")), body).unwrap();
        }
        let url = format!("file://{}", dir.path().join("repo").display());
        let backend = open(&url, &LocationOptions { create: true, ..Default::default() }).unwrap();
        let secret = Secret::RawKey(zeroize::Zeroizing::new(vec![7; 32]));
        let repo = Arc::new(Repository::init(backend, &secret).unwrap());
        let (_, first) = run(repo.clone(), &src, &BackupOptions::default(), Arc::default()).unwrap();
        let id = first.root.subtree.unwrap();
        let loc = repo.lookup(&id).unwrap();
        let raw = repo.read_blob(BlobKind::Tree, &id, &loc).unwrap();
        assert!(raw.len() > 2 * TREE_FRAME, "a tree of {} bytes is not several frames", raw.len());
        assert!((loc.stored_len as usize) < raw.len() / 2, "{} bytes stored for {}", loc.stored_len, raw.len());
        // Stored as frames of about TREE_FRAME bytes of JSON each.
        let range = loc.offset as u64..loc.offset as u64 + loc.stored_len as u64;
        let sealed = repo.backend().get_range(&crate::repo::format::pack_key(&loc.pack), range).unwrap();
        let mut rest = &repo.cipher().open(&sealed, &crate::repo::blob_aad(BlobKind::Tree, &id)).unwrap()[..];
        let mut frames = 0;
        while !rest.is_empty() {
            rest = &rest[zstd::zstd_safe::find_frame_compressed_size(rest).unwrap()..];
            frames += 1;
        }
        assert!(
            frames > 1 && frames <= raw.len().div_ceil(TREE_FRAME),
            "{frames} frames of a tree of {} bytes",
            raw.len()
        );
        let tree = repo.read_tree(&id).unwrap();
        assert_eq!(serde_json::to_vec(&tree).unwrap(), raw);
        assert_eq!(repo.chunker().id(&raw), id);
        assert_eq!(tree.nodes.len(), 6000);
        for (i, node) in tree.nodes.iter().enumerate() {
            assert_eq!(node.name, format!("{long}-{i:05}"));
            assert!(!node.content.is_empty(), "{} has no content", node.name);
        }
        let (_, again) = run(repo.clone(), &src, &BackupOptions::default(), Arc::default()).unwrap();
        assert_eq!(again.root.subtree, Some(id));
    }

    /// A segment of more than `DATA_BLOB_MAX` bytes of new chunks is stored as several
    /// data blobs (each compressed in one call, from one buffer of bounded size), and its
    /// content reads back byte for byte from them.
    #[test]
    fn a_long_segment_is_stored_as_several_bounded_data_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let data = crate::repo::chunker::tests::pseudo_random(24 << 20, 0x2545_f491_4f6c_dd1d);
        std::fs::write(src.join("f"), &data).unwrap();
        let url = format!("file://{}", dir.path().join("repo").display());
        let backend = open(&url, &LocationOptions { create: true, ..Default::default() }).unwrap();
        let secret = Secret::RawKey(zeroize::Zeroizing::new(vec![7; 32]));
        // A fixed master key: the chunk ids, and so the segment boundaries, are the same
        // on every run.
        let master = crate::repo::crypto::MasterKey::from_bytes([9; 32]);
        let repo = Arc::new(Repository::init_with_master(backend, &secret, master).unwrap());
        let (_, snap) = run(repo.clone(), &src, &BackupOptions::default(), Arc::default()).unwrap();
        let tree = repo.read_tree(&snap.root.subtree.unwrap()).unwrap();
        let file = tree.nodes.iter().find(|n| n.name == "f").unwrap();
        let ids: Vec<Id> = file.content.iter().map(|s| s.id).collect();
        let segments = repo.read_segments(&ids).unwrap();
        let mut blobs: HashMap<Id, Vec<u8>> = HashMap::new();
        let (mut offset, mut split) = (0usize, 0);
        for seg in &file.content {
            let chunks = &segments[&seg.id];
            let seg_bytes: usize = chunks.iter().map(|c| c.len as usize).sum();
            let distinct: HashSet<Id> = chunks.iter().map(|c| c.blob).collect();
            if distinct.len() > 1 {
                assert!(seg_bytes > DATA_BLOB_MAX, "a segment of {seg_bytes} bytes split");
                split += 1;
            }
            for c in chunks {
                let blob =
                    blobs.entry(c.blob).or_insert_with(|| repo.read_blob(BlobKind::Chunk, &c.blob, &c.loc).unwrap());
                // The chunks, and a header of their lengths.
                assert!(blob.len() <= DATA_BLOB_MAX + 4096, "a data blob of {} bytes", blob.len());
                let at = c.offset as usize;
                assert!(blob[at..at + c.len as usize] == data[offset..offset + c.len as usize], "chunk at {offset}");
                offset += c.len as usize;
            }
        }
        assert_eq!(offset, data.len());
        assert!(split > 0, "no segment of this file was long enough to be split");
    }

    /// Consecutive chunks that lie one after the other in one read block become one slice
    /// of it; a chunk skipped between them, another block, or no block known splits them.
    #[test]
    fn chunks_adjacent_in_one_block_are_compressed_as_one_piece() {
        let id = |n: u8| Id([n; 32]);
        let block = Bytes::from((0..=255u8).cycle().take(4096).collect::<Vec<u8>>());
        let other = Bytes::from(vec![7u8; 1024]);
        let piece = |b: &Bytes, r: std::ops::Range<usize>| (id(r.start as u8), b.slice(r), Some(b.clone()));
        let chunks = vec![
            piece(&block, 0..100),
            piece(&block, 100..1000),
            piece(&block, 1000..1500),
            // 1500..2000 was known: not stored.
            piece(&block, 2000..4096),
            piece(&other, 0..1024),
            (id(9), block.slice(0..10), None),
        ];
        let runs = runs(&chunks);
        let got: Vec<&[u8]> = runs.iter().map(|r| &r[..]).collect();
        assert_eq!(got, [&block[0..1500], &block[2000..4096], &other[..], &block[0..10]]);
        // The pieces share the block's memory.
        assert_eq!(runs[0].as_ptr(), block.as_ptr());
    }

    /// Every read block out, held by chunks whose hashes the workers have answered but
    /// the reader has not handled yet: the reader must handle them to get a block back
    /// (waiting would never end; going over the limit would unbound memory).
    #[test]
    fn a_read_block_comes_back_from_results_only_the_reader_handles() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let backend = open(&url, &LocationOptions { create: true, ..Default::default() }).unwrap();
        let secret = Secret::RawKey(zeroize::Zeroizing::new(vec![7; 32]));
        let repo = Arc::new(Repository::init(backend, &secret).unwrap());
        let mut engine = Engine::start(repo, 1, Arc::default());
        let tx = engine.jobs.clone().unwrap();
        let (done_tx, done_rx) = channel();
        let mut fc = FileContent::new(Path::new("f"), done_rx, done_tx);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while let Some(mut block) = engine.blocks.try_take() {
            block.extend((0..READ_BLOCK).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }));
            let block = engine.blocks.freeze(block);
            let (chunks, _) = cut_block(&engine.repo, &block, true);
            let seq = fc.number(chunks.len());
            tx.send((Job::Hash { seq, chunks, block: Some(block.clone()) }, fc.reply.clone())).unwrap();
        }
        assert_eq!(engine.blocks.out(), READ_BLOCKS);
        let block = engine.take_block(&mut fc, &tx).unwrap();
        assert!(engine.blocks.out() <= READ_BLOCKS, "went over the limit instead of handling results");
        drop(block);
        fc.seal(&engine, &tx).unwrap();
        fc.wait(&engine, &tx).unwrap();
        drop(tx);
        engine.finish().unwrap();
    }

    /// The chunks of a file cut by the workers from guesses, joined on the reading thread,
    /// are exactly those of one sequential pass, whatever the stream: noise across many
    /// blocks, a run of zeros (where the guesses never meet the true cuts), a length that
    /// ends just after a full block, a small file that grew after it was described, and
    /// tiny and empty files.
    #[test]
    fn chunks_cut_from_guesses_are_those_of_one_pass() {
        use crate::repo::chunker::tests::pseudo_random;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let backend = open(&url, &LocationOptions { create: true, ..Default::default() }).unwrap();
        let secret = Secret::RawKey(zeroize::Zeroizing::new(vec![7; 32]));
        let repo = Arc::new(Repository::init(backend, &secret).unwrap());
        let mut engine = Engine::start(repo.clone(), 2, Arc::default());
        let tx = engine.jobs.clone().unwrap();
        let chunker = repo.chunker();
        let one_pass = |data: &[u8]| {
            let (mut segs, mut seg, mut pos) = (Vec::new(), Vec::new(), 0);
            while pos < data.len() {
                let len = chunker.cut(&data[pos..]);
                let id = chunker.id(&data[pos..pos + len]);
                seg.push((id, len as u32));
                pos += len;
                if chunker.ends_segment(&id, seg.len()) || pos == data.len() {
                    let size = seg.iter().map(|(_, l)| u64::from(*l)).sum();
                    segs.push(SegRef { id: chunker.segment_id(&seg), size });
                    seg.clear();
                }
            }
            segs
        };
        let mut mixed = pseudo_random(5 << 20, 1);
        mixed.extend(vec![0u8; 5 << 20]);
        mixed.extend(pseudo_random((3 << 20) + 12345, 2));
        let cases: Vec<(&str, Vec<u8>, u64)> = vec![
            ("noise, zeros, noise", mixed, 0),
            ("two full blocks", pseudo_random(2 * READ_BLOCK, 3), 0),
            ("a small file that grew", pseudo_random(300 << 10, 4), 100 << 10),
            ("a small file", pseudo_random(200 << 10, 5), 200 << 10),
            ("tiny", vec![1, 2, 3, 4, 5], 0),
            ("empty", Vec::new(), 0),
        ];
        for (name, data, hint) in cases {
            let mut reader = std::io::Cursor::new(data.clone());
            let (mut fc, size) = engine.start_content(&mut AnyReader(&mut reader), Path::new(name), &[], hint).unwrap();
            fc.wait(&engine, &tx).unwrap();
            assert_eq!(size, data.len() as u64, "{name}");
            assert!(fc.content == one_pass(&data), "{name}: the segments differ from one sequential pass");
        }
        drop(tx);
        engine.finish().unwrap();
    }
}
