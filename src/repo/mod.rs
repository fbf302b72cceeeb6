//! A repository at one location: key slots, packs of encrypted blobs, an index, restore
//! points (snapshots), locks. Operations live in their own modules; this one opens and
//! reads.

pub mod backup;
pub mod buffers;
pub mod check;
pub mod chunker;
pub mod copy;
pub mod crypto;
pub mod error;
pub mod fence;
pub mod format;
pub mod heartbeat;
pub mod keys;
pub mod lock;
pub mod pack;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod source;
pub mod verify;

pub use error::RepoError;

use crate::store::{Backend, ObjectInfo, StoreError};
use base64::Engine;
use bytes::Bytes;
use chunker::Chunker;
use crypto::{Cipher, MasterKey};
use format::{BlobEntry, BlobKind, BlobLoc, Compression, Config, Id, Snapshot, Tree};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

pub const AAD_INDEX: &[u8] = b"lifeline index";
pub const AAD_SNAPSHOT: &[u8] = b"lifeline snapshot";
pub const AAD_PACK_HEADER: &[u8] = b"lifeline pack header";

/// How the user proves they may read the repository.
pub enum Secret {
    Passphrase(zeroize::Zeroizing<Vec<u8>>),
    RawKey(zeroize::Zeroizing<Vec<u8>>),
}

/// The in-memory index: where every segment and tree is. Chunks are located through
/// their segments, so this stays small (about 48 bytes per MiB of unique content), but
/// every file has a segment: a repository of a million small files holds a million
/// entries, each kept in 52 bytes (a pack's number instead of its 32-byte id).
#[derive(Default)]
pub struct Index {
    blobs: HashMap<Id, Loc>,
    /// The packs `blobs` refers to, by number.
    pack_ids: Vec<Id>,
    pack_nos: HashMap<Id, u32>,
    /// Further places of blobs stored more than once (by concurrent writers, or a repack
    /// whose old entries a prune has not removed yet). Rare; prune keeps every copy's data.
    pub extra: HashMap<Id, Vec<BlobLoc>>,
    pub packs: HashSet<Id>,
    /// Packs left out because a prune marked them: a writer never builds on them.
    pub excluded: HashSet<Id>,
    /// Trees and segments in those packs: a writer may still *read* them (its parent's
    /// listing and recipes, kept alive by the parent point), never reuse them by id. A
    /// pack a prune marked while a backup reused a blob in it stays marked, though used,
    /// until the mark's other packs are gone.
    pub marked: HashMap<Id, BlobLoc>,
    /// Packs no readable index file lists, indexed from their own headers (readers only).
    pub unindexed: HashSet<Id>,
}

/// Where a blob is, as the index keeps it: [`BlobLoc`] with its pack's number.
#[derive(Clone, Copy)]
struct Loc {
    pack: u32,
    offset: u32,
    stored_len: u32,
    raw_len: u32,
    compression: format::Compression,
}

impl Index {
    fn pack_no(&mut self, pack: Id) -> u32 {
        *self.pack_nos.entry(pack).or_insert_with(|| {
            self.pack_ids.push(pack);
            (self.pack_ids.len() - 1) as u32
        })
    }

    fn expand(&self, l: &Loc) -> BlobLoc {
        BlobLoc {
            pack: self.pack_ids[l.pack as usize],
            offset: l.offset,
            stored_len: l.stored_len,
            raw_len: l.raw_len,
            compression: l.compression,
        }
    }

    /// The first place of `id`.
    fn get(&self, id: &Id) -> Option<BlobLoc> {
        self.blobs.get(id).map(|l| self.expand(l))
    }

    fn insert(&mut self, id: Id, loc: BlobLoc) {
        let pack = self.pack_no(loc.pack);
        let compact = Loc {
            pack,
            offset: loc.offset,
            stored_len: loc.stored_len,
            raw_len: loc.raw_len,
            compression: loc.compression,
        };
        match self.blobs.entry(id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(compact);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let first = *o.get();
                if (first.pack, first.offset) != (pack, loc.offset) {
                    let extra = self.extra.entry(id).or_default();
                    if !extra.iter().any(|l| (l.pack, l.offset) == (loc.pack, loc.offset)) {
                        extra.push(loc);
                    }
                }
            }
        }
    }

    fn add(&mut self, pack: Id, entries: Vec<BlobEntry>) {
        self.packs.insert(pack);
        for e in entries.into_iter().filter(|e| e.kind != BlobKind::Chunk) {
            self.insert(e.id, e.loc);
        }
    }

    /// Adds what an index file (opened, `plain`) lists, unless a pack is in `exclude`:
    /// then its trees and segments go to `marked`. Nothing is added from a file that does
    /// not decode. Its entries go straight into the index, never all in a list of their
    /// own, and the index grows once per file to the room they need.
    fn add_file(&mut self, plain: &[u8], exclude: &HashSet<Id>) -> Result<(), format::DecodeError> {
        let mut kept = 0;
        format::decode_index_with(plain, |item| {
            if let format::IndexItem::Entry(e) = item
                && e.kind != BlobKind::Chunk
            {
                kept += 1;
            }
        })?;
        self.blobs.reserve(kept);
        let mut excluded = false;
        format::decode_index_with(plain, |item| match item {
            format::IndexItem::Pack { pack, .. } => {
                excluded = exclude.contains(&pack);
                if !excluded {
                    self.packs.insert(pack);
                }
            }
            format::IndexItem::Entry(e) if e.kind == BlobKind::Chunk => {}
            format::IndexItem::Entry(e) if excluded => {
                self.marked.entry(e.id).or_insert(e.loc);
            }
            format::IndexItem::Entry(e) => self.insert(e.id, e.loc),
        })
    }
}

