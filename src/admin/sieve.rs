//! `vmailctl sieve`: an account's Sieve scripts, kept the way Dovecot's
//! ManageSieve keeps them, so that a script uploaded through ManageSieve
//! (Roundcube's filter form, `doveadm sieve put`) and one put here are the
//! same thing.
//!
//! # Layout
//!
//! The account's home is the directory holding its Maildir
//! ([`crate::sieve::store::home_of`]; an account whose Maildir directory
//! is not named `Maildir` has no home, and these commands refuse it).
//! Scripts are `<home>/sieve/NAME.sieve`; the active one is the symlink
//! `<home>/.dovecot.sieve` -> `sieve/NAME.sieve` (relative). A regular
//! file `.dovecot.sieve` (written by hand, not managed) is shown by
//! `list` and left alone: `activate` and `deactivate` refuse to replace
//! or remove it, since that would lose a script that exists nowhere else.
//!
//! # Guarantees
//!
//! * `put` compiles the script with [`crate::sieve::compile`], the
//!   compiler delivery uses, and refuses one that does not compile,
//!   writing nothing (as ManageSieve's `PUTSCRIPT` must, RFC 5804 section
//!   2.6). `activate` compiles the script again (it may have been changed
//!   by hand since) and refuses a broken one.
//! * Writes are atomic: a script is written to a temporary name in
//!   `sieve/` (created exclusively, mode 0600), fsynced, renamed over
//!   `NAME.sieve`, and the directory fsynced. `activate` makes the new
//!   symlink under a temporary name and renames it over
//!   `.dovecot.sieve`, so a delivery sees the old script or the new one,
//!   never none. Temporary names begin with `.`, which script names may
//!   not, so they never collide with a script or show in `list`.
//! * Nothing follows a symlink: the home is opened beneath the mail root
//!   without following one ([`crate::maildir::MailRoot::open_dir`]), and
//!   `sieve/` and every file in it are opened from the home's descriptor
//!   with `O_NOFOLLOW`. The only link read is `.dovecot.sieve` itself,
//!   with `readlink`, never opened through.
//! * All of it runs as the mail user ([`super::as_mail_user`]): `sieve/`
//!   (mode 0700), scripts and the link belong to that user.
//! * Script names: not empty, at most [`MAX_NAME`] bytes, no `/`, no
//!   leading `.`, no control characters (RFC 5804 section 1.6 forbids
//!   those in names; `/` and the dot keep a name one plain file in
//!   `sieve/`).
//!
//! Choices made here: `put` to an account whose home does
//! not exist yet creates its Maildir first (as its first delivery would),
//! so a filter can be set up before any mail arrives; `deactivate` with
//! nothing active succeeds and says so (ManageSieve's `SETACTIVE ""` does
//! the same); `delete` of a missing script fails (exit 1).

use super::{AdminError, Result};
use crate::maildir::{MailRoot, MaildirError, DIR_FLAGS};
use crate::sieve::store::{home_of, SCRIPT_LINK};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;
use std::path::Path;

/// Longest script name, in bytes.
pub const MAX_NAME: usize = 128;

/// The directory of scripts in the home.
pub const SCRIPT_DIR: &str = "sieve";

/// A script name's file suffix.
pub const SUFFIX: &str = ".sieve";

/// Check a script name as typed (see the module doc).
pub fn script_name(raw: &str) -> Result<String> {
    let bad = |w: &str| AdminError::Invalid(format!("bad script name {raw:?}: {w}"));
    if raw.is_empty() {
        return Err(bad("empty"));
    }
    if raw.len() > MAX_NAME {
        return Err(bad(&format!("longer than {MAX_NAME} bytes")));
    }
    if raw.contains('/') {
        return Err(bad("contains '/'"));
    }
    if raw.starts_with('.') {
        return Err(bad("begins with '.'"));
    }
    if raw.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok(raw.to_string())
}

/// Where an account's scripts are: its Maildir and home (both relative to
/// the mail root).
#[derive(Debug, Clone, Serialize)]
pub struct SieveHome {
    pub address: String,
    pub maildir: String,
    pub home: String,
    /// The folders a Maildir made here gets (`mail.folders`), as a first
    /// delivery would make them.
    #[serde(skip)]
    pub folders: Vec<String>,
}

