//! Sieve: what a script costs a delivery, in pieces.
//!
//! - `sieve_compile/roundcube{20,200}`: [`vdeliver::sieve::compile`] of a
//!   filter set of 20 and 200 rules in the shape Roundcube's managesieve
//!   plugin writes (`vdeliver::sieve::testgen`: lists, subject tags,
//!   `:regex`, `redirect :copy`, `envelope`, `size`, `addflag`, `body`,
//!   the vacation form's `currentdate` range);
//! - `sieve_run/roundcube{20,200}`: [`vdeliver::sieve::interp::run`] of
//!   the compiled set against a typical 4 KB message (three `Received`,
//!   `DKIM-Signature`, `multipart/alternative` with text and HTML) that no
//!   rule matches, so every test is evaluated and the implicit keep
//!   remains — the worst case for a set that files nothing;
//!   `sieve_run/parse_message` is [`Message::parse`] of that message alone,
//!   `sieve_run/all20` the whole pure part of a delivery with a 20-rule
//!   script (compile, parse, run);
//! - `sieve_active_script/{no_script,symlink20}`:
//!   [`vdeliver::sieve::store::active_script`] on a real home beneath a
//!   [`MailRoot`] without a script (what every delivery without one pays:
//!   one failed `openat2`) and with `.dovecot.sieve` a symlink to
//!   `sieve/roundcube.sieve`, as ManageSieve and `vmailctl sieve activate`
//!   leave it; `failed_openat` is the reference (the aim: a delivery with
//!   no script costs no more than one failed `openat` over one without
//!   Sieve support at all): a plain `openat` of a missing name beneath the
//!   root.
//!
//! ```text
//! cargo bench --bench sieve
//! ```
//!
//! The home is made beneath `$VDELIVER_BENCH_DIR` (default: a temp dir).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use vdeliver::maildir::MailRoot;
use vdeliver::sieve::interp::{run, NoHost};
use vdeliver::sieve::message::Message;
use vdeliver::sieve::store::{active_script, SCRIPT_LINK};
use vdeliver::sieve::testgen;

fn bench_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("VDELIVER_BENCH_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).expect("VDELIVER_BENCH_DIR");
            (d, None)
        }
        None => {
            let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
            (t.path().to_path_buf(), Some(t))
        }
    }
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("sieve_compile");
    for n in [20, 200] {
        let script = testgen::roundcube_script(n);
        g.throughput(Throughput::Bytes(script.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("roundcube", n),
            script.as_bytes(),
            |b, s| b.iter(|| vdeliver::sieve::compile(black_box(s)).expect("compiles")),
        );
    }
    g.finish();
}

fn interpret(c: &mut Criterion) {
    let (raw, env) = testgen::message(None);
    let mut g = c.benchmark_group("sieve_run");
    g.bench_function("parse_message", |b| {
        b.iter(|| Message::parse(black_box(&raw)))
    });
    for n in [20, 200] {
        let p =
            vdeliver::sieve::compile(testgen::roundcube_script(n).as_bytes()).expect("compiles");
        // The message is parsed once, as a delivery does; its MIME parts
        // (for `body`) are decoded on first use, so a fresh parse per
        // iteration keeps that cost in, as each delivery pays it.
        let check = run(&p, &Message::parse(&raw), &env, &mut NoHost);
        assert_eq!(check, testgen::implicit_keep(), "{n} rules");
        g.bench_with_input(BenchmarkId::new("roundcube", n), &p, |b, p| {
            b.iter_batched(
                || Message::parse(&raw),
                |m| run(p, &m, &env, &mut NoHost),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    let script = testgen::roundcube_script(20);
    g.bench_function("all20", |b| {
        b.iter(|| {
            let p = vdeliver::sieve::compile(black_box(script.as_bytes())).expect("compiles");
            let m = Message::parse(black_box(&raw));
            run(&p, &m, &env, &mut NoHost)
        })
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let (dir, _keep) = bench_dir();
    let root = MailRoot::open(&dir).expect("open bench dir");
    for home in ["example.com/plain", "example.com/scripted"] {
        root.maildir(&format!("{home}/Maildir/"), &[])
            .expect("maildir");
    }
    let script = testgen::roundcube_script(20);
    let scripted = dir.join("example.com/scripted");
    std::fs::create_dir(scripted.join("sieve")).expect("sieve dir");
    std::fs::write(scripted.join("sieve/roundcube.sieve"), &script).expect("script");
    std::os::unix::fs::symlink("sieve/roundcube.sieve", scripted.join(SCRIPT_LINK))
        .expect("symlink");
    assert_eq!(active_script(&root, "example.com/plain"), Ok(None));
    assert_eq!(
        active_script(&root, "example.com/scripted"),
        Ok(Some(script.into_bytes()))
    );
    let mut g = c.benchmark_group("sieve_active_script");
    g.bench_function("no_script", |b| {
        b.iter(|| active_script(&root, black_box("example.com/plain")).expect("lookup"))
    });
    g.bench_function("failed_openat", |b| {
        b.iter(|| {
            let r = rustix::fs::openat(
                root.as_fd(),
                black_box("example.com/plain/.dovecot.sieve"),
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            );
            assert_eq!(r.err(), Some(rustix::io::Errno::NOENT));
        })
    });
    g.bench_function("symlink20", |b| {
        b.iter(|| active_script(&root, black_box("example.com/scripted")).expect("lookup"))
    });
    g.finish();
}

criterion_group!(benches, compile, interpret, lookup);
criterion_main!(benches);
