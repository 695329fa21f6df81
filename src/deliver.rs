//! One delivery, top to bottom: environment → recipient → plan (from the
//! database's answers) → write → forward → link → outcome.
//!
//! This function always returns an [`Outcome`]; it never exits, prints or
//! panics on bad input. Every error maps to a deferral except the definite
//! answers listed in [`crate::outcome`].
//!
//! Order of the writes (SPEC §4, §5): the message is written and fsynced
//! once, into the first mailbox's `tmp/`, while its header is scanned for
//! loops; it is hard-linked (or, across filesystems, copied and fsynced)
//! into every other mailbox's `tmp/`; then qmail-queue gets the remote
//! copy; only when that succeeded are the `tmp/` files linked into `new/`
//! (each `new/` fsynced). A failure before the links removes every `tmp/`
//! file, so a retry never duplicates a local copy.

use crate::config::Config;
use crate::db;
use crate::deadline;
use crate::forward::{self, Queue, QueueError};
use crate::header::{HeaderScan, Verdict};
use crate::maildir::{MailRoot, Maildir, MaildirError, Namer, TmpFile};
use crate::outcome::{Failure, Outcome};
use crate::plan::{self, Facts, Fallback, Plan, Rules, Step};
use crate::recipient::{self, EnvError, Overrides, QmailEnv};
use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Read size for copying the message: large enough that a typical message
/// is one read, small enough to stay constant memory.
const CHUNK: usize = 128 * 1024;

/// Everything a delivery takes from its caller besides the configuration.
#[derive(Debug, Default, Clone)]
pub struct Request<'a> {
    pub env: QmailEnv<'a>,
    pub over: Overrides<'a>,
    /// vpopmail's `'' FALLBACK` argument.
    pub fallback: Option<&'a str>,
    /// `$QMAILQUEUE`.
    pub qmailqueue: Option<&'a str>,
}

/// Deliver the message on `input`.
pub fn deliver(cfg: &Config, req: &Request<'_>, input: BorrowedFd<'_>) -> Outcome {
    match try_deliver(cfg, req, input) {
        Ok(o) => o,
        Err(f) => Outcome::Failed(f),
    }
}

fn try_deliver(cfg: &Config, req: &Request<'_>, input: BorrowedFd<'_>) -> Result<Outcome, Failure> {
    // Environment → recipient.
    let rcpt = recipient::recipient(&req.env, &req.over, cfg.mail.lowercase_local_part)
        .map_err(env_failure)?;
    let return_path = recipient::return_path(&req.env, &req.over).map_err(env_failure)?;
    let sender = recipient::sender(&req.env, &req.over).map_err(env_failure)?;
    let rules = rules(cfg, req.fallback)?;

    // Recipient → plan.
    let plan = lookup(cfg, &rcpt, &rules)?;
    if let Some(why) = plan.discard {
        return Ok(Outcome::Discarded(why));
    }

    // Plan → the message on disk and in the queue.
    let delivered_to = rcpt.delivered_to();
    let msg = Message {
        return_path: &return_path,
        delivered_to: &delivered_to,
        sender,
        input,
    };
    let qmail_queue = forward::program(&cfg.forward.qmail_queue, req.qmailqueue);
    let stored = store(cfg, &plan, &msg, &qmail_queue)?;
    Ok(Outcome::Delivered {
        mailboxes: stored,
        forwarded: plan.remote.len(),
        stop: false,
    })
}

/// Resolution rules from the configuration and the command line.
pub fn rules(cfg: &Config, fallback: Option<&str>) -> Result<Rules, Failure> {
    Ok(Rules {
        delimiters: cfg.mail.extension_delimiter.clone(),
        lowercase: cfg.mail.lowercase_local_part,
        fallback: fallback
            .map(|f| parse_fallback(f, &cfg.mail.root))
            .transpose()?,
    })
}

