//! `vmailctl account rename OLD NEW`: an account gets another address,
//! its mail goes with it, and whatever pointed at the old address points
//! at the new one.
//!
//! # What changes
//!
//! * The account's row: its domain and local part, and its Maildir path
//!   when that path follows the default layout `DOMAIN/LOCAL/Maildir/`
//!   (then the home directory `DOMAIN/LOCAL/`, with the Maildir, the
//!   Sieve scripts and anything else in it, becomes `NEWDOMAIN/NEWLOCAL/`).
//!   A Maildir set elsewhere (`--maildir`) keeps its path and stays where
//!   it is; the report says so.
//! * Alias and catch-all destinations naming the old address, under the
//!   domain's name or any of its alias domains, become the new address,
//!   in the same transaction (a row that would then repeat a destination
//!   its alias already has is dropped instead). A destination that still
//!   reaches the old address some other way (an extension, `alice-x@`)
//!   would stop delivering: the change is refused unless forced, as every
//!   change under [`super::guard`].
//!
//! Refused: a new address that is already an account, an alias or a
//! relocated address, or in a domain that is not a primary domain; a new
//! Maildir path the same as, inside or around another account's; a target
//! home directory already on disk (a deleted account's mail would become
//! this account's), unless an interrupted rename of the same pair left it
//! (below).
//!
//! # The move, and the order of the steps
//!
//! The home directory is moved with one `renameat2(RENAME_NOREPLACE)`
//! between directories opened beneath the mail root without following
//! symlinks, as the mail user ([`super::as_mail_user`]): on one filesystem
//! it is atomic, it never overwrites, and a mail root spanning
//! filesystems is an error (EXDEV), never a copy. A missing
//! `NEWDOMAIN/` is created (mode 0700, as vdeliver makes directories).
//!
//! 1. BEGIN; the account's row, the aliases and the catch-alls change
//!    (not yet visible to delivery, which keeps reading the old row).
//! 2. A marker file `.vmailctl-rename` naming the pair is written into the
//!    old home and synced; the home is renamed; both parent directories
//!    are synced.
//! 3. COMMIT; then the marker is removed.
//!
//! A crash or failure before the rename leaves nothing changed: the
//! transaction rolls back. A crash between the rename and the COMMIT
//! leaves the database at the old address and the directory at the new
//! path, with the marker in it: running the same `rename OLD NEW` again
//! finds the old home gone and the new one holding that marker, and
//! finishes (the database change; nothing more to move); `vmailctl check`
//! finds such a marker ([`interrupted`]) and names that command. A COMMIT whose
//! outcome is unknown (the connection lost) is the same: run it again,
//! which finishes or answers that OLD is no longer an account (then it
//! had committed and all is in place). The directory is never moved back
//! automatically, since the commit may have happened.
//!
//! A delivery that looked the old row up just before the COMMIT may
//! recreate the old Maildir after the move (vdeliver creates a missing
//! Maildir on first delivery): the rename looks for that afterwards and
//! warns, naming the directory whose messages to move by hand. A rerun
//! after a crash that finds both homes (mail arrived at the old address
//! in between) refuses and says the same.

use super::account::maildir_user;
use super::domain::{domain_id, names_of};
use super::guard::{broken, outcomes, referrers, Probe};
use super::names::address;
use super::purge::{names, open_dir_beneath, unsafe_or_io};
use super::{as_mail_user, conflict, AdminError, Result};
use crate::maildir::{retry, DIR_FLAGS};
use crate::plan::Rules;
use postgres::Client;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::Serialize;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// The marker an interrupted rename leaves in the moved home.
const MARKER: &str = ".vmailctl-rename";

/// What happened on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Moved {
    /// The home directory was moved.
    Moved,
    /// An earlier, interrupted rename of the same pair had moved it.
    Resumed,
    /// Nothing on disk yet (never delivered to): only the path changed.
    NothingOnDisk,
    /// The Maildir is not in the default layout: its path stays.
    KeptPath,
}

/// The outcome of [`account_rename`].
#[derive(Debug, Clone, Serialize)]
pub struct Renamed {
    pub from: String,
    pub to: String,
    pub maildir_before: String,
    pub maildir: String,
    pub moved: Moved,
    /// The aliases and catch-alls rewritten (`alias team@example.com`,
    /// `catch-all of example.com`).
    pub rewritten: Vec<String>,
    pub warnings: Vec<String>,
}

