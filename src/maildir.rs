//! Writing into a Maildir, the straight-paper-path way.
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
//! * Open files are bounded whatever the fan-out: a [`Maildir`]
//!   opened [`Fds::Kept`] holds three descriptors (itself, `tmp/`, `new/`)
//!   until it is dropped; one opened [`Fds::Reopened`] holds none between
//!   operations and reopens the directory it needs beneath the root (the
//!   same `openat2`, or the walk) for each one, closing it after. A
//!   delivery keeps as many Maildirs open as its open-file budget
//!   ([`crate::openfiles`]) allows, in plan order, and reopens the rest;
//!   the `tmp/` copies and `new/` links are names, never held open, and
//!   `new/` is fsynced through one descriptor at a time. A single mailbox
//!   is always kept: its path costs what it always did.

use crate::names::{self, NameParts};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
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

/// The mail root, opened once. Its descriptor is shared (not duplicated)
/// by every [`Maildir`] opened beneath it, which reopen their directories
/// through it.
#[derive(Debug)]
pub struct MailRoot {
    fd: Arc<OwnedFd>,
}

/// Whether a [`Maildir`] keeps its directories open between operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fds {
    /// Three descriptors held (the Maildir, `tmp/`, `new/`): no system call
    /// to reach them. Every single-mailbox delivery, and as many Maildirs
    /// of a fan-out as the open-file budget allows.
    Kept,
    /// None held: each operation reopens the directory it needs beneath
    /// the root (one `openat2`) and closes it after.
    Reopened,
}

impl MailRoot {
    /// Open the configured root. It must exist: vdeliver creates Maildirs
    /// beneath it, never the root itself.
    pub fn open(path: &Path) -> Result<MailRoot> {
        let fd = retry(|| rfs::open(path, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()))
            .map_err(|e| MaildirError::io("open mail root", path.display().to_string(), e))?;
        Ok(MailRoot { fd: Arc::new(fd) })
    }

    /// Open (creating on first delivery, with `folders`) the Maildir at
    /// `rel`, a path relative to the root, keeping its directories open.
    pub fn maildir(&self, rel: &str, folders: &[String]) -> Result<Maildir> {
        self.open_maildir(rel, folders, Fds::Kept)
    }

    /// Open the directory `rel` (relative to the root; e.g. an account's
    /// home) beneath the root without following a symlink and without
    /// creating anything.
    pub fn open_dir(&self, rel: &str) -> Result<OwnedFd> {
        let comps = components(rel)?;
        Beneath::new(&self.fd, comps.join("/")).open("", rel)
    }

    /// The root's descriptor (for opening files beneath it).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// [`MailRoot::maildir`], with the directories kept open or not.
    pub fn open_maildir(&self, rel: &str, folders: &[String], fds: Fds) -> Result<Maildir> {
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
        Maildir::open(dir, rel, folders, Beneath::new(&self.fd, joined), fds)
    }
}

/// Where a Maildir is, beneath the root: enough to reopen it.
#[derive(Debug, Clone)]
struct Beneath {
    root: Arc<OwnedFd>,
    /// The components joined by `/`; empty for the root itself.
    path: String,
}

impl Beneath {
    fn new(root: &Arc<OwnedFd>, path: String) -> Beneath {
        Beneath {
            root: Arc::clone(root),
            path,
        }
    }

    fn join(&self, name: &str) -> String {
        match (self.path.is_empty(), name.is_empty()) {
            (true, true) => ".".to_string(),
            (true, false) => name.to_string(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}/{name}", self.path),
        }
    }

    /// Open `name` (a directory; `""` for the Maildir itself) beneath the
    /// root without following a symlink, as [`MailRoot::maildir`] first did.
    fn open(&self, name: &str, shown: &str) -> Result<OwnedFd> {
        let path = self.join(name);
        let r = if path == "." {
            retry(|| rfs::openat(&*self.root, ".", DIR_FLAGS, Mode::empty()))
        } else {
            open_beneath(&self.root, &path)
        };
        match r {
            Ok(fd) => Ok(fd),
            Err(Errno::XDEV) => Err(escape(shown, "it crosses out of the root")),
            Err(Errno::LOOP) => Err(escape(shown, "it goes through a symlink")),
            Err(Errno::NOTDIR) => Err(escape(shown, "a component is not a directory")),
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => {
                self.walk(&path, shown)
            }
            Err(e) => Err(MaildirError::io("open", shown, e)),
        }
    }

