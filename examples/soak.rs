//! The long load test, run by hand, not in CI:
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/examples/soak [--messages 10000] [--accounts 20] [--concurrency 2] [--pgbouncer]
//! ```
//!
//! Two streams run at the same time against a throwaway PostgreSQL, with
//! quota on (a domain limit far above what the run stores, so every
//! delivery is checked and charged and none refused): one sends N messages
//! to one mailbox, the other N messages spread over many. Afterwards it
//! checks that every message is stored exactly once, byte for byte, in the
//! mailbox it was sent to (zero lost, zero duplicated), that every unique
//! name differs from every other, and that each `maildirsize` sums to what
//! a recalculation of the Maildir finds. Exit 0 only if all of that holds.

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

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{exit, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use throwaway::{qmail_env, runnable_copy, Setup};

/// Which account the i-th message of a stream goes to.
type Recipient = Box<dyn Fn(usize) -> String + Send + Sync>;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("soak: bad {name}");
                exit(2)
            })
        })
        .unwrap_or(default)
}

fn message(stream: char, i: usize) -> Vec<u8> {
    let mut m =
        format!("Message-ID: <{stream}{i}@soak.test>\nSubject: soak {stream}{i}\n\n").into_bytes();
    for l in 0..(20 + i % 50) {
        m.extend_from_slice(format!("{stream}{i} line {l}: the quick brown fox\n").as_bytes());
    }
    m
}

fn main() {
    let n = arg("--messages", 10_000);
    let accounts = arg("--accounts", 20).max(2);
    let concurrency = arg("--concurrency", 2).max(1);
    let bouncer = std::env::args().any(|a| a == "--pgbouncer");
    let setup = Setup::throwaway(accounts, bouncer);
    let db = setup.db.as_ref().expect("throwaway database");
    db.execute("UPDATE domains SET quota_bytes = 100000000000, quota_messages = 10000000");
    let exe = std::env::current_exe().expect("current_exe");
    let bin_src = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("vdeliver"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| {
            eprintln!("soak: build the binaries first: cargo build --release --bins --examples");
            exit(1)
        });
    let bin = runnable_copy(&bin_src, &setup.bin_dir);
    let msgs = setup.bin_dir.join("messages");
    fs::create_dir(&msgs).expect("messages dir");
    fs::set_permissions(&msgs, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // Stream 'a': everything to alice. Stream 'b': spread over the others.
    let others: Vec<String> = setup.recipients[1..].to_vec();
    let streams: Vec<(char, Recipient)> = vec![
        ('a', Box::new(|_| "alice@example.com".to_string())),
        ('b', Box::new(move |i| others[i % others.len()].clone())),
    ];
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut sent: HashMap<String, String> = HashMap::new(); // message id -> recipient
    std::thread::scope(|scope| {
        for (stream, to_of) in &streams {
            for w in 0..concurrency {
                let (bin, config, msgs) = (&bin, &setup.config, &msgs);
                let (failures, done) = (failures.clone(), done.clone());
                scope.spawn(move || {
                    for i in (w..n).step_by(concurrency) {
                        let to = to_of(i);
                        let path = msgs.join(format!("{stream}{i}"));
                        fs::write(&path, message(*stream, i)).expect("write message");
                        let out = unpriv::command_as_unprivileged(bin)
                            .env_clear()
                            .envs(qmail_env(&to, "soak@example.org"))
                            .env("VDELIVER_CONFIG", config)
                            .stdin(fs::File::open(&path).expect("message"))
                            .stdout(Stdio::piped())
                            .output()
                            .expect("run vdeliver");
                        if !out.status.success() {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "\n{stream}{i} to {to}: {}",
                                String::from_utf8_lossy(&out.stdout).trim()
                            );
                        }
                        let _ = fs::remove_file(&path);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
        let total = 2 * n;
        while done.load(Ordering::Relaxed) < total {
            eprint!("\r{}/{total} delivered", done.load(Ordering::Relaxed));
            let _ = std::io::stderr().flush();
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        eprintln!("\r{total}/{total} delivered");
    });
    let secs = started.elapsed().as_secs_f64();
    for i in 0..n {
        sent.insert(format!("a{i}"), "alice@example.com".into());
        sent.insert(format!("b{i}"), (streams[1].1)(i));
    }

    // Every stored file: which message, where, complete?
    let mut problems = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut uniques: HashSet<String> = HashSet::new();
    let mut names = 0usize;
    for to in &setup.recipients {
        let local = to.split('@').next().unwrap_or_default();
        let md = setup.root.join(format!("example.com/{local}/Maildir"));
        let Ok(entries) = fs::read_dir(md.join("new")) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            names += 1;
            if !uniques.insert(name.split(',').next().unwrap_or_default().to_string()) {
                problems.push(format!("unique part used twice: {name}"));
            }
            let bytes = fs::read(e.path()).expect("read stored message");
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            let Some(id) = text
                .split("Message-ID: <")
                .nth(1)
                .and_then(|t| t.split('@').next())
            else {
                problems.push(format!("{}: not one of ours", e.path().display()));
                continue;
            };
            let stream = id.chars().next().unwrap_or('?');
            let i: usize = id[1..].parse().unwrap_or(usize::MAX);
            let mut want =
                format!("Return-Path: <soak@example.org>\nDelivered-To: {to}\n").into_bytes();
            want.extend_from_slice(&message(stream, i));
            if bytes != want {
                problems.push(format!("{}: not byte-identical", e.path().display()));
            }
            if sent.get(id).map(String::as_str) != Some(to.as_str()) {
                problems.push(format!("{id} misrouted into {to}"));
            }
            *seen.entry(id.to_string()).or_default() += 1;
        }
        // maildirsize against a recalculation.
        let root = vdeliver::maildir::MailRoot::open(&setup.root).expect("root");
        let maildir = root
            .maildir(&format!("example.com/{local}/Maildir/"), &[])
            .expect("maildir");
        let file = fs::read(md.join("maildirsize")).unwrap_or_default();
        match vdeliver::maildirsize::parse(&file) {
            Ok(p) => {
                let recalc = vdeliver::quota::recalculate(&maildir, &[]).expect("recalculate");
                if p.usage != recalc {
                    problems.push(format!(
                        "{to}: maildirsize says {:?}, recalculation {recalc:?}",
                        p.usage
                    ));
                }
            }
            Err(t) => problems.push(format!("{to}: maildirsize unusable: {t:?}")),
        }
    }
    let lost: Vec<&String> = sent.keys().filter(|k| !seen.contains_key(*k)).collect();
    let dup: Vec<(&String, &usize)> = seen.iter().filter(|(_, c)| **c > 1).collect();
    println!(
        "{} deliveries in {secs:.1} s ({:.0}/s), {} failed; {names} files; {} lost; {} duplicated; {} other problems",
        2 * n,
        (2 * n) as f64 / secs,
        failures.load(Ordering::Relaxed),
        lost.len(),
        dup.len(),
        problems.len()
    );
    for p in problems.iter().take(20) {
        println!("  {p}");
    }
    if failures.load(Ordering::Relaxed) > 0
        || !lost.is_empty()
        || !dup.is_empty()
        || !problems.is_empty()
    {
        exit(1);
    }
    println!("zero lost, names unique, maildirsize equal to a recalculation in every mailbox");
}
