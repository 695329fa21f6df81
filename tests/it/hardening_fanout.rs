//! Issue 10, items 1 and 12: a fan-out of any size delivers under a low
//! open-file limit (soft and hard), quota on or off, and `vmailctl
//! resolve` predicts what delivery does under the same limit.
//!
//! The site is made with SQL (2,000 accounts and one alias to all of them
//! in two statements) and most Maildirs are made directly on disk, so
//! that the time goes to the deliveries under test, not to the set-up.

use crate::common::site::{bin, qmail_env, Run, Site};
use crate::common::unpriv::chown_for_unpriv;
use serde_json::Value;
use std::fs;
use std::process::{Command, Stdio};

const N: usize = 2000;
/// Accounts whose Maildir does not exist yet: vdeliver makes them (with
/// their default folders) during the fan-out.
const MISSING: usize = 20;
const FROM: &str = "bob@remote.org";
const MSG: &[u8] = b"From: bob@remote.org\nSubject: everyone\n\nTo all 2,000 of you.\n";
/// The limit of the issue: soft and hard.
const NOFILE: &str = "--nofile=256:256";

fn local(i: usize) -> String {
    format!("u{i:04}")
}

/// Short Maildir paths, and only `tmp/` and `new/` made by the test: the
/// set-up makes thousands of directories.
fn maildir(i: usize) -> String {
    format!("example.com/{}/", local(i))
}

fn stored(to: &str) -> Vec<u8> {
    let mut v = format!("Return-Path: <{FROM}>\nDelivered-To: {to}\n").into_bytes();
    v.extend_from_slice(MSG);
    v
}

fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

/// `all@example.com` → u0000 … u1999@example.com, each an account. With
/// `dirs`, all but the last [`MISSING`] Maildirs exist (empty).
fn big_site(extra: &str, dirs: bool) -> Site {
    let s = Site::with_config(extra);
    s.db.execute(&format!(
        "INSERT INTO accounts (domain_id, local_part, maildir) \
           SELECT d.id, 'u' || lpad(g::text, 4, '0'), \
                  'example.com/u' || lpad(g::text, 4, '0') || '/' \
           FROM domains d, generate_series(0, {last}) g WHERE d.name = 'example.com';\n\
         INSERT INTO aliases (domain_id, local_part, destination) \
           SELECT d.id, 'all', 'u' || lpad(g::text, 4, '0') || '@example.com' \
           FROM domains d, generate_series(0, {last}) g WHERE d.name = 'example.com';",
        last = N - 1
    ));
    if dirs {
        for i in 0..N - MISSING {
            let md = s.maildir(&maildir(i));
            fs::create_dir_all(md.join("tmp")).unwrap();
            fs::create_dir(md.join("new")).unwrap();
        }
        chown_for_unpriv(&s.root);
    }
    s
}

/// vdeliver for `to` under `prlimit NOFILE`, as the unprivileged user.
fn deliver_limited(s: &Site, to: &str, nofile: &str) -> Run {
    let env = qmail_env(to, FROM);
    s.command_via(&env, &["prlimit"], &[nofile])
        .stdin(s.message_file(MSG))
        .output()
        .unwrap()
        .into()
}

