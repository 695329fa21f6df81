//! One delivery, top to bottom: environment → recipient → plan (from the
//! database's answers) → write → forward → link → outcome.
//!
//! This function always returns an [`Outcome`]; it never exits, prints or
//! panics on bad input. Every error maps to a deferral except the definite
//! answers listed in [`crate::outcome`].
//!
//! Order of the writes: the message is written and fsynced
//! once, into the first mailbox's `tmp/`, while its header is scanned for
//! loops; it is hard-linked (or, across filesystems, copied and fsynced)
//! into every other mailbox's `tmp/`; then qmail-queue gets the remote
//! copy; only when that succeeded are the `tmp/` files linked into `new/`
//! (each `new/` fsynced). A failure before the links removes every `tmp/`
//! file, so a retry never duplicates a local copy.
//!
//! Quota ([`crate::quota`]): once the first copy is in `tmp/` its
//! stored size is known; then every target account's `maildirsize` is
//! locked and checked, before any other copy is made, anything is queued
//! or anything is linked. If any mailbox of a fan-out is over quota the
//! whole delivery fails there (bounce or deferral by `quota.over_quota`;
//! a message larger than a whole limit always bounces), so a message is
//! delivered to all of its mailboxes or to none, and a retry duplicates
//! nothing. The locks are held until the usage is appended after the links,
//! as many as the open-file budget allows ([`crate::openfiles`]: all of
//! them for any ordinary fan-out); a lock beyond it is released after its
//! check and retaken for the append ([`crate::quota::reserve`]).
//!
//! Open files: a delivery holds at most the soft limit, whatever
//! its fan-out. Maildirs are kept open in plan order while the budget lasts
//! and reopened beneath the root for each step after that; a hard limit
//! below [`crate::openfiles::FLOOR`] is a deferral, the same one `vmailctl
//! resolve` predicts ([`open_file_budget`]).

use crate::config::{Config, OverQuota};
use crate::db;
use crate::deadline;
use crate::filter;
use crate::forward::{self, Queue, QueueError};
use crate::header::{HeaderScan, Verdict};
use crate::input::{self, Input};
use crate::maildir::{self, Fds, MailRoot, Maildir, MaildirError, Namer, TmpFile};
use crate::maildirsize::Limits;
use crate::openfiles::{self, Budget};
use crate::outcome::{Failure, Outcome};
use crate::plan::{self, Facts, Fallback, Plan, Rules, Step};
use crate::quota::{self, QuotaError, Refusal};
use crate::recipient::{self, EnvError, Overrides, QmailEnv};
use rustix::fd::AsFd;
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

/// Deliver the message on `input` (checked by [`Input::check`] at start-up,
/// so a regular file's size is the one it had then). The caller blocks
/// SIGXFSZ first ([`crate::privs::block_file_size_signal`]), as the binary
/// does before it starts any thread.
pub fn deliver(cfg: &Config, req: &Request<'_>, input: Input<'_>) -> Outcome {
    match try_deliver(cfg, req, input) {
        Ok(o) => o,
        Err(f) => Outcome::Failed(f),
    }
}

fn try_deliver(cfg: &Config, req: &Request<'_>, input: Input<'_>) -> Result<Outcome, Failure> {
    // Environment → recipient.
    // Local parts are always folded (recipient::fold_local).
    let rcpt = recipient::recipient(&req.env, &req.over).map_err(env_failure)?;
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
    Ok(match stored.discarded {
        Some(why) => Outcome::Discarded(with_notes(why, &stored.notes)),
        None => Outcome::Delivered {
            mailboxes: stored.mailboxes,
            forwarded: stored.forwarded,
            stop: false,
            notes: stored.notes,
        },
    })
}

/// `text` and the notes after it.
fn with_notes(text: String, notes: &[String]) -> String {
    if notes.is_empty() {
        text
    } else {
        format!("{text}; {}", notes.join("; "))
    }
}

/// Resolution rules from the configuration and the command line.
pub fn rules(cfg: &Config, fallback: Option<&str>) -> Result<Rules, Failure> {
    Ok(Rules {
        delimiters: cfg.mail.extension_delimiter.clone(),
        fallback: fallback
            .map(|f| parse_fallback(f, &cfg.mail.root))
            .transpose()?,
    })
}

/// vpopmail's fallback argument.
///
/// A path names either a Maildir or, as vpopmail's `vdelivermail ''
/// /path/to/user-directory` has it, a user directory holding one: a path
/// whose last component is `Maildir` is the Maildir itself; any other path
/// is a user directory and the mail goes into its `Maildir/` (vdelivermail
/// appends `Maildir/` to every path; vdeliver does not append it a second
/// time to a path that already ends in one). Either way the Maildir must
/// lie beneath `mail.root`, and `mail.root` itself is refused as a user
/// directory (it holds every domain, not one user's mail). A `.qmail` file
/// in that directory is not read.
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
            if rel.as_os_str().is_empty() {
                return Err(Failure::config(format_args!(
                    "fallback path {a} is mail.root itself; name a user directory or a Maildir beneath it"
                )));
            }
            let maildir = if rel.file_name().is_some_and(|n| n == "Maildir") {
                format!("{}/", rel.display())
            } else {
                format!("{}/Maildir/", rel.display())
            };
            Ok(Fallback::Maildir(maildir))
        }
        a if a.contains('@') => Ok(Fallback::Forward(a.to_string())),
        a => Err(Failure::config(format_args!(
            "unknown fallback {a:?} (bounce-no-mailbox, delete, an address or a Maildir path)"
        ))),
    }
}

