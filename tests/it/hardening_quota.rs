//! Issue 10, quota items: no bounce on figures that may have drifted
//! (item 4), the warning never takes the user's last slot and comes once
//! per crossing (item 5), files beneath the mail root that vdeliver writes
//! are replaced, never written through (item 13), and `vmailctl resolve`
//! says what vdeliver does to a mailbox full by count (item 12).

use crate::common::site::{qmail_env, Run, Site};
use crate::common::unpriv::{chown_for_unpriv, is_root, unpriv_uid_gid};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const ALICE: &str = "example.com/alice/Maildir/";
const TO: &str = "alice@example.com";
const FROM: &str = "bob@remote.org";
const MSG: &[u8] = b"From: bob@remote.org\nSubject: hardening\n\nSome text.\n";

fn stored_size() -> i64 {
    (format!("Return-Path: <{FROM}>\nDelivered-To: {TO}\n").len() + MSG.len()) as i64
}

/// A site with alice; `extra` is whole config sections.
fn site(extra: &str) -> Site {
    let s = Site::with_config(extra);
    s.account(TO);
    s
}

fn set_quota(s: &Site, bytes: Option<i64>, messages: Option<i64>) {
    let v = |n: Option<i64>| n.map_or("NULL".to_string(), |n| n.to_string());
    s.db.execute(&format!(
        "UPDATE accounts SET quota_bytes = {}, quota_messages = {} WHERE local_part = 'alice'",
        v(bytes),
        v(messages)
    ));
}

fn deliver(s: &Site) -> Run {
    s.deliver(TO, FROM, MSG)
}

fn assert_delivered(r: &Run) {
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("delivered to "), "{r:?}");
}

fn assert_full(r: &Run) {
    assert_eq!(r.code, Some(100), "{r:?}");
    assert_eq!(
        r.stdout,
        "Sorry, the mailbox of alice@example.com is full. (#5.2.2)\n"
    );
}

fn path(s: &Site, name: &str) -> PathBuf {
    s.maildir(ALICE).join(name)
}

