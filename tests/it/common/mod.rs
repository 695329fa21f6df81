//! Shared helpers for the integration tests.
//!
//! - [`dovecot`]: a private real Dovecot (the README's guide), with tiny
//!   IMAP and ManageSieve clients.
//! - [`pg`]: a throwaway PostgreSQL cluster (one shared per test process, or
//!   a private one a test may stop and start), cleaned up even when the test
//!   process dies without running destructors.
//! - [`unpriv`]: running the real binaries as an unprivileged user, the way
//!   qmail-local does, when the tests themselves run as root (CI).
//! - [`sieve_oracle`]: Pigeonhole's `sieve-test` as the differential-testing
//!   oracle for Sieve, its output as a normalised list of actions.

// Not every test module uses every helper.
#![allow(dead_code)]

pub mod dovecot;
pub mod pg;
pub mod pgbouncer;
pub mod sieve_oracle;
pub mod site;
pub mod throwaway;
pub mod unpriv;
mod util;

pub use util::*;