/// Slack the watchdog gives a round trip beyond `statement_timeout`, so
/// that the server's own cancellation (a clearer message) normally comes
/// first.
const ROUND_TRIP_SLACK: Duration = Duration::from_secs(1);

/// Ask the database until the plan is complete: one round trip for the
/// recipient, one more per level of aliasing into addresses not yet known.
///
/// Bounds: connecting, start-up and authentication included, ends within
/// `connect_timeout` (per server named: [`db::Pending::limit`]) + 1 s; then each round
/// trip actually made within `statement_timeout` + 1 s, enforced by the
/// watchdog even when the server is hung or stopped and cannot cancel the
/// statement itself. So a lookup of k round trips ends within
/// `connect_timeout` + 1 s + k × (`statement_timeout` + 1 s). With
/// `statement_timeout = "0s"` the round trips are bounded by the overall
/// deadline only.
pub fn lookup(cfg: &Config, rcpt: &recipient::Recipient, rules: &Rules) -> Result<Plan, Failure> {
    let db_cfg = &cfg.database;
    let db_err = |e: db::DbError| Failure::temporary(format_args!("database: {e}"));
    // Socket, start-up and authentication on this thread, bounded by the
    // watchdog (no thread of its own: cheaper, and deterministic).
    let pending = db::prepare(db_cfg, "vdeliver").map_err(db_err)?;
    deadline::phase(
        pending.limit() + ROUND_TRIP_SLACK,
        "connecting to the database (database.connect_timeout)",
    );
    let mut client = pending.connect_here().map_err(db_err)?;
    deadline::phase_done();
    let per_trip = db_cfg.statement_timeout;
    let plan = resolve_with(&mut client, rcpt, rules, |_, _| {
        if !per_trip.is_zero() {
            deadline::phase(per_trip + ROUND_TRIP_SLACK, "a database round trip");
        }
        Ok(())
    })
    .map_err(db_err)??;
    deadline::phase_done();
    Ok(plan)
}

/// The resolution loop over an open connection: ask, resolve, ask again
/// for what the answer pointed at. The outer error is the database's (a
/// deferral); the inner one is vdeliver's answer for the recipient. Shared
/// with `vmailctl resolve`, so the dry run cannot disagree with delivery.
pub fn resolve_over(
    client: &mut postgres::Client,
    rcpt: &recipient::Recipient,
    rules: &Rules,
) -> Result<Result<Plan, Failure>, db::DbError> {
    resolve_with(client, rcpt, rules, |_, _| Ok(()))
}

