//! Writing into a Maildir, the straight-paper-path way (SPEC §4).
//!
//! Guarantees:
//!
//! * A message appears in `new/` only complete: it is written to `tmp/`,
//!   fsynced and closed (close checked) before it is linked into `new/`.
//! * It is reported stored only after `new/` itself is fsynced, so the link
//!   survives a crash; directories vdeliver creates are fsynced into their
//!   parents too.
//! * An existing name is never overwritten: `link()` fails on EEXIST and a new
//!   name is chosen; where the filesystem cannot link, `renameat2` with
//!   `RENAME_NOREPLACE` is used, never a plain rename.
//! * Every failure removes what it left in `tmp/` (see [`TmpFile`]).
//! * Maildir paths are resolved beneath the mail root without following
//!   symlinks: `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` when the
//!   kernel has it, else an `O_NOFOLLOW` walk one component at a time. A path
//!   that would leave the root is an [`MaildirError::Escape`].

use crate::names::{self, NameParts};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a Maildir could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaildirError {
    /// The path from the database would leave the mail root (`..`, an
    /// absolute path, a symlink). A configuration error: defer, and log.
    Escape { path: String, why: &'static str },
    /// A system call failed.
    Io {
        op: &'static str,
        path: String,
        errno: Errno,
    },
}

impl MaildirError {
    fn io(op: &'static str, path: impl Into<String>, errno: Errno) -> MaildirError {
        MaildirError::Io {
            op,
            path: path.into(),
            errno,
        }
    }

    /// The errno, for the outcome layer's table.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            MaildirError::Io { errno, .. } => Some(*errno),
            MaildirError::Escape { .. } => None,
        }
    }
}

impl fmt::Display for MaildirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaildirError::Escape { path, why } if *why == ROOT_ITSELF => write!(
                f,
                "Maildir path {path:?} names the mail root itself, not a Maildir beneath it"
            ),
            MaildirError::Escape { path, why } => {
                write!(f, "Maildir path {path:?} leaves the mail root: {why}")
            }
            MaildirError::Io { op, path, errno } => write!(f, "{op} {path}: {errno}"),
        }
    }
}

impl std::error::Error for MaildirError {}

type Result<T> = std::result::Result<T, MaildirError>;

/// Flags for opening a directory without following a symlink.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Retry a system call interrupted by a signal.
pub(crate) fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// The mail root, opened once.
#[derive(Debug)]
pub struct MailRoot {
    fd: OwnedFd,
}

impl MailRoot {
    /// Open the configured root. It must exist: vdeliver creates Maildirs
    /// beneath it, never the root itself.
    pub fn open(path: &Path) -> Result<MailRoot> {
        let fd = retry(|| rfs::open(path, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()))
            .map_err(|e| MaildirError::io("open mail root", path.display().to_string(), e))?;
        Ok(MailRoot { fd })
    }

    /// Open (creating on first delivery, with `folders`) the Maildir at
    /// `rel`, a path relative to the root.
    pub fn maildir(&self, rel: &str, folders: &[String]) -> Result<Maildir> {
        let comps = components(rel)?;
        let joined = comps.join("/");
        let dir = match open_beneath(&self.fd, &joined) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => walk_create(&self.fd, rel, &comps)?,
            Err(Errno::XDEV) => return Err(escape(rel, "it crosses out of the root")),
            Err(Errno::LOOP) => return Err(escape(rel, "it goes through a symlink")),
            Err(Errno::NOTDIR) => return Err(escape(rel, "a component is not a directory")),
            // No openat2 (old kernel, seccomp): the walk does the same.
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => {
                walk_create(&self.fd, rel, &comps)?
            }
            Err(e) => return Err(MaildirError::io("open", rel, e)),
        };
        Maildir::open(dir, rel, folders)
    }
}

fn escape(path: &str, why: &'static str) -> MaildirError {
    MaildirError::Escape {
        path: path.to_string(),
        why,
    }
}