/// vpopmail's fallback argument.
fn parse_fallback(arg: &str, root: &Path) -> Result<Fallback, Failure> {
    match arg {
        "bounce-no-mailbox" => Ok(Fallback::Bounce),
        "delete" => Ok(Fallback::Delete),
        a if a.starts_with('/') => {
            let rel = Path::new(a).strip_prefix(root).map_err(|_| {
                Failure::config(format_args!(
                    "fallback Maildir {a} is not beneath mail.root {}",
                    root.display()
                ))
            })?;
            Ok(Fallback::Maildir(format!("{}/", rel.display())))
        }
        a if a.contains('@') => Ok(Fallback::Forward(a.to_string())),
        a => Err(Failure::config(format_args!(
            "unknown fallback {a:?} (bounce-no-mailbox, delete, an address or a Maildir path)"
        ))),
    }
}

/// Ask the database until the plan is complete: one round trip for the
/// recipient, one more per level of aliasing into addresses not yet known.
pub fn lookup(cfg: &Config, rcpt: &recipient::Recipient, rules: &Rules) -> Result<Plan, Failure> {
    let db_cfg = &cfg.database;
    deadline::phase(
        db_cfg.connect_timeout
            + (plan::MAX_DEPTH as u32 + 1) * db_cfg.statement_timeout
            + Duration::from_secs(1),
        "the database lookup",
    );
    let db_err = |e: db::DbError| Failure::temporary(format_args!("database: {e}"));
    let mut client = db::connect(db_cfg, "vdeliver").map_err(db_err)?;
    let mut facts = Facts::default();
    let mut ask = plan::first_question(rcpt, rules);
    for _ in 0..=2 * plan::MAX_DEPTH + 2 {
        db::fetch(&mut client, &ask, &mut facts).map_err(db_err)?;
        match plan::resolve(rcpt, &facts, rules)? {
            Step::Done(p) => {
                deadline::phase_done();
                return Ok(p);
            }
            Step::Need(more) => {
                ask = more
                    .into_iter()
                    .filter(|p| !facts.asked.contains(p))
                    .collect();
                if ask.is_empty() {
                    break;
                }
            }
        }
    }
    Err(Failure::temporary("alias resolution did not converge"))
}

/// The message and what goes in front of it.
struct Message<'a> {
    return_path: &'a str,
    delivered_to: &'a str,
    sender: &'a str,
    input: BorrowedFd<'a>,
}

/// Write, forward, link. Returns the mailboxes written.
fn store(
    cfg: &Config,
    plan: &Plan,
    msg: &Message<'_>,
    qmail_queue: &Path,
) -> Result<Vec<String>, Failure> {
    if plan.mailboxes.is_empty() {
        if plan.remote.is_empty() {
            return Err(Failure::temporary(
                "the plan has neither mailboxes nor forwards",
            ));
        }
        forward_stream(msg, &plan.remote, qmail_queue)?;
        return Ok(Vec::new());
    }
    let root = MailRoot::open(&cfg.mail.root).map_err(maildir_failure)?;
    let mut boxes: Vec<Maildir> = Vec::with_capacity(plan.mailboxes.len());
    for mb in &plan.mailboxes {
        let md = root
            .maildir(&mb.maildir, &cfg.mail.folders)
            .map_err(maildir_failure)?;
        let md = match mb.folder.as_deref().and_then(|f| md.folder(f)) {
            Some(folder) => folder,
            None => md,
        };
        boxes.push(md);
    }
    let mut namer = Namer::new();

    // One copy written, scanned and fsynced; the rest linked to it.
    let first = write_first(&boxes[0], &mut namer, msg)?;
    let mut copies = Vec::with_capacity(boxes.len());
    for md in &boxes[1..] {
        copies.push(first.link_into(md, &mut namer).map_err(maildir_failure)?);
    }

    // The remote copy: the stored file without its Return-Path line.
    if !plan.remote.is_empty() {
        let fd = first.reopen().map_err(maildir_failure)?;
        rustix::fs::seek(
            &fd,
            rustix::fs::SeekFrom::Start(msg.return_path.len() as u64),
        )
        .map_err(|e| Failure::temporary(format_args!("seek: {e}")))?;
        let q = Queue::start(qmail_queue, Some(fd)).map_err(queue_failure)?;
        q.finish(msg.sender, &plan.remote).map_err(queue_failure)?;
    }

    // Visible only now.
    let mut stored = Vec::with_capacity(boxes.len());
    for (tmp, md) in std::iter::once(first).chain(copies).zip(&boxes) {
        tmp.commit(&mut namer).map_err(maildir_failure)?;
        stored.push(md.rel.clone());
    }
    Ok(stored)
}