/// [`resolve_over`], calling `before_trip` with the connection and the
/// pairs about to be asked before each round trip (the delivery arms its
/// watchdog there; `vmailctl explain` shows the plan of the statement).
pub fn resolve_with(
    client: &mut postgres::Client,
    rcpt: &recipient::Recipient,
    rules: &Rules,
    mut before_trip: impl FnMut(&mut postgres::Client, &[(String, String)]) -> Result<(), db::DbError>,
) -> Result<Result<Plan, Failure>, db::DbError> {
    let mut facts = Facts::default();
    let mut ask = plan::first_question(rcpt, rules);
    for _ in 0..=2 * plan::MAX_DEPTH + 2 {
        before_trip(client, &ask)?;
        db::fetch(client, &ask, &mut facts)?;
        match plan::resolve(rcpt, &facts, rules) {
            Err(f) => return Ok(Err(f)),
            Ok(Step::Done(p)) => return Ok(Ok(p)),
            Ok(Step::Need(more)) => {
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
    Ok(Err(Failure::temporary("alias resolution did not converge")))
}

/// The message and what goes in front of it.
struct Message<'a> {
    /// The `Return-Path:` line: the sender is opaque bytes.
    return_path: &'a [u8],
    delivered_to: &'a str,
    sender: &'a [u8],
    input: Input<'a>,
}

/// What the writes did.
#[derive(Debug, Default)]
struct Stored {
    /// The directories written, relative to the mail root.
    mailboxes: Vec<String>,
    /// Remote addresses queued (forwards and Sieve redirects).
    forwarded: usize,
    /// What Sieve and Junk routing did, for the line.
    notes: Vec<String>,
    /// Nothing stored or queued on purpose (Sieve `discard`): why.
    discarded: Option<String>,
}

/// Write, check quota, forward, link.
fn store(
    cfg: &Config,
    plan: &Plan,
    msg: &Message<'_>,
    qmail_queue: &Path,
) -> Result<Stored, Failure> {
    if plan.mailboxes.is_empty() {
        if plan.remote.is_empty() {
            return Err(Failure::temporary(
                "the plan has neither mailboxes nor forwards",
            ));
        }
        forward_stream(msg, &plan.remote, qmail_queue)?;
        return Ok(Stored {
            forwarded: plan.remote.len(),
            ..Stored::default()
        });
    }
    let budget = open_file_budget(plan, true)?;
    let over = cfg.quota.over_quota;
    let fail = |e: MaildirError| maildir_failure(over, e);
    let root = MailRoot::open(&cfg.mail.root).map_err(fail)?;
    // Each target: the account's Maildir (its quota root) and, when the
    // message goes into an existing folder, that folder. Two plan entries
    // that end in the same directory (an extension naming no folder falls
    // back to the INBOX) get one copy. Maildirs are kept open, in plan
    // order, while the budget lasts; the rest are reopened at each step.
    let n = plan.mailboxes.len();
    let mut mailboxes: Vec<&plan::Mailbox> = Vec::with_capacity(n);
    let mut accounts: Vec<Maildir> = Vec::with_capacity(n);
    let mut folders: Vec<Option<Maildir>> = Vec::with_capacity(n);
    let mut spare = budget.maildir_fds;
    for mb in &plan.mailboxes {
        let cost = openfiles::PER_MAILDIR * (1 + u64::from(mb.folder.is_some()));
        let fds = if spare >= cost {
            spare -= cost;
            Fds::Kept
        } else {
            spare = 0;
            Fds::Reopened
        };
        let md = root
            .open_maildir(&mb.maildir, &cfg.mail.folders, fds)
            .map_err(fail)?;
        let folder = match mb.folder.as_deref() {
            Some(f) => md.folder(f).map_err(fail)?,
            None => None,
        };
        let target = folder.as_ref().unwrap_or(&md).rel.as_str();
        let seen = accounts
            .iter()
            .zip(&folders)
            .any(|(a, f)| f.as_ref().unwrap_or(a).rel == target);
        if !seen {
            mailboxes.push(mb);
            folders.push(folder);
            accounts.push(md);
        }
    }
    let boxes: Vec<&Maildir> = accounts
        .iter()
        .zip(&folders)
        .map(|(md, folder)| folder.as_ref().unwrap_or(md))
        .collect();
    let targets = Targets {
        mailboxes: &mailboxes,
        accounts: &accounts,
        boxes: &boxes,
    };

    // Sieve and Junk routing: which mailboxes have anything to decide.
    // Without a script, that costs one failed open per account.
    let filters = filter_setup(cfg, &root, &mailboxes);
    if filters.iter().any(|f| f.active) {
        return store_filtered(
            cfg,
            plan,
            msg,
            qmail_queue,
            &root,
            &targets,
            filters,
            &budget,
            SpareFds(spare),
        );
    }
    let mut namer = Namer::new();

    // One copy written, scanned and fsynced: now its stored size is known.
    let first = write_first(boxes[0], &mut namer, msg, over, None, 0)?;

    // Quota, before anything else exists or is visible.
    let copies_at: Vec<Copy<'_>> = (0..boxes.len())
        .map(|i| Copy {
            mailbox: i,
            md: boxes[i],
        })
        .collect();
    let reservation = check_quota(cfg, &targets, &copies_at, first.size(), &mut namer, &budget)?;

    // The rest linked to the first copy.
    let mut copies = Vec::with_capacity(boxes.len());
    for md in &boxes[1..] {
        copies.push(first.link_into(md, &mut namer).map_err(fail)?);
    }

    // The remote copy: the stored file without its Return-Path line.
    queue_copy(&first, msg, &plan.remote, qmail_queue, over)?;

    // Visible only now, all at once or not at all; then the usage is
    // charged for what was linked.
    let tmps: Vec<TmpFile<'_>> = std::iter::once(first).chain(copies).collect();
    let committed = maildir::commit_all(tmps, &mut namer);
    let linked = vec![committed.is_ok(); boxes.len()];
    reservation.settle(&linked, warn_policy(cfg), &mut namer);
    committed.map_err(fail)?;
    Ok(Stored {
        mailboxes: boxes.iter().map(|md| md.rel.clone()).collect(),
        forwarded: plan.remote.len(),
        ..Stored::default()
    })
}

/// The plan's mailboxes, opened: the account's Maildir and where a
/// delivery without a script puts the message (`boxes[i]`: the INBOX, or
/// the extension's folder).
struct Targets<'a> {
    mailboxes: &'a [&'a plan::Mailbox],
    accounts: &'a [Maildir],
    boxes: &'a [&'a Maildir],
}

/// One copy: whose (index into the mailboxes) and which directory.
struct Copy<'m> {
    mailbox: usize,
    md: &'m Maildir,
}

fn warn_policy(cfg: &Config) -> quota::WarnPolicy<'_> {
    quota::WarnPolicy {
        percent: cfg.quota.warn_percent,
        template: cfg.quota.warning.as_ref(),
    }
}

/// Queue the stored file (without its Return-Path line) to `remote`, when
/// there is anyone to queue it to.
fn queue_copy(
    first: &TmpFile<'_>,
    msg: &Message<'_>,
    remote: &[String],
    qmail_queue: &Path,
    over: OverQuota,
) -> Result<(), Failure> {
    if remote.is_empty() {
        return Ok(());
    }
    let fd = first.reopen().map_err(|e| maildir_failure(over, e))?;
    rustix::fs::seek(
        &fd,
        rustix::fs::SeekFrom::Start(msg.return_path.len() as u64),
    )
    .map_err(|e| Failure::temporary(format_args!("seek: {e}")))?;
    let q = Queue::start(qmail_queue, Some(fd)).map_err(queue_failure)?;
    q.finish(msg.sender, remote).map_err(queue_failure)
}

