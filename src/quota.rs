//! Maildir++ quota on disk: the `maildirsize` file under its
//! lock, recalculation, the charge after delivery, the warning message.
//! The arithmetic is [`crate::maildirsize`]'s; this module does the I/O.
//!
//! # Guarantees
//!
//! * Check and charge are atomic among vdeliver processes: the check is
//!   made under an exclusive `flock` (fs4) on `maildirsize`, and the lock is
//!   held until the `<bytes> <count>` line is appended, after the message is
//!   linked into `new/`. Concurrent deliveries to a full mailbox cannot all
//!   pass, and usage is never charged for a message that is not stored.
//! * A delivery that takes several Maildirs' locks takes them in one order
//!   (device, inode), so two fan-outs cannot deadlock.
//! * Each held lock is an open file. A fan-out larger than its open-file
//!   budget ([`crate::openfiles`]; about the soft `RLIMIT_NOFILE` minus 32,
//!   so only fan-outs of hundreds of mailboxes under a low limit) holds the
//!   locks of the first mailboxes in lock order, as many as the budget
//!   allows, and checks each later one under its lock and releases it at
//!   once; after the links it retakes those locks one at a time, in the
//!   same order, and appends the charge whatever the file then says (the
//!   decision was made at the check and the message is stored: nothing
//!   fails or is duplicated after the forward). A process never waits for
//!   a lock while holding one later in the order, so this is still free of
//!   deadlock. The cost, for those mailboxes only: deliveries that check one
//!   of them between the release and the append do not see this message,
//!   so the mailbox can end over its limit by at most one message per
//!   such delivery in flight at the same time; and a retaken lock that is
//!   not had within `lock_timeout` (a stuck process holds it) leaves the
//!   charge unwritten and the file removed, so the next delivery recounts.
//!   If the file was recounted meanwhile, the count includes the message
//!   and nothing is appended.
//! * `maildirsize` is only ever replaced whole: a recalculated file is
//!   written, fsynced and locked under `tmp/`, then renamed over the old one
//!   (or linked into place when there was none, so two creators cannot
//!   both win). A process that waited on the old file's lock notices the
//!   replacement (the inode at the path changed) and starts again.
//! * Dovecot and Courier do not lock `maildirsize`; they append with
//!   `O_APPEND` and replace by rename, as vdeliver does, so against them the
//!   file is as consistent as their own protocol makes it. An append that
//!   finds the file replaced goes to the file now in place.
//! * A failed append never fails a delivered message: the file is removed,
//!   and the next delivery recalculates.
//! * An unlimited mailbox costs one `openat` that finds no `maildirsize`.
//!   When the file does exist (Dovecot keeps one for "quota 0"), it is kept
//!   up to date, with a `0S` header, and never refuses anything.
//! * No refusal rests on the file's figures alone: a delivery they would
//!   refuse recounts the Maildir first ([`maildirsize::Trigger::OverQuota`]).
//! * Files vdeliver writes to (`maildirsize`, `quotawarn`) are never
//!   written through unless they are its own: a regular file, one link,
//!   owned by the effective uid. Anything else (a hard link to a file
//!   outside the mail root, a file left by root, a symlink, a FIFO) is
//!   replaced by a new file renamed over it, which the owner of the
//!   directory may do whoever owns the file; the old inode is not touched.
//!   A `maildirsize` vdeliver cannot even open (root's, mode 0600) cannot
//!   be locked, so replacing it is serialized by a lock on the Maildir
//!   directory instead.
//! * The quota warning is stored but never charged, so it cannot take the
//!   user's last message: its unique name is recorded in `quotawarn` and a
//!   recalculation leaves it out ([`recalculate`]). Dovecot and Courier do
//!   not know this: a recount of theirs counts it, and Dovecot subtracts it
//!   when it is expunged through IMAP (so the mailbox may then take one
//!   message more than its limit until vdeliver next recounts).

pub mod warning;

use crate::maildir::{Handle, Maildir, Namer, TmpFile};
use crate::maildirsize::{self, Limits, Trigger, Usage, Verdict};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fmt;
use std::fs::File;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The file's name in the Maildir (never in a folder).
pub const FILE: &str = "maildirsize";

/// Stamp file of the last warning: its mtime is the time it was sent
/// (Courier's `deliverquota` uses the same name and the mtime the same
/// way), its lines the unique names of the warnings vdeliver stored, which
/// a recalculation does not count.
pub const WARN_STAMP: &str = "quotawarn";

/// At most one warning per this many seconds, even when a
/// mailbox that hovers around the mark crosses it several times a day.
pub const WARN_EVERY_SECS: i64 = 24 * 3600;

/// How many warnings' names `quotawarn` remembers (the newest). An older
/// warning the user still keeps is counted again: a slot lost, never a
/// message over the limit.
const WARN_NAMES: usize = 16;

/// `quotawarn` longer than this is not read (it is not vdeliver's).
const WARN_FILE_MAX: u64 = 4096;

/// How often a recalculation is repeated when directories change under it.
const RECALC_TRIES: usize = 3;

