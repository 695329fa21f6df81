//! vdeliver end to end: the real binary, a real database, a real Maildir,
//! the environment qmail-local gives.

use crate::common::pg::Pg;
use crate::common::site::{qmail_env, set, unset, Site};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

const MSG: &[u8] = b"From: bob@remote.org\nTo: alice@example.com\nSubject: hi\n\nHello Alice.\n";
const ALICE: &str = "example.com/alice/Maildir/";

fn stored(rp: &str, dt: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = format!("Return-Path: <{rp}>\nDelivered-To: {dt}\n").into_bytes();
    v.extend_from_slice(msg);
    v
}

#[test]
fn plain_delivery_stores_exact_bytes() {
    let s = Site::new();
    s.account("alice@example.com");
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, format!("delivered to {ALICE}\n"));
    let (name, bytes) = s.only_message(ALICE);
    let want = stored("bob@remote.org", "alice@example.com", MSG);
    assert_eq!(bytes, want);
    assert!(name.ends_with(&format!(",S={}", want.len())), "{name}");
    assert!(s.files(ALICE, "tmp").is_empty());
    assert!(s.files(ALICE, "cur").is_empty());
    let md = s.maildir(ALICE);
    let file = fs::metadata(md.join("new").join(&name)).unwrap();
    assert_eq!(file.permissions().mode() & 0o777, 0o600);
    for d in [
        "",
        "new",
        "cur",
        "tmp",
        ".Drafts",
        ".Sent",
        ".Trash",
        ".Junk",
        ".Sent/new",
    ] {
        let m = fs::metadata(md.join(d)).unwrap();
        assert!(m.is_dir(), "{d}");
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{d}");
    }
    assert!(md.join(".Sent/maildirfolder").is_file());
    // Owned by the user vdeliver runs as, not root.
    let (uid, _) = crate::common::unpriv::unpriv_uid_gid();
    assert_eq!(file.uid(), uid);
}

#[test]
fn second_delivery_uses_existing_maildir_and_a_new_name() {
    let s = Site::new();
    s.account("alice@example.com");
    for _ in 0..3 {
        let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
        assert_eq!(r.code, Some(0), "{r:?}");
    }
    assert_eq!(s.files(ALICE, "new").len(), 3);
}

