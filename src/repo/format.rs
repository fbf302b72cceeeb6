//! Every on-disk structure of a repository, version 1. `docs/FORMAT.md` describes the
//! same layout in prose for a second reader; keep them in step.
//!
//! Keys in the location: `config`, `keys/<slot>`, `data/<xx>/<pack>`, `index/<id>`,
//! `snapshots/<id>`, `locks/<id>`, `prune/<id>`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const VERSION: u32 = 1;

/// A 32-byte identifier, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    pub fn random() -> Self {
        Self(super::crypto::random_bytes())
    }

    pub fn hex(&self) -> String {
        // BLAKE3's own hex encoding of 32 bytes (`format!` per byte was 2 % of a
        // many-small-files backup: trees name every file's segments).
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 8 hex digits, how users name restore points.
    pub fn short(&self) -> String {
        self.hex()[..8].to_string()
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    /// Unkeyed BLAKE3, for naming files by their (encrypted) content.
    pub fn of_content(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Id::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid id {s:?}")))
    }
}

/// Key of a pack: `data/<first two hex digits>/<id>`.
pub fn pack_key(id: &Id) -> String {
    let h = id.hex();
    format!("data/{}/{h}", &h[..2])
}

/// `config`: plaintext, written once by `init`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub version: u32,
    /// Random id of this repository; also the HKDF salt of its data key.
    pub id: String,
    pub created: String,
    pub chunker: ChunkerParams,
    /// zstd level for chunks that compress.
    pub zstd_level: i32,
    /// Packs are closed when they reach this many bytes.
    pub pack_size: u32,
    /// Proves which master secret this repository has (see `MasterKey::key_check`):
    /// a key slot whose secret does not match is ignored. Absent in repositories made
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_check: Option<String>,
}

/// Content-defined chunking parameters. Changing them moves every boundary, so they
/// are fixed per repository.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChunkerParams {
    /// FastCDC v2020 (normalization level 1) minimum, average and maximum chunk size.
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    /// A segment ends after a chunk whose id's first 32 bits, little-endian, have this
    /// many low zero bits (average 2^bits chunks per segment)...
    pub segment_bits: u32,
    /// ...or after this many chunks.
    pub segment_max_chunks: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self { min: 8 * 1024, avg: 32 * 1024, max: 128 * 1024, segment_bits: 5, segment_max_chunks: 128 }
    }
}

/// `keys/<id>`: plaintext; opens the master secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySlot {
    pub created: String,
    /// Who added it (`user@host`), for `key list`.
    pub owner: String,
    pub kdf: Kdf,
    /// Base64 salt for the KDF.
    pub salt: String,
    /// Base64 of `nonce || AES-256-GCM(kek, master secret) || tag`, AAD `lifeline key slot`.
    pub wrapped: String,
}

/// How a key slot's key-encryption key is derived.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Kdf {
    /// From a passphrase with Argon2id.
    Argon2id { memory_kib: u32, iterations: u32, parallelism: u32 },
    /// From a raw key file with HKDF-SHA256.
    Raw,
}

/// Kinds of blob inside packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobKind {
    /// File or device content: one or more consecutive chunks.
    Chunk = 0,
    /// A segment: the ordered list of chunks, with their locations.
    Segment = 1,
    /// A directory listing (JSON).
    Tree = 2,
}

impl BlobKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Chunk),
            1 => Some(Self::Segment),
            2 => Some(Self::Tree),
            _ => None,
        }
    }
}

/// Compression of a stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

impl Compression {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::None),
            1 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobLoc {
    pub pack: Id,
    pub offset: u32,
    /// Bytes in the pack (nonce + compressed ciphertext + tag).
    pub stored_len: u32,
    /// Bytes of plaintext.
    pub raw_len: u32,
    pub compression: Compression,
}

/// One entry of a pack header or index: a blob and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    pub kind: BlobKind,
    pub id: Id,
    pub loc: BlobLoc,
}

/// A chunk: its id, and where its bytes are: `len` bytes at `offset` in the plaintext of
/// data blob `blob` (which holds consecutive new chunks of a segment, compressed and
/// encrypted together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    pub id: Id,
    pub blob: Id,
    pub loc: BlobLoc,
    pub offset: u32,
    pub len: u32,
}