/// How often the lock is retaken because the file was replaced meanwhile.
const LOCK_TRIES: usize = 64;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Why quota bookkeeping failed. Always temporary, except the filesystem's
/// own quota errors, which the delivery's errno table treats as over quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaError {
    Io {
        op: &'static str,
        path: String,
        errno: Errno,
    },
    /// `maildirsize` is a directory.
    NotAFile { path: String },
    /// The file is not vdeliver's own (hard-linked, another owner, not a
    /// regular file): not written through.
    NotOwn { path: String },
    /// The file kept being replaced while the lock was awaited.
    Unstable { path: String },
}

impl QuotaError {
    fn io(op: &'static str, path: impl Into<String>, errno: Errno) -> QuotaError {
        QuotaError::Io {
            op,
            path: path.into(),
            errno,
        }
    }

    pub fn errno(&self) -> Option<Errno> {
        match self {
            QuotaError::Io { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::Io { op, path, errno } => write!(f, "{op} {path}: {errno}"),
            QuotaError::NotAFile { path } => write!(f, "{path} is not a regular file"),
            QuotaError::NotOwn { path } => write!(
                f,
                "{path} is hard-linked, another user's or not a regular file"
            ),
            QuotaError::Unstable { path } => {
                write!(f, "{path} kept being replaced while waiting for its lock")
            }
        }
    }
}

impl std::error::Error for QuotaError {}

type Result<T> = std::result::Result<T, QuotaError>;

fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

fn shown(md: &Maildir, name: &str) -> String {
    format!("{}{name}", md.rel)
}

/// The Maildir's directory: kept open, or reopened beneath the mail root
/// for this operation (a Maildir beyond the delivery's open-file budget).
fn dir(md: &Maildir) -> Result<Handle<'_>> {
    md.dir().map_err(|e| {
        // A path that now leaves the root was replaced by a symlink since
        // it was first opened: ELOOP is what the open saw.
        QuotaError::io("open", &md.rel, e.errno().unwrap_or(Errno::LOOP))
    })
}

/// (device, inode): what "the same file" means.
// The field types differ between targets; the casts are no-ops on some.
#[allow(clippy::unnecessary_cast)]
fn identity(st: &rfs::Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

/// Modification time, seconds and nanoseconds.
#[allow(clippy::unnecessary_cast)]
fn mtime(st: &rfs::Stat) -> (i64, i64) {
    (st.st_mtime as i64, st.st_mtime_nsec as i64)
}

/// Whether vdeliver may write through the file `st` describes: a regular
/// file with one link, owned by the effective uid. Anything else may be (a
/// link to) a file outside the Maildir.
fn is_own(st: &rfs::Stat) -> bool {
    // Asked once per process: the check runs at the lock and at the charge.
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    owned_by(
        st,
        *EUID.get_or_init(|| rustix::process::geteuid().as_raw()),
    )
}

/// A regular file with one link, owned by `uid`.
fn owned_by(st: &rfs::Stat, uid: u32) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
        && st.st_nlink == 1
        && st.st_uid == uid
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `maildirsize` of one Maildir, locked for this delivery.
#[derive(Debug)]
pub struct Locked<'m> {
    md: &'m Maildir,
    file: File,
    id: (u64, u64),
    /// Usage before this delivery.
    pub usage: Usage,
    /// Why the file was recalculated, if it was.
    pub recalculated: Option<Trigger>,
}

/// Exclusive `flock` through fs4, waiting as long as it takes (the
/// delivery's deadline bounds the wait).
fn flock(file: &File, path: &str) -> Result<()> {
    loop {
        match fs4::FileExt::lock(file) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let raw = e.raw_os_error().unwrap_or(Errno::IO.raw_os_error());
                let errno = Errno::from_raw_os_error(raw);
                return Err(QuotaError::io("lock", path, errno));
            }
        }
    }
}

/// How a lock is waited for.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// As long as it takes (the delivery's quota phase bounds it).
    Blocking,
    /// Polling until then, then given up (`ETIMEDOUT`): after the links,
    /// where the deadline must not turn a delivered message into a 111.
    Until(Instant),
}

/// [`flock`], or polling for it until `wait` runs out.
fn flock_wait(file: &File, path: &str, wait: Wait) -> Result<()> {
    let Wait::Until(end) = wait else {
        return flock(file, path);
    };
    flock_polled(file, end, Duration::from_millis(100))
        .map_err(|errno| QuotaError::io("lock", path, errno))
}

/// An exclusive `flock` (fs4) tried until `end`, pausing between tries
/// from 1 ms doubling up to `longest`. The error is the `flock` failure,
/// or `ETIMEDOUT` when `end` came first.
pub(crate) fn flock_polled(
    file: &File,
    end: Instant,
    longest: Duration,
) -> std::result::Result<(), Errno> {
    let mut pause = Duration::from_millis(1);
    loop {
        match fs4::FileExt::try_lock(file) {
            Ok(()) => return Ok(()),
            Err(fs4::TryLockError::WouldBlock) => {}
            Err(fs4::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            Err(fs4::TryLockError::Error(e)) => {
                let raw = e.raw_os_error().unwrap_or(Errno::IO.raw_os_error());
                return Err(Errno::from_raw_os_error(raw));
            }
        }
        let now = Instant::now();
        if now >= end {
            return Err(Errno::TIMEDOUT);
        }
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(longest);
    }
}

/// Lock and read the `maildirsize` of `md` for a delivery of `copies`
/// messages of `size` bytes, recalculating it when a [`Trigger`] fires.
/// `None`: the mailbox is unlimited and has no `maildirsize`, so there is
/// nothing to do.
pub fn lock<'m>(
    md: &'m Maildir,
    limits: Limits,
    size: u64,
    copies: u64,
    ignore: &[String],
    namer: &mut Namer,
) -> Result<Option<Locked<'m>>> {
    lock_with(md, limits, size, copies, ignore, namer, Wait::Blocking)
}