/// Split a stored path into components, refusing what could leave the root
/// or name the root itself.
fn components(rel: &str) -> Result<Vec<&str>> {
    maildir_components(rel).map_err(|why| escape(rel, why))
}

/// The reason given for a Maildir path that names the mail root itself.
pub const ROOT_ITSELF: &str = "it is the mail root itself";

/// The components of a Maildir path vdeliver may deliver into: those of
/// [`path_components`], and at least one. A path of nothing but `""`, `.`
/// and `/` separators (`""`, `"."`, `"./"`, `".//."`) names the mail root
/// itself, which must never become a Maildir (its `cur/ new/ tmp/` would
/// sit beside every domain's directory, and every account's mail would be
/// beneath it): refused like `..`.
pub fn maildir_components(rel: &str) -> std::result::Result<Vec<&str>, &'static str> {
    let comps = path_components(rel)?;
    if comps.is_empty() {
        return Err(ROOT_ITSELF);
    }
    Ok(comps)
}

/// The components of a Maildir path as stored (relative to the mail root),
/// `""` and `"."` dropped; an absolute path, a NUL or a `..` is refused with
/// the reason. Lexical only: symlinks are the opener's business.
pub fn path_components(rel: &str) -> std::result::Result<Vec<&str>, &'static str> {
    if rel.starts_with('/') {
        return Err("it is absolute");
    }
    if rel.contains('\0') {
        return Err("it contains a NUL byte");
    }
    let mut out = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("it contains '..'"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn open_beneath(root: &OwnedFd, rel: &str) -> rustix::io::Result<OwnedFd> {
    retry(|| {
        rfs::openat2(
            root,
            rel,
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    })
}

/// Open `dir/name` as a directory without following a symlink, creating it
/// (mode 0700) when missing. Returns the fd and whether it was created.
fn open_or_mkdir(dir: BorrowedFd<'_>, name: &str, shown: &str) -> Result<(OwnedFd, bool)> {
    let mut created = false;
    loop {
        match retry(|| rfs::openat(dir, name, DIR_FLAGS, Mode::empty())) {
            Ok(fd) => return Ok((fd, created)),
            Err(Errno::NOENT) if !created => {
                match retry(|| rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))) {
                    Ok(()) | Err(Errno::EXIST) => created = true,
                    Err(e) => return Err(MaildirError::io("mkdir", shown, e)),
                }
            }
            Err(Errno::LOOP) => return Err(escape(shown, "it goes through a symlink")),
            Err(Errno::NOTDIR) => return Err(escape(shown, "a component is not a directory")),
            Err(e) => return Err(MaildirError::io("open", shown, e)),
        }
    }
}

/// The component-by-component walk, creating what is missing and fsyncing
/// each directory that gained an entry.
fn walk_create(root: &OwnedFd, rel: &str, comps: &[&str]) -> Result<OwnedFd> {
    let mut cur: Option<OwnedFd> = None;
    for c in comps {
        let parent = cur.as_ref().map_or(root.as_fd(), |f| f.as_fd());
        let (fd, created) = open_or_mkdir(parent, c, rel)?;
        if created {
            retry(|| rfs::fsync(parent)).map_err(|e| MaildirError::io("fsync", rel, e))?;
        }
        cur = Some(fd);
    }
    cur.ok_or_else(|| escape(rel, ROOT_ITSELF))
}

/// An open Maildir: its directory, `tmp/` and `new/`.
#[derive(Debug)]
pub struct Maildir {
    dir: OwnedFd,
    tmp: OwnedFd,
    new: OwnedFd,
    /// The path as the database gives it, for messages.
    pub rel: String,
}