/// Write the first copy: tmp/, scanning the header on the way, then the
/// loop verdict, then fsync. The file is still only in `tmp/`.
fn write_first<'m>(
    md: &'m Maildir,
    namer: &mut Namer,
    msg: &Message<'_>,
) -> Result<TmpFile<'m>, Failure> {
    let mut tmp = TmpFile::create(md, namer).map_err(maildir_failure)?;
    tmp.write_all(msg.return_path.as_bytes())
        .and_then(|()| tmp.write_all(format!("Delivered-To: {}\n", msg.delivered_to).as_bytes()))
        .map_err(maildir_failure)?;
    let mut scan = HeaderScan::new(&[msg.delivered_to]);
    copy_input(msg.input, &mut scan, |chunk| {
        tmp.write_all(chunk).map_err(maildir_failure)
    })?;
    verdict(&mut scan, msg.delivered_to)?;
    tmp.sync().map_err(maildir_failure)?;
    Ok(tmp)
}

/// No local mailbox: stream the message straight to qmail-queue, with our
/// `Delivered-To:` in front. A loop found on the way abandons the queue
/// before it has an envelope, so nothing is queued.
fn forward_stream(msg: &Message<'_>, remote: &[String], qmail_queue: &Path) -> Result<(), Failure> {
    let mut q = Queue::start(qmail_queue, None).map_err(queue_failure)?;
    let mut scan = HeaderScan::new(&[msg.delivered_to]);
    let streamed = match q.message.as_mut() {
        Some(pipe) => pipe
            .write_all(format!("Delivered-To: {}\n", msg.delivered_to).as_bytes())
            .map_err(|e| Failure::temporary(format_args!("writing to qmail-queue: {e}")))
            .and_then(|()| {
                copy_input(msg.input, &mut scan, |chunk| {
                    pipe.write_all(chunk).map_err(|e| {
                        Failure::temporary(format_args!("writing to qmail-queue: {e}"))
                    })
                })
            }),
        None => Err(Failure::temporary("qmail-queue has no message pipe")),
    };
    let judged = streamed.and_then(|()| verdict(&mut scan, msg.delivered_to));
    match judged {
        Ok(()) => q.finish(msg.sender, remote).map_err(queue_failure),
        Err(f) => {
            q.abandon();
            Err(f)
        }
    }
}

/// Copy stdin to `sink` chunk by chunk, feeding the header scanner.
fn copy_input(
    input: BorrowedFd<'_>,
    scan: &mut HeaderScan,
    mut sink: impl FnMut(&[u8]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match rustix::io::read(input, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Failure::temporary(format_args!("reading the message: {e}"))),
        };
        scan.feed(&buf[..n]);
        sink(&buf[..n])?;
    }
}

fn verdict(scan: &mut HeaderScan, delivered_to: &str) -> Result<(), Failure> {
    match scan.finish() {
        Verdict::Clean => Ok(()),
        Verdict::Loop(_) => Err(Failure::looping(format_args!(
            "it already has a Delivered-To: {delivered_to} line"
        ))),
        Verdict::TooManyHops(n) => Err(Failure::looping(format_args!(
            "{n} Received/Delivered-To lines"
        ))),
    }
}

/// Environment problems defer, except an address no mailbox can have.
fn env_failure(e: EnvError) -> Failure {
    if e.is_bad_address() {
        Failure::bad_address(e)
    } else {
        Failure::config(e)
    }
}

fn queue_failure(e: QueueError) -> Failure {
    match e {
        QueueError::Permanent(_) => Failure::queue_refused(e),
        _ => Failure::temporary(e),
    }
}

/// The errno table: which filesystem failures are what. Everything defers;
/// a path that escapes the mail root is a configuration error.
fn maildir_failure(e: MaildirError) -> Failure {
    match e {
        MaildirError::Escape { .. } => Failure::config(e),
        MaildirError::Io { .. } => Failure::temporary(e),
    }
}
