//! vdeliver: the delivery agent qmail-local runs for PostgreSQL-backed
//! virtual domains.
//!
//! # What it guarantees
//!
//! * A message is reported delivered (exit 0) only when every copy is on
//!   disk: the file fsynced, linked into `new/`, and `new/` fsynced.
//! * Every doubt defers (111). A bounce (100) comes only from a definite
//!   answer: no such user, disabled, relocated, over quota, a loop. A
//!   database error is never read as "no such user".
//! * The message is stored byte-for-byte behind the `Return-Path:` and
//!   `Delivered-To:` lines vdeliver adds, whatever it contains.
//! * Nothing is written outside `mail.root`: Maildir paths from the database
//!   are resolved beneath it without following symlinks.
//!
//! # Layout
//!
//! Pure modules (no filesystem, database, environment or clock) take inputs
//! and return decisions: [`recipient`], [`header`], [`names`], [`plan`],
//! [`maildirsize`], [`outcome`], [`sieve`] (the Sieve compiler). I/O
//! modules carry them out: [`config`],
//! [`db`], [`maildir`], [`quota`], [`deadline`], [`privs`], [`input`],
//! [`openfiles`]. [`deliver`] reads top to bottom as the data path:
//! environment → recipient → plan
//! (one database answer) → write → quota decision → link → outcome.
//! [`admin`] and [`schema`] serve `vmailctl`; [`manual`] makes both
//! programs' manual pages from their clap descriptions.

// `deny`, not `forbid`: `deadline` alone allows it, for its signal
// handler and timer (each block carries its `SAFETY:` argument).
#![deny(unsafe_code)]

pub mod admin;
pub mod config;
pub mod db;
pub mod deadline;
pub mod deliver;
pub mod filter;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod input;
pub mod invocation;
pub mod maildir;
pub mod maildirsize;
pub mod manual;
pub mod names;
pub mod openfiles;
pub mod outcome;
pub mod password;
pub mod plan;
pub mod privs;
pub mod quota;
pub mod recipient;
pub mod schema;
pub mod sieve;