/// Errors decoding binary structures.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what}: {detail}")]
pub struct DecodeError {
    pub what: &'static str,
    pub detail: String,
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError { what: self.what, detail: "truncated".into() });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn id(&mut self) -> Result<Id, DecodeError> {
        Ok(Id(self.take(32)?.try_into().unwrap_or_default()))
    }
    fn magic(&mut self, magic: &[u8; 4]) -> Result<(), DecodeError> {
        if self.take(4)? != magic || self.u8()? != VERSION as u8 {
            return Err(DecodeError { what: self.what, detail: "bad magic or unsupported version".into() });
        }
        Ok(())
    }
    fn bad(&self, detail: &str) -> DecodeError {
        DecodeError { what: self.what, detail: detail.into() }
    }
}

/// Pack header plaintext: `"LLPH" v1 count:u32` then per blob, in file order,
/// `kind:u8 compression:u8 id:32 stored_len:u32 raw_len:u32` (offsets are cumulative).
pub fn encode_pack_header(entries: &[BlobEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + entries.len() * 42);
    out.extend_from_slice(b"LLPH");
    out.push(VERSION as u8);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.push(e.kind as u8);
        out.push(e.loc.compression as u8);
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&e.loc.stored_len.to_le_bytes());
        out.extend_from_slice(&e.loc.raw_len.to_le_bytes());
    }
    out
}

pub fn decode_pack_header(pack: Id, buf: &[u8]) -> Result<Vec<BlobEntry>, DecodeError> {
    let mut r = Reader { buf, what: "pack header" };
    r.magic(b"LLPH")?;
    let n = r.u32()?;
    let mut offset = 0u32;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let kind = BlobKind::from_u8(r.u8()?).ok_or_else(|| r.bad("unknown blob kind"))?;
        let compression = Compression::from_u8(r.u8()?).ok_or_else(|| r.bad("unknown compression"))?;
        let id = r.id()?;
        let (stored_len, raw_len) = (r.u32()?, r.u32()?);
        out.push(BlobEntry { kind, id, loc: BlobLoc { pack, offset, stored_len, raw_len, compression } });
        offset = offset.checked_add(stored_len).ok_or_else(|| r.bad("offset overflow"))?;
    }
    Ok(out)
}

/// Data blob plaintext: `"LLDB" v1 count:u32 len:u32 × count`, then the chunks' bytes
/// in order. Returns the header for `lens`.
pub fn encode_data_header(lens: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + lens.len() * 4);
    out.extend_from_slice(b"LLDB");
    out.push(VERSION as u8);
    out.extend_from_slice(&(lens.len() as u32).to_le_bytes());
    for l in lens {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out
}

/// Splits a data blob's plaintext into its chunks.
pub fn decode_data_blob(buf: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut r = Reader { buf, what: "data blob" };
    r.magic(b"LLDB")?;
    let n = r.u32()?;
    let lens: Vec<u32> = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(lens.len());
    for l in lens {
        out.push(r.take(l as usize)?);
    }
    if !r.buf.is_empty() {
        return Err(r.bad("trailing bytes"));
    }
    Ok(out)
}

/// Segment plaintext: `"LLSG" v1 blobs:u32`, per data blob
/// `id:32 pack:32 offset:u32 stored_len:u32 raw_len:u32 compression:u8`, then `chunks:u32`,
/// per chunk `id:32 blob_index:u32 offset:u32 len:u32`.
pub fn encode_segment(chunks: &[ChunkRef]) -> Vec<u8> {
    let mut blobs: Vec<(Id, BlobLoc)> = Vec::new();
    let mut index_of = std::collections::HashMap::new();
    for c in chunks {
        index_of.entry(c.blob).or_insert_with(|| {
            blobs.push((c.blob, c.loc));
            blobs.len() - 1
        });
    }
    let mut out = Vec::with_capacity(13 + blobs.len() * 77 + chunks.len() * 44);
    out.extend_from_slice(b"LLSG");
    out.push(VERSION as u8);
    out.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
    for (id, loc) in &blobs {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&loc.pack.0);
        out.extend_from_slice(&loc.offset.to_le_bytes());
        out.extend_from_slice(&loc.stored_len.to_le_bytes());
        out.extend_from_slice(&loc.raw_len.to_le_bytes());
        out.push(loc.compression as u8);
    }
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for c in chunks {
        out.extend_from_slice(&c.id.0);
        out.extend_from_slice(&(index_of[&c.blob] as u32).to_le_bytes());
        out.extend_from_slice(&c.offset.to_le_bytes());
        out.extend_from_slice(&c.len.to_le_bytes());
    }
    out
}

