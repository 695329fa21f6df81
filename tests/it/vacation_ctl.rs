//! `vmailctl vacation`: the real binary against a throwaway database and a
//! real mail root. The generated script is then compiled and run with the
//! crate's interpreter, following `include` into the account's `sieve/`
//! as delivery does, to show that the reply and the user's own filters
//! both happen.

use crate::common::site::Site;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use vdeliver::maildir::MailRoot;
use vdeliver::sieve::action::Action;
use vdeliver::sieve::interp::{run, Env, Host};
use vdeliver::sieve::message::Message;
use vdeliver::sieve::store::active_script;
use vdeliver::sieve::{compile, Location, Program};

const HOME: &str = "example.com/alice";
const ADDR: &str = "alice@example.com";
const FILTERS: &[u8] = b"require \"fileinto\";\n\
if header :contains \"subject\" \"[rust]\" {\n  fileinto \"Lists.rust\";\n}\n";
const MSG: &[u8] = b"From: bob@remote.example\r\nTo: alice@example.com\r\n\
Subject: [rust] news\r\nMessage-ID: <1@remote.example>\r\n\r\nhello\r\n";
/// 2030-07-01T00:00:00Z.
const JULY_1: i64 = 1_909_094_400;
const DAY: i64 = 86_400;

fn home(s: &Site) -> PathBuf {
    s.root.join(HOME)
}

fn link(s: &Site) -> Option<String> {
    fs::read_link(home(s).join(".dovecot.sieve"))
        .ok()
        .map(|t| t.to_string_lossy().into_owned())
}

fn vacation_file(s: &Site) -> PathBuf {
    home(s).join("sieve/vmailctl-vacation.sieve")
}

fn body_file(s: &Site, text: &[u8]) -> String {
    let p = s.dir.path().join("away.txt");
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p.to_str().unwrap().to_string()
}

fn put(s: &Site, name: &str, script: &[u8], activate: bool) {
    let r = s.ctl(&["sieve", "put", ADDR, name], script);
    assert_eq!(r.code, Some(0), "{r:?}");
    if activate {
        s.ctl_ok(&["sieve", "activate", ADDR, name]);
    }
}

fn status(s: &Site) -> Value {
    s.ctl_json(&["vacation", ADDR])
}

/// Delivery's view of `include`: `<home>/sieve/NAME.sieve`, compiled.
struct DiskHost(PathBuf);

