//! Sieve and Junk routing in delivery (issue 12): the real vdeliver, a real
//! database, a real mail root, scripts put and activated with `vmailctl
//! sieve` (where ManageSieve keeps them), forwards and replies through the
//! stand-in qmail-queue.

use crate::common::site::{qmail_env, Queued, Run, Site};
use std::fs;
use std::path::Path;

const ALICE: &str = "example.com/alice/Maildir/";
const HOME: &str = "example.com/alice";

fn msg(subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@remote.org>\nTo: alice@example.com\nSubject: {subject}\nMessage-ID: <{subject}@remote.org>\n{extra}\nHello Alice.\n"
    )
    .into_bytes()
}

/// Put `text` as the script `main` of `address` and activate it.
fn script(s: &Site, address: &str, text: &str) {
    let r = s.ctl(&["sieve", "put", address, "main", "-"], text.as_bytes());
    assert_eq!(r.code, Some(0), "{r:?}");
    s.ctl_ok(&["sieve", "activate", address, "main"]);
}

/// Deliver with the stub qmail-queue in place.
fn deliver(s: &Site, to: &str, from: &str, m: &[u8]) -> Run {
    let mut env = qmail_env(to, from);
    env.extend(s.queue_env(0, &[]));
    s.deliver_env(&env, m)
}

fn stored(from: &str, dt: &str, m: &[u8]) -> Vec<u8> {
    let mut v = format!("Return-Path: <{from}>\nDelivered-To: {dt}\n").into_bytes();
    v.extend_from_slice(m);
    v
}

/// Every file in `<ALICE><dir>/{new,cur}`, as (sub/name, bytes).
fn messages(s: &Site, dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let rel = format!("{ALICE}{dir}");
        for f in s.files(&rel, sub) {
            let bytes = fs::read(s.maildir(&rel).join(sub).join(&f)).unwrap();
            out.push((format!("{sub}/{f}"), bytes));
        }
    }
    out
}

fn log(s: &Site) -> String {
    fs::read_to_string(s.root.join(HOME).join(".dovecot.sieve.log")).unwrap_or_default()
}

fn no_tmp_left(s: &Site) {
    let walk = |dir: &Path| -> Vec<String> {
        let mut v = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && p.file_name().is_some_and(|n| n == "tmp") {
                for f in fs::read_dir(&p).unwrap() {
                    v.push(f.unwrap().path().display().to_string());
                }
            }
        }
        v
    };
    let md = s.maildir(ALICE);
    let mut left = walk(&md);
    for e in fs::read_dir(&md).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with('.') {
            left.extend(walk(&p));
        }
    }
    assert!(left.is_empty(), "tmp/ files left: {left:?}");
}

#[test]
fn fileinto_with_flags_goes_into_the_folders_cur_with_info() {
    let s = Site::new();
    s.account("alice@example.com");
    script(
        &s,
        "alice@example.com",
        "require [\"fileinto\", \"imap4flags\", \"mailbox\"];\n\
         if header :contains \"subject\" \"report\" {\n\
           addflag [\"\\\\Seen\", \"\\\\Flagged\"];\n\
           fileinto :create \"Reports.Weekly\";\n\
         }\n",
    );
    let m = msg("weekly report", "");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &m);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains(".Reports.Weekly/ (flags FS)"),
        "{}",
        r.stdout
    );
    let got = messages(&s, ".Reports.Weekly/");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].0.starts_with("cur/") && got[0].0.ends_with(":2,FS"),
        "{}",
        got[0].0
    );
    assert_eq!(got[0].1, stored("bob@remote.org", "alice@example.com", &m));
    // Dovecot would see it: a Maildir++ folder with its marker.
    assert!(s
        .maildir(ALICE)
        .join(".Reports.Weekly/maildirfolder")
        .is_file());
    assert!(messages(&s, "").is_empty());
    // Another message: the implicit keep, INBOX new/ without flags.
    let m2 = msg("lunch", "");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &m2);
    assert_eq!(r.stdout, format!("delivered to {ALICE}\n"));
    let inbox = messages(&s, "");
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].0.starts_with("new/"));
    no_tmp_left(&s);
}