pub fn decode_segment(buf: &[u8]) -> Result<Vec<ChunkRef>, DecodeError> {
    let mut r = Reader { buf, what: "segment" };
    r.magic(b"LLSG")?;
    let n = r.u32()?;
    let mut blobs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let id = r.id()?;
        let pack = r.id()?;
        let (offset, stored_len, raw_len) = (r.u32()?, r.u32()?, r.u32()?);
        let compression = Compression::from_u8(r.u8()?).ok_or_else(|| r.bad("unknown compression"))?;
        blobs.push((id, BlobLoc { pack, offset, stored_len, raw_len, compression }));
    }
    let m = r.u32()?;
    let mut out = Vec::with_capacity(m as usize);
    for _ in 0..m {
        let id = r.id()?;
        let (b, offset, len) = (r.u32()?, r.u32()?, r.u32()?);
        let (blob, loc) = *blobs.get(b as usize).ok_or_else(|| r.bad("blob index out of range"))?;
        if offset as u64 + len as u64 > loc.raw_len as u64 {
            return Err(r.bad("chunk beyond the end of its blob"));
        }
        out.push(ChunkRef { id, blob, loc, offset, len });
    }
    Ok(out)
}

/// Index file plaintext: `"LLIX" v1 packs:u32`, per pack `pack:32 count:u32`, then per
/// blob `kind:u8 compression:u8 id:32 offset:u32 stored_len:u32 raw_len:u32`.
pub fn encode_index(packs: &[(Id, Vec<BlobEntry>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"LLIX");
    out.push(VERSION as u8);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for (pack, entries) in packs {
        out.extend_from_slice(&pack.0);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            out.push(e.kind as u8);
            out.push(e.loc.compression as u8);
            out.extend_from_slice(&e.id.0);
            out.extend_from_slice(&e.loc.offset.to_le_bytes());
            out.extend_from_slice(&e.loc.stored_len.to_le_bytes());
            out.extend_from_slice(&e.loc.raw_len.to_le_bytes());
        }
    }
    out
}

pub fn decode_index(buf: &[u8]) -> Result<Vec<(Id, Vec<BlobEntry>)>, DecodeError> {
    let mut out: Vec<(Id, Vec<BlobEntry>)> = Vec::new();
    decode_index_with(buf, |item| match item {
        IndexItem::Pack { pack, entries } => out.push((pack, Vec::with_capacity(entries as usize))),
        IndexItem::Entry(e) => {
            if let Some((_, entries)) = out.last_mut() {
                entries.push(e)
            }
        }
    })?;
    Ok(out)
}

/// What [`decode_index_with`] hands over, in the order of the file: each pack (with how
/// many entries follow), then its entries.
pub enum IndexItem {
    Pack { pack: Id, entries: u32 },
    Entry(BlobEntry),
}

/// Decodes an index file item by item, without building its list of entries: a reader
/// that keeps only some of them (the index in memory keeps no chunk) never holds them all
/// twice. The whole file is checked: an error after some items means the file is damaged.
pub fn decode_index_with(buf: &[u8], mut f: impl FnMut(IndexItem)) -> Result<(), DecodeError> {
    let mut r = Reader { buf, what: "index" };
    r.magic(b"LLIX")?;
    let packs = r.u32()?;
    for _ in 0..packs {
        let pack = r.id()?;
        let n = r.u32()?;
        f(IndexItem::Pack { pack, entries: n });
        for _ in 0..n {
            let kind = BlobKind::from_u8(r.u8()?).ok_or_else(|| r.bad("unknown blob kind"))?;
            let compression = Compression::from_u8(r.u8()?).ok_or_else(|| r.bad("unknown compression"))?;
            let id = r.id()?;
            let (offset, stored_len, raw_len) = (r.u32()?, r.u32()?, r.u32()?);
            f(IndexItem::Entry(BlobEntry {
                kind,
                id,
                loc: BlobLoc { pack, offset, stored_len, raw_len, compression },
            }));
        }
    }
    Ok(())
}

