//! `vmailctl sieve`: the real binary against a throwaway database and a
//! real mail root. Scripts land where Dovecot's ManageSieve keeps them
//! (`<home>/sieve/NAME.sieve`, the active one the symlink
//! `<home>/.dovecot.sieve`), owned by the mail user, and delivery's own
//! lookup (`sieve::store::active_script`) finds the activated one.

use crate::common::site::Site;
use crate::common::unpriv::{is_root, unpriv_uid_gid};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use vdeliver::maildir::MailRoot;
use vdeliver::sieve::store::active_script;

const GOOD: &[u8] = b"require \"fileinto\";\r\n\
if header :contains \"subject\" \"[rust]\" {\r\n  fileinto \"Lists.rust\";\r\n}\r\n";
const OTHER: &[u8] = b"# keep everything\nkeep;\n";
const BROKEN: &[u8] =
    b"require \"fileinto\";\nif header :contains \"subject\" {\n  fileinto \"x\";\n}\n";
const UNKNOWN_EXT: &[u8] = b"fileinto \"x\";\n";

const HOME: &str = "example.com/alice";

fn script_file(s: &Site, name: &str, text: &[u8]) -> PathBuf {
    let p = s.dir.path().join(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    p
}

fn json(s: &Site, args: &[&str]) -> Value {
    s.ctl_json(args)
}

fn names(list: &Value) -> Vec<(String, bool)> {
    list["scripts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap().to_string(),
                x["active"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn home(s: &Site) -> PathBuf {
    s.root.join(HOME)
}

/// What delivery would run: `sieve::store::active_script` on the mail root.
fn delivery_sees(s: &Site) -> Option<Vec<u8>> {
    let root = MailRoot::open(&s.root).unwrap();
    active_script(&root, HOME).unwrap()
}

fn assert_mail_user_owns(p: &Path) {
    let m = fs::symlink_metadata(p).unwrap();
    assert_eq!((m.uid(), m.gid()), unpriv_uid_gid(), "{}", p.display());
}

#[test]
fn put_list_get_activate_deactivate_delete() {
    let s = Site::new();
    s.account("alice@example.com");
    let good = script_file(&s, "good.sieve", GOOD);

    // Nothing yet.
    let l = json(&s, &["sieve", "list", "alice@example.com"]);
    assert!(names(&l).is_empty(), "{l}");
    assert_eq!(l["active"]["kind"], "none");
    assert_eq!(l["home"], HOME);

    // put from a file, and from standard input.
    let out = s.ctl_ok(&[
        "sieve",
        "put",
        "alice@example.com",
        "roundcube",
        good.to_str().unwrap(),
    ]);
    assert!(out.contains("stored script \"roundcube\""), "{out}");
    let r = s.ctl(&["sieve", "put", "alice@example.com", "other", "-"], OTHER);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = s.ctl(
        &["sieve", "put", "alice@example.com", "stdin-default"],
        OTHER,
    );
    assert_eq!(r.code, Some(0), "{r:?}");

    let dir = home(&s).join("sieve");
    let file = dir.join("roundcube.sieve");
    assert_eq!(fs::read(&file).unwrap(), GOOD);
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
    // No temporary file left behind.
    let mut in_dir: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    in_dir.sort();
    assert_eq!(
        in_dir,
        ["other.sieve", "roundcube.sieve", "stdin-default.sieve"]
    );
    if is_root() {
        for p in [&dir, &file, &dir.join("other.sieve")] {
            assert_mail_user_owns(p);
        }
    }

    // list and get round trip.
    let l = json(&s, &["sieve", "list", "alice@example.com"]);
    assert_eq!(
        names(&l),
        [
            ("other".to_string(), false),
            ("roundcube".to_string(), false),
            ("stdin-default".to_string(), false)
        ]
    );
    let r = s.ctl(&["sieve", "get", "alice@example.com", "roundcube"], b"");
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout.as_bytes(),
        GOOD,
        "get prints the script byte for byte"
    );
    let g = json(&s, &["sieve", "get", "alice@example.com", "other"]);
    assert_eq!(g["script"].as_str().unwrap().as_bytes(), OTHER);
    let r = s.ctl(&["sieve", "get", "alice@example.com", "nosuch"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("no Sieve script"), "{r:?}");

    // Nothing active yet: delivery sees no script.
    assert_eq!(delivery_sees(&s), None);

    // activate: the relative symlink, seen by delivery's lookup.
    let a = json(&s, &["sieve", "activate", "alice@example.com", "roundcube"]);
    assert_eq!(a["before"]["kind"], "none");
    let link = home(&s).join(".dovecot.sieve");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("sieve/roundcube.sieve")
    );
    if is_root() {
        assert_mail_user_owns(&link);
    }
    assert_eq!(delivery_sees(&s).as_deref(), Some(GOOD));
    let l = json(&s, &["sieve", "list", "alice@example.com"]);
    assert_eq!(l["active"]["kind"], "script");
    assert_eq!(l["active"]["detail"], "roundcube");
    assert!(names(&l).contains(&("roundcube".to_string(), true)), "{l}");
    let text = s.ctl_ok(&["sieve", "list", "alice@example.com"]);
    assert!(text.contains("* roundcube"), "{text}");
    assert!(text.contains("  other"), "{text}");

    // Switching replaces the link (no leftover temporary link).
    let a = json(&s, &["sieve", "activate", "alice@example.com", "other"]);
    assert_eq!(a["before"]["detail"], "roundcube");
    assert_eq!(delivery_sees(&s).as_deref(), Some(OTHER));
    let leftovers: Vec<_> = fs::read_dir(home(&s))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("vmailctl"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // put over the active script changes what runs.
    let r = s.ctl(&["sieve", "put", "alice@example.com", "other", "-"], GOOD);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.stdout.contains("replaced"), "{r:?}");
    assert!(r.stdout.contains("it is the active script"), "{r:?}");
    assert_eq!(delivery_sees(&s).as_deref(), Some(GOOD));

    // activate of a script that is missing, or broken by hand since.
    let r = s.ctl(&["sieve", "activate", "alice@example.com", "nosuch"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    fs::write(dir.join("edited.sieve"), BROKEN).unwrap();
    let r = s.ctl(&["sieve", "activate", "alice@example.com", "edited"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("does not compile"), "{r:?}");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("sieve/other.sieve"),
        "a refused activate leaves the link"
    );
    fs::remove_file(dir.join("edited.sieve")).unwrap();

    // delete of the active one is refused; of another one is not.
    let r = s.ctl(&["sieve", "delete", "alice@example.com", "other"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("is active"), "{r:?}");
    assert!(dir.join("other.sieve").exists());
    assert_eq!(delivery_sees(&s).as_deref(), Some(GOOD));
    let d = json(
        &s,
        &["sieve", "delete", "alice@example.com", "stdin-default"],
    );
    assert_eq!(d["deleted"]["deactivated"], false);
    assert!(!dir.join("stdin-default.sieve").exists());
    let r = s.ctl(
        &["sieve", "delete", "alice@example.com", "stdin-default"],
        b"",
    );
    assert_eq!(r.code, Some(1), "deleting a missing script: {r:?}");
    // --force deactivates it too.
    let d = json(
        &s,
        &["sieve", "delete", "alice@example.com", "other", "--force"],
    );
    assert_eq!(d["deleted"]["deactivated"], true);
    assert!(!dir.join("other.sieve").exists());
    assert!(fs::symlink_metadata(&link).is_err(), "link removed");
    assert_eq!(delivery_sees(&s), None);

    // deactivate.
    json(&s, &["sieve", "activate", "alice@example.com", "roundcube"]);
    assert_eq!(delivery_sees(&s).as_deref(), Some(GOOD));
    let out = s.ctl_ok(&["sieve", "deactivate", "alice@example.com"]);
    assert!(out.contains("deactivated script \"roundcube\""), "{out}");
    assert!(fs::symlink_metadata(&link).is_err());
    assert_eq!(delivery_sees(&s), None);
    assert!(file.exists(), "deactivate keeps the script");
    let out = s.ctl_ok(&["sieve", "deactivate", "alice@example.com"]);
    assert!(out.contains("no script"), "{out}");

    // A hand-written regular .dovecot.sieve is not removed or replaced.
    fs::write(&link, OTHER).unwrap();
    let r = s.ctl(&["sieve", "deactivate", "alice@example.com"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("regular file"), "{r:?}");
    let r = s.ctl(
        &["sieve", "activate", "alice@example.com", "roundcube"],
        b"",
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(fs::read(&link).unwrap(), OTHER);
    assert_eq!(
        json(&s, &["sieve", "list", "alice@example.com"])["active"]["kind"],
        "file"
    );
}

#[test]
fn put_refuses_a_broken_script_and_bad_names() {
    let s = Site::new();
    s.account("alice@example.com");
    for (script, line) in [(BROKEN, "line 2"), (UNKNOWN_EXT, "line 1")] {
        let f = script_file(&s, "broken.sieve", script);
        let r = s.ctl(
            &[
                "sieve",
                "put",
                "alice@example.com",
                "broken",
                f.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(r.stdout.is_empty(), "{r:?}");
        assert!(r.stderr.contains(line), "{r:?}");
        assert!(r.stderr.contains("not stored"), "{r:?}");
        // Nothing written: not the script, not even sieve/.
        assert!(!home(&s).join("sieve").exists(), "{r:?}");
    }
    // Broken over a good one: the good one stays.
    let r = s.ctl(&["sieve", "put", "alice@example.com", "f"], GOOD);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = s.ctl(&["sieve", "put", "alice@example.com", "f"], BROKEN);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(fs::read(home(&s).join("sieve/f.sieve")).unwrap(), GOOD);

    let long = "x".repeat(129);
    for bad in [
        "a/b",
        "../../etc/x",
        ".hidden",
        "tab\there",
        long.as_str(),
        "",
    ] {
        for cmd in ["put", "get", "activate", "delete"] {
            let r = s.ctl(&["sieve", cmd, "alice@example.com", bad], GOOD);
            assert_eq!(r.code, Some(2), "{cmd} {bad:?}: {r:?}");
            assert!(r.stderr.contains("bad script name"), "{cmd} {bad:?}: {r:?}");
        }
    }
    let mut files: Vec<String> = fs::read_dir(home(&s).join("sieve"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["f.sieve"]);

    // An unknown account.
    let r = s.ctl(&["sieve", "list", "nobody@example.com"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
}

#[test]
fn put_before_the_first_delivery_makes_the_maildir_as_the_mail_user() {
    let s = Site::new();
    s.account("alice@example.com");
    assert!(!home(&s).exists() || !home(&s).join("sieve").exists());
    let r = s.ctl(&["sieve", "put", "alice@example.com", "f"], GOOD);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(home(&s).join("Maildir/new").is_dir());
    if is_root() {
        assert_mail_user_owns(&home(&s));
        assert_mail_user_owns(&home(&s).join("Maildir"));
        assert_mail_user_owns(&home(&s).join("sieve/f.sieve"));
    }
}

#[test]
fn an_account_without_a_home_is_refused() {
    let s = Site::new();
    s.ctl_ok(&[
        "account",
        "add",
        "bob@example.com",
        "--maildir",
        "example.com/bob/",
    ]);
    let r = s.ctl(&["sieve", "put", "bob@example.com", "f"], GOOD);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("no place for Sieve scripts"), "{r:?}");
}

#[test]
fn check_a_file_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.sieve");
    let bad = dir.path().join("bad.sieve");
    fs::write(&good, GOOD).unwrap();
    fs::write(&bad, BROKEN).unwrap();
    // A configuration that does not exist: check needs none.
    let ctl = |args: &[&str]| {
        let o = std::process::Command::new(crate::common::site::bin("vmailctl"))
            .arg("--config")
            .arg(dir.path().join("no-such-config.toml"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let g = good.to_str().unwrap();
    let b = bad.to_str().unwrap();
    let (code, out, err) = ctl(&["sieve", "check", g]);
    assert_eq!(code, Some(0), "{out} {err}");
    assert_eq!(out, format!("{g}: ok\n"));
    let (code, out, err) = ctl(&["sieve", "check", b]);
    assert_eq!(code, Some(1), "{out} {err}");
    assert!(out.starts_with(&format!("{b}: line 2: ")), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, out, _) = ctl(&["sieve", "check", b, "--json"]);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["line"], 2);
    let (code, _, err) = ctl(&["sieve", "check", "/no/such/file.sieve"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/no/such/file.sieve"), "{err}");
    for sub in [
        "check",
        "list",
        "get",
        "put",
        "activate",
        "deactivate",
        "delete",
    ] {
        let (code, out, _) = ctl(&["sieve", sub, "--help"]);
        assert_eq!(code, Some(0));
        assert!(out.contains("Example"), "{sub}: {out}");
    }
}

#[test]
fn a_symlinked_script_dir_or_script_is_not_followed() {
    let s = Site::new();
    s.account("alice@example.com");
    let r = s.ctl(&["sieve", "put", "alice@example.com", "f"], GOOD);
    assert_eq!(r.code, Some(0), "{r:?}");
    // A script that is a symlink (to a file outside) is neither read nor
    // activated.
    let outside = s.dir.path().join("outside.sieve");
    fs::write(&outside, OTHER).unwrap();
    let dir = home(&s).join("sieve");
    std::os::unix::fs::symlink(&outside, dir.join("evil.sieve")).unwrap();
    for cmd in ["get", "activate"] {
        let r = s.ctl(&["sieve", cmd, "alice@example.com", "evil"], b"");
        assert_eq!(r.code, Some(1), "{cmd}: {r:?}");
        assert!(r.stdout.is_empty(), "{cmd}: {r:?}");
    }
    let l = json(&s, &["sieve", "list", "alice@example.com"]);
    assert_eq!(
        names(&l),
        [("f".to_string(), false)],
        "symlinks are not listed"
    );
    // sieve/ itself a symlink: put refuses and writes nothing there.
    let elsewhere = s.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    let r = s.ctl(&["sieve", "put", "alice@example.com", "g"], GOOD);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("not a directory"), "{r:?}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// `vmailctl resolve ADDRESS --message FILE` runs the account's active
/// script against the message and shows its actions, as Pigeonhole's
/// sieve-test does, storing nothing: through an alias too, for each
/// account it reaches.
#[test]
fn resolve_with_a_message_shows_what_the_active_script_would_do() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.ctl_ok(&["alias", "add", "team@example.com", "alice@example.com"]);
    s.ctl_ok(&["alias", "add", "team@example.com", "bob@example.com"]);
    let script = script_file(
        &s,
        "s.sieve",
        b"require [\"fileinto\", \"imap4flags\", \"copy\"];\n\
          if header :contains \"subject\" \"[rust]\" {\n\
            fileinto :flags \"\\\\Seen\" \"Lists.rust\";\n\
            redirect :copy \"archive@remote.example\";\n\
          }\n",
    );
    s.ctl_ok(&[
        "sieve",
        "put",
        "alice@example.com",
        "f",
        script.to_str().unwrap(),
    ]);
    s.ctl_ok(&["sieve", "activate", "alice@example.com", "f"]);
    let listy = script_file(
        &s,
        "m1.eml",
        b"From: x@remote.example\nTo: team@example.com\nSubject: [rust] 1.90\n\nhi\n",
    );
    let plain = script_file(
        &s,
        "m2.eml",
        b"From: x@remote.example\nTo: team@example.com\nSubject: lunch\n\nhi\n",
    );
    let before = fs::read_dir(s.root.join("example.com"))
        .map(|d| d.count())
        .unwrap_or(0);
    let out = s.ctl_ok(&[
        "resolve",
        "team@example.com",
        "--message",
        listy.to_str().unwrap(),
    ]);
    assert!(
        out.contains("sieve:      alice@example.com (example.com/alice/Maildir/): ran"),
        "{out}"
    );
    assert!(out.contains("store into Lists.rust flags \\Seen"), "{out}");
    assert!(out.contains("redirect to archive@remote.example"), "{out}");
    assert!(
        out.contains("sieve:      bob@example.com (example.com/bob/Maildir/): no script"),
        "{out}"
    );
    let out = s.ctl_ok(&[
        "resolve",
        "alice@example.com",
        "--message",
        plain.to_str().unwrap(),
    ]);
    assert!(out.contains("implicit keep into INBOX"), "{out}");
    assert!(!out.contains("Lists.rust"), "{out}");
    let v = json(
        &s,
        &[
            "resolve",
            "alice@example.com",
            "--message",
            listy.to_str().unwrap(),
        ],
    );
    assert_eq!(v["sieve"][0]["run"]["status"], "ran", "{v}");
    assert_eq!(
        v["sieve"][0]["run"]["actions"][1], "redirect to archive@remote.example",
        "{v}"
    );
    // Nothing stored, no folder made.
    assert!(!s
        .root
        .join("example.com/alice/Maildir/.Lists.rust")
        .exists());
    assert_eq!(
        fs::read_dir(s.root.join("example.com"))
            .map(|d| d.count())
            .unwrap_or(0),
        before
    );
    // A script broken by hand since it was activated: said, not fatal.
    fs::write(s.root.join(HOME).join("sieve/f.sieve"), BROKEN).unwrap();
    let out = s.ctl_ok(&[
        "resolve",
        "alice@example.com",
        "--message",
        plain.to_str().unwrap(),
    ]);
    assert!(out.contains("does not compile"), "{out}");
    assert!(out.contains("line 2:"), "{out}");
}