impl Maildir {
    fn open(dir: OwnedFd, rel: &str, folders: &[String]) -> Result<Maildir> {
        let sub = |name: &str| retry(|| rfs::openat(&dir, name, DIR_FLAGS, Mode::empty()));
        let (tmp, new) = match (sub("tmp"), sub("new")) {
            (Ok(t), Ok(n)) => (t, n),
            (Err(Errno::LOOP), _) | (_, Err(Errno::LOOP)) => {
                return Err(escape(rel, "tmp/ or new/ is a symlink"))
            }
            (Err(Errno::NOENT), _) | (_, Err(Errno::NOENT)) => {
                create_structure(&dir, rel, folders)?;
                let t = sub("tmp").map_err(|e| MaildirError::io("open", format!("{rel}tmp"), e))?;
                let n = sub("new").map_err(|e| MaildirError::io("open", format!("{rel}new"), e))?;
                (t, n)
            }
            (Err(Errno::NOTDIR), _) | (_, Err(Errno::NOTDIR)) => {
                return Err(escape(rel, "tmp or new is not a directory"))
            }
            (Err(e), _) | (_, Err(e)) => return Err(MaildirError::io("open", rel, e)),
        };
        Ok(Maildir {
            dir,
            tmp,
            new,
            rel: rel.to_string(),
        })
    }

    /// The Maildir's own directory (for quota files and folders).
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The Maildir++ folder `.name` when it exists as a usable Maildir
    /// (a real directory with `tmp/` and `new/`); `None` otherwise, and
    /// the caller uses the INBOX. The name is matched exactly, else without
    /// regard to ASCII case (`alice-sent@` finds `.Sent`). Never created,
    /// never through a symlink.
    pub fn folder(&self, name: &str) -> Option<Maildir> {
        if crate::config::check_folder_name(name).is_err() {
            return None;
        }
        let exact = format!(".{name}");
        let dot = match retry(|| rfs::openat(&self.dir, exact.as_str(), DIR_FLAGS, Mode::empty())) {
            Ok(_) => exact,
            Err(_) => self.folder_ignoring_case(&exact)?,
        };
        let fd = retry(|| rfs::openat(&self.dir, dot.as_str(), DIR_FLAGS, Mode::empty())).ok()?;
        let sub = |n: &str| retry(|| rfs::openat(&fd, n, DIR_FLAGS, Mode::empty())).ok();
        let (tmp, new) = (sub("tmp")?, sub("new")?);
        Some(Maildir {
            dir: fd,
            tmp,
            new,
            rel: format!("{}{dot}/", self.rel),
        })
    }
}

impl Maildir {
    fn folder_ignoring_case(&self, dot_name: &str) -> Option<String> {
        let dup = rustix::io::fcntl_dupfd_cloexec(&self.dir, 0).ok()?;
        let mut dir = rfs::Dir::new(dup).ok()?;
        while let Some(Ok(entry)) = dir.read() {
            let n = entry.file_name().to_str().ok()?;
            if n.eq_ignore_ascii_case(dot_name) && n != "." && n != ".." {
                return Some(n.to_string());
            }
        }
        None
    }
}

