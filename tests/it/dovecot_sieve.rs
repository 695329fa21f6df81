//! Issue 12 end to end with the real Dovecot of the README's guide
//! ([`crate::common::dovecot`]): scripts uploaded through Dovecot
//! (`doveadm sieve`, ManageSieve) are the ones `vmailctl sieve` shows and
//! vdeliver runs, and the reverse; what vdeliver files and flags, Dovecot's
//! IMAP shows.

use crate::common::dovecot::{Dovecot, ImapMessage};
use crate::common::site::Site;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use vdeliver::maildir::MailRoot;
use vdeliver::sieve::store::active_script;

const ALICE: &str = "alice@example.com";
const PASSWORD: &str = "s3cret pw";
const HOME: &str = "example.com/alice";
const MAILDIR: &str = "example.com/alice/Maildir/";

const RULES: &[u8] = b"require [\"fileinto\"];\r\n\
if header :contains \"subject\" \"[rust]\" {\r\n  fileinto \"Lists.rust\";\r\n}\r\n";
const OTHER: &[u8] = b"# keep everything\r\nkeep;\r\n";
const FROM_MANAGESIEVE: &[u8] = b"require \"imap4flags\";\r\naddflag \"\\\\Seen\";\r\n";

/// A site with alice (who has a password) and the guide's Dovecot for her.
fn site() -> (Site, Dovecot) {
    let s = Site::new();
    let r = s.ctl(
        &["account", "add", ALICE, "--password-stdin"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let d = Dovecot::guide(&s, &[ALICE]);
    (s, d)
}

fn home(s: &Site) -> PathBuf {
    s.root.join(HOME)
}

/// What delivery would run: `sieve::store::active_script` on the mail root.
fn delivery_sees(s: &Site) -> Option<Vec<u8>> {
    let root = MailRoot::open(&s.root).unwrap();
    active_script(&root, HOME).unwrap()
}

/// `vmailctl sieve list --json`: (name, active) sorted, and the active
/// script's name.
fn vmailctl_list(s: &Site) -> (Vec<(String, bool)>, Value) {
    let l = s.ctl_json(&["sieve", "list", ALICE]);
    let mut v: Vec<(String, bool)> = l["scripts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap().to_string(),
                x["active"].as_bool().unwrap(),
            )
        })
        .collect();
    v.sort();
    (v, l["active"].clone())
}

fn vmailctl_get(s: &Site, name: &str) -> Vec<u8> {
    let r = s.ctl(&["sieve", "get", ALICE, name], b"");
    assert_eq!(r.code, Some(0), "{r:?}");
    r.stdout.into_bytes()
}

/// `doveadm sieve list`: (name, active) sorted.
fn doveadm_list(d: &Dovecot) -> Vec<(String, bool)> {
    let out = d.doveadm(&["sieve", "list", "-u", ALICE]);
    let mut v: Vec<(String, bool)> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.trim().split_once(' ') {
            Some((n, "ACTIVE")) => (n.to_string(), true),
            None => (l.trim().to_string(), false),
            Some(_) => panic!("doveadm sieve list: {out:?}"),
        })
        .collect();
    v.sort();
    v
}