/// Per mailbox: its active script, whether Junk routing is on for it, and
/// whether anything is to be decided at all.
struct FilterSetup {
    personal: filter::Personal,
    junk: bool,
    /// Scripts run for this mailbox (its own or the site's).
    scripts: bool,
    active: bool,
}

fn filter_setup(cfg: &Config, root: &MailRoot, mailboxes: &[&plan::Mailbox]) -> Vec<FilterSetup> {
    let globals = !cfg.sieve.before_programs.is_empty() || !cfg.sieve.after_programs.is_empty();
    mailboxes
        .iter()
        .map(|mb| {
            // A fallback Maildir is nobody's account: no script, no Junk.
            let account = !mb.via.is_empty();
            let personal = if cfg.sieve.enabled && account {
                filter::personal(root, &mb.maildir)
            } else {
                filter::Personal::None
            };
            let junk = account && mb.junk.unwrap_or(cfg.junk.enabled);
            let scripts = cfg.sieve.enabled
                && account
                && (globals || !matches!(personal, filter::Personal::None));
            FilterSetup {
                personal,
                junk,
                scripts,
                active: junk || scripts,
            }
        })
        .collect()
}

/// The delivery when a script or Junk routing decides: the first copy is
/// written (and kept in memory for the scripts), each mailbox's scripts
/// decide, then quota, queue (forwards and redirects in one call) and the
/// links in the same order as always; vacation replies and the duplicate
/// memory only once the message is delivered.
///
/// Open files: nothing here holds a descriptor per mailbox beyond the
/// budget. A home is opened for its mailbox's run and closed after it (and
/// reopened for a vacation reply or the duplicate memory after the links);
/// a folder a script opens keeps its directories open only while the
/// budget's `spare` Maildir descriptors last (`SpareFds`), else they are
/// reopened at each step, as the plan's own Maildirs are.
#[allow(clippy::too_many_arguments)]
fn store_filtered(
    cfg: &Config,
    plan: &Plan,
    msg: &Message<'_>,
    qmail_queue: &Path,
    root: &MailRoot,
    t: &Targets<'_>,
    filters: Vec<FilterSetup>,
    budget: &Budget,
    SpareFds(mut spare): SpareFds,
) -> Result<Stored, Failure> {
    use crate::sieve::store::{self as sstore, StoreError, Target};
    let over = cfg.quota.over_quota;
    let fail = |e: MaildirError| maildir_failure(over, e);
    let mut namer = Namer::new();
    // The scripts see the whole message; Junk routing alone needs only the
    // top of the header (the verdict is its topmost instance), so a site
    // with Junk routing and no scripts copies no body into memory.
    let mut raw = Vec::new();
    let keep = if filters.iter().any(|f| f.scripts) {
        filter::MAX_MESSAGE as usize
    } else {
        JUNK_HEADER_BYTES
    };
    let first = write_first(t.boxes[0], &mut namer, msg, over, Some(&mut raw), keep)?;
    let whole = first.size() - msg.return_path.len() as u64 <= filter::MAX_MESSAGE;
    let parsed = crate::sieve::message::Message::parse(&raw);
    // The verdict routes a keep to Junk (where routing is on) and, for
    // every account, holds back vacation replies: a spam's sender is most
    // likely forged, and a reply to it is backscatter.
    let spam_by = filter::spam_verdict_by(&parsed, &cfg.junk);
    let spam = spam_by.is_some();
    let n = t.mailboxes.len();
    let shown = |i: usize, note: &str| {
        if n > 1 {
            format!("{}: {note}", t.mailboxes[i].owner)
        } else {
            note.to_string()
        }
    };
    let mut notes: Vec<String> = Vec::new();

    // Each mailbox's decision; errors logged in its home as they come.
    let now = filter::now();
    let env = crate::sieve::interp::Env {
        envelope_from: String::from_utf8_lossy(msg.sender).into_owned(),
        envelope_to: msg.delivered_to.to_string(),
        extension_delimiter: cfg.mail.extension_delimiter.clone(),
        now,
        local_offset: if filters.iter().any(|f| f.scripts) {
            filter::local_offset(now)
        } else {
            0
        },
        spam: Some(crate::sieve::interp::SpamSettings {
            header: cfg.junk.score_header.clone(),
            max_score: cfg.junk.score_max,
        }),
        max_redirects: cfg.sieve.max_redirects,
        max_actions: cfg.sieve.max_actions,
    };
    // The homes of the mailboxes that ran scripts (relative to the root).
    let mut homes: Vec<Option<String>> = Vec::with_capacity(n);
    let mut decisions: Vec<filter::Decision> = Vec::with_capacity(n);
    let mut redirects_left = cfg.sieve.max_redirects;
    for (i, f) in filters.iter().enumerate() {
        let mb = t.mailboxes[i];
        let home_rel = if f.active {
            sstore::home_of(&mb.maildir)
        } else {
            None
        };
        let home = home_rel.as_deref().and_then(|h| root.open_dir(h).ok());
        // Too large for the scripts: kept as without them (Junk still
        // applies: the header is whole).
        let unfiltered = !f.active || (!whole && f.scripts);
        let junk = (f.junk && spam).then_some(cfg.junk.folder.as_str());
        let mut d = if unfiltered {
            let mut k = filter::Decision::keep(junk);
            if f.active && f.scripts {
                k.notes.push(format!(
                    "larger than {} bytes: kept without running the Sieve scripts",
                    filter::MAX_MESSAGE
                ));
            }
            k
        } else {
            filter::decide(filter::Run {
                cfg,
                inbox: &t.accounts[i],
                home: home.as_ref(),
                personal: &f.personal,
                msg: &parsed,
                env: env.clone(),
                via: &mb.via,
                to_junk: junk.is_some(),
                redirects_left: &mut redirects_left,
                dry: false,
            })
        };
        log_errors(home.as_ref(), &mut d);
        drop(home);
        homes.push(home_rel);
        decisions.push(d);
    }

    // A reject bounces the message only when every mailbox rejected it
    // and nothing was forwarded: a sender told "rejected" must not have
    // been delivered to anyone.
    if plan.remote.is_empty() && decisions.iter().all(|d| d.reject.is_some()) {
        let reason = decisions[0].reject.clone().unwrap_or_default();
        return Err(Failure::sieve_rejected(&reason));
    }
    // Mailboxes whose scripts kept nothing (and did not reject): named in
    // the line when others took the message (else the whole line says
    // "discarded").
    let mut kept_nothing: Vec<usize> = Vec::new();
    for (i, d) in decisions.iter_mut().enumerate() {
        if d.reject.take().is_some() {
            d.copies.clear();
            d.redirects.clear();
            d.notes.push(
                "rejected by sieve; not bounced, since other recipients of the message took it"
                    .into(),
            );
        } else if d.copies.is_empty() && d.redirects.is_empty() {
            kept_nothing.push(i);
        }
    }

    // Where each copy goes: open (or make) the folders.
    enum Where {
        Default(usize),
        Account(usize),
        Opened(usize),
    }
    let mut opened: Vec<Maildir> = Vec::new();
    let mut wants: Vec<(usize, Where, Vec<String>)> = Vec::new();
    for (i, d) in decisions.iter_mut().enumerate() {
        for c in &d.copies {
            let w = match &c.folder {
                None => Where::Default(i),
                Some(name) => {
                    match sstore::open_folder(&t.accounts[i], name, sstore::SEPARATOR, c.create) {
                        Ok(Target::Inbox) => Where::Account(i),
                        Ok(Target::Folder(mut md)) => {
                            if md.fds() == Fds::Kept && spare >= openfiles::PER_MAILDIR {
                                spare -= openfiles::PER_MAILDIR;
                            } else {
                                md.release_fds();
                            }
                            opened.push(md);
                            Where::Opened(opened.len() - 1)
                        }
                        Err(StoreError::Maildir(e)) => return Err(fail(e)),
                        Err(e) => {
                            let line = format!("fileinto {name:?}: {e}; kept in INBOX instead");
                            if let Some(h) = homes[i].as_deref().and_then(|h| root.open_dir(h).ok())
                            {
                                let _ = sstore::log_error_at(
                                    h.as_fd(),
                                    &line,
                                    std::time::SystemTime::now(),
                                );
                            }
                            d.notes.push(line);
                            Where::Account(i)
                        }
                    }
                }
            };
            wants.push((i, w, c.flags.clone()));
        }
    }
    let mut copies_at: Vec<(Copy<'_>, String)> = Vec::new();
    for (i, w, flags) in &wants {
        let md: &Maildir = match w {
            Where::Default(k) => t.boxes[*k],
            Where::Account(k) => &t.accounts[*k],
            Where::Opened(j) => &opened[*j],
        };
        let info = if flags.is_empty() {
            String::new()
        } else {
            let keywords = if flags.iter().any(|f| !f.starts_with('\\')) {
                sstore::Keywords::read(md).unwrap_or_default()
            } else {
                sstore::Keywords::default()
            };
            let info = sstore::maildir_info_with(flags, &keywords);
            if !info.dropped.is_empty() {
                decisions[*i].notes.push(format!(
                    "flags not stored (not in {}'s dovecot-keywords): {}",
                    md.rel,
                    info.dropped.join(" ")
                ));
            }
            info.info
        };
        if !copies_at
            .iter()
            .any(|(c, inf)| c.md.rel == md.rel && *inf == info)
        {
            copies_at.push((Copy { mailbox: *i, md }, info));
        }
    }
    let mut remote: Vec<String> = plan.remote.clone();
    for d in &decisions {
        for r in &d.redirects {
            if !remote.iter().any(|x| x.eq_ignore_ascii_case(r)) {
                remote.push(r.clone());
            }
        }
    }
    for (i, d) in decisions.iter().enumerate() {
        notes.extend(d.notes.iter().map(|x| shown(i, x)));
        notes.extend(
            d.errors
                .iter()
                .map(|e| shown(i, &format!("sieve error (logged; kept): {e}"))),
        );
    }

    if !copies_at.is_empty() {
        // Quota, before anything else exists or is visible.
        let plain: Vec<Copy<'_>> = copies_at
            .iter()
            .map(|(c, _)| Copy {
                mailbox: c.mailbox,
                md: c.md,
            })
            .collect();
        let reservation = check_quota(cfg, t, &plain, first.size(), &mut namer, budget)?;
        // The first copy serves the first target in its own directory;
        // every other is a link to it.
        let own = copies_at
            .iter()
            .position(|(c, _)| std::ptr::eq(c.md, t.boxes[0]));
        let mut tmps: Vec<Option<TmpFile<'_>>> = Vec::with_capacity(copies_at.len());
        for (k, (c, info)) in copies_at.iter().enumerate() {
            if Some(k) == own {
                tmps.push(None);
                continue;
            }
            let mut tf = first.link_into(c.md, &mut namer).map_err(fail)?;
            tf.set_info(info).map_err(fail)?;
            tmps.push(Some(tf));
        }
        queue_copy(&first, msg, &remote, qmail_queue, over)?;
        let mut first = Some(first);
        let mut all: Vec<TmpFile<'_>> = Vec::with_capacity(tmps.len());
        for (k, tf) in tmps.into_iter().enumerate() {
            match tf {
                Some(tf) => all.push(tf),
                None => {
                    if let Some(mut f) = first.take() {
                        f.set_info(&copies_at[k].1).map_err(fail)?;
                        all.push(f);
                    }
                }
            }
        }
        let committed = maildir::commit_all(all, &mut namer);
        // `first`, if it served no target, is removed from tmp/ here.
        drop(first);
        let linked = vec![committed.is_ok(); copies_at.len()];
        reservation.settle(&linked, warn_policy(cfg), &mut namer);
        committed.map_err(fail)?;
    } else {
        queue_copy(&first, msg, &remote, qmail_queue, over)?;
        drop(first);
    }

    // Delivered: the replies and the memory.
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let headers = header_block(&raw);
    for (i, d) in decisions.iter().enumerate() {
        if d.vacation.is_none() && d.duplicates.is_empty() {
            continue;
        }
        let Some(home) = homes[i].as_deref().and_then(|h| root.open_dir(h).ok()) else {
            if d.vacation.is_some() {
                notes.push(shown(
                    i,
                    "vacation skipped: the account has no home directory",
                ));
            }
            continue;
        };
        if let (Some(_), Some(by)) = (&d.vacation, &spam_by) {
            let skipped = crate::sieve::vacation::Response::Skipped(
                crate::sieve::vacation::Reason::Spam(by.clone()),
            );
            notes.push(shown(i, &skipped.to_string()));
        } else if let Some(v) = &d.vacation {
            let cx = crate::sieve::vacation::Context {
                msg_headers: headers,
                envelope_sender: msg.sender,
                recipient: msg.delivered_to,
                account: &t.mailboxes[i].owner,
                aliases: &t.mailboxes[i].via,
                home: home.as_fd(),
                memory_file: crate::sieve::vacation::DEFAULT_MEMORY_FILE,
                qmail_queue,
                hostname: &hostname,
                now,
                limits: crate::sieve::vacation::Limits {
                    default: cfg.sieve.vacation_default_period.as_secs(),
                    min: cfg.sieve.vacation_min_period.as_secs(),
                    max: cfg.sieve.vacation_max_period.as_secs(),
                    lock_timeout: crate::sieve::vacation::Limits::default().lock_timeout,
                },
            };
            notes.push(shown(i, &crate::sieve::vacation::respond_line(v, &cx)));
        }
        if let Some(note) = filter::record_duplicates(
            &home,
            &d.duplicates,
            cfg.quota.lock_timeout.min(Duration::from_secs(30)),
        ) {
            notes.push(shown(i, &note));
        }
    }
    let discarded = copies_at.is_empty() && remote.is_empty();
    Ok(Stored {
        mailboxes: copies_at
            .iter()
            .map(|(c, info)| {
                if info.is_empty() {
                    c.md.rel.clone()
                } else {
                    format!("{} (flags {})", c.md.rel, &info[3..])
                }
            })
            .collect(),
        forwarded: remote.len(),
        notes: {
            if !discarded && n > 1 {
                notes.extend(kept_nothing.iter().map(|&i| shown(i, "discarded by sieve")));
            }
            notes
        },
        discarded: discarded.then(|| "by sieve".to_string()),
    })
}

/// What Junk routing alone keeps of a message in memory: the top of its
/// header, where a scanner puts its verdict.
const JUNK_HEADER_BYTES: usize = 64 << 10;

/// The Maildir descriptors of the budget not spent on the plan's own
/// Maildirs: for folders a script opens.
struct SpareFds(u64);

/// Append each error of a decision to the home's `.dovecot.sieve.log`; an
/// error that cannot be logged says so in the line.
fn log_errors(home: Option<&rustix::fd::OwnedFd>, d: &mut filter::Decision) {
    use rustix::fd::AsFd;
    let Some(home) = home else {
        return;
    };
    for e in &d.errors {
        if let Err(why) =
            crate::sieve::store::log_error_at(home.as_fd(), e, std::time::SystemTime::now())
        {
            d.notes
                .push(format!("the Sieve log could not be written: {why}"));
        }
    }
}

/// The header block of `raw` (up to and including the blank line).
fn header_block(raw: &[u8]) -> &[u8] {
    let end = memchr::memmem::find(raw, b"\n\n")
        .map(|i| i + 2)
        .or_else(|| memchr::memmem::find(raw, b"\r\n\r\n").map(|i| i + 4))
        .unwrap_or(raw.len());
    &raw[..end]
}

/// The open-file budget of a delivery to the plan's mailboxes
/// ([`crate::openfiles`]); with `apply`, the soft limit is raised as it
/// says. Shared with `vmailctl resolve`, which predicts without applying:
/// a limit too low for any delivery is the same 111 and the same line.
pub fn open_file_budget(plan: &Plan, apply: bool) -> Result<Budget, Failure> {
    let n = plan.mailboxes.len();
    let folders = plan.mailboxes.iter().filter(|m| m.folder.is_some()).count();
    let budget = if apply {
        openfiles::apply(n, folders)
    } else {
        openfiles::predict(n, folders)
    };
    budget.map_err(Failure::temporary)
}

/// Lock and check every target account's `maildirsize` for a message of
/// `size` bytes, one root per copy. A copy into a folder named in
/// `quota.ignore` does not count (nor is it limited).
fn check_quota<'m>(
    cfg: &Config,
    t: &Targets<'m>,
    copies: &[Copy<'_>],
    size: u64,
    namer: &mut Namer,
    budget: &Budget,
) -> Result<quota::Reservation<'m>, Failure> {
    let ignore = &cfg.quota.ignore;
    let roots = copies
        .iter()
        .map(|c| {
            let mb = t.mailboxes[c.mailbox];
            let md = &t.accounts[c.mailbox];
            let ignored =
                c.md.rel
                    .strip_prefix(md.rel.as_str())
                    .and_then(|dir| dir.strip_prefix('.'))
                    .map(|dir| dir.trim_end_matches('/'))
                    .is_some_and(|name| ignore.iter().any(|i| i == name));
            quota::Root {
                md,
                owner: mb.owner.clone(),
                limits: Limits::from_db(mb.quota_bytes, mb.quota_messages),
                copies: u64::from(!ignored),
            }
        })
        .collect();
    deadline::phase(cfg.quota.lock_timeout, "the quota check");
    let holding = quota::Holding {
        locks: budget.locks,
        relock_wait: cfg.quota.lock_timeout,
    };
    let r = quota::reserve(roots, size, ignore, namer, holding);
    deadline::phase_done();
    r.map_err(|r| quota_failure(cfg.quota.over_quota, r))
}

