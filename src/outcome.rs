//! The one place where a delivery's result becomes an exit code and a line.
//!
//! DIAGNOSTICS policy (as Postfix's virtual(8) states its own): vdeliver
//! bounces (100) only when the recipient does not exist, has moved, is
//! disabled, is over quota under the bounce policy, or the message loops.
//! Every other problem — database, disk, configuration, environment, a panic,
//! anything not foreseen — defers (111), so qmail keeps the message and
//! retries. There is no path from an error to 0 or 100.

use std::fmt;

/// qmail-local's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: delivered.
    Delivered = 0,
    /// 99: delivered, and qmail-local is to skip the following `.qmail` lines.
    DeliveredStop = 99,
    /// 100: permanent failure; qmail bounces the message.
    Permanent = 100,
    /// 111: temporary failure; qmail retries.
    Temporary = 111,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A delivery that did not happen, with its enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: Exit,
    /// Enhanced status code without the `#`, e.g. `5.1.1`.
    pub status: &'static str,
    pub text: String,
}

impl Failure {
    fn new(exit: Exit, status: &'static str, text: impl Into<String>) -> Failure {
        Failure {
            exit,
            status,
            text: text.into(),
        }
    }

    /// No such user: 100, `#5.1.1`.
    pub fn no_such_user() -> Failure {
        Failure::new(
            Exit::Permanent,
            "5.1.1",
            "Sorry, no mailbox here by that name.",
        )
    }

    /// The account (or its domain) is disabled: 100, `#5.2.1`.
    pub fn disabled(address: &str) -> Failure {
        Failure::new(
            Exit::Permanent,
            "5.2.1",
            format!("Sorry, the mailbox {address} is disabled."),
        )
    }

    /// The address has moved: 100, `#5.1.6`.
    pub fn relocated(address: &str, new_address: &str) -> Failure {
        Failure::new(
            Exit::Permanent,
            "5.1.6",
            format!("Sorry, {address} has moved; try {new_address}."),
        )
    }

    /// An address no mailbox can have (control characters, too long):
    /// 100, `#5.1.3`.
    pub fn bad_address(why: impl fmt::Display) -> Failure {
        Failure::new(
            Exit::Permanent,
            "5.1.3",
            format!("Sorry, that is not a valid address: {why}."),
        )
    }

    /// qmail-queue refused the forwarded copy permanently: 100, `#5.3.0`.
    pub fn queue_refused(why: impl fmt::Display) -> Failure {
        Failure::new(
            Exit::Permanent,
            "5.3.0",
            format!("Forwarding failed: {why}."),
        )
    }

    /// Over quota (`what` says whose and why): 100, `#5.2.2`; or, when the
    /// site defers over-quota mail, 111, `#4.2.2`.
    pub fn over_quota(what: impl fmt::Display, defer: bool) -> Failure {
        if defer {
            Failure::new(Exit::Temporary, "4.2.2", format!("Deferred: {what}."))
        } else {
            Failure::new(Exit::Permanent, "5.2.2", format!("Sorry, {what}."))
        }
    }

    /// A mail loop: 100, `#5.4.6`.
    pub fn looping(why: impl fmt::Display) -> Failure {
        Failure::new(
            Exit::Permanent,
            "5.4.6",
            format!("This message is looping: {why}."),
        )
    }

    /// Anything temporary: database, disk, the unexpected. 111, `#4.3.0`.
    pub fn temporary(what: impl fmt::Display) -> Failure {
        Failure::new(
            Exit::Temporary,
            "4.3.0",
            format!("Temporary failure: {what}."),
        )
    }

    /// A configuration or environment fault: 111, `#4.3.5`.
    pub fn config(what: impl fmt::Display) -> Failure {
        Failure::new(
            Exit::Temporary,
            "4.3.5",
            format!("Configuration error: {what}."),
        )
    }

    /// The recipient's Sieve script refused the message (`reject`,
    /// `ereject`): a bounce carrying the script's reason.
    pub fn sieve_rejected(reason: &str) -> Failure {
        Failure::new(
            Exit::Permanent,
            "5.7.1",
            format!("Sorry, the recipient's Sieve filter rejected the message: {reason}"),
        )
    }