    /// The `O_NOFOLLOW` walk, for kernels without `openat2`; creates nothing.
    fn walk(&self, path: &str, shown: &str) -> Result<OwnedFd> {
        let mut cur = retry(|| rfs::openat(&*self.root, ".", DIR_FLAGS, Mode::empty()))
            .map_err(|e| MaildirError::io("open", shown, e))?;
        for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            cur = match retry(|| rfs::openat(&cur, c, DIR_FLAGS, Mode::empty())) {
                Ok(fd) => fd,
                Err(Errno::LOOP) => return Err(escape(shown, "it goes through a symlink")),
                Err(Errno::NOTDIR) => return Err(escape(shown, "a component is not a directory")),
                Err(e) => return Err(MaildirError::io("open", shown, e)),
            };
        }
        Ok(cur)
    }
}

/// A directory of a [`Maildir`]: its kept descriptor, or one opened for
/// this operation (closed when dropped).
#[derive(Debug)]
pub enum Handle<'a> {
    Kept(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for Handle<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Handle::Kept(fd) => *fd,
            Handle::Opened(fd) => fd.as_fd(),
        }
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

/// A Maildir checked to exist (made if need be) beneath the root: with its
/// directory, `tmp/` and `new/` open ([`Fds::Kept`]), or only its place
/// ([`Fds::Reopened`]).
#[derive(Debug)]
pub struct Maildir {
    kept: Option<KeptFds>,
    at: Beneath,
    /// The path as the database gives it, for messages.
    pub rel: String,
}

#[derive(Debug)]
struct KeptFds {
    dir: OwnedFd,
    tmp: OwnedFd,
    new: OwnedFd,
}