/// Write the first copy: tmp/, scanning the header on the way, then the
/// loop verdict, then fsync. The file is still only in `tmp/`.
/// With `keep`, what follows the Return-Path line is also collected there,
/// up to `max` bytes (for the Sieve scripts and the Junk verdict).
fn write_first<'m>(
    md: &'m Maildir,
    namer: &mut Namer,
    msg: &Message<'_>,
    over: OverQuota,
    mut keep: Option<&mut Vec<u8>>,
    max: usize,
) -> Result<TmpFile<'m>, Failure> {
    let fail = |e: MaildirError| maildir_failure(over, e);
    let mut tmp = TmpFile::create(md, namer).map_err(fail)?;
    let dt = format!("Delivered-To: {}\n", msg.delivered_to);
    tmp.write_all(msg.return_path)
        .and_then(|()| tmp.write_all(dt.as_bytes()))
        .map_err(fail)?;
    if let Some(k) = keep.as_deref_mut() {
        k.extend_from_slice(dt.as_bytes());
    }
    let mut scan = HeaderScan::new(&[msg.delivered_to]);
    copy_input(msg.input, &mut scan, |chunk| {
        if let Some(k) = keep.as_deref_mut() {
            let room = max.saturating_sub(k.len()).min(chunk.len());
            k.extend_from_slice(&chunk[..room]);
        }
        tmp.write_all(chunk).map_err(fail)
    })?;
    verdict(&mut scan, msg.delivered_to)?;
    tmp.sync().map_err(fail)?;
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