/// (bytes, messages) of a `maildirsize`, summed the simple way.
fn sums(s: &Site) -> (String, i64, i64) {
    let text = fs::read_to_string(path(s, "maildirsize")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let (mut b, mut m) = (0, 0);
    for l in lines {
        let mut it = l.split_whitespace();
        b += it.next().unwrap().parse::<i64>().unwrap();
        m += it.next().unwrap().parse::<i64>().unwrap();
    }
    (header, b, m)
}

fn is_warning(s: &Site, sub: &str, name: &str) -> bool {
    fs::read_to_string(path(s, sub).join(name))
        .is_ok_and(|m| m.contains("\nAuto-Submitted: auto-generated\n"))
}

/// The names in new/ that are quota warnings, and those that are not.
fn split_new(s: &Site) -> (Vec<String>, Vec<String>) {
    s.files(ALICE, "new")
        .into_iter()
        .partition(|n| is_warning(s, "new", n))
}

/// Remove `n` user messages from new/ behind vdeliver's back, as a mail
/// client that does not speak Maildir++ does.
fn remove_user_messages(s: &Site, n: usize) {
    let (_, user) = split_new(s);
    assert!(user.len() >= n, "{user:?}");
    for name in &user[..n] {
        fs::remove_file(path(s, "new").join(name)).unwrap();
    }
}

fn backdate(p: &Path, ago: Duration) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// Item 4: messages removed without a `maildirsize` update (a mail client
/// that does not speak Maildir++), within the same minute as the last
/// refusal: the next message is delivered. A truly full mailbox still
/// bounces.
#[test]
fn issue10_removed_messages_never_bounce_on_stale_maildirsize() {
    let s = site("[quota]\nwarn_percent = 0\n");
    set_quota(&s, None, Some(3));
    for _ in 0..3 {
        assert_delivered(&deliver(&s));
    }
    // Full: refused, and the refusal leaves an exact one-line file.
    assert_full(&deliver(&s));
    let before = fs::read_to_string(path(&s, "maildirsize")).unwrap();
    assert_eq!(before, format!("3C\n{} 3\n", 3 * stored_size()));
    remove_user_messages(&s, 2);
    assert_delivered(&deliver(&s));
    assert_eq!(s.files(ALICE, "new").len(), 2);
    assert_delivered(&deliver(&s));
    // Truly full again: bounced, nothing stored.
    assert_full(&deliver(&s));
    assert_eq!(s.files(ALICE, "new").len(), 3);
    assert!(s.files(ALICE, "tmp").is_empty());

    // The same with a byte limit.
    set_quota(&s, Some(3 * stored_size()), None);
    assert_full(&deliver(&s));
    remove_user_messages(&s, 1);
    assert_delivered(&deliver(&s));
    assert_full(&deliver(&s));
    assert_eq!(
        sums(&s),
        (format!("{}S", 3 * stored_size()), 3 * stored_size(), 3)
    );
}

/// Item 5: a quota of N messages holds N messages of the user's with the
/// warning on (the default 90%), the (N+1)th bounces, and the crossing
/// gives exactly one warning, not charged.
#[test]
fn issue10_quota_of_n_messages_holds_n_user_messages_and_one_warning() {
    for n in [10usize, 3] {
        let s = site("");
        set_quota(&s, None, Some(n as i64));
        for i in 1..=n {
            assert_delivered(&deliver(&s));
            let (warn, user) = split_new(&s);
            assert_eq!(user.len(), i);
            // 90%: the warning comes with the delivery that crosses it.
            let crossed = i * 100 >= 90 * n;
            assert_eq!(warn.len(), usize::from(crossed), "n={n} i={i}");
        }
        assert_full(&deliver(&s));
        assert_full(&deliver(&s));
        let (warn, user) = split_new(&s);
        assert_eq!((warn.len(), user.len()), (1, n), "n={n}");
        // The file charges the user's messages only.
        let (_, b, m) = sums(&s);
        assert_eq!((b, m), (n as i64 * stored_size(), n as i64), "n={n}");
        // The warning is recorded for recalculations to leave out.
        let stamp = fs::read_to_string(path(&s, "quotawarn")).unwrap();
        assert!(warn[0].starts_with(stamp.trim_end()), "{stamp:?} {warn:?}");
        // Read (moved to cur/ with flags) it is still not counted.
        fs::rename(
            path(&s, "new").join(&warn[0]),
            path(&s, "cur").join(format!("{}:2,S", warn[0])),
        )
        .unwrap();
        fs::write(path(&s, "maildirsize"), format!("{n}C\n0 {n}\n0 0\n")).unwrap();
        chown_for_unpriv(&path(&s, "maildirsize"));
        assert_full(&deliver(&s));
        assert_eq!(sums(&s).2, n as i64, "n={n}");
    }
}

/// Item 5, bytes: a byte quota of four messages takes four, with the
/// warning on.
#[test]
fn issue10_byte_quota_holds_its_size_of_user_mail_and_one_warning() {
    let s = site("");
    set_quota(&s, Some(4 * stored_size()), None);
    for _ in 0..4 {
        assert_delivered(&deliver(&s));
    }
    assert_full(&deliver(&s));
    let (warn, user) = split_new(&s);
    assert_eq!((warn.len(), user.len()), (1, 4));
    assert_eq!(sums(&s).1, 4 * stored_size());
}

/// Item 5: one warning per crossing, none while the mailbox stays above
/// the mark (a day later included), and at most one a day when it
/// crosses again.
#[test]
fn issue10_one_warning_per_crossing_at_most_one_a_day() {
    let s = site("[quota]\nwarn_percent = 50\n");
    set_quota(&s, None, Some(10));
    let size = stored_size();
    let warnings = |s: &Site| split_new(s).0.len();
    for _ in 0..4 {
        assert_delivered(&deliver(&s));
    }
    assert_eq!(warnings(&s), 0);
    assert_delivered(&deliver(&s)); // 5 of 10: crosses 50%
    assert_eq!(warnings(&s), 1);
    assert_delivered(&deliver(&s));
    backdate(&path(&s, "quotawarn"), Duration::from_secs(25 * 3600));
    assert_delivered(&deliver(&s)); // still above, a day later: none
    assert_eq!(warnings(&s), 1);

    // Expunged through Maildir++ (a Dovecot-style negative line): below.
    let expunge = |s: &Site, k: usize| {
        remove_user_messages(s, k);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(path(s, "maildirsize"))
            .unwrap();
        use std::io::Write;
        writeln!(f, "-{} -{k}", k as i64 * size).unwrap();
    };
    // The last warning was today.
    backdate(&path(&s, "quotawarn"), Duration::ZERO);
    expunge(&s, 4); // 3 of 10
    assert_delivered(&deliver(&s)); // 4
    assert_delivered(&deliver(&s)); // 5: crosses, but was warned today...
    assert_eq!(warnings(&s), 1);
    // ...while the day before, it warns again.
    expunge(&s, 2); // 3
    fs::write(
        path(&s, "quotawarn"),
        fs::read(path(&s, "quotawarn")).unwrap(),
    )
    .unwrap();
    chown_for_unpriv(&path(&s, "quotawarn"));
    backdate(&path(&s, "quotawarn"), Duration::from_secs(25 * 3600));
    assert_delivered(&deliver(&s)); // 4
    assert_delivered(&deliver(&s)); // 5: crosses
    assert_eq!(warnings(&s), 2);
    let stamp = fs::read_to_string(path(&s, "quotawarn")).unwrap();
    assert_eq!(stamp.lines().count(), 2, "{stamp:?}");
    // Neither warning takes a slot: ten user messages fit.
    for _ in 0..5 {
        assert_delivered(&deliver(&s));
    }
    assert_full(&deliver(&s));
    let (warn, user) = split_new(&s);
    assert_eq!((warn.len(), user.len()), (2, 10));
    assert_eq!(sums(&s).2, 10);
}

/// A file outside the mail root on the same filesystem, owned by the mail
/// user (so vdeliver could write it), hard-linked in as `name`.
fn link_outside(s: &Site, name: &str, content: &[u8]) -> PathBuf {
    let outside = s.dir.path().join(format!("outside-{name}"));
    fs::write(&outside, content).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o600)).unwrap();
    chown_for_unpriv(&outside);
    let inside = path(s, name);
    let _ = fs::remove_file(&inside);
    fs::hard_link(&outside, &inside).unwrap();
    outside
}

