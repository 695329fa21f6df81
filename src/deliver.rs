//! One delivery, top to bottom: environment → recipient → plan (one
//! database answer) → write → outcome.
//!
//! This function always returns an [`Outcome`]; it never exits, prints or
//! panics on bad input. Every error maps to a deferral except the definite
//! answers listed in [`crate::outcome`].

use crate::config::Config;
use crate::db;
use crate::deadline;
use crate::header::{HeaderScan, Verdict};
use crate::maildir::{MailRoot, Maildir, MaildirError, Namer, TmpFile};
use crate::outcome::{Failure, Outcome};
use crate::plan;
use crate::recipient::{self, Overrides, QmailEnv};
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

/// Read size for copying the message: large enough that a typical message
/// is one read, small enough to stay constant memory.
const CHUNK: usize = 128 * 1024;

/// Deliver the message on `input` for the recipient `env`/`over` name.
pub fn deliver(
    cfg: &Config,
    env: &QmailEnv<'_>,
    over: &Overrides<'_>,
    input: BorrowedFd<'_>,
) -> Outcome {
    match try_deliver(cfg, env, over, input) {
        Ok(o) => o,
        Err(f) => Outcome::Failed(f),
    }
}

fn try_deliver(
    cfg: &Config,
    env: &QmailEnv<'_>,
    over: &Overrides<'_>,
    input: BorrowedFd<'_>,
) -> Result<Outcome, Failure> {
    // Environment → recipient.
    let rcpt =
        recipient::recipient(env, over, cfg.mail.lowercase_local_part).map_err(Failure::config)?;
    let return_path = recipient::return_path(env, over).map_err(Failure::config)?;
    let delivered_to = rcpt.delivered_to();

    // Recipient → plan, from one database answer.
    let db_cfg = &cfg.database;
    deadline::phase(
        db_cfg.connect_timeout + db_cfg.statement_timeout + std::time::Duration::from_secs(1),
        "the database lookup",
    );
    let answer = db::connect(db_cfg, "vdeliver")
        .and_then(|mut c| db::lookup(&mut c, &rcpt.domain, &rcpt.local))
        .map_err(|e| Failure::temporary(format_args!("database: {e}")))?;
    deadline::phase_done();
    let targets = plan::plan(&rcpt, &answer)?;

    // Plan → the message on disk.
    let root = MailRoot::open(&cfg.mail.root).map_err(maildir_failure)?;
    let mut namer = Namer::new();
    let mut stored = Vec::with_capacity(targets.len());
    for t in &targets {
        let md = root
            .maildir(&t.maildir, &cfg.mail.folders)
            .map_err(maildir_failure)?;
        let header = format!("{return_path}Delivered-To: {delivered_to}\n");
        write_one(&md, &mut namer, header.as_bytes(), input, &delivered_to)?;
        stored.push(md.rel.clone());
    }
    Ok(Outcome::Delivered {
        mailboxes: stored,
        forwarded: 0,
        stop: false,
    })
}

/// Write one copy: tmp/, scanning the header on the way, then the loop
/// verdict, then fsync + link + fsync new/.
fn write_one(
    md: &Maildir,
    namer: &mut Namer,
    prefix: &[u8],
    input: BorrowedFd<'_>,
    delivered_to: &str,
) -> Result<String, Failure> {
    let mut tmp = TmpFile::create(md, namer).map_err(maildir_failure)?;
    tmp.write_all(prefix).map_err(maildir_failure)?;
    let mut scan = HeaderScan::new(&[delivered_to]);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match rustix::io::read(input, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Failure::temporary(format_args!("reading the message: {e}"))),
        };
        scan.feed(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(maildir_failure)?;
    }
    match scan.finish() {
        Verdict::Clean => {}
        // `tmp` is dropped on return, which removes the file.
        Verdict::Loop(_) => {
            return Err(Failure::looping(format_args!(
                "it already has a Delivered-To: {delivered_to} line"
            )))
        }
        Verdict::TooManyHops(n) => {
            return Err(Failure::looping(format_args!(
                "{n} Received/Delivered-To lines"
            )))
        }
    }
    tmp.sync().map_err(maildir_failure)?;
    tmp.commit(namer).map_err(maildir_failure)
}

/// The errno table: which filesystem failures are what. Everything defers;
/// a path that escapes the mail root is a configuration error.
fn maildir_failure(e: MaildirError) -> Failure {
    match e {
        MaildirError::Escape { .. } => Failure::config(e),
        MaildirError::Io { .. } => Failure::temporary(e),
    }
}