/// Rename the account `old_raw` to `new_raw` (see the module doc).
/// `root`: the mail root (`None`: the database only, nothing on disk).
pub fn account_rename(
    client: &mut Client,
    rules: &Rules,
    root: Option<&Path>,
    old_raw: &str,
    new_raw: &str,
    force: bool,
) -> Result<Renamed> {
    let (ol, od) = address(old_raw)?;
    let (nl, nd) = address(new_raw)?;
    let (from, to) = (format!("{ol}@{od}"), format!("{nl}@{nd}"));
    if from == to {
        return Err(AdminError::Invalid(format!(
            "{from} is already the account's address"
        )));
    }
    let oid = domain_id(client, &od)?;
    let nid = domain_id(client, &nd)?;
    let row = client
        .query_opt(
            "SELECT id, maildir FROM accounts WHERE domain_id = $1 AND local_part = $2",
            &[&oid, &ol],
        )?
        .ok_or_else(|| AdminError::NotFound(format!("no account {from}")))?;
    let (account_id, maildir_before): (i64, String) = (row.get(0), row.get(1));
    let taken: Option<String> = client
        .query_one(
            "SELECT CASE
                 WHEN EXISTS (SELECT 1 FROM accounts WHERE domain_id = $1 AND local_part = $2)
                     THEN 'an account'
                 WHEN EXISTS (SELECT 1 FROM relocated WHERE domain_id = $1 AND local_part = $2)
                     THEN 'a relocated address'
                 WHEN EXISTS (SELECT 1 FROM aliases WHERE domain_id = $1 AND local_part = $2)
                     THEN 'an alias'
             END",
            &[&nid, &nl],
        )?
        .get(0);
    if let Some(what) = taken {
        return Err(AdminError::Conflict(format!(
            "refused: {to} is already {what}; nothing changed"
        )));
    }
    let default_layout = maildir_before.trim_end_matches('/') == format!("{od}/{ol}/Maildir");
    let maildir = if default_layout {
        format!("{nd}/{nl}/Maildir/")
    } else {
        maildir_before.clone()
    };
    if default_layout {
        if let Some((other, path)) = maildir_user(client, &maildir, oid, &ol)? {
            return Err(AdminError::Conflict(format!(
                "refused: the new Maildir {maildir} is the same as, inside or around {path}, \
                 the Maildir of {other}; nothing changed"
            )));
        }
    }
    let names = names_of(client, oid, &od)?;
    let mut probes = referrers(client, &names, Some(&ol), None)?;
    // Aliases to an extension of the old address (alice-lists@) reach the
    // account too, and would stop delivering: probed as well.
    for r in client.query(
        "WITH x AS (
           SELECT a.local_part, d.name,
                  translate(left(a.destination, length(a.destination)
                                 - strpos(reverse(a.destination), '@')),
                            'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') AS loc,
                  translate(right(a.destination, strpos(reverse(a.destination), '@') - 1),
                            'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') AS dom
             FROM aliases a JOIN domains d ON d.id = a.domain_id
            WHERE strpos(a.destination, '@') > 1)
         SELECT DISTINCT local_part, name FROM x
          WHERE dom = ANY($1) AND starts_with(loc, $2) AND loc <> $2 ORDER BY 2, 1",
        &[&names, &ol],
    )? {
        let (local, domain): (String, String) = (r.get(0), r.get(1));
        let what = format!("alias {local}@{domain}");
        if !probes.iter().any(|p| p.what == what) {
            probes.push(Probe {
                what,
                local,
                domain,
            });
        }
    }

    // 1. The database change, not committed yet.
    client.batch_execute("BEGIN")?;
    let staged = (|| -> Result<(Vec<String>, Vec<String>)> {
        let before = outcomes(client, &probes, rules)?;
        client
            .execute(
                "UPDATE accounts SET domain_id = $2, local_part = $3, maildir = $4 WHERE id = $1",
                &[&account_id, &nid, &nl, &maildir],
            )
            .map_err(|e| conflict(e, || format!("refused: {to} is already taken")))?;
        let rewritten = rewrite_destinations(client, &names, &ol, &to)?;
        let after = outcomes(client, &probes, rules)?;
        let bad = broken(&probes, &before, &after, false);
        if !bad.is_empty() && !force {
            return Err(AdminError::Conflict(format!(
                "refused, this would break delivery ({}); --force does it anyway",
                bad.join("; ")
            )));
        }
        Ok((rewritten, bad))
    })();
    let (rewritten, mut warnings) = match staged {
        Ok(v) => v,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK");
            return Err(e);
        }
    };

    // 2. The move.
    let old_home = [od.as_str(), ol.as_str()];
    let new_home = [nd.as_str(), nl.as_str()];
    let tag = format!("{from} {to}\n");
    let root = root.filter(|r| default_layout && r.exists());
    let moved = match root {
        None if !default_layout => Moved::KeptPath,
        None => Moved::NothingOnDisk,
        Some(root) => match as_mail_user(root, |root| move_home(root, old_home, new_home, &tag)) {
            Ok(m) => m,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK");
                return Err(e);
            }
        },
    };

    // 3. Commit; then the marker goes.
    if let Err(e) = client.batch_execute("COMMIT") {
        let state = match moved {
            Moved::Moved | Moved::Resumed => format!(
                "the home directory is at {nd}/{nl}/ already; run the same rename again \
                 to finish (or, if it says there is no account {from}, it had committed)"
            ),
            _ => "nothing was moved on disk".to_string(),
        };
        return Err(AdminError::Failed(format!(
            "the database did not confirm the rename ({e}); {state}"
        )));
    }
    if let Some(root) = root {
        if matches!(moved, Moved::Moved | Moved::Resumed) {
            match as_mail_user(root, |root| after_move(root, old_home, new_home)) {
                Ok(w) => warnings.extend(w),
                Err(e) => warnings.push(format!("after the move: {e}")),
            }
        }
    }
    Ok(Renamed {
        from,
        to,
        maildir_before,
        maildir,
        moved,
        rewritten,
        warnings,
    })
}

