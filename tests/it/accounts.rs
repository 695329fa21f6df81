//! Accounts beyond add/delete: the holder's name and a note, the services
//! an account may log in to (honoured by the guide's Dovecot passdb, with
//! the real Dovecot), `account rename` (the Maildir moves, aliases
//! follow, nothing is lost or overwritten), `account password --random`
//! and `password-schemes`.

use crate::common::dovecot::{guide_queries, guide_sql_as, Dovecot};
use crate::common::site::Site;
use crate::common::unpriv::chown_tree;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::MetadataExt;

const ALICE: &str = "alice@example.com";
const PASSWORD: &str = "s3cret pw";

fn add_with_password(s: &Site, address: &str) {
    let r = s.ctl(
        &["account", "add", address, "--password-stdin"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
}

fn msg(subject: &str) -> Vec<u8> {
    format!("From: bob@remote.org\nSubject: {subject}\n\nHello.\n").into_bytes()
}

fn delivered(s: &Site, to: &str, subject: &str) {
    let r = s.deliver(to, "bob@remote.org", &msg(subject));
    assert_eq!(r.code, Some(0), "delivery to {to}: {r:?}");
}

/// The subjects of the messages in `<maildir>/new`, sorted.
fn subjects(s: &Site, maildir: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .files(maildir, "new")
        .iter()
        .map(|f| {
            let text = fs::read_to_string(s.maildir(maildir).join("new").join(f)).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

fn fails(s: &Site, args: &[&str], code: i32) -> String {
    let r = s.ctl(args, b"");
    assert_eq!(r.code, Some(code), "vmailctl {args:?}: {r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    r.stderr
}

fn alias_destinations(s: &Site, alias: &str) -> Vec<String> {
    let l = s.ctl_json(&["alias", "list"]);
    let a = l
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == alias)
        .unwrap_or_else(|| panic!("no alias {alias}: {l}"));
    let mut v: Vec<String> = a["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn name_note_and_services_shown_and_set() {
    let s = Site::new();
    s.ctl_ok(&[
        "account",
        "add",
        ALICE,
        "--name",
        "Alice Smith",
        "--note",
        "Sales; laptop and phone",
    ]);
    s.account("bob@example.com");
    let a = s.ctl_json(&["account", "show", ALICE]);
    assert_eq!(a["real_name"], "Alice Smith");
    assert_eq!(a["note"], "Sales; laptop and phone");
    assert_eq!(
        a["services"],
        serde_json::json!({"imap": true, "pop3": true, "smtp": true, "sieve": true})
    );
    let text = s.ctl_ok(&["account", "show", ALICE]);
    assert!(text.contains("name:           Alice Smith\n"), "{text}");
    assert!(
        text.contains("note:           Sales; laptop and phone\n"),
        "{text}"
    );
    assert!(
        text.contains("services:       imap pop3 smtp sieve\n"),
        "{text}"
    );

    // Set one, the other stays; '' clears.
    let a = s.ctl_json(&["account", "set", ALICE, "--name", "Alice B. Smith"]);
    assert_eq!(a["real_name"], "Alice B. Smith");
    assert_eq!(a["note"], "Sales; laptop and phone");
    let a = s.ctl_json(&["account", "set", ALICE, "--note", ""]);
    assert_eq!(a["note"], "");
    assert_eq!(a["real_name"], "Alice B. Smith");
    let e = fails(&s, &["account", "set", ALICE, "--note", "two\nlines"], 2);
    assert!(e.contains("control character"), "{e}");
    let long = "x".repeat(201);
    let e = fails(&s, &["account", "set", ALICE, "--name", &long], 2);
    assert!(e.contains("longer than 200"), "{e}");
    fails(&s, &["account", "set", ALICE], 2);
    let e = fails(&s, &["account", "set", "zed@example.com", "--name", "Z"], 1);
    assert!(e.contains("no account zed@example.com"), "{e}");

    // Services: only the ones named change.
    let v = s.ctl_json(&[
        "account", "services", ALICE, "--imap", "off", "--pop3", "off",
    ]);
    assert_eq!(
        v["services"],
        serde_json::json!({"imap": false, "pop3": false, "smtp": true, "sieve": true})
    );
    let t = s.ctl_ok(&["account", "services", ALICE, "--pop3", "on"]);
    assert_eq!(t, "alice@example.com: pop3 smtp sieve (off: imap)\n");
    let t = s.ctl_ok(&["account", "services", ALICE]);
    assert_eq!(t, "alice@example.com: pop3 smtp sieve (off: imap)\n");
    fails(&s, &["account", "services", ALICE, "--imap", "maybe"], 2);

    // The list shows the name, services turned off and the note.
    s.ctl_ok(&["account", "set", ALICE, "--note", "VIP"]);
    let list = s.ctl_ok(&["account", "list"]);
    let line = list.lines().find(|l| l.starts_with(ALICE)).unwrap();
    assert!(
        line.starts_with("alice@example.com (Alice B. Smith)  "),
        "{line}"
    );
    assert!(
        line.contains("services pop3 smtp sieve (off: imap)"),
        "{line}"
    );
    assert!(line.ends_with("  note: VIP"), "{line}");
    let bob = list.lines().find(|l| l.starts_with("bob@")).unwrap();
    assert!(!bob.contains("services") && !bob.contains("note"), "{bob}");
    let l = s.ctl_json(&["account", "list"]);
    assert_eq!(l[0]["real_name"], "Alice B. Smith");
    assert_eq!(l[0]["services"]["imap"], false);
    assert_eq!(l[1]["real_name"], "");

    // Delivery ignores the services: every one off, mail still arrives.
    s.ctl_ok(&[
        "account", "services", ALICE, "--imap", "off", "--pop3", "off", "--smtp", "off", "--sieve",
        "off",
    ]);
    assert!(s
        .ctl_ok(&["account", "show", ALICE])
        .contains("services:       none (cannot log in anywhere)\n"));
    delivered(&s, ALICE, "still delivered");
    assert_eq!(
        subjects(&s, "example.com/alice/Maildir/"),
        ["still delivered"]
    );
}

/// The guide's password_query, run as Dovecot would for each service.
#[test]
fn guide_password_query_checks_the_service() {
    let s = Site::new();
    add_with_password(&s, ALICE);
    let q = guide_queries();
    let pq = &q["password_query"];
    let logs_in = |svc: &str| !guide_sql_as(&s, pq, ALICE, svc).is_empty();
    for svc in ["imap", "pop3", "smtp", "submission", "sieve", "doveadm"] {
        assert!(logs_in(svc), "{svc}");
    }
    s.ctl_ok(&["account", "services", ALICE, "--smtp", "off"]);
    assert!(!logs_in("smtp") && !logs_in("submission"));
    assert!(logs_in("imap") && logs_in("pop3") && logs_in("sieve"));
    s.ctl_ok(&[
        "account", "services", ALICE, "--pop3", "off", "--smtp", "on",
    ]);
    assert!(!logs_in("pop3") && logs_in("smtp"));
    // A service name is data, never SQL.
    assert!(logs_in("x' OR true --"));
}

/// The real Dovecot of the guide refuses a service turned off, at the
/// next login, and only that service.
#[test]
fn dovecot_refuses_a_service_turned_off() {
    let s = Site::new();
    add_with_password(&s, ALICE);
    let d = Dovecot::guide(&s, &[ALICE]);
    let imap = |pw: &str| d.try_imap(ALICE, pw).map(drop);
    let sieve = |pw: &str| d.try_managesieve(ALICE, pw).map(drop);
    let ok = |r: Result<(), String>| r.unwrap_or_else(|e| panic!("{e}\n{}", d.log()));

    ok(imap(PASSWORD));
    ok(sieve(PASSWORD));
    assert!(imap("wrong").is_err(), "a wrong password must be refused");
    assert!(d.auth_test("pop3", ALICE, PASSWORD));
    assert!(d.auth_test("smtp", ALICE, PASSWORD));
    assert!(!d.auth_test("smtp", ALICE, "wrong"));

    s.ctl_ok(&["account", "services", ALICE, "--imap", "off"]);
    let e = imap(PASSWORD).unwrap_err();
    assert!(e.contains("NO"), "{e}");
    ok(sieve(PASSWORD));
    assert!(d.auth_test("pop3", ALICE, PASSWORD));

    s.ctl_ok(&["account", "services", ALICE, "--sieve", "off"]);
    let e = sieve(PASSWORD).unwrap_err();
    assert!(e.starts_with("NO"), "{e}");
    assert!(imap(PASSWORD).is_err());

    s.ctl_ok(&[
        "account", "services", ALICE, "--pop3", "off", "--smtp", "off",
    ]);
    assert!(!d.auth_test("pop3", ALICE, PASSWORD));
    assert!(!d.auth_test("smtp", ALICE, PASSWORD));
    assert!(!d.auth_test("submission", ALICE, PASSWORD));

    s.ctl_ok(&[
        "account", "services", ALICE, "--imap", "on", "--sieve", "on",
    ]);
    let mut c = d.try_imap(ALICE, PASSWORD).unwrap();
    assert!(c.list().contains(&"INBOX".to_string()));
    ok(sieve(PASSWORD));
    assert!(!d.auth_test("pop3", ALICE, PASSWORD));
}

/// The fenced block of the README whose first line is `first` (the first
/// such block of kind `fence`), without the list item's indentation.
fn readme_block(fence: &str, first: &str) -> String {
    let readme =
        fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() != format!("```{fence}") || lines.get(i + 1).map(|n| n.trim()) != Some(first) {
            continue;
        }
        let indent = l.len() - l.trim_start().len();
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|b| b.trim() != "```")
            .map(|b| b.get(indent..).unwrap_or(""))
            .collect();
        return body.join("\n") + "\n";
    }
    panic!("README.md has no ```{fence} block beginning with {first:?}");
}

/// The migration guide's SMTP AUTH wrapper (vchkpw's replacement: a
/// checkpassword program asking Dovecot's auth service), exactly as the
/// README prints it, with the README's auth listener, run the way
/// qmail-smtpd's AUTH patch runs it: as qmail-smtpd's user, `user NUL
/// password NUL timestamp NUL` on descriptor 3, the program to run on
/// success as its arguments, stdout the client's connection. Only the
/// socket's directory and the listener's user differ (this Dovecot's base
/// directory, the tests' unprivileged user instead of qmaild).
#[test]
fn the_guides_smtp_auth_wrapper_logs_in_refuses_and_defers() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let s = Site::new();
    add_with_password(&s, ALICE);
    let uid = if crate::common::unpriv::is_root() {
        crate::common::unpriv::unpriv_uid_gid().0
    } else {
        nix::unistd::getuid().as_raw()
    };
    let me = nix::unistd::User::from_uid(uid.into())
        .unwrap()
        .expect("the test user has a name")
        .name;
    let listener = readme_block("text", "service auth {");
    assert!(listener.contains("user = qmaild"), "{listener}");
    let d = Dovecot::guide_with(
        &s,
        &[ALICE],
        &listener.replace("user = qmaild", &format!("user = {me}")),
    );
    let socket = d.dir.join("run/auth-qmail");
    let script = readme_block("sh", "#!/bin/bash");
    assert!(script.contains("checkpassword interface"), "{script}");
    assert!(script.contains("/run/dovecot/auth-qmail"), "{script}");
    let path = s.dir.path().join("checkpassword-dovecot");
    fs::write(
        &path,
        script.replace("/run/dovecot/auth-qmail", &socket.display().to_string()),
    )
    .unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // (exit code, stdout) of one login from `rip`; `fd3` is what
    // qmail-smtpd writes. Each refused login comes from another address:
    // Dovecot delays an address's logins more after each failure.
    let login_from = |rip: &str, fd3: &[u8]| -> (Option<i32>, String) {
        let (reader, mut writer) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut writer, fd3).unwrap();
        drop(writer);
        let raw = reader.as_raw_fd();
        let mut cmd = crate::common::unpriv::command_as_unprivileged(&path);
        cmd.args(["/bin/sh", "-c", "echo \"authenticated, in $PWD\""])
            .current_dir("/")
            .env("TCPREMOTEIP", rip)
            .stdin(std::process::Stdio::null());
        // SAFETY: dup2 and fcntl are async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself keeps close-on-exec: clear it after.
                if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        drop(reader);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let login = |fd3: &[u8]| login_from("192.0.2.7", fd3);
    let creds = |user: &str, pass: &str| format!("{user}\0{pass}\01796163094\0").into_bytes();
    let ok = (Some(0), "authenticated, in /\n".to_string());
    let refused = (Some(1), String::new());

    assert_eq!(login(&creds(ALICE, PASSWORD)), ok, "{}", d.log());
    // A wrong password or user is refused, and nothing of doveadm's
    // report reaches the client.
    assert_eq!(login_from("192.0.2.8", &creds(ALICE, "wrong")), refused);
    // Dovecot's passdb saw the service smtp and the client's address.
    assert!(
        d.logins().contains(&format!("smtp 192.0.2.8 {ALICE}")),
        "{:?}",
        d.logins()
    );
    assert_eq!(
        login_from("192.0.2.9", &creds("nobody@example.com", PASSWORD)),
        refused
    );
    assert_eq!(login(&creds("-x", PASSWORD)), refused);
    // Nothing on descriptor 3: try later.
    assert_eq!(login(b""), (Some(111), String::new()));
    // The smtp flag decides, and only it.
    s.ctl_ok(&["account", "services", ALICE, "--smtp", "off"]);
    assert_eq!(login_from("192.0.2.10", &creds(ALICE, PASSWORD)), refused);
    s.ctl_ok(&[
        "account", "services", ALICE, "--smtp", "on", "--imap", "off", "--pop3", "off",
    ]);
    assert_eq!(login(&creds(ALICE, PASSWORD)), ok);
    // Dovecot down: a temporary error, never "wrong password".
    drop(d);
    assert_eq!(login(&creds(ALICE, PASSWORD)), (Some(111), String::new()));
}

/// The migration guide's POP3 settings, exactly as the README prints
/// them, on the guide's Dovecot: UIDL gives each message the id
/// qmail-pop3d gave it (its file name after `new/` or `cur/`, up to the
/// `:`), so clients that leave mail on the server download nothing twice
/// after the switch; vchkpw's `alice%example.com` still logs in; the
/// `pop3` flag refuses POP3 and only POP3.
#[test]
fn the_guides_pop3_settings_keep_qmail_pop3d_uidls_and_logins() {
    let s = Site::new();
    add_with_password(&s, ALICE);
    delivered(&s, ALICE, "one");
    delivered(&s, ALICE, "two");
    delivered(&s, ALICE, "three");
    let md = s.root.join("example.com/alice/Maildir");
    // One message qmail-pop3d had already listed and left: in cur/, ":2,".
    let first = fs::read_dir(md.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    fs::rename(
        md.join("new").join(&first),
        md.join("cur").join(format!("{first}:2,S")),
    )
    .unwrap();
    // qmail-pop3d's UIDL of each file.
    let mut want: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|sub| fs::read_dir(md.join(sub)).unwrap())
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.split(':').next().unwrap().to_owned()
        })
        .collect();
    want.sort();
    assert_eq!(want.len(), 3);

    let settings = readme_block("text", "protocols = imap pop3 sieve");
    assert!(settings.contains("pop3_uidl_format = %f"), "{settings}");
    let d = Dovecot::guide_with(&s, &[ALICE], &settings);
    let mut c = d
        .try_pop3(ALICE, PASSWORD)
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let mut got: Vec<String> = c.uidl().into_iter().map(|(_, id)| id).collect();
    got.sort();
    assert_eq!(got, want, "{}", d.log());
    c.command("QUIT").unwrap();
    // vchkpw's form of the address.
    d.try_pop3("alice%example.com", PASSWORD)
        .unwrap_or_else(|e| panic!("alice%example.com: {e}\n{}", d.log()));
    assert!(d.try_pop3(ALICE, "wrong").is_err());
    s.ctl_ok(&["account", "services", ALICE, "--pop3", "off"]);
    let e = d
        .try_pop3(ALICE, PASSWORD)
        .err()
        .expect("pop3 off must refuse");
    assert!(e.starts_with("-ERR"), "{e}");
    d.try_imap(ALICE, PASSWORD)
        .unwrap_or_else(|e| panic!("IMAP with only pop3 off: {e}"));
}

#[test]
fn rename_moves_the_maildir_and_the_aliases_follow() {
    let s = Site::new();
    s.ctl_ok(&["alias-domain", "add", "example.net", "example.com"]);
    s.ctl_ok(&["domain", "add", "example.org"]);
    s.account(ALICE);
    s.account("carol@example.com");
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        ALICE,
        "carol@example.com",
    ]);
    s.ctl_ok(&["alias", "add", "boss@example.org", "Alice@Example.NET"]);
    // Both old forms and the new address already: one row remains.
    s.ctl_ok(&[
        "alias",
        "add",
        "all@example.com",
        ALICE,
        "alice@example.net",
        "asmith@example.org",
        "--force",
    ]);
    s.ctl_ok(&["catchall", "add", "example.org", ALICE]);
    delivered(&s, ALICE, "before 1");
    delivered(&s, "team@example.com", "before 2");
    let r = s.ctl(&["sieve", "put", ALICE, "rules", "-"], b"keep;\r\n");
    assert_eq!(r.code, Some(0), "{r:?}");

    let r = s.ctl_json(&["account", "rename", ALICE, "ASmith@example.org"]);
    assert_eq!(r["from"], ALICE);
    assert_eq!(r["to"], "asmith@example.org");
    assert_eq!(r["moved"], "moved");
    assert_eq!(r["maildir_before"], "example.com/alice/Maildir/");
    assert_eq!(r["maildir"], "example.org/asmith/Maildir/");
    assert_eq!(
        r["rewritten"],
        serde_json::json!([
            "alias all@example.com",
            "alias boss@example.org",
            "alias team@example.com",
            "catch-all of example.org"
        ])
    );
    assert_eq!(r["warnings"], serde_json::json!([]));

    // The whole home moved: mail, the Sieve script; nothing left behind,
    // and it still belongs to the mail user.
    assert!(!s.root.join("example.com/alice").exists());
    let new = "example.org/asmith/Maildir/";
    assert_eq!(subjects(&s, new), ["before 1", "before 2"]);
    assert!(s.root.join("example.org/asmith/sieve").is_dir());
    assert!(!s.root.join("example.org/asmith/.vmailctl-rename").exists());
    let owner = fs::metadata(&s.root).unwrap().uid();
    assert_eq!(
        fs::metadata(s.root.join("example.org")).unwrap().uid(),
        owner
    );
    assert_eq!(
        fs::metadata(s.root.join("example.org/asmith"))
            .unwrap()
            .uid(),
        owner
    );

    // The database: the old address is gone, the aliases point at the new.
    let e = fails(&s, &["account", "show", ALICE], 1);
    assert!(e.contains("no account alice@example.com"), "{e}");
    let a = s.ctl_json(&["account", "show", "asmith@example.org"]);
    assert_eq!(a["maildir"], new);
    assert_eq!(
        alias_destinations(&s, "team@example.com"),
        ["asmith@example.org", "carol@example.com"]
    );
    assert_eq!(
        alias_destinations(&s, "boss@example.org"),
        ["asmith@example.org"]
    );
    assert_eq!(
        alias_destinations(&s, "all@example.com"),
        ["asmith@example.org"]
    );

    // Delivery: to the new address, through the alias and the catch-all,
    // into the moved Maildir; the old address bounces.
    delivered(&s, "asmith@example.org", "after 1");
    delivered(&s, "team@example.com", "after 2");
    delivered(&s, "nobody@example.org", "after 3");
    let r = s.deliver(ALICE, "bob@remote.org", &msg("lost?"));
    assert_eq!(r.code, Some(100), "{r:?}");
    assert_eq!(
        subjects(&s, new),
        ["after 1", "after 2", "after 3", "before 1", "before 2"]
    );
    assert!(!s.root.join("example.com/alice").exists());
    let text = s.ctl_ok(&["sieve", "list", "asmith@example.org"]);
    assert!(text.contains("rules"), "{text}");

    // Back within the same domain, in text.
    let t = s.ctl_ok(&[
        "account",
        "rename",
        "asmith@example.org",
        "alice@example.org",
    ]);
    assert!(
        t.starts_with(
            "renamed account asmith@example.org to alice@example.org; Maildir moved from \
             example.org/asmith/Maildir/ to example.org/alice/Maildir/"
        ),
        "{t}"
    );
    assert!(
        t.contains("pointed at alice@example.org: alias all@example.com"),
        "{t}"
    );
    assert_eq!(subjects(&s, "example.org/alice/Maildir/").len(), 5);
}

