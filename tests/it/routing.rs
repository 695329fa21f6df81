//! Routing end to end (SPEC §3, §5): aliases, alias domains, extensions,
//! catch-all, relocated, the vpopmail fallbacks, forwarding through a
//! qmail-queue stand-in, fan-out.

use crate::common::pg::Pg;
use crate::common::site::{qmail_env, qmail_queue_stub, Queued, Run, Site};
use std::fs;
use std::os::unix::fs::MetadataExt;

const MSG: &[u8] = b"From: bob@remote.org\nSubject: routing\n\nHello.\n";
const ALICE: &str = "example.com/alice/Maildir/";
const BOB: &str = "example.com/bob/Maildir/";

fn site() -> Site {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    s
}

fn stored(rp: &str, dt: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = format!("Return-Path: <{rp}>\nDelivered-To: {dt}\n").into_bytes();
    v.extend_from_slice(msg);
    v
}

/// Deliver with the stub qmail-queue (exiting `exit`) and extra arguments.
fn deliver_q(s: &Site, to: &str, from: &str, exit: i32, args: &[&str], watch: &[&str]) -> Run {
    let mut env = qmail_env(to, from);
    env.extend(s.queue_env(exit, watch));
    s.command(&env, args)
        .stdin(s.message_file(MSG))
        .output()
        .unwrap()
        .into()
}

fn forwarded(dt: &str) -> Vec<u8> {
    let mut v = format!("Delivered-To: {dt}\n").into_bytes();
    v.extend_from_slice(MSG);
    v
}

#[test]
fn alias_to_two_local_accounts_and_one_remote() {
    let s = site();
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "bob@example.com",
        "dave@remote.org",
    ]);
    let r = deliver_q(
        &s,
        "Team@example.com",
        "carol@remote.org",
        0,
        &[],
        &[ALICE, BOB],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        format!("delivered to {ALICE}, {BOB} and forwarded to 1\n")
    );
    let want = stored("carol@remote.org", "team@example.com", MSG);
    let (a_name, a) = s.only_message(ALICE);
    let (b_name, b) = s.only_message(BOB);
    assert_eq!(a, want);
    assert_eq!(b, want);
    // Written once: the second copy is a hard link to the first.
    let ia = fs::metadata(s.maildir(ALICE).join("new").join(a_name)).unwrap();
    let ib = fs::metadata(s.maildir(BOB).join("new").join(b_name)).unwrap();
    assert_eq!((ia.dev(), ia.ino()), (ib.dev(), ib.ino()));
    assert!(s.files(ALICE, "tmp").is_empty() && s.files(BOB, "tmp").is_empty());
    assert_eq!(
        s.queued(),
        vec![Queued {
            message: forwarded("team@example.com"),
            sender: "carol@remote.org".into(),
            recipients: vec!["dave@remote.org".into()],
        }]
    );
    // While qmail-queue ran, both copies were in tmp/ and none in new/.
    let snaps = s.queue_snapshots();
    assert_eq!(snaps.len(), 1);
    for md in [ALICE, BOB] {
        let p = s.maildir(md);
        assert!(
            snaps[0].contains(&format!("{}/tmp 1\n", p.display())),
            "{snaps:?}"
        );
        assert!(
            snaps[0].contains(&format!("{}/new 0\n", p.display())),
            "{snaps:?}"
        );
    }
}

