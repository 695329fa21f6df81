mod common;
mod delivery;
mod fuzz_corpus;
mod harness_selftest;
mod pgbouncer;
mod reliability;
mod routing;
mod vmailctl;
