//! `vmailctl resolve`: what vdeliver would do for an address, without
//! doing it.
//!
//! It cannot disagree with delivery about routing because it runs the same
//! code: [`crate::recipient::recipient`] on the address (as
//! `vdeliver --local L --domain D` does), [`crate::deliver::rules`] and
//! [`crate::deliver::lookup`] for the plan, [`crate::outcome`] for the exit
//! code and the line. What delivery then does on disk is mirrored
//! read-only: the mail root must open; each Maildir path must stay beneath
//! it without a symlink (the same checks and the same texts as
//! [`crate::maildir`]); an extension's folder is used when it exists or
//! will be created with a new Maildir; qmail-queue must be executable when
//! there is anything to forward; the open-file limit (this process's,
//! which should be the one qmail-send runs under) must allow a delivery
//! ([`crate::openfiles`]: a fan-out of any size delivers under a limit of
//! [`crate::openfiles::FLOOR`] or more). Nothing is created or written.
//! These looks are taken as the mail user when vmailctl runs as root, so
//! they see what vdeliver will see.
//!
//! A mailbox that is full whatever the message (its message limit
//! reached, or its byte limit: any message has bytes) is refused as
//! vdeliver refuses it, with its exit code and line, on the figures
//! vdeliver would refuse on: a recount, since vdeliver never refuses on
//! `maildirsize` alone. With several full mailboxes the one named is the
//! one vdeliver checks first (in (device, inode) order).
//!
//! What it cannot know is the message: a message that already carries
//! the `Delivered-To:` line vdeliver adds, or 100 hops, bounces as a loop;
//! one that does not fit in a mailbox's remaining room, or is larger than
//! a whole byte limit, is refused (the usage shown is what vdeliver's quota
//! check starts from).

use crate::config::{check_folder_name, Config};
use crate::deliver;
use crate::forward::{self, QueueError};
use crate::maildir::MaildirError;
use crate::maildir::{maildir_components, retry, DIR_FLAGS};
use crate::outcome::{Failure, Outcome};
use crate::plan::{Mailbox, Plan};
use crate::recipient::{self, Overrides, QmailEnv};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::Serialize;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One Maildir the message would be stored in.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The account (`alice@example.com`) or the fallback it stands for.
    pub owner: String,
    /// The account's Maildir, relative to mail.root.
    pub maildir: String,
    /// The folder an extension asked for, if any.
    pub folder: Option<String>,
    /// Where the message goes, as vdeliver reports it: the Maildir, or
    /// its `.Folder/` when that exists (or will, with a new Maildir).
    pub delivers_to: String,
    /// The same, absolute.
    pub path: String,
    /// Whether the Maildir exists already (vdeliver creates it).
    pub exists: bool,
    /// Effective limits; `None` or 0 = unlimited.
    pub quota_bytes: Option<i64>,
    pub quota_messages: Option<i64>,
    /// Current usage of the account's Maildir (`None` when it could not
    /// be read).
    pub usage: Option<super::Usage>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// `local@domain` as vdeliver writes it into `Delivered-To:`; empty
    /// when the address itself is unusable.
    pub recipient: String,
    pub sender: String,
    /// The resolution steps (aliases, extension, catch-all) as the plan
    /// recorded them.
    pub trace: Vec<String>,
    pub mailboxes: Vec<Target>,
    /// Remote addresses handed to qmail-queue in one call.
    pub forwards: Vec<String>,
    /// Why the message would be accepted and dropped (vpopmail `delete`).
    pub discard: Option<String>,
    /// vdeliver's exit code and line (without the newline).
    pub exit: i32,
    pub line: String,
    /// What the dry run cannot see.
    pub notes: Vec<String>,
}