/// Make `cur/ new/ tmp/` and the default folders. Folders first and `tmp/`
/// last, so that a crash half-way leaves `tmp/` missing and the next
/// delivery finishes the job; every directory that gained an entry is
/// fsynced.
fn create_structure(dir: &OwnedFd, rel: &str, folders: &[String]) -> Result<()> {
    let io = |op, e| MaildirError::io(op, rel, e);
    for f in folders {
        let name = format!(".{f}");
        let (fd, _) = open_or_mkdir(dir.as_fd(), &name, rel)?;
        for s in ["cur", "new", "tmp"] {
            open_or_mkdir(fd.as_fd(), s, rel)?;
        }
        let marker = retry(|| {
            rfs::openat(
                &fd,
                "maildirfolder",
                OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })
        .map_err(|e| io("create maildirfolder in", e))?;
        drop(marker);
        retry(|| rfs::fsync(&fd)).map_err(|e| io("fsync", e))?;
    }
    for s in ["cur", "new", "tmp"] {
        open_or_mkdir(dir.as_fd(), s, rel)?;
    }
    retry(|| rfs::fsync(dir)).map_err(|e| io("fsync", e))?;
    Ok(())
}

/// Makes unique names: `<secs>.M<usec>P<pid>Q<n>R<random>.<host>`.
#[derive(Debug)]
pub struct Namer {
    host: String,
    pid: u32,
    seq: u64,
}

impl Namer {
    pub fn new() -> Namer {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        Namer {
            host: names::escape_host(if host.is_empty() { "localhost" } else { &host }),
            pid: rustix::process::getpid().as_raw_nonzero().get() as u32,
            seq: 0,
        }
    }

    pub fn next_name(&mut self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut r = [0u8; 8];
        // The random part only adds uniqueness on top of time, pid and
        // counter; if the kernel cannot give it, zeros are still unique.
        let _ = rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::NONBLOCK);
        let parts = NameParts {
            secs: now.as_secs(),
            usec: now.subsec_micros(),
            pid: self.pid,
            seq: self.seq,
            random: u64::from_le_bytes(r),
            host: &self.host,
        };
        self.seq += 1;
        names::unique(&parts)
    }
}

impl Default for Namer {
    fn default() -> Namer {
        Namer::new()
    }
}

/// Files in `tmp/` not yet committed or removed: (a duplicate of the `tmp/`
/// directory's fd, name). The deadline watchdog removes them before it
/// exits, since the thread that owns them may be stuck in a system call.
static PENDING: Mutex<Vec<(OwnedFd, String)>> = Mutex::new(Vec::new());

/// Remove every `tmp/` file still pending (called by the deadline).
pub fn remove_pending_tmp() {
    let pending = match PENDING.lock() {
        Ok(mut p) => std::mem::take(&mut *p),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for (dir, name) in pending {
        let _ = rfs::unlinkat(&dir, name.as_str(), rfs::AtFlags::empty());
    }
}

fn track(dir: &OwnedFd, name: &str) {
    if let (Ok(dup), Ok(mut p)) = (rustix::io::fcntl_dupfd_cloexec(dir, 0), PENDING.lock()) {
        p.push((dup, name.to_string()));
    }
}

fn untrack(name: &str) {
    if let Ok(mut p) = PENDING.lock() {
        p.retain(|(_, n)| n != name);
    }
}

/// A file being written in `tmp/`. Dropping it removes the file, so every
/// early return cleans up; [`TmpFile::commit`] is the only way out that
/// keeps the message.
#[derive(Debug)]
pub struct TmpFile<'m> {
    md: &'m Maildir,
    fd: Option<OwnedFd>,
    name: String,
    size: u64,
}

