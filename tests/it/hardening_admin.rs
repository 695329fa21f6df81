//! Issue 10, items 8–11: vmailctl must not break mailboxes.
//!
//! - run as root, what it creates or rewrites beneath `mail.root` belongs
//!   to the mail user, and it works there with that user's rights only;
//! - no delete or change leaves an address that delivers today
//!   undeliverable or silently delivering elsewhere, unless forced;
//! - a new account does not silently get a deleted account's mail, nor
//!   share another account's Maildir;
//! - `check --user U` tests what U can actually open.

use crate::common::site::{qmail_queue_stub, Run, Site};
use crate::common::unpriv::{is_root, unpriv_uid_gid};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MSG: &[u8] = b"From: bob@remote.org\nSubject: admin\n\nHello.\n";
const ALICE: &str = "example.com/alice/Maildir/";

/// Every path beneath `root` (not `root` itself) with its owner.
fn owners(root: &Path) -> Vec<(PathBuf, u32, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            out.push((p.clone(), m.uid(), m.gid()));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Assert that everything beneath the mail root belongs to the mail user.
fn all_owned_by_mail_user(s: &Site, when: &str) {
    let want = unpriv_uid_gid();
    let wrong: Vec<_> = owners(&s.root)
        .into_iter()
        .filter(|(_, u, g)| (*u, *g) != want)
        .collect();
    assert!(
        wrong.is_empty(),
        "{when}: not owned by the mail user {want:?}: {wrong:?}"
    );
}

fn delivered(s: &Site, to: &str) {
    let r = s.deliver(to, "bob@remote.org", MSG);
    assert_eq!(r.code, Some(0), "delivery to {to}: {r:?}");
}

fn refused(s: &Site, args: &[&str]) -> String {
    let r = s.ctl(args, b"");
    assert_eq!(r.code, Some(1), "vmailctl {args:?}: {r:?}");
    assert!(r.stderr.starts_with("vmailctl: "), "{r:?}");
    r.stderr
}

fn run_as_root_only() {
    assert!(
        is_root(),
        "these tests prove what vmailctl does when run as root; run them as root (CI does)"
    );
}

// ---------------------------------------------------------------- item 8

#[test]
fn issue10_quota_recalc_as_root_leaves_maildirsize_to_the_mail_user() {
    run_as_root_only();
    let s = Site::new();
    s.ctl_ok(&[
        "account",
        "add",
        "alice@example.com",
        "--quota-messages",
        "10",
    ]);
    // account add creates nothing on disk: the Maildir is vdeliver's to make.
    assert!(owners(&s.root).is_empty(), "{:?}", owners(&s.root));
    delivered(&s, "alice@example.com");
    delivered(&s, "alice@example.com");
    let first = s.files(ALICE, "new")[0].clone();
    fs::remove_file(s.maildir(ALICE).join("new").join(first)).unwrap();

    let out = s.ctl_ok(&["quota", "alice@example.com", "--recalc"]);
    assert!(out.contains("1 of 10 messages"), "{out}");
    let size = s.maildir(ALICE).join("maildirsize");
    let m = fs::metadata(&size).unwrap();
    assert_eq!((m.uid(), m.gid()), unpriv_uid_gid(), "maildirsize");
    all_owned_by_mail_user(&s, "after quota --recalc");

    // vdeliver (the mail user) goes on using the file.
    delivered(&s, "alice@example.com");
    assert_eq!(count_new(&s, ALICE), 2);
    all_owned_by_mail_user(&s, "after the next delivery");
    // A plain `quota` writes nothing and also runs as the mail user.
    s.ctl_ok(&["quota", "alice@example.com"]);
    all_owned_by_mail_user(&s, "after quota");
}

#[test]
fn issue10_purge_as_root_works_with_the_mail_users_rights() {
    run_as_root_only();
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    delivered(&s, "alice@example.com");
    delivered(&s, "bob@example.com");
    // Something the mail user cannot remove (root's, mode 0700, in cur/):
    // root could, but the purge works as the mail user, so it stays and
    // the purge says it failed.
    let md = s.maildir(ALICE);
    fs::create_dir(md.join("cur/rootonly")).unwrap();
    fs::write(md.join("cur/rootonly/file"), b"root's").unwrap();
    fs::set_permissions(md.join("cur/rootonly"), fs::Permissions::from_mode(0o700)).unwrap();
    let e = refused(&s, &["account", "delete", "alice@example.com", "--purge"]);
    assert!(
        e.contains("the database change is done") && e.contains("Permission denied"),
        "{e}"
    );
    assert_eq!(fs::read(md.join("cur/rootonly/file")).unwrap(), b"root's");

    // Once the mail user owns everything, the purge removes the Maildir
    // and alice/, and leaves example.com/ (bob is in it) to the mail user.
    fs::remove_dir_all(md.join("cur/rootonly")).unwrap();
    s.ctl_ok(&["account", "add", "alice@example.com", "--reuse-maildir"]);
    let out = s.ctl_ok(&["account", "delete", "alice@example.com", "--purge"]);
    assert!(out.contains(&format!("Maildir {ALICE}: removed")), "{out}");
    assert!(!s.root.join("example.com/alice").exists());
    assert!(s.root.join("example.com/bob/Maildir/new").is_dir());
    all_owned_by_mail_user(&s, "after the purge");
    delivered(&s, "bob@example.com");
    s.account("alice@example.com");
    delivered(&s, "alice@example.com");
    all_owned_by_mail_user(&s, "after new deliveries");
}

#[test]
fn issue10_mail_root_owned_by_root_is_refused() {
    run_as_root_only();
    let s = Site::new();
    s.account("alice@example.com");
    delivered(&s, "alice@example.com");
    std::os::unix::fs::chown(&s.root, Some(0), Some(0)).unwrap();
    let e = refused(&s, &["quota", "alice@example.com", "--recalc"]);
    assert!(e.contains("is owned by root"), "{e}");
    assert!(!s.maildir(ALICE).join("maildirsize").exists());
    let e = refused(&s, &["account", "delete", "alice@example.com", "--purge"]);
    assert!(e.contains("is owned by root"), "{e}");
    assert!(s.maildir(ALICE).join("new").is_dir());
}

// ---------------------------------------------------------------- item 9

/// alice and postmaster are accounts; ghost is not (the catch-all takes it).
fn routed_site() -> Site {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.account("postmaster@example.com");
    s.ctl_ok(&["catchall", "add", "example.com", "postmaster@example.com"]);
    s
}

fn count_new(s: &Site, rel: &str) -> usize {
    s.files(rel, "new").len()
}

#[test]
fn issue10_catchall_delete_that_breaks_an_alias_is_refused() {
    let s = routed_site();
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "ghost@example.com",
    ]);
    delivered(&s, "team@example.com");
    let e = refused(&s, &["catchall", "delete", "example.com"]);
    assert!(
        e.contains("alias team@example.com") && e.contains("--force"),
        "{e}"
    );
    // Nothing changed: the alias still delivers.
    delivered(&s, "team@example.com");
    assert_eq!(count_new(&s, "example.com/postmaster/Maildir/"), 2);
    // Forced: done, with the warning, and the alias then defers.
    let out = s.ctl_ok(&["catchall", "delete", "example.com", "--force"]);
    assert!(
        out.contains("warning (forced): alias team@example.com"),
        "{out}"
    );
    let r = s.deliver("team@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
}