/// Copy stdin to `sink` chunk by chunk, feeding the header scanner. A
/// regular file must hold exactly the bytes it had at start
/// ([`input::copy`]).
fn copy_input(
    input: Input<'_>,
    scan: &mut HeaderScan,
    mut sink: impl FnMut(&[u8]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; CHUNK];
    input::copy(input, &mut buf, |chunk| {
        scan.feed(chunk);
        sink(chunk)
    })
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

/// The errno table: which filesystem failures are what. The filesystem's
/// own quota (EDQUOT) and a file size limit (EFBIG) are over quota, under
/// the site's policy; everything else defers, ENOSPC included (the disk
/// is the site's to fix, not the recipient's), and EMFILE/ENFILE with a
/// word on which limit ran out; a path that escapes the mail root is a
/// configuration error.
fn maildir_failure(over: OverQuota, e: MaildirError) -> Failure {
    match e.errno() {
        _ if matches!(e, MaildirError::Escape { .. }) => Failure::config(e),
        Some(errno) => errno_failure(over, errno, e),
        None => Failure::temporary(e),
    }
}

fn errno_failure(over: OverQuota, errno: Errno, e: impl std::fmt::Display) -> Failure {
    let defer = over == OverQuota::Defer;
    match errno {
        Errno::DQUOT => {
            Failure::over_quota(format_args!("the disk quota is exhausted ({e})"), defer)
        }
        Errno::FBIG => Failure::over_quota(
            format_args!("the message is larger than the file size limit ({e})"),
            defer,
        ),
        // Never the recipient's fault, and never a bounce.
        Errno::MFILE => Failure::temporary(format_args!(
            "{e}; vdeliver ran out of open files: raise the open-file limit (ulimit -n)"
        )),
        Errno::NFILE => {
            Failure::temporary(format_args!("{e}; the system's open-file table is full"))
        }
        _ => Failure::temporary(e),
    }
}

/// The quota's answer as an outcome.
pub(crate) fn quota_failure(over: OverQuota, r: Refusal) -> Failure {
    match r {
        Refusal::TooLarge { owner, size, limit } => Failure::over_quota(
            format_args!(
                "the message ({size} bytes) is larger than the whole quota of {owner} ({limit} bytes)"
            ),
            false,
        ),
        Refusal::Over { owner } => Failure::over_quota(
            format_args!("the mailbox of {owner} is full"),
            over == OverQuota::Defer,
        ),
        Refusal::Failed(e) => match e.errno() {
            Some(errno) => errno_failure(over, errno, QuotaNote(&e)),
            None => Failure::temporary(QuotaNote(&e)),
        },
    }
}

/// A quota bookkeeping error, named as such in the outcome line.
struct QuotaNote<'a>(&'a QuotaError);