fn lock_with<'m>(
    md: &'m Maildir,
    limits: Limits,
    size: u64,
    copies: u64,
    ignore: &[String],
    namer: &mut Namer,
    wait: Wait,
) -> Result<Option<Locked<'m>>> {
    let path = shown(md, FILE);
    let dir = dir(md)?;
    for _ in 0..LOCK_TRIES {
        let fd = match retry(|| {
            rfs::openat(
                &dir,
                FILE,
                OFlags::RDWR | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                Mode::empty(),
            )
        }) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if limits.is_unlimited() => return Ok(None),
            Err(Errno::NOENT) => match create(md, limits, ignore, namer)? {
                Some(l) => return Ok(Some(l)),
                None => continue,
            },
            Err(Errno::ISDIR) => return Err(QuotaError::NotAFile { path }),
            // Another user's file, a symlink, a socket: not ours to open,
            // but ours to replace.
            Err(Errno::ACCESS | Errno::PERM | Errno::LOOP | Errno::NXIO) => {
                match replace_foreign(md, limits, ignore, namer)? {
                    Some(l) => return Ok(Some(l)),
                    None => continue,
                }
            }
            Err(e) => return Err(QuotaError::io("open", &path, e)),
        };
        let file = File::from(fd);
        flock_wait(&file, &path, wait)?;
        let st = rfs::fstat(&file).map_err(|e| QuotaError::io("fstat", &path, e))?;
        let id = identity(&st);
        if current_identity(md)? != Some(id) {
            // Replaced (or removed) while we waited: lock the new one.
            continue;
        }
        let parsed = if is_own(&st) {
            maildirsize::parse(&read_head(&file, &path)?)
        } else {
            Err(Trigger::NotOwn)
        };
        return match maildirsize::assess(parsed, limits, size, copies) {
            Ok(usage) => Ok(Some(Locked {
                md,
                file,
                id,
                usage,
                recalculated: None,
            })),
            Err(trigger) => {
                let usage = recalculate(md, ignore)?;
                // A refusal the recount confirms, on a file that is one
                // exact line already: nothing to rewrite.
                let exact = matches!(parsed, Ok(p) if p.lines == 1 && p.usage == usage);
                if trigger == Trigger::OverQuota && exact {
                    return Ok(Some(Locked {
                        md,
                        file,
                        id,
                        usage,
                        recalculated: Some(trigger),
                    }));
                }
                let (new, new_id) = replace(md, limits, usage, namer)?;
                // Dropping the old file releases its lock; whoever waited
                // on it sees the new inode and retakes the new one's.
                drop(file);
                Ok(Some(Locked {
                    md,
                    file: new,
                    id: new_id,
                    usage,
                    recalculated: Some(trigger),
                }))
            }
        };
    }
    Err(QuotaError::Unstable { path })
}