/// `vmailctl resolve ADDR --json` under the same limit.
fn resolve_limited(s: &Site, addr: &str, nofile: &str) -> Value {
    let out = Command::new("prlimit")
        .arg(nofile)
        .arg("--")
        .arg(bin("vmailctl"))
        .arg("--config")
        .arg(&s.config)
        .args(["resolve", addr, "--sender", FROM, "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "resolve {addr}: {e}: {} {}",
            short(&text),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every Maildir holds `count` messages, each byte for byte the one sent,
/// and no `tmp/` file is left behind.
fn assert_all_delivered(s: &Site, count: usize) {
    let want = stored("all@example.com");
    for i in 0..N {
        let md = maildir(i);
        let files = s.files(&md, "new");
        assert_eq!(files.len(), count, "{md}new/: {files:?}");
        for f in files {
            let got = fs::read(s.maildir(&md).join("new").join(&f)).unwrap();
            assert!(
                got == want,
                "{md}new/{f}: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
        assert!(s.files(&md, "tmp").is_empty(), "{md}tmp/ not empty");
    }
}

/// The resolve and the delivery agree, exit code and line.
fn assert_agree(v: &Value, r: &Run) {
    let line = v["line"].as_str().unwrap_or("");
    assert_eq!(
        v["exit"].as_i64(),
        r.code.map(i64::from),
        "resolve {:?} vs vdeliver {r:?}",
        short(line)
    );
    assert!(
        format!("{line}\n") == r.stdout,
        "resolve and vdeliver disagree: {:?} vs {:?}",
        short(line),
        short(&r.stdout)
    );
}

#[test]
fn issue10_fan_out_to_2000_mailboxes_under_256_open_files_quota_off_and_on() {
    let s = big_site("", true);
    // Quota off.
    let v = resolve_limited(&s, "all@example.com", NOFILE);
    let r = deliver_limited(&s, "all@example.com", NOFILE);
    assert_eq!(r.code, Some(0), "{}", short(&r.stdout));
    assert!(
        r.stdout.starts_with("delivered to "),
        "{}",
        short(&r.stdout)
    );
    assert_all_delivered(&s, 1);
    assert_agree(&v, &r);
    assert!(!s.maildir(&maildir(0)).join("maildirsize").exists());

    // Quota on, 3 messages each. One member is full (its message and two
    // more in cur/): the whole delivery bounces, nothing more is stored
    // anywhere, whichever place that mailbox has in the lock order.
    s.db.execute(
        "UPDATE domains SET quota_bytes = 1000000, quota_messages = 3 \
         WHERE name = 'example.com'",
    );
    let full = maildir(N - MISSING - 1);
    fs::create_dir(s.maildir(&full).join("cur")).unwrap();
    for n in ["1.M1P1.x,S=10:2,S", "2.M2P2.x,S=10:2,S"] {
        fs::write(s.maildir(&full).join("cur").join(n), b"0123456789").unwrap();
    }
    chown_for_unpriv(&s.maildir(&full));
    let r = deliver_limited(&s, "all@example.com", NOFILE);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert_eq!(
        r.stdout,
        format!(
            "Sorry, the mailbox of {}@example.com is full. (#5.2.2)\n",
            local(N - MISSING - 1)
        )
    );
    assert_all_delivered(&s, 1);

    // Room again: every mailbox gets the message, and every maildirsize
    // is charged for it after the link (held or retaken lock alike).
    for e in fs::read_dir(s.maildir(&full).join("cur")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    // (As `vmailctl quota --recalc` would: stale figures are not the
    // subject here.)
    fs::remove_file(s.maildir(&full).join("maildirsize")).unwrap();
    let v = resolve_limited(&s, "all@example.com", NOFILE);
    let r = deliver_limited(&s, "all@example.com", NOFILE);
    assert_eq!(r.code, Some(0), "{}", short(&r.stdout));
    assert_all_delivered(&s, 2);
    assert_agree(&v, &r);
    let size = stored("all@example.com").len() as i64;
    for i in 0..N {
        let md = maildir(i);
        let text = fs::read_to_string(s.maildir(&md).join("maildirsize"))
            .unwrap_or_else(|e| panic!("{md}maildirsize: {e}"));
        let total: (i64, i64) = text.lines().skip(1).fold((0, 0), |(b, m), l| {
            let mut p = l.split_whitespace().map(|x| x.parse::<i64>().unwrap());
            (b + p.next().unwrap(), m + p.next().unwrap())
        });
        assert_eq!(total, (2 * size, 2), "{md}maildirsize: {text:?}");
    }
}

/// Item 12: under a limit too low for any delivery, resolve says what
/// vdeliver then does (111, the same line naming the limit), and nothing
/// is made or stored.
#[test]
fn issue10_resolve_predicts_an_open_file_limit_too_low_to_deliver() {
    let s = big_site("", false);
    let tiny = "--nofile=20:20";
    for to in ["all@example.com", "u0001@example.com"] {
        let v = resolve_limited(&s, to, tiny);
        let r = deliver_limited(&s, to, tiny);
        assert_eq!(r.code, Some(111), "{to}: {}", short(&r.stdout));
        assert!(
            r.stdout.contains("open-file limit (soft 20, hard 20)"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.ends_with("(#4.3.0)\n"), "{}", r.stdout);
        assert_agree(&v, &r);
        assert_eq!(fs::read_dir(&s.root).unwrap().count(), 0, "{to}");
    }
    // A soft limit that low is raised when the hard limit allows.
    let v = resolve_limited(&s, "u0001@example.com", "--nofile=20:64");
    assert_eq!(v["exit"].as_i64(), Some(0), "{v}");
    let r = deliver_limited(&s, "u0001@example.com", "--nofile=20:64");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_agree(&v, &r);
}

/// At the floor itself (32 files, soft and hard), everything a delivery
/// can do at once still fits: a fan-out with new Maildirs, folders,
/// quota files to create, warnings to send and a forward.
#[test]
fn issue10_fan_out_delivers_at_the_open_file_floor() {
    let stub = crate::common::site::qmail_queue_stub();
    let s = Site::with_config(&format!(
        "[forward]\nqmail_queue = \"{}\"\n[quota]\nwarn_percent = 1\n",
        stub.display()
    ));
    s.db.execute(
        "UPDATE domains SET quota_bytes = 1000, quota_messages = 10 \
         WHERE name = 'example.com';\n\
         INSERT INTO accounts (domain_id, local_part, maildir) \
           SELECT d.id, 'w' || g, 'example.com/w' || g || '/' \
           FROM domains d, generate_series(0, 59) g WHERE d.name = 'example.com';\n\
         INSERT INTO aliases (domain_id, local_part, destination) \
           SELECT d.id, 'team', 'w' || g || CASE WHEN g % 3 = 0 THEN '-sent' ELSE '' END \
                  || '@example.com' \
           FROM domains d, generate_series(0, 59) g WHERE d.name = 'example.com';\n\
         INSERT INTO aliases (domain_id, local_part, destination) \
           SELECT d.id, 'team', 'carol@remote.org' FROM domains d WHERE d.name = 'example.com';",
    );
    let mut env = qmail_env("team@example.com", FROM);
    env.extend(s.queue_env(0, &[]));
    let v = resolve_limited(&s, "team@example.com", "--nofile=32:32");
    let r: Run = s
        .command_via(&env, &["prlimit"], &["--nofile=32:32"])
        .stdin(s.message_file(MSG))
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, Some(0), "{}", short(&r.stdout));
    assert_agree(&v, &r);
    let want = stored("team@example.com");
    for g in 0..60 {
        let md = format!("example.com/w{g}/");
        let inbox = s.files(&md, "new");
        // The message (into .Sent for every third) and the quota warning
        // (its limit is 1,000 bytes: this message is past 1 %).
        let (msg_in, warnings) = if g % 3 == 0 {
            let (_, got) = s.only_message(&format!("{md}.Sent/"));
            assert!(got == want, "{md}.Sent/");
            (0, 1)
        } else {
            (1, 1)
        };
        assert_eq!(inbox.len(), msg_in + warnings, "{md}new/: {inbox:?}");
        assert!(s.maildir(&md).join("maildirsize").exists(), "{md}");
    }
    assert_eq!(s.queued().len(), 1);
}