impl std::fmt::Display for QuotaNote<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quota: {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_table() {
        let io = |errno| MaildirError::Io {
            op: "write",
            path: "example.com/alice/Maildir/tmp/x".into(),
            errno,
        };
        // (errno, policy, want exit, want status)
        let cases = [
            (Errno::DQUOT, OverQuota::Bounce, 100, "5.2.2"),
            (Errno::DQUOT, OverQuota::Defer, 111, "4.2.2"),
            (Errno::FBIG, OverQuota::Bounce, 100, "5.2.2"),
            (Errno::FBIG, OverQuota::Defer, 111, "4.2.2"),
            (Errno::NOSPC, OverQuota::Bounce, 111, "4.3.0"),
            (Errno::IO, OverQuota::Bounce, 111, "4.3.0"),
            (Errno::ACCESS, OverQuota::Bounce, 111, "4.3.0"),
            (Errno::MFILE, OverQuota::Bounce, 111, "4.3.0"),
            (Errno::NFILE, OverQuota::Bounce, 111, "4.3.0"),
        ];
        for (errno, over, want_exit, want_status) in cases {
            let f = maildir_failure(over, io(errno));
            assert_eq!(
                (f.exit.code(), f.status),
                (want_exit, want_status),
                "{errno:?} {over:?}"
            );
            let q = quota_failure(
                over,
                Refusal::Failed(QuotaError::Io {
                    op: "write",
                    path: "m".into(),
                    errno,
                }),
            );
            assert_eq!(
                (q.exit.code(), q.status),
                (want_exit, want_status),
                "{errno:?} {over:?}"
            );
        }
        let esc = MaildirError::Escape {
            path: "../x".into(),
            why: "it contains '..'",
        };
        assert_eq!(maildir_failure(OverQuota::Bounce, esc).status, "4.3.5");
    }

