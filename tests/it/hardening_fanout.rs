//! Issue 10, items 1 and 12: a fan-out of any size delivers under a low
//! open-file limit (soft and hard), quota on or off, and `vmailctl
//! resolve` predicts what delivery does under the same limit.
//!
//! The site is made with SQL (2,000 accounts and one alias to all of them
//! in two statements) and most Maildirs are made directly on disk, so
//! that the time goes to the delivery under test, not to the set-up.

use crate::common::site::{bin, qmail_env, Run, Site};
use crate::common::unpriv::chown_for_unpriv;
use serde_json::Value;
use std::fs;
use std::process::{Command, Stdio};

const N: usize = 2000;
/// Accounts whose Maildir does not exist yet: vdeliver creates them (with
/// their default folders) during the fan-out.
const MISSING: usize = 50;
const FROM: &str = "bob@remote.org";
const MSG: &[u8] = b"From: bob@remote.org\nSubject: everyone\n\nTo all 2,000 of you.\n";
/// The limit of the issue: soft and hard.
const NOFILE: &str = "--nofile=256:256";

fn local(i: usize) -> String {
    format!("u{i:04}")
}

fn maildir(i: usize) -> String {
    format!("example.com/{}/Maildir/", local(i))
}

fn stored(to: &str) -> Vec<u8> {
    let mut v = format!("Return-Path: <{FROM}>\nDelivered-To: {to}\n").into_bytes();
    v.extend_from_slice(MSG);
    v
}

/// `all@example.com` → u0000 … u1999@example.com, each an account; all
/// but the last [`MISSING`] Maildirs exist (empty), the rest do not.
fn big_site(extra: &str) -> Site {
    let s = Site::with_config(extra);
    s.db.execute(&format!(
        "INSERT INTO accounts (domain_id, local_part, maildir) \
           SELECT d.id, 'u' || lpad(g::text, 4, '0'), \
                  'example.com/u' || lpad(g::text, 4, '0') || '/Maildir/' \
           FROM domains d, generate_series(0, {last}) g WHERE d.name = 'example.com';\n\
         INSERT INTO aliases (domain_id, local_part, destination) \
           SELECT d.id, 'all', 'u' || lpad(g::text, 4, '0') || '@example.com' \
           FROM domains d, generate_series(0, {last}) g WHERE d.name = 'example.com';",
        last = N - 1
    ));
    for i in 0..N - MISSING {
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(s.maildir(&maildir(i)).join(sub)).unwrap();
        }
    }
    chown_for_unpriv(&s.root);
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
            "resolve {addr}: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every Maildir holds exactly the one message, byte for byte, and no
/// `tmp/` file is left behind.
fn assert_all_delivered(s: &Site) {
    let want = stored("all@example.com");
    for i in 0..N {
        let md = maildir(i);
        let (_, got) = s.only_message(&md);
        assert!(got == want, "{md}: {:?}", String::from_utf8_lossy(&got));
        assert!(s.files(&md, "tmp").is_empty(), "{md}tmp/ not empty");
    }
}

fn assert_nothing_delivered(s: &Site) {
    for i in 0..N {
        let md = maildir(i);
        assert!(s.files(&md, "new").is_empty(), "{md}new/ not empty");
        assert!(s.files(&md, "tmp").is_empty(), "{md}tmp/ not empty");
    }
}

/// The resolve and the delivery agree, exit code and line.
fn assert_agree(v: &Value, r: &Run) {
    assert_eq!(v["exit"].as_i64(), r.code.map(i64::from), "{v} vs {r:?}");
    assert_eq!(
        format!("{}\n", v["line"].as_str().unwrap_or("")),
        r.stdout,
        "resolve and vdeliver disagree"
    );
}

#[test]
fn issue10_fan_out_to_2000_mailboxes_under_256_open_files_without_quota() {
    let s = big_site("");
    let v = resolve_limited(&s, "all@example.com", NOFILE);
    let r = deliver_limited(&s, "all@example.com", NOFILE);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("delivered to "), "{}", r.stdout);
    assert_all_delivered(&s);
    assert_agree(&v, &r);
    // No quota anywhere: no maildirsize was made.
    assert!(!s.maildir(&maildir(0)).join("maildirsize").exists());
}

#[test]
fn issue10_fan_out_to_2000_mailboxes_under_256_open_files_with_quota() {
    let s = big_site("[quota]\nwarn_percent = 0\n");
    s.db.execute(
        "UPDATE domains SET quota_bytes = 1000000, quota_messages = 2 \
         WHERE name = 'example.com'",
    );
    // One member is full (two messages already in cur/): the whole
    // delivery bounces, and nothing is stored anywhere. The full one sits
    // at the end of the list, far beyond any open-file budget.
    let full = maildir(N - MISSING - 1);
    for n in ["1.M1P1.x,S=10:2,S", "2.M2P2.x,S=10:2,S"] {
        fs::write(s.maildir(&full).join("cur").join(n), b"0123456789").unwrap();
    }
    chown_for_unpriv(&s.root);
    let v = resolve_limited(&s, "all@example.com", NOFILE);
    let r = deliver_limited(&s, "all@example.com", NOFILE);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert_eq!(
        r.stdout,
        format!(
            "Sorry, the mailbox of {}@example.com is full. (#5.2.2)\n",
            local(N - MISSING - 1)
        )
    );
    assert_nothing_delivered(&s);
    assert_agree(&v, &r);

    // Room again: every mailbox gets the message, and every maildirsize
    // is charged for it after the link.
    for e in fs::read_dir(s.maildir(&full).join("cur")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let v = resolve_limited(&s, "all@example.com", NOFILE);
    let r = deliver_limited(&s, "all@example.com", NOFILE);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_all_delivered(&s);
    assert_agree(&v, &r);
    let size = stored("all@example.com").len();
    for i in 0..N {
        let md = maildir(i);
        let text = fs::read_to_string(s.maildir(&md).join("maildirsize"))
            .unwrap_or_else(|e| panic!("{md}maildirsize: {e}"));
        let total: (i64, i64) = text.lines().skip(1).fold((0, 0), |(b, m), l| {
            let mut p = l.split_whitespace().map(|x| x.parse::<i64>().unwrap());
            (b + p.next().unwrap(), m + p.next().unwrap())
        });
        assert_eq!(total, (size as i64, 1), "{md}maildirsize: {text:?}");
    }
}

/// Item 12: under a limit too low for any delivery, resolve says what
/// vdeliver then does (111, the same line), and nothing is stored.
#[test]
fn issue10_resolve_predicts_an_open_file_limit_too_low_to_deliver() {
    let s = big_site("");
    let tiny = "--nofile=20:20";
    let v = resolve_limited(&s, "all@example.com", tiny);
    let r = deliver_limited(&s, "all@example.com", tiny);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("open-file limit"), "{}", r.stdout);
    assert!(r.stdout.ends_with("(#4.3.0)\n"), "{}", r.stdout);
    assert_agree(&v, &r);
    assert_nothing_delivered(&s);
    // The same for a single mailbox.
    let v = resolve_limited(&s, "u0001@example.com", tiny);
    let r = deliver_limited(&s, "u0001@example.com", tiny);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert_agree(&v, &r);
    assert!(s.files(&maildir(1), "new").is_empty());
    // And the line names the limit, so the postmaster knows what to raise.
    assert!(r.stdout.contains("20"), "{}", r.stdout);
}