/// Uploaded with `doveadm sieve put` + `activate`, a script is where
/// vdeliver looks and is what `vmailctl sieve` shows; put and activated
/// with vmailctl, it is what doveadm and ManageSieve show; put and
/// activated over ManageSieve, it is what vmailctl and delivery see.
#[test]
fn dovecot_and_vmailctl_keep_the_same_scripts() {
    let (s, d) = site();

    // Dovecot → vmailctl and delivery.
    d.doveadm_in(&["sieve", "put", "-u", ALICE, "rules"], RULES);
    assert_eq!(delivery_sees(&s), None, "put alone activates nothing");
    d.doveadm(&["sieve", "activate", "-u", ALICE, "rules"]);
    assert_eq!(fs::read(home(&s).join("sieve/rules.sieve")).unwrap(), RULES);
    assert_eq!(
        fs::read_link(home(&s).join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/rules.sieve")
    );
    assert_eq!(delivery_sees(&s).as_deref(), Some(RULES));
    let (names, active) = vmailctl_list(&s);
    assert_eq!(names, [("rules".to_string(), true)], "{active}");
    assert_eq!(active["kind"], "script");
    assert_eq!(active["detail"], "rules");
    assert_eq!(vmailctl_get(&s, "rules"), RULES);

    // vmailctl → Dovecot.
    let r = s.ctl(&["sieve", "put", ALICE, "other", "-"], OTHER);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.ctl_ok(&["sieve", "activate", ALICE, "other"]);
    assert_eq!(
        doveadm_list(&d),
        [("other".to_string(), true), ("rules".to_string(), false)]
    );
    // doveadm's tab format: a header line, the script as stored, a newline.
    let got = d.doveadm(&["-f", "tab", "sieve", "get", "-u", ALICE, "other"]);
    assert_eq!(
        got.strip_prefix("sieve script\n")
            .and_then(|g| g.strip_suffix('\n'))
            .map(str::as_bytes),
        Some(OTHER),
        "{got:?}"
    );
    assert_eq!(delivery_sees(&s).as_deref(), Some(OTHER));

    // ManageSieve (as Roundcube's managesieve plugin uses it) sees the
    // same, and what it stores vmailctl and delivery see.
    let mut ms = d.managesieve(ALICE, PASSWORD);
    assert_eq!(
        ms.listscripts(),
        [("other".to_string(), true), ("rules".to_string(), false)]
    );
    ms.putscript("roundcube", FROM_MANAGESIEVE).unwrap();
    ms.setactive("roundcube").unwrap();
    // A script that does not compile is refused and not stored.
    let e = ms
        .putscript("broken", b"if true { fileinto \"x\"; }\r\n")
        .unwrap_err();
    assert!(e.starts_with("NO"), "{e}");
    assert_eq!(
        ms.listscripts(),
        [
            ("other".to_string(), false),
            ("roundcube".to_string(), true),
            ("rules".to_string(), false)
        ]
    );
    let (names, active) = vmailctl_list(&s);
    assert_eq!(
        names,
        [
            ("other".to_string(), false),
            ("roundcube".to_string(), true),
            ("rules".to_string(), false)
        ]
    );
    assert_eq!(active["detail"], "roundcube");
    assert_eq!(vmailctl_get(&s, "roundcube"), FROM_MANAGESIEVE);
    assert_eq!(delivery_sees(&s).as_deref(), Some(FROM_MANAGESIEVE));
    assert_eq!(
        fs::read_link(home(&s).join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/roundcube.sieve")
    );

    // Deactivated by vmailctl: Dovecot sees none active.
    s.ctl_ok(&["sieve", "deactivate", ALICE]);
    assert!(doveadm_list(&d).iter().all(|(_, a)| !a), "{:?}", d.log());
    assert_eq!(delivery_sees(&s), None);
}

const FILTER: &[u8] = b"require [\"fileinto\", \"imap4flags\", \"mailbox\"];\r\n\
if header :contains \"subject\" \"report\" {\r\n\
  addflag \"\\\\Flagged\";\r\n  fileinto \"Reports\";\r\n  stop;\r\n}\r\n\
if header :contains \"subject\" \"[list]\" {\r\n  fileinto :create \"Lists\";\r\n  stop;\r\n}\r\n\
if header :contains \"subject\" \"nowhere\" {\r\n  fileinto \"Missing\";\r\n}\r\n";

fn message(subject: &str) -> Vec<u8> {
    format!("From: bob@remote.org\nTo: {ALICE}\nSubject: {subject}\n\nHello.\n").into_bytes()
}

fn delivered(s: &Site, subject: &str) {
    let r = s.deliver(ALICE, "bob@remote.org", &message(subject));
    assert_eq!(r.code, Some(0), "{subject}: {r:?}");
}

fn msg(subject: &str, flags: &[&str]) -> ImapMessage {
    ImapMessage {
        flags: flags.iter().map(|f| f.to_string()).collect(),
        subject: subject.to_string(),
    }
}

/// A filter uploaded with doveadm, run by vdeliver, read back over IMAP:
/// `fileinto` an existing folder with `addflag "\\Flagged"` lands flagged
/// (on disk in `cur/` with `:2,F`); `fileinto :create` makes the folder;
/// `fileinto` a missing folder without `:create` keeps the message in
/// INBOX; a message no rule matches is in INBOX without flags.
#[test]
fn doveadm_filter_files_and_flags_what_imap_shows() {
    let (s, d) = site();
    d.doveadm_in(&["sieve", "put", "-u", ALICE, "filter"], FILTER);
    d.doveadm(&["sieve", "activate", "-u", ALICE, "filter"]);
    // The user made the Reports folder (in the webmail, say).
    let mut imap = d.imap(ALICE, PASSWORD);
    imap.command("CREATE \"Reports\"").unwrap();
    imap.command("LOGOUT").unwrap();

    delivered(&s, "monthly report");
    delivered(&s, "hello");
    delivered(&s, "[list] digest");
    delivered(&s, "going nowhere");

    // On disk, before any IMAP client looked: flagged into cur/ with its
    // flags, unflagged into new/.
    let cur = s.files(MAILDIR, ".Reports/cur");
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert!(cur[0].ends_with(":2,F"), "{cur:?}");
    assert!(s.files(MAILDIR, ".Reports/new").is_empty());
    assert_eq!(s.files(MAILDIR, ".Lists/new").len(), 1);
    assert_eq!(s.files(MAILDIR, "new").len(), 2);
    assert!(!s.maildir(MAILDIR).join(".Missing").exists());

    // Over IMAP, in a new session (as a webmail opens one per request).
    let mut imap = d.imap(ALICE, PASSWORD);
    let folders = imap.list();
    for f in ["INBOX", "Reports", "Lists"] {
        assert!(folders.contains(&f.to_string()), "{f}: {folders:?}");
    }
    assert!(!folders.contains(&"Missing".to_string()), "{folders:?}");
    assert_eq!(
        imap.messages("Reports").unwrap(),
        [msg("monthly report", &["\\Flagged"])]
    );
    assert_eq!(imap.messages("Lists").unwrap(), [msg("[list] digest", &[])]);
    let mut inbox = imap.messages("INBOX").unwrap();
    inbox.sort_by(|a, b| a.subject.cmp(&b.subject));
    assert_eq!(inbox, [msg("going nowhere", &[]), msg("hello", &[])]);
    imap.command("LOGOUT").unwrap();
}