impl Host for DiskHost {
    fn mailbox_exists(&mut self, _name: &str) -> bool {
        true
    }
    fn duplicate(&mut self, _id: &str, _seconds: Option<u64>, _last: bool) -> bool {
        false
    }
    fn include(&mut self, location: Location, name: &str) -> Result<Option<Program>, String> {
        assert_eq!(location, Location::Personal);
        match fs::read(self.0.join("sieve").join(format!("{name}.sieve"))) {
            Ok(b) => compile(&b).map(Some).map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Run what delivery would run now (the active script) at `now`; the
/// vacation reply's text and the folders stored into.
fn deliver_at(s: &Site, now: i64) -> (Option<String>, Vec<String>) {
    let root = MailRoot::open(&s.root).unwrap();
    let script = active_script(&root, HOME)
        .unwrap()
        .expect("an active script");
    let p = compile(&script).unwrap_or_else(|e| panic!("{e}"));
    let env = Env {
        envelope_from: "bob@remote.example".into(),
        envelope_to: ADDR.into(),
        now,
        ..Env::default()
    };
    let out = run(&p, &Message::parse(MSG), &env, &mut DiskHost(home(s)));
    assert_eq!(out.error, None);
    let mut reply = None;
    let mut folders = Vec::new();
    for a in out.actions {
        match a {
            Action::Vacation(v) => reply = Some(v.reason),
            Action::Store { folder, .. } => folders.push(folder),
            other => panic!("unexpected {other:?}"),
        }
    }
    (reply, folders)
}

fn on(s: &Site, extra: &[&str]) -> String {
    let f = body_file(s, b"I am away.\n");
    let mut a = vec![
        "vacation",
        ADDR,
        "on",
        "--subject",
        "Out of office",
        "--body-file",
        &f,
    ];
    a.extend_from_slice(extra);
    s.ctl_ok(&a)
}

#[test]
fn on_and_off_with_nothing_active() {
    let s = Site::new();
    s.account(ADDR);
    assert_eq!(status(&s)["status"]["state"], "off");
    let out = on(&s, &["--days", "3"]);
    assert!(out.contains("vacation on for alice@example.com"), "{out}");
    assert_eq!(link(&s).as_deref(), Some("sieve/vmailctl-vacation.sieve"));
    let text = fs::read_to_string(vacation_file(&s)).unwrap();
    assert!(
        text.contains("# vmailctl-vacation: previous active script none\n"),
        "{text}"
    );
    assert!(!text.contains("include"), "{text}");
    let (reply, folders) = deliver_at(&s, JULY_1);
    assert_eq!(reply.as_deref(), Some("I am away.\r\n"));
    assert_eq!(folders, ["INBOX"]);

    let st = status(&s);
    assert_eq!(st["status"]["state"], "on", "{st}");
    assert_eq!(st["status"]["previous"]["kind"], "nothing", "{st}");
    assert_eq!(st["status"]["settings"]["days"], 3, "{st}");
    assert_eq!(st["status"]["settings"]["subject"], "Out of office", "{st}");
    let text = s.ctl_ok(&["vacation", ADDR, "status"]);
    assert!(
        text.starts_with("vacation is on for alice@example.com"),
        "{text}"
    );
    assert!(text.contains("I am away."), "{text}");

    let out = s.ctl_ok(&["vacation", ADDR, "off"]);
    assert!(out.contains("no script is active, as before"), "{out}");
    assert_eq!(link(&s), None);
    assert!(!vacation_file(&s).exists());
    assert_eq!(status(&s)["status"]["state"], "off");
    // Off again: nothing to do, still success.
    let out = s.ctl_ok(&["vacation", ADDR, "off"]);
    assert!(out.contains("was not on"), "{out}");
}

#[test]
fn on_with_a_user_script_runs_both_and_off_restores_it() {
    let s = Site::new();
    s.account(ADDR);
    put(&s, "roundcube", FILTERS, true);
    let out = on(&s, &[]);
    assert!(out.contains("then script \"roundcube\" runs"), "{out}");
    assert_eq!(link(&s).as_deref(), Some("sieve/vmailctl-vacation.sieve"));
    let text = fs::read_to_string(vacation_file(&s)).unwrap();
    assert!(
        text.contains("include :personal :optional \"roundcube\";"),
        "{text}"
    );
    // The reply, and the user's fileinto.
    let (reply, folders) = deliver_at(&s, JULY_1);
    assert_eq!(reply.as_deref(), Some("I am away.\r\n"));
    assert_eq!(folders, ["Lists.rust"]);
    // The user's script itself is untouched.
    assert_eq!(
        fs::read(home(&s).join("sieve/roundcube.sieve")).unwrap(),
        FILTERS
    );

    // On again (new options): still remembers roundcube, not itself.
    let out = on(&s, &["--days", "2"]);
    assert!(out.contains("vacation updated"), "{out}");
    assert!(out.contains("\"roundcube\""), "{out}");
    let st = status(&s);
    assert_eq!(st["status"]["previous"]["name"], "roundcube", "{st}");
    assert_eq!(st["status"]["settings"]["days"], 2, "{st}");

    let out = s.ctl_ok(&["vacation", ADDR, "off"]);
    assert!(
        out.contains("script \"roundcube\" is active again"),
        "{out}"
    );
    assert_eq!(link(&s).as_deref(), Some("sieve/roundcube.sieve"));
    assert!(!vacation_file(&s).exists());
    let (reply, folders) = deliver_at(&s, JULY_1);
    assert_eq!(reply, None);
    assert_eq!(folders, ["Lists.rust"]);
}

#[test]
fn off_when_the_user_changed_the_active_script_meanwhile() {
    let s = Site::new();
    s.account(ADDR);
    put(&s, "roundcube", FILTERS, true);
    put(&s, "other", b"keep;\n", false);
    on(&s, &[]);
    // The user picks another script over ManageSieve.
    s.ctl_ok(&["sieve", "activate", ADDR, "other"]);
    let st = status(&s);
    assert_eq!(st["status"]["state"], "inactive", "{st}");
    let text = s.ctl_ok(&["vacation", ADDR]);
    assert!(
        text.contains("vacation script present but not active"),
        "{text}"
    );
    let out = s.ctl_ok(&["vacation", ADDR, "off"]);
    assert!(out.contains("left alone"), "{out}");
    assert_eq!(link(&s).as_deref(), Some("sieve/other.sieve"));
    assert!(!vacation_file(&s).exists());

    // The user deactivates everything while on vacation: off leaves it so.
    on(&s, &[]);
    s.ctl_ok(&["sieve", "deactivate", ADDR]);
    s.ctl_ok(&["vacation", ADDR, "off"]);
    assert_eq!(link(&s), None);
    assert!(!vacation_file(&s).exists());

    // The remembered script was deleted meanwhile: nothing is active after.
    s.ctl_ok(&["sieve", "activate", ADDR, "roundcube"]);
    on(&s, &[]);
    s.ctl_ok(&["sieve", "delete", ADDR, "roundcube"]);
    // The include is optional: the reply still goes out.
    assert!(deliver_at(&s, JULY_1).0.is_some());
    let out = s.ctl_ok(&["vacation", ADDR, "off"]);
    assert!(out.contains("no longer exists"), "{out}");
    assert_eq!(link(&s), None);
}

#[test]
fn the_date_window() {
    let s = Site::new();
    s.account(ADDR);
    put(&s, "roundcube", FILTERS, true);
    on(&s, &["--from", "2030-07-01", "--until", "2030-07-14"]);
    for (now, want) in [
        (JULY_1 - 1, false),
        (JULY_1, true),
        (JULY_1 + 13 * DAY + DAY - 1, true),
        (JULY_1 + 14 * DAY, false),
    ] {
        let (reply, folders) = deliver_at(&s, now);
        assert_eq!(reply.is_some(), want, "{now}");
        // The user's filter runs in and out of the window.
        assert_eq!(folders, ["Lists.rust"], "{now}");
    }
    let st = status(&s);
    assert_eq!(st["status"]["settings"]["from"], "2030-07-01", "{st}");
    assert_eq!(st["status"]["settings"]["until"], "2030-07-14", "{st}");
}

#[test]
fn the_body_round_trips_from_a_file_and_from_stdin() {
    let s = Site::new();
    s.account(ADDR);
    let body = "Grüße! 休暇中です\n.\n..two dots\n.leading dot\n\"quoted\" \\back\\slash\\\n\
                ${unicode:41} text:\n;}\nno final line end";
    let want = body.replace('\n', "\r\n");
    let f = body_file(&s, body.as_bytes());
    s.ctl_ok(&[
        "vacation",
        ADDR,
        "on",
        "--body-file",
        &f,
        "--subject",
        "Abwesend \"bis\" Montag — ü",
    ]);
    assert_eq!(deliver_at(&s, 0).0.as_deref(), Some(want.as_str()));
    let st = status(&s);
    assert_eq!(st["status"]["settings"]["body"], want.as_str(), "{st}");
    assert_eq!(
        st["status"]["settings"]["subject"], "Abwesend \"bis\" Montag — ü",
        "{st}"
    );
    let r = s.ctl(
        &["vacation", ADDR, "on", "--body-file", "-"],
        body.as_bytes(),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(deliver_at(&s, 0).0.as_deref(), Some(want.as_str()));
}

#[test]
fn refusals() {
    let s = Site::new();
    s.account(ADDR);
    let f = body_file(&s, b"away\n");
    let bad: &[(&[&str], i32, &str)] = &[
        (&["--from", "2030-02-30"], 2, "bad date"),
        (&["--until", "tomorrow"], 2, "bad date"),
        (
            &["--from", "2030-07-14", "--until", "2030-07-01"],
            2,
            "is after",
        ),
        (&["--days", "0"], 2, "--days 0"),
        (&["--days", "366"], 2, "--days 366"),
        (&["--subject", "a\nb"], 2, "control character"),
    ];
    for (extra, code, what) in bad {
        let mut a = vec!["vacation", ADDR, "on", "--body-file", &f];
        a.extend_from_slice(extra);
        let r = s.ctl(&a, b"");
        assert_eq!(r.code, Some(*code), "{extra:?}: {r:?}");
        assert!(r.stderr.contains(what), "{extra:?}: {r:?}");
    }
    // No body, an empty one, one that is not UTF-8, options with off.
    let r = s.ctl(&["vacation", ADDR, "on"], b"");
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--body-file"), "{r:?}");
    let r = s.ctl(&["vacation", ADDR, "on", "--body-file", "-"], b"\n");
    assert_eq!(r.code, Some(2), "{r:?}");
    let r = s.ctl(&["vacation", ADDR, "on", "--body-file", "-"], b"caf\xe9\n");
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("not UTF-8"), "{r:?}");
    let r = s.ctl(&["vacation", ADDR, "off", "--days", "3"], b"");
    assert_eq!(r.code, Some(2), "{r:?}");
    // Nothing was written by any of those.
    assert!(!home(&s).join("sieve").exists());

    // An unknown account.
    let r = s.ctl(
        &["vacation", "nobody@example.com", "on", "--body-file", &f],
        b"",
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    let r = s.ctl(&["vacation", "nobody@example.com"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");

    // A regular-file .dovecot.sieve is not replaced.
    s.ctl(&["sieve", "put", ADDR, "x"], b"keep;\n");
    let dot = home(&s).join(".dovecot.sieve");
    fs::write(&dot, b"discard;\n").unwrap();
    let r = s.ctl(&["vacation", ADDR, "on", "--body-file", &f], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("regular file"), "{r:?}");
    assert_eq!(fs::read(&dot).unwrap(), b"discard;\n");
    assert!(!vacation_file(&s).exists());
    fs::remove_file(&dot).unwrap();

    // A broken active script (written by hand) is not included.
    put(&s, "mine", b"keep;\n", true);
    fs::write(home(&s).join("sieve/mine.sieve"), b"if {\n").unwrap();
    let r = s.ctl(&["vacation", ADDR, "on", "--body-file", &f], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("\"mine\" does not compile"), "{r:?}");
    assert_eq!(link(&s).as_deref(), Some("sieve/mine.sieve"));

    // A tampered record: off refuses rather than guess.
    fs::write(home(&s).join("sieve/mine.sieve"), b"keep;\n").unwrap();
    s.ctl_ok(&["vacation", ADDR, "on", "--body-file", &f]);
    let v = vacation_file(&s);
    let text = fs::read_to_string(&v).unwrap();
    fs::write(
        &v,
        text.replace("script \"mine\"", "script \"../../etc/passwd\""),
    )
    .unwrap();
    let r = s.ctl(&["vacation", ADDR, "off"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("not guessing"), "{r:?}");
    assert_eq!(link(&s).as_deref(), Some("sieve/vmailctl-vacation.sieve"));
    assert!(Path::new(&v).exists());
}