/// Point alias and catch-all destinations naming `local` at any of
/// `names` (the old domain and its alias domains) at `to`; what was
/// rewritten.
fn rewrite_destinations(
    client: &mut Client,
    names: &[String],
    local: &str,
    to: &str,
) -> Result<Vec<String>> {
    let olds: Vec<String> = names.iter().map(|d| format!("{local}@{d}")).collect();
    // Folded ASCII A-Z only, as vdeliver folds addresses.
    const FOLD: &str = "translate(x.destination, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', \
                        'abcdefghijklmnopqrstuvwxyz')";
    const YFOLD: &str = "translate(y.destination, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', \
                         'abcdefghijklmnopqrstuvwxyz')";
    // First the rows that would repeat a destination once rewritten (the
    // alias already has the new address, or several old forms of it),
    // then the rest; two statements, so the second sees the first.
    let mut done = std::collections::BTreeSet::new();
    for (table, key, what) in [
        (
            "aliases",
            "x.local_part = y.local_part AND ",
            "'alias ' || x.local_part || '@' || d.name",
        ),
        ("catchalls", "", "'catch-all of ' || d.name"),
    ] {
        for r in client.query(
            &format!(
                "WITH gone AS (
                   DELETE FROM {table} x WHERE {FOLD} = ANY($1)
                      AND EXISTS (SELECT 1 FROM {table} y
                                   WHERE y.domain_id = x.domain_id AND {key}
                                         (y.destination = $2
                                          OR (y.id < x.id AND {YFOLD} = ANY($1))))
                   RETURNING x.*)
                 SELECT {what} FROM gone x JOIN domains d ON d.id = x.domain_id"
            ),
            &[&olds, &to],
        )? {
            done.insert(r.get::<_, String>(0));
        }
        for r in client.query(
            &format!(
                "WITH moved AS (
                   UPDATE {table} x SET destination = $2 WHERE {FOLD} = ANY($1) RETURNING x.*)
                 SELECT {what} FROM moved x JOIN domains d ON d.id = x.domain_id"
            ),
            &[&olds, &to],
        )? {
            done.insert(r.get::<_, String>(0));
        }
    }
    Ok(done.into_iter().collect())
}