/// The (device, inode) now at `maildirsize`, if any.
fn current_identity(md: &Maildir) -> Result<Option<(u64, u64)>> {
    let dir = dir(md)?;
    match retry(|| rfs::statat(&dir, FILE, AtFlags::SYMLINK_NOFOLLOW)) {
        Ok(st) => Ok(Some(identity(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(QuotaError::io("stat", shown(md, FILE), e)),
    }
}

/// The file's first [`maildirsize::MAX_FILE`] bytes (that many means "too
/// large", whatever follows).
fn read_head(file: &File, path: &str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; maildirsize::MAX_FILE];
    let mut len = 0;
    while len < buf.len() {
        match retry(|| rustix::io::pread(file, &mut buf[len..], len as u64)) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(QuotaError::io("read", path, e)),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// A new `maildirsize` written, fsynced and locked under `tmp/`, not yet in
/// place.
struct Fresh {
    tmp: TmpName,
    file: File,
    id: (u64, u64),
}

/// A name in `tmp/`, removed when dropped unless cleared (once renamed
/// away). After a link into place the `tmp/` name is an extra link, and
/// removing it is right too.
struct TmpName {
    dir: OwnedFd,
    name: String,
}

impl Drop for TmpName {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            let _ = retry(|| rfs::unlinkat(&self.dir, self.name.as_str(), AtFlags::empty()));
        }
    }
}

fn write_fresh(md: &Maildir, limits: Limits, usage: Usage, namer: &mut Namer) -> Result<Fresh> {
    let tmp_shown = shown(md, "tmp/");
    let dir = dir(md)?;
    let tmp = retry(|| rfs::openat(&dir, "tmp", DIR_FLAGS, Mode::empty()))
        .map_err(|e| QuotaError::io("open", &tmp_shown, e))?;
    let mut last = Errno::EXIST;
    for _ in 0..16 {
        let name = format!("{}.{FILE}", namer.next_name());
        let fd = match retry(|| {
            rfs::openat(
                &tmp,
                name.as_str(),
                OFlags::RDWR
                    | OFlags::APPEND
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        }) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(e) => {
                last = e;
                break;
            }
        };
        let path = format!("{tmp_shown}{name}");
        let file = File::from(fd);
        let st = rfs::fstat(&file).map_err(|e| QuotaError::io("fstat", &path, e))?;
        let fresh = Fresh {
            tmp: TmpName { dir: tmp, name },
            file,
            id: identity(&st),
        };
        flock(&fresh.file, &path)?;
        write_once(
            &fresh.file,
            maildirsize::render(limits, usage).as_bytes(),
            &path,
        )?;
        retry(|| rfs::fsync(&fresh.file)).map_err(|e| QuotaError::io("fsync", &path, e))?;
        return Ok(fresh);
    }
    Err(QuotaError::io("create", tmp_shown, last))
}

/// One `write`, all of it: an `O_APPEND` write of a few bytes is atomic, so
/// readers never see half a line.
fn write_once(fd: impl AsFd, bytes: &[u8], path: &str) -> Result<()> {
    match retry(|| rustix::io::write(&fd, bytes)) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(_) => Err(QuotaError::io("write", path, Errno::IO)),
        Err(e) => Err(QuotaError::io("write", path, e)),
    }
}

/// No `maildirsize` yet: recalculate and link the new file into place.
/// `None` when another process created one meanwhile (the caller retries).
fn create<'m>(
    md: &'m Maildir,
    limits: Limits,
    ignore: &[String],
    namer: &mut Namer,
) -> Result<Option<Locked<'m>>> {
    let usage = recalculate(md, ignore)?;
    let mut fresh = write_fresh(md, limits, usage, namer)?;
    let dir = dir(md)?;
    let t = &mut fresh.tmp;
    let placed = match retry(|| rfs::linkat(&t.dir, t.name.as_str(), &dir, FILE, AtFlags::empty()))
    {
        Ok(()) => Ok(()),
        Err(Errno::PERM | Errno::NOTSUP | Errno::NOSYS | Errno::MLINK) => retry(|| {
            rfs::renameat_with(
                &t.dir,
                t.name.as_str(),
                &dir,
                FILE,
                rfs::RenameFlags::NOREPLACE,
            )
        })
        .map(|()| t.name.clear()),
        Err(e) => Err(e),
    };
    match placed {
        Ok(()) => {}
        Err(Errno::EXIST) => return Ok(None),
        Err(e) => return Err(QuotaError::io("link into", shown(md, FILE), e)),
    }
    let Fresh { file, id, .. } = fresh;
    Ok(Some(Locked {
        md,
        file,
        id,
        usage,
        recalculated: Some(Trigger::Missing),
    }))
}

/// A `maildirsize` vdeliver cannot open (another user's, such as one an
/// admin's tool left owned by root with mode 0600; a symlink; a socket) and
/// so cannot lock: recalculate and rename a fresh one over it. Replacers
/// take a lock on the Maildir directory instead, and each checks under it
/// that the file is still the one it could not open, so two deliveries
/// cannot both put their own in place. `None`: it changed meanwhile; the
/// caller starts again.
fn replace_foreign<'m>(
    md: &'m Maildir,
    limits: Limits,
    ignore: &[String],
    namer: &mut Namer,
) -> Result<Option<Locked<'m>>> {
    let md_dir = dir(md)?;
    let dir = retry(|| rfs::openat(&md_dir, ".", DIR_FLAGS, Mode::empty()))
        .map_err(|e| QuotaError::io("open", &md.rel, e))?;
    let dir = File::from(dir);
    flock(&dir, &md.rel)?;
    let path = shown(md, FILE);
    match retry(|| {
        rfs::openat(
            &md_dir,
            FILE,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }) {
        // Replaced meanwhile by one vdeliver can open (and lock), or gone.
        Ok(_) | Err(Errno::NOENT) => return Ok(None),
        Err(Errno::ISDIR) => return Err(QuotaError::NotAFile { path }),
        Err(Errno::ACCESS | Errno::PERM | Errno::LOOP | Errno::NXIO) => {}
        Err(e) => return Err(QuotaError::io("open", &path, e)),
    }
    let Some(old) = current_identity(md)? else {
        return Ok(None);
    };
    let usage = recalculate(md, ignore)?;
    let mut fresh = write_fresh(md, limits, usage, namer)?;
    if current_identity(md)? != Some(old) {
        return Ok(None);
    }
    let t = &mut fresh.tmp;
    retry(|| rfs::renameat(&t.dir, t.name.as_str(), &md_dir, FILE))
        .map_err(|e| QuotaError::io("rename into", &path, e))?;
    t.name.clear();
    let Fresh { file, id, .. } = fresh;
    Ok(Some(Locked {
        md,
        file,
        id,
        usage,
        recalculated: Some(Trigger::NotOwn),
    }))
}

/// Replace the locked `maildirsize` by a recalculated one.
fn replace(
    md: &Maildir,
    limits: Limits,
    usage: Usage,
    namer: &mut Namer,
) -> Result<(File, (u64, u64))> {
    let mut fresh = write_fresh(md, limits, usage, namer)?;
    let dir = dir(md)?;
    let t = &mut fresh.tmp;
    retry(|| rfs::renameat(&t.dir, t.name.as_str(), &dir, FILE))
        .map_err(|e| QuotaError::io("rename into", shown(md, FILE), e))?;
    t.name.clear();
    Ok((fresh.file, fresh.id))
}