/// Restore points as listed: the readable ones, oldest first, and the damaged objects.
#[derive(Default)]
pub struct Points {
    pub good: Vec<(Id, Snapshot)>,
    pub damaged: Vec<DamagedObject>,
}

/// An object that could not be read, and why.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DamagedObject {
    pub key: String,
    pub detail: String,
}

/// Index entries by pack.
pub type PackEntries = std::collections::BTreeMap<Id, Vec<BlobEntry>>;

/// What the index files hold, as [`Repository::index_files`] read them.
#[derive(Default)]
pub struct IndexFiles {
    pub entries: PackEntries,
    /// Keys of the files read.
    pub read: Vec<String>,
    /// Keys of the files that could not be read.
    pub damaged: Vec<String>,
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    master: MasterKey,
    cipher: Cipher,
    chunker: Chunker,
    index: RwLock<Index>,
    /// Trees and recipes read from a remote location (see [`Repository::read_meta`]).
    meta: Option<MetaReads>,
}

/// How far a read of one tree or recipe from a remote location reaches on either side
/// of it, within its pack: the trees and recipes a walk reads next are its neighbours.
const META_WINDOW: u64 = 512 << 10;
/// Bytes of such reads kept for the next trees and recipes, at most.
const META_KEPT: usize = 4 << 20;

/// A restore walks a tree and each directory's recipes: one request per tree and per
/// stretch of recipes made a restore's metadata about a third of its requests to an
/// object store, each a round trip the walk waited for. Trees and recipes are small and
/// written together, so a read takes in their neighbours and keeps them a while.
#[derive(Default)]
struct MetaReads {
    /// Per pack, the end of its last indexed blob: how far a read may reach.
    extents: Mutex<Option<HashMap<Id, u64>>>,
    /// Recent reads, oldest first: pack, the offset they start at, their bytes.
    kept: Mutex<std::collections::VecDeque<(Id, u64, Bytes)>>,
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

impl Repository {
    /// Creates a repository with a new master secret and one key slot for `secret`.
    pub fn init(backend: Arc<dyn Backend>, secret: &Secret) -> Result<Self, RepoError> {
        Self::init_with_master(backend, secret, MasterKey::generate())
    }