#[test]
fn a_missing_folder_keeps_in_inbox_and_logs() {
    let s = Site::new();
    s.account("alice@example.com");
    script(
        &s,
        "alice@example.com",
        "require \"fileinto\"; fileinto \"Nowhere\";",
    );
    let m = msg("x", "");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &m);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.starts_with(&format!("delivered to {ALICE};")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Nowhere"), "{}", r.stdout);
    assert_eq!(messages(&s, "").len(), 1);
    assert!(!s.maildir(ALICE).join(".Nowhere").exists());
    assert!(log(&s).contains("Nowhere"), "{}", log(&s));
}

#[test]
fn a_broken_script_keeps_the_message_and_logs_the_error() {
    let s = Site::new();
    s.account("alice@example.com");
    script(&s, "alice@example.com", "keep;");
    // Broken by hand after activation (put would refuse it).
    fs::write(
        s.root.join(HOME).join("sieve/main.sieve"),
        "require \"nosuchext\"; keep;",
    )
    .unwrap();
    let m = msg("x", "");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &m);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("nosuchext"), "{}", r.stdout);
    assert_eq!(messages(&s, "").len(), 1);
    assert!(log(&s).contains("nosuchext"), "{}", log(&s));
    // A run-time error alike: a redirect beyond the limit.
    script(
        &s,
        "alice@example.com",
        "redirect \"a@remote.org\"; redirect \"b@remote.org\"; redirect \"c@remote.org\"; \
         redirect \"d@remote.org\"; redirect \"e@remote.org\";",
    );
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("y", ""));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("redirect"), "{}", r.stdout);
    assert_eq!(messages(&s, "").len(), 2);
    assert!(
        s.queued().is_empty(),
        "nothing of a failed run is carried out"
    );
}

#[test]
fn discard_reject_and_a_bounce_that_is_not_rejected() {
    let s = Site::new();
    s.account("alice@example.com");
    script(&s, "alice@example.com", "discard;");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("x", ""));
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (Some(0), "discarded: by sieve\n")
    );
    assert!(messages(&s, "").is_empty());
    no_tmp_left(&s);

    script(
        &s,
        "alice@example.com",
        "require \"reject\"; reject \"I do not want mail from you\";",
    );
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("y", ""));
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(
        r.stdout.contains("I do not want mail from you") && r.stdout.ends_with("(#5.7.1)\n"),
        "{}",
        r.stdout
    );
    assert!(messages(&s, "").is_empty());
    no_tmp_left(&s);

    // A bounce (empty sender) is never rejected: that would double-bounce.
    let r = deliver(&s, "alice@example.com", "", &msg("z", ""));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.starts_with("discarded: by sieve;"), "{}", r.stdout);
    assert!(r.stdout.contains("sender is empty"), "{}", r.stdout);
    assert!(messages(&s, "").is_empty());
}

#[test]
fn redirects_go_through_qmail_queue_and_loops_are_refused() {
    let s = Site::new();
    s.account("alice@example.com");
    script(
        &s,
        "alice@example.com",
        "require \"copy\"; redirect :copy \"carol@remote.org\"; redirect \"dave@remote.org\";",
    );
    let m = msg("fwd", "");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &m);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "forwarded to 2\n");
    let q = s.queued();
    assert_eq!(
        q,
        vec![Queued {
            message: stored("x", "alice@example.com", &m)
                .split_at("Return-Path: <x>\n".len())
                .1
                .to_vec(),
            sender: "bob@remote.org".into(),
            recipients: vec!["carol@remote.org".into(), "dave@remote.org".into()],
        }]
    );
    // The :copy does not keep by itself, the plain redirect cancelled it.
    assert!(messages(&s, "").is_empty());
    no_tmp_left(&s);

    // To an address that led here: refused, kept, logged.
    s.ctl_ok(&["alias", "add", "sales@example.com", "alice@example.com"]);
    script(&s, "alice@example.com", "redirect \"Sales@example.com\";");
    let r = deliver(&s, "sales@example.com", "bob@remote.org", &msg("loop", ""));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("would loop"), "{}", r.stdout);
    assert_eq!(messages(&s, "").len(), 1);
    assert_eq!(s.queued().len(), 1, "nothing more queued");
    assert!(log(&s).contains("would loop"));
}

