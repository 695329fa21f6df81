//! Shared helpers for the integration tests.
//!
//! - [`pg`]: a throwaway PostgreSQL cluster (one shared per test process, or
//!   a private one a test may stop and start), cleaned up even when the test
//!   process dies without running destructors.
//! - [`unpriv`]: running the real binaries as an unprivileged user, the way
//!   qmail-local does, when the tests themselves run as root (CI).

// Not every test module uses every helper.
#![allow(dead_code)]

pub mod pg;
pub mod pgbouncer;
pub mod site;
pub mod throwaway;
pub mod unpriv;
mod util;

pub use util::*;