    /// Creates a repository sharing `master` with another one (a replica location), so
    /// chunk ids agree and copies deduplicate.
    pub fn init_with_master(backend: Arc<dyn Backend>, secret: &Secret, master: MasterKey) -> Result<Self, RepoError> {
        match backend.get("config") {
            Ok(_) => return Err(RepoError::AlreadyInitialized { url: backend.url().into() }),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let id = Id::random().hex()[..32].to_string();
        let config = Config {
            version: format::VERSION,
            key_check: Some(master.key_check(&id)),
            id,
            created: now_rfc3339(),
            chunker: format::ChunkerParams::default(),
            zstd_level: 1,
            pack_size: 8 << 20,
        };
        // The slot first, then the config (create-only): of two concurrent inits, the one
        // whose config lost removes its slot, and a slot left by a crash is ignored, since
        // its secret does not give the config's key check.
        let slot = keys::add_slot(&*backend, &master, secret)?;
        let json = serde_json::to_vec_pretty(&config).map_err(RepoError::encode)?;
        if let Err(e) = backend.put_new("config", Bytes::from(json)) {
            let _ = backend.delete(&format!("keys/{}", slot.hex()));
            return Err(match e {
                StoreError::AlreadyExists { url, .. } => RepoError::AlreadyInitialized { url },
                other => other.into(),
            });
        }
        backend.flush()?;
        Ok(Self::assemble(backend, config, master))
    }

    /// Opens an existing repository with `secret`.
    pub fn open(backend: Arc<dyn Backend>, secret: &Secret) -> Result<Self, RepoError> {
        let config = Self::read_config(&*backend)?;
        let (_, master) = keys::unlock_slot_for(&*backend, &config, secret)?;
        Ok(Self::assemble(backend, config, master))
    }

    /// Reads `config`, with a clear error when there is no repository.
    pub fn read_config(backend: &dyn Backend) -> Result<Config, RepoError> {
        let raw = backend.get("config").map_err(|e| match e {
            // A missing bucket also answers 404: a listing tells the two apart.
            StoreError::NotFound { url, .. } => match backend.list("config") {
                Err(missing @ StoreError::BucketMissing { .. }) => missing.into(),
                _ => RepoError::NotInitialized { url },
            },
            other => other.into(),
        })?;
        let config: Config = serde_json::from_slice(&raw)
            .map_err(|e| RepoError::Corrupt { what: "config".into(), detail: e.to_string() })?;
        if config.version != format::VERSION {
            return Err(RepoError::UnsupportedVersion { version: config.version });
        }
        Ok(config)
    }

    fn assemble(backend: Arc<dyn Backend>, config: Config, master: MasterKey) -> Self {
        let cipher = master.data_key(&config.id);
        let chunker = Chunker::new(config.chunker, master.gear_seed(), master.id_key());
        let meta = (!backend.url().starts_with("file://")).then(MetaReads::default);
        Self { backend, config, master, cipher, chunker, index: RwLock::default(), meta }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn master(&self) -> &MasterKey {
        &self.master
    }
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }
    pub fn url(&self) -> &str {
        self.backend.url()
    }

    /// Loads every index file, for a writer. Packs in `exclude` (marked for deletion by
    /// prune) are left out, so a writer never reuses data a prune is about to delete. An
    /// index file that cannot be read does not block the rest: it is reported in
    /// [`Index::damaged`] (a writer then indexes its packs again from their headers, see
    /// `backup::recover_unindexed`). An index file that a prune replaced while it was
    /// being read makes the whole load start again (the prune wrote its replacement
    /// first).
    pub fn load_index(&self, exclude: &HashSet<Id>) -> Result<(), RepoError> {
        self.load(exclude, false)
    }

    /// Loads the index for reading (restore, ls, verify, a copy's source): every index
    /// file, and the headers of packs no readable index file lists (a run interrupted
    /// before its index, or an index file lost or damaged), so one missing or damaged
    /// index file blocks no restore.
    pub fn load_index_for_reading(&self) -> Result<(), RepoError> {
        self.load(&HashSet::new(), true)
    }

    fn load(&self, exclude: &HashSet<Id>, headers: bool) -> Result<(), RepoError> {
        let mut attempts = 0;
        let idx = loop {
            attempts += 1;
            match self.try_load_index(exclude, headers) {
                Err(RepoError::Store(e)) if e.is_not_found() && attempts < 5 => continue,
                other => break other?,
            }
        };
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = idx;
        if let Some(m) = &self.meta {
            *m.extents.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Ok(())
    }

    fn try_load_index(&self, exclude: &HashSet<Id>, headers: bool) -> Result<Index, RepoError> {
        let mut idx = Index { excluded: exclude.clone(), ..Default::default() };
        let files = self.backend.list("index/")?;
        read_at_once(
            &files,
            |o| o.size,
            |o| self.open_index_file(&o.key),
            |o, read| {
                let key = &o.key;
                match read.and_then(|plain| idx.add_file(&plain, exclude).map_err(|e| RepoError::corrupt(key, e))) {
                    Ok(()) => {}
                    Err(e @ RepoError::Corrupt { .. }) => {
                        tracing::warn!(object = %key, error = %e, "damaged index file skipped (`lifeline repo repair` rebuilds the index)");
                    }
                    Err(e) => return Err(e),
                }
                Ok(())
            },
        )?;
        if headers {
            for (pack, size) in self.stored_packs()? {
                if idx.packs.contains(&pack) || exclude.contains(&pack) {
                    continue;
                }
                match pack::read_pack_header(self, &pack, size) {
                    Ok(entries) => {
                        idx.add(pack, entries);
                        idx.unindexed.insert(pack);
                    }
                    Err(RepoError::Store(e)) if e.is_not_found() => {}
                    Err(e) => tracing::warn!(pack = %pack.short(), error = %e, "unreadable pack header"),
                }
            }
        }
        Ok(idx)
    }

    /// Every index file: the readable ones' entries by pack (a blob listed twice once),
    /// the keys read, and the keys that could not be read.
    pub fn index_files(&self) -> Result<IndexFiles, RepoError> {
        let mut out = IndexFiles::default();
        let files = self.backend.list("index/")?;
        self.each_index_file(&files, |key, read| {
            match read {
                Ok(packs) => {
                    for (p, entries) in packs {
                        let list = out.entries.entry(p).or_default();
                        for e in entries {
                            if !list.iter().any(|x| x.id == e.id && x.loc.offset == e.loc.offset) {
                                list.push(e);
                            }
                        }
                    }
                    out.read.push(key.to_string());
                }
                // Replaced by a prune since the listing.
                Err(RepoError::Store(e)) if e.is_not_found() => {}
                Err(RepoError::Corrupt { .. }) => out.damaged.push(key.to_string()),
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads the index files `files` (see [`read_at_once`]) and hands each one's key and
    /// entries, or why they could not be read, to `f`, in the order of `files`.
    fn each_index_file(
        &self,
        files: &[ObjectInfo],
        mut f: impl FnMut(&String, Result<Vec<(Id, Vec<BlobEntry>)>, RepoError>) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        read_at_once(files, |o| o.size, |o| self.read_index_file(&o.key), |o, read| f(&o.key, read))
    }

    /// Writes `entries` as new index files, makes them durable, then deletes the files
    /// `old` that they replace (a file whose content is exactly a new one stays).
    pub fn replace_index(&self, entries: &[(Id, Vec<BlobEntry>)], old: &[String]) -> Result<usize, RepoError> {
        let mut written = HashSet::new();
        for batch in entries.chunks(4096) {
            written.insert(self.write_index(batch)?.0);
        }
        self.backend.flush()?;
        for key in old.iter().filter(|k| !written.contains(*k)) {
            self.backend.delete(key)?;
        }
        Ok(written.len())
    }

    /// Packs the last [`Repository::load_index_for_reading`] found in no index file.
    pub fn unindexed_packs(&self) -> HashSet<Id> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).unindexed.clone()
    }

    /// Whether a prune has marked `pack` (as loaded by the last [`Repository::load_index`]).
    pub fn is_excluded(&self, pack: &Id) -> bool {
        self.index.read().unwrap_or_else(|e| e.into_inner()).excluded.contains(pack)
    }

    /// Every place `id` is stored at, per the index.
    pub fn locations(&self, id: &Id) -> Vec<BlobLoc> {
        let idx = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<BlobLoc> = idx.get(id).into_iter().collect();
        out.extend(idx.extra.get(id).into_iter().flatten().copied());
        out
    }

    pub fn read_index_file(&self, key: &str) -> Result<Vec<(Id, Vec<BlobEntry>)>, RepoError> {
        format::decode_index(&self.open_index_file(key)?).map_err(|e| RepoError::corrupt(key, e))
    }

    /// An index file's plaintext.
    fn open_index_file(&self, key: &str) -> Result<Vec<u8>, RepoError> {
        let sealed = self.backend.get(key)?;
        self.cipher.open(&sealed, AAD_INDEX).map_err(|e| RepoError::corrupt(key, e))
    }

    /// Writes an index file for `packs`; returns its key and size.
    pub fn write_index(&self, packs: &[(Id, Vec<BlobEntry>)]) -> Result<(String, u64), RepoError> {
        if packs.is_empty() {
            return Ok((String::new(), 0));
        }
        let sealed = self.cipher.seal(&format::encode_index(packs), AAD_INDEX);
        let key = format!("index/{}", Id::of_content(&sealed).hex());
        let len = sealed.len() as u64;
        // The packs it lists are durable before it is.
        self.backend.flush()?;
        match self.backend.put_new(&key, Bytes::from(sealed)) {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        for (pack, entries) in packs {
            idx.add(*pack, entries.clone());
        }
        Ok((key, len))
    }

    /// Every pack in the location, with its size.
    pub fn stored_packs(&self) -> Result<HashMap<Id, u64>, RepoError> {
        Ok(self
            .backend
            .list("data/")?
            .into_iter()
            .filter_map(|o| o.key.rsplit('/').next().and_then(Id::parse).map(|id| (id, o.size)))
            .collect())
    }

    /// Where a tree or segment is, for building on it: never in a marked pack.
    pub fn lookup(&self, id: &Id) -> Option<BlobLoc> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).get(id)
    }

    /// Where a tree or segment is, for reading it: also in a pack a prune marked (see
    /// [`Index::marked`]).
    fn lookup_to_read(&self, id: &Id) -> Option<BlobLoc> {
        let idx = self.index.read().unwrap_or_else(|e| e.into_inner());
        idx.get(id).or_else(|| idx.marked.get(id).copied())
    }

    pub fn indexed_packs(&self) -> HashSet<Id> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).packs.clone()
    }

    /// Reads, authenticates, decompresses and checks one blob.
    pub fn read_blob(&self, kind: BlobKind, id: &Id, loc: &BlobLoc) -> Result<Vec<u8>, RepoError> {
        let sealed = if kind == BlobKind::Chunk {
            let range = loc.offset as u64..loc.offset as u64 + loc.stored_len as u64;
            self.backend.get_range(&format::pack_key(&loc.pack), range)?
        } else {
            self.read_meta(loc)?
        };
        self.decode_blob(kind, id, loc, &sealed)
    }

    /// The stored bytes of a tree or recipe. From a remote location, read with its
    /// neighbours in the pack (up to [`META_WINDOW`] on either side, never past the pack's
    /// last indexed blob) and found among recent such reads (see [`MetaReads`]).
    fn read_meta(&self, loc: &BlobLoc) -> Result<Bytes, RepoError> {
        let key = format::pack_key(&loc.pack);
        let (at, end) = (loc.offset as u64, loc.offset as u64 + loc.stored_len as u64);
        let Some(meta) = &self.meta else { return Ok(self.backend.get_range(&key, at..end)?) };
        let slice = |from: u64, data: &Bytes| data.slice((at - from) as usize..(end - from) as usize);
        {
            let kept = meta.kept.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, from, data)) = kept
                .iter()
                .rev()
                .find(|(p, from, data)| *p == loc.pack && *from <= at && from + data.len() as u64 >= end)
            {
                return Ok(slice(*from, data));
            }
        }
        let reach = {
            let mut extents = meta.extents.lock().unwrap_or_else(|e| e.into_inner());
            let extents = extents.get_or_insert_with(|| {
                let idx = self.index.read().unwrap_or_else(|e| e.into_inner());
                let mut ends: HashMap<Id, u64> = HashMap::new();
                let compact = idx.blobs.values().map(|l| idx.expand(l));
                let locs = compact.chain(idx.marked.values().copied()).chain(idx.extra.values().flatten().copied());
                for l in locs {
                    let e = ends.entry(l.pack).or_default();
                    *e = (*e).max(l.offset as u64 + l.stored_len as u64);
                }
                ends
            });
            extents.get(&loc.pack).copied().unwrap_or(end).max(end)
        };
        let range = at.saturating_sub(META_WINDOW)..(end + META_WINDOW).min(reach);
        let data = self.backend.get_range(&key, range.clone())?;
        if (data.len() as u64) < range.end - range.start {
            return Err(RepoError::corrupt(&key, "shorter than its index says"));
        }
        let blob = slice(range.start, &data);
        let mut kept = meta.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.push_back((loc.pack, range.start, data));
        let mut bytes: usize = kept.iter().map(|(_, _, d)| d.len()).sum();
        while bytes > META_KEPT
            && let Some((_, _, old)) = kept.pop_front()
        {
            bytes -= old.len();
        }
        Ok(blob)
    }

