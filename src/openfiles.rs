//! The open-file limit (`RLIMIT_NOFILE`) and how a delivery spends it.
//!
//! A delivery needs at most [`FLOOR`] descriptors at once whatever its
//! fan-out: the standard three, the mail root, and what one step holds
//! while it works (the message file, two directories for a link, a quota
//! lock and its recalculation, the pipes to qmail-queue). Everything above
//! that is a budget, spent first on quota locks (one per mailbox, held
//! from the check to the append: what makes the check race-free), then on
//! keeping Maildirs open (three each, six with a folder) so that they need
//! no reopening. A fan-out larger than the budget still delivers: the
//! Maildirs beyond it are reopened for each step, and the locks beyond it
//! are taken for the check and again for the append (see
//! [`crate::quota`]).
//!
//! When the soft limit is below what the whole fan-out could use and the
//! hard limit allows more, vdeliver raises its soft limit (to no more than
//! it can use). Only a hard limit below [`FLOOR`] stops a delivery: 111,
//! and `vmailctl resolve` says so with the same line, as it runs the same
//! decision ([`decide`]) on the same limits.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use std::fmt;

/// Descriptors one delivery may need at once, besides its budget.
pub const FLOOR: u64 = 32;

/// Descriptors a Maildir kept open costs (itself, `tmp/`, `new/`).
pub const PER_MAILDIR: u64 = 3;

/// How one delivery may spend the descriptors above [`FLOOR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Quota locks that may be held from the check to the append.
    pub locks: usize,
    /// Descriptors for Maildirs kept open.
    pub maildir_fds: u64,
    /// The soft limit to run with (raised from the current one when the
    /// fan-out needs it and the hard limit allows).
    pub soft: u64,
}

/// The hard limit is too low for any delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLow {
    pub soft: u64,
    pub hard: u64,
}

impl fmt::Display for TooLow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the open-file limit (soft {}, hard {}) is below the {FLOOR} files vdeliver \
             needs at once; raise it (ulimit -n) where qmail-send is started",
            self.soft, self.hard
        )
    }
}

impl std::error::Error for TooLow {}

/// The budget for a delivery to `mailboxes` Maildirs, `folders` of which
/// may be folders of their account (a second Maildir), under the limits
/// `soft` and `hard` (`u64::MAX`: unlimited). Pure: same answer for
/// vdeliver and `vmailctl resolve`.
pub fn decide(soft: u64, hard: u64, mailboxes: usize, folders: usize) -> Result<Budget, TooLow> {
    let hard = hard.max(soft);
    if hard < FLOOR {
        return Err(TooLow { soft, hard });
    }
    let locks = mailboxes as u64;
    let maildirs = (mailboxes as u64 + folders as u64).saturating_mul(PER_MAILDIR);
    let want = FLOOR.saturating_add(locks).saturating_add(maildirs);
    let soft_now = if soft >= want { soft } else { want.min(hard) };
    let spare = soft_now - FLOOR;
    let locks = locks.min(spare);
    Ok(Budget {
        locks: usize::try_from(locks).unwrap_or(usize::MAX),
        maildir_fds: (spare - locks).min(maildirs),
        soft: soft_now,
    })
}

fn limits() -> (u64, u64) {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    (current.unwrap_or(u64::MAX), maximum.unwrap_or(u64::MAX))
}

/// [`decide`] on this process's limits, for the dry run: changes nothing.
pub fn predict(mailboxes: usize, folders: usize) -> Result<Budget, TooLow> {
    let (soft, hard) = limits();
    decide(soft, hard, mailboxes, folders)
}

/// [`decide`] on this process's limits, raising the soft limit when the
/// budget says so. A refused raise leaves the limit as it was and the
/// budget is decided again on it.
pub fn apply(mailboxes: usize, folders: usize) -> Result<Budget, TooLow> {
    let (soft, hard) = limits();
    let budget = decide(soft, hard, mailboxes, folders)?;
    if budget.soft == soft {
        return Ok(budget);
    }
    let raised = Rlimit {
        current: Some(budget.soft),
        maximum: (hard != u64::MAX).then_some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Ok(budget),
        // Cannot happen for a soft limit within the hard one, but if a
        // security module refuses, the budget still fits the old limit.
        Err(_) => decide(soft, soft, mailboxes, folders),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        const INF: u64 = u64::MAX;
        // (soft, hard, mailboxes, folders, want)
        let b = |locks, maildir_fds, soft| {
            Ok(Budget {
                locks,
                maildir_fds,
                soft,
            })
        };
        let cases = [
            // One mailbox, any sane limit: its lock held, its Maildir kept.
            (1024, 1024, 1, 0, b(1, 3, 1024)),
            (1024, INF, 1, 1, b(1, 6, 1024)),
            (FLOOR, FLOOR, 1, 0, b(0, 0, FLOOR)),
            // An ordinary alias: everything held and kept.
            (256, 256, 50, 0, b(50, 150, 256)),
            // 2,000 under 256: locks first, no Maildir kept.
            (256, 256, 2000, 0, b(224, 0, 256)),
            // Under 300: 268 spare, 268 locks held.
            (300, 300, 2000, 0, b(268, 0, 300)),
            // 100 under 256: 100 locks, 124 descriptors for Maildirs.
            (256, 256, 100, 0, b(100, 124, 256)),
            // The soft limit is raised as far as needed, never past hard.
            (256, 4096, 100, 0, b(100, 300, 432)),
            (256, 1000, 2000, 0, b(968, 0, 1000)),
            (20, 1024, 1, 0, b(1, 3, 36)),
            (INF, INF, 2000, 0, b(2000, 6000, INF)),
            // Too low for anything.
            (20, 20, 1, 0, Err(TooLow { soft: 20, hard: 20 })),
            (
                FLOOR - 1,
                FLOOR - 1,
                2000,
                0,
                Err(TooLow { soft: 31, hard: 31 }),
            ),
        ];
        for (soft, hard, n, f, want) in cases {
            assert_eq!(decide(soft, hard, n, f), want, "{soft} {hard} {n} {f}");
        }
    }
}