impl Locked<'_> {
    /// Record `messages` messages, `bytes` in all: one line appended. A
    /// failure removes the file, so the next delivery recalculates; it never
    /// fails the delivery, whose messages are already stored. Returns whether
    /// the line was written.
    pub fn charge(&self, bytes: u64, messages: u64) -> bool {
        let line = maildirsize::line(
            i64::try_from(bytes).unwrap_or(i64::MAX),
            i64::try_from(messages).unwrap_or(i64::MAX),
        );
        match self.append(line.as_bytes()) {
            Ok(()) => true,
            Err(_) => {
                if let Ok(dir) = dir(self.md) {
                    let _ = retry(|| rfs::unlinkat(&dir, FILE, AtFlags::empty()));
                }
                false
            }
        }
    }

    /// Append `line` to the file in place, if it is vdeliver's own (else
    /// an error, and [`Locked::charge`] removes that name).
    fn append(&self, line: &[u8]) -> Result<()> {
        let path = shown(self.md, FILE);
        let dir = dir(self.md)?;
        let st = match retry(|| rfs::statat(&dir, FILE, AtFlags::SYMLINK_NOFOLLOW)) {
            Ok(st) => st,
            // Removed: the next delivery recalculates.
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(QuotaError::io("stat", &path, e)),
        };
        if !is_own(&st) {
            return Err(QuotaError::NotOwn { path });
        }
        if identity(&st) == self.id {
            return write_once(&self.file, line, &path);
        }
        // Dovecot or Courier replaced it (they do not lock): the file in
        // place now is the one readers use.
        let fd = retry(|| {
            rfs::openat(
                &dir,
                FILE,
                OFlags::WRONLY
                    | OFlags::APPEND
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
        .map_err(|e| QuotaError::io("open", &path, e))?;
        let st = rfs::fstat(&fd).map_err(|e| QuotaError::io("fstat", &path, e))?;
        if !is_own(&st) {
            return Err(QuotaError::NotOwn { path });
        }
        write_once(&fd, line, &path)
    }
}

/// Sum `new/` and `cur/` of the Maildir and of every folder not in
/// `ignore`: the size from `,S=` in the name, else `stat`. Names starting
/// with a dot are not messages, nor are vdeliver's quota warnings (the
/// names listed in `quotawarn`, with any `,S=` or `:2,` suffix). When a
/// counted directory changes while being read (an IMAP client at work),
/// the count is repeated, up to [`RECALC_TRIES`] times; the last count is
/// used.
pub fn recalculate(md: &Maildir, ignore: &[String]) -> Result<Usage> {
    let warnings = warning_names(md);
    let mut last = Usage::default();
    let dir = dir(md)?;
    for _ in 0..RECALC_TRIES {
        // Counted directories by name (relative to the Maildir), not by
        // descriptor: a Maildir with many folders holds no more open files.
        let mut seen: Vec<(String, (i64, i64))> = Vec::new();
        let mut usage = Usage::default();
        let mut count = Count {
            usage: &mut usage,
            seen: &mut seen,
            skip: &warnings,
        };
        tally_maildir(dir.as_fd(), &md.rel, "", &mut count)?;
        for folder in folders(md)? {
            if ignore.iter().any(|i| i == &folder[1..]) {
                continue;
            }
            let fd = match retry(|| rfs::openat(&dir, folder.as_str(), DIR_FLAGS, Mode::empty())) {
                Ok(fd) => fd,
                // Gone, a file, a symlink: not a folder to count.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(QuotaError::io("open", shown(md, &folder), e)),
            };
            let rel = format!("{}{folder}/", md.rel);
            tally_maildir(fd.as_fd(), &rel, &format!("{folder}/"), &mut count)?;
        }
        last = usage;
        let unchanged = seen.iter().all(|(name, t)| {
            retry(|| rfs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW))
                .map(|st| mtime(&st) == *t)
                .unwrap_or(false)
        });
        if unchanged {
            break;
        }
    }
    Ok(last)
}

/// The Maildir++ folders (`.Name` entries) of `md`, as directory names.
fn folders(md: &Maildir) -> Result<Vec<String>> {
    let dir = dir(md)?;
    let fd = retry(|| rfs::openat(&dir, ".", DIR_FLAGS, Mode::empty()))
        .map_err(|e| QuotaError::io("open", &md.rel, e))?;
    let mut dir = rfs::Dir::new(fd).map_err(|e| QuotaError::io("read", &md.rel, e))?;
    let mut out = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(|e| QuotaError::io("read", &md.rel, e))?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name.len() > 1 && name.starts_with('.') && name != ".." {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// A recount in progress.
struct Count<'a> {
    usage: &'a mut Usage,
    /// Each counted directory by name (relative to the Maildir, not by
    /// descriptor, so that many folders hold no more open files), with its
    /// mtime when it was read.
    seen: &'a mut Vec<(String, (i64, i64))>,
    /// Unique names not to count (the quota warnings).
    skip: &'a [String],
}

/// The unique names of the warnings vdeliver stored, from `quotawarn`;
/// none when it is missing, unreadable or not the mail user's own (a
/// regular file with one link, owned by the owner of the Maildir, so that
/// vmailctl run as root counts as vdeliver does); then every warning
/// counts: a slot lost, never a message over the limit.
fn warning_names(md: &Maildir) -> Vec<String> {
    let Ok(md_dir) = dir(md) else {
        return Vec::new();
    };
    let Ok(owner) = rfs::fstat(&md_dir).map(|st| st.st_uid) else {
        return Vec::new();
    };
    let Ok(fd) = retry(|| {
        rfs::openat(
            &md_dir,
            WARN_STAMP,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }) else {
        return Vec::new();
    };
    match rfs::fstat(&fd) {
        Ok(st) if owned_by(&st, owner) && (st.st_size as u64) <= WARN_FILE_MAX => {}
        _ => return Vec::new(),
    }
    let mut buf = vec![0u8; WARN_FILE_MAX as usize];
    let mut len = 0;
    while len < buf.len() {
        match retry(|| rustix::io::read(&fd, &mut buf[len..])) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return Vec::new(),
        }
    }
    let Ok(text) = std::str::from_utf8(&buf[..len]) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| is_unique(l))
        .map(str::to_string)
        .collect()
}

/// A Maildir unique name as vdeliver makes them: no separators, no info.
fn is_unique(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.contains(['/', ',', ':'])
        && !s.chars().any(char::is_whitespace)
}

/// The unique part of a Maildir file name: up to the first `,` (`,S=`
/// and friends) or `:` (the info).
fn unique_part(name: &[u8]) -> &[u8] {
    let end = name
        .iter()
        .position(|b| *b == b',' || *b == b':')
        .unwrap_or(name.len());
    &name[..end]
}

/// Add `new/` and `cur/` under `dir` to the count, remembering each
/// directory's mtime under its name `<prefix><sub>`.
fn tally_maildir(
    dir: BorrowedFd<'_>,
    rel: &str,
    prefix: &str,
    count: &mut Count<'_>,
) -> Result<()> {
    for sub in ["new", "cur"] {
        let shown = format!("{rel}{sub}/");
        let fd = match retry(|| rfs::openat(dir, sub, DIR_FLAGS, Mode::empty())) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
            Err(e) => return Err(QuotaError::io("open", shown, e)),
        };
        let st = rfs::fstat(&fd).map_err(|e| QuotaError::io("fstat", &shown, e))?;
        tally(&fd, &shown, count.usage, count.skip)?;
        count.seen.push((format!("{prefix}{sub}"), mtime(&st)));
    }
    Ok(())
}