#[test]
fn vacation_replies_once_also_through_an_alias() {
    let s = Site::new();
    s.account("alice@example.com");
    s.ctl_ok(&["alias", "add", "sales@example.com", "alice@example.com"]);
    script(
        &s,
        "alice@example.com",
        "require \"vacation\"; vacation :days 2 :subject \"Away\" \"Back on Monday.\";",
    );
    let m = b"From: Bob <bob@remote.org>\nTo: Sales <sales@example.com>\nSubject: prices\nMessage-ID: <p1@remote.org>\n\nHow much?\n";
    let r = deliver(&s, "sales@example.com", "bob@remote.org", m);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.contains("vacation reply sent to bob@remote.org"),
        "{}",
        r.stdout
    );
    assert_eq!(messages(&s, "").len(), 1, "the message is kept as well");
    let q = s.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].sender, "");
    assert_eq!(q[0].recipients, vec!["bob@remote.org".to_string()]);
    let reply = String::from_utf8(q[0].message.clone()).unwrap();
    for want in [
        "Auto-Submitted: auto-replied",
        "In-Reply-To: <p1@remote.org>",
        "Subject: Away",
        "To: <bob@remote.org>",
        "Back on Monday.",
    ] {
        assert!(reply.contains(want), "{want:?} missing in\n{reply}");
    }
    // Once per period.
    let r = deliver(&s, "sales@example.com", "bob@remote.org", m);
    assert!(r.stdout.contains("vacation skipped"), "{}", r.stdout);
    assert_eq!(s.queued().len(), 1);
    // A list message gets none.
    let list = b"From: list@remote.org\nTo: alice@example.com\nList-Id: <l.remote.org>\nSubject: digest\n\nx\n";
    let r = deliver(&s, "alice@example.com", "list-bounces@remote.org", list);
    assert!(r.stdout.contains("vacation skipped"), "{}", r.stdout);
    assert_eq!(s.queued().len(), 1);
    assert_eq!(messages(&s, "").len(), 3);
}

/// No vacation reply to mail the site's Junk verdict marks as spam (its
/// sender is most likely forged: a reply is backscatter), whether or not
/// the account routes it to Junk; the message itself is stored as always,
/// and the reply memory is not touched, so the sender's next real message
/// is answered. Only the topmost verdict counts, as for Junk routing.
#[test]
fn no_vacation_reply_to_mail_the_verdict_marks_as_spam() {
    let s = Site::new();
    s.account("alice@example.com");
    script(
        &s,
        "alice@example.com",
        "require \"vacation\"; vacation :days 2 :subject \"Away\" \"Back on Monday.\";",
    );
    let spam = msg("cheap", "X-Spam-Flag: YES\n");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &spam);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        format!(
            "delivered to {ALICE}; vacation skipped: the message is marked as spam \
             (X-Spam-Flag: YES)\n"
        )
    );
    assert!(s.queued().is_empty(), "no reply queued");
    assert_eq!(
        messages(&s, "").len(),
        1,
        "the message is kept (junk off: INBOX)"
    );
    // The same verdict by another configured header, any case.
    let r = deliver(
        &s,
        "alice@example.com",
        "bob@remote.org",
        &msg("c2", "X-Spam-Status: yes, score=12\n"),
    );
    assert!(
        r.stdout.contains("marked as spam (X-Spam-Status: Yes)"),
        "{}",
        r.stdout
    );
    assert!(s.queued().is_empty());
    // A verdict below the scanner's is the sender's own: not spam, replied.
    let forged = b"X-Spam-Flag: NO\nFrom: bob@remote.org\nTo: alice@example.com\nX-Spam-Flag: YES\nSubject: real\n\nx\n";
    let r = deliver(&s, "alice@example.com", "bob@remote.org", forged);
    assert!(
        r.stdout.contains("vacation reply sent to bob@remote.org"),
        "{}",
        r.stdout
    );
    assert_eq!(s.queued().len(), 1);
    assert_eq!(messages(&s, "").len(), 3);
    // With Junk routing on, the spam goes to Junk and is not answered.
    let j = Site::with_config("[junk]\nenabled = true\n");
    j.account("alice@example.com");
    script(
        &j,
        "alice@example.com",
        "require \"vacation\"; vacation :days 2 \"Away.\";",
    );
    let r = deliver(&j, "alice@example.com", "bob@remote.org", &spam);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.starts_with(&format!(
            "delivered to {ALICE}.Junk/; vacation skipped: the message is marked as spam"
        )),
        "{}",
        r.stdout
    );
    assert!(j.queued().is_empty());
    // vmailctl resolve --message says the same.
    let file = j.dir.path().join("m.eml");
    fs::write(&file, &spam).unwrap();
    let out = j.ctl_ok(&[
        "resolve",
        "alice@example.com",
        "--message",
        &file.display().to_string(),
    ]);
    assert!(
        out.contains("vacation reply (not sent: the message is marked as spam (X-Spam-Flag: YES))"),
        "{out}"
    );
}