impl SieveHome {
    /// Make a missing Maildir with these folders (`mail.folders`).
    pub fn with_folders(mut self, folders: &[String]) -> SieveHome {
        self.folders = folders.to_vec();
        self
    }

    /// The home of the account at `raw` (looked up with
    /// [`super::account_show`]), with the configured `mail.folders`.
    pub fn of_account(
        client: &mut postgres::Client,
        cfg: &crate::config::Config,
        raw: &str,
    ) -> Result<SieveHome> {
        let a = super::account_show(client, raw)?;
        Ok(SieveHome::new(a.address, a.maildir)?.with_folders(&cfg.mail.folders))
    }

    /// The home of the account whose Maildir is `maildir`.
    pub fn new(address: String, maildir: String) -> Result<SieveHome> {
        let home = home_of(&maildir).ok_or_else(|| {
            AdminError::Failed(format!(
                "{address}: its Maildir {maildir} is not a directory named Maildir/ inside a \
                 home, so it has no place for Sieve scripts (vdeliver looks for none)"
            ))
        })?;
        Ok(SieveHome {
            address,
            maildir,
            home,
            folders: Vec::new(),
        })
    }
}

/// What `.dovecot.sieve` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Active {
    /// Nothing: no script runs.
    None,
    /// The symlink to `sieve/NAME.sieve`.
    Script(String),
    /// A regular file, not managed here.
    File,
    /// A symlink elsewhere, or something else (what it is).
    Other(String),
}

/// One script in `sieve/`.
#[derive(Debug, Clone, Serialize)]
pub struct Script {
    pub name: String,
    pub active: bool,
    pub bytes: u64,
}

/// The scripts and what is active.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub scripts: Vec<Script>,
    pub active: Active,
}

pub(super) fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

pub(super) fn io(what: &str, e: impl std::fmt::Display) -> AdminError {
    AdminError::Failed(format!("{what}: {e}"))
}

pub(super) fn file_name(name: &str) -> String {
    format!("{name}{SUFFIX}")
}

/// A temporary name in a directory: begins with `.`, unique to this
/// process and call.
fn temp_name(what: &str) -> String {
    let mut r = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty());
    format!(
        ".{what}.vmailctl-{}-{:016x}",
        std::process::id(),
        u64::from_ne_bytes(r)
    )
}

/// Open the home beneath the mail root (no symlink followed); `None` when
/// it does not exist.
pub(super) fn open_home(root: &MailRoot, h: &SieveHome) -> Result<Option<OwnedFd>> {
    match root.open_dir(&h.home) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.errno() == Some(Errno::NOENT) => Ok(None),
        Err(e) => Err(io(&format!("home {}", h.home), e)),
    }
}

/// The home, created (with the Maildir, as a first delivery would) when
/// missing.
pub(super) fn open_or_make_home(root: &MailRoot, h: &SieveHome) -> Result<OwnedFd> {
    if let Some(fd) = open_home(root, h)? {
        return Ok(fd);
    }
    root.maildir(&h.maildir, &h.folders)
        .map_err(|e: MaildirError| io(&format!("create Maildir {}", h.maildir), e))?;
    open_home(root, h)?
        .ok_or_else(|| AdminError::Failed(format!("home {} is still missing", h.home)))
}

pub(super) fn open_script_dir(home: BorrowedFd<'_>, h: &SieveHome) -> Result<Option<OwnedFd>> {
    match retry(|| rfs::openat(home, SCRIPT_DIR, DIR_FLAGS, Mode::empty())) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::LOOP | Errno::NOTDIR) => Err(AdminError::Failed(format!(
            "{}/{SCRIPT_DIR} is not a directory (a symlink is not followed)",
            h.home
        ))),
        Err(e) => Err(io(&format!("open {}/{SCRIPT_DIR}", h.home), e)),
    }
}