/// What a node is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// A reference to a segment of file content.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegRef {
    pub id: Id,
    /// Bytes of content the segment covers.
    pub size: u64,
}

/// One entry of a directory (JSON inside a tree blob).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// File name, when it is valid UTF-8...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// ...otherwise its bytes in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_b64: Option<String>,
    pub kind: Option<NodeKind>,
    /// Permission bits and setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: i64,
    #[serde(default)]
    pub mtime_nsec: u32,
    /// Change time, used only to detect unchanged files.
    #[serde(default)]
    pub ctime: i64,
    #[serde(default)]
    pub ctime_nsec: u32,
    #[serde(default)]
    pub inode: u64,
    #[serde(default)]
    pub device: u64,
    #[serde(default)]
    pub nlink: u64,
    /// Content length in bytes (files and block images).
    #[serde(default)]
    pub size: u64,
    /// File content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "exact_vec")]
    pub content: Vec<SegRef>,
    /// Whether the file had holes; all-zero chunks are restored as holes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sparse: bool,
    /// The listing of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// A symlink's target (UTF-8 or base64 in `link_target_b64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target_b64: Option<String>,
    /// Device number of a device node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Path (relative to the snapshot root, `/`-separated) of the first file in this
    /// snapshot with the same inode: this entry is a hard link to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink_to: Option<String>,
    /// Extended attributes, name to value in base64: every namespace the backup could
    /// read (`user.*`, `security.*` such as file capabilities and SELinux labels,
    /// `trusted.*` as root, and POSIX ACLs as `system.posix_acl_*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
}

/// A list decoded with no room to spare: decoding grows a list to room for four items
/// first, and most files have one segment (200,000 files in one directory: 24 MB of room).
fn exact_vec<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let mut v = Vec::<T>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// A tree blob: a directory's entries sorted by name bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// A tree decoded as something that keeps less of each node than [`Node`] (a parent
/// listing's [`Prev`](super::backup) entries, for example).
#[derive(Deserialize)]
pub struct TreeOf<T> {
    pub nodes: Vec<T>,
}

/// Decodes a tree's JSON handing its nodes to `f` a window at a time, never holding more
/// than one window; an error of `f` stops the decoding and is left in `stopped`.
pub(crate) struct Windows<'a, T, F, E> {
    window: usize,
    f: &'a mut F,
    stopped: &'a mut Option<E>,
    node: std::marker::PhantomData<fn() -> T>,
}

impl<'a, T, F, E> Windows<'a, T, F, E> {
    pub fn new(window: usize, f: &'a mut F, stopped: &'a mut Option<E>) -> Self {
        Self { window: window.max(1), f, stopped, node: std::marker::PhantomData }
    }
}

impl<'de, T, F, E> serde::de::DeserializeSeed<'de> for Windows<'_, T, F, E>
where
    T: Deserialize<'de>,
    F: FnMut(Vec<T>) -> Result<(), E>,
{
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T, F, E> serde::de::Visitor<'de> for Windows<'_, T, F, E>
where
    T: Deserialize<'de>,
    F: FnMut(Vec<T>) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tree")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        let Windows { window, f, stopped, node } = self;
        while let Some(key) = map.next_key::<String>()? {
            if key != "nodes" || seen {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            seen = true;
            map.next_value_seed(WindowSeq(Windows { window, f: &mut *f, stopped: &mut *stopped, node }))?;
        }
        if !seen {
            return Err(serde::de::Error::missing_field("nodes"));
        }
        Ok(())
    }
}

struct WindowSeq<'a, T, F, E>(Windows<'a, T, F, E>);