/// Open `name` in `dir` as a directory, never through a symlink; `None`
/// when it does not exist.
fn open_opt(dir: Option<&OwnedFd>, name: &str) -> rustix::io::Result<Option<OwnedFd>> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    match retry(|| rfs::openat(dir, name, DIR_FLAGS, Mode::empty())) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The marker in `home`, when there is one: a regular file (never through
/// a symlink, and a FIFO put there cannot block the read), its first KB.
fn marker_of(home: &OwnedFd) -> Option<String> {
    let fd = retry(|| {
        rfs::openat(
            home,
            MARKER,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
    })
    .ok()?;
    if rfs::FileType::from_raw_mode(rfs::fstat(&fd).ok()?.st_mode) != rfs::FileType::RegularFile {
        return None;
    }
    let mut buf = vec![0u8; 1024];
    let n = retry(|| rustix::io::read(&fd, &mut buf[..])).ok()?;
    String::from_utf8(buf[..n].to_vec()).ok()
}

/// Step 2 of the module doc, as the mail user.
fn move_home(root: &Path, old: [&str; 2], new: [&str; 2], tag: &str) -> Result<Moved> {
    let (old_rel, new_rel) = (old.join("/") + "/", new.join("/") + "/");
    let refuse = |why: String| {
        AdminError::Conflict(format!("refusing to move {old_rel} to {new_rel}: {why}"))
    };
    let io = |op: &str, e: Errno| {
        AdminError::Failed(format!(
            "moving {old_rel} to {new_rel}: {op}: {e}; nothing changed"
        ))
    };
    let root_fd = retry(|| rfs::open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()))
        .map_err(|e| io(&format!("open mail root {}", root.display()), e))?;
    let old_parent = match open_dir_beneath(&root_fd, &old[..1]) {
        Ok(fd) => Some(fd),
        Err(Errno::NOENT) => None,
        Err(e) => return Err(unsafe_or_io(&old_rel, e, &refuse, &io)),
    };
    let old_home = open_opt(old_parent.as_ref(), old[1])
        .map_err(|e| unsafe_or_io(&old_rel, e, &refuse, &io))?;
    let new_parent = match open_dir_beneath(&root_fd, &new[..1]) {
        Ok(fd) => Some(fd),
        Err(Errno::NOENT) => None,
        Err(e) => return Err(unsafe_or_io(&new_rel, e, &refuse, &io)),
    };
    let new_home = open_opt(new_parent.as_ref(), new[1])
        .map_err(|e| unsafe_or_io(&new_rel, e, &refuse, &io))?;
    let ours = new_home.as_ref().and_then(marker_of).as_deref() == Some(tag);
    let (old_home, new_parent) = match (old_home, new_home) {
        (None, None) => return Ok(Moved::NothingOnDisk),
        (None, Some(_)) if ours => return Ok(Moved::Resumed),
        (Some(_), Some(_)) if ours => {
            return Err(refuse(format!(
                "an interrupted rename moved the home to {new_rel} already, and mail has \
                 arrived at {old_rel} since: move the messages of {old_rel}Maildir/ into \
                 {new_rel}Maildir/ by hand, remove {old_rel}, and run the rename again"
            )))
        }
        (_, Some(_)) => {
            return Err(refuse(format!(
                "{new_rel} already exists (left by a deleted account?): the account would \
                 get what is in it; move or remove it first. Nothing changed"
            )))
        }
        (Some(h), None) => (h, new_parent),
    };
    let new_parent = match new_parent {
        Some(fd) => fd,
        None => {
            match retry(|| rfs::mkdirat(&root_fd, new[0], Mode::from_raw_mode(0o700))) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io(&format!("mkdir {}", new[0]), e)),
            }
            retry(|| rfs::fsync(&root_fd)).map_err(|e| io("fsync the mail root", e))?;
            open_dir_beneath(&root_fd, &new[..1])
                .map_err(|e| unsafe_or_io(&new_rel, e, &refuse, &io))?
        }
    };
    let old_parent = old_parent.ok_or_else(|| io("open", Errno::NOENT))?;
    // The marker, durable before the move that carries it.
    let m = retry(|| {
        rfs::openat(
            &old_home,
            MARKER,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    })
    .map_err(|e| io(&format!("create {old_rel}{MARKER}"), e))?;
    let n =
        retry(|| rustix::io::write(&m, tag.as_bytes())).map_err(|e| io("write the marker", e))?;
    if n != tag.len() {
        return Err(io("write the marker", Errno::IO));
    }
    retry(|| rfs::fsync(&m)).map_err(|e| io("fsync the marker", e))?;
    drop(m);
    let unmark = || {
        let _ = rfs::unlinkat(&old_home, MARKER, AtFlags::empty());
    };
    match retry(|| {
        rfs::renameat_with(
            &old_parent,
            old[1],
            &new_parent,
            new[1],
            RenameFlags::NOREPLACE,
        )
    }) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            unmark();
            return Err(refuse(format!(
                "{new_rel} appeared meanwhile; nothing changed"
            )));
        }
        Err(Errno::XDEV) => {
            unmark();
            return Err(refuse(format!(
                "{old_rel} and {new_rel} are on different filesystems; vmailctl moves a \
                 home only by rename, never by copying. Nothing changed"
            )));
        }
        Err(e) => {
            unmark();
            return Err(io("rename", e));
        }
    }
    // Durable before the database says so (a failure here still leaves a
    // state a rerun finishes: the marker is in the new home).
    retry(|| rfs::fsync(&new_parent)).map_err(|e| io("fsync the new parent", e))?;
    retry(|| rfs::fsync(&old_parent)).map_err(|e| io("fsync the old parent", e))?;
    Ok(Moved::Moved)
}