#[test]
fn alias_keeps_a_copy_when_it_names_itself() {
    let s = site();
    s.ctl_ok(&[
        "alias",
        "add",
        "alice@example.com",
        "alice@example.com",
        "bob@example.com",
    ]);
    let r = s.deliver("alice@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(ALICE);
    s.only_message(BOB);
    // An alias without itself replaces the mailbox.
    s.account("carol@example.com");
    s.ctl_ok(&["alias", "add", "bob@example.com", "carol@example.com"]);
    let r = s.deliver("bob@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files(BOB, "new").len(), 1);
    s.only_message("example.com/carol/Maildir/");
}

#[test]
fn alias_loop_bounces_with_the_chain() {
    let s = site();
    // A broken configuration on purpose: vmailctl refuses it without --force.
    s.ctl_ok(&["alias", "add", "a@example.com", "b@example.com", "--force"]);
    s.ctl_ok(&["alias", "add", "b@example.com", "a@example.com", "--force"]);
    let r = s.deliver("a@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(
        r.stdout
            .contains("a@example.com -> b@example.com -> a@example.com"),
        "{r:?}"
    );
    assert!(r.stdout.ends_with("(#5.4.6)\n"), "{r:?}");
}

#[test]
fn alias_domain_of_an_alias_bearing_domain() {
    let s = site();
    s.ctl_ok(&["alias-domain", "add", "alias.example", "example.com"]);
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "copy+%=@store.example",
    ]);
    let r = deliver_q(&s, "Team@Alias.Example", "x@remote.org", 0, &[], &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let (_, a) = s.only_message(ALICE);
    assert_eq!(a, stored("x@remote.org", "team@alias.example", MSG));
    let q = s.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].recipients, ["copy+Team=alias.example@store.example"]);
    // A plain account through the alias domain.
    let r = s.deliver("bob@alias.example", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(BOB);
}

