//! Sieve and Junk routing at delivery: what each mailbox's scripts decide
//! about the message, with the I/O the interpreter asks for (folders that
//! exist, included scripts, the duplicate memory). [`crate::deliver`]
//! carries the decision out in its one write → quota → queue → link order.
//!
//! # Which scripts run, in what order
//!
//! For each account mailbox of the plan: the `[sieve] before` scripts, the
//! account's active script (`<home>/.dovecot.sieve`, see
//! [`crate::sieve::store`]), then the `[sieve] after` scripts. Each runs
//! only while the implicit keep is still in effect after the ones before
//! it (Pigeonhole's rule for `sieve_before`/`sieve_after`); their actions
//! add up, and at most one vacation reply is made (a later one is dropped
//! and noted). The redirect limit (`sieve.max_redirects`) is for the whole
//! delivery, every mailbox and script together.
//!
//! # Errors never lose mail
//!
//! A script that cannot be read, does not compile or fails while running
//! (a limit, a bad folder name, a refused redirect) cancels every action
//! of that mailbox's run and keeps the message where a delivery without a
//! script puts it; the error is appended to `<home>/.dovecot.sieve.log`
//! (Pigeonhole's place, where Roundcube and users look) and named in the
//! output line. A `fileinto` whose folder is missing (without `:create`
//! or `sieve.create_folders`) or unusable keeps that copy in the INBOX and
//! logs it, as Pigeonhole does; the rest of the run stands.
//!
//! # Keep, INBOX and the address extension
//!
//! `keep` and the implicit keep store where the message would go without a
//! script: the INBOX, or the folder an address extension names
//! (`alice-lists@` → `.lists`) when it exists. `fileinto "INBOX"` is the
//! INBOX itself. With Junk routing on for the account and the spam verdict
//! given ([`spam_verdict`]), a keep goes to `junk.folder` instead (made
//! when missing); a `fileinto` is the user's explicit choice and wins.
//!
//! # Redirects that would loop
//!
//! A redirect to an address that led the message to this mailbox (the
//! recipient, an alias walked, the account itself: [`crate::plan::Mailbox::via`])
//! would come straight back; it is refused as a run-time error (the
//! message is kept, the error logged). Longer loops through other systems
//! end at the `Delivered-To:` check of the next delivery, as every
//! forward's do.

use crate::config::{Config, Junk};
use crate::maildir::{MailRoot, Maildir};
use crate::sieve::action::{Action, VacationReply};
use crate::sieve::interp::{self, Env, Host};
use crate::sieve::message::Message;
use crate::sieve::store;
use crate::sieve::{Location, Program};
use rustix::fd::{AsFd, OwnedFd};
use std::collections::HashMap;
use std::sync::Arc;

/// The file in the home that remembers `duplicate` ids (RFC 7352).
pub const DUPLICATE_FILE: &str = ".vdeliver.duplicate";
/// The `duplicate` period when the script gives none.
pub const DUPLICATE_PERIOD: u64 = 7 * 86_400;
/// The handle under which duplicate ids are kept in their memory file.
const DUPLICATE_HANDLE: &str = "duplicate";
/// Largest message the scripts see whole. A larger one is kept where a
/// delivery without a script puts it (noted), so that a huge message
/// never has to fit in memory.
pub const MAX_MESSAGE: u64 = 64 << 20;

/// An account's active script as found before the message is written.
#[derive(Debug, Clone)]
pub enum Personal {
    /// No home (a layout other than `<home>/Maildir/`) or no script.
    None,
    Script(Vec<u8>),
    /// The script could not be read: kept, logged.
    Unreadable(String),
}

/// Look for the active script of the account whose Maildir is
/// `maildir_rel`: one failed `openat2` when there is none.
pub fn personal(root: &MailRoot, maildir_rel: &str) -> Personal {
    let Some(home) = store::home_of(maildir_rel) else {
        return Personal::None;
    };
    match store::active_script(root, &home) {
        Ok(None) => Personal::None,
        Ok(Some(s)) => Personal::Script(s),
        Err(e) => Personal::Unreadable(e),
    }
}

/// Whether the topmost instance of any verdict header says spam: its value
/// begins with the configured word (no case), the word ending at a blank,
/// `,` or `;`. Only the topmost counts: a sender may add its own copy of
/// the header further down, the scanner's is added on top.
pub fn spam_verdict(msg: &Message, junk: &Junk) -> bool {
    spam_verdict_by(msg, junk).is_some()
}