/// Work out what vdeliver would do for mail to `address` from `sender`
/// (default `<>`), with the vpopmail-style `fallback` argument if given.
/// `qmailqueue` is `$QMAILQUEUE`, which overrides the configured path as
/// it does for vdeliver.
pub fn dry_run(
    cfg: &Config,
    address: &str,
    sender: Option<&str>,
    fallback: Option<&str>,
    qmailqueue: Option<&str>,
) -> DryRun {
    let (local, domain) = match address.rsplit_once('@') {
        Some((l, d)) => (l, d),
        None => (address, ""),
    };
    let mut run = DryRun {
        recipient: String::new(),
        sender: sender.unwrap_or("").to_string(),
        trace: Vec::new(),
        mailboxes: Vec::new(),
        forwards: Vec::new(),
        discard: None,
        exit: 0,
        line: String::new(),
        notes: Vec::new(),
    };
    let outcome = match plan_of(cfg, local, domain, sender, fallback, &mut run) {
        Err(f) => Outcome::Failed(f),
        Ok(plan) => {
            run.trace = plan.trace.clone();
            run.forwards = plan.remote.clone();
            match &plan.discard {
                Some(why) => {
                    run.discard = Some(why.clone());
                    Outcome::Discarded(why.clone())
                }
                None => match as_the_mail_user(cfg, &plan, qmailqueue, &mut run) {
                    Ok(stored) => Outcome::Delivered {
                        mailboxes: stored,
                        forwarded: plan.remote.len(),
                        stop: false,
                        notes: Vec::new(),
                    },
                    Err(f) => Outcome::Failed(f),
                },
            }
        }
    };
    if !run.recipient.is_empty() {
        run.notes.push(format!(
            "a message that already has a \"Delivered-To: {}\" line, or 100 or more \
             Received/Delivered-To lines, bounces as a loop (#5.4.6)",
            run.recipient
        ));
    }
    run.exit = outcome.exit().code();
    let line = outcome.line();
    run.line = line.strip_suffix('\n').unwrap_or(&line).to_string();
    run
}

/// Address → recipient → plan, through delivery's own functions.
fn plan_of(
    cfg: &Config,
    local: &str,
    domain: &str,
    sender: Option<&str>,
    fallback: Option<&str>,
    run: &mut DryRun,
) -> Result<Plan, Failure> {
    let over = Overrides {
        local: Some(local),
        domain: Some(domain),
        sender: Some(sender.unwrap_or("")),
    };
    let env = QmailEnv::default();
    let env_failure = |e: recipient::EnvError| {
        if e.is_bad_address() {
            Failure::bad_address(e)
        } else {
            Failure::config(e)
        }
    };
    let rcpt = recipient::recipient(&env, &over).map_err(env_failure)?;
    recipient::sender(&env, &over).map_err(env_failure)?;
    run.recipient = rcpt.delivered_to();
    let rules = deliver::rules(cfg, fallback)?;
    deliver::lookup(cfg, &rcpt, &rules)
}

/// [`on_disk`] as the mail user ([`super::as_mail_user`]), who is the one
/// that will open these paths; as the caller when that cannot be (a
/// `mail.root` owned by root, vmailctl run by a third user).
fn as_the_mail_user(
    cfg: &Config,
    plan: &Plan,
    qmailqueue: Option<&str>,
    run: &mut DryRun,
) -> Result<Vec<String>, Failure> {
    let mut looked = None;
    let _ = super::as_mail_user(&cfg.mail.root, |_| {
        looked = Some(on_disk(cfg, plan, qmailqueue, run));
        Ok(())
    });
    match looked {
        Some(r) => r,
        None => on_disk(cfg, plan, qmailqueue, run),
    }
}

/// Mirror, read-only, what `deliver::store` checks before writing, in the
/// same order. Returns the mailboxes vdeliver would report.
fn on_disk(
    cfg: &Config,
    plan: &Plan,
    qmailqueue: Option<&str>,
    run: &mut DryRun,
) -> Result<Vec<String>, Failure> {
    let queue = forward::program(&cfg.forward.qmail_queue, qmailqueue);
    if plan.mailboxes.is_empty() {
        if plan.remote.is_empty() {
            return Err(Failure::temporary(
                "the plan has neither mailboxes nor forwards",
            ));
        }
        return check_queue(&queue).map(|()| Vec::new());
    }
    // The open-file limit as vdeliver would find it: the same decision on
    // this process's limits (run resolve under the limits qmail gives).
    deliver::open_file_budget(plan, false)?;
    let root = &cfg.mail.root;
    let root_fd = retry(|| rfs::open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()))
        .map_err(|e| {
            Failure::temporary(MaildirError::Io {
                op: "open mail root",
                path: root.display().to_string(),
                errno: e,
            })
        })?;
    let mut first_problem = None;
    let mut stored = Vec::new();
    for mb in &plan.mailboxes {
        let t = target(&root_fd, root, mb, &cfg.mail.folders);
        match t {
            Ok(mut t) => {
                stored.push(t.delivers_to.clone());
                t.usage =
                    super::usage(cfg, &mb.maildir, mb.quota_bytes, mb.quota_messages, false).ok();
                run.mailboxes.push(t);
            }
            Err(f) => {
                run.mailboxes.push(Target {
                    owner: mb.owner.clone(),
                    maildir: mb.maildir.clone(),
                    folder: mb.folder.clone(),
                    delivers_to: mb.maildir.clone(),
                    path: root.join(&mb.maildir).display().to_string(),
                    exists: false,
                    quota_bytes: mb.quota_bytes,
                    quota_messages: mb.quota_messages,
                    usage: None,
                });
                first_problem.get_or_insert(f);
            }
        }
    }
    if let Some(f) = first_problem {
        return Err(f);
    }
    if let Some(owner) = full_mailbox(cfg, root, &run.mailboxes)? {
        return Err(deliver::quota_failure(
            cfg.quota.over_quota,
            crate::quota::Refusal::Over { owner },
        ));
    }
    if !plan.remote.is_empty() {
        check_queue(&queue)?;
    }
    Ok(stored)
}