/// After the COMMIT: remove the marker, and look for an old home that a
/// racing delivery recreated. Warnings, never errors: the rename is done.
fn after_move(root: &Path, old: [&str; 2], new: [&str; 2]) -> Result<Vec<String>> {
    let (old_rel, new_rel) = (old.join("/") + "/", new.join("/") + "/");
    let mut w = Vec::new();
    let root_fd = retry(|| rfs::open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()))
        .map_err(|e| AdminError::Failed(format!("open mail root {}: {e}", root.display())))?;
    match open_dir_beneath(&root_fd, &new) {
        Ok(home) => match retry(|| rfs::unlinkat(&home, MARKER, AtFlags::empty())) {
            Ok(()) | Err(Errno::NOENT) => {
                let _ = retry(|| rfs::fsync(&home));
            }
            Err(e) => w.push(format!("cannot remove {new_rel}{MARKER}: {e}")),
        },
        Err(e) => w.push(format!("cannot open {new_rel} to remove {MARKER}: {e}")),
    }
    if open_dir_beneath(&root_fd, &old).is_ok() {
        w.push(format!(
            "{old_rel} exists again: a delivery that had looked the account up just before \
             the rename recreated it; move the messages of {old_rel}Maildir/ into \
             {new_rel}Maildir/ by hand and remove {old_rel}"
        ));
    }
    Ok(w)
}

/// A marker an interrupted rename left behind, found by [`interrupted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Interrupted {
    /// The home holding it, relative to the mail root (`example.com/al/`).
    pub dir: String,
    /// The pair it names (`None` when its content is not a pair).
    pub pair: Option<(String, String)>,
}

impl Interrupted {
    /// The marker's path relative to the mail root.
    pub fn path(&self) -> String {
        format!("{}{MARKER}", self.dir)
    }
}

/// Every marker under `root`, in the only place a rename puts one: a home
/// `DOMAIN/LOCAL/`, two levels down. Directories are opened one beneath
/// the other without following symlinks (run as root, a symlink a user
/// swapped in cannot lead the read elsewhere), three descriptors at a
/// time; sorted by path. A directory that cannot be read is an error (the
/// answer would be incomplete), naming it.
pub(super) fn interrupted(root: &Path) -> std::result::Result<Vec<Interrupted>, String> {
    let err = |what: &str, e: Errno| format!("cannot read {}/{what}: {e}", root.display());
    let root_fd = retry(|| rfs::open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()))
        .map_err(|e| err("", e))?;
    // The subdirectories of `dir` (symlinks and other files passed over).
    let subdirs =
        |dir: &OwnedFd, shown: &str| -> std::result::Result<Vec<(String, OwnedFd)>, String> {
            let mut out = Vec::new();
            for name in names(dir.as_fd()).map_err(|e| err(shown, e))? {
                let Ok(name) = name.into_string() else {
                    continue;
                };
                match retry(|| rfs::openat(dir, name.as_str(), DIR_FLAGS, Mode::empty())) {
                    Ok(fd) => out.push((name, fd)),
                    Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => {}
                    Err(e) => return Err(err(&format!("{shown}{name}"), e)),
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        };
    let mut found = Vec::new();
    for (domain, dfd) in subdirs(&root_fd, "")? {
        let homes = subdirs(&dfd, &format!("{domain}/"))?;
        for (local, home) in homes {
            match rfs::statat(&home, MARKER, AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(err(&format!("{domain}/{local}/{MARKER}"), e)),
                Ok(_) => {}
            }
            let pair = marker_of(&home).and_then(|text| {
                let (f, t) = text.trim_end_matches('\n').split_once(' ')?;
                (f.contains('@') && t.contains('@') && !t.contains(' '))
                    .then(|| (f.to_owned(), t.to_owned()))
            });
            found.push(Interrupted {
                dir: format!("{domain}/{local}/"),
                pair,
            });
        }
    }
    Ok(found)
}