/// The Maildir's file is vdeliver's own now: one link, the mail user's.
fn assert_own(p: &Path) {
    let m = fs::symlink_metadata(p).unwrap();
    assert!(m.is_file(), "{}", p.display());
    assert_eq!(m.nlink(), 1, "{}", p.display());
    assert_eq!(m.uid(), unpriv_uid_gid().0, "{}", p.display());
}

/// Item 13: a hard-linked `maildirsize` is replaced, not appended to.
#[test]
fn issue10_hard_linked_maildirsize_is_replaced_not_written_through() {
    let s = site("[quota]\nwarn_percent = 0\n");
    set_quota(&s, None, Some(10));
    assert_delivered(&deliver(&s));
    let content = b"10C\n0 0\n".to_vec();
    let outside = link_outside(&s, "maildirsize", &content);
    assert_delivered(&deliver(&s));
    assert_eq!(fs::read(&outside).unwrap(), content);
    assert_eq!(fs::metadata(&outside).unwrap().nlink(), 1);
    assert_own(&path(&s, "maildirsize"));
    assert_eq!(sums(&s), ("10C".to_string(), 2 * stored_size(), 2));
}

/// Item 13: a hard-linked `quotawarn` is replaced, not overwritten.
#[test]
fn issue10_hard_linked_quotawarn_is_replaced_not_overwritten() {
    let s = site("[quota]\nwarn_percent = 50\n");
    set_quota(&s, None, Some(4));
    assert_delivered(&deliver(&s));
    let content = b"keep me\n".to_vec();
    let outside = link_outside(&s, "quotawarn", &content);
    assert_delivered(&deliver(&s)); // 2 of 4: crosses 50%
    let (warn, _) = split_new(&s);
    assert_eq!(warn.len(), 1);
    assert_eq!(fs::read(&outside).unwrap(), content);
    assert_own(&path(&s, "quotawarn"));
    let stamp = fs::read_to_string(path(&s, "quotawarn")).unwrap();
    assert!(warn[0].starts_with(stamp.trim_end()), "{stamp:?} {warn:?}");
}

