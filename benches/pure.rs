//! Benchmarks of the pure parts: what vdeliver does per message apart from
//! I/O. `cargo bench --bench pure` measures; `cargo bench --bench pure --
//! --test` runs each benchmark once as a smoke test.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;

use vdeliver::config;
use vdeliver::header::{self, HeaderScan, Verdict};
use vdeliver::names::{self, NameParts};
use vdeliver::recipient::{self, Overrides, QmailEnv};

const TARGETS: &[&str] = &["alice@example.com"];

/// A header as a large provider's message arrives with: about 3 KB of
/// Received, DKIM, ARC and list headers, then a short body.
fn ordinary_message() -> Vec<u8> {
    let mut m = String::new();
    m.push_str("Delivered-To: vmail-example.com-alice@example.com\n");
    for i in 0..6 {
        m.push_str(&format!(
            "Received: from mx{i}.remote.org (mx{i}.remote.org [192.0.2.{i}])\n\
             \tby mail.example.com (Postfix) with ESMTPS id 4F{i}A2B3C4D\n\
             \tfor <alice@example.com>; Mon, 17 Nov 2025 10:0{i}:00 +0000 (UTC)\n"
        ));
    }
    m.push_str(
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=remote.org; s=sel1;\n\
         \th=from:to:subject:date:message-id:mime-version:content-type;\n\
         \tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n\
         \tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaXMgbG9uZyBlbm91Z2gg\n\
         \t dG8gbG9vayBsaWtlIG9uZSBpbiBhIGJlbmNobWFyayBvZiBhIGhlYWRlciBzY2FubmVy\n\
         \t IHRoYXQgcmVhZHMgZXZlcnkgbGluZSBvZiB0aGUgaGVhZGVyIG9uY2UgYW5kIG9ubHkg\n",
    );
    m.push_str(
        "ARC-Seal: i=1; a=rsa-sha256; t=1763373600; cv=none; d=remote.org; s=arc;\n\
         \tb=b25lIG1vcmUgbG9uZyBiYXNlNjQgYmxvYiB0byBmaWxsIHRoZSBoZWFkZXIgdXAgdG8g\n\
         \t dGhyZWUga2lsb2J5dGVzIHdoaWNoIGlzIHR5cGljYWwgZm9yIG1haWwgZnJvbSBsYXJn\n\
         Authentication-Results: mail.example.com; dkim=pass header.d=remote.org;\n\
         \tspf=pass smtp.mailfrom=bob@remote.org; dmarc=pass header.from=remote.org\n\
         List-Id: <rust-users.lists.remote.org>\n\
         List-Unsubscribe: <mailto:rust-users-leave@lists.remote.org>\n\
         From: Bob <bob@remote.org>\n\
         To: Alice <alice@example.com>\n\
         Subject: Re: the benchmark numbers you asked for last week\n\
         Date: Mon, 17 Nov 2025 10:00:00 +0000\n\
         Message-ID: <20251117100000.GA12345@remote.org>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n",
    );
    while m.len() < 3000 {
        m.push_str("X-Spam-Report: score=-0.1 required=5.0 tests=BAYES_00,DKIM_SIGNED\n");
    }
    m.push('\n');
    m.push_str(&"Body text, never looked at by the scanner.\n".repeat(40));
    m.into_bytes()
}

/// 1 MB of header lines (a pathological but well-formed header).
fn huge_header() -> Vec<u8> {
    let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n";
    let mut m = Vec::with_capacity(1 << 20);
    while m.len() + line.len() < 1 << 20 {
        m.extend_from_slice(line);
    }
    m.extend_from_slice(b"\nbody\n");
    m
}

/// One 1 MB `Delivered-To:` line with no LF at all.
fn long_line() -> Vec<u8> {
    let mut m = b"Delivered-To: ".to_vec();
    m.resize(1 << 20, b'a');
    m
}

/// 100 000 one-character header lines.
fn tiny_lines() -> Vec<u8> {
    b"x\n".repeat(100_000)
}

fn header_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("header_scan");
    let inputs = [
        ("ordinary_3k", ordinary_message()),
        ("huge_header_1m", huge_header()),
        ("line_1m_no_lf", long_line()),
        ("tiny_lines_100k", tiny_lines()),
    ];
    for (name, msg) in &inputs {
        // The verdicts are part of what is measured: check them once.
        assert_eq!(header::scan(msg, TARGETS), Verdict::Clean, "{name}");
        // Bytes of header, which is all the scanner reads.
        let header_len = msg
            .windows(2)
            .position(|w| w == b"\n\n")
            .map_or(msg.len(), |i| i + 2);
        g.throughput(Throughput::Bytes(header_len as u64));
        g.bench_with_input(BenchmarkId::new("whole", name), msg, |b, msg| {
            b.iter(|| header::scan(black_box(msg), TARGETS))
        });
        // As vdeliver reads stdin: in 64 KiB chunks.
        g.bench_with_input(BenchmarkId::new("chunks_64k", name), msg, |b, msg| {
            b.iter(|| {
                let mut s = HeaderScan::new(TARGETS);
                for chunk in black_box(msg).chunks(64 * 1024) {
                    s.feed(chunk);
                }
                s.finish()
            })
        });
    }
    g.finish();
}