/// `sieve/`, created (mode 0700) when missing.
pub(super) fn open_or_make_script_dir(home: BorrowedFd<'_>, h: &SieveHome) -> Result<OwnedFd> {
    if let Some(d) = open_script_dir(home, h)? {
        return Ok(d);
    }
    match retry(|| rfs::mkdirat(home, SCRIPT_DIR, Mode::from_raw_mode(0o700))) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(io(&format!("mkdir {}/{SCRIPT_DIR}", h.home), e)),
    }
    sync_dir(home, &h.home)?;
    open_script_dir(home, h)?
        .ok_or_else(|| AdminError::Failed(format!("{}/{SCRIPT_DIR} vanished", h.home)))
}

/// What `.dovecot.sieve` in `home` is.
pub(super) fn active_of(home: BorrowedFd<'_>) -> Result<Active> {
    match retry(|| rfs::readlinkat(home, SCRIPT_LINK, Vec::new())) {
        Ok(t) => {
            let t = t.to_string_lossy().into_owned();
            let comps = crate::maildir::path_components(&t).unwrap_or_default();
            let name = match comps.as_slice() {
                [SCRIPT_DIR, f] if !t.starts_with('/') => f
                    .strip_suffix(SUFFIX)
                    .filter(|n| script_name(n).is_ok())
                    .map(str::to_string),
                _ => None,
            };
            Ok(match name {
                Some(n) => Active::Script(n),
                None => Active::Other(format!("a symlink to {t}")),
            })
        }
        Err(Errno::NOENT) => Ok(Active::None),
        Err(Errno::INVAL) => {
            let st = retry(|| rfs::statat(home, SCRIPT_LINK, AtFlags::SYMLINK_NOFOLLOW))
                .map_err(|e| io(&format!("stat {SCRIPT_LINK}"), e))?;
            Ok(
                if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile {
                    Active::File
                } else {
                    Active::Other("not a regular file or symlink".into())
                },
            )
        }
        Err(e) => Err(io(&format!("readlink {SCRIPT_LINK}"), e)),
    }
}

/// Read `sieve/NAME.sieve`: a regular file, not through a symlink, at most
/// [`crate::sieve::MAX_SCRIPT_SIZE`] bytes. `None` when missing.
pub(super) fn read_script(dir: BorrowedFd<'_>, name: &str) -> Result<Option<Vec<u8>>> {
    let f = file_name(name);
    let shown = format!("{SCRIPT_DIR}/{f}");
    let fd = match retry(|| {
        rfs::openat(
            dir,
            f.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => {
            return Err(AdminError::Failed(format!(
                "{shown} is a symlink; not followed"
            )))
        }
        Err(e) => return Err(io(&format!("open {shown}"), e)),
    };
    let st = rfs::fstat(&fd).map_err(|e| io(&format!("stat {shown}"), e))?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(AdminError::Failed(format!("{shown} is not a regular file")));
    }
    let max = crate::sieve::MAX_SCRIPT_SIZE;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = retry(|| rustix::io::read(&fd, &mut buf))
            .map_err(|e| io(&format!("read {shown}"), e))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > max {
            return Err(AdminError::Failed(format!(
                "{shown} is larger than {max} bytes"
            )));
        }
    }
    Ok(Some(out))
}

/// Compile `script`, as a refusal naming `what` when it does not.
pub(super) fn compiles(what: &str, script: &[u8]) -> Result<()> {
    crate::sieve::compile(script)
        .map(|_| ())
        .map_err(|e| AdminError::Conflict(format!("{what}: {e}")))
}

pub(super) fn sync_dir(dir: BorrowedFd<'_>, shown: &str) -> Result<()> {
    retry(|| rfs::fsync(dir)).map_err(|e| io(&format!("fsync {shown}"), e))
}