#[test]
fn issue10_account_delete_that_redirects_a_member_to_the_catchall_is_refused() {
    let s = routed_site();
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "bob@example.com",
    ]);
    let e = refused(&s, &["account", "delete", "alice@example.com"]);
    assert!(
        e.contains("alias team@example.com")
            && e.contains("would go to mailbox postmaster@example.com"),
        "{e}"
    );
    s.ctl_ok(&["account", "show", "alice@example.com"]);
    delivered(&s, "team@example.com");
    assert_eq!(count_new(&s, "example.com/postmaster/Maildir/"), 0);
    // An account no alias names goes without a word.
    s.account("carol@example.com");
    let out = s.ctl_ok(&["account", "delete", "carol@example.com"]);
    assert!(!out.contains("warning"), "{out}");
    // Forced: the copy goes to the catch-all, as warned.
    let out = s.ctl_ok(&["account", "delete", "alice@example.com", "--force"]);
    assert!(
        out.contains("warning (forced): alias team@example.com"),
        "{out}"
    );
    delivered(&s, "team@example.com");
    assert_eq!(count_new(&s, "example.com/postmaster/Maildir/"), 1);
}

#[test]
fn issue10_disabling_or_moving_what_an_alias_delivers_to_is_refused() {
    let s = routed_site();
    s.ctl_ok(&["domain", "add", "example.org"]);
    s.ctl_ok(&["domain", "add", "other.example"]);
    s.account("alice@example.org");
    s.account("dana@other.example");
    s.ctl_ok(&["alias-domain", "add", "example.net", "example.org"]);
    s.ctl_ok(&["alias", "add", "a@example.com", "alice@example.org"]);
    s.ctl_ok(&["alias", "add", "b@example.com", "bob@example.com"]);
    s.ctl_ok(&["alias", "add", "n@example.com", "alice@example.net"]);

    // Disabling an account an alias delivers to: the alias would defer.
    let e = refused(&s, &["account", "disable", "bob@example.com"]);
    assert!(
        e.contains("alias b@example.com") && e.contains("#4.3.5"),
        "{e}"
    );
    delivered(&s, "b@example.com");
    // Disabling a domain aliases elsewhere deliver into.
    let e = refused(&s, &["domain", "set", "example.org", "--disable"]);
    assert!(
        e.contains("alias a@example.com") && e.contains("alias n@example.com"),
        "{e}"
    );
    delivered(&s, "a@example.com");
    // Moving an alias domain: n@ would deliver to another domain's mailbox.
    s.account("alice@other.example");
    let e = refused(
        &s,
        &["alias-domain", "move", "example.net", "other.example"],
    );
    assert!(
        e.contains("alias n@example.com") && e.contains("would go to mailbox alice@other.example"),
        "{e}"
    );
    delivered(&s, "n@example.com");
    assert_eq!(count_new(&s, "example.org/alice/Maildir/"), 2);
    // Relocating an address an alias delivers to.
    s.ctl_ok(&["alias", "add", "r@example.com", "ghost@example.com"]);
    let e = refused(
        &s,
        &["relocated", "add", "ghost@example.com", "g@remote.org"],
    );
    assert!(e.contains("alias r@example.com"), "{e}");
    // Each goes through with --force, and says what it broke.
    let out = s.ctl_ok(&["account", "disable", "bob@example.com", "--force"]);
    assert!(
        out.contains("warning (forced): alias b@example.com"),
        "{out}"
    );
    let out = s.ctl_ok(&[
        "alias-domain",
        "move",
        "example.net",
        "other.example",
        "--force",
    ]);
    assert!(
        out.contains("warning (forced): alias n@example.com"),
        "{out}"
    );
    // Changes that do not touch routing need no force.
    s.ctl_ok(&["domain", "set", "example.org", "--quota-bytes", "1G"]);
    s.ctl_ok(&["account", "enable", "bob@example.com"]);
}

