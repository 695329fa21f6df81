mod common;
mod harness_selftest;
mod fuzz_corpus;
mod delivery;
mod routing;
mod pgbouncer;
mod reliability;