/// The scripts of the account and what is active.
pub fn list(root: &Path, h: &SieveHome) -> Result<Listing> {
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| io("mail root", e))?;
        let Some(home) = open_home(&root, h)? else {
            return Ok(Listing {
                scripts: Vec::new(),
                active: Active::None,
            });
        };
        let active = active_of(home.as_fd())?;
        let mut scripts = Vec::new();
        if let Some(dir) = open_script_dir(home.as_fd(), h)? {
            let mut d = rfs::Dir::read_from(&dir)
                .map_err(|e| io(&format!("read {}/{SCRIPT_DIR}", h.home), e))?;
            while let Some(entry) = d.read() {
                let entry = entry.map_err(|e| io(&format!("read {}/{SCRIPT_DIR}", h.home), e))?;
                let Ok(f) = entry.file_name().to_str() else {
                    continue;
                };
                let Some(name) = f.strip_suffix(SUFFIX) else {
                    continue;
                };
                if script_name(name).is_err() {
                    continue;
                }
                let Ok(st) = rfs::statat(&dir, f, AtFlags::SYMLINK_NOFOLLOW) else {
                    continue;
                };
                if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
                    continue;
                }
                scripts.push(Script {
                    name: name.to_string(),
                    active: active == Active::Script(name.to_string()),
                    bytes: u64::try_from(st.st_size).unwrap_or(0),
                });
            }
        }
        scripts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Listing { scripts, active })
    })
}

/// The text of script `name`.
pub fn get(root: &Path, h: &SieveHome, name: &str) -> Result<Vec<u8>> {
    let name = script_name(name)?;
    let missing = || AdminError::NotFound(format!("{} has no Sieve script {name:?}", h.address));
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| io("mail root", e))?;
        let home = open_home(&root, h)?.ok_or_else(missing)?;
        let dir = open_script_dir(home.as_fd(), h)?.ok_or_else(missing)?;
        read_script(dir.as_fd(), &name)?.ok_or_else(missing)
    })
}

/// What [`put`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Put {
    pub name: String,
    pub bytes: u64,
    /// A script of that name was there before.
    pub replaced: bool,
    /// It is the active script (replacing it changed what runs).
    pub active: bool,
}

/// Store `script` as `name`, after compiling it (see the module doc).
pub fn put(root: &Path, h: &SieveHome, name: &str, script: &[u8]) -> Result<Put> {
    let name = script_name(name)?;
    let max = crate::sieve::MAX_SCRIPT_SIZE;
    if script.len() > max {
        return Err(AdminError::Invalid(format!(
            "the script is larger than {max} bytes"
        )));
    }
    compiles(&format!("script {name:?} does not compile"), script)?;
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| io("mail root", e))?;
        let home = open_or_make_home(&root, h)?;
        let dir = open_or_make_script_dir(home.as_fd(), h)?;
        let f = file_name(&name);
        let replaced = match retry(|| rfs::statat(&dir, f.as_str(), AtFlags::SYMLINK_NOFOLLOW)) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile => {
                true
            }
            Ok(_) => {
                return Err(AdminError::Failed(format!(
                    "{SCRIPT_DIR}/{f} exists and is not a regular file; left alone"
                )))
            }
            Err(Errno::NOENT) => false,
            Err(e) => return Err(io(&format!("stat {SCRIPT_DIR}/{f}"), e)),
        };
        store(dir.as_fd(), &f, script)?;
        let active = active_of(home.as_fd())? == Active::Script(name.clone());
        Ok(Put {
            name: name.clone(),
            bytes: script.len() as u64,
            replaced,
            active,
        })
    })
}

/// Write `data` to the file `f` in `dir` atomically: a temporary name,
/// fsync, rename over `f`, fsync of the directory.
pub(super) fn store(dir: BorrowedFd<'_>, f: &str, data: &[u8]) -> Result<()> {
    let tmp = temp_name(f);
    write_new(dir, &tmp, data).inspect_err(|_| {
        let _ = rfs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    })?;
    if let Err(e) = retry(|| rfs::renameat(dir, tmp.as_str(), dir, f)) {
        let _ = rfs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        return Err(io(&format!("rename to {SCRIPT_DIR}/{f}"), e));
    }
    sync_dir(dir, SCRIPT_DIR)
}