// ---------------------------------------------------------------- item 10

#[test]
fn issue10_recreated_account_does_not_inherit_the_old_mail() {
    let s = Site::new();
    s.account("alice@example.com");
    delivered(&s, "alice@example.com");
    s.ctl_ok(&["account", "delete", "alice@example.com"]);
    let e = refused(&s, &["account", "add", "alice@example.com"]);
    assert!(
        e.contains(&format!("Maildir {ALICE} already exists on disk"))
            && e.contains("--reuse-maildir"),
        "{e}"
    );
    refused(&s, &["account", "show", "alice@example.com"]);
    // The same Maildir given to someone else by path: refused too.
    let e = refused(
        &s,
        &["account", "add", "mallory@example.com", "--maildir", ALICE],
    );
    assert!(e.contains("already exists on disk"), "{e}");
    // Told so: the account gets the Maildir, mail and all.
    s.ctl_ok(&["account", "add", "alice@example.com", "--reuse-maildir"]);
    assert_eq!(count_new(&s, ALICE), 1);
    // After a purge, a new account starts empty without being told.
    s.ctl_ok(&["account", "delete", "alice@example.com", "--purge"]);
    s.account("alice@example.com");
}

#[test]
fn issue10_maildir_shared_with_another_account_is_refused() {
    let s = Site::new();
    s.account("alice@example.com");
    // Nothing on disk yet: the database alone says whose it is.
    assert!(!s.maildir(ALICE).exists());
    for path in [
        ALICE,
        "example.com/alice/Maildir",
        "example.com/alice/Maildir/.bob/",
        "example.com/alice/",
        "example.com/",
    ] {
        let e = refused(
            &s,
            &["account", "add", "bob@example.com", "--maildir", path],
        );
        assert!(
            e.contains("the Maildir of alice@example.com") && e.contains("--reuse-maildir"),
            "{path}: {e}"
        );
    }
    // A sibling is fine; so is sharing when told.
    s.ctl_ok(&[
        "account",
        "add",
        "bob@example.com",
        "--maildir",
        "example.com/alice/Maildir2/",
    ]);
    s.ctl_ok(&[
        "account",
        "add",
        "carol@example.com",
        "--maildir",
        "example.com/alice/Maildir/.carol/",
        "--reuse-maildir",
    ]);
}

// ---------------------------------------------------------------- item 11

fn check(s: &Site, user: &str) -> Run {
    s.ctl(&["check", "--user", user], b"")
}

fn fail_lines(r: &Run) -> Vec<&str> {
    r.stdout.lines().filter(|l| l.starts_with("FAIL")).collect()
}