/// [`spam_verdict`], naming the verdict that said spam (`X-Spam-Flag:
/// YES`, as configured) for the notes.
pub fn spam_verdict_by(msg: &Message, junk: &Junk) -> Option<String> {
    junk.verdicts()
        .find(|&(name, word)| {
            msg.header_raw(name).next().is_some_and(|v| {
                let v = v.trim_start();
                let first = v
                    .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
                    .next()
                    .unwrap_or("");
                first.eq_ignore_ascii_case(word)
            })
        })
        .map(|(name, word)| format!("{name}: {word}"))
}

/// One copy a mailbox's decision stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The folder as the script named it; `None`: where a delivery without
    /// a script puts it (INBOX or the extension's folder).
    pub folder: Option<String>,
    pub flags: Vec<String>,
    /// Make the folder when missing.
    pub create: bool,
    /// The implicit keep (for `vmailctl resolve`'s listing).
    pub implicit: bool,
}

/// What one mailbox's scripts decided.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub copies: Vec<Copy>,
    pub redirects: Vec<String>,
    /// `reject`/`ereject` with the reason (the envelope sender was not
    /// empty).
    pub reject: Option<String>,
    pub vacation: Option<VacationReply>,
    /// Errors to log in the home and name in the line.
    pub errors: Vec<String>,
    /// Other things the line says (a rejected bounce discarded, a second
    /// vacation dropped).
    pub notes: Vec<String>,
    /// `duplicate` ids to remember once the delivery succeeded.
    pub duplicates: Vec<DuplicateId>,
    /// Whether any script ran (for the line).
    pub ran: bool,
}

/// A `duplicate` id to record: the id, its period, `:last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateId {
    pub id: String,
    pub period: u64,
    pub last: bool,
}

impl Decision {
    /// The decision without a script: one copy where it always went, or
    /// into `junk` (the Junk folder, made when missing) when given.
    pub fn keep(junk: Option<&str>) -> Decision {
        Decision {
            copies: vec![keep_copy(junk, Vec::new(), true)],
            ..Decision::default()
        }
    }
}

/// A keep (implicit or explicit): where a delivery without a script puts
/// the message, or the Junk folder.
fn keep_copy(junk: Option<&str>, flags: Vec<String>, implicit: bool) -> Copy {
    Copy {
        folder: junk.map(str::to_string),
        flags,
        create: junk.is_some(),
        implicit,
    }
}

/// Everything a mailbox's run needs.
pub struct Run<'a> {
    pub cfg: &'a Config,
    /// The account's Maildir (its INBOX).
    pub inbox: &'a Maildir,
    /// The home, opened beneath the mail root; `None`: no home (then no
    /// personal script, include, log or memory).
    pub home: Option<&'a OwnedFd>,
    pub personal: &'a Personal,
    pub msg: &'a Message,
    pub env: Env,
    /// The addresses that would loop if redirected to (folded).
    pub via: &'a [String],
    /// Junk routing is on for this account and the verdict said spam.
    pub to_junk: bool,
    /// Redirects left for the whole delivery.
    pub redirects_left: &'a mut usize,
    /// A dry run (`vmailctl resolve --message`): the duplicate memory is
    /// neither read nor locked ("not seen").
    pub dry: bool,
}