#[test]
fn mixed_case_address_reaches_the_account() {
    let s = Site::new();
    s.account("alice@example.com");
    let r = s.deliver("Alice@Example.COM", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    let (_, bytes) = s.only_message(ALICE);
    assert_eq!(bytes, stored("bob@remote.org", "alice@example.com", MSG));
}

#[test]
fn vpopmail_style_environment() {
    let s = Site::new();
    s.account("alice@example.com");
    let mut env = qmail_env("alice@example.com", "bob@remote.org");
    set(&mut env, "EXT", "alice");
    set(&mut env, "HOST", "example.com");
    unset(&mut env, "DEFAULT");
    let r = s.deliver_env(&env, MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(ALICE);
}

#[test]
fn dotqmail_ext_default_form() {
    // `.qmail-example:com-default`: DEFAULT is the bare local part.
    let s = Site::new();
    s.account("alice@example.com");
    let mut env = qmail_env("alice@example.com", "bob@remote.org");
    set(&mut env, "EXT", "");
    set(&mut env, "DEFAULT", "alice");
    let r = s.deliver_env(&env, MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(ALICE);
}

#[test]
fn command_line_overrides_environment() {
    let s = Site::new();
    s.account("alice@example.com");
    let env = qmail_env("nobody@example.com", "bob@remote.org");
    let out = s
        .command(&env, &["--local", "Alice", "--domain", "example.com"])
        .stdin(s.message_file(MSG))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    s.only_message(ALICE);
}

#[test]
fn bounce_gets_empty_return_path() {
    let s = Site::new();
    s.account("alice@example.com");
    let r = s.deliver("alice@example.com", "", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    let (_, bytes) = s.only_message(ALICE);
    assert!(bytes.starts_with(b"Return-Path: <>\nDelivered-To: alice@example.com\nFrom:"));
}

#[test]
fn pipe_on_stdin_works() {
    // Postfix pipe(8) and shells hand over a pipe, not a file.
    let s = Site::new();
    s.account("alice@example.com");
    let mut child = s
        .command(&qmail_env("alice@example.com", "bob@remote.org"), &[])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let big: Vec<u8> = MSG
        .iter()
        .chain(b"x".repeat(300_000).iter())
        .copied()
        .collect();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&big).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (_, bytes) = s.only_message(ALICE);
    assert_eq!(bytes, stored("bob@remote.org", "alice@example.com", &big));
}

#[test]
fn unknown_user_bounces() {
    let s = Site::new();
    s.account("alice@example.com");
    let r = s.deliver("carol@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert_eq!(r.stdout, "Sorry, no mailbox here by that name. (#5.1.1)\n");
    assert!(s.files(ALICE, "new").is_empty());
}

#[test]
fn unknown_domain_defers() {
    let s = Site::new();
    let r = s.deliver("alice@elsewhere.org", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("elsewhere.org"), "{r:?}");
    assert!(r.stdout.ends_with("(#4.3.5)\n"), "{r:?}");
}

#[test]
fn disabled_account_bounces_and_enable_restores() {
    let s = Site::new();
    s.account("alice@example.com");
    s.ctl_ok(&["account", "disable", "alice@example.com"]);
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.2.1)\n"), "{r:?}");
    assert!(s.files(ALICE, "new").is_empty());
    s.ctl_ok(&["account", "enable", "alice@example.com"]);
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn database_down_defers() {
    let pg = Pg::private();
    let s = Site::on(&pg, "", true);
    s.account("alice@example.com");
    pg.stop();
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(
        r.stdout.starts_with("Temporary failure: database: "),
        "{r:?}"
    );
    assert!(r.stdout.ends_with("(#4.3.0)\n"), "{r:?}");
    assert!(
        !r.stdout.contains("dbname"),
        "connection string leaked: {r:?}"
    );
    pg.start();
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
}

#[test]
fn missing_schema_defers_never_bounces() {
    let s = Site::on(Pg::shared(), "", false);
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("database: lookup"), "{r:?}");
    assert!(r.stdout.ends_with("(#4.3.0)\n"), "{r:?}");
}

#[test]
fn statement_timeout_defers() {
    let s = Site::with_config("");
    s.account("alice@example.com");
    fs::write(
        &s.config,
        fs::read_to_string(&s.config).unwrap().replace(
            "statement_timeout = \"10s\"",
            "statement_timeout = \"300ms\"",
        ),
    )
    .unwrap();
    let mut locker = s.db.client();
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let started = std::time::Instant::now();
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.ends_with("(#4.3.0)\n"), "{r:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    tx.rollback().unwrap();
}

#[test]
fn broken_environment_defers() {
    let s = Site::new();
    s.account("alice@example.com");
    let base = qmail_env("alice@example.com", "bob@remote.org");
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("HOST", None, "HOST is not set"),
        ("HOST", Some(""), "HOST is empty"),
        ("SENDER", None, "SENDER is not set"),
        (
            "HOST",
            Some("example.com\n"),
            "HOST contains a control character",
        ),
        (
            "RPLINE",
            Some("Return-Path: <x>\nX-Injected: 1\n"),
            "RPLINE",
        ),
    ];
    for (var, val, want) in cases {
        let mut env = base.clone();
        match val {
            Some(v) => set(&mut env, var, v),
            None => unset(&mut env, var),
        }
        if *var == "SENDER" {
            unset(&mut env, "RPLINE");
        }
        let r = s.deliver_env(&env, MSG);
        assert_eq!(r.code, Some(111), "{var}={val:?}: {r:?}");
        assert!(r.stdout.contains(want), "{var}={val:?}: {r:?}");
        assert!(r.stdout.ends_with("(#4.3.5)\n"), "{r:?}");
    }
    let mut env = base.clone();
    unset(&mut env, "EXT");
    unset(&mut env, "DEFAULT");
    let r = s.deliver_env(&env, MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("EXT is not set"), "{r:?}");
    assert!(s.files(ALICE, "new").is_empty());
}

#[test]
fn bad_configuration_defers_naming_file_and_key() {
    let s = Site::new();
    s.account("alice@example.com");
    let good = fs::read_to_string(&s.config).unwrap();
    fs::write(&s.config, format!("{good}rot = 1\n")).unwrap();
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains(&s.config.display().to_string()), "{r:?}");
    assert!(r.stdout.contains("mail.rot"), "{r:?}");
    assert!(r.stdout.ends_with("(#4.3.5)\n"), "{r:?}");
    assert!(!r.stdout.contains("dbname"), "{r:?}");
    fs::remove_file(&s.config).unwrap();
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("cannot read"), "{r:?}");
}

#[test]
fn loops_bounce_and_leave_nothing() {
    let s = Site::new();
    s.account("alice@example.com");
    let hops = "Received: from x\n".repeat(100) + "\nbody\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "plain",
            b"Delivered-To: alice@example.com\nSubject: x\n\nbody\n".to_vec(),
        ),
        (
            "crlf",
            b"Subject: x\r\nDelivered-To: alice@example.com\r\n\r\nbody\r\n".to_vec(),
        ),
        (
            "case",
            b"delivered-to: ALICE@Example.Com\n\nbody\n".to_vec(),
        ),
        ("hops", hops.into_bytes()),
    ];
    for (name, msg) in cases {
        let r = s.deliver("alice@example.com", "bob@remote.org", &msg);
        assert_eq!(r.code, Some(100), "{name}: {r:?}");
        assert!(r.stdout.ends_with("(#5.4.6)\n"), "{name}: {r:?}");
        assert!(s.files(ALICE, "new").is_empty(), "{name}");
        assert!(s.files(ALICE, "tmp").is_empty(), "{name}");
    }
    // Not loops: another address, a substring, the line in the body.
    for msg in [
        &b"Delivered-To: malice@example.com\n\nbody\n"[..],
        b"Delivered-To: vmail-example.com-alice@example.com\n\nbody\n",
        b"Subject: x\n\nDelivered-To: alice@example.com\n",
    ] {
        let r = s.deliver("alice@example.com", "bob@remote.org", msg);
        assert_eq!(r.code, Some(0), "{r:?}");
    }
    assert_eq!(s.files(ALICE, "new").len(), 3);
}

