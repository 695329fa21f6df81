//! Quota usage of a Maildir for `vmailctl quota` and `resolve`, through
//! the quota module's own reading and counting ([`crate::maildirsize`],
//! [`crate::quota`]), so vmailctl reports what vdeliver will act on.
//!
//! Reading never writes: a Maildir that does not exist (or lacks `tmp/` or
//! `new/`, which vdeliver would add) is reported empty rather than opened,
//! because opening it through [`MailRoot::maildir`] would create it. Only
//! `--recalc` writes: it recounts and has the quota module put a fresh
//! `maildirsize` in place under its lock. All of it runs as the mail user
//! ([`super::as_mail_user`]), so what is written belongs to that user.

use super::{AdminError, Result};
use crate::config::Config;
use crate::maildir::{MailRoot, Maildir, Namer};
use crate::maildirsize::{self, Limits};
use crate::quota;
use rustix::fd::AsFd;
use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::Serialize;

/// Usage against limits.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// Limits in force (from the database); 0 = unlimited.
    pub limit_bytes: u64,
    pub limit_messages: u64,
    pub bytes: i64,
    pub messages: i64,
    /// How full, in percent: the larger of the two ratios (0 when
    /// unlimited), as Courier and vdeliver's warning compute it.
    pub percent: u64,
    /// `maildirsize` (trusted as it is), `counted` (the file is missing
    /// or would be recalculated; vdeliver rewrites it at the next
    /// delivery), `recalculated` (by this command), `none` (no Maildir yet).
    pub source: &'static str,
    /// Why the file was not trusted, when it was not.
    pub note: Option<String>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

fn failed(rel: &str, e: impl std::fmt::Display) -> AdminError {
    AdminError::Failed(format!("quota of {rel}: {e}"))
}

/// Whether the Maildir at `rel` exists complete (`tmp/` and `new/`), so
/// that opening it creates nothing. Looked up beneath the root without
/// following symlinks.
fn complete(cfg: &Config, rel: &str) -> Result<bool> {
    let root = retry(|| {
        rfs::open(
            &cfg.mail.root,
            DIR_FLAGS.difference(OFlags::NOFOLLOW),
            Mode::empty(),
        )
    })
    .map_err(|e| failed(rel, format_args!("open mail root: {e}")))?;
    let path = rel.trim_start_matches('/');
    let path = if path.is_empty() { "." } else { path };
    let dir = match retry(|| {
        rfs::openat2(
            &root,
            path,
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    }) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(false),
        // No openat2: MailRoot::maildir below makes the same checks.
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => return Ok(true),
        Err(e) => return Err(failed(rel, e)),
    };
    let sub = |n: &str| retry(|| rfs::openat(&dir, n, DIR_FLAGS, Mode::empty())).is_ok();
    Ok(sub("tmp") && sub("new"))
}

/// The usage of the Maildir at `rel` (relative to mail.root) against the
/// limits from the database. With `recalc`, recount and rewrite
/// `maildirsize`.
pub fn usage(
    cfg: &Config,
    rel: &str,
    bytes: Option<i64>,
    messages: Option<i64>,
    recalc: bool,
) -> Result<Usage> {
    let limits = Limits::from_db(bytes, messages);
    let report = |u: maildirsize::Usage, source, note| Usage {
        limit_bytes: limits.bytes,
        limit_messages: limits.messages,
        bytes: u.bytes,
        messages: u.messages,
        percent: maildirsize::percent(u, limits),
        source,
        note,
    };
    // Opening a Maildir completes it (cur/, folders) and --recalc
    // rewrites maildirsize: all of it as the mail user.
    super::as_mail_user(&cfg.mail.root, |_| {
        measure(cfg, rel, limits, recalc, report)
    })
}

/// The work of [`usage`], as the mail user.
fn measure(
    cfg: &Config,
    rel: &str,
    limits: Limits,
    recalc: bool,
    report: impl Fn(maildirsize::Usage, &'static str, Option<String>) -> Usage,
) -> Result<Usage> {
    if !complete(cfg, rel)? {
        return Ok(report(maildirsize::Usage::default(), "none", None));
    }
    let root = MailRoot::open(&cfg.mail.root).map_err(|e| failed(rel, e))?;
    let md = root
        .maildir(rel, &cfg.mail.folders)
        .map_err(|e| failed(rel, e))?;
    let ignore = &cfg.quota.ignore;
    if recalc {
        let counted = quota::recalculate(&md, ignore).map_err(|e| failed(rel, e))?;
        rewrite(&md, limits, ignore)?;
        return Ok(report(counted, "recalculated", None));
    }
    match read(&md, limits)? {
        Ok(u) => Ok(report(u, "maildirsize", None)),
        Err(trigger) => {
            let counted = quota::recalculate(&md, ignore).map_err(|e| failed(rel, e))?;
            // An unlimited Maildir needs no maildirsize, and gets none.
            let note =
                (!(trigger == maildirsize::Trigger::Missing && limits.is_unlimited())).then(|| {
                    format!(
                        "maildirsize is not used as it is: {trigger}; \
                         vdeliver rewrites it at the next delivery"
                    )
                });
            Ok(report(counted, "counted", note))
        }
    }
}

/// The usage of the Maildir at `rel` as a recalculation finds it, writing
/// nothing (empty when the Maildir is not there yet): what vdeliver counts
/// before it refuses a message.
pub(crate) fn recount(cfg: &Config, rel: &str) -> Result<maildirsize::Usage> {
    if !complete(cfg, rel)? {
        return Ok(maildirsize::Usage::default());
    }
    let root = MailRoot::open(&cfg.mail.root).map_err(|e| failed(rel, e))?;
    let md = root
        .maildir(rel, &cfg.mail.folders)
        .map_err(|e| failed(rel, e))?;
    quota::recalculate(&md, &cfg.quota.ignore).map_err(|e| failed(rel, e))
}

/// `maildirsize` read and judged as a delivery of nothing would judge it.
fn read(
    md: &Maildir,
    limits: Limits,
) -> Result<std::result::Result<maildirsize::Usage, maildirsize::Trigger>> {
    let dir = md.dir().map_err(|e| failed(&md.rel, e))?;
    let fd = match retry(|| {
        rfs::openat(
            &dir,
            quota::FILE,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
    }) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Err(maildirsize::Trigger::Missing)),
        Err(e) => return Err(failed(&md.rel, format_args!("open {}: {e}", quota::FILE))),
    };
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while bytes.len() <= maildirsize::MAX_FILE {
        match retry(|| rustix::io::read(fd.as_fd(), &mut buf)) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) => return Err(failed(&md.rel, format_args!("read {}: {e}", quota::FILE))),
        }
    }
    Ok(maildirsize::assess(
        maildirsize::parse(&bytes),
        limits,
        0,
        0,
    ))
}

/// Put a freshly counted `maildirsize` in place: remove the old one, then
/// let the quota module create it under its lock (as the next delivery
/// would). An unlimited Maildir is left without one.
fn rewrite(md: &Maildir, limits: Limits, ignore: &[String]) -> Result<()> {
    let dir = md.dir().map_err(|e| failed(&md.rel, e))?;
    match retry(|| rfs::unlinkat(&dir, quota::FILE, rfs::AtFlags::empty())) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(failed(&md.rel, format_args!("remove {}: {e}", quota::FILE))),
    }
    let mut namer = Namer::new();
    let locked =
        quota::lock(md, limits, 0, 0, ignore, &mut namer).map_err(|e| failed(&md.rel, e))?;
    drop(locked);
    Ok(())
}