#[test]
fn catchall_does_not_capture_accounts_or_relocated() {
    let s = site();
    s.ctl_ok(&["catchall", "add", "example.com", "bob@example.com"]);
    s.ctl_ok(&["relocated", "add", "moved@example.com", "moved@new.example"]);
    let r = s.deliver("alice@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(ALICE);
    assert!(s.files(BOB, "new").is_empty());
    let r = s.deliver("moved@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert_eq!(
        r.stdout,
        "Sorry, moved@example.com has moved; try moved@new.example. (#5.1.6)\n"
    );
    let r = s.deliver("stranger@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    let (_, b) = s.only_message(BOB);
    assert_eq!(b, stored("x@remote.org", "stranger@example.com", MSG));
}

#[test]
fn extensions_use_an_existing_folder_else_inbox() {
    let s = site();
    // .Sent exists (a default folder) once the Maildir is made.
    assert_eq!(
        s.deliver("alice@example.com", "x@remote.org", MSG).code,
        Some(0)
    );
    let r = s.deliver("alice-Sent@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, format!("delivered to {ALICE}.Sent/\n"));
    let sent = format!("{ALICE}.Sent/");
    let (_, m) = s.only_message(&sent);
    assert_eq!(m, stored("x@remote.org", "alice-sent@example.com", MSG));
    let r = s.deliver("alice-nosuchfolder@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files(ALICE, "new").len(), 2);
    assert!(!s.maildir(ALICE).join(".nosuchfolder").exists());
}

#[test]
fn other_delimiter() {
    let s = Site::with_config("extension_delimiter = \"+\"\n");
    s.account("alice@example.com");
    assert_eq!(
        s.deliver("alice+x@example.com", "x@remote.org", MSG).code,
        Some(0)
    );
    s.only_message(ALICE);
    let r = s.deliver("alice-x@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
}

#[test]
fn qmail_queue_exit_codes() {
    let s = site();
    s.ctl_ok(&[
        "alias",
        "add",
        "fwd@example.com",
        "alice@example.com",
        "dave@remote.org",
    ]);
    // (qmail-queue exit, vdeliver exit, status)
    for (q, want, status) in [(31, 100, "5.3.0"), (71, 111, "4.3.0"), (91, 111, "4.3.0")] {
        let r = deliver_q(&s, "fwd@example.com", "x@remote.org", q, &[], &[]);
        assert_eq!(r.code, Some(want), "qmail-queue {q}: {r:?}");
        assert!(r.stdout.ends_with(&format!("(#{status})\n")), "{r:?}");
        assert!(r.stdout.contains(&format!("exit {q}")), "{r:?}");
        assert!(
            s.files(ALICE, "new").is_empty(),
            "qmail-queue {q}: a copy became visible"
        );
        assert!(
            s.files(ALICE, "tmp").is_empty(),
            "qmail-queue {q}: tmp/ not cleaned"
        );
    }
    assert!(s.queued().is_empty());
    let r = deliver_q(&s, "fwd@example.com", "x@remote.org", 0, &[], &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files(ALICE, "new").len(), 1);
    assert_eq!(s.queued().len(), 1);
}

#[test]
fn missing_qmail_queue_defers() {
    let s = site();
    s.ctl_ok(&[
        "alias",
        "add",
        "fwd@example.com",
        "alice@example.com",
        "dave@remote.org",
    ]);
    let mut env = qmail_env("fwd@example.com", "x@remote.org");
    env.push(("QMAILQUEUE".into(), "/nonexistent/qmail-queue".into()));
    let r: Run = s
        .command(&env, &[])
        .stdin(s.message_file(MSG))
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("/nonexistent/qmail-queue"), "{r:?}");
    assert!(s.files(ALICE, "new").is_empty() && s.files(ALICE, "tmp").is_empty());
}

#[test]
fn bounce_is_forwarded_with_empty_sender() {
    let s = site();
    s.ctl_ok(&[
        "alias",
        "add",
        "fwd@example.com",
        "dave@remote.org",
        "erin@remote.org",
    ]);
    let r = deliver_q(&s, "fwd@example.com", "", 0, &[], &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "forwarded to 2\n");
    let q = s.queued();
    assert_eq!(q.len(), 1, "one qmail-queue call for all");
    assert_eq!(q[0].sender, "");
    assert_eq!(q[0].recipients, ["dave@remote.org", "erin@remote.org"]);
    assert_eq!(q[0].message, forwarded("fwd@example.com"));
}

#[test]
fn forward_only_loop_queues_nothing() {
    let s = site();
    s.ctl_ok(&["alias", "add", "fwd@example.com", "dave@remote.org"]);
    let mut env = qmail_env("fwd@example.com", "x@remote.org");
    env.extend(s.queue_env(0, &[]));
    let msg = b"Delivered-To: fwd@example.com\nSubject: again\n\nbody\n";
    let r: Run = s
        .command(&env, &[])
        .stdin(s.message_file(msg))
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.4.6)\n"), "{r:?}");
    assert!(s.queued().is_empty());
}

#[test]
fn duplicates_delivered_once() {
    let s = site();
    s.ctl_ok(&[
        "alias",
        "add",
        "all@example.com",
        "alice@example.com",
        "ALICE@example.com",
        "x@remote.org",
        "X@REMOTE.ORG",
        "team@example.com",
        "--force",
    ]);
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "x@remote.org",
    ]);
    let r = deliver_q(&s, "all@example.com", "y@remote.org", 0, &[], &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(ALICE);
    let q = s.queued();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].recipients.len(), 1, "{q:?}");
}

#[test]
fn vpopmail_fallbacks() {
    let s = site();
    let spool = s.root.join("spool/Maildir");
    let spool_arg = format!("{}/", spool.display());
    let r = deliver_q(
        &s,
        "zed@example.com",
        "x@remote.org",
        0,
        &["", "bounce-no-mailbox"],
        &[],
    );
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.1.1)\n"));
    let r = deliver_q(
        &s,
        "zed@example.com",
        "x@remote.org",
        0,
        &["", "delete"],
        &[],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .starts_with("discarded: no mailbox zed@example.com"),
        "{r:?}"
    );
    let r = deliver_q(
        &s,
        "zed@example.com",
        "x@remote.org",
        0,
        &["", "someone@example.org"],
        &[],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.queued()[0].recipients, ["someone@example.org"]);
    let r = deliver_q(
        &s,
        "zed@example.com",
        "x@remote.org",
        0,
        &["", &spool_arg],
        &[],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let (_, m) = s.only_message("spool/Maildir/");
    assert_eq!(m, stored("x@remote.org", "zed@example.com", MSG));
    // Outside mail.root: refused.
    let r = deliver_q(
        &s,
        "zed@example.com",
        "x@remote.org",
        0,
        &["", "/tmp/elsewhere/Maildir/"],
        &[],
    );
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.ends_with("(#4.3.5)\n"), "{r:?}");
    // Existing users are not affected.
    let r = deliver_q(
        &s,
        "alice@example.com",
        "x@remote.org",
        0,
        &["", "delete"],
        &[],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(ALICE);
}