fn tally(fd: &OwnedFd, shown: &str, usage: &mut Usage, skip: &[String]) -> Result<()> {
    let reader = retry(|| rfs::openat(fd, ".", DIR_FLAGS, Mode::empty()))
        .map_err(|e| QuotaError::io("open", shown, e))?;
    let mut dir = rfs::Dir::new(reader).map_err(|e| QuotaError::io("read", shown, e))?;
    while let Some(entry) = dir.read() {
        let entry = entry.map_err(|e| QuotaError::io("read", shown, e))?;
        let name = entry.file_name();
        if name.to_bytes().first() == Some(&b'.') || entry.file_type() == FileType::Directory {
            continue;
        }
        if !skip.is_empty() {
            let unique = unique_part(name.to_bytes());
            if skip.iter().any(|w| w.as_bytes() == unique) {
                continue;
            }
        }
        let from_name = name.to_str().ok().and_then(crate::names::size_from_name);
        let size = match from_name {
            Some(s) => s,
            None => match retry(|| rfs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {
                    st.st_size as u64
                }
                Ok(_) | Err(Errno::NOENT) => continue,
                Err(e) => return Err(QuotaError::io("stat", format!("{shown}{name:?}"), e)),
            },
        };
        *usage = usage.plus(size, 1);
    }
    Ok(())
}

/// One quota root (an account's Maildir) and what a delivery puts in it.
#[derive(Debug)]
pub struct Root<'m> {
    /// The account's Maildir (the quota root, even when the message goes
    /// into one of its folders).
    pub md: &'m Maildir,
    /// `local@domain` of the account, for messages and the warning.
    pub owner: String,
    pub limits: Limits,
    /// Copies this delivery adds that count (0 for an ignored folder).
    pub copies: u64,
}

/// Why a delivery may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Usage plus the message would exceed a limit.
    Over { owner: String },
    /// One message is larger than the whole byte limit.
    TooLarge {
        owner: String,
        size: u64,
        limit: u64,
    },
    /// The bookkeeping failed.
    Failed(QuotaError),
}

struct Held<'m> {
    root: Root<'m>,
    /// The targets (indexes as passed to [`reserve`]) this root covers,
    /// each with the copies it adds.
    members: Vec<(usize, u64)>,
    lock: Hold<'m>,
}

/// A root's lock between the check and the append.
enum Hold<'m> {
    /// Nothing to charge: no copy counts here, or the mailbox is unlimited
    /// and has no `maildirsize`.
    Nothing,
    /// Held from the check until [`Reservation::settle`].
    Held(Locked<'m>),
    /// Checked under the lock, then released at once: the open-file budget
    /// was spent on the roots before it in lock order. Retaken, in the same
    /// order, to append the charge after the links.
    Released,
}

/// How many locks a delivery may hold, from its open-file budget
/// ([`crate::openfiles`]).
#[derive(Debug, Clone, Copy)]
pub struct Holding {
    /// Locks that stay held from the check to the append; the roots after
    /// them in lock order are checked and released.
    pub locks: usize,
    /// How long to wait to retake a released lock after the links.
    pub relock_wait: Duration,
}