/// Create `name` in `dir` exclusively (0600), write `data`, fsync.
fn write_new(dir: BorrowedFd<'_>, name: &str, data: &[u8]) -> Result<()> {
    let fd = retry(|| {
        rfs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    })
    .map_err(|e| io(&format!("create {SCRIPT_DIR}/{name}"), e))?;
    let mut rest = data;
    while !rest.is_empty() {
        let n = retry(|| rustix::io::write(&fd, rest))
            .map_err(|e| io(&format!("write {SCRIPT_DIR}/{name}"), e))?;
        if n == 0 {
            return Err(io(&format!("write {SCRIPT_DIR}/{name}"), "wrote nothing"));
        }
        rest = &rest[n..];
    }
    retry(|| rfs::fsync(&fd)).map_err(|e| io(&format!("fsync {SCRIPT_DIR}/{name}"), e))
}

/// Refuse to replace or remove `.dovecot.sieve` when it is not our link.
pub(super) fn ours_or_none(active: &Active, doing: &str) -> Result<()> {
    match active {
        Active::File => Err(AdminError::Conflict(format!(
            "{SCRIPT_LINK} is a regular file, not ManageSieve's symlink; not {doing} it \
             (store it with `vmailctl sieve put` and remove it by hand first)"
        ))),
        Active::Other(what) => Err(AdminError::Conflict(format!(
            "{SCRIPT_LINK} is {what}; not {doing} it"
        ))),
        Active::None | Active::Script(_) => Ok(()),
    }
}

/// Make `name` the active script; returns what was active before.
pub fn activate(root: &Path, h: &SieveHome, name: &str) -> Result<Active> {
    let name = script_name(name)?;
    let missing = || AdminError::NotFound(format!("{} has no Sieve script {name:?}", h.address));
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| io("mail root", e))?;
        let home = open_home(&root, h)?.ok_or_else(missing)?;
        let dir = open_script_dir(home.as_fd(), h)?.ok_or_else(missing)?;
        let script = read_script(dir.as_fd(), &name)?.ok_or_else(missing)?;
        compiles(
            &format!("script {name:?} does not compile; not activated"),
            &script,
        )?;
        let before = active_of(home.as_fd())?;
        ours_or_none(&before, "replacing")?;
        link_active(home.as_fd(), h, &name)?;
        Ok(before)
    })
}

/// Point `.dovecot.sieve` at `sieve/NAME.sieve`: a new link under a
/// temporary name renamed over the old one, then the home fsynced.
pub(super) fn link_active(home: BorrowedFd<'_>, h: &SieveHome, name: &str) -> Result<()> {
    let target = format!("{SCRIPT_DIR}/{}", file_name(name));
    let tmp = temp_name(SCRIPT_LINK.trim_start_matches('.'));
    retry(|| rfs::symlinkat(target.as_str(), home, tmp.as_str()))
        .map_err(|e| io(&format!("symlink {}/{tmp}", h.home), e))?;
    if let Err(e) = retry(|| rfs::renameat(home, tmp.as_str(), home, SCRIPT_LINK)) {
        let _ = rfs::unlinkat(home, tmp.as_str(), AtFlags::empty());
        return Err(io(&format!("rename to {}/{SCRIPT_LINK}", h.home), e));
    }
    sync_dir(home, &h.home)
}

/// Remove the `.dovecot.sieve` symlink; returns what was active.
pub fn deactivate(root: &Path, h: &SieveHome) -> Result<Active> {
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| io("mail root", e))?;
        let Some(home) = open_home(&root, h)? else {
            return Ok(Active::None);
        };
        let before = active_of(home.as_fd())?;
        ours_or_none(&before, "removing")?;
        unlink_link(home.as_fd(), h, &before)?;
        Ok(before)
    })
}

pub(super) fn unlink_link(home: BorrowedFd<'_>, h: &SieveHome, active: &Active) -> Result<()> {
    if *active == Active::None {
        return Ok(());
    }
    match retry(|| rfs::unlinkat(home, SCRIPT_LINK, AtFlags::empty())) {
        Ok(()) | Err(Errno::NOENT) => sync_dir(home, &h.home),
        Err(e) => Err(io(&format!("remove {}/{SCRIPT_LINK}", h.home), e)),
    }
}

/// What [`delete`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub name: String,
    /// It was active and `--force` deactivated it.
    pub deactivated: bool,
}