/// Run the scripts for one mailbox and decide.
pub fn decide(r: Run<'_>) -> Decision {
    let junk = r.to_junk.then_some(r.cfg.junk.folder.as_str());
    let mut d = Decision::default();
    let mut host = DeliveryHost {
        inbox: r.inbox,
        home: r.home,
        global_dir: r.cfg.sieve.global_dir.as_deref(),
        seen: HashMap::new(),
        asked: Vec::new(),
        notes: Vec::new(),
        lock_timeout: r
            .cfg
            .quota
            .lock_timeout
            .min(std::time::Duration::from_secs(30)),
        dry: r.dry,
    };
    let mut programs: Vec<(String, Arc<Program>)> = Vec::new();
    if r.cfg.sieve.enabled {
        for g in &r.cfg.sieve.before_programs {
            programs.push((g.path.display().to_string(), g.program.clone()));
        }
        match r.personal {
            Personal::None => {}
            Personal::Script(bytes) => match crate::sieve::compile(bytes) {
                Ok(p) => programs.push((store::SCRIPT_LINK.to_string(), Arc::new(p))),
                Err(e) => {
                    d.errors.push(format!("{}: {e}", store::SCRIPT_LINK));
                }
            },
            Personal::Unreadable(e) => d.errors.push(e.clone()),
        }
        for g in &r.cfg.sieve.after_programs {
            programs.push((g.path.display().to_string(), g.program.clone()));
        }
    }
    let mut actions: Vec<Action> = Vec::new();
    let mut keep_in_effect = true;
    // The implicit keep of the last run (its flags: imap4flags' internal
    // variable at the end of that run).
    let mut implicit: Option<Action> = None;
    if d.errors.is_empty() {
        for (name, program) in &programs {
            if !keep_in_effect {
                break;
            }
            let mut env = r.env.clone();
            env.max_redirects = *r.redirects_left;
            d.ran = true;
            let out = interp::run(program, r.msg, &env, &mut host);
            if let Some(e) = out.error {
                d.errors.push(format!("{name}: {e}"));
                break;
            }
            keep_in_effect = false;
            for a in out.actions {
                match a {
                    Action::Store { implicit: true, .. } => {
                        keep_in_effect = true;
                        implicit = Some(a);
                    }
                    Action::Redirect { ref address } => {
                        *r.redirects_left = r.redirects_left.saturating_sub(1);
                        let folded = fold_address(address);
                        if r.via.iter().any(|v| v.eq_ignore_ascii_case(&folded)) {
                            d.errors.push(format!(
                                "{name}: redirect to {address} refused: the message came here through that address, so it would loop"
                            ));
                            break;
                        }
                        actions.push(a);
                    }
                    Action::Vacation(_)
                        if actions.iter().any(|x| matches!(x, Action::Vacation(_))) =>
                    {
                        d.notes
                            .push(format!("{name}: a second vacation reply was dropped"));
                    }
                    a => actions.push(a),
                }
            }
            if !d.errors.is_empty() {
                break;
            }
        }
    }
    if !d.errors.is_empty() {
        // Nothing of the run stands: the message is kept.
        let mut k = Decision::keep(junk);
        k.errors = std::mem::take(&mut d.errors);
        k.notes = std::mem::take(&mut d.notes);
        k.ran = d.ran;
        return k;
    }
    d.duplicates = host.asked;
    d.notes.extend(host.notes);
    if keep_in_effect {
        actions.push(implicit.unwrap_or(Action::Store {
            folder: "INBOX".into(),
            flags: Vec::new(),
            create: false,
            implicit: true,
            keep: false,
        }));
    }
    for a in actions {
        match a {
            Action::Store {
                folder,
                flags,
                create,
                implicit,
                keep,
            } => {
                let is_keep = implicit || keep;
                let copy = if is_keep {
                    keep_copy(junk, flags, implicit)
                } else {
                    Copy {
                        folder: Some(folder),
                        flags,
                        create: create || r.cfg.sieve.create_folders,
                        implicit,
                    }
                };
                if !d.copies.contains(&copy) {
                    d.copies.push(copy);
                }
            }
            Action::Redirect { address } => {
                if !d.redirects.iter().any(|x| x.eq_ignore_ascii_case(&address)) {
                    d.redirects.push(address);
                }
            }
            Action::Reject { reason } => {
                if r.env.envelope_from.is_empty() {
                    d.notes.push(
                        "rejected by sieve, but the sender is empty (a bounce): discarded instead"
                            .into(),
                    );
                } else {
                    d.reject = Some(reason);
                }
            }
            Action::Vacation(v) => d.vacation = Some(v),
        }
    }
    d
}

/// `local@domain` with the local part ASCII-folded and the domain
/// lowercased, as the plan's addresses are.
fn fold_address(a: &str) -> String {
    match a.rsplit_once('@') {
        Some((l, dom)) => format!(
            "{}@{}",
            crate::recipient::fold_local(l),
            dom.to_ascii_lowercase()
        ),
        None => a.to_ascii_lowercase(),
    }
}

/// The interpreter's view of the mailbox: folders, included scripts, the
/// duplicate memory (read now, written after the delivery succeeded).
struct DeliveryHost<'a> {
    inbox: &'a Maildir,
    home: Option<&'a OwnedFd>,
    global_dir: Option<&'a std::path::Path>,
    /// Ids asked about in this run → the answer given (a second ask in
    /// the same run gets the same answer).
    seen: HashMap<String, bool>,
    asked: Vec<DuplicateId>,
    notes: Vec<String>,
    lock_timeout: std::time::Duration,
    dry: bool,
}