#[test]
fn junk_routing_by_the_topmost_verdict_and_fileinto_wins() {
    let s = Site::with_config("[junk]\nenabled = true\n");
    s.account("alice@example.com");
    let spam = msg("cheap", "X-Spam-Flag: YES\n");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &spam);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Junk/\n"));
    assert_eq!(messages(&s, ".Junk/").len(), 1);
    // A forged verdict below the scanner's does not count.
    let forged = b"X-Spam-Flag: NO\nFrom: bob@remote.org\nX-Spam-Flag: YES\nSubject: ok\n\nx\n";
    let r = deliver(&s, "alice@example.com", "bob@remote.org", forged);
    assert_eq!(r.stdout, format!("delivered to {ALICE}\n"));
    // rspamd's header, any case.
    let r = deliver(
        &s,
        "alice@example.com",
        "bob@remote.org",
        &msg("r", "X-Spam: yes\n"),
    );
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Junk/\n"));
    // The user's fileinto wins over Junk routing.
    script(
        &s,
        "alice@example.com",
        "require [\"fileinto\", \"mailbox\"]; if header :contains \"subject\" \"cheap\" { fileinto :create \"Deals\"; }",
    );
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &spam);
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Deals/\n"));
    // ... and its implicit keep of other spam still goes to Junk.
    let r = deliver(
        &s,
        "alice@example.com",
        "bob@remote.org",
        &msg("other", "X-Spam-Status: Yes, score=9.1\n"),
    );
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Junk/\n"));
    // Off for one account: INBOX.
    s.db.execute("UPDATE accounts SET junk = false WHERE local_part = 'alice'");
    let r = deliver(
        &s,
        "alice@example.com",
        "bob@remote.org",
        &msg("c", "X-Spam-Flag: YES\n"),
    );
    assert_eq!(r.stdout, format!("delivered to {ALICE}\n"));
}

#[test]
fn quota_counts_every_copy() {
    let s = Site::new();
    s.account("alice@example.com");
    s.db.execute("UPDATE accounts SET quota_messages = 2 WHERE local_part = 'alice'");
    script(
        &s,
        "alice@example.com",
        "require [\"fileinto\", \"copy\"]; fileinto :copy \"Sent\"; fileinto :copy \"Trash\";",
    );
    // Three copies (Sent, Trash, the implicit keep) > 2 messages.
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("x", ""));
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.2.2)\n"), "{}", r.stdout);
    assert!(messages(&s, "").is_empty() && messages(&s, ".Sent/").is_empty());
    no_tmp_left(&s);
    // (Ten: three of three would also put a quota warning in the INBOX.)
    s.db.execute("UPDATE accounts SET quota_messages = 10 WHERE local_part = 'alice'");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("x", ""));
    assert_eq!(r.code, Some(0), "{r:?}");
    for d in ["", ".Sent/", ".Trash/"] {
        assert_eq!(
            messages(&s, d).len(),
            1,
            "{d} {:?} {r:?}",
            messages(&s, d)
                .iter()
                .map(|m| m.0.clone())
                .collect::<Vec<_>>()
        );
    }
    let size = fs::read_to_string(s.maildir(ALICE).join("maildirsize")).unwrap();
    let count: i64 = size
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(count, 3, "{size}");
}