impl Holding {
    /// Every lock held: a delivery whose fan-out fits its budget.
    pub const ALL: Holding = Holding {
        locks: usize::MAX,
        relock_wait: Duration::ZERO,
    };
}

/// The quota roots of one delivery, checked and locked until
/// [`Reservation::settle`].
pub struct Reservation<'m> {
    held: Vec<Held<'m>>,
    size: u64,
    ignore: Vec<String>,
    holding: Holding,
}

/// Check a message of `size` bytes against every root, one per target of
/// the delivery (targets in the same Maildir share one root and one lock).
/// Every root is checked before anything is refused, so a message too large
/// for one mailbox is refused as such even when another is merely full.
///
/// Locks are taken in (device, inode) order. The first `holding.locks`
/// that exist stay held until [`Reservation::settle`]; each one after them
/// is released as soon as its root is checked (the delivery has no
/// descriptor left to keep it), and retaken for the append.
pub fn reserve<'m>(
    roots: Vec<Root<'m>>,
    size: u64,
    ignore: &[String],
    namer: &mut Namer,
    holding: Holding,
) -> std::result::Result<Reservation<'m>, Refusal> {
    let mut held: Vec<(Option<(u64, u64)>, Held<'m>)> = Vec::with_capacity(roots.len());
    let several = roots.len() > 1;
    for (i, root) in roots.into_iter().enumerate() {
        // Identity only matters with several targets: one stat each then.
        let id = if several {
            let st = dir(root.md)
                .and_then(|d| rfs::fstat(&d).map_err(|e| QuotaError::io("fstat", &root.md.rel, e)))
                .map_err(Refusal::Failed)?;
            Some(identity(&st))
        } else {
            None
        };
        match held.iter_mut().find(|(hid, _)| id.is_some() && *hid == id) {
            Some((_, h)) => {
                h.root.limits = h.root.limits.stricter(root.limits);
                h.root.copies += root.copies;
                h.members.push((i, root.copies));
            }
            None => {
                let copies = root.copies;
                held.push((
                    id,
                    Held {
                        root,
                        members: vec![(i, copies)],
                        lock: Hold::Nothing,
                    },
                ))
            }
        }
    }
    held.sort_by_key(|(id, _)| *id);
    let mut held: Vec<Held<'m>> = held.into_iter().map(|(_, h)| h).collect();
    let mut refusal: Option<Refusal> = None;
    let mut holding_now = 0;
    for h in &mut held {
        if h.root.copies == 0 {
            continue;
        }
        let r = &h.root;
        let lock = lock(r.md, r.limits, size, r.copies, ignore, namer).map_err(Refusal::Failed)?;
        if let Some(l) = &lock {
            match maildirsize::check(l.usage, r.limits, size, r.copies) {
                Verdict::Fits => {}
                Verdict::TooLarge => {
                    refusal = Some(Refusal::TooLarge {
                        owner: r.owner.clone(),
                        size,
                        limit: r.limits.bytes,
                    })
                }
                Verdict::Over => {
                    if refusal.is_none() {
                        refusal = Some(Refusal::Over {
                            owner: r.owner.clone(),
                        })
                    }
                }
            }
        }
        h.lock = match lock {
            None => Hold::Nothing,
            Some(l) if holding_now < holding.locks => {
                holding_now += 1;
                Hold::Held(l)
            }
            // Dropping the file releases the lock.
            Some(_) => Hold::Released,
        };
    }
    match refusal {
        Some(r) => Err(r),
        None => Ok(Reservation {
            held,
            size,
            ignore: ignore.to_vec(),
            holding,
        }),
    }
}

/// What [`Reservation::settle`] needs to warn.
#[derive(Debug, Clone, Copy)]
pub struct WarnPolicy<'a> {
    pub percent: u8,
    /// `None`: the built-in text.
    pub template: Option<&'a warning::Template>,
}

impl Reservation<'_> {
    /// After the links: charge each root for the copies that reached `new/`
    /// (`stored[i]` for target `i`) and put a warning where one is due; then
    /// release the locks. Nothing here can fail the delivery.
    ///
    /// A released lock is retaken (in lock order, so still without
    /// deadlock) and the charge appended whatever the file now says: the
    /// decision was made at the check, and the message is stored. If the
    /// file was recounted meanwhile (it was missing, corrupt...), the count
    /// includes the copies just linked and nothing is added. If the lock
    /// cannot be had within `relock_wait`, the file is removed, and the
    /// next delivery recounts.
    pub fn settle(self, stored: &[bool], warn: WarnPolicy<'_>, namer: &mut Namer) {
        for h in &self.held {
            let copies: u64 = h
                .members
                .iter()
                .filter(|(i, _)| stored.get(*i) == Some(&true))
                .map(|(_, c)| c)
                .sum();
            let retaken;
            let (lock, counted) = match &h.lock {
                Hold::Nothing => continue,
                Hold::Held(l) => (l, false),
                Hold::Released if copies == 0 => continue,
                Hold::Released => {
                    let r = &h.root;
                    let until = Wait::Until(Instant::now() + self.holding.relock_wait);
                    match lock_with(r.md, r.limits, 0, 0, &self.ignore, namer, until) {
                        Ok(Some(l)) => {
                            retaken = l;
                            (&retaken, retaken.recalculated.is_some())
                        }
                        Ok(None) => continue,
                        Err(_) => {
                            if let Ok(dir) = dir(r.md) {
                                let _ = retry(|| rfs::unlinkat(&dir, FILE, AtFlags::empty()));
                            }
                            continue;
                        }
                    }
                }
            };
            if copies > 0 && !counted {
                lock.charge(self.size.saturating_mul(copies), copies);
            }
            let after = if counted {
                lock.usage
            } else {
                lock.usage.plus(self.size, copies)
            };
            let before = if counted {
                Usage {
                    bytes: lock
                        .usage
                        .bytes
                        .saturating_sub(self.size.saturating_mul(copies) as i64),
                    messages: lock.usage.messages.saturating_sub(copies as i64),
                }
            } else {
                lock.usage
            };
            if copies > 0 && maildirsize::crosses(before, after, h.root.limits, warn.percent) {
                send_warning(&h.root, after, warn, namer);
            }
        }
    }
}