    #[test]
    fn fallback_paths() {
        let root = Path::new("/var/vmail");
        let maildir = |a: &str| match parse_fallback(a, root) {
            Ok(Fallback::Maildir(m)) => Ok(m),
            Ok(other) => panic!("{a}: {other:?}"),
            Err(f) => Err((f.exit.code(), f.status)),
        };
        // (argument, want Maildir relative to the root)
        for (arg, want) in [
            (
                "/var/vmail/example.com/postmaster",
                "example.com/postmaster/Maildir/",
            ),
            (
                "/var/vmail/example.com/postmaster/",
                "example.com/postmaster/Maildir/",
            ),
            ("/var/vmail/catch/Maildir/", "catch/Maildir/"),
            ("/var/vmail/catch/Maildir", "catch/Maildir/"),
            ("/var/vmail/catch/Maildir/.", "catch/Maildir/"),
            ("/var/vmail/Maildir/", "Maildir/"),
        ] {
            assert_eq!(maildir(arg), Ok(want.to_string()), "{arg}");
        }
        for arg in [
            "/var/vmail",
            "/var/vmail/",
            "/var/vmail/.",
            "/var/vmail//",
            "/tmp/Maildir/",
        ] {
            assert_eq!(maildir(arg), Err((111, "4.3.5")), "{arg}");
        }
    }

    #[test]
    fn quota_refusals() {
        let over = || Refusal::Over {
            owner: "alice@example.com".into(),
        };
        let f = quota_failure(OverQuota::Bounce, over());
        assert_eq!((f.exit.code(), f.status), (100, "5.2.2"));
        assert_eq!(f.text, "Sorry, the mailbox of alice@example.com is full.");
        let f = quota_failure(OverQuota::Defer, over());
        assert_eq!((f.exit.code(), f.status), (111, "4.2.2"));
        // Larger than the whole limit: permanent whatever the policy.
        let big = Refusal::TooLarge {
            owner: "alice@example.com".into(),
            size: 2000,
            limit: 1000,
        };
        let f = quota_failure(OverQuota::Defer, big);
        assert_eq!((f.exit.code(), f.status), (100, "5.2.2"));
        assert!(
            f.text.contains("2000 bytes") && f.text.contains("1000 bytes"),
            "{}",
            f.text
        );
        let f = quota_failure(
            OverQuota::Bounce,
            Refusal::Failed(QuotaError::NotAFile { path: "m".into() }),
        );
        assert_eq!((f.exit.code(), f.status), (111, "4.3.0"));
    }
}