#[test]
fn duplicate_is_remembered_after_delivery() {
    let s = Site::new();
    s.account("alice@example.com");
    script(
        &s,
        "alice@example.com",
        "require \"duplicate\"; if duplicate { discard; }",
    );
    let m = msg("same", "");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &m);
    assert_eq!(r.stdout, format!("delivered to {ALICE}\n"));
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &m);
    assert_eq!(r.stdout, "discarded: by sieve\n");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("other", ""));
    assert_eq!(r.stdout, format!("delivered to {ALICE}\n"));
    assert_eq!(messages(&s, "").len(), 2);
}

#[test]
fn global_scripts_run_around_the_users_while_keep_is_in_effect() {
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.sieve");
    let after = dir.path().join("after.sieve");
    fs::write(
        &before,
        "require [\"fileinto\", \"mailbox\"]; if header :contains \"subject\" \"virus\" { fileinto :create \"Quarantine\"; }",
    )
    .unwrap();
    fs::write(&after, "require \"imap4flags\"; addflag \"\\\\Flagged\";").unwrap();
    let s = Site::with_config(&format!(
        "[sieve]\nbefore = [{:?}]\nafter = [{:?}]\n",
        before.display().to_string(),
        after.display().to_string()
    ));
    s.account("alice@example.com");
    // No personal script: the global ones still run.
    let r = deliver(
        &s,
        "alice@example.com",
        "bob@remote.org",
        &msg("a virus", ""),
    );
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Quarantine/\n"));
    // Keep still in effect after the user's script: the after script runs
    // (its flag on the implicit keep).
    script(&s, "alice@example.com", "if false { discard; }");
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("hello", ""));
    assert_eq!(r.stdout, format!("delivered to {ALICE} (flags F)\n"));
    // The user's script cancels the keep: the after script does not run.
    script(
        &s,
        "alice@example.com",
        "require \"fileinto\"; fileinto \"Sent\";",
    );
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("hi", ""));
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Sent/\n"));
}