/// The delivery crossed the mark: put the warning in the INBOX unless one
/// was sent in the last [`WARN_EVERY_SECS`], and record it in `quotawarn`.
/// It is not charged, and the record keeps recalculations from counting
/// it, so it never takes a slot of the user's quota. Under the lock, so two
/// deliveries cannot both warn.
fn send_warning(root: &Root<'_>, after: Usage, warn: WarnPolicy<'_>, namer: &mut Namer) {
    let md = root.md;
    let now = now_secs();
    let Ok(dir) = dir(md) else { return };
    match retry(|| rfs::statat(&dir, WARN_STAMP, AtFlags::SYMLINK_NOFOLLOW)) {
        // Only vdeliver's own stamp counts (a hard link's time is anyone's).
        Ok(st) if is_own(&st) && now < mtime(&st).0 + WARN_EVERY_SECS => return,
        Ok(_) | Err(Errno::NOENT) => {}
        Err(_) => return,
    }
    let domain = root.owner.rsplit_once('@').map_or("", |(_, d)| d);
    let facts = warning::Facts {
        address: &root.owner,
        domain,
        usage: after,
        limits: root.limits,
        percent: maildirsize::percent(after, root.limits),
        warn_percent: warn.percent,
    };
    let message_id = message_id(now);
    let built_in;
    let template = match warn.template {
        Some(t) => t,
        None => {
            built_in = warning::Template::default();
            &built_in
        }
    };
    let msg = warning::render(template, &facts, &warning::rfc5322_date(now), &message_id);
    let stored = TmpFile::create(md, namer).and_then(|mut tmp| {
        tmp.write_all(&msg)?;
        tmp.commit(namer)
    });
    // Not recorded (a failure to write `quotawarn`): the warning counts
    // like any message; a slot lost, never a message over the limit.
    if let Ok(name) = stored {
        let unique = String::from_utf8_lossy(unique_part(name.as_bytes())).into_owned();
        let _ = stamp(md, &unique, namer);
    }
}

/// `<secs>.<pid>.<random>.quotawarn@<host>`, the host reduced to what a
/// Message-ID may hold.
fn message_id(now: i64) -> String {
    let mut r = [0u8; 8];
    // Randomness only adds to time and pid; zeros still make an id.
    let _ = rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::NONBLOCK);
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let host: String = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    let host = host.trim_matches('.');
    let host = if host.is_empty() || host.contains("..") {
        "localhost"
    } else {
        host
    };
    format!(
        "{now}.{pid}.{:016x}.quotawarn@{host}",
        u64::from_le_bytes(r)
    )
}

/// Record that the warning `unique` was sent now: a new `quotawarn` (the
/// names it held, the newest [`WARN_NAMES`] kept, then this one), written
/// under `tmp/` and renamed over the old one, never written through it.
/// Its mtime is the time of the warning.
fn stamp(md: &Maildir, unique: &str, namer: &mut Namer) -> Result<()> {
    let md_dir = dir(md)?;
    let mut names = warning_names(md);
    names.push(unique.to_string());
    let keep = names.len().saturating_sub(WARN_NAMES);
    let mut text = String::new();
    for n in &names[keep..] {
        text.push_str(n);
        text.push('\n');
    }
    let tmp_shown = shown(md, "tmp/");
    let dir = retry(|| rfs::openat(&md_dir, "tmp", DIR_FLAGS, Mode::empty()))
        .map_err(|e| QuotaError::io("open", &tmp_shown, e))?;
    let name = format!("{}.{WARN_STAMP}", namer.next_name());
    let fd = retry(|| {
        rfs::openat(
            &dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    })
    .map_err(|e| QuotaError::io("create", &tmp_shown, e))?;
    let mut tmp = TmpName { dir, name };
    let path = format!("{tmp_shown}{}", tmp.name);
    write_once(&fd, text.as_bytes(), &path)?;
    retry(|| rfs::fsync(&fd)).map_err(|e| QuotaError::io("fsync", &path, e))?;
    retry(|| rfs::renameat(&tmp.dir, tmp.name.as_str(), &md_dir, WARN_STAMP))
        .map_err(|e| QuotaError::io("rename into", shown(md, WARN_STAMP), e))?;
    tmp.name.clear();
    Ok(())
}