    /// Decodes a blob's stored bytes (as read from its pack).
    pub fn decode_blob(&self, kind: BlobKind, id: &Id, loc: &BlobLoc, sealed: &[u8]) -> Result<Vec<u8>, RepoError> {
        let bad = |detail: String| RepoError::BadBlob { kind, id: *id, pack: loc.pack, detail };
        let aad = blob_aad(kind, id);
        let plain = match loc.compression {
            Compression::None => self.cipher.open(sealed, &aad).map_err(|e| bad(e.to_string()))?,
            // Opened into the thread's buffer: only the decompressed blob is allocated.
            Compression::Zstd => OPENED.with_borrow_mut(|opened| {
                self.cipher.open_into(sealed, &aad, opened).map_err(|e| bad(e.to_string()))?;
                let plain = decompress(opened, loc.raw_len as usize).map_err(|e| bad(e.to_string()));
                if opened.capacity() > SCRATCH_MAX {
                    *opened = Vec::new();
                }
                plain
            })?,
        };
        if plain.len() != loc.raw_len as usize || self.content_id(kind, &plain) != Some(*id) {
            return Err(bad("content does not match its id".into()));
        }
        Ok(plain)
    }

    /// The id a blob's plaintext must have: keyed BLAKE3 of chunks and trees; for a
    /// segment, the segment id of the chunks it lists.
    fn content_id(&self, kind: BlobKind, plain: &[u8]) -> Option<Id> {
        match kind {
            BlobKind::Tree => Some(self.chunker.id(plain)),
            BlobKind::Chunk => {
                let chunks = format::decode_data_blob(plain).ok()?;
                let key: Vec<(Id, u32)> = chunks.iter().map(|c| (self.chunker.id(c), c.len() as u32)).collect();
                Some(self.chunker.data_blob_id(&key))
            }
            BlobKind::Segment => {
                let chunks = format::decode_segment(plain).ok()?;
                let key: Vec<(Id, u32)> = chunks.iter().map(|c| (c.id, c.len)).collect();
                Some(self.chunker.segment_id(&key))
            }
        }
    }