impl<'m> TmpFile<'m> {
    /// Create `tmp/<unique>` exclusively, mode 0600.
    pub fn create(md: &'m Maildir, namer: &mut Namer) -> Result<TmpFile<'m>> {
        for _ in 0..16 {
            let name = namer.next_name();
            let r = retry(|| {
                rfs::openat(
                    &md.tmp,
                    name.as_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
            });
            match r {
                Ok(fd) => {
                    track(&md.tmp, &name);
                    return Ok(TmpFile {
                        md,
                        fd: Some(fd),
                        name,
                        size: 0,
                    });
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(MaildirError::io("create", format!("{}tmp/", md.rel), e)),
            }
        }
        Err(MaildirError::io(
            "create",
            format!("{}tmp/", md.rel),
            Errno::EXIST,
        ))
    }

    /// Append bytes, all of them or an error.
    pub fn write_all(&mut self, mut buf: &[u8]) -> Result<()> {
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| self.err("write", Errno::BADF))?;
        while !buf.is_empty() {
            match retry(|| rustix::io::write(fd, buf)) {
                Ok(0) => return Err(self.err("write", Errno::IO)),
                Ok(n) => {
                    buf = &buf[n..];
                    self.size += n as u64;
                }
                Err(e) => return Err(self.err("write", e)),
            }
        }
        Ok(())
    }

    /// Bytes written so far: the exact stored size.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn err(&self, op: &'static str, e: Errno) -> MaildirError {
        MaildirError::io(op, format!("{}tmp/{}", self.md.rel, self.name), e)
    }

    /// fsync and close (checking both). After this the file is complete on
    /// disk, still only in `tmp/`.
    pub fn sync(&mut self) -> Result<()> {
        let fd = self
            .fd
            .take()
            .ok_or_else(|| self.err("fsync", Errno::BADF))?;
        retry(|| rfs::fsync(&fd)).map_err(|e| self.err("fsync", e))?;
        // close(2) can report a deferred write error (NFS and friends);
        // std and rustix drop it, nix returns it.
        nix::unistd::close(fd)
            .map_err(|e| self.err("close", Errno::from_raw_os_error(e as i32)))?;
        Ok(())
    }

    /// Link the synced file into `new/` as `<unique>,S=<size>`, fsync
    /// `new/`, and remove the `tmp/` name. Returns the name in `new/`.
    pub fn commit(self, namer: &mut Namer) -> Result<String> {
        let mut names = commit_all(vec![self], namer)?;
        Ok(names.pop().unwrap_or_default())
    }

    /// Link (or, where links are impossible, rename) into `new/` under a
    /// fresh name. Returns the name in `new/`.
    fn link_new(&mut self, namer: &mut Namer) -> Result<String> {
        if self.fd.is_some() {
            self.sync()?;
        }
        let md = self.md;
        let mut unique = self.name.clone();
        let mut last = Errno::EXIST;
        for _ in 0..16 {
            let new_name = names::new_name(&unique, self.size);
            match link_or_rename(md, &self.name, &new_name) {
                Ok(how) => {
                    if how == Moved::Renamed {
                        // Nothing is left in tmp/ to remove.
                        untrack(&self.name);
                        self.name.clear();
                    }
                    return Ok(new_name);
                }
                Err(Errno::EXIST) => unique = namer.next_name(),
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(MaildirError::io(
            "link into",
            format!("{}new/", md.rel),
            last,
        ))
    }

    /// Open the written file for reading (to forward or copy it).
    pub fn reopen(&self) -> Result<OwnedFd> {
        retry(|| {
            rfs::openat(
                &self.md.tmp,
                self.name.as_str(),
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
        .map_err(|e| self.err("open", e))
    }

    /// Put the same (synced) message into `other`'s `tmp/`: a hard link,
    /// or, across filesystems, a copy that is fsynced in turn.
    pub fn link_into<'o>(&self, other: &'o Maildir, namer: &mut Namer) -> Result<TmpFile<'o>> {
        for _ in 0..16 {
            let name = namer.next_name();
            match retry(|| {
                rfs::linkat(
                    &self.md.tmp,
                    self.name.as_str(),
                    &other.tmp,
                    name.as_str(),
                    rfs::AtFlags::empty(),
                )
            }) {
                Ok(()) => {
                    track(&other.tmp, &name);
                    return Ok(TmpFile {
                        md: other,
                        fd: None,
                        name,
                        size: self.size,
                    });
                }
                Err(Errno::EXIST) => continue,
                Err(Errno::XDEV | Errno::PERM | Errno::NOTSUP | Errno::NOSYS | Errno::MLINK) => {
                    return self.copy_into(other, namer)
                }
                Err(e) => {
                    return Err(MaildirError::io(
                        "link into",
                        format!("{}tmp/{name}", other.rel),
                        e,
                    ))
                }
            }
        }
        Err(MaildirError::io(
            "link into",
            format!("{}tmp/", other.rel),
            Errno::EXIST,
        ))
    }

    fn copy_into<'o>(&self, other: &'o Maildir, namer: &mut Namer) -> Result<TmpFile<'o>> {
        let src = self.reopen()?;
        let mut dst = TmpFile::create(other, namer)?;
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = retry(|| rustix::io::read(&src, &mut buf)).map_err(|e| self.err("read", e))?;
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n])?;
        }
        if dst.size != self.size {
            return Err(dst.err("copy (size changed)", Errno::IO));
        }
        dst.sync()?;
        Ok(dst)
    }

    fn remove_tmp(&mut self) {
        self.fd = None;
        if !self.name.is_empty() {
            let _ =
                retry(|| rfs::unlinkat(&self.md.tmp, self.name.as_str(), rfs::AtFlags::empty()));
            untrack(&self.name);
            self.name.clear();
        }
    }
}

