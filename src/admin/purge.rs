//! Removing a Maildir from disk: only when asked (`--purge`), only beneath
//! the mail root, never through a symlink, never one another account
//! still uses.
//!
//! The path is opened beneath the root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (an `O_NOFOLLOW` walk
//! where the kernel lacks it), and everything below is removed through
//! directory file descriptors: each entry is first `unlinkat`ed, which
//! removes a symlink itself and never what it points to; only an entry the
//! kernel reports as a directory is opened (`O_NOFOLLOW|O_DIRECTORY`) and
//! emptied. So a symlink planted anywhere in the tree — or swapped in
//! while the purge runs — can only ever lose the link.
//!
//! The removal runs as the mail user ([`super::as_mail_user`]): it can
//! remove only what vdeliver itself could.

use super::{AdminError, Result};
use crate::maildir::{path_components as components, retry, DIR_FLAGS};
use postgres::Client;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::Serialize;
use std::ffi::CString;
use std::path::Path;

/// What a purge found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purged {
    Removed,
    /// Nothing was there (never delivered to, or already gone).
    Absent,
}

/// Deepest directory nesting removed; a Maildir++ tree is three levels.
const MAX_DEPTH: usize = 32;

/// Remove the Maildir at `rel` (relative to `root`) and the directories
/// above it that it leaves empty, up to but not including the root. Call
/// it after the account row is gone: a Maildir any remaining account uses
/// (the same path, one inside it, or one it is inside) is refused.
pub fn purge_maildir(client: &mut Client, root: &Path, rel: &str) -> Result<Purged> {
    let refuse = |why: String| AdminError::Failed(format!("refusing to purge {rel:?}: {why}"));
    let comps = components(rel).map_err(|w| refuse(w.into()))?;
    if comps.is_empty() {
        return Err(refuse("it is the mail root itself".into()));
    }
    for r in client.query(
        "SELECT a.local_part || '@' || d.name, a.maildir
           FROM accounts a JOIN domains d ON d.id = a.domain_id",
        &[],
    )? {
        let other: String = r.get(1);
        let Ok(oc) = components(&other) else { continue };
        let n = oc.len().min(comps.len());
        if oc[..n] == comps[..n] {
            return Err(refuse(format!(
                "account {} still uses {other:?}",
                r.get::<_, String>(0)
            )));
        }
    }
    // The database is done with: the rest is the mail user's work.
    super::as_mail_user(root, |root| remove(root, rel, &comps))
}

/// The filesystem half of [`purge_maildir`], run as the mail user.
fn remove(root: &Path, rel: &str, comps: &[&str]) -> Result<Purged> {
    let refuse = |why: String| AdminError::Failed(format!("refusing to purge {rel:?}: {why}"));
    let io = |op: &str, e: Errno| AdminError::Failed(format!("purge {rel:?}: {op}: {e}"));
    let root_fd = retry(|| rfs::open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()))
        .map_err(|e| io(&format!("open mail root {}", root.display()), e))?;
    let (last, parents) = comps.split_last().ok_or_else(|| refuse("empty".into()))?;
    let parent = match open_dir_beneath(&root_fd, parents) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Purged::Absent),
        Err(e) => return Err(unsafe_or_io(rel, e, &refuse, &io)),
    };
    let target = match retry(|| rfs::openat(&parent, *last, DIR_FLAGS, Mode::empty())) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Purged::Absent),
        Err(e) => return Err(unsafe_or_io(rel, e, &refuse, &io)),
    };
    if !looks_like_maildir(&target).map_err(|e| io("read", e))? {
        return Err(refuse(
            "it is not empty and has no cur/, new/ or tmp/; not a Maildir".into(),
        ));
    }
    empty_dir(target.as_fd(), 0).map_err(|e| io("remove", e))?;
    drop(target);
    retry(|| rfs::unlinkat(&parent, *last, AtFlags::REMOVEDIR)).map_err(|e| io("rmdir", e))?;
    // Parents it leaves empty (`example.com/alice/` of
    // `example.com/alice/Maildir/`): stop at the first that is not.
    for i in (1..comps.len()).rev() {
        let Ok(up) = open_dir_beneath(&root_fd, &comps[..i - 1]) else {
            break;
        };
        if retry(|| rfs::unlinkat(&up, comps[i - 1], AtFlags::REMOVEDIR)).is_err() {
            break;
        }
    }
    Ok(Purged::Removed)
}

