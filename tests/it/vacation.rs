//! Vacation replies (issue 12) queued through the stand-in qmail-queue: the
//! exact envelope and header, exactly one reply from 20 concurrent
//! deliveries, and a refused reply reported without being remembered.

use crate::common::site::qmail_queue_stub;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, Mode, OFlags};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use vdeliver::sieve::action::VacationReply;
use vdeliver::sieve::vacation::{self, Context, Limits, Reason, Response};

const HEADER: &[u8] = b"Return-Path: <bob@example.org>\n\
From: Bob <bob@example.org>\n\
To: Sales <sales@example.com>\n\
Subject: =?utf-8?q?Caf=C3=A9?=\n\
Message-ID: <m1@example.org>\n\
References: <r0@example.org>\n\
\n";

/// The stub, run with `STUB_DIR` and `STUB_EXIT` set (the library passes
/// its own environment to qmail-queue, so a wrapper sets them).
fn stub_in(dir: &Path, exit: i32) -> PathBuf {
    let wrapper = dir.join(format!("qq-{exit}"));
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nSTUB_DIR='{}' STUB_EXIT={exit} exec '{}'\n",
            dir.display(),
            qmail_queue_stub().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// (envelope, message) of each complete run of the stub in `dir`.
fn queued(dir: &Path) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "env") {
            let msg = fs::read(p.with_extension("msg")).unwrap();
            out.push((fs::read(&p).unwrap(), String::from_utf8(msg).unwrap()));
        }
    }
    out
}

fn open_dir(p: &Path) -> OwnedFd {
    rfs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

fn action() -> VacationReply {
    VacationReply {
        reason: "Back on Monday.\r\n".into(),
        mime: false,
        subject: None,
        from: None,
        addresses: Vec::new(),
        period: Some(86_400),
        handle: None,
    }
}

fn context<'a>(home: &'a OwnedFd, qq: &'a Path, aliases: &'a [String], now: i64) -> Context<'a> {
    Context {
        msg_headers: HEADER,
        envelope_sender: b"bob@example.org",
        recipient: "sales@example.com",
        account: "alice@example.com",
        aliases,
        home: home.as_fd(),
        memory_file: vacation::DEFAULT_MEMORY_FILE,
        qmail_queue: qq,
        hostname: "mx.example.com",
        now,
        limits: Limits::default(),
    }
}

#[test]
fn reply_through_an_alias_has_the_exact_envelope_and_header() {
    let home = tempfile::tempdir().unwrap();
    let q = tempfile::tempdir().unwrap();
    let qq = stub_in(q.path(), 0);
    let fd = open_dir(home.path());
    let aliases = vec!["sales@example.com".to_string()];
    let line = vacation::respond_line(&action(), &context(&fd, &qq, &aliases, 1_700_000_000));
    assert_eq!(line, "vacation reply sent to bob@example.org");

    let got = queued(q.path());
    assert_eq!(got.len(), 1);
    let (env, msg) = &got[0];
    assert_eq!(env, b"F\0Tbob@example.org\0\0");
    let (head, body) = msg.split_once("\n\n").unwrap();
    let lines: Vec<&str> = head.lines().collect();
    let id = lines[4];
    assert!(
        id.starts_with("Message-ID: <1700000000.") && id.ends_with(".vacation@mx.example.com>"),
        "{id}"
    );
    assert_eq!(
        lines,
        [
            "Date: Tue, 14 Nov 2023 22:13:20 +0000",
            "From: <sales@example.com>",
            "To: <bob@example.org>",
            "Subject: =?utf-8?B?QXV0bzogQ2Fmw6k=?=",
            id,
            "In-Reply-To: <m1@example.org>",
            "References: <r0@example.org>",
            " <m1@example.org>",
            "Auto-Submitted: auto-replied (vacation)",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 7bit",
        ]
    );
    assert_eq!(body, "Back on Monday.\n");
}

#[test]
fn twenty_concurrent_deliveries_queue_one_reply() {
    let home = tempfile::tempdir().unwrap();
    let q = tempfile::tempdir().unwrap();
    let qq = stub_in(q.path(), 0);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let (home, qq, barrier) = (home.path().to_path_buf(), qq.clone(), barrier.clone());
            std::thread::spawn(move || {
                let fd = open_dir(&home);
                let aliases = vec!["sales@example.com".to_string()];
                let mut cx = context(&fd, &qq, &aliases, 1_700_000_000 + i);
                cx.limits.lock_timeout = std::time::Duration::from_secs(60);
                barrier.wait();
                vacation::respond(&action(), &cx).0
            })
        })
        .collect();
    let results: Vec<Response> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let sent = results
        .iter()
        .filter(|r| matches!(r, Response::Sent(_)))
        .count();
    assert_eq!(sent, 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(
        r,
        Response::Sent(_) | Response::Skipped(Reason::AlreadyReplied)
    )));
    assert_eq!(queued(q.path()).len(), 1);
}

#[test]
fn refused_reply_is_reported_and_retried_later() {
    let home = tempfile::tempdir().unwrap();
    let q = tempfile::tempdir().unwrap();
    let fd = open_dir(home.path());
    let aliases: Vec<String> = Vec::new();
    let refusing = stub_in(q.path(), 31);
    let line = vacation::respond_line(&action(), &context(&fd, &refusing, &aliases, 1000));
    assert_eq!(
        line,
        "vacation failed: qmail-queue refused the message (exit 31)"
    );
    assert!(queued(q.path()).is_empty());
    let working = stub_in(q.path(), 0);
    let r = vacation::respond(&action(), &context(&fd, &working, &aliases, 1001)).0;
    assert_eq!(r, Response::Sent("bob@example.org".into()));
    assert_eq!(queued(q.path()).len(), 1);
}
