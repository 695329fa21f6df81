//! What running a Sieve script decides: the contract between the
//! interpreter (pure: it only returns an [`Outcome`]) and the delivery code
//! that carries the actions out (Maildir, qmail-queue, the vacation store).
//!
//! Folder names are as the script (or the implicit keep) gives them, in
//! Unicode, `INBOX` for the inbox: encoding them on disk (Maildir++ with
//! IMAP modified UTF-7, as Dovecot does) and stripping a Courier-style
//! `INBOX.` prefix is the delivery side's job. Flags are IMAP flags as the
//! script wrote them (`\Seen`, `$Label1`), each once, in the order first
//! set; the delivery side maps the system flags onto Maildir info letters.

/// One action to carry out, in the order the script made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store into `folder` (`INBOX` for keep and the implicit keep) with
    /// these flags. `create`: make the folder when missing (`:create`);
    /// otherwise a missing folder is an error and the message goes to
    /// INBOX instead (Pigeonhole's default).
    Store {
        folder: String,
        flags: Vec<String>,
        create: bool,
        /// The implicit keep, not an explicit `keep`/`fileinto` (the Junk
        /// routing applies to keeps only).
        implicit: bool,
        /// An explicit `keep` (not `fileinto "INBOX"`).
        keep: bool,
    },
    /// Forward to `address` (a bare `local@domain`).
    Redirect { address: String },
    /// Refuse the message with this reason (`reject`; `ereject` alike).
    Reject { reason: String },
    /// Send an auto-reply (RFC 5230); whether it is actually sent (the
    /// RFC 3834 rules, the once-per-period memory) is the delivery side's
    /// decision.
    Vacation(VacationReply),
}

/// A vacation action as the script gave it, variables expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacationReply {
    /// The reply body (`:mime`: a MIME entity, headers included).
    pub reason: String,
    pub mime: bool,
    /// `:subject`; None: the delivery side makes `Auto: <original>`.
    pub subject: Option<String>,
    /// `:from`.
    pub from: Option<String>,
    /// `:addresses`: more of the user's own addresses.
    pub addresses: Vec<String>,
    /// The period in seconds (`:days` × 86400 or `:seconds`), as given;
    /// None: the default. Clamping to the site's limits is the delivery
    /// side's.
    pub period: Option<u64>,
    /// `:handle`; None: the delivery side derives one from the reason,
    /// subject, from and mime (RFC 5230 4.2).
    pub handle: Option<String>,
}

/// The result of running a script (or the global scripts around it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The actions, the implicit keep included as a final `Store` with
    /// `implicit: true` when it is still in effect.
    pub actions: Vec<Action>,
    /// `discard` cancelled the implicit keep and nothing else stores it.
    pub discarded: bool,
    /// A run-time error: the delivery side falls back to the implicit
    /// keep into INBOX and logs this (`actions` is then empty).
    pub error: Option<String>,
}
