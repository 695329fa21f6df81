//! The floor vdeliver is measured against (issue 7): the least a correct
//! Maildir delivery can do, and nothing else. No configuration, no
//! environment parsing, no resolution, no header scan, no error texts.
//!
//! ```text
//! minimal_deliver MAILDIR [DATABASE_URL]    < message
//! ```
//!
//! With a database URL it first connects (same client library, same
//! connection path) and runs vdeliver's own lookup statement once, as an
//! unnamed statement in one round trip, for `alice@example.com`. Then:
//! exclusive create in `tmp/`, write the message, fsync, close, link into
//! `new/`, fsync `new/`, unlink the `tmp/` name. Exit 0, or 111 on any
//! error. Used by `examples/load.rs --compare-minimal`.

use postgres::types::Type;
use rustix::fs::{self as rfs, Mode, OFlags};
use std::process::exit;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(maildir) = args.next() else {
        eprintln!("usage: minimal_deliver MAILDIR [DATABASE_URL] < message");
        exit(111);
    };
    if let Some(url) = args.next() {
        let ok = url
            .parse::<postgres::Config>()
            .ok()
            .and_then(|c| c.connect(postgres::NoTls).ok())
            .and_then(|mut c| {
                let doms = vec!["example.com"];
                let locs = vec!["alice"];
                c.query_typed(
                    vdeliver::db::FETCH,
                    &[(&doms, Type::TEXT_ARRAY), (&locs, Type::TEXT_ARRAY)],
                )
                .ok()
            });
        if ok.is_none() {
            exit(111);
        }
    }
    if deliver(&maildir).is_err() {
        exit(111);
    }
}

fn deliver(maildir: &str) -> rustix::io::Result<()> {
    let dir = |p: String| {
        rfs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let tmp = dir(format!("{maildir}/tmp"))?;
    let new = dir(format!("{maildir}/new"))?;
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
