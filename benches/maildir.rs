//! The Maildir writer on a real disk: create in tmp/, write, fsync, link
//! into new/, fsync new/, unlink — for 1 KB, 100 KB and 10 MB messages —
//! and the same without the fsyncs and the link (create, write, remove), to
//! show what durability costs on this disk.
//!
//! It writes beneath `$VDELIVER_BENCH_DIR` (default: a temp dir), so admins
//! can measure their own mail filesystem:
//!
//! ```text
//! VDELIVER_BENCH_DIR=/var/vmail/bench cargo bench --bench maildir
//! ```

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::PathBuf;
use vdeliver::maildir::{MailRoot, Namer, TmpFile};

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

fn writer(c: &mut Criterion) {
    let (dir, _keep) = bench_dir();
    let root = MailRoot::open(&dir).expect("open bench dir");
    let md = root.maildir("bench/Maildir/", &[]).expect("maildir");
    let mut namer = Namer::new();
    let mut g = c.benchmark_group("maildir");
    for (label, size) in [
        ("1KB", 1024usize),
        ("100KB", 100 * 1024),
        ("10MB", 10 << 20),
    ] {
        let msg = vec![b'x'; size];
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            g.sample_size(10);
        } else {
            g.sample_size(50);
        }
        g.bench_with_input(BenchmarkId::new("durable", label), &msg, |b, msg| {
            b.iter(|| {
                let mut t = TmpFile::create(&md, &mut namer).expect("create");
                t.write_all(msg).expect("write");
                let name = t.commit(&mut namer).expect("commit");
                // Keep the directory small so every iteration is alike.
                std::fs::remove_file(dir.join("bench/Maildir/new").join(name)).expect("remove");
            })
        });
        g.bench_with_input(BenchmarkId::new("no_fsync", label), &msg, |b, msg| {
            b.iter(|| {
                let mut t = TmpFile::create(&md, &mut namer).expect("create");
                t.write_all(msg).expect("write");
                drop(t); // removes the tmp/ file
            })
        });
    }
    g.finish();
}

criterion_group!(benches, writer);
criterion_main!(benches);