/// Delete script `name`; the active one only with `force`, which
/// deactivates it first.
pub fn delete(root: &Path, h: &SieveHome, name: &str, force: bool) -> Result<Deleted> {
    let name = script_name(name)?;
    let missing = || AdminError::NotFound(format!("{} has no Sieve script {name:?}", h.address));
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| io("mail root", e))?;
        let home = open_home(&root, h)?.ok_or_else(missing)?;
        let dir = open_script_dir(home.as_fd(), h)?.ok_or_else(missing)?;
        let f = file_name(&name);
        match retry(|| rfs::statat(&dir, f.as_str(), AtFlags::SYMLINK_NOFOLLOW)) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile => {}
            Ok(_) => {
                return Err(AdminError::Failed(format!(
                    "{SCRIPT_DIR}/{f} is not a regular file; left alone"
                )))
            }
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(io(&format!("stat {SCRIPT_DIR}/{f}"), e)),
        }
        let active = active_of(home.as_fd())?;
        let deactivated = active == Active::Script(name.clone());
        if deactivated {
            if !force {
                return Err(AdminError::Conflict(format!(
                    "script {name:?} is active; deactivate it first, or use --force \
                     (which deactivates it: no script will run)"
                )));
            }
            unlink_link(home.as_fd(), h, &active)?;
        }
        match retry(|| rfs::unlinkat(&dir, f.as_str(), AtFlags::empty())) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(io(&format!("remove {SCRIPT_DIR}/{f}"), e)),
        }
        sync_dir(dir.as_fd(), SCRIPT_DIR)?;
        Ok(Deleted {
            name: name.clone(),
            deactivated,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "roundcube",
            "my filters",
            "Entwürfe-1",
            &"x".repeat(MAX_NAME),
        ] {
            assert_eq!(script_name(good).unwrap(), good);
        }
        for bad in [
            "",
            "a/b",
            ".hidden",
            "..",
            "tab\there",
            "nl\n",
            &"x".repeat(MAX_NAME + 1),
        ] {
            assert!(
                matches!(script_name(bad), Err(AdminError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn homes() {
        let h = SieveHome::new("a@example.com".into(), "example.com/a/Maildir/".into()).unwrap();
        assert_eq!(h.home, "example.com/a");
        assert!(SieveHome::new("a@example.com".into(), "example.com/a/".into()).is_err());
    }
}

// ---------------------------------------------------------------- dry run

/// What `vmailctl resolve ADDRESS --message FILE` shows for one mailbox:
/// the account's active script run against the message, nothing done
/// (like Pigeonhole's `sieve-test`).
#[derive(Debug, Clone, Serialize)]
pub struct ScriptRun {
    /// `no home` (a Maildir layout without one), `no script`, `does not
    /// compile`, `error` or `ran`.
    pub status: String,
    /// The actions, one line each, in the order the script made them.
    pub actions: Vec<String>,
    /// The compile or run-time error, when there is one.
    pub error: Option<String>,
}

/// The envelope and limits a [`dry_run`] runs with: the message comes from
/// `sender` to `recipient` now, under the site's extension delimiter, spam
/// score header and Sieve limits.
pub fn dry_run_env(
    cfg: &crate::config::Config,
    sender: String,
    recipient: String,
) -> crate::sieve::interp::Env {
    let now = crate::filter::now();
    crate::sieve::interp::Env {
        envelope_from: sender,
        envelope_to: recipient,
        extension_delimiter: cfg.mail.extension_delimiter.clone(),
        now,
        local_offset: crate::filter::local_offset(now),
        spam: Some(crate::sieve::interp::SpamSettings {
            header: cfg.junk.score_header.clone(),
            max_score: cfg.junk.score_max,
        }),
        max_redirects: cfg.sieve.max_redirects,
        max_actions: cfg.sieve.max_actions,
    }
}

/// Run the scripts delivery would run for the account whose Maildir is
/// `maildir` (the `[sieve]` before/after scripts around its active one)
/// against `message`, through the delivery's own decision
/// ([`crate::filter::decide`]): folders are looked for in that Maildir,
/// `include` is followed, Junk routing applies when `junk` (the account's
/// setting, else the site's). Read only: `duplicate` is always "not
/// seen", nothing is logged, stored or sent.
pub fn dry_run(
    cfg: &crate::config::Config,
    maildir: &str,
    message: &[u8],
    env: &crate::sieve::interp::Env,
    junk: bool,
) -> Result<ScriptRun> {
    use crate::filter;
    use crate::maildir::Fds;
    use crate::sieve::message::Message;
    let done = |status: &str, actions: Vec<String>, error: Option<String>| ScriptRun {
        status: status.into(),
        actions,
        error,
    };
    let Some(home) = home_of(maildir) else {
        return Ok(done("no home", Vec::new(), None));
    };
    let globals = !cfg.sieve.before_programs.is_empty() || !cfg.sieve.after_programs.is_empty();
    super::as_mail_user(&cfg.mail.root, |root_path| {
        let root = MailRoot::open(root_path).map_err(|e| io("mail root", e))?;
        let personal = if cfg.sieve.enabled {
            filter::personal(&root, maildir)
        } else {
            filter::Personal::None
        };
        match &personal {
            filter::Personal::Script(b) => {
                if let Err(e) = crate::sieve::compile(b) {
                    return Ok(done("does not compile", keep_line(), Some(e.to_string())));
                }
            }
            filter::Personal::Unreadable(e) => {
                return Ok(done("error", keep_line(), Some(e.clone())))
            }
            filter::Personal::None if !(junk || globals && cfg.sieve.enabled) => {
                return Ok(done("no script", Vec::new(), None));
            }
            filter::Personal::None => {}
        }
        // Only an existing Maildir: a dry run creates nothing.
        match root.open_dir(maildir) {
            Ok(_) => {}
            Err(e) if e.errno() == Some(Errno::NOENT) => {
                return Ok(done("no Maildir yet", Vec::new(), None))
            }
            Err(e) => return Err(io("Maildir", e)),
        }
        let inbox = root
            .open_maildir(maildir, &[], Fds::Reopened)
            .map_err(|e| io("Maildir", e))?;
        let home_fd = root.open_dir(&home).ok();
        let msg = Message::parse(message);
        let mut left = cfg.sieve.max_redirects;
        let via = [env.envelope_to.to_ascii_lowercase()];
        let d = filter::decide(filter::Run {
            cfg,
            inbox: &inbox,
            home: home_fd.as_ref(),
            personal: &personal,
            msg: &msg,
            env: env.clone(),
            via: &via,
            to_junk: junk && filter::spam_verdict(&msg, &cfg.junk),
            redirects_left: &mut left,
            dry: true,
        });
        if !d.errors.is_empty() {
            return Ok(done("error", keep_line(), Some(d.errors.join("; "))));
        }
        let mut lines: Vec<String> = d
            .copies
            .iter()
            .map(|c| {
                let how = if c.implicit { "implicit keep" } else { "store" };
                let flags = if c.flags.is_empty() {
                    String::new()
                } else {
                    format!(" flags {}", c.flags.join(" "))
                };
                format!(
                    "{how} into {}{flags}",
                    c.folder.as_deref().unwrap_or("INBOX")
                )
            })
            .collect();
        lines.extend(d.redirects.iter().map(|a| format!("redirect to {a}")));
        if let Some(r) = &d.reject {
            lines.push(format!("reject: {r}"));
        }
        if let Some(v) = &d.vacation {
            let held = filter::spam_verdict_by(&msg, &cfg.junk).map_or(String::new(), |by| {
                format!(" (not sent: the message is marked as spam ({by}))")
            });
            lines.push(format!(
                "vacation reply{}{held}",
                v.subject
                    .as_deref()
                    .map_or(String::new(), |s| format!(" {s:?}"))
            ));
        }
        lines.extend(d.notes.iter().cloned());
        if d.copies.is_empty() && d.redirects.is_empty() && d.reject.is_none() {
            lines.push("discard".into());
        }
        Ok(done("ran", lines, None))
    })
}

fn keep_line() -> Vec<String> {
    vec!["keep into INBOX (the script failed; vdeliver keeps the message)".into()]
}