impl Drop for TmpFile<'_> {
    fn drop(&mut self) {
        self.remove_tmp();
    }
}

/// Make every synced copy visible at once: link each into its `new/`,
/// fsync every `new/`, then remove the `tmp/` names. If a link or an fsync
/// fails, the `new/` names made so far are removed again, so a failed
/// delivery leaves nothing visible (and a retry makes no duplicate).
/// Returns the names in `new/`, in order.
pub fn commit_all(mut tmps: Vec<TmpFile<'_>>, namer: &mut Namer) -> Result<Vec<String>> {
    let mut linked: Vec<(&Maildir, String)> = Vec::with_capacity(tmps.len());
    let undo = |linked: &[(&Maildir, String)]| {
        for (md, name) in linked {
            let _ = retry(|| rfs::unlinkat(&md.new, name.as_str(), rfs::AtFlags::empty()));
        }
    };
    for t in tmps.iter_mut() {
        match t.link_new(namer) {
            Ok(name) => linked.push((t.md, name)),
            Err(e) => {
                undo(&linked);
                return Err(e);
            }
        }
    }
    let mut synced: Vec<*const Maildir> = Vec::with_capacity(linked.len());
    for (md, _) in &linked {
        let key: *const Maildir = *md;
        if synced.contains(&key) {
            continue;
        }
        if let Err(e) = retry(|| rfs::fsync(&md.new)) {
            // The links may not survive a crash: take them back rather
            // than claim them.
            undo(&linked);
            return Err(MaildirError::io("fsync", format!("{}new/", md.rel), e));
        }
        synced.push(key);
    }
    let names = linked.into_iter().map(|(_, n)| n).collect();
    // Delivered. A tmp/ name that cannot be removed is harmless (IMAP
    // servers clean tmp/), so it cannot fail the delivery.
    drop(tmps);
    Ok(names)
}

#[derive(Debug, PartialEq, Eq)]
enum Moved {
    Linked,
    Renamed,
}

/// `link(tmp/a, new/b)`; where the filesystem cannot make hard links,
/// `renameat2(RENAME_NOREPLACE)`. Never a rename that could overwrite.
fn link_or_rename(md: &Maildir, tmp: &str, new: &str) -> rustix::io::Result<Moved> {
    match retry(|| rfs::linkat(&md.tmp, tmp, &md.new, new, rfs::AtFlags::empty())) {
        Ok(()) => Ok(Moved::Linked),
        Err(Errno::PERM | Errno::NOTSUP | Errno::NOSYS | Errno::MLINK) => {
            retry(|| rfs::renameat_with(&md.tmp, tmp, &md.new, new, rfs::RenameFlags::NOREPLACE))
                .map(|()| Moved::Renamed)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes_lexically() {
        for (p, ok) in [
            ("example.com/alice/Maildir/", true),
            ("./a//b/", true),
            ("../x", false),
            ("a/../../x", false),
            ("/etc", false),
            ("a\0b", false),
            // The mail root itself (issue 10, item 15).
            ("", false),
            (".", false),
            ("./", false),
            (".//./", false),
            ("/", false),
        ] {
            assert_eq!(components(p).is_ok(), ok, "{p}");
        }
        assert_eq!(
            escape(".", ROOT_ITSELF).to_string(),
            "Maildir path \".\" names the mail root itself, not a Maildir beneath it"
        );
    }
}