    pub fn read_tree(&self, id: &Id) -> Result<Tree, RepoError> {
        self.read_tree_as(id)
    }

    /// A tree decoded as `T`, which may keep less of each node than [`Tree`] does.
    pub(crate) fn read_tree_as<T: serde::de::DeserializeOwned>(&self, id: &Id) -> Result<T, RepoError> {
        let loc = self.tree_loc(id)?;
        self.decode_tree(id, &loc)
    }

    fn tree_loc(&self, id: &Id) -> Result<BlobLoc, RepoError> {
        self.lookup_to_read(id).ok_or(RepoError::MissingBlob { kind: BlobKind::Tree, id: *id })
    }

    /// A tree decoded whole. A large directory's is decoded as it is decompressed (and
    /// hashed): its JSON is never whole in memory, only the sealed blob and the nodes (for
    /// 200,000 files in one directory, 65 MB less at once than decompressing it first).
    fn decode_tree<T: serde::de::DeserializeOwned>(&self, id: &Id, loc: &BlobLoc) -> Result<T, RepoError> {
        if streamed(loc) {
            return self.stream_tree(id, loc, |r| serde_json::from_reader(r));
        }
        let raw = self.read_blob(BlobKind::Tree, id, loc)?;
        serde_json::from_slice(&raw).map_err(|e| RepoError::corrupt(&format!("tree {id:?}"), e))
    }

    /// A tree's entries in order, handed to `f` in windows of at most [`TREE_WINDOW`] (a
    /// tree small enough to be decoded whole comes as one): the restore of a directory of
    /// 200,000 files holds a window of its entries at a time, not all of them. The id is
    /// checked once the last window is handed over; the content was authenticated when
    /// it was opened, so nothing `f` saw was forged, but the walk fails if it differs.
    pub(crate) fn for_each_tree_window<T: serde::de::DeserializeOwned>(
        &self,
        id: &Id,
        mut f: impl FnMut(Vec<T>) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        let loc = self.tree_loc(id)?;
        if !streamed(&loc) {
            return f(self.decode_tree::<format::TreeOf<T>>(id, &loc)?.nodes);
        }
        let mut stopped = None;
        let walked = self.stream_tree(id, &loc, |r| {
            let mut de = serde_json::Deserializer::from_reader(r);
            let seed = format::Windows::new(TREE_WINDOW, &mut f, &mut stopped);
            serde::de::DeserializeSeed::deserialize(seed, &mut de)?;
            de.end()
        });
        match stopped {
            Some(e) => Err(e),
            None => walked,
        }
    }

    /// Opens a tree stored as zstd frames and decodes it with `decode` as it is
    /// decompressed and hashed; then checks its length and id.
    fn stream_tree<T>(
        &self,
        id: &Id,
        loc: &BlobLoc,
        decode: impl FnOnce(&mut dyn std::io::Read) -> Result<T, serde_json::Error>,
    ) -> Result<T, RepoError> {
        let sealed = self.read_meta(loc)?;
        self.stream_sealed_tree(id, loc, sealed, decode)
    }

    /// Checks a tree blob read from its pack against its id. A large one is checked as it
    /// is decompressed, its JSON never whole in memory.
    pub(crate) fn check_tree(&self, id: &Id, loc: &BlobLoc, sealed: &[u8]) -> Result<(), RepoError> {
        if streamed(loc) {
            return self.stream_sealed_tree(id, loc, sealed, |r| {
                std::io::copy(r, &mut std::io::sink()).map(drop).map_err(serde_json::Error::io)
            });
        }
        self.decode_blob(BlobKind::Tree, id, loc, sealed).map(drop)
    }