impl Maildir {
    fn open(dir: OwnedFd, rel: &str, folders: &[String], at: Beneath, fds: Fds) -> Result<Maildir> {
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
            kept: (fds == Fds::Kept).then_some(KeptFds { dir, tmp, new }),
            at,
            rel: rel.to_string(),
        })
    }

    /// Whether the directories are kept open.
    pub fn fds(&self) -> Fds {
        if self.kept.is_some() {
            Fds::Kept
        } else {
            Fds::Reopened
        }
    }

    /// The Maildir's own directory (for quota files and folders).
    pub fn dir(&self) -> Result<Handle<'_>> {
        match &self.kept {
            Some(k) => Ok(Handle::Kept(k.dir.as_fd())),
            None => self.at.open("", &self.rel).map(Handle::Opened),
        }
    }

    /// `tmp/`.
    fn tmp(&self) -> Result<Handle<'_>> {
        match &self.kept {
            Some(k) => Ok(Handle::Kept(k.tmp.as_fd())),
            None => self
                .at
                .open("tmp", &format!("{}tmp", self.rel))
                .map(Handle::Opened),
        }
    }

    /// `new/`.
    fn new_dir(&self) -> Result<Handle<'_>> {
        match &self.kept {
            Some(k) => Ok(Handle::Kept(k.new.as_fd())),
            None => self
                .at
                .open("new", &format!("{}new", self.rel))
                .map(Handle::Opened),
        }
    }

    /// `cur/`, opened for this operation (only a message with flags goes
    /// there, so it is never kept open).
    fn cur_dir(&self) -> Result<Handle<'_>> {
        let shown = format!("{}cur", self.rel);
        match &self.kept {
            Some(k) => match retry(|| rfs::openat(&k.dir, "cur", DIR_FLAGS, Mode::empty())) {
                Ok(fd) => Ok(Handle::Opened(fd)),
                Err(Errno::LOOP) => Err(escape(&shown, "it goes through a symlink")),
                Err(Errno::NOTDIR) => Err(escape(&shown, "a component is not a directory")),
                Err(e) => Err(MaildirError::io("open", shown, e)),
            },
            None => self.at.open("cur", &shown).map(Handle::Opened),
        }
    }

    /// Close the directories this Maildir keeps open: each step reopens
    /// them beneath the root (for a delivery out of open-file budget).
    pub fn release_fds(&mut self) {
        self.kept = None;
    }

    /// The Maildir++ folder whose directory is exactly `dot_name` (as
    /// `crate::sieve::store::folder_dir_name` makes it: `.Lists.rust`),
    /// for a Sieve `fileinto`. Unlike [`Maildir::folder`] the name is
    /// matched exactly (IMAP names are case-sensitive). Missing (or
    /// without `tmp/` and `new/`): made when `create`, else `Ok(None)`.
    /// Never through a symlink; two deliveries creating the same folder at
    /// once both succeed. It keeps its directories open when this Maildir
    /// does.
    pub fn sieve_folder(&self, dot_name: &str, create: bool) -> Result<Option<Maildir>> {
        if !dot_name.starts_with('.')
            || dot_name.len() < 2
            || dot_name == ".."
            || dot_name.contains(['/', '\0'])
        {
            return Err(escape(dot_name, "it is not a Maildir++ folder name"));
        }
        let parent = self.dir()?;
        let shown = format!("{}{dot_name}/", self.rel);
        let open = |d: BorrowedFd<'_>, n: &str| match retry(|| {
            rfs::openat(d, n, DIR_FLAGS, Mode::empty())
        }) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP) => Err(escape(&shown, "it goes through a symlink")),
            Err(Errno::NOTDIR) => Err(escape(&shown, "a component is not a directory")),
            Err(e) => Err(MaildirError::io("open", shown.clone(), e)),
        };
        let mut made = false;
        let (fd, tmp, new) = loop {
            let fd = match open(parent.as_fd(), dot_name)? {
                Some(fd) => fd,
                None if create && !made => {
                    create_folder(parent.as_fd(), dot_name, &self.rel)?;
                    made = true;
                    continue;
                }
                None => return Ok(None),
            };
            match (open(fd.as_fd(), "tmp")?, open(fd.as_fd(), "new")?) {
                (Some(tmp), Some(new)) => break (fd, tmp, new),
                // Half made (a crash, or another delivery creating it
                // right now): finish it when allowed to create.
                _ if create && !made => {
                    create_folder(parent.as_fd(), dot_name, &self.rel)?;
                    made = true;
                }
                _ => return Ok(None),
            }
        };
        let at = Beneath::new(&self.at.root, self.at.join(dot_name));
        Ok(Some(Maildir {
            kept: self.kept.as_ref().map(|_| KeptFds { dir: fd, tmp, new }),
            at,
            rel: shown,
        }))
    }

    /// The Maildir++ folder `.name` when it exists as a usable Maildir
    /// (a real directory with `tmp/` and `new/`); `None` otherwise, and
    /// the caller uses the INBOX. The name is matched exactly, else without
    /// regard to ASCII case (`alice-sent@` finds `.Sent`). Never created,
    /// never through a symlink. It keeps its directories open when this
    /// Maildir does.
    ///
    /// Running out of descriptors (`EMFILE`, `ENFILE`) is an error, never
    /// "no such folder": where a message goes must not depend on the load.
    pub fn folder(&self, name: &str) -> Result<Option<Maildir>> {
        if crate::config::check_folder_name(name).is_err() {
            return Ok(None);
        }
        let parent = self.dir()?;
        let open = |d: BorrowedFd<'_>, n: &str| {
            out_of_files(
                retry(|| rfs::openat(d, n, DIR_FLAGS, Mode::empty())),
                &self.rel,
            )
        };
        let exact = format!(".{name}");
        let (dot, fd) = match open(parent.as_fd(), &exact)? {
            Some(fd) => (exact, fd),
            None => {
                let Some(dot) = self.folder_ignoring_case(&parent, &exact)? else {
                    return Ok(None);
                };
                match open(parent.as_fd(), &dot)? {
                    Some(fd) => (dot, fd),
                    None => return Ok(None),
                }
            }
        };
        let (Some(tmp), Some(new)) = (open(fd.as_fd(), "tmp")?, open(fd.as_fd(), "new")?) else {
            return Ok(None);
        };
        let at = Beneath::new(&self.at.root, self.at.join(&dot));
        Ok(Some(Maildir {
            kept: self.kept.as_ref().map(|_| KeptFds { dir: fd, tmp, new }),
            at,
            rel: format!("{}{dot}/", self.rel),
        }))
    }
}

/// `Ok(None)` for an error that means "not there (as a directory)",
/// `Err` for running out of descriptors or memory.
fn out_of_files<T>(r: rustix::io::Result<T>, shown: &str) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOMEM)) => {
            Err(MaildirError::io("open", shown, e))
        }
        Err(_) => Ok(None),
    }
}

impl Maildir {
    fn folder_ignoring_case(&self, parent: &Handle<'_>, dot_name: &str) -> Result<Option<String>> {
        let Some(dup) = out_of_files(rustix::io::fcntl_dupfd_cloexec(parent, 0), &self.rel)? else {
            return Ok(None);
        };
        let Some(mut dir) = out_of_files(rfs::Dir::new(dup), &self.rel)? else {
            return Ok(None);
        };
        while let Some(Ok(entry)) = dir.read() {
            let Ok(n) = entry.file_name().to_str() else {
                return Ok(None);
            };
            if n.eq_ignore_ascii_case(dot_name) && n != "." && n != ".." {
                return Ok(Some(n.to_string()));
            }
        }
        Ok(None)
    }
}