#[test]
fn odd_messages_are_stored_byte_for_byte() {
    let s = Site::new();
    s.account("alice@example.com");
    let long_line: Vec<u8> = [&b"X-Long: "[..], &vec![b'a'; 1 << 20], b"\n\nbody\n"].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "nul and 8-bit",
            b"Subject: \x00\xff\xfe\n\nbody\x00\x80\n".to_vec(),
        ),
        (
            "no separator",
            b"Subject: only a header, no body, no newline".to_vec(),
        ),
        ("empty", Vec::new()),
        ("1 MiB header line", long_line),
        ("crlf", b"Subject: x\r\nFrom: y\r\n\r\nline\r\n".to_vec()),
        ("bare cr", b"Subject: x\r\rbody\r".to_vec()),
    ];
    for (i, (name, msg)) in cases.iter().enumerate() {
        let r = s.deliver("alice@example.com", "bob@remote.org", msg);
        assert_eq!(r.code, Some(0), "{name}: {r:?}");
        let files = s.files(ALICE, "new");
        assert_eq!(files.len(), i + 1, "{name}");
        let newest = files
            .iter()
            .map(|f| s.maildir(ALICE).join("new").join(f))
            .max_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
            .unwrap();
        // Pick the file whose content matches, so ordering by time does
        // not matter.
        let want = stored("bob@remote.org", "alice@example.com", msg);
        let found = files
            .iter()
            .any(|f| fs::read(s.maildir(ALICE).join("new").join(f)).unwrap() == want);
        assert!(
            found,
            "{name}: not stored byte-for-byte (newest {newest:?})"
        );
    }
}