#[test]
fn include_personal_and_the_extension_folder_for_keep() {
    let s = Site::new();
    s.account("alice@example.com");
    let r = s.ctl(
        &["sieve", "put", "alice@example.com", "lists", "-"],
        b"require [\"fileinto\"]; if header :contains \"subject\" \"[rust]\" { fileinto \"Sent\"; }",
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    script(
        &s,
        "alice@example.com",
        "require \"include\"; include :personal \"lists\";",
    );
    let r = deliver(
        &s,
        "alice@example.com",
        "bob@remote.org",
        &msg("[rust] 1.90", ""),
    );
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Sent/\n"));
    // keep for alice-trash@ goes to the extension's folder, as without a
    // script; fileinto "INBOX" to the INBOX itself.
    let r = deliver(
        &s,
        "alice-trash@example.com",
        "bob@remote.org",
        &msg("t", ""),
    );
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Trash/\n"));
    script(
        &s,
        "alice@example.com",
        "require \"fileinto\"; fileinto \"INBOX\";",
    );
    let r = deliver(
        &s,
        "alice-trash@example.com",
        "bob@remote.org",
        &msg("u", ""),
    );
    assert_eq!(r.stdout, format!("delivered to {ALICE}\n"));
}

#[test]
fn a_reject_in_a_fan_out_does_not_bounce_what_others_took() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.account("carol@example.com");
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]);
    script(
        &s,
        "alice@example.com",
        "require \"reject\"; reject \"no\";",
    );
    script(&s, "carol@example.com", "discard;");
    let r = deliver(&s, "team@example.com", "x@remote.org", &msg("t", ""));
    assert!(
        r.stdout.contains("carol@example.com: discarded by sieve"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("alice@example.com: discarded"),
        "{}",
        r.stdout
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .starts_with("delivered to example.com/bob/Maildir/;"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("alice@example.com: rejected by sieve"),
        "{}",
        r.stdout
    );
    assert!(messages(&s, "").is_empty());
    assert_eq!(s.files("example.com/bob/Maildir/", "new").len(), 1);
}

#[test]
fn currentdate_without_a_zone_uses_the_machines_zone() {
    let s = Site::new();
    s.account("alice@example.com");
    script(
        &s,
        "alice@example.com",
        "require [\"date\", \"fileinto\", \"mailbox\"];\n\
         if currentdate \"zone\" \"+0530\" { fileinto :create \"India\"; }",
    );
    // A POSIX TZ string needs no zone files.
    let mut env = qmail_env("alice@example.com", "bob@remote.org");
    env.push(("TZ".into(), "IST-5:30".into()));
    let r = s.deliver_env(&env, &msg("tz", ""));
    assert_eq!(r.stdout, format!("delivered to {ALICE}.India/\n"), "{r:?}");
    env.retain(|(k, _)| k != "TZ");
    env.push(("TZ".into(), "UTC0".into()));
    let r = s.deliver_env(&env, &msg("tz2", ""));
    assert_eq!(r.stdout, format!("delivered to {ALICE}\n"), "{r:?}");
}

#[test]
fn resolve_message_shows_what_delivery_decides_and_does_nothing() {
    let s = Site::with_config("[junk]\nenabled = true\n");
    s.account("alice@example.com");
    let r = s.ctl(
        &["sieve", "put", "alice@example.com", "lists", "-"],
        b"require [\"fileinto\", \"imap4flags\"]; if header :contains \"subject\" \"[rust]\" { addflag \"\\\\Seen\"; fileinto \"Sent\"; }",
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    script(
        &s,
        "alice@example.com",
        "require [\"include\", \"duplicate\"]; if duplicate { discard; stop; } include :personal \"lists\";",
    );
    let file = s.dir.path().join("m.eml");
    fs::write(&file, msg("[rust] 1.90", "X-Spam-Flag: YES\n")).unwrap();
    let f = file.display().to_string();
    let out = s.ctl_ok(&["resolve", "alice@example.com", "--message", &f]);
    // The include is followed; the explicit fileinto wins over Junk.
    assert!(out.contains("store into Sent flags \\Seen"), "{out}");
    fs::write(&file, msg("other", "X-Spam-Flag: YES\n")).unwrap();
    let out = s.ctl_ok(&["resolve", "alice@example.com", "--message", &f]);
    assert!(out.contains("implicit keep into Junk"), "{out}");
    // Read only: nothing stored, no duplicate memory, no log.
    let home = s.root.join(HOME);
    for f in [
        ".vdeliver.duplicate",
        ".vdeliver.duplicate.lock",
        ".dovecot.sieve.log",
    ] {
        assert!(!home.join(f).exists(), "{f}");
    }
    assert!(messages(&s, "").is_empty() && messages(&s, ".Sent/").is_empty());
}

/// A fan-out to 300 accounts whose scripts each make two folder copies
/// and a vacation reply, under an open-file limit of 64: nothing holds a
/// descriptor per account beyond the budget (homes are opened for their
/// run and closed; script folders beyond the budget are reopened).
#[test]
fn a_scripted_fan_out_delivers_under_a_low_open_file_limit() {
    const N: usize = 300;
    let s = Site::new();
    s.db.execute(&format!(
        "INSERT INTO accounts (domain_id, local_part, maildir) \
           SELECT d.id, 'u' || lpad(g::text, 3, '0'), \
                  'example.com/u' || lpad(g::text, 3, '0') || '/Maildir/' \
           FROM domains d, generate_series(0, {last}) g WHERE d.name = 'example.com';\n\
         INSERT INTO aliases (domain_id, local_part, destination) \
           SELECT d.id, 'all', 'u' || lpad(g::text, 3, '0') || '@example.com' \
           FROM domains d, generate_series(0, {last}) g WHERE d.name = 'example.com';",
        last = N - 1
    ));
    let (uid, gid) = crate::common::unpriv::unpriv_uid_gid();
    for i in 0..N {
        let home = s.root.join(format!("example.com/u{i:03}"));
        fs::create_dir_all(&home).unwrap();
        fs::write(
            home.join(".dovecot.sieve"),
            "require [\"fileinto\", \"mailbox\", \"copy\", \"vacation\"];\n\
             vacation :days 1 \"away\";\n\
             fileinto :copy :create \"A\";\n\
             fileinto :create \"B\";\n",
        )
        .unwrap();
        crate::common::unpriv::chown_tree(&home, uid, gid);
    }
    crate::common::unpriv::chown_tree(&s.root.join("example.com"), uid, gid);
    let m = b"From: bob@remote.org\nTo: all@example.com\nSubject: everyone\nMessage-ID: <e@remote.org>\n\nhi\n";
    let mut env = qmail_env("all@example.com", "bob@remote.org");
    env.extend(s.queue_env(0, &[]));
    let r: Run = s
        .command_via(&env, &["prlimit"], &["--nofile=64:64"])
        .stdin(s.message_file(m))
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, Some(0), "{}", &r.stdout[..r.stdout.len().min(600)]);
    for i in 0..N {
        let md = format!("example.com/u{i:03}/Maildir/");
        assert_eq!(s.files(&format!("{md}.A/"), "new").len(), 1, "{md}");
        assert_eq!(s.files(&format!("{md}.B/"), "new").len(), 1, "{md}");
        assert!(s.files(&md, "new").is_empty(), "{md}");
        assert!(s.files(&md, "tmp").is_empty(), "{md}");
    }
    assert_eq!(s.queued().len(), N, "one vacation reply per account");
}

/// What an admin in a hurry (or a hostile user) leaves in a home: a
/// script symlink pointing outside it, a root-owned log, a root-owned
/// folder. The message is delivered each time, and the line says what
/// went wrong.
#[test]
fn hostile_and_root_owned_files_in_the_home_never_lose_mail() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let s = Site::new();
    s.account("alice@example.com");
    script(&s, "alice@example.com", "keep;");
    let home = s.root.join(HOME);
    fs::remove_file(home.join(".dovecot.sieve")).unwrap();
    symlink("../../../../../../etc/passwd", home.join(".dovecot.sieve")).unwrap();
    let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("a", ""));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("outside the home"), "{}", r.stdout);
    assert!(log(&s).contains("outside the home"), "{}", log(&s));
    assert_eq!(messages(&s, "").len(), 1);

    // The log made by root, unreadable to the mail user: still delivered.
    let is_root = crate::common::unpriv::is_root();
    if is_root {
        std::os::unix::fs::chown(home.join(".dovecot.sieve.log"), Some(0), Some(0)).unwrap();
        fs::set_permissions(
            home.join(".dovecot.sieve.log"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("b", ""));
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(
            r.stdout.contains("log could not be written"),
            "{}",
            r.stdout
        );
        assert_eq!(messages(&s, "").len(), 2);
        fs::remove_file(home.join(".dovecot.sieve.log")).unwrap();

        // A folder made by root: the copy goes to INBOX, logged.
        fs::remove_file(home.join(".dovecot.sieve")).unwrap();
        script(
            &s,
            "alice@example.com",
            "require \"fileinto\"; fileinto \"Private\";",
        );
        let f = s.maildir(ALICE).join(".Private");
        for d in ["", "/tmp", "/new", "/cur"] {
            fs::create_dir_all(format!("{}{d}", f.display())).unwrap();
        }
        fs::set_permissions(&f, fs::Permissions::from_mode(0o700)).unwrap();
        let r = deliver(&s, "alice@example.com", "bob@remote.org", &msg("c", ""));
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(r.stdout.contains("kept in INBOX"), "{}", r.stdout);
        assert_eq!(messages(&s, "").len(), 3);
    }
    assert!(
        is_root,
        "this test runs as root, as CI does (the root-owned cases need it)"
    );
}

/// Twenty deliveries from one sender at once, each a real vdeliver
/// process: exactly one vacation reply, and all twenty messages stored.
#[test]
fn twenty_concurrent_deliveries_send_one_vacation_reply() {
    let s = Site::new();
    s.account("alice@example.com");
    script(
        &s,
        "alice@example.com",
        "require \"vacation\"; vacation :days 1 \"Away.\";",
    );
    let mut env = qmail_env("alice@example.com", "bob@remote.org");
    env.extend(s.queue_env(0, &[]));
    let children: Vec<_> = (0..20)
        .map(|i| {
            s.command(&env, &[])
                .stdin(s.message_file(&msg(&format!("m{i}"), "")))
                .spawn()
                .unwrap()
        })
        .collect();
    let mut lines = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        lines.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let sent = lines
        .iter()
        .filter(|l| l.contains("vacation reply sent"))
        .count();
    assert_eq!(sent, 1, "{lines:#?}");
    assert_eq!(s.queued().len(), 1);
    assert_eq!(messages(&s, "").len(), 20);
}