/// The owner of the first Maildir (in vdeliver's locking order) that no
/// message could enter: as many copies as this delivery puts in it would
/// pass its message limit, or its byte limit is used up. Judged on a
/// recount, as vdeliver judges before refusing.
fn full_mailbox(cfg: &Config, root: &Path, targets: &[Target]) -> Result<Option<String>, Failure> {
    use crate::maildirsize::{Limits, Usage};
    /// One account Maildir: the first target in it, the limits, the
    /// distinct directories this delivery puts a counted copy in.
    struct Root<'t> {
        id: (u64, u64),
        first: &'t Target,
        limits: Limits,
        dirs: Vec<&'t str>,
    }
    let mut roots: Vec<Root<'_>> = Vec::new();
    for t in targets {
        let limits = Limits::from_db(t.quota_bytes, t.quota_messages);
        if limits.is_unlimited() {
            continue;
        }
        let ignored = t
            .delivers_to
            .strip_prefix(t.maildir.as_str())
            .and_then(|d| d.strip_prefix('.'))
            .map(|d| d.trim_end_matches('/'))
            .is_some_and(|f| cfg.quota.ignore.iter().any(|i| i == f));
        #[allow(clippy::unnecessary_cast)]
        let id = match std::fs::symlink_metadata(root.join(&t.maildir)) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                (m.dev() as u64, m.ino() as u64)
            }
            // Not there yet: vdeliver creates it empty.
            Err(_) => continue,
        };
        let i = match roots.iter().position(|r| r.id == id) {
            Some(i) => {
                roots[i].limits = roots[i].limits.stricter(limits);
                i
            }
            None => {
                roots.push(Root {
                    id,
                    first: t,
                    limits,
                    dirs: Vec::new(),
                });
                roots.len() - 1
            }
        };
        if !ignored && !roots[i].dirs.contains(&t.delivers_to.as_str()) {
            roots[i].dirs.push(&t.delivers_to);
        }
    }
    roots.sort_by_key(|r| r.id);
    for r in roots {
        let copies = r.dirs.len() as i64;
        if copies == 0 {
            continue;
        }
        let limits = r.limits;
        let full = |u: Usage| {
            (limits.messages > 0 && u.messages.saturating_add(copies) > limits.messages as i64)
                || (limits.bytes > 0 && u.bytes >= limits.bytes as i64)
        };
        let shown = r.first.usage.as_ref().map(|u| Usage {
            bytes: u.bytes,
            messages: u.messages,
        });
        // The usage shown first (cheap), and a recount before "full".
        if shown.is_some_and(full) {
            let counted =
                super::usage::recount(cfg, &r.first.maildir).map_err(Failure::temporary)?;
            if full(counted) {
                return Ok(Some(r.first.owner.clone()));
            }
        }
    }
    Ok(None)
}

/// qmail-queue must be something vdeliver can run.
fn check_queue(path: &Path) -> Result<(), Failure> {
    let problem = match std::fs::metadata(path) {
        Err(e) => Some(e),
        Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => Some(
            std::io::Error::from_raw_os_error(Errno::ACCESS.raw_os_error()),
        ),
        Ok(_) => None,
    };
    match problem {
        Some(e) => Err(Failure::temporary(QueueError::Spawn(path.to_path_buf(), e))),
        None => Ok(()),
    }
}

fn escape(rel: &str, why: &'static str) -> Failure {
    Failure::config(MaildirError::Escape {
        path: rel.to_string(),
        why,
    })
}

fn io(op: &'static str, rel: &str, errno: Errno) -> Failure {
    Failure::temporary(MaildirError::Io {
        op,
        path: rel.to_string(),
        errno,
    })
}