/// Make `cur/ new/ tmp/` and the default folders. Folders first and `tmp/`
/// last, so that a crash half-way leaves `tmp/` missing and the next
/// delivery finishes the job; every directory that gained an entry is
/// fsynced.
fn create_structure(dir: &OwnedFd, rel: &str, folders: &[String]) -> Result<()> {
    for f in folders {
        create_folder_entries(dir.as_fd(), &format!(".{f}"), rel)?;
    }
    for s in ["cur", "new", "tmp"] {
        open_or_mkdir(dir.as_fd(), s, rel)?;
    }
    retry(|| rfs::fsync(dir)).map_err(|e| MaildirError::io("fsync", rel, e))?;
    Ok(())
}

/// Make the Maildir++ folder `dot_name` in the Maildir `parent` (or
/// finish a half-made one) and fsync `parent`. Idempotent, so that
/// concurrent deliveries creating the same folder all succeed.
fn create_folder(parent: BorrowedFd<'_>, dot_name: &str, rel: &str) -> Result<()> {
    create_folder_entries(parent, dot_name, rel)?;
    retry(|| rfs::fsync(parent)).map_err(|e| MaildirError::io("fsync", rel, e))
}

/// The folder directory, `maildirfolder`, `cur/ new/ tmp/` (`tmp/` last:
/// a crash half-way leaves the folder unusable, and the next creation
/// finishes it); the folder directory is fsynced, its parent is not.
fn create_folder_entries(parent: BorrowedFd<'_>, dot_name: &str, rel: &str) -> Result<()> {
    let shown = format!("{rel}{dot_name}/");
    let io = |op, e| MaildirError::io(op, shown.as_str(), e);
    let (fd, _) = open_or_mkdir(parent, dot_name, &shown)?;
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
    for s in ["cur", "new", "tmp"] {
        open_or_mkdir(fd.as_fd(), s, &shown)?;
    }
    retry(|| rfs::fsync(&fd)).map_err(|e| io("fsync", e))?;
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

/// Remove every `tmp/` file still pending (the panic hook calls it; the
/// deadline's timer does the same in its signal handler).
pub fn remove_pending_tmp() {
    crate::deadline::remove_pending_tmp();
}

/// Files in `tmp/` not yet committed or removed are registered with the
/// deadline, which removes them before it exits, since the delivery may be
/// stuck in a system call. Places, not descriptors: a fan-out's copies hold
/// no open file.
fn track(md: &Maildir, name: &str) {
    crate::deadline::track_tmp(&md.at.root, &md.at.join("tmp"), name);
}

fn untrack(name: &str) {
    crate::deadline::untrack_tmp(name);
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
    /// The Maildir info (`:2,FS`) of a message stored with flags: it is
    /// then linked into `cur/`, not `new/`. Empty: `new/`.
    info: String,
}

impl<'m> TmpFile<'m> {
    /// Store this copy with flags: linked into `cur/` as
    /// `<unique>,S=<size><info>` instead of into `new/`. `info` is what
    /// `crate::sieve::store::maildir_info` makes (`:2,` and the letters);
    /// an empty `info` means `new/`. Anything else than `:2,` followed by
    /// ASCII letters in order is refused as invalid.
    pub fn set_info(&mut self, info: &str) -> Result<()> {
        let ok = info.is_empty()
            || info.strip_prefix(":2,").is_some_and(|l| {
                l.bytes().all(|b| b.is_ascii_alphabetic())
                    && l.as_bytes().windows(2).all(|w| w[0] < w[1])
            });
        if !ok {
            return Err(self.err("set info", Errno::INVAL));
        }
        self.info = info.to_string();
        Ok(())
    }

    /// Create `tmp/<unique>` exclusively, mode 0600.
    pub fn create(md: &'m Maildir, namer: &mut Namer) -> Result<TmpFile<'m>> {
        let tmp = md.tmp()?;
        for _ in 0..16 {
            let name = namer.next_name();
            let r = retry(|| {
                rfs::openat(
                    &tmp,
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
                    track(md, &name);
                    return Ok(TmpFile {
                        md,
                        fd: Some(fd),
                        name,
                        size: 0,
                        info: String::new(),
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

    /// Link (or, where links are impossible, rename) into `new/` (or, with
    /// flags, `cur/`) under a fresh name. Returns the name.
    fn link_new(&mut self, namer: &mut Namer) -> Result<String> {
        if self.fd.is_some() {
            self.sync()?;
        }
        let md = self.md;
        let in_cur = !self.info.is_empty();
        let dirs = (
            md.tmp()?,
            if in_cur { md.cur_dir()? } else { md.new_dir()? },
        );
        let mut unique = self.name.clone();
        let mut last = Errno::EXIST;
        for _ in 0..16 {
            let new_name = names::new_name(&unique, self.size) + &self.info;
            match link_or_rename((&dirs.0, &dirs.1), &self.name, &new_name) {
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
            format!("{}{}/", md.rel, if in_cur { "cur" } else { "new" }),
            last,
        ))
    }

    /// Open the written file for reading (to forward or copy it).
    pub fn reopen(&self) -> Result<OwnedFd> {
        let tmp = self.md.tmp()?;
        retry(|| {
            rfs::openat(
                &tmp,
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
        let (from, to) = (self.md.tmp()?, other.tmp()?);
        for _ in 0..16 {
            let name = namer.next_name();
            match retry(|| {
                rfs::linkat(
                    &from,
                    self.name.as_str(),
                    &to,
                    name.as_str(),
                    rfs::AtFlags::empty(),
                )
            }) {
                Ok(()) => {
                    track(other, &name);
                    return Ok(TmpFile {
                        md: other,
                        fd: None,
                        name,
                        size: self.size,
                        info: String::new(),
                    });
                }
                Err(Errno::EXIST) => continue,
                Err(Errno::XDEV | Errno::PERM | Errno::NOTSUP | Errno::NOSYS | Errno::MLINK) => {
                    drop((from, to));
                    return self.copy_into(other, namer);
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
            if let Ok(tmp) = self.md.tmp() {
                let _ = retry(|| rfs::unlinkat(&tmp, self.name.as_str(), rfs::AtFlags::empty()));
            }
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

/// Make every synced copy visible at once: link each into its `new/` (a
/// copy with flags: its `cur/`), fsync every such directory, then remove
/// the `tmp/` names. If a link or an fsync fails, the names made so far
/// are removed again, so a failed delivery leaves nothing visible (and a
/// retry makes no duplicate). Returns the names in `new/` (or `cur/`), in
/// order.
pub fn commit_all(mut tmps: Vec<TmpFile<'_>>, namer: &mut Namer) -> Result<Vec<String>> {
    // (Maildir, in cur/, name)
    let mut linked: Vec<(&Maildir, bool, String)> = Vec::with_capacity(tmps.len());
    let undo = |linked: &[(&Maildir, bool, String)]| {
        for (md, in_cur, name) in linked {
            let dir = if *in_cur { md.cur_dir() } else { md.new_dir() };
            if let Ok(dir) = dir {
                let _ = retry(|| rfs::unlinkat(&dir, name.as_str(), rfs::AtFlags::empty()));
            }
        }
    };
    for t in tmps.iter_mut() {
        match t.link_new(namer) {
            Ok(name) => linked.push((t.md, !t.info.is_empty(), name)),
            Err(e) => {
                undo(&linked);
                return Err(e);
            }
        }
    }
    let mut synced: Vec<(*const Maildir, bool)> = Vec::with_capacity(linked.len());
    for (md, in_cur, _) in &linked {
        let key: (*const Maildir, bool) = (*md, *in_cur);
        if synced.contains(&key) {
            continue;
        }
        let (dir, shown) = if *in_cur {
            (md.cur_dir(), "cur")
        } else {
            (md.new_dir(), "new")
        };
        let synced_dir = dir.and_then(|d| {
            retry(|| rfs::fsync(&d))
                .map_err(|e| MaildirError::io("fsync", format!("{}{shown}/", md.rel), e))
        });
        if let Err(e) = synced_dir {
            // The links may not survive a crash: take them back rather
            // than claim them.
            undo(&linked);
            return Err(e);
        }
        synced.push(key);
    }
    let names = linked.into_iter().map(|(_, _, n)| n).collect();
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
fn link_or_rename(
    (tmp_dir, new_dir): (&Handle<'_>, &Handle<'_>),
    tmp: &str,
    new: &str,
) -> rustix::io::Result<Moved> {
    match retry(|| rfs::linkat(tmp_dir, tmp, new_dir, new, rfs::AtFlags::empty())) {
        Ok(()) => Ok(Moved::Linked),
        Err(Errno::PERM | Errno::NOTSUP | Errno::NOSYS | Errno::MLINK) => {
            retry(|| rfs::renameat_with(tmp_dir, tmp, new_dir, new, rfs::RenameFlags::NOREPLACE))
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
