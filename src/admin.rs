//! What `vmailctl` does to the database. Each function is one operation
//! with typed errors; the binary only parses arguments and prints.
//!
//! # Guarantees
//!
//! * Names are validated and normalised before they reach SQL: domains
//!   lowercased and in their ASCII (punycode) form, local parts RFC 5322
//!   atoms and dots, lowercased.
//! * A change that would make mail undeliverable is refused (exit 1)
//!   unless forced, naming what would break and what vdeliver would then
//!   say: an alias or catch-all whose destinations do not resolve (no such
//!   mailbox, a loop, a copy for itself without an account), and a delete
//!   that leaves another alias pointing at nothing. The check runs the same
//!   resolution vdeliver runs ([`crate::db::fetch`] + [`crate::plan`]),
//!   inside the transaction that makes the change, so it sees the change.
//! * The check covers every delete and every change that can reroute mail,
//!   and also refuses (unless forced) an address that delivers today
//!   delivering somewhere it does not today — an alias member's copy
//!   falling through to the catch-all, say. Fewer destinations is not a
//!   break: that is what removing one means.
//! * A new account does not silently take over a Maildir: one already on
//!   disk, or the same as, inside or around another account's, needs
//!   [`NewAccount::reuse_maildir`].
//! * Deletes never touch Maildirs; [`purge_maildir`] does, only when asked,
//!   and only beneath the mail root without following symlinks.
//! * Whatever touches the mail root goes through [`as_mail_user`]: run as
//!   root, vmailctl works there as the mail user, so what it creates
//!   belongs to that user and root's permission override is not used.
//! * Nothing here prints, reads the environment or exits.
//!
//! # Where things are
//!
//! One file per entity, named like the command: `domain`
//! (`vmailctl domain …`), `alias_domain`, `account` (also `quota`),
//! `alias`, `catchall`, `relocated`, `sieve`, `vacation`. Shared by them:
//! `names` (the name rules), `sizes` (sizes typed and shown), `guard`
//! (the "would this change break delivery" check), `asuser` (working as
//! the mail user). The diagnostics: `check`, `dryrun`, `explain`, `usage`,
//! `purge`, `migrate`. This file keeps the error type and re-exports every
//! operation, so callers name them `admin::account_show` and so on.

mod account;
mod alias;
mod alias_domain;
mod asuser;
mod catchall;
mod check;
mod domain;
mod dryrun;
mod explain;
mod guard;
mod migrate;
mod names;
mod purge;
mod relocated;
mod rename;
pub mod sieve;
mod sizes;
mod usage;
pub mod vacation;

pub use account::{
    account_add, account_delete, account_junk, account_list, account_password, account_quota,
    account_services, account_set_active, account_set_info, account_show, quota, Account,
    NewAccount, QuotaReport, Service, Services,
};
pub use alias::{alias_add, alias_delete, alias_list, alias_show, Alias, Changed};
pub use alias_domain::{
    alias_domain_add, alias_domain_delete, alias_domain_list, alias_domain_move, AliasDomain,
};
pub use asuser::as_mail_user;
pub use catchall::{catchall_add, catchall_delete, catchall_list, catchall_show};
pub use check::{check, Check};
pub use domain::{
    domain_add, domain_add_with, domain_addresses, domain_delete, domain_list, domain_set,
    domain_show, Deleted, Domain, DomainAddress, DomainSettings,
};
pub use dryrun::{dry_run, DryRun, Target};
pub use explain::{explain, Explained, Trip};
pub use guard::{delivers, resolve_on};
pub use migrate::{drift, migrate, resync, schema_version};
pub use names::{
    address, both_forms, check_maildir, destination, domain_name, list_filter, local_part, unicode,
};
pub use purge::{purge_maildir, Purged};
pub use relocated::{relocated_add, relocated_delete, relocated_list, relocated_show, Relocated};
pub use rename::{account_rename, Moved, Renamed};
pub use sizes::{count_of, human_count, human_limit, human_size, parse_count, parse_size};
pub use usage::{usage, Usage};

use crate::db;
use postgres::error::SqlState;
use std::fmt;

/// Why an administrative operation failed.
#[derive(Debug)]
pub enum AdminError {
    /// The input is not acceptable (a bad name, a bad size): a usage error.
    Invalid(String),
    NotFound(String),
    /// Already there, or in the way of the change.
    Conflict(String),
    /// The change would stop or redirect delivery (`--force` overrides).
    WouldBreak(String),
    /// The configuration file cannot be used.
    Config(String),
    /// The database cannot be reached or answered with an error.
    Database(String),
    /// Anything else that failed: the filesystem, a lookup.
    Failed(String),
    Db(postgres::Error),
}

impl AdminError {
    /// vmailctl's exit code: 2 for bad input, 1 for a failed operation.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Invalid(_) => 2,
            _ => 1,
        }
    }

    /// A stable name for what went wrong, for `--json` errors:
    /// `invalid`, `not_found`, `conflict`, `would_break_delivery`,
    /// `config`, `database` or `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            AdminError::Invalid(_) => "invalid",
            AdminError::NotFound(_) => "not_found",
            AdminError::Conflict(_) => "conflict",
            AdminError::WouldBreak(_) => "would_break_delivery",
            AdminError::Config(_) => "config",
            AdminError::Database(_) | AdminError::Db(_) => "database",
            AdminError::Failed(_) => "io",
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Invalid(s)
            | AdminError::NotFound(s)
            | AdminError::Conflict(s)
            | AdminError::WouldBreak(s)
            | AdminError::Config(s)
            | AdminError::Database(s)
            | AdminError::Failed(s) => f.write_str(s),
            AdminError::Db(e) => match e.as_db_error() {
                Some(db) => write!(f, "database: {}", db.message()),
                None => write!(f, "database: {e}"),
            },
        }
    }
}

impl std::error::Error for AdminError {}

impl From<postgres::Error> for AdminError {
    fn from(e: postgres::Error) -> AdminError {
        AdminError::Db(e)
    }
}

impl From<db::DbError> for AdminError {
    fn from(e: db::DbError) -> AdminError {
        AdminError::Database(format!("database: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, AdminError>;

/// Turn a unique violation into a conflict with a readable text.
fn conflict(e: postgres::Error, what: impl FnOnce() -> String) -> AdminError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        AdminError::Conflict(what())
    } else {
        AdminError::Db(e)
    }
}