/// Item 13: a `maildirsize` vdeliver cannot open (root's, mode 0600, as an
/// admin tool run as root leaves it) or a symlink out of the root: the
/// directory is the mail user's, so it is replaced by rename; the
/// delivery neither defers nor touches what the name pointed to.
#[test]
fn issue10_foreign_or_symlinked_maildirsize_is_replaced() {
    let s = site("[quota]\nwarn_percent = 0\n");
    set_quota(&s, None, Some(10));
    assert_delivered(&deliver(&s));
    let p = path(&s, "maildirsize");
    if is_root() {
        std::os::unix::fs::lchown(&p, Some(0), Some(0)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let r = deliver(&s);
        assert_delivered(&r);
        assert_own(&p);
        assert_eq!(sums(&s), ("10C".to_string(), 2 * stored_size(), 2));
    }
    let outside = s.dir.path().join("outside-target");
    fs::write(&outside, b"10C\n0 0\n").unwrap();
    chown_for_unpriv(&outside);
    fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&outside, &p).unwrap();
    chown_for_unpriv(&p);
    let n = s.files(ALICE, "new").len() as i64;
    assert_delivered(&deliver(&s));
    assert_eq!(fs::read(&outside).unwrap(), b"10C\n0 0\n");
    assert_own(&p);
    assert_eq!(
        sums(&s),
        ("10C".to_string(), (n + 1) * stored_size(), n + 1)
    );
}

/// Item 12: `vmailctl resolve` says what delivery does to a mailbox full
/// by message count, on the same (recounted) figures.
#[test]
fn issue10_resolve_agrees_with_delivery_on_a_full_mailbox() {
    for policy in ["bounce", "defer"] {
        let s = site(&format!("[quota]\nover_quota = \"{policy}\"\n"));
        set_quota(&s, None, Some(3));
        let resolve = |s: &Site| -> Value {
            let r = s.ctl(&["resolve", TO, "--sender", FROM, "--json"], b"");
            serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"))
        };
        let agree = |s: &Site, want: i32| {
            let v = resolve(s);
            let d = s.deliver_env(&qmail_env(TO, FROM), MSG);
            assert_eq!(d.code, Some(want), "{policy}: {d:?}");
            assert_eq!(v["exit"].as_i64(), Some(i64::from(want)), "{policy}: {v}");
            assert_eq!(
                format!("{}\n", v["line"].as_str().unwrap()),
                d.stdout,
                "{policy}: resolve and vdeliver disagree"
            );
        };
        let full = if policy == "bounce" { 100 } else { 111 };
        for _ in 0..3 {
            agree(&s, 0);
        }
        agree(&s, full);
        // Exactly full by a file vdeliver trusts, not yet recounted.
        fs::write(
            path(&s, "maildirsize"),
            format!("3C\n{} 3\n", 3 * stored_size()),
        )
        .unwrap();
        chown_for_unpriv(&path(&s, "maildirsize"));
        let r = s.ctl(&["resolve", TO], b"");
        assert_eq!(r.code, Some(1), "{r:?}");
        agree(&s, full);
        // Emptied behind vdeliver's back: both see the room.
        remove_user_messages(&s, 1);
        agree(&s, 0);
        agree(&s, full);
    }
}