    fn stream_sealed_tree<T>(
        &self,
        id: &Id,
        loc: &BlobLoc,
        sealed: impl AsRef<[u8]>,
        decode: impl FnOnce(&mut dyn std::io::Read) -> Result<T, serde_json::Error>,
    ) -> Result<T, RepoError> {
        let bad = |detail: String| RepoError::BadBlob { kind: BlobKind::Tree, id: *id, pack: loc.pack, detail };
        let opened =
            self.cipher.open(sealed.as_ref(), &blob_aad(BlobKind::Tree, id)).map_err(|e| bad(e.to_string()))?;
        drop(sealed);
        let decoder = zstd::stream::read::Decoder::with_buffer(opened.as_slice()).map_err(|e| bad(e.to_string()))?;
        let mut hashed = Hashed { inner: decoder, hasher: self.chunker.id_hasher() };
        let tree = decode(&mut std::io::BufReader::with_capacity(256 << 10, &mut hashed))
            .map_err(|e| RepoError::corrupt(&format!("tree {id:?}"), e))?;
        if hashed.hasher.count() != loc.raw_len as u64 || Id(*hashed.hasher.finalize().as_bytes()) != *id {
            return Err(bad("content does not match its id".into()));
        }
        Ok(tree)
    }

    pub fn read_segment(&self, id: &Id) -> Result<Vec<format::ChunkRef>, RepoError> {
        let loc = self.lookup_to_read(id).ok_or(RepoError::MissingBlob { kind: BlobKind::Segment, id: *id })?;
        let raw = self.read_blob(BlobKind::Segment, id, &loc)?;
        format::decode_segment(&raw).map_err(|e| RepoError::corrupt(&format!("segment {id:?}"), e))
    }

