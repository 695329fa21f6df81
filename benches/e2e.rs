//! End to end: the real `vdeliver` binary spawned once per message, as
//! qmail-local runs it, against a throwaway PostgreSQL holding a realistic
//! site (10,000 accounts in 100 domains with aliases and catch-alls, see
//! `tests/it/common/throwaway.rs`) — directly over the Unix socket and
//! through PgBouncer in transaction pooling mode, each delivery to the
//! next of 200 random accounts (Maildirs made beforehand) — reported as
//! deliveries per second; and the fan-out: one message to an alias of 50
//! local accounts against 50 single deliveries.
//!
//! Sieve, group `e2e_sieve`: a typical 4 KB message
//! (`vdeliver::sieve::testgen::message`: three `Received`,
//! `DKIM-Signature`, text and HTML parts) to 200 random accounts without a
//! script (`no_script`) and to 200 others whose active script is a
//! 20-rule filter set as Roundcube writes it (`script20`: stored and
//! activated as `vmailctl sieve put` and `activate` do,
//! `<home>/.dovecot.sieve` -> `sieve/roundcube.sieve`), none of whose rules
//! matches the message, so it still goes to INBOX by the implicit keep.
//! Directly over the Unix socket. After the group, no home may hold a
//! `.dovecot.sieve.log` (a script that failed).
//!
//! ```text
//! cargo bench --bench e2e
//! ```
//!
//! As root the deliveries run as `nobody` through `setpriv`, as in the
//! tests. Needs PostgreSQL and PgBouncer installed (`.ci/run` installs
//! them).

#[allow(dead_code)]
#[path = "../tests/it/common/pg.rs"]
mod pg;
#[allow(dead_code)]
#[path = "../tests/it/common/pgbouncer.rs"]
mod pgbouncer;
#[allow(dead_code)]
#[path = "../tests/it/common/throwaway.rs"]
mod throwaway;
#[allow(dead_code)]
#[path = "../tests/it/common/unpriv.rs"]
mod unpriv;
#[allow(dead_code)]
#[path = "../tests/it/common/util.rs"]
mod util;
#[allow(unused_imports)]
use util::*;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use throwaway::{qmail_env, runnable_copy, Case, Rng, Setup, Target};

const MSG: &[u8] = b"From: bench@example.org\nTo: alice@example.com\nSubject: e2e\n\n\
The quick brown fox jumps over the lazy dog.\n";

fn deliver(bin: &Path, setup: &Setup, msg: &Path, to: &str) {
    let out = unpriv::command_as_unprivileged(bin)
        .env_clear()
        .envs(qmail_env(to, "bench@example.org"))
        .env("VDELIVER_CONFIG", &setup.config)
        .stdin(fs::File::open(msg).expect("message"))
        .stdout(Stdio::piped())
        .output()
        .expect("run vdeliver");
    assert!(out.status.success(), "{out:?}");
}

fn prepare(setup: &Setup) -> (PathBuf, PathBuf) {
    let bin = runnable_copy(Path::new(env!("CARGO_BIN_EXE_vdeliver")), &setup.bin_dir);
    let msg = setup.bin_dir.join("message");
    fs::write(&msg, MSG).expect("message");
    (bin, msg)
}

fn e2e(c: &mut Criterion) {
    let mut g = c.benchmark_group("e2e");
    g.sample_size(30);
    g.throughput(Throughput::Elements(1));
    for (label, bouncer) in [("direct", false), ("pgbouncer", true)] {
        let setup = Setup::throwaway(10_000, bouncer);
        let (bin, msg) = prepare(&setup);
        let site = setup.site.expect("a throwaway site");
        let mut rng = Rng(3);
        let targets: Vec<String> = (0..200)
            .map(|_| {
                let t = site.pick(Case::Plain, &mut rng);
                setup.precreate_maildir(&t.maildir);
                t.address
            })
            .collect();
        let mut i = 0;
        g.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) % targets.len();
                deliver(&bin, &setup, &msg, &targets[i])
            })
        });
    }
    g.finish();

    // Fan-out: 50 accounts behind one alias, written once and hard-linked,
    // against 50 separate deliveries.
    let setup = Setup::throwaway(10_000, false);
    let mut client = setup.db.as_ref().expect("db").client();
    let dests: Vec<String> = setup.recipients[..50].to_vec();
    sieve(c, &setup, &dests);
    let rules = vdeliver::plan::Rules::default();
    vdeliver::admin::alias_add(&mut client, &rules, "all@example.com", &dests, false)
        .expect("alias");
    let (bin, msg) = prepare(&setup);
    let mut g = c.benchmark_group("fanout50");
    g.sample_size(10);
    g.throughput(Throughput::Elements(50));
    g.bench_function("alias_to_50", |b| {
        b.iter(|| deliver(&bin, &setup, &msg, "all@example.com"))
    });
    g.bench_function("50_deliveries", |b| {
        b.iter(|| {
            for to in &dests {
                deliver(&bin, &setup, &msg, to);
            }
        })
    });
    g.finish();
}

/// The `e2e_sieve` group (module doc), on `setup`'s site, to accounts
/// other than `avoid` (the fan-out's, which must stay without a script).
fn sieve(c: &mut Criterion, setup: &Setup, avoid: &[String]) {
    let site = setup.site.as_ref().expect("a throwaway site");
    let (bin, _) = prepare(setup);
    let msg = setup.bin_dir.join("message4k");
    fs::write(&msg, vdeliver::sieve::testgen::message(None).0).expect("message");
    // 400 distinct random accounts: the first half without a script, the
    // second with one.
    let mut rng = Rng(12);
    let mut seen: std::collections::HashSet<String> = avoid.iter().cloned().collect();
    let mut picked: Vec<Target> = Vec::new();
    while picked.len() < 400 {
        let t = site.pick(Case::Plain, &mut rng);
        if seen.insert(t.address.clone()) {
            setup.precreate_maildir(&t.maildir);
            picked.push(t);
        }
    }
    let script = vdeliver::sieve::testgen::roundcube_script(20);
    for t in &picked[200..] {
        setup.install_script(&t.address, &t.maildir, script.as_bytes());
    }
    let mut g = c.benchmark_group("e2e_sieve");
    g.sample_size(30);
    g.throughput(Throughput::Elements(1));
    for (label, targets) in [("no_script", &picked[..200]), ("script20", &picked[200..])] {
        let mut i = 0;
        g.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) % targets.len();
                deliver(&bin, setup, &msg, &targets[i].address)
            })
        });
    }
    g.finish();
    for t in &picked {
        if let Some(log) = setup.sieve_log(&t.maildir) {
            panic!("{}: the script failed: {log}", t.address);
        }
    }
}

criterion_group!(benches, e2e);
criterion_main!(benches);