#[test]
fn rename_refusals_change_nothing() {
    let s = Site::new();
    s.ctl_ok(&["alias-domain", "add", "example.net", "example.com"]);
    s.account(ALICE);
    s.account("bob@example.com");
    s.ctl_ok(&["alias", "add", "team@example.com", "bob@example.com"]);
    s.ctl_ok(&["relocated", "add", "old@example.com", "new@example.org"]);
    s.ctl_ok(&["alias", "add", "ext@example.com", "alice-lists@example.com"]);
    delivered(&s, ALICE, "kept");
    let before = s.ctl_json(&["account", "list"]);
    let aliases = s.ctl_json(&["alias", "list"]);
    let check = |why: &str| {
        assert_eq!(s.ctl_json(&["account", "list"]), before, "{why}");
        assert_eq!(s.ctl_json(&["alias", "list"]), aliases, "{why}");
        assert_eq!(
            subjects(&s, "example.com/alice/Maildir/"),
            ["kept"],
            "{why}"
        );
    };
    for (to, what) in [
        ("bob@example.com", "an account"),
        ("team@example.com", "an alias"),
        ("old@example.com", "a relocated address"),
    ] {
        let e = fails(&s, &["account", "rename", ALICE, to], 1);
        assert!(e.contains(&format!("{to} is already {what}")), "{e}");
        check(to);
    }
    let e = fails(&s, &["account", "rename", ALICE, "x@example.net"], 1);
    assert!(e.contains("is an alias domain"), "{e}");
    fails(&s, &["account", "rename", ALICE, "x@nowhere.example"], 1);
    fails(
        &s,
        &["account", "rename", "zed@example.com", "y@example.com"],
        1,
    );
    fails(&s, &["account", "rename", ALICE, "Alice@example.com"], 2);
    fails(&s, &["account", "rename", ALICE, "bad address"], 2);
    check("bad input");

    // An alias to an extension of the old address would stop delivering.
    let e = fails(&s, &["account", "rename", ALICE, "al@example.com"], 1);
    assert!(
        e.contains("alias ext@example.com") && e.contains("--force"),
        "{e}"
    );
    check("extension");

    // The target home exists on disk (a deleted account's leftovers).
    let stale = s.root.join("example.com/al");
    fs::create_dir_all(stale.join("Maildir/new")).unwrap();
    fs::write(
        stale.join("Maildir/new/old-mail"),
        b"Subject: not yours\n\n",
    )
    .unwrap();
    chown_tree(
        &s.root.join("example.com"),
        fs::metadata(&s.root).unwrap().uid(),
        fs::metadata(&s.root).unwrap().gid(),
    );
    let e = fails(
        &s,
        &["account", "rename", ALICE, "al@example.com", "--force"],
        1,
    );
    assert!(
        e.contains("example.com/al/ already exists") && e.contains("Nothing changed"),
        "{e}"
    );
    check("target exists");
    assert_eq!(
        fs::read(stale.join("Maildir/new/old-mail")).unwrap(),
        b"Subject: not yours\n\n"
    );
    assert!(!s.root.join("example.com/alice/.vmailctl-rename").exists());

    // A symlink at the target is refused too, and not followed.
    fs::remove_dir_all(&stale).unwrap();
    let elsewhere = s.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &stale).unwrap();
    let e = fails(
        &s,
        &["account", "rename", ALICE, "al@example.com", "--force"],
        1,
    );
    assert!(e.contains("refusing to move"), "{e}");
    check("symlink");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn rename_keeps_a_maildir_outside_the_default_layout() {
    let s = Site::new();
    s.ctl_ok(&[
        "account",
        "add",
        ALICE,
        "--maildir",
        "example.com/a/alice/Maildir/",
    ]);
    delivered(&s, ALICE, "one");
    let r = s.ctl_json(&["account", "rename", ALICE, "al@example.com"]);
    assert_eq!(r["moved"], "kept-path");
    assert_eq!(r["maildir"], "example.com/a/alice/Maildir/");
    delivered(&s, "al@example.com", "two");
    assert_eq!(subjects(&s, "example.com/a/alice/Maildir/"), ["one", "two"]);
    let t = s.ctl_ok(&["account", "rename", "al@example.com", "alice@example.com"]);
    assert!(t.contains("keeps its path"), "{t}");
    // Never delivered to: nothing to move, the path still changes.
    s.account("new@example.com");
    let r = s.ctl_json(&["account", "rename", "new@example.com", "newer@example.com"]);
    assert_eq!(r["moved"], "nothing-on-disk");
    assert_eq!(r["maildir"], "example.com/newer/Maildir/");
    delivered(&s, "newer@example.com", "first");
    assert_eq!(subjects(&s, "example.com/newer/Maildir/"), ["first"]);
}