impl<'de, T, F, E> serde::de::DeserializeSeed<'de> for WindowSeq<'_, T, F, E>
where
    T: Deserialize<'de>,
    F: FnMut(Vec<T>) -> Result<(), E>,
{
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T, F, E> serde::de::Visitor<'de> for WindowSeq<'_, T, F, E>
where
    T: Deserialize<'de>,
    F: FnMut(Vec<T>) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of nodes")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Windows { window, f, stopped, .. } = self.0;
        let mut hand = |nodes: Vec<T>| {
            f(nodes).map_err(|e| {
                *stopped = Some(e);
                serde::de::Error::custom("stopped by the walk")
            })
        };
        let mut nodes = Vec::with_capacity(window.min(1024));
        while let Some(node) = seq.next_element::<T>()? {
            nodes.push(node);
            if nodes.len() >= window {
                hand(std::mem::replace(&mut nodes, Vec::with_capacity(window)))?;
            }
        }
        if !nodes.is_empty() {
            hand(nodes)?;
        }
        Ok(())
    }
}

/// What a restore point captured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum SourceKind {
    /// A directory tree.
    #[default]
    Filesystem,
    /// One block device or image file (`volumeMode: Block`).
    Block,
}

/// Figures of one backup run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    /// Files whose content was reused from the parent without reading.
    pub unchanged_files: u64,
    /// Content bytes of all files.
    pub bytes: u64,
    /// Content bytes read.
    pub bytes_read: u64,
    /// Plaintext bytes of chunks this run stored.
    pub new_bytes: u64,
    /// Bytes this run added to the repository (packs and index).
    pub stored_bytes: u64,
    pub duration_ms: u64,
    /// Entries left out because they vanished or could not be read while the backup ran.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// The first of them (up to 100), with why, as `path: reason`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_paths: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `snapshots/<id>`: a restore point. JSON, encrypted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub version: u32,
    /// RFC 3339.
    pub time: String,
    pub host: String,
    /// The path that was backed up, as given.
    pub path: String,
    pub source: SourceKind,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// The backed-up directory (or block image) itself; for a directory its `subtree`
    /// is the listing.
    pub root: Node,
    pub summary: Summary,
    pub program: String,
}

/// `locks/<id>`: plaintext.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    pub owner: String,
    pub host: String,
    pub pid: u32,
    /// Seconds since the epoch.
    pub created: i64,
    pub expires: i64,
    pub exclusive: bool,
    pub operation: String,
    /// Writers only (backup, copy): the keys of the prune marks (`prune/<id>`) the
    /// writer read after registering. Absent while it is registering: a prune then
    /// deletes nothing, since it cannot tell what the writer will reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marks_seen: Option<Vec<String>>,
}

/// `prune/<id>`: packs a prune found unused, to delete after the grace period.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PruneMark {
    /// Seconds since the epoch.
    pub marked: i64,
    pub packs: Vec<Id>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: BlobKind, n: u8, offset: u32) -> BlobEntry {
        BlobEntry {
            kind,
            id: Id([n; 32]),
            loc: BlobLoc {
                pack: Id([9; 32]),
                offset,
                stored_len: 100 + n as u32,
                raw_len: 200,
                compression: Compression::Zstd,
            },
        }
    }

    #[test]
    fn binary_structures_round_trip() {
        let entries = vec![entry(BlobKind::Chunk, 1, 0), entry(BlobKind::Tree, 2, 101)];
        assert_eq!(decode_pack_header(Id([9; 32]), &encode_pack_header(&entries)).unwrap(), entries);
        let seg: Vec<ChunkRef> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| ChunkRef {
                id: Id([i as u8 + 50; 32]),
                blob: e.id,
                loc: e.loc,
                offset: 10 * i as u32,
                len: 5,
            })
            .collect();
        assert_eq!(decode_segment(&encode_segment(&seg)).unwrap(), seg);
        let idx = vec![(Id([9; 32]), entries)];
        assert_eq!(decode_index(&encode_index(&idx)).unwrap(), idx);
        assert!(decode_segment(b"LLSG\x02").is_err());
        assert!(decode_index(&encode_index(&idx)[..20]).is_err());
    }

    #[test]
    fn ids_print_and_parse() {
        let id = Id([0xab; 32]);
        assert_eq!(Id::parse(&id.hex()), Some(id));
        assert_eq!(id.short(), "abababab");
        assert_eq!(pack_key(&id), format!("data/ab/{}", id.hex()));
        assert!(Id::parse("zz").is_none());
    }
}