pub(super) fn unsafe_or_io(
    rel: &str,
    e: Errno,
    refuse: &impl Fn(String) -> AdminError,
    io: &impl Fn(&str, Errno) -> AdminError,
) -> AdminError {
    match e {
        Errno::LOOP => refuse("it goes through a symlink".into()),
        Errno::XDEV => refuse("it leaves the mail root".into()),
        // O_NOFOLLOW|O_DIRECTORY on a symlink says ENOTDIR.
        Errno::NOTDIR => refuse("a component is a symlink or not a directory".into()),
        e => io(&format!("open {rel}"), e),
    }
}

/// Open `comps` beneath `root` as a directory without following symlinks.
pub(super) fn open_dir_beneath(root: &OwnedFd, comps: &[&str]) -> rustix::io::Result<OwnedFd> {
    if comps.is_empty() {
        return retry(|| rfs::openat(root, ".", DIR_FLAGS, Mode::empty()));
    }
    let joined = comps.join("/");
    let r = retry(|| {
        rfs::openat2(
            root,
            joined.as_str(),
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    });
    match r {
        // No openat2 (old kernel, seccomp): the same, one component at a time.
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => {
            let mut cur = retry(|| rfs::openat(root, ".", DIR_FLAGS, Mode::empty()))?;
            for c in comps {
                cur = retry(|| rfs::openat(&cur, *c, DIR_FLAGS, Mode::empty()))?;
            }
            Ok(cur)
        }
        r => r,
    }
}

/// The names in `dir`, `.` and `..` left out.
pub(super) fn names(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<CString>> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut v = Vec::new();
    while let Some(entry) = d.read() {
        let entry = entry?;
        let n = entry.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            v.push(n.to_owned());
        }
    }
    Ok(v)
}

/// Empty, or holding at least one of `cur`, `new`, `tmp` as a real
/// directory: something vdeliver or an IMAP server made.
fn looks_like_maildir(dir: &OwnedFd) -> rustix::io::Result<bool> {
    let all = names(dir.as_fd())?;
    if all.is_empty() {
        return Ok(true);
    }
    Ok(["cur", "new", "tmp"].iter().any(|s| {
        rfs::statat(dir, *s, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory)
            .unwrap_or(false)
    }))
}

/// Remove everything inside `dir`, never following a symlink.
fn empty_dir(dir: BorrowedFd<'_>, depth: usize) -> rustix::io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    for name in names(dir)? {
        match retry(|| rfs::unlinkat(dir, name.as_c_str(), AtFlags::empty())) {
            Ok(()) | Err(Errno::NOENT) => continue,
            Err(Errno::ISDIR | Errno::PERM) => {}
            Err(e) => return Err(e),
        }
        // A directory (the kernel said so): open it without following a
        // symlink that may have replaced it meanwhile.
        let sub = match retry(|| rfs::openat(dir, name.as_c_str(), DIR_FLAGS, Mode::empty())) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        empty_dir(sub.as_fd(), depth + 1)?;
        drop(sub);
        match retry(|| rfs::unlinkat(dir, name.as_c_str(), AtFlags::REMOVEDIR)) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escaping_paths() {
        assert!(components("/etc").is_err());
        assert!(components("a/../../b").is_err());
        assert!(components("a\0b").is_err());
        assert_eq!(components("a//./b/").unwrap(), vec!["a", "b"]);
        assert!(components("./").unwrap().is_empty());
    }

    #[test]
    fn empties_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let md = tempfile::tempdir().unwrap();
        for d in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new"] {
            std::fs::create_dir_all(md.path().join(d)).unwrap();
        }
        std::fs::write(md.path().join("cur/1,S=1"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), md.path().join("new/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), md.path().join(".Evil")).unwrap();
        let fd = rfs::open(md.path(), DIR_FLAGS, Mode::empty()).unwrap();
        assert!(looks_like_maildir(&fd).unwrap());
        empty_dir(fd.as_fd(), 0).unwrap();
        assert_eq!(std::fs::read_dir(md.path()).unwrap().count(), 0);
        assert_eq!(std::fs::read(outside.path().join("keep")).unwrap(), b"x");
    }
}
