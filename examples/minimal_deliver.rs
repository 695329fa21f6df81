//! The floor vdeliver is measured against: what any SQL-backed
//! delivery agent must at least do for one message, and nothing else. It
//! uses nothing of the vdeliver crate — no code, no SQL, no configuration.
//!
//! ```text
//! minimal_deliver MAIL_ROOT DATABASE_URL [DOMAIN LOCAL]    < message
//! ```
//!
//! 1. The recipient: `DOMAIN LOCAL` from the arguments, else qmail-local's
//!    environment (`HOST`, and `EXT` less its leading `HOST-`, else
//!    `DEFAULT`), ASCII-lowercased.
//! 2. Connect with the `postgres` crate (the client library any Rust
//!    agent would use; it is not vdeliver's code) and run ONE simple
//!    indexed lookup of the account's Maildir and quota limits, with its
//!    own SQL, through `query_typed`: an unnamed statement with its
//!    parameter types given, so Parse, Bind, Execute and Sync go out in one
//!    round trip — what libpq's `PQexecParams` does for a one-shot client,
//!    and what works through PgBouncer in transaction mode. The limits are
//!    read, not enforced.
//! 3. The durable write into `MAIL_ROOT/<maildir>` (a path with `..` or
//!    an absolute one is refused): exclusive create in `tmp/`, write,
//!    fsync, close, link into `new/`, fsync `new/`, unlink the `tmp/` name.
//!    A Maildir that does not exist yet is made first (`mkdir` 0700 of each
//!    missing component, then `tmp`, `new`, `cur`).
//!
//! Exit 0 when the message is on disk, 100 when there is no such account,
//! 111 on anything else. Used by `examples/load.rs --compare-minimal` and
//! `benches/lookup.rs`.

use postgres::types::Type;
use rustix::fs::{self as rfs, Mode, OFlags};
use std::path::{Component, Path, PathBuf};
use std::process::exit;
use std::time::{SystemTime, UNIX_EPOCH};

/// The floor's own lookup: the account's Maildir and its effective limits.
const LOOKUP: &str = "SELECT a.maildir, coalesce(a.quota_bytes, d.quota_bytes), \
     coalesce(a.quota_messages, d.quota_messages) \
     FROM accounts a JOIN domains d ON d.id = a.domain_id \
     WHERE d.name = $1 AND a.local_part = $2";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (root, url, domain, local) = match args.as_slice() {
        [root, url, domain, local] => (root, url, domain.clone(), local.clone()),
        [root, url] => match from_qmail_env() {
            Some((d, l)) => (root, url, d, l),
            None => fail(111, "no recipient: HOST and EXT (or DEFAULT) are not set"),
        },
        _ => fail(
            111,
            "usage: minimal_deliver MAIL_ROOT DATABASE_URL [DOMAIN LOCAL] < message",
        ),
    };
    let maildir = match lookup(
        url,
        &domain.to_ascii_lowercase(),
        &local.to_ascii_lowercase(),
    ) {
        Ok(Some(m)) => m,
        Ok(None) => fail(100, "no such account"),
        Err(e) => fail(111, &format!("database: {e}")),
    };
    let Some(path) = beneath(root, &maildir) else {
        fail(111, "the Maildir is not beneath the mail root")
    };
    if let Err(e) = deliver(&path) {
        fail(111, &format!("{}: {e}", path.display()));
    }
}

fn fail(code: i32, why: &str) -> ! {
    println!("minimal_deliver: {why}");
    exit(code)
}

/// qmail-local's recipient: (HOST, EXT less `HOST-`, else DEFAULT less it).
fn from_qmail_env() -> Option<(String, String)> {
    let host = std::env::var("HOST").ok().filter(|h| !h.is_empty())?;
    let prefix = format!("{}-", host.to_ascii_lowercase());
    let strip = |v: String| match v.to_ascii_lowercase().strip_prefix(&prefix) {
        Some(rest) => rest.to_string(),
        None => v,
    };
    let local = std::env::var("EXT")
        .ok()
        .map(strip)
        .filter(|l| !l.is_empty())
        .or_else(|| std::env::var("DEFAULT").ok().map(strip))
        .filter(|l| !l.is_empty())?;
    Some((host, local))
}

fn lookup(url: &str, domain: &str, local: &str) -> Result<Option<String>, postgres::Error> {
    let mut client = url.parse::<postgres::Config>()?.connect(postgres::NoTls)?;
    let rows = client.query_typed(LOOKUP, &[(&domain, Type::TEXT), (&local, Type::TEXT)])?;
    match rows.first() {
        Some(r) => {
            let maildir: String = r.try_get(0)?;
            let _limits: (Option<i64>, Option<i64>) = (r.try_get(1)?, r.try_get(2)?);
            Ok(Some(maildir))
        }
        None => Ok(None),
    }
}

/// `root/maildir` when `maildir` is relative and has no `..`.
fn beneath(root: &str, maildir: &str) -> Option<PathBuf> {
    let rel = Path::new(maildir);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| Path::new(root).join(rel))
}

fn open_dir(p: &Path) -> rustix::io::Result<rustix::fd::OwnedFd> {
    rfs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Make the missing parts of `maildir` and its `tmp`, `new`, `cur`.
fn make_maildir(maildir: &Path) -> rustix::io::Result<()> {
    let mut p = PathBuf::new();
    let subs = [Path::new("tmp"), Path::new("new"), Path::new("cur")];
    for c in maildir.components() {
        p.push(c);
        mkdir(&p)?;
    }
    for s in subs {
        mkdir(&maildir.join(s))?;
    }
    Ok(())
}

fn mkdir(p: &Path) -> rustix::io::Result<()> {
    match rfs::mkdir(p, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

fn deliver(maildir: &Path) -> rustix::io::Result<()> {
    let tmp = match open_dir(&maildir.join("tmp")) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => {
            make_maildir(maildir)?;
            open_dir(&maildir.join("tmp"))?
        }
        Err(e) => return Err(e),
    };
    let new = open_dir(&maildir.join("new"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}.minimal",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    );
    let fd = rfs::openat(
        &tmp,
        name.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut buf = vec![0u8; 128 * 1024];
    let mut size = 0u64;
    loop {
        let n = rustix::io::read(rustix::stdio::stdin(), &mut buf)?;
        if n == 0 {
            break;
        }
        let mut part = &buf[..n];
        while !part.is_empty() {
            let w = rustix::io::write(&fd, part)?;
            part = &part[w..];
        }
        size += n as u64;
    }
    rfs::fsync(&fd)?;
    drop(fd);
    let final_name = format!("{name},S={size}");
    rfs::linkat(
        &tmp,
        name.as_str(),
        &new,
        final_name.as_str(),
        rfs::AtFlags::empty(),
    )?;
    rfs::fsync(&new)?;
    rfs::unlinkat(&tmp, name.as_str(), rfs::AtFlags::empty())
}