#[test]
fn bad_destination_rows_defer_naming_the_row() {
    let s = site();
    // Rows vmailctl would refuse, as a hand-written INSERT could make them.
    s.db.execute(
        "INSERT INTO aliases (domain_id, local_part, destination)
         SELECT id, 'broken', d FROM domains, (VALUES ('alice@example.com'), ('no-at-sign')) v(d)
         WHERE name = 'example.com'",
    );
    let r = s.deliver("broken@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("\"no-at-sign\""), "{r:?}");
    assert!(r.stdout.ends_with("(#4.3.5)\n"), "{r:?}");
    assert!(s.files(ALICE, "new").is_empty() && s.files(ALICE, "tmp").is_empty());
}

#[test]
fn alias_to_missing_account_defers() {
    let s = site();
    s.ctl_ok(&[
        "alias",
        "add",
        "staff@example.com",
        "alice@example.com",
        "ghost@example.com",
        "--force",
    ]);
    let r = s.deliver("staff@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(
        r.stdout.contains("staff@example.com -> ghost@example.com"),
        "{r:?}"
    );
    assert!(s.files(ALICE, "new").is_empty());
}

#[test]
fn hostile_addresses_bounce_cleanly() {
    let s = site();
    let long = format!("{}@example.com", "a".repeat(10 * 1024));
    let r = s.deliver(&long, "x@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.1.3)\n"), "{r:?}");
    assert!(r.stdout.len() <= 1000);
    let r = s.deliver("al\u{1}ice@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.1.3)\n"), "{r:?}");
    // Path-like local parts are only names to look up: no account can have
    // them, and nothing is written anywhere.
    let before = fs::read_dir(&s.root).unwrap().count();
    for evil in [
        "../../etc",
        "..",
        "a/b",
        "/etc/passwd",
        "example.com/alice/Maildir",
    ] {
        let r = s.deliver(&format!("{evil}@example.com"), "x@remote.org", MSG);
        assert_eq!(r.code, Some(100), "{evil}: {r:?}");
        assert!(r.stdout.ends_with("(#5.1.1)\n"), "{evil}: {r:?}");
    }
    assert_eq!(fs::read_dir(&s.root).unwrap().count(), before);
    assert!(s.files(ALICE, "new").is_empty());
}