#[test]
fn maildir_paths_that_escape_the_root_defer() {
    let s = Site::new();
    // A hostile or legacy row: drop the constraint that normally stops it.
    s.db.execute("ALTER TABLE accounts DROP CONSTRAINT accounts_maildir_check");
    let outside = s.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    crate::common::unpriv::chown_for_unpriv(&outside);
    // A planted symlink inside the root pointing outside it.
    let planted = s.root.join("example.com");
    fs::create_dir(&planted).unwrap();
    std::os::unix::fs::symlink(&outside, planted.join("link")).unwrap();
    crate::common::unpriv::chown_for_unpriv(&planted);
    let cases = [
        ("dots", "../outside/Maildir/".to_string()),
        (
            "deep dots",
            "example.com/../../outside/Maildir/".to_string(),
        ),
        ("absolute", format!("{}/Maildir/", outside.display())),
        ("symlink", "example.com/link/Maildir/".to_string()),
    ];
    for (i, (name, path)) in cases.iter().enumerate() {
        let local = format!("u{i}");
        s.db.execute(&format!(
            "INSERT INTO accounts (domain_id, local_part, maildir)
             SELECT id, '{local}', '{path}' FROM domains WHERE name = 'example.com'"
        ));
        let r = s.deliver(&format!("{local}@example.com"), "bob@remote.org", MSG);
        assert_eq!(r.code, Some(111), "{name}: {r:?}");
        assert!(r.stdout.contains("leaves the mail root"), "{name}: {r:?}");
        assert!(r.stdout.ends_with("(#4.3.5)\n"), "{name}: {r:?}");
        let left: Vec<_> = fs::read_dir(&outside).unwrap().collect();
        assert!(left.is_empty(), "{name}: wrote outside the root: {left:?}");
    }
}

#[test]
fn symlinked_tmp_or_new_is_refused() {
    let s = Site::new();
    s.account("alice@example.com");
    assert_eq!(
        s.deliver("alice@example.com", "bob@remote.org", MSG).code,
        Some(0)
    );
    let md = s.maildir(ALICE);
    let outside = s.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    crate::common::unpriv::chown_for_unpriv(&outside);
    for sub in ["tmp", "new"] {
        let real = md.join(format!("{sub}.real"));
        fs::rename(md.join(sub), &real).unwrap();
        std::os::unix::fs::symlink(&outside, md.join(sub)).unwrap();
        let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
        assert_eq!(r.code, Some(111), "{sub}: {r:?}");
        assert!(r.stdout.ends_with("(#4.3.5)\n"), "{sub}: {r:?}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{sub}");
        fs::remove_file(md.join(sub)).unwrap();
        fs::rename(&real, md.join(sub)).unwrap();
    }
}