impl Host for DeliveryHost<'_> {
    fn mailbox_exists(&mut self, name: &str) -> bool {
        store::folder_exists(self.inbox, name, store::SEPARATOR).unwrap_or(false)
    }

    fn duplicate(&mut self, id: &str, seconds: Option<u64>, last: bool) -> bool {
        if let Some(&seen) = self.seen.get(id) {
            return seen;
        }
        let period = seconds.unwrap_or(DUPLICATE_PERIOD);
        let seen = match self.home {
            _ if self.dry => false,
            None => false,
            Some(home) => {
                let now = now();
                let mut memory = crate::sieve::vacation::Memory::new(home.as_fd(), DUPLICATE_FILE)
                    .lock_timeout(self.lock_timeout);
                let seen = match memory.lock() {
                    Ok(held) => !held.due(id, DUPLICATE_HANDLE, now),
                    Err(e) => {
                        self.notes.push(format!("duplicate memory: {e}"));
                        false
                    }
                };
                self.notes.extend(memory.notes().iter().cloned());
                seen
            }
        };
        self.seen.insert(id.to_string(), seen);
        if !seen || last {
            self.asked.push(DuplicateId {
                id: id.to_string(),
                period,
                last,
            });
        }
        seen
    }

    fn include(&mut self, location: Location, name: &str) -> Result<Option<Program>, String> {
        let bytes = match location {
            Location::Personal => match self.home {
                None => return Ok(None),
                Some(home) => store::personal_script(home.as_fd(), name)?,
            },
            Location::Global => match self.global_dir {
                None => return Ok(None),
                Some(dir) => {
                    let path = dir.join(format!("{name}.sieve"));
                    match std::fs::read(&path) {
                        Ok(b) if b.len() <= crate::sieve::MAX_SCRIPT_SIZE => Some(b),
                        Ok(_) => return Err(format!("{}: too large", path.display())),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => return Err(format!("{}: {e}", path.display())),
                    }
                }
            },
        };
        match bytes {
            None => Ok(None),
            Some(b) => crate::sieve::compile(&b)
                .map(Some)
                .map_err(|e| format!("include {name:?}: {e}")),
        }
    }
}

/// After the delivery succeeded: remember the `duplicate` ids (RFC 7352
/// section 3: only a message actually delivered counts). A failure is a
/// note; the message is delivered.
pub fn record_duplicates(
    home: &OwnedFd,
    ids: &[DuplicateId],
    wait: std::time::Duration,
) -> Option<String> {
    if ids.is_empty() {
        return None;
    }
    let now = now();
    let mut memory =
        crate::sieve::vacation::Memory::new(home.as_fd(), DUPLICATE_FILE).lock_timeout(wait);
    let mut held = match memory.lock() {
        Ok(h) => h,
        Err(e) => return Some(format!("duplicate memory not updated: {e}")),
    };
    for d in ids {
        if !d.last && !held.due(&d.id, DUPLICATE_HANDLE, now) {
            continue;
        }
        if let Err(e) = held.record(&d.id, DUPLICATE_HANDLE, d.period, now) {
            return Some(format!("duplicate memory not updated: {e}"));
        }
    }
    None
}

/// The machine's zone offset at `now`, in minutes east of UTC (`$TZ`, else
/// `/etc/localtime`), for `date`/`currentdate` without `:zone`: read only
/// when a script runs. A zone that cannot be read is UTC.
pub fn local_offset(now: i64) -> i32 {
    let zone = match std::env::var("TZ") {
        Ok(tz) if !tz.is_empty() => tz::TimeZone::from_posix_tz(&tz),
        _ => tz::TimeZone::local(),
    };
    zone.ok()
        .and_then(|z| z.find_local_time_type(now).ok().map(|t| t.ut_offset() / 60))
        .unwrap_or(0)
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spam_verdict_reads_the_topmost_instance_and_the_first_word() {
        let junk = Junk::default();
        // (message, spam)
        let cases: [(&str, bool); 8] = [
            ("X-Spam-Flag: YES\n\nx", true),
            ("X-Spam-Flag: yes\n\nx", true),
            ("X-Spam-Status: Yes, score=7.2 required=5.0\n\nx", true),
            ("X-Spam-Status: No, score=0.1\n\nx", false),
            ("X-Spam: Yes\n\nx", true),
            ("X-Spam-Flag: YESTERDAY\n\nx", false),
            ("X-Spam-Flag: NO\nX-Spam-Flag: YES\n\nx", false),
            ("Subject: X-Spam-Flag: YES\n\nX-Spam-Flag: YES\n", false),
        ];
        for (m, want) in cases {
            assert_eq!(
                spam_verdict(&Message::parse(m.as_bytes()), &junk),
                want,
                "{m:?}"
            );
        }
        let custom = Junk {
            verdict: vec!["X-Verdict: spam".into()],
            ..Junk::default()
        };
        let m = Message::parse(b"X-Verdict: Spam; 9.1\nX-Spam-Flag: YES\n\nx");
        assert!(spam_verdict(&m, &custom));
        let m = Message::parse(b"X-Verdict: ham\nX-Spam-Flag: YES\n\nx");
        assert!(
            !spam_verdict(&m, &custom),
            "only the configured headers count"
        );
    }

    #[test]
    fn addresses_fold_as_the_plan_does() {
        assert_eq!(fold_address("Sales@Example.COM"), "sales@example.com");
        assert_eq!(fold_address("nodomain"), "nodomain");
    }
}