#[test]
fn fan_out_across_two_filesystems() {
    assert!(
        crate::common::unpriv::is_root(),
        "this test mounts a tmpfs and must run as root (CI does)"
    );
    let s = site();
    let shm = s.root.join("shm");
    fs::create_dir(&shm).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m,mode=0700", "vdeliver-test"])
        .arg(&shm)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(shm.clone());
    crate::common::unpriv::chown_for_unpriv(&shm);
    s.ctl_ok(&[
        "account",
        "add",
        "carol@example.com",
        "--maildir",
        "shm/carol/Maildir",
    ]);
    s.ctl_ok(&[
        "alias",
        "add",
        "both@example.com",
        "alice@example.com",
        "carol@example.com",
    ]);
    let r = s.deliver("both@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    let want = stored("x@remote.org", "both@example.com", MSG);
    let (_, a) = s.only_message(ALICE);
    let (c_name, c) = s.only_message("shm/carol/Maildir/");
    assert_eq!(a, want);
    assert_eq!(c, want);
    let dev_c = fs::metadata(s.maildir("shm/carol/Maildir/new").join(c_name))
        .unwrap()
        .dev();
    let dev_a = fs::metadata(s.maildir(ALICE)).unwrap().dev();
    assert_ne!(dev_a, dev_c, "not on two filesystems");
    assert!(s.files("shm/carol/Maildir/", "tmp").is_empty());
}

#[test]
fn stub_refuses_a_malformed_envelope_like_qmail_queue() {
    use std::io::Write;
    let dir = crate::common::unpriv::temp_dir_for_unpriv();
    for (env, want) in [
        (&b"Fs@x\0Ta@b\0\0"[..], 0),
        (b"F\0\0", 0),
        (b"Xs@x\0Ta@b\0\0", 91),
        (b"Fs@x\0Ta@b\0", 91),
        (b"Fs@x\0Qa@b\0\0", 91),
        (b"Fs@x\0Ta@b\0\0extra", 91),
    ] {
        let (env_r, mut env_w) = std::io::pipe().unwrap();
        let mut child = std::process::Command::new(qmail_queue_stub())
            .env("STUB_DIR", dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(env_r)
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Subject: x\n\nbody\n")
            .unwrap();
        env_w.write_all(env).unwrap();
        drop(env_w);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(want), "{env:?}");
    }
}

#[test]
fn round_trips_counted_on_the_server() {
    let pg = Pg::private();
    let s = Site::on(&pg, "", true);
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "bob@example.com",
    ]);
    s.ctl_ok(&["alias", "add", "alice-x@example.com", "alice@example.com"]);
    s.ctl_ok(&["catchall", "add", "example.com", "bob@example.com"]);
    let mut admin = pg.admin_client();
    for sql in [
        format!("ALTER DATABASE {} SET log_statement = 'all'", s.db.name),
        "ALTER SYSTEM SET log_line_prefix = '%a@%d '".to_string(),
        "SELECT pg_reload_conf()".to_string(),
    ] {
        admin.batch_execute(&sql).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let count = |to: &str| {
        let before = pg.log_text().len();
        let r = s.deliver(to, "x@remote.org", MSG);
        assert_eq!(r.code, Some(0), "{to}: {r:?}");
        let marker = format!("vdeliver@{} ", s.db.name);
        let log = pg.log_text();
        let new = &log[before..];
        let stmts = new
            .lines()
            .filter(|l| l.starts_with(&marker) && l.contains("execute"))
            .count();
        let named = new
            .lines()
            .filter(|l| l.starts_with(&marker) && l.contains("execute") && !l.contains("<unnamed>"))
            .count();
        assert_eq!(named, 0, "{to}: named prepared statements: {new}");
        stmts
    };
    s.ctl_ok(&["alias", "add", "fw@example.com", "bob-%n@example.com"]);
    s.ctl_ok(&["alias", "add", "one@example.com", "alice@example.com"]);
    s.ctl_ok(&["alias", "add", "chain@example.com", "team@example.com"]);
    s.ctl_ok(&["alias-domain", "add", "alias.example", "example.com"]);
    // (address, statements): a plain account, an extension, a catch-all
    // and aliases with literal destinations take one (the query follows
    // literal destinations itself, chains of them too, and alias
    // domains); a destination built with %n is only known after the first
    // answer and takes one more.
    for (to, want) in [
        ("alice@example.com", 1),
        ("bob-anything@example.com", 1),
        ("stranger@example.com", 1),
        ("team@example.com", 1),
        ("one@example.com", 1),
        ("chain@example.com", 1),
        ("alice@alias.example", 1),
        ("team@alias.example", 1),
        ("fw@example.com", 2),
    ] {
        assert_eq!(count(to), want, "{to}");
    }
}