    /// The domain is not in the database although qmail routed it here.
    pub fn unknown_domain(domain: &str) -> Failure {
        Failure::config(format!(
            "domain {domain} is routed to vdeliver but is not in the database"
        ))
    }
}

/// What vdeliver reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        /// The mailboxes written, as the database names them.
        mailboxes: Vec<String>,
        /// How many remote addresses were queued.
        forwarded: usize,
        /// Whether a later `.qmail` line is to be skipped (exit 99).
        stop: bool,
        /// What Sieve and Junk routing did or could not do (a vacation
        /// reply sent, a script error logged), said after the rest.
        notes: Vec<String>,
    },
    /// Accepted and deliberately discarded (vpopmail's `delete`).
    Discarded(String),
    Failed(Failure),
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Outcome {
        Outcome::Failed(f)
    }
}

/// Longest line printed; qmail cuts what a sender sees at 3000 bytes anyway.
pub const MAX_LINE: usize = 1000;

impl Outcome {
    pub fn exit(&self) -> Exit {
        match self {
            Outcome::Delivered { stop: true, .. } => Exit::DeliveredStop,
            Outcome::Delivered { .. } | Outcome::Discarded(_) => Exit::Delivered,
            Outcome::Failed(f) => f.exit,
        }
    }

    /// The one line to print, with its newline: no control characters, at
    /// most [`MAX_LINE`] bytes, the status code (if any) last.
    pub fn line(&self) -> String {
        let (text, status) = match self {
            Outcome::Delivered {
                mailboxes,
                forwarded,
                notes,
                ..
            } => {
                let mut t = if mailboxes.is_empty() {
                    String::new()
                } else {
                    format!("delivered to {}", mailboxes.join(", "))
                };
                if *forwarded > 0 {
                    if !t.is_empty() {
                        t.push_str(" and ");
                    }
                    t.push_str(&format!("forwarded to {forwarded}"));
                }
                for n in notes {
                    t.push_str("; ");
                    t.push_str(n);
                }
                (t, None)
            }
            Outcome::Discarded(why) => (format!("discarded: {why}"), None),
            Outcome::Failed(f) => (f.text.clone(), Some(f.status)),
        };
        let mut line = one_line(&text);
        let tail = status.map(|s| format!(" (#{s})")).unwrap_or_default();
        let limit = MAX_LINE - tail.len() - 1;
        if line.len() > limit {
            let mut cut = limit - 3;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str("...");
        }
        line.push_str(&tail);
        line.push('\n');
        line
    }
}

/// Fold any text onto one line: control characters become spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_codes() {
        let cases: Vec<(Outcome, i32, &str)> = vec![
            (
                Failure::no_such_user().into(),
                100,
                "Sorry, no mailbox here by that name. (#5.1.1)\n",
            ),
            (
                Failure::temporary("database: x\ny").into(),
                111,
                "Temporary failure: database: x y. (#4.3.0)\n",
            ),
            (
                Failure::config("HOST is not set").into(),
                111,
                "Configuration error: HOST is not set. (#4.3.5)\n",
            ),
            (
                Outcome::Delivered {
                    mailboxes: vec!["example.com/alice/Maildir/".into()],
                    forwarded: 0,
                    stop: false,
                    notes: Vec::new(),
                },
                0,
                "delivered to example.com/alice/Maildir/\n",
            ),
            (
                Outcome::Delivered {
                    mailboxes: vec![],
                    forwarded: 2,
                    stop: true,
                    notes: Vec::new(),
                },
                99,
                "forwarded to 2\n",
            ),
        ];
        for (o, want_code, want_line) in cases {
            assert_eq!(o.exit().code(), want_code, "{o:?}");
            assert_eq!(o.line(), want_line);
        }
    }

    #[test]
    fn long_lines_keep_status() {
        let o: Outcome = Failure::temporary("é".repeat(5000)).into();
        let l = o.line();
        assert!(l.len() <= MAX_LINE, "{}", l.len());
        assert!(l.ends_with("... (#4.3.0)\n"));
    }
}