/// A crash between the move and the COMMIT: the database still says
/// alice, the home is already at the new path with the marker. The same
/// command again finishes; without the marker, the directory is someone
/// else's and is refused.
#[test]
fn rename_interrupted_after_the_move_is_finished_by_a_rerun() {
    let s = Site::new();
    s.account(ALICE);
    delivered(&s, ALICE, "old mail");
    let old = s.root.join("example.com/alice");
    let new = s.root.join("example.com/al");
    // First a marker for another pair: not ours, so someone else's
    // directory, refused.
    fs::write(
        old.join(".vmailctl-rename"),
        "alice@example.com x@example.com\n",
    )
    .unwrap();
    fs::rename(&old, &new).unwrap();
    chown_tree(
        &new,
        fs::metadata(&s.root).unwrap().uid(),
        fs::metadata(&s.root).unwrap().gid(),
    );
    let e = fails(&s, &["account", "rename", ALICE, "al@example.com"], 1);
    assert!(e.contains("example.com/al/ already exists"), "{e}");
    fs::write(
        new.join(".vmailctl-rename"),
        "alice@example.com al@example.com\n",
    )
    .unwrap();
    let r = s.ctl_json(&["account", "rename", ALICE, "al@example.com"]);
    assert_eq!(r["moved"], "resumed");
    assert!(!new.join(".vmailctl-rename").exists());
    delivered(&s, "al@example.com", "new mail");
    assert_eq!(
        subjects(&s, "example.com/al/Maildir/"),
        ["new mail", "old mail"]
    );
    // Mail arrived at the old address in between: both homes, refused.
    s.account("bo@example.com");
    delivered(&s, "bo@example.com", "b1");
    let b_old = s.root.join("example.com/bo");
    let b_new = s.root.join("example.com/bob");
    fs::write(
        b_old.join(".vmailctl-rename"),
        "bo@example.com bob@example.com\n",
    )
    .unwrap();
    fs::rename(&b_old, &b_new).unwrap();
    delivered(&s, "bo@example.com", "b2");
    let e = fails(
        &s,
        &["account", "rename", "bo@example.com", "bob@example.com"],
        1,
    );
    assert!(e.contains("an interrupted rename"), "{e}");
    assert_eq!(subjects(&s, "example.com/bo/Maildir/"), ["b2"]);
    assert_eq!(subjects(&s, "example.com/bob/Maildir/"), ["b1"]);
}