/// One mailbox, checked as `MailRoot::maildir` and `Maildir::folder` would
/// open it, creating nothing.
fn target(
    root_fd: &OwnedFd,
    root: &Path,
    mb: &Mailbox,
    folders: &[String],
) -> Result<Target, Failure> {
    let rel = mb.maildir.as_str();
    let comps = maildir_components(rel).map_err(|why| escape(rel, why))?;
    let joined = comps.join("/");
    let r = retry(|| {
        rfs::openat2(
            root_fd,
            joined.as_str(),
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    });
    let dir = match r {
        Ok(fd) => Some(fd),
        Err(Errno::NOENT) => walk(root_fd, rel, &comps)?,
        Err(Errno::XDEV) => return Err(escape(rel, "it crosses out of the root")),
        Err(Errno::LOOP) => return Err(escape(rel, "it goes through a symlink")),
        Err(Errno::NOTDIR) => return Err(escape(rel, "a component is not a directory")),
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => {
            walk(root_fd, rel, &comps)?
        }
        Err(e) => return Err(io("open", rel, e)),
    };
    let exists = dir.is_some();
    // Whether vdeliver will create cur/ new/ tmp/ and the default folders.
    let creating = match &dir {
        None => true,
        Some(d) => {
            let sub = |n: &str| retry(|| rfs::openat(d, n, DIR_FLAGS, Mode::empty())).map(|_| ());
            match (sub("tmp"), sub("new")) {
                (Ok(()), Ok(())) => false,
                (Err(Errno::LOOP), _) | (_, Err(Errno::LOOP)) => {
                    return Err(escape(rel, "tmp/ or new/ is a symlink"))
                }
                (Err(Errno::NOENT), _) | (_, Err(Errno::NOENT)) => true,
                (Err(Errno::NOTDIR), _) | (_, Err(Errno::NOTDIR)) => {
                    return Err(escape(rel, "tmp or new is not a directory"))
                }
                (Err(e), _) | (_, Err(e)) => return Err(io("open", rel, e)),
            }
        }
    };
    let dot = mb
        .folder
        .as_deref()
        .filter(|f| check_folder_name(f).is_ok())
        .and_then(|f| folder(dir.as_ref(), f, folders, creating));
    let delivers_to = match &dot {
        Some(d) => format!("{rel}{d}/"),
        None => rel.to_string(),
    };
    Ok(Target {
        owner: mb.owner.clone(),
        maildir: rel.to_string(),
        folder: mb.folder.clone(),
        path: root.join(&delivers_to).display().to_string(),
        delivers_to,
        exists,
        quota_bytes: mb.quota_bytes,
        quota_messages: mb.quota_messages,
        usage: None,
    })
}

/// The walk vdeliver falls back on: `None` when a component is missing
/// (vdeliver creates the rest).
fn walk(root_fd: &OwnedFd, rel: &str, comps: &[&str]) -> Result<Option<OwnedFd>, Failure> {
    let mut cur = retry(|| rfs::openat(root_fd, ".", DIR_FLAGS, Mode::empty()))
        .map_err(|e| io("open", rel, e))?;
    for c in comps {
        cur = match retry(|| rfs::openat(&cur, *c, DIR_FLAGS, Mode::empty())) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(escape(rel, "it goes through a symlink")),
            Err(Errno::NOTDIR) => return Err(escape(rel, "a component is not a directory")),
            Err(e) => return Err(io("open", rel, e)),
        };
    }
    Ok(Some(cur))
}

/// The `.Folder` name vdeliver would deliver into for extension `name`:
/// an existing folder (exact name first, then ignoring ASCII case) that
/// has `tmp/` and `new/`, or one of the default folders when the Maildir
/// is about to be set up.
fn folder(
    dir: Option<&OwnedFd>,
    name: &str,
    defaults: &[String],
    creating: bool,
) -> Option<String> {
    let exact = format!(".{name}");
    let usable = |dot: &str| -> bool {
        if creating && defaults.iter().any(|f| format!(".{f}") == dot) {
            return true;
        }
        let Some(d) = dir else { return false };
        let Ok(fd) = retry(|| rfs::openat(d, dot, DIR_FLAGS, Mode::empty())) else {
            return false;
        };
        ["tmp", "new"]
            .iter()
            .all(|s| retry(|| rfs::openat(&fd, *s, DIR_FLAGS, Mode::empty())).is_ok())
    };
    let exists = |dot: &str| -> bool {
        (creating && defaults.iter().any(|f| format!(".{f}") == dot))
            || dir.is_some_and(|d| retry(|| rfs::openat(d, dot, DIR_FLAGS, Mode::empty())).is_ok())
    };
    // vdeliver: the exact name when it opens, else a case-insensitive match.
    let chosen = if exists(&exact) {
        exact
    } else {
        let mut names: Vec<String> = Vec::new();
        if let Some(d) = dir {
            if let Ok(mut rd) = rfs::Dir::read_from(d.as_fd()) {
                while let Some(Ok(e)) = rd.read() {
                    if let Ok(n) = e.file_name().to_str() {
                        names.push(n.to_string());
                    }
                }
            }
        }
        if creating {
            names.extend(defaults.iter().map(|f| format!(".{f}")));
        }
        names
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(&exact) && n != "." && n != "..")?
    };
    usable(&chosen).then_some(chosen)
}