    /// Reads many segment recipes with few requests: nearby blobs of the same pack are
    /// fetched with one range read.
    pub fn read_segments(&self, ids: &[Id]) -> Result<HashMap<Id, Vec<format::ChunkRef>>, RepoError> {
        if self.meta.is_some() {
            let mut out = HashMap::with_capacity(ids.len());
            for id in ids {
                if !out.contains_key(id) {
                    out.insert(*id, self.read_segment(id)?);
                }
            }
            return Ok(out);
        }
        let mut locs: Vec<(Id, BlobLoc)> = Vec::with_capacity(ids.len());
        let mut wanted = HashSet::with_capacity(ids.len());
        for id in ids {
            if wanted.insert(*id) {
                let loc = self.lookup_to_read(id).ok_or(RepoError::MissingBlob { kind: BlobKind::Segment, id: *id })?;
                locs.push((*id, loc));
            }
        }
        let mut out = HashMap::with_capacity(locs.len());
        self.read_segments_at(locs, |id, _, chunks| {
            out.insert(*id, chunks);
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads segment recipes at the given places (a segment may be given at several)
    /// with few requests: nearby blobs of the same pack are fetched with one range read.
    /// `f` gets each recipe with its id and place, in pack order.
    pub(crate) fn read_segments_at(
        &self,
        mut locs: Vec<(Id, BlobLoc)>,
        mut f: impl FnMut(&Id, &BlobLoc, Vec<format::ChunkRef>) -> Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        const GAP: u64 = 256 << 10;
        locs.sort_by_key(|(_, l)| (l.pack, l.offset));
        let mut i = 0;
        while i < locs.len() {
            let first = locs[i].1;
            let mut end = first.offset as u64 + first.stored_len as u64;
            let mut j = i + 1;
            while j < locs.len() && locs[j].1.pack == first.pack && (locs[j].1.offset as u64) <= end + GAP {
                end = end.max(locs[j].1.offset as u64 + locs[j].1.stored_len as u64);
                j += 1;
            }
            let data = self.backend.get_range(&format::pack_key(&first.pack), first.offset as u64..end)?;
            for (id, loc) in &locs[i..j] {
                let start = (loc.offset - first.offset) as usize;
                let sealed = data
                    .get(start..start + loc.stored_len as usize)
                    .ok_or_else(|| RepoError::corrupt(&format::pack_key(&loc.pack), "shorter than its index says"))?;
                let raw = self.decode_blob(BlobKind::Segment, id, loc, sealed)?;
                let chunks =
                    format::decode_segment(&raw).map_err(|e| RepoError::corrupt(&format!("segment {id:?}"), e))?;
                f(id, loc, chunks)?;
            }
            i = j;
        }
        Ok(())
    }

    /// All restore points, oldest first; fails if any restore-point object cannot be read
    /// (what must see every point, such as prune, uses this).
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>, RepoError> {
        let points = self.points()?;
        if let Some(d) = points.damaged.first() {
            return Err(RepoError::Corrupt {
                what: d.key.clone(),
                detail: format!("{}; `lifeline repo repair` sets damaged restore points aside", d.detail),
            });
        }
        Ok(points.good)
    }

    /// All readable restore points, oldest first, and the objects that could not be
    /// read: one damaged point never hides the others.
    pub fn points(&self) -> Result<Points, RepoError> {
        let mut out = Points::default();
        let ids: Vec<(Id, String, u64)> = (self.backend.list("snapshots/")?.into_iter())
            .filter_map(|o| Some((o.key.strip_prefix("snapshots/").and_then(Id::parse)?, o.key, o.size)))
            .collect();
        read_at_once(
            &ids,
            |(_, _, size)| *size,
            |(id, _, _)| self.read_snapshot(id),
            |(id, key, _), read| {
                match read {
                    Ok(s) => out.good.push((*id, s)),
                    // Forgotten since the listing.
                    Err(RepoError::Store(e)) if e.is_not_found() => {}
                    Err(e @ RepoError::Corrupt { .. }) => {
                        out.damaged.push(DamagedObject { key: key.clone(), detail: e.to_string() });
                    }
                    Err(e) => return Err(e),
                }
                Ok(())
            },
        )?;
        out.good.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    pub fn read_snapshot(&self, id: &Id) -> Result<Snapshot, RepoError> {
        let key = format!("snapshots/{}", id.hex());
        let sealed = self.backend.get(&key)?;
        let plain = self.cipher.open(&sealed, AAD_SNAPSHOT).map_err(|e| RepoError::corrupt(&key, e))?;
        serde_json::from_slice(&plain).map_err(|e| RepoError::corrupt(&key, e))
    }

    pub fn write_snapshot(&self, snap: &Snapshot) -> Result<Id, RepoError> {
        let json = serde_json::to_vec(snap).map_err(RepoError::encode)?;
        let sealed = self.cipher.seal(&json, AAD_SNAPSHOT);
        let id = Id::of_content(&sealed);
        // Everything it refers to is durable before it is, and it is before it counts.
        self.backend.flush()?;
        self.backend.put_new(&format!("snapshots/{}", id.hex()), Bytes::from(sealed))?;
        self.backend.flush()?;
        Ok(id)
    }

    /// Finds a restore point by full id, unique prefix, or `latest`.
    pub fn find_snapshot(&self, name: &str) -> Result<(Id, Snapshot), RepoError> {
        let all = self.points()?.good;
        if name == "latest" {
            return all.into_iter().last().ok_or(RepoError::NoSnapshots { url: self.url().into() });
        }
        let mut hits: Vec<_> = all.into_iter().filter(|(id, _)| id.hex().starts_with(name)).collect();
        match hits.len() {
            1 => Ok(hits.remove(0)),
            0 => Err(RepoError::SnapshotNotFound { name: name.into(), url: self.url().into() }),
            _ => Err(RepoError::AmbiguousSnapshot { name: name.into() }),
        }
    }
}

/// Additional data bound to a blob's encryption: its kind and id, so a blob cannot be
/// swapped for another.
pub fn blob_aad(kind: BlobKind, id: &Id) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = kind as u8;
    aad[1..].copy_from_slice(&id.0);
    aad
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Objects read at once by [`read_at_once`], at most, and their stored bytes, at most
/// (but one object, whatever its size).
const READS_AT_ONCE: usize = 16;
const READ_AT_ONCE_BYTES: u64 = 8 << 20;

/// Calls `read` for each of `items`, several at once (each on a thread of its own), and
/// hands the results to `f` in the order of `items`, stopping at its first error. For the
/// objects a command reads one per item before it can start (every index file, every
/// restore point): each is a request, and a remote location's requests are round trips,
/// tens of milliseconds to another region. One by one, a repository with hundreds of them
/// (an index file and a point per backup run, until a prune merges the index files and a
/// forget removes points) took seconds to open before a restore could start. A batch is
/// at most [`READS_AT_ONCE`] items and [`READ_AT_ONCE_BYTES`] of their `size` (a prune's
/// merged index files are large and go one or two at a time), so the results held at
/// once, besides what `f` builds, stay about as small as one large object's.
fn read_at_once<I: Sync, T: Send>(
    items: &[I],
    size: impl Fn(&I) -> u64,
    read: impl Fn(&I) -> T + Sync,
    mut f: impl FnMut(&I, T) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    let mut start = 0;
    while start < items.len() {
        let (mut end, mut bytes) = (start + 1, size(&items[start]));
        while end < items.len() && end - start < READS_AT_ONCE && bytes + size(&items[end]) <= READ_AT_ONCE_BYTES {
            bytes += size(&items[end]);
            end += 1;
        }
        let batch = &items[start..end];
        start = end;
        let results: Vec<T> = match batch {
            [one] => vec![read(one)],
            _ => std::thread::scope(|s| {
                let read = &read;
                let reads: Vec<_> = batch.iter().map(|i| s.spawn(move || read(i))).collect();
                reads.into_iter().map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
            }),
        };
        for (item, r) in batch.iter().zip(results) {
            f(item, r)?;
        }
    }
    Ok(())
}

/// Trees of more JSON than this are decoded as they are decompressed.
const STREAMED_TREE: usize = 4 << 20;

/// Whether a tree is decoded as it is decompressed (see [`STREAMED_TREE`]).
fn streamed(loc: &BlobLoc) -> bool {
    loc.compression == Compression::Zstd && loc.raw_len as usize > STREAMED_TREE
}

/// Every walk of a tree holds this many of a directory's entries at most (about 1.2 MB of
/// nodes; see [`Repository::for_each_tree_window`]).
pub(crate) const TREE_WINDOW: usize = 4096;

/// A reader that hashes (with a blob id's key) what passes through it.
struct Hashed<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: std::io::Read> std::io::Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A thread's buffer for opened (still compressed) blobs is kept up to this size.
const SCRATCH_MAX: usize = 2 << 20;

thread_local! {
    /// Opened blobs before decompression, one buffer per thread.
    static OPENED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A decompression context per thread: creating one per blob showed in restores.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses a zstd frame of at most `capacity` bytes.
fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|d| {
        let d = match d {
            Some(d) => d,
            None => d.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(data, capacity)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    fn entry(kind: BlobKind, n: u8, pack: u8, offset: u32) -> BlobEntry {
        let compression = if n.is_multiple_of(2) { format::Compression::Zstd } else { format::Compression::None };
        let loc = BlobLoc { pack: Id([pack; 32]), offset, stored_len: 100 + n as u32, raw_len: 300, compression };
        BlobEntry { kind, id: Id([n; 32]), loc }
    }

    /// An index file's trees and segments are found where it says, with their packs'
    /// ids (the index keeps numbers for them); chunks are not kept; a marked pack's go
    /// aside; a second place of a blob is kept as such; a file that does not decode to
    /// the end adds nothing.
    #[test]
    fn index_files_load_into_the_compact_index() {
        assert_eq!(std::mem::size_of::<(Id, Loc)>(), 52, "an entry as the index keeps it");
        let (a, b, c) = (Id([1; 32]), Id([2; 32]), Id([3; 32]));
        let file = format::encode_index(&[
            (a, vec![entry(BlobKind::Tree, 10, 1, 0), entry(BlobKind::Segment, 11, 1, 500)]),
            (b, vec![entry(BlobKind::Chunk, 12, 2, 0), entry(BlobKind::Segment, 13, 2, 64)]),
            (c, vec![entry(BlobKind::Segment, 14, 3, 7)]),
            // The same tree again, elsewhere.
            (b, vec![entry(BlobKind::Tree, 10, 2, 900)]),
        ]);
        let mut idx = Index::default();
        idx.add_file(&file, &HashSet::from([c])).unwrap();
        assert_eq!(idx.get(&Id([10; 32])), Some(entry(BlobKind::Tree, 10, 1, 0).loc));
        assert_eq!(idx.get(&Id([11; 32])), Some(entry(BlobKind::Segment, 11, 1, 500).loc));
        assert_eq!(idx.get(&Id([13; 32])), Some(entry(BlobKind::Segment, 13, 2, 64).loc));
        assert_eq!(idx.extra.get(&Id([10; 32])), Some(&vec![entry(BlobKind::Tree, 10, 2, 900).loc]));
        assert_eq!(idx.get(&Id([12; 32])), None, "chunks are found through their segments");
        assert_eq!(idx.get(&Id([14; 32])), None);
        assert_eq!(idx.marked.get(&Id([14; 32])), Some(&entry(BlobKind::Segment, 14, 3, 7).loc));
        assert_eq!(idx.packs, HashSet::from([a, b]));

        let mut fresh = Index::default();
        let cut = &file[..file.len() - 3];
        assert!(fresh.add_file(cut, &HashSet::new()).is_err());
        assert!(fresh.blobs.is_empty() && fresh.packs.is_empty(), "nothing from a damaged file");
    }

    #[test]
    fn reads_at_once_overlap_and_hand_results_in_order() {
        // Each read waits until every read of its batch has started: read one by one,
        // none would see the others (they give up after a while rather than hang).
        let items: Vec<usize> = (0..READS_AT_ONCE + 3).collect();
        let started = (Mutex::new(0usize), Condvar::new());
        let read = |i: &usize| {
            let batch = if *i < READS_AT_ONCE { READS_AT_ONCE } else { items.len() };
            let (count, cv) = &started;
            let mut n = count.lock().unwrap();
            *n += 1;
            cv.notify_all();
            let (n, timeout) = cv.wait_timeout_while(n, Duration::from_secs(20), |n| *n < batch).unwrap();
            drop(n);
            (*i * 10, !timeout.timed_out())
        };
        let mut seen = Vec::new();
        read_at_once(
            &items,
            |_| 1,
            read,
            |i, (v, overlapped)| {
                assert!(overlapped, "read {i} ran alone");
                seen.push((*i, v));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, items.iter().map(|i| (*i, i * 10)).collect::<Vec<_>>());

        // The first error stops the handing; nothing after it is handed.
        let mut handed = Vec::new();
        let err = read_at_once(
            &items,
            |_| 1,
            |i| *i,
            |i, _| {
                handed.push(*i);
                if *i == 5 { Err(RepoError::Invalid("five".into())) } else { Ok(()) }
            },
        );
        assert!(matches!(err, Err(RepoError::Invalid(m)) if m == "five"));
        assert_eq!(handed, (0..=5).collect::<Vec<_>>());
    }

    #[test]
    fn large_objects_are_read_in_small_batches() {
        // Each read notes how many results were handed on when it started: reads of one
        // batch all start before any of its results is handed on, so they note the same.
        let mib: u64 = 1 << 20;
        let sizes: Vec<u64> = vec![3, 3, 3, 20, 1, 1, 7, 1];
        let items: Vec<usize> = (0..sizes.len()).collect();
        let handed = std::sync::atomic::AtomicUsize::new(0);
        let mut seen = Vec::new();
        read_at_once(
            &items,
            |i| sizes[*i] * mib,
            |_| handed.load(std::sync::atomic::Ordering::SeqCst),
            |i, started_after| {
                seen.push((*i, started_after));
                handed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            },
        )
        .unwrap();
        // With 8 MiB a batch: 3+3, then 3, then 20 alone (larger than a batch), 1+1, 7+1.
        assert_eq!(READ_AT_ONCE_BYTES, 8 * mib);
        assert_eq!(seen, vec![(0, 0), (1, 0), (2, 2), (3, 3), (4, 4), (5, 4), (6, 6), (7, 6)]);
    }
}