/// `vmailctl check`'s "renames" line: ok when no marker is left, and for
/// each marker what to do, decided by which address is the account now.
fn renames_line(s: &Site) -> (bool, String) {
    let r = s.ctl(&["check", "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "renames")
        .unwrap_or_else(|| panic!("no renames line: {v}"))
        .clone();
    (c["ok"] == true, c["detail"].as_str().unwrap().to_owned())
}

/// A crash between the move and the COMMIT leaves mail for the old
/// address to land in a recreated Maildir: `check` says so and names the
/// command that finishes it; a marker a finished rename failed to remove
/// is told apart (remove the file), and so is one naming no pair.
#[test]
fn check_reports_a_marker_left_by_an_interrupted_rename() {
    let s = Site::new();
    s.account(ALICE);
    delivered(&s, ALICE, "old mail");
    let (ok, d) = renames_line(&s);
    assert!(ok, "{d}");
    assert!(d.starts_with("no interrupted account rename under "), "{d}");
    // Interrupted after the move: the database still says alice.
    let old = s.root.join("example.com/alice");
    let new = s.root.join("example.com/al");
    fs::write(
        old.join(".vmailctl-rename"),
        "alice@example.com al@example.com\n",
    )
    .unwrap();
    fs::rename(&old, &new).unwrap();
    let (ok, d) = renames_line(&s);
    assert!(!ok);
    assert_eq!(
        d,
        "example.com/al/.vmailctl-rename: the rename of alice@example.com to al@example.com \
         was interrupted (the database still says alice@example.com): run `vmailctl account \
         rename alice@example.com al@example.com` again to finish it"
    );
    // The command it names finishes, and the line is ok again.
    let r = s.ctl_json(&["account", "rename", ALICE, "al@example.com"]);
    assert_eq!(r["moved"], "resumed");
    let (ok, d) = renames_line(&s);
    assert!(ok, "{d}");
    // A finished rename whose marker stayed (its removal failed).
    fs::write(
        new.join(".vmailctl-rename"),
        "alice@example.com al@example.com\n",
    )
    .unwrap();
    // And a marker naming no pair, in another domain's home.
    fs::create_dir_all(s.root.join("example.org/x")).unwrap();
    fs::write(s.root.join("example.org/x/.vmailctl-rename"), "garbage").unwrap();
    // A FIFO where the marker would be cannot hang the check.
    fs::create_dir_all(s.root.join("example.org/z")).unwrap();
    nix::unistd::mkfifo(
        &s.root.join("example.org/z/.vmailctl-rename"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // A symlinked home is not followed (a marker through it is not read).
    std::os::unix::fs::symlink(&new, s.root.join("example.org/y")).unwrap();
    let (ok, d) = renames_line(&s);
    assert!(!ok);
    assert_eq!(
        d,
        "example.com/al/.vmailctl-rename: the rename of alice@example.com to al@example.com \
         finished but left its marker: remove the file; example.org/x/.vmailctl-rename is a \
         rename marker naming no pair of addresses: look at example.org/x/, then remove the \
         file; example.org/z/.vmailctl-rename is a rename marker naming no pair of addresses: \
         look at example.org/z/, then remove the file"
    );
    // Both gone: clean again.
    fs::remove_file(new.join(".vmailctl-rename")).unwrap();
    fs::remove_dir_all(s.root.join("example.org")).unwrap();
    let (ok, _) = renames_line(&s);
    assert!(ok);
}

fn stored_hash(s: &Site, address: &str) -> String {
    let (l, d) = address.split_once('@').unwrap();
    let mut c = s.db.client();
    c.query_one(
        "SELECT a.password_hash FROM accounts a JOIN domains d ON d.id = a.domain_id
          WHERE d.name = $1 AND a.local_part = $2",
        &[&d, &l],
    )
    .unwrap()
    .get(0)
}

fn doveadm_verifies(hash: &str, password: &str) -> bool {
    let out = std::process::Command::new(crate::common::dovecot::binary("doveadm"))
        .args(["-o", "log_path=/dev/null", "pw", "-t", hash, "-p", password])
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn random_password_is_printed_once_and_stored_hashed() {
    let s = Site::new();
    s.account(ALICE);
    let out = s.ctl_ok(&["account", "password", ALICE, "--random"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("password of alice@example.com changed (SHA512-CRYPT); the new password:")
    );
    let pw = lines.next().unwrap().to_string();
    assert_eq!(lines.next(), None);
    assert_eq!(pw.len(), 20, "{pw}");
    assert!(pw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() && !"0Oo1lI".contains(c)));
    let hash = stored_hash(&s, ALICE);
    assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{hash}");
    assert!(!hash.contains(&pw));
    assert!(doveadm_verifies(&hash, &pw));
    assert!(!doveadm_verifies(&hash, "wrong"));

    let v = s.ctl_json(&["account", "password", ALICE, "--random"]);
    let pw2 = v["password"].as_str().unwrap();
    assert_ne!(pw2, pw);
    assert!(doveadm_verifies(&stored_hash(&s, ALICE), pw2));
    assert!(!doveadm_verifies(&stored_hash(&s, ALICE), &pw));
    // Not together with --password-stdin.
    let r = s.ctl(
        &["account", "password", ALICE, "--random", "--password-stdin"],
        b"x\n",
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    // The configured scheme.
    let s2 = Site::with_config("[password]\nscheme = \"ARGON2ID\"\n");
    s2.account(ALICE);
    let v = s2.ctl_json(&["account", "password", ALICE, "--random"]);
    assert_eq!(v["scheme"], "ARGON2ID");
    let hash = stored_hash(&s2, ALICE);
    assert!(hash.starts_with("{ARGON2ID}$argon2id$"), "{hash}");
    assert!(doveadm_verifies(&hash, v["password"].as_str().unwrap()));
}

#[test]
fn password_schemes_lists_store_and_verify() {
    let s = Site::new();
    let v: Value = s.ctl_json(&["password-schemes"]);
    assert_eq!(v["configured"], "SHA512-CRYPT");
    let schemes = v["schemes"].as_array().unwrap();
    let names = |f: &dyn Fn(&Value) -> bool| -> Vec<String> {
        schemes
            .iter()
            .filter(|x| f(x))
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&|x| x["store"] == true), ["SHA512-CRYPT", "ARGON2ID"]);
    let verified = names(&|x| x["verify"] == true);
    for n in ["SHA512-CRYPT", "ARGON2ID", "CRYPT", "MD5-CRYPT", "PLAIN"] {
        assert!(verified.contains(&n.to_string()), "{n}: {verified:?}");
    }
    // Each scheme said to be verified is one this Dovecot verifies.
    let samples = [
        ("{MD5-CRYPT}", "md5-crypt"),
        ("{SHA256-CRYPT}", "sha256-crypt"),
        ("{PLAIN}", "plain"),
    ];
    for (prefix, scheme) in samples {
        let out = std::process::Command::new(crate::common::dovecot::binary("doveadm"))
            .args(["-o", "log_path=/dev/null", "pw", "-s", scheme, "-p", "pw1"])
            .output()
            .unwrap();
        let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(hash.starts_with(prefix), "{hash}");
        assert!(doveadm_verifies(&hash, "pw1"), "{hash}");
    }
    // vpopmail's crypt strings, kept as {CRYPT}: the MD5 one.
    let md5 = std::process::Command::new(crate::common::dovecot::binary("doveadm"))
        .args([
            "-o",
            "log_path=/dev/null",
            "pw",
            "-s",
            "md5-crypt",
            "-p",
            "pw1",
        ])
        .output()
        .unwrap();
    let md5 = String::from_utf8(md5.stdout).unwrap();
    let crypt = format!("{{CRYPT}}{}", md5.trim().trim_start_matches("{MD5-CRYPT}"));
    assert!(crypt.starts_with("{CRYPT}$1$"), "{crypt}");
    assert!(doveadm_verifies(&crypt, "pw1"));
    let t = s.ctl_ok(&["password-schemes"]);
    assert!(t.starts_with("scheme        store  verify"), "{t}");
    assert!(t.contains("SHA512-CRYPT  yes    yes     $6$"), "{t}");
    assert!(t.contains("(configured)"), "{t}");
}