fn recipient_parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("recipient");
    let forms = [
        (
            "qmail",
            QmailEnv {
                host: Some("Example.COM".as_bytes()),
                ext: Some("example.com-Alice".as_bytes()),
                default: Some("example.com-Alice".as_bytes()),
                sender: Some("bob@remote.org".as_bytes()),
                rpline: Some("Return-Path: <bob@remote.org>\n".as_bytes()),
            },
        ),
        (
            "vpopmail",
            QmailEnv {
                host: Some("example.com".as_bytes()),
                ext: Some("alice".as_bytes()),
                default: None,
                sender: Some("bob@remote.org".as_bytes()),
                rpline: None,
            },
        ),
        (
            "idn",
            QmailEnv {
                host: Some("Bücher.Example".as_bytes()),
                ext: Some("ann".as_bytes()),
                default: None,
                sender: Some("bob@remote.org".as_bytes()),
                rpline: None,
            },
        ),
    ];
    let none = Overrides::default();
    for (name, env) in &forms {
        assert!(recipient::recipient(env, &none).is_ok(), "{name}");
        g.bench_with_input(BenchmarkId::new("recipient", name), env, |b, env| {
            b.iter(|| recipient::recipient(black_box(env), &none))
        });
        g.bench_with_input(BenchmarkId::new("return_path", name), env, |b, env| {
            b.iter(|| recipient::return_path(black_box(env), &none))
        });
    }
    g.finish();
}

fn unique_names(c: &mut Criterion) {
    let mut g = c.benchmark_group("names");
    let host = "mx1.mail.example.com";
    g.bench_function("escape_host", |b| {
        b.iter(|| names::escape_host(black_box(host)))
    });
    let escaped = names::escape_host(host);
    let parts = NameParts {
        secs: 1_763_373_600,
        usec: 123_456,
        pid: 31_337,
        seq: 2,
        random: 0x0123_4567_89ab_cdef,
        host: &escaped,
    };
    g.bench_function("unique_and_new_name", |b| {
        b.iter(|| names::new_name(&names::unique(black_box(&parts)), black_box(4711)))
    });
    let name = format!("{}:2,S", names::new_name(&names::unique(&parts), 4711));
    g.bench_function("size_from_name", |b| {
        b.iter(|| names::size_from_name(black_box(&name)))
    });
    g.finish();
}

fn config_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("config");
    let full = r#"
[database]
url = "host=/run/postgresql dbname=mail user=vmail"
connect_timeout = "3s"
statement_timeout = "500ms"

[mail]
root = "/srv/vmail"
folders = ["Drafts", "Sent", "Trash", "Junk"]
lowercase_local_part = true

[delivery]
deadline = "24h"
"#;
    let path = Path::new("/etc/vdeliver/config.toml");
    for (name, text) in [("empty", ""), ("full", full)] {
        assert!(config::parse(path, text).is_ok(), "{name}");
        if !text.is_empty() {
            g.throughput(Throughput::Bytes(text.len() as u64));
        }
        g.bench_with_input(BenchmarkId::new("parse", name), text, |b, text| {
            b.iter(|| config::parse(path, black_box(text)))
        });
    }
    g.finish();
}

/// Resolution planning over facts already fetched: a plain account, an
/// extension, and an alias to three local accounts and a remote address.
fn resolution(c: &mut Criterion) {
    use vdeliver::plan::{self, AccountFacts, DomainFacts, Facts, LocalFacts, Rules, Step};
    let mut facts = Facts::default();
    facts.domains.insert(
        "example.com".into(),
        Some(DomainFacts {
            primary: "example.com".into(),
            active: true,
            catchalls: Vec::new(),
        }),
    );
    let account = |l: &str| LocalFacts {
        account: Some(AccountFacts {
            maildir: format!("example.com/{l}/Maildir/"),
            active: true,
            quota_bytes: None,
            quota_messages: None,
            junk: None,
        }),
        ..LocalFacts::default()
    };
    for l in ["alice", "bob", "carol"] {
        facts
            .locals
            .insert(("example.com".into(), l.into()), account(l));
    }
    facts.locals.insert(
        ("example.com".into(), "team".into()),
        LocalFacts {
            aliases: ["alice", "bob", "carol"]
                .iter()
                .map(|l| format!("{l}@example.com"))
                .chain(["dave@remote.org".to_string()])
                .collect(),
            ..LocalFacts::default()
        },
    );
    let rules = Rules::default();
    for l in ["alice", "alice-lists", "bob", "carol", "team", "dave"] {
        facts.asked.insert(("example.com".into(), l.into()));
    }
    facts.domains.insert("remote.org".into(), None);
    facts.asked.insert(("remote.org".into(), "dave".into()));
    let mut g = c.benchmark_group("resolve");
    for local in ["alice", "alice-lists", "team"] {
        let rcpt = recipient::Recipient {
            local_as_addressed: local.into(),
            local: local.into(),
            domain: "example.com".into(),
        };
        g.bench_function(local, |b| {
            b.iter(|| match plan::resolve(black_box(&rcpt), &facts, &rules) {
                Ok(Step::Done(p)) => p,
                other => panic!("{other:?}"),
            })
        });
    }
    g.finish();
}

/// maildirsize parsing: Courier's padded form with 200 data lines.
fn maildirsize_parse(c: &mut Criterion) {
    let mut file = b"1000000000S,50000C\n".to_vec();
    for i in 0..200 {
        file.extend_from_slice(format!("{:>14} {:>6}\n", 4000 + i, 1).as_bytes());
    }
    let mut g = c.benchmark_group("maildirsize");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("parse_200_lines", |b| {
        b.iter(|| vdeliver::maildirsize::parse(black_box(&file)).is_ok())
    });
    g.finish();
}

criterion_group!(
    benches,
    header_scan,
    recipient_parsing,
    unique_names,
    config_parse,
    resolution,
    maildirsize_parse
);
criterion_main!(benches);
