//! Reading filesystem metadata into format nodes, and writing it back.

use super::format::{Node, NodeKind};
use super::{RepoError, b64, unb64};
use std::ffi::{CString, OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// A node for `name` from its `lstat` metadata (content, subtree and hard links are
/// filled in by the caller).
pub fn node_from(name: &OsStr, path: &Path, meta: &Metadata) -> Result<Node, RepoError> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        NodeKind::Socket
    };
    let mut node = Node {
        kind: Some(kind),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        ctime: meta.ctime(),
        ctime_nsec: meta.ctime_nsec() as u32,
        inode: meta.ino(),
        device: meta.dev(),
        nlink: meta.nlink(),
        size: if kind == NodeKind::File { meta.size() } else { 0 },
        ..Node::default()
    };
    set_name(&mut node, name);
    node.xattrs = read_xattrs(path);
    match kind {
        NodeKind::File => node.sparse = meta.blocks() * 512 < meta.size(),
        NodeKind::Symlink => {
            let target = std::fs::read_link(path).map_err(|e| RepoError::io("read link", path, e))?;
            match target.to_str() {
                Some(s) => node.link_target = Some(s.to_string()),
                None => node.link_target_b64 = Some(b64(target.as_os_str().as_bytes())),
            }
        }
        NodeKind::BlockDevice | NodeKind::CharDevice => node.rdev = Some(meta.rdev()),
        _ => {}
    }
    Ok(node)
}

pub fn set_name(node: &mut Node, name: &OsStr) {
    match name.to_str() {
        Some(s) => node.name = s.to_string(),
        None => node.name_b64 = Some(b64(name.as_bytes())),
    }
}

/// The node's file name as the OS sees it.
pub fn name_of(node: &Node) -> OsString {
    match &node.name_b64 {
        Some(b) => OsString::from_vec(unb64(b).unwrap_or_default()),
        None => OsString::from(&node.name),
    }
}

pub fn link_target_of(node: &Node) -> OsString {
    match (&node.link_target, &node.link_target_b64) {
        (_, Some(b)) => OsString::from_vec(unb64(b).unwrap_or_default()),
        (Some(s), None) => OsString::from(s),
        (None, None) => OsString::new(),
    }
}

fn cpath(path: &Path) -> Result<CString, RepoError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| RepoError::Invalid(format!("path {} contains a NUL byte", path.display())))
}

fn check(r: libc::c_int, action: &'static str, path: &Path) -> Result<(), RepoError> {
    if r == 0 { Ok(()) } else { Err(RepoError::io(action, path, std::io::Error::last_os_error())) }
}

/// Creates a device node, FIFO or socket placeholder.
pub fn make_special(path: &Path, node: &Node) -> Result<(), RepoError> {
    let c = cpath(path)?;
    let (kind_bits, dev) = match node.kind {
        Some(NodeKind::BlockDevice) => (libc::S_IFBLK, node.rdev.unwrap_or(0)),
        Some(NodeKind::CharDevice) => (libc::S_IFCHR, node.rdev.unwrap_or(0)),
        Some(NodeKind::Fifo) => (libc::S_IFIFO, 0),
        _ => (libc::S_IFSOCK, 0),
    };
    // SAFETY: `c` is a valid NUL-terminated path; mknod does not retain it.
    let r = unsafe { libc::mknod(c.as_ptr(), kind_bits | (node.mode & 0o7777), dev as libc::dev_t) };
    check(r, "create special file", path)
}

/// Applies ownership (when permitted), permissions and times. Symlinks get ownership
/// and times only.
pub fn apply_metadata(path: &Path, node: &Node, chown: bool) -> Result<(), RepoError> {
    let c = cpath(path)?;
    let is_link = node.kind == Some(NodeKind::Symlink);
    if chown {
        // SAFETY: valid path pointer; lchown does not retain it.
        let r = unsafe { libc::lchown(c.as_ptr(), node.uid, node.gid) };
        check(r, "set owner of", path)?;
    }
    if !is_link {
        // SAFETY: as above.
        let r = unsafe { libc::chmod(c.as_ptr(), node.mode as libc::mode_t) };
        check(r, "set permissions of", path)?;
    }
    let t = libc::timespec { tv_sec: node.mtime as libc::time_t, tv_nsec: node.mtime_nsec as libc::c_long };
    let times = [t, t];
    // SAFETY: `times` is a valid array of two timespecs; AT_FDCWD with an absolute or
    // relative path is allowed.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    check(r, "set times of", path)
}

/// A file's extended attributes (not following a symlink), name to base64 value. Names
/// that are not UTF-8 and attributes that cannot be read are left out. A file without
/// any costs one system call and no allocation.
pub fn read_xattrs(path: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(c) = cpath(path) else { return out };
    // SAFETY (both calls): a valid path, and a buffer valid for the length given (or
    // null with length 0, which asks for the size).
    let Some(names) = sized(|buf, len| unsafe { libc::llistxattr(c.as_ptr(), buf.cast(), len) }) else {
        return out;
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let (Ok(text), Ok(cname)) = (std::str::from_utf8(name), CString::new(name)) else { continue };
        if let Some(value) = sized(|buf, len| unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), buf.cast(), len) }) {
            out.insert(text.to_string(), b64(&value));
        }
    }
    out
}

/// The bytes a `*xattr` call returns: asks for the size, then reads, again if it grew in
/// between. `None` on an error.
fn sized(call: impl Fn(*mut u8, usize) -> isize) -> Option<Vec<u8>> {
    loop {
        let want = call(std::ptr::null_mut(), 0);
        if want <= 0 {
            return (want == 0).then(Vec::new);
        }
        let mut buf = vec![0u8; want as usize];
        let n = call(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Some(buf);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return None;
        }
    }
}

/// Sets a node's extended attributes on `path` (not following a symlink); returns the
/// ones that could not be set, with why.
pub fn write_xattrs(path: &Path, node: &Node) -> Vec<String> {
    let mut failed = Vec::new();
    let Ok(c) = cpath(path) else { return failed };
    for (name, value) in &node.xattrs {
        let (Ok(cname), Some(value)) = (CString::new(name.as_bytes()), unb64(value)) else { continue };
        // SAFETY: valid path, name and value buffer.
        let r = unsafe { libc::lsetxattr(c.as_ptr(), cname.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if r != 0 {
            failed.push(format!(
                "{}: extended attribute {name} not restored: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    failed
}

/// Whether this process may give files away to other owners.
pub fn can_chown() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