#[test]
fn unwritable_maildir_defers_and_leaves_tmp_clean() {
    let s = Site::new();
    s.account("alice@example.com");
    assert_eq!(
        s.deliver("alice@example.com", "bob@remote.org", MSG).code,
        Some(0)
    );
    let md = s.maildir(ALICE);
    for sub in ["new", "tmp"] {
        fs::set_permissions(md.join(sub), fs::Permissions::from_mode(0o500)).unwrap();
        let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
        fs::set_permissions(md.join(sub), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(r.code, Some(111), "{sub}: {r:?}");
        assert!(r.stdout.contains("Permission denied"), "{sub}: {r:?}");
        assert!(r.stdout.ends_with("(#4.3.0)\n"), "{sub}: {r:?}");
        assert!(s.files(ALICE, "tmp").is_empty(), "{sub}: tmp/ not clean");
        assert_eq!(s.files(ALICE, "new").len(), 1, "{sub}");
    }
}

#[test]
fn concurrent_deliveries_get_distinct_names() {
    let s = Site::new();
    s.account("alice@example.com");
    let env = qmail_env("alice@example.com", "bob@remote.org");
    let children: Vec<_> = (0..24)
        .map(|_| {
            s.command(&env, &[])
                .stdin(s.message_file(MSG))
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let files = s.files(ALICE, "new");
    assert_eq!(files.len(), 24);
    let uniques: std::collections::HashSet<_> = files
        .iter()
        .map(|f| f.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(uniques.len(), 24);
}

#[test]
fn deadline_defers_and_cleans_tmp() {
    let s = Site::with_config("[delivery]\ndeadline = \"1s\"\n");
    s.account("alice@example.com");
    // A pipe that never reaches EOF: the copy would wait for ever.
    let mut child = s
        .command(&qmail_env("alice@example.com", "bob@remote.org"), &[])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    {
        use std::io::Write;
        stdin.write_all(b"Subject: slow\n\npart").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(111), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("did not finish in time"), "{line}");
    assert!(s.files(ALICE, "new").is_empty());
    assert!(s.files(ALICE, "tmp").is_empty(), "tmp/ not cleaned");
}

#[test]
fn refuses_to_run_as_root() {
    let s = Site::new();
    s.account("alice@example.com");
    // As root, run directly; otherwise become root in a user namespace.
    let bin = crate::common::site::bin("vdeliver");
    let mut cmd = if crate::common::unpriv::is_root() {
        std::process::Command::new(&bin)
    } else {
        let mut c = std::process::Command::new("unshare");
        c.arg("--map-root-user").arg(&bin);
        c
    };
    let out = cmd
        .env_clear()
        .envs(qmail_env("alice@example.com", "bob@remote.org"))
        .env("VDELIVER_CONFIG", &s.config)
        .stdin(s.message_file(MSG))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("refuses to run as root"));
    assert!(!s.maildir(ALICE).exists());
}

/// `--help` and `--version` answer anyone, root included, before any
/// check: no environment, no configuration, no stdin, beside arguments
/// that would otherwise be a usage error.
#[test]
fn help_and_version_for_anyone_before_any_check() {
    let bin = crate::common::site::bin("vdeliver");
    let as_root = || {
        if crate::common::unpriv::is_root() {
            std::process::Command::new(&bin)
        } else {
            let mut c = std::process::Command::new("unshare");
            c.arg("--map-root-user").arg(&bin);
            c
        }
    };
    let as_user = || crate::common::unpriv::command_as_unprivileged(&bin);
    let version = format!("vdeliver {}\n", env!("CARGO_PKG_VERSION"));
    for (who, make) in [
        ("root", &as_root as &dyn Fn() -> std::process::Command),
        ("user", &as_user),
    ] {
        for args in [
            &["--help"][..],
            &["-h"],
            &["--version"],
            &["-V"],
            &["--local", "x", "--bogus", "--help"],
            &["--config", "/nonexistent", "--version"],
        ] {
            let out = make()
                .args(args)
                .env_clear()
                .env("VDELIVER_CONFIG", "/nonexistent/config.toml")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{who} {args:?}: {out:?}");
            assert!(out.stderr.is_empty(), "{who} {args:?}: {out:?}");
            if args.iter().any(|a| *a == "--help" || *a == "-h") {
                assert!(
                    stdout.starts_with(&version.replace('\n', " - ")),
                    "{stdout}"
                );
                for want in [
                    "vdeliver --local LOCAL --domain DOMAIN [--sender SENDER]",
                    "--local LOCAL     the recipient's local part; required with --domain",
                    "--domain DOMAIN   the recipient's domain; required with --local",
                    "|/usr/local/bin/vdeliver",
                    "qmail-local",
                ] {
                    assert!(
                        stdout.contains(want),
                        "{who} {args:?}: no {want:?} in\n{stdout}"
                    );
                }
            } else {
                assert_eq!(stdout, version, "{who} {args:?}");
            }
        }
    }
    // Not an option: the value of one; after `--`, a fallback. Root is
    // still refused; the user gets the usual usage error, not the help.
    let out = as_root()
        .args(["--local", "--help"])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("refuses to run as root"));
    let out = as_user()
        .args(["--bogus"])
        .env_clear()
        .stdin(tempfile::tempfile().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Configuration error: usage: unknown option --bogus (see vdeliver --help). (#4.3.5)\n"
    );
}