#[test]
fn issue10_check_tests_what_the_delivery_user_can_open() {
    run_as_root_only();
    let stub = qmail_queue_stub();
    let s = Site::with_config(&format!(
        "[forward]\nqmail_queue = \"{}\"\n",
        stub.display()
    ));
    let r = check(&s, "nobody");
    assert_eq!(r.code, Some(0), "{r:?}");

    // The configuration readable by root only.
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o600)).unwrap();
    let r = check(&s, "nobody");
    assert_eq!(r.code, Some(1), "{r:?}");
    let f = fail_lines(&r);
    assert_eq!(f.len(), 1, "{r:?}");
    assert!(
        f[0].starts_with("FAIL configuration file: user nobody")
            && f[0].contains("cannot read")
            && f[0].contains("Permission denied"),
        "{f:?}"
    );
    // Readable through the user's group: fine.
    let nogroup = unpriv_uid_gid().1;
    std::os::unix::fs::chown(&s.config, Some(0), Some(nogroup)).unwrap();
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o640)).unwrap();
    let r = check(&s, "nobody");
    assert_eq!(r.code, Some(0), "{r:?}");
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o644)).unwrap();

    // The mail root not writable by the user (its modes are otherwise fine).
    fs::set_permissions(&s.root, fs::Permissions::from_mode(0o500)).unwrap();
    let r = check(&s, "nobody");
    let f = fail_lines(&r);
    assert_eq!(f.len(), 1, "{r:?}");
    assert!(
        f[0].starts_with("FAIL mail root: user nobody") && f[0].contains("cannot create"),
        "{f:?}"
    );
    fs::set_permissions(&s.root, fs::Permissions::from_mode(0o700)).unwrap();

    // qmail-queue executable by root only.
    let q = s.dir.path().join("qmail-queue");
    fs::copy(&stub, &q).unwrap();
    fs::set_permissions(&q, fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        cfg.replace(&stub.display().to_string(), &q.display().to_string()),
    )
    .unwrap();
    let r = check(&s, "nobody");
    let f = fail_lines(&r);
    assert_eq!(f.len(), 1, "{r:?}");
    assert!(
        f[0].starts_with("FAIL qmail-queue: user nobody") && f[0].contains("cannot execute"),
        "{f:?}"
    );
    // Without --user, the owner of mail.root (nobody here) is tested.
    let r = s.ctl(&["check"], b"");
    assert_eq!(fail_lines(&r).len(), 1, "{r:?}");
    fs::set_permissions(&q, fs::Permissions::from_mode(0o755)).unwrap();
    let r = check(&s, "nobody");
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn issue10_resolve_looks_at_the_mail_root_as_the_mail_user() {
    run_as_root_only();
    let s = Site::new();
    s.account("alice@example.com");
    delivered(&s, "alice@example.com");
    // A Maildir only root can enter: vdeliver defers; so must the dry run,
    // though root itself could open it.
    let md = s.maildir(ALICE);
    let before = owners(&md);
    std::os::unix::fs::chown(&md, Some(0), Some(0)).unwrap();
    fs::set_permissions(&md, fs::Permissions::from_mode(0o700)).unwrap();
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    let r = s.ctl(&["resolve", "alice@example.com"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("vdeliver would exit 111"), "{r:?}");
    assert_eq!(owners(&md), before, "nothing created or changed");
}

#[test]
fn guard_never_shows_its_probe_addresses() {
    // The catch-all goes to postmaster; deleting postmaster leaves the
    // catch-all looping on itself. The guard probes the catch-all with a
    // made-up address, which must not appear: it is shown as *@domain.
    let s = routed_site();
    let e = refused(&s, &["account", "delete", "postmaster@example.com"]);
    assert!(
        e.contains("catch-all of example.com") && e.contains("*@example.com"),
        "{e}"
    );
    assert!(!e.contains("vmailctlprobe"), "{e}");
    let r = s.ctl(
        &["account", "delete", "postmaster@example.com", "--json"],
        b"",
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "would_break_delivery", "{v}");
    assert!(!r.stdout.contains("vmailctlprobe"), "{r:?}");
    let out = s.ctl_ok(&["account", "delete", "postmaster@example.com", "--force"]);
    assert!(
        out.contains("warning (forced): catch-all of example.com")
            && !out.contains("vmailctlprobe"),
        "{out}"
    );
    // Adding a catch-all destination that does not exist names it.
    let e = refused(&s, &["catchall", "add", "example.com", "ghost@example.com"]);
    assert!(e.contains("ghost@example.com does not exist"), "{e}");
    assert!(!e.contains("vmailctlprobe") && !e.contains("loop"), "{e}");
}
