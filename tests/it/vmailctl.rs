//! vmailctl end to end: the real binary against the throwaway PostgreSQL.
//! Every command's success path, its `--json` form and its error paths;
//! passwords checked by Dovecot's own `doveadm pw -t`; deletes and
//! `--purge` against real directories; `resolve` compared with what the
//! real `vdeliver` then does for the same address; `check`.

use crate::common::pg::Pg;
use crate::common::site::{bin, qmail_env, qmail_queue_stub, Run, Site};
use crate::common::unpriv::chown_for_unpriv;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MSG: &[u8] = b"From: bob@remote.org\nSubject: vmailctl\n\nHello.\n";

fn json(s: &Site, args: &[&str]) -> Value {
    s.ctl_json(args)
}

/// Run vmailctl expecting exit `code`; returns stderr.
fn fails(s: &Site, args: &[&str], code: i32) -> String {
    let r = s.ctl(args, b"");
    assert_eq!(r.code, Some(code), "vmailctl {args:?}: {r:?}");
    assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    assert!(r.stderr.starts_with("vmailctl: ") || code == 2, "{r:?}");
    r.stderr
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Every file and directory beneath `root` with its size: to see that a
/// command wrote nothing.
fn tree(root: &Path) -> BTreeMap<PathBuf, u64> {
    let mut m = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            m.insert(p.clone(), md.len());
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    m
}

#[test]
fn usage_errors_exit_2_and_help_has_examples() {
    let s = Site::new();
    for args in [
        vec![],
        vec!["domain"],
        vec!["domain", "add"],
        vec!["bogus"],
        vec!["account", "add", "a@example.com", "--no-such-flag"],
        vec!["domain", "add", "x.org", "--quota-bytes", "lots"],
        vec!["account", "quota", "a@example.com"],
        vec!["domain", "delete", "example.com", "--purge"],
    ] {
        let r = s.ctl(&args, b"");
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
    }
    let subcommands: &[&[&str]] = &[
        &[],
        &["migrate"],
        &["domain", "add"],
        &["domain", "set"],
        &["domain", "delete"],
        &["domain", "list"],
        &["domain", "show"],
        &["alias-domain", "add"],
        &["alias-domain", "delete"],
        &["alias-domain", "move"],
        &["alias-domain", "list"],
        &["account", "add"],
        &["account", "delete"],
        &["account", "list"],
        &["account", "show"],
        &["account", "password"],
        &["account", "quota"],
        &["account", "disable"],
        &["account", "enable"],
        &["account", "junk"],
        &["alias", "add"],
        &["alias", "delete"],
        &["alias", "list"],
        &["catchall", "add"],
        &["catchall", "delete"],
        &["catchall", "list"],
        &["relocated", "add"],
        &["relocated", "delete"],
        &["relocated", "list"],
        &["resolve"],
        &["quota"],
        &["check"],
        &["vacation"],
    ];
    for sub in subcommands {
        let mut args = sub.to_vec();
        args.push("--help");
        let r = s.ctl(&args, b"");
        assert_eq!(r.code, Some(0), "{args:?}: {r:?}");
        assert!(r.stdout.contains("Example"), "{args:?}: {}", r.stdout);
    }
}

/// What users see: `vmailctl PATH --help` for every command path, found by
/// following the "Commands:" lists of the binary's own help (so commands
/// added later are walked too), shows an example of that command; and
/// `man` and `completions` need no configuration.
#[test]
fn every_commands_help_shows_an_example_and_man_pages_need_no_config() {
    let run = |args: &[&str]| {
        let out = Command::new(bin("vmailctl"))
            .args(args)
            .env("VDELIVER_CONFIG", "/nonexistent/vdeliver.toml")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "vmailctl {args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "vmailctl {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run(&args);
        seen += 1;
        let shown = format!("vmailctl {}", path.join(" "));
        let shown = shown.trim_end();
        let examples = help
            .split_once("\nExample")
            .unwrap_or_else(|| panic!("{shown} --help has no example:\n{help}"))
            .1;
        assert!(
            examples.lines().any(|l| {
                let l = l.trim_start();
                l == shown || l.starts_with(&format!("{shown} "))
            }),
            "{shown} --help has no example of itself:\n{help}"
        );
        if let Some((_, commands)) = help.split_once("\nCommands:\n") {
            for line in commands.lines().take_while(|l| !l.trim().is_empty()) {
                let name = line.split_whitespace().next().unwrap();
                if name != "help" {
                    let mut sub = path.clone();
                    sub.push(name.to_string());
                    todo.push(sub);
                }
            }
        }
    }
    assert!(seen > 45, "only {seen} command paths");
    let page = run(&["man", "vmailctl"]);
    assert!(page.contains(".TH VMAILCTL 8"), "{page}");
    assert!(page.contains(".SS \"vmailctl account add\""), "{page}");
    let page = run(&["man", "vdeliver"]);
    assert!(page.contains(".TH VDELIVER 8"), "{page}");
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        assert!(script.contains("alias-domain"), "{shell}: {script}");
    }
}

#[test]
fn domains_add_set_list_show_with_units_and_idn() {
    let s = Site::new();
    let d = json(
        &s,
        &[
            "domain",
            "add",
            "Bücher.Example",
            "--quota-bytes",
            "2G",
            "--quota-messages",
            "50000",
            "--note",
            "Books Ltd",
        ],
    );
    assert_eq!(d["name"], "xn--bcher-kva.example");
    assert_eq!(d["unicode"], "bücher.example");
    assert_eq!(d["quota_bytes"], 2i64 << 30);
    assert_eq!(d["quota_messages"], 50000);
    assert_eq!(d["note"], "Books Ltd");
    assert_eq!(d["active"], true);
    // Text output shows both forms.
    let out = s.ctl_ok(&["domain", "add", "Straße.Example", "--disabled"]);
    assert_eq!(
        out, "added domain straße.example (xn--strae-oqa.example)\n",
        "{out}"
    );
    let show = s.ctl_ok(&["domain", "show", "xn--bcher-kva.example"]);
    assert!(
        show.contains("bücher.example (xn--bcher-kva.example)"),
        "{show}"
    );
    assert!(show.contains("2 GiB, 50000 messages"), "{show}");

    let list = json(&s, &["domain", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "example.com",
            "xn--bcher-kva.example",
            "xn--strae-oqa.example"
        ]
    );
    assert_eq!(list[2]["active"], false);

    let d = json(
        &s,
        &[
            "domain",
            "set",
            "bücher.example",
            "--quota-bytes",
            "1.5M",
            "--disable",
        ],
    );
    assert_eq!(d["quota_bytes"], 1536 * 1024);
    assert_eq!(d["quota_messages"], 50000, "left as it was");
    assert_eq!(d["active"], false);

    // Errors: duplicates 1, bad names 2, missing 1.
    let e = fails(&s, &["domain", "add", "EXAMPLE.com"], 1);
    assert!(e.contains("example.com is already a domain"), "{e}");
    for bad in ["exa mple.com", "x-.org", "a..b", "x_y.org", ""] {
        let e = fails(&s, &["domain", "add", bad], 2);
        assert!(e.contains("bad domain"), "{bad}: {e}");
    }
    let e = fails(&s, &["domain", "show", "nowhere.org"], 1);
    assert!(e.contains("no domain nowhere.org"), "{e}");
    let e = fails(&s, &["domain", "add", "x.org", "--note", "a\nb"], 2);
    assert!(e.contains("control character"), "{e}");
}

#[test]
fn alias_domains_add_move_list_delete() {
    let s = Site::new();
    s.ctl_ok(&["domain", "add", "example.org"]);
    let out = s.ctl_ok(&["alias-domain", "add", "Example.NET", "example.com"]);
    assert_eq!(out, "added alias domain example.net of example.com\n");
    let l = json(&s, &["alias-domain", "list"]);
    assert_eq!(l[0]["name"], "example.net");
    assert_eq!(l[0]["domain"], "example.com");
    assert_eq!(
        json(&s, &["domain", "show", "example.com"])["alias_domains"][0],
        "example.net"
    );
    // A name is a domain or an alias domain, never both.
    let e = fails(
        &s,
        &["alias-domain", "add", "example.org", "example.com"],
        1,
    );
    assert!(e.contains("already a domain or an alias domain"), "{e}");
    let e = fails(&s, &["domain", "add", "example.net"], 1);
    assert!(e.contains("already a domain or an alias domain"), "{e}");
    // An alias domain is not a place to put accounts; the error says where.
    let e = fails(&s, &["account", "add", "x@example.net"], 1);
    assert!(
        e.contains("example.net is an alias domain of example.com"),
        "{e}"
    );
    let e = fails(
        &s,
        &["alias-domain", "add", "a.example", "nowhere.example"],
        1,
    );
    assert!(e.contains("no domain nowhere.example"), "{e}");

    let m = json(&s, &["alias-domain", "move", "example.net", "example.org"]);
    assert_eq!(m["domain"], "example.org");
    assert!(strs(&json(&s, &["alias-domain", "list", "example.com"])).is_empty());
    assert_eq!(
        json(&s, &["alias-domain", "list", "example.org"])[0]["name"],
        "example.net"
    );
    let e = fails(
        &s,
        &["alias-domain", "move", "nope.example", "example.org"],
        1,
    );
    assert!(e.contains("no alias domain nope.example"), "{e}");

    // Delete: refused while an alias points into it.
    s.account("bob@example.org");
    s.ctl_ok(&["alias", "add", "team@example.com", "bob@example.net"]);
    let e = fails(&s, &["alias-domain", "delete", "example.net"], 1);
    assert!(e.contains("alias team@example.com"), "{e}");
    let out = s.ctl_ok(&["alias-domain", "delete", "example.net", "--force"]);
    assert!(out.starts_with("deleted alias domain example.net\nwarning (forced): still referenced by alias team@example.com"), "{out}");
    fails(&s, &["alias-domain", "delete", "example.net"], 1);
}

#[test]
fn accounts_add_list_show_quota_disable_password() {
    let s = Site::with_config("[password]\nscheme = \"SHA512-CRYPT\"\n");
    s.ctl_ok(&[
        "domain",
        "set",
        "example.com",
        "--quota-bytes",
        "1G",
        "--quota-messages",
        "1000",
    ]);
    let a = json(&s, &["account", "add", "Alice@Example.COM"]);
    assert_eq!(a["address"], "alice@example.com");
    assert_eq!(a["maildir"], "example.com/alice/Maildir/");
    assert_eq!(a["active"], true);
    assert_eq!(a["password_scheme"], Value::Null);
    assert_eq!(a["quota_bytes"], Value::Null);
    assert_eq!(a["effective_quota_bytes"], 1i64 << 30);
    let r = s.ctl(
        &[
            "account",
            "add",
            "bob@example.com",
            "--password-stdin",
            "--maildir",
            "example.com/b/bob",
            "--quota-bytes",
            "5M",
            "--disabled",
        ],
        b"hunter2\n",
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        "added account bob@example.com with Maildir example.com/b/bob/\n"
    );
    assert!(!r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"));

    let l = json(&s, &["account", "list", "example.com"]);
    assert_eq!(l.as_array().unwrap().len(), 2);
    assert_eq!(l[1]["address"], "bob@example.com");
    assert_eq!(l[1]["active"], false);
    assert_eq!(l[1]["password_scheme"], "SHA512-CRYPT");
    assert_eq!(l[1]["quota_bytes"], 5 << 20);
    assert_eq!(l[1]["effective_quota_messages"], 1000);
    let raw = s.ctl(&["account", "show", "bob@example.com", "--json"], b"");
    assert!(
        !raw.stdout.contains("$6$"),
        "the hash is never shown: {}",
        raw.stdout
    );
    let text = s.ctl_ok(&["account", "show", "bob@example.com"]);
    assert!(
        text.contains("password:       set (SHA512-CRYPT)"),
        "{text}"
    );
    assert!(
        text.contains("quota:          5 MiB (own), 1000 messages (domain default)"),
        "{text}"
    );

    assert_eq!(
        s.ctl_ok(&["account", "enable", "bob@example.com"]),
        "enabled bob@example.com\n"
    );
    assert_eq!(
        json(&s, &["account", "show", "bob@example.com"])["active"],
        true
    );
    assert_eq!(
        s.ctl_ok(&["account", "disable", "bob@example.com"]),
        "disabled bob@example.com\n"
    );
    assert_eq!(
        json(&s, &["account", "show", "bob@example.com"])["active"],
        false
    );

    let q = json(
        &s,
        &[
            "account",
            "quota",
            "alice@example.com",
            "--bytes",
            "unlimited",
            "--messages",
            "7",
        ],
    );
    assert_eq!(
        (q["quota_bytes"].as_i64(), q["quota_messages"].as_i64()),
        (Some(0), Some(7))
    );
    let q = json(
        &s,
        &["account", "quota", "alice@example.com", "--messages", "9"],
    );
    assert_eq!(
        (q["quota_bytes"].as_i64(), q["quota_messages"].as_i64()),
        (Some(0), Some(9))
    );
    let q = json(&s, &["account", "quota", "alice@example.com", "--inherit"]);
    assert_eq!(q["quota_bytes"], Value::Null);
    assert_eq!(q["effective_quota_bytes"], 1i64 << 30);
    fails(
        &s,
        &[
            "account",
            "quota",
            "alice@example.com",
            "--inherit",
            "--bytes",
            "1",
        ],
        2,
    );

    let r = s.ctl(
        &[
            "account",
            "password",
            "alice@example.com",
            "--password-stdin",
            "--json",
        ],
        b"n3w pass\n",
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!r.stdout.contains("n3w"), "{r:?}");
    assert_eq!(
        json(&s, &["account", "show", "alice@example.com"])["password_scheme"],
        "SHA512-CRYPT"
    );

    // Errors.
    let e = fails(&s, &["account", "add", "alice@example.com"], 1);
    assert!(e.contains("alice@example.com is already an account"), "{e}");
    let e = fails(&s, &["account", "add", "x@nowhere.example"], 1);
    assert!(e.contains("no domain nowhere.example"), "{e}");
    for bad in [
        "a/b@example.com",
        "a..b@example.com",
        "noat",
        "a@",
        "a b@example.com",
    ] {
        fails(&s, &["account", "add", bad], 2);
    }
    let e = fails(
        &s,
        &["account", "add", "c@example.com", "--maildir", "../etc"],
        2,
    );
    assert!(e.contains("'..'"), "{e}");
    fails(
        &s,
        &["account", "add", "c@example.com", "--maildir", "/etc"],
        2,
    );
    for args in [
        vec!["account", "show", "nobody@example.com"],
        vec!["account", "disable", "nobody@example.com"],
        vec!["account", "quota", "nobody@example.com", "--bytes", "1"],
    ] {
        let e = fails(&s, &args, 1);
        assert!(e.contains("no account nobody@example.com"), "{args:?}: {e}");
    }
    let r = s.ctl(
        &[
            "account",
            "password",
            "alice@example.com",
            "--password-stdin",
        ],
        b"\n",
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("empty"), "{r:?}");
    // An address is an account or relocated, never both.
    s.ctl_ok(&["relocated", "add", "old@example.com", "new@example.org"]);
    let e = fails(&s, &["account", "add", "old@example.com"], 1);
    assert!(
        e.contains("already an account or a relocated address"),
        "{e}"
    );
}

/// The password never comes from argv: there is no option that takes one,
/// and without a terminal vmailctl refuses rather than reading stdin.
#[test]
fn password_never_from_argv_nor_without_a_terminal() {
    let s = Site::new();
    let r = s.ctl(
        &["account", "add", "a@example.com", "--password", "secret"],
        b"",
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    let r = s.ctl(
        &["account", "add", "a@example.com", "--password=secret"],
        b"",
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    s.account("a@example.com");
    let setsid = ["/usr/bin/setsid", "/bin/setsid"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "this test needs setsid(1) (Debian: util-linux) to run vmailctl without a terminal",
        );
    let out = Command::new(setsid)
        .arg(bin("vmailctl"))
        .arg("--config")
        .arg(&s.config)
        .args(["account", "password", "a@example.com"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r: Run = out.into();
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(
        r.stderr.contains("no terminal") && r.stderr.contains("--password-stdin"),
        "{r:?}"
    );
    assert_eq!(
        json(&s, &["account", "show", "a@example.com"])["password_scheme"],
        Value::Null
    );
}

fn doveadm() -> PathBuf {
    ["/usr/bin/doveadm", "/usr/sbin/doveadm"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| crate::common::find_in_path("doveadm"))
        .unwrap_or_else(|| {
            panic!(
                "this test needs Dovecot's doveadm to verify password hashes, and it is not \
                 installed (Debian: apt-get install dovecot-core; .ci/run installs it)"
            )
        })
}

/// Dovecot's `doveadm pw -t HASH -p PASSWORD`: does Dovecot accept it?
fn dovecot_accepts(hash: &str, password: &str) -> bool {
    let out = Command::new(doveadm())
        .args(["-o", "log_path=/dev/null", "pw", "-t", hash, "-p", password])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(text.contains("(verified)"), "{text}");
        true
    } else {
        assert!(
            text.contains("mismatch"),
            "doveadm failed for another reason: {text}"
        );
        false
    }
}

#[test]
fn password_hashes_verify_with_dovecot() {
    for scheme in ["SHA512-CRYPT", "ARGON2ID"] {
        let s = Site::with_config(&format!("[password]\nscheme = \"{scheme}\"\n"));
        let r = s.ctl(
            &["account", "add", "alice@example.com", "--password-stdin"],
            b"c0rrect horse\n",
        );
        assert_eq!(r.code, Some(0), "{r:?}");
        let mut c = s.db.client();
        let hash: String = c
            .query_one("SELECT password_hash FROM accounts", &[])
            .unwrap()
            .get(0);
        assert!(hash.starts_with(&format!("{{{scheme}}}")), "{hash}");
        assert!(dovecot_accepts(&hash, "c0rrect horse"), "{scheme}");
        assert!(!dovecot_accepts(&hash, "c0rrect horsE"), "{scheme}");
        // A new password replaces it.
        let r = s.ctl(
            &[
                "account",
                "password",
                "alice@example.com",
                "--password-stdin",
            ],
            b"other\n",
        );
        assert_eq!(r.code, Some(0), "{r:?}");
        let hash2: String = c
            .query_one("SELECT password_hash FROM accounts", &[])
            .unwrap()
            .get(0);
        assert!(dovecot_accepts(&hash2, "other"));
        assert!(!dovecot_accepts(&hash2, "c0rrect horse"));
    }
}

#[test]
fn aliases_catchalls_relocated() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    let out = s.ctl_ok(&[
        "alias",
        "add",
        "Team@example.com",
        "alice@example.com",
        "Dave@Remote.ORG",
    ]);
    assert_eq!(
        out,
        "alias team@example.com -> alice@example.com, Dave@remote.org\n"
    );
    let ch = json(
        &s,
        &[
            "alias",
            "add",
            "team@example.com",
            "bob@example.com",
            "alice@example.com",
        ],
    );
    assert_eq!(
        strs(&ch["destinations"]),
        ["bob@example.com"],
        "only what is new"
    );
    let e = fails(
        &s,
        &["alias", "add", "team@example.com", "bob@example.com"],
        1,
    );
    assert!(e.contains("already has bob@example.com"), "{e}");
    let l = json(&s, &["alias", "list"]);
    assert_eq!(l[0]["address"], "team@example.com");
    assert_eq!(
        strs(&l[0]["destinations"]),
        ["alice@example.com", "Dave@remote.org", "bob@example.com"]
    );
    // Bad input is a usage error.
    for bad in ["nope", "%q@x.org", "a b@x.org", "a@x_y.org"] {
        let e = fails(&s, &["alias", "add", "team@example.com", bad], 2);
        assert!(e.contains("bad destination"), "{e}");
    }
    fails(&s, &["alias", "add", "team@nowhere.example", "a@b.org"], 1);

    // Dangling destinations, loops and a self-copy without an account are
    // refused, naming the destination that does not exist, else what
    // vdeliver would say; --force adds anyway.
    let e = fails(
        &s,
        &["alias", "add", "sales@example.com", "nobody@example.com"],
        1,
    );
    assert!(e.contains("nobody@example.com does not exist"), "{e}");
    let e = fails(&s, &["alias", "add", "x@example.com", "x@example.com"], 1);
    assert!(e.contains("keeps a copy for itself"), "{e}");
    s.ctl_ok(&["alias", "add", "loop1@example.com", "alice@example.com"]);
    s.ctl_ok(&["alias", "add", "loop2@example.com", "loop1@example.com"]);
    let e = fails(
        &s,
        &["alias", "add", "loop1@example.com", "loop2@example.com"],
        1,
    );
    assert!(e.contains("#5.4.6"), "{e}");
    assert!(json(&s, &["alias", "list"])
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["address"] != "sales@example.com"));
    let out = s.ctl_ok(&[
        "alias",
        "add",
        "sales@example.com",
        "nobody@example.com",
        "--force",
    ]);
    assert!(
        out.contains("warning (forced): alias sales@example.com"),
        "{out}"
    );

    // Delete one destination, then all.
    let ch = json(
        &s,
        &["alias", "delete", "team@example.com", "dave@remote.org"],
    );
    assert_eq!(strs(&ch["destinations"]), ["Dave@remote.org"]);
    let e = fails(
        &s,
        &["alias", "delete", "team@example.com", "zed@remote.org"],
        1,
    );
    assert!(e.contains("has no destination zed@remote.org"), "{e}");
    let out = s.ctl_ok(&["alias", "delete", "team@example.com"]);
    assert_eq!(
        out,
        "removed from alias team@example.com: alice@example.com, bob@example.com\n"
    );
    let e = fails(&s, &["alias", "delete", "team@example.com"], 1);
    assert!(e.contains("no alias team@example.com"), "{e}");
    // Removing what another alias needs is refused.
    let e = fails(&s, &["alias", "delete", "loop1@example.com"], 1);
    assert!(e.contains("alias loop2@example.com"), "{e}");

    // Catch-all.
    let out = s.ctl_ok(&["catchall", "add", "example.com", "bob@example.com"]);
    assert_eq!(out, "catch-all of example.com -> bob@example.com\n");
    let l = json(&s, &["catchall", "list"]);
    assert_eq!(l[0]["address"], "example.com");
    assert_eq!(strs(&l[0]["destinations"]), ["bob@example.com"]);
    assert_eq!(
        json(&s, &["domain", "show", "example.com"])["catchalls"][0],
        "bob@example.com"
    );
    let e = fails(
        &s,
        &["catchall", "add", "example.com", "ghost@example.com"],
        1,
    );
    assert!(e.contains("ghost@example.com does not exist"), "{e}");
    assert!(!e.contains("loop") && !e.contains("vmailctlprobe"), "{e}");
    fails(
        &s,
        &["catchall", "add", "example.com", "bob@example.com"],
        1,
    );
    fails(
        &s,
        &["catchall", "add", "nowhere.example", "bob@example.com"],
        1,
    );
    fails(
        &s,
        &["catchall", "delete", "example.com", "ghost@example.com"],
        1,
    );
    // sales@ (-> nobody@) delivers through the catch-all now: deleting it
    // would break that alias (issue 10), so it takes --force.
    let e = fails(&s, &["catchall", "delete", "example.com"], 1);
    assert!(e.contains("alias sales@example.com"), "{e}");
    let ch = json(&s, &["catchall", "delete", "example.com", "--force"]);
    assert_eq!(strs(&ch["destinations"]), ["bob@example.com"]);
    fails(&s, &["catchall", "delete", "example.com"], 1);

    // Relocated.
    let r = json(
        &s,
        &["relocated", "add", "Old@example.com", "new@Example.ORG"],
    );
    assert_eq!(
        (r["address"].as_str(), r["new_address"].as_str()),
        (Some("old@example.com"), Some("new@example.org"))
    );
    let e = fails(
        &s,
        &["relocated", "add", "alice@example.com", "a@example.org"],
        1,
    );
    assert!(e.contains("alice@example.com is an account;"), "{e}");
    let e = fails(
        &s,
        &["relocated", "add", "old@example.com", "x@example.org"],
        1,
    );
    assert!(
        e.contains("old@example.com is already relocated, to new@example.org"),
        "{e}"
    );
    fails(
        &s,
        &["relocated", "add", "x@example.com", "not-an-address"],
        2,
    );
    assert_eq!(
        json(&s, &["relocated", "list", "example.com"])[0]["new_address"],
        "new@example.org"
    );
    assert_eq!(
        s.ctl_ok(&["relocated", "delete", "old@example.com"]),
        "old@example.com is no longer relocated\n"
    );
    fails(&s, &["relocated", "delete", "old@example.com"], 1);
    assert!(json(&s, &["relocated", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

/// Deliver one message to `to` and return its Maildir's files in new/.
fn deliver_one(s: &Site, to: &str, maildir: &str) {
    let r = s.deliver(to, "bob@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files(maildir, "new").len(), 1);
}

#[test]
fn deletes_keep_maildirs_unless_purged() {
    let s = Site::new();
    s.account("alice@example.com");
    deliver_one(&s, "alice@example.com", "example.com/alice/Maildir/");
    let out = s.ctl_ok(&["account", "delete", "alice@example.com"]);
    assert_eq!(
        out,
        "deleted account alice@example.com\nMaildir example.com/alice/Maildir/ left on disk (use --purge to remove it)\n"
    );
    assert_eq!(s.files("example.com/alice/Maildir/", "new").len(), 1);
    fails(&s, &["account", "delete", "alice@example.com"], 1);

    // Purge: the Maildir and the parents it leaves empty go; the root stays.
    // (Re-adding alice over her old Maildir has to be asked for.)
    s.ctl_ok(&["account", "add", "alice@example.com", "--reuse-maildir"]);
    let d = json(&s, &["account", "delete", "alice@example.com", "--purge"]);
    assert_eq!(d["purged"][0]["purged"], "removed");
    assert!(!s.root.join("example.com").exists());
    assert!(s.root.is_dir());
    // Never delivered to: nothing to purge, and that is fine.
    s.account("carol@example.com");
    let out = s.ctl_ok(&["account", "delete", "carol@example.com", "--purge"]);
    assert!(
        out.ends_with("Maildir example.com/carol/Maildir/: was not on disk\n"),
        "{out}"
    );

    // A domain with accounts needs --force; its Maildirs stay without --purge.
    s.account("dave@example.com");
    s.account("erin@example.com");
    deliver_one(&s, "dave@example.com", "example.com/dave/Maildir/");
    deliver_one(&s, "erin@example.com", "example.com/erin/Maildir/");
    let e = fails(&s, &["domain", "delete", "example.com"], 1);
    assert!(e.contains("has 2 accounts") && e.contains("--force"), "{e}");
    assert_eq!(json(&s, &["account", "list"]).as_array().unwrap().len(), 2);
    s.ctl_ok(&["domain", "delete", "example.com", "--force"]);
    assert!(json(&s, &["domain", "list"]).as_array().unwrap().is_empty());
    assert_eq!(s.files("example.com/dave/Maildir/", "new").len(), 1);
    assert_eq!(s.files("example.com/erin/Maildir/", "new").len(), 1);
    // Again, with --purge (over the Maildirs left on disk, as asked).
    s.ctl_ok(&["domain", "add", "example.com"]);
    for a in ["dave@example.com", "erin@example.com"] {
        s.ctl_ok(&["account", "add", a, "--reuse-maildir"]);
    }
    s.ctl_ok(&["alias-domain", "add", "example.net", "example.com"]);
    s.ctl_ok(&["alias", "add", "team@example.com", "dave@example.net"]);
    let d = json(
        &s,
        &["domain", "delete", "example.com", "--force", "--purge"],
    );
    assert_eq!(
        strs(&d["deleted"]["maildirs"]),
        ["example.com/dave/Maildir/", "example.com/erin/Maildir/"]
    );
    assert!(!s.root.join("example.com").exists());
    assert!(json(&s, &["alias-domain", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    assert!(json(&s, &["alias", "list"]).as_array().unwrap().is_empty());
    fails(&s, &["domain", "delete", "example.com"], 1);
}

#[test]
fn purge_stays_beneath_the_mail_root_and_never_follows_symlinks() {
    let s = Site::new();
    let outside = s.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), b"keep me").unwrap();

    // A symlink inside the Maildir: the link goes, its target stays.
    s.account("alice@example.com");
    deliver_one(&s, "alice@example.com", "example.com/alice/Maildir/");
    let md = s.maildir("example.com/alice/Maildir/");
    std::os::unix::fs::symlink(&outside, md.join("cur/evil")).unwrap();
    std::os::unix::fs::symlink(&outside, md.join(".Evil")).unwrap();
    s.ctl_ok(&["account", "delete", "alice@example.com", "--purge"]);
    assert!(!md.exists());
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");

    // A Maildir path through a symlink: refused, nothing removed.
    let evil_root = s.root.join("evil");
    std::os::unix::fs::symlink(&outside, &evil_root).unwrap();
    fs::create_dir_all(outside.join("Maildir/cur")).unwrap();
    s.ctl_ok(&[
        "account",
        "add",
        "mallory@example.com",
        "--maildir",
        "evil/Maildir/",
    ]);
    let e = s.ctl(
        &["account", "delete", "mallory@example.com", "--purge"],
        b"",
    );
    assert_eq!(e.code, Some(1), "{e:?}");
    assert!(
        e.stderr.contains("refusing to purge") && e.stderr.contains("symlink"),
        "{e:?}"
    );
    assert!(outside.join("Maildir/cur").is_dir());
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");
    // The account itself is gone (the database change is reported done).
    fails(&s, &["account", "show", "mallory@example.com"], 1);

    // A path with '..' put in by hand: refused.
    s.db.execute(
        "INSERT INTO accounts (domain_id, local_part, maildir)
         SELECT id, 'dots', '../outside/' FROM domains WHERE name = 'example.com'",
    );
    let e = s.ctl(&["account", "delete", "dots@example.com", "--purge"], b"");
    assert_eq!(e.code, Some(1), "{e:?}");
    assert!(e.stderr.contains("'..'"), "{e:?}");
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");

    // A Maildir another account still uses (or lives inside): refused.
    s.ctl_ok(&["account", "add", "p@example.com", "--maildir", "shared/"]);
    s.ctl_ok(&[
        "account",
        "add",
        "q@example.com",
        "--maildir",
        "shared/q/",
        "--reuse-maildir",
    ]);
    fs::create_dir_all(s.root.join("shared/q/cur")).unwrap();
    let e = s.ctl(&["account", "delete", "p@example.com", "--purge"], b"");
    assert_eq!(e.code, Some(1), "{e:?}");
    assert!(
        e.stderr.contains("account q@example.com still uses"),
        "{e:?}"
    );
    assert!(s.root.join("shared/q/cur").is_dir());

    // Something that is not a Maildir: refused.
    s.ctl_ok(&["account", "add", "r@example.com", "--maildir", "notes/"]);
    fs::create_dir_all(s.root.join("notes")).unwrap();
    fs::write(s.root.join("notes/todo.txt"), b"x").unwrap();
    let e = s.ctl(&["account", "delete", "r@example.com", "--purge"], b"");
    assert_eq!(e.code, Some(1), "{e:?}");
    assert!(e.stderr.contains("not a Maildir"), "{e:?}");
    assert!(s.root.join("notes/todo.txt").exists());
}

#[test]
fn deletes_refuse_to_break_aliases_unless_forced() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.ctl_ok(&["alias", "add", "team@example.com", "alice@example.com"]);
    s.ctl_ok(&[
        "alias",
        "add",
        "both@example.com",
        "alice@example.com",
        "bob@example.com",
    ]);
    let e = fails(&s, &["account", "delete", "alice@example.com"], 1);
    assert!(
        e.contains("alias both@example.com") && e.contains("alias team@example.com"),
        "{e}"
    );
    assert!(e.contains("there is no such mailbox. (#4.3.5)"), "{e}");
    json(&s, &["account", "show", "alice@example.com"]);
    let out = s.ctl_ok(&["account", "delete", "alice@example.com", "--force"]);
    assert!(
        out.contains("warning (forced): alias both@example.com"),
        "{out}"
    );
    // A domain others point into.
    s.ctl_ok(&["domain", "add", "example.org"]);
    s.account("carol@example.org");
    s.ctl_ok(&["alias", "add", "carol@example.com", "carol@example.org"]);
    let e = fails(&s, &["domain", "delete", "example.org"], 1);
    assert!(e.contains("alias carol@example.com"), "{e}");
}

/// The vdeliver run for the resolve comparison: qmail's environment, the
/// stub qmail-queue, optional extra arguments (the vpopmail fallback).
fn vdeliver(s: &Site, to: &str, args: &[&str]) -> Run {
    let mut env = qmail_env(to, "bob@remote.org");
    env.extend(s.queue_env(0, &[]));
    s.command(&env, args)
        .stdin(s.message_file(MSG))
        .output()
        .unwrap()
        .into()
}

#[test]
fn resolve_agrees_with_vdeliver() {
    let stub = qmail_queue_stub();
    let s = Site::with_config(&format!(
        "[forward]\nqmail_queue = \"{}\"\n",
        stub.display()
    ));
    for a in ["alice", "bob", "carol", "dis"] {
        s.account(&format!("{a}@example.com"));
    }
    s.ctl_ok(&["account", "disable", "dis@example.com"]);
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "bob@example.com",
        "dave@remote.org",
    ]);
    s.ctl_ok(&["alias", "add", "fwd@example.com", "zed@remote.org"]);
    s.ctl_ok(&["alias", "add", "l1@example.com", "alice@example.com"]);
    s.ctl_ok(&["alias", "add", "l2@example.com", "l1@example.com"]);
    s.ctl_ok(&[
        "alias",
        "add",
        "l1@example.com",
        "l2@example.com",
        "--force",
    ]);
    s.ctl_ok(&["relocated", "add", "old@example.com", "new@example.org"]);
    s.ctl_ok(&["alias-domain", "add", "example.net", "example.com"]);
    s.ctl_ok(&["domain", "add", "catch.example"]);
    s.ctl_ok(&["catchall", "add", "catch.example", "carol@example.com"]);
    s.ctl_ok(&["domain", "add", "off.example", "--disabled"]);
    // A Maildir path through a symlink out of the root.
    let outside = s.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    chown_for_unpriv(&outside);
    std::os::unix::fs::symlink(&outside, s.root.join("escape")).unwrap();
    s.ctl_ok(&[
        "account",
        "add",
        "esc@example.com",
        "--maildir",
        "escape/Maildir/",
    ]);

    // (address, extra vdeliver args, want exit)
    let cases: &[(&str, &[&str], i32)] = &[
        ("alice@example.com", &[], 0),
        ("Alice-Sent@example.com", &[], 0), // folder created with the new Maildir
        ("alice-nofolder@example.com", &[], 0),
        ("team@example.com", &[], 0),
        ("fwd@example.com", &[], 0),
        ("bob@example.net", &[], 0),
        ("anyone@catch.example", &[], 0),
        ("nobody@example.com", &[], 100),
        ("nobody@example.com", &["", "delete"], 0),
        ("nobody@example.com", &["", "bounce-no-mailbox"], 100),
        ("nobody@example.com", &["", "carol@example.com"], 0),
        ("old@example.com", &[], 100),
        ("dis@example.com", &[], 100),
        ("x@off.example", &[], 100),
        ("l1@example.com", &[], 100),
        ("x@unknown.example", &[], 111),
        ("esc@example.com", &[], 111),
    ];
    for (addr, args, want) in cases {
        let before = tree(&s.root);
        let mut rargs = vec!["resolve", addr, "--sender", "bob@remote.org", "--json"];
        if let Some(fb) = args.get(1) {
            rargs.extend(["--fallback", fb]);
        }
        let r = s.ctl(&rargs, b"");
        assert_eq!(
            r.code,
            Some(if *want == 0 { 0 } else { 1 }),
            "{addr}: {r:?}"
        );
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(
            tree(&s.root),
            before,
            "resolve {addr} wrote to the mail root"
        );
        let d = vdeliver(&s, addr, args);
        assert_eq!(d.code, Some(*want), "{addr}: {d:?}");
        assert_eq!(
            v["exit"].as_i64(),
            d.code.map(i64::from),
            "{addr}: resolve {v} vs vdeliver {d:?}"
        );
        assert_eq!(
            format!("{}\n", v["line"].as_str().unwrap()),
            d.stdout,
            "{addr}: resolve and vdeliver disagree"
        );
    }
    // Nothing escaped the root.
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    // And the folder case went where resolve said.
    assert_eq!(s.files("example.com/alice/Maildir/.Sent/", "new").len(), 1);
}

#[test]
fn resolve_shows_the_tree_targets_and_forwards() {
    let stub = qmail_queue_stub();
    let s = Site::with_config(&format!(
        "[forward]\nqmail_queue = \"{}\"\n",
        stub.display()
    ));
    s.ctl_ok(&[
        "domain",
        "set",
        "example.com",
        "--quota-bytes",
        "1G",
        "--quota-messages",
        "500",
    ]);
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "bob@example.com",
        "dave@remote.org",
    ]);
    s.ctl_ok(&["alias", "add", "list@example.com", "team@example.com"]);
    let v = json(&s, &["resolve", "List-x@example.com"]);
    assert_eq!(v["recipient"], "list-x@example.com");
    assert_eq!(v["sender"], "");
    assert_eq!(
        strs(&v["trace"]),
        [
            "alias list@example.com",
            "  alias team@example.com",
            "    mailbox alice@example.com",
            "    mailbox bob@example.com",
            // plan.rs indents a forward one level less than a mailbox.
            "  forward to dave@remote.org"
        ]
    );
    assert_eq!(strs(&v["forwards"]), ["dave@remote.org"]);
    let m = &v["mailboxes"];
    assert_eq!(m[0]["owner"], "alice@example.com");
    assert_eq!(m[0]["delivers_to"], "example.com/alice/Maildir/");
    assert_eq!(m[0]["exists"], false);
    assert_eq!(m[0]["quota_bytes"], 1i64 << 30);
    assert_eq!(
        m[1]["path"],
        s.root
            .join("example.com/bob/Maildir/")
            .display()
            .to_string()
    );
    assert_eq!(v["exit"], 0);
    assert_eq!(
        v["line"],
        "delivered to example.com/alice/Maildir/, example.com/bob/Maildir/ and forwarded to 1"
    );
    let text = s.ctl_ok(&["resolve", "list@example.com"]);
    assert!(
        text.contains("resolution:\n  alias list@example.com\n    alias team@example.com\n"),
        "{text}"
    );
    assert!(text.contains("forward:    dave@remote.org\n"), "{text}");
    assert!(
        text.contains("vdeliver would exit 0: delivered to"),
        "{text}"
    );
    assert!(
        text.contains("quota: 0 B of 1 GiB, 0 of 500 messages (0%)"),
        "{text}"
    );
    assert_eq!(m[0]["usage"]["source"], "none");
    // Not found: exit 1, and the bounce line.
    let r = s.ctl(&["resolve", "ghost@example.com"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stdout
            .contains("vdeliver would exit 100: Sorry, no mailbox here by that name. (#5.1.1)"),
        "{r:?}"
    );
    fails(&s, &["resolve", "no-at-sign"], 2);
    // The database down: 111, as vdeliver.
    let dead = Site::with_config("");
    let cfg = fs::read_to_string(&dead.config).unwrap();
    fs::write(&dead.config, cfg.replace("host=", "host=/nonexistent/")).unwrap();
    let r = dead.ctl(&["resolve", "alice@example.com", "--json"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["exit"], 111);
    assert!(v["line"].as_str().unwrap().ends_with("(#4.3.0)"), "{v}");
}

#[test]
fn check_reports_each_problem() {
    let stub = qmail_queue_stub();
    let s = Site::with_config(&format!(
        "[forward]\nqmail_queue = \"{}\"\n",
        stub.display()
    ));
    let r = s.ctl(&["check"], b"");
    assert_eq!(r.code, Some(0), "{r:?}");
    let names: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| {
            assert!(l.starts_with("ok   "), "{l}");
            l[5..].split(':').next().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "configuration",
            "configuration file",
            "database",
            "schema",
            "delivery user",
            "mail root",
            "qmail-queue",
            "renames"
        ]
    );
    let v = json(&s, &["check"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["checks"].as_array().unwrap().len(), 8);

    let failed = |s: &Site, args: &[&str]| -> Vec<String> {
        let mut a = vec!["check", "--json"];
        a.extend_from_slice(args);
        let r = s.ctl(&a, b"");
        assert_eq!(r.code, Some(1), "{r:?}");
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["ok"], false);
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| {
                format!(
                    "{}: {}",
                    c["name"].as_str().unwrap(),
                    c["detail"].as_str().unwrap()
                )
            })
            .collect()
    };
    // Root as the delivery user.
    let f = failed(&s, &["--user", "root"]);
    assert!(
        f[0].starts_with("delivery user: user root is root"),
        "{f:?}"
    );
    // A mail root others can write to.
    fs::set_permissions(&s.root, fs::Permissions::from_mode(0o777)).unwrap();
    let f = failed(&s, &[]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("mail root: ") && f[0].contains("writable by group or others"),
        "{f:?}"
    );
    fs::set_permissions(&s.root, fs::Permissions::from_mode(0o700)).unwrap();
    // The text form: one line per check, FAIL marked.
    let cfg = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        cfg.replace(&stub.display().to_string(), "/nonexistent/qmail-queue"),
    )
    .unwrap();
    let r = s.ctl(&["check"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stdout
            .contains("FAIL qmail-queue: /nonexistent/qmail-queue: No such file"),
        "{r:?}"
    );
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("FAIL")).count(),
        1,
        "{r:?}"
    );
    // A schema behind the code.
    let empty = Site::on(
        Pg::shared(),
        &format!("[forward]\nqmail_queue = \"{}\"\n", stub.display()),
        false,
    );
    let f = failed(&empty, &[]);
    let want = format!(
        "schema: at version 0, this vdeliver needs {}: run vmailctl migrate",
        vdeliver::schema::current_version()
    );
    assert_eq!(f, [want]);
    // The database unreachable.
    let cfg = fs::read_to_string(&empty.config).unwrap();
    fs::write(&empty.config, cfg.replace("host=", "host=/nonexistent/")).unwrap();
    let f = failed(&empty, &[]);
    assert!(f[0].starts_with("database: cannot connect"), "{f:?}");
    assert!(f[1].starts_with("schema: not checked"), "{f:?}");
    // A configuration that does not parse, or writable by others.
    fs::write(&empty.config, "[mail]\nroot = 3\n").unwrap();
    let f = failed(&empty, &[]);
    assert!(
        f[0].starts_with("configuration: ") && f[0].contains("mail.root"),
        "{f:?}"
    );
    fs::write(&empty.config, "").unwrap();
    fs::set_permissions(&empty.config, fs::Permissions::from_mode(0o666)).unwrap();
    let f = failed(&empty, &[]);
    assert!(
        f[0].starts_with("configuration file: ") && f[0].contains("writable"),
        "{f:?}"
    );
}

/// The stored size of each message in a Maildir's new/, from `,S=`.
fn stored_sizes(s: &Site, rel: &str) -> Vec<i64> {
    s.files(rel, "new")
        .iter()
        .map(|n| n.rsplit_once(",S=").unwrap().1.parse().unwrap())
        .collect()
}

#[test]
fn quota_reports_usage_and_recalculates() {
    let s = Site::new();
    const MD: &str = "example.com/alice/Maildir/";
    s.ctl_ok(&[
        "account",
        "add",
        "alice@example.com",
        "--quota-bytes",
        "1M",
        "--quota-messages",
        "10",
    ]);
    s.account("bob@example.com");
    // Never delivered to: nothing, and nothing created.
    let q = json(&s, &["quota", "alice@example.com"]);
    assert_eq!(q["source"], "none");
    assert_eq!(
        (q["bytes"].as_i64(), q["messages"].as_i64()),
        (Some(0), Some(0))
    );
    assert!(!s.maildir(MD).exists());

    deliver_one(&s, "alice@example.com", MD);
    let r = s.deliver(
        "alice@example.com",
        "carol@remote.org",
        b"Subject: 2\n\nsecond, longer message\n",
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let total: i64 = stored_sizes(&s, MD).iter().sum();
    let q = json(&s, &["quota", "alice@example.com"]);
    assert_eq!(q["address"], "alice@example.com");
    assert_eq!(q["source"], "maildirsize", "{q}");
    assert_eq!(
        (q["bytes"].as_i64(), q["messages"].as_i64()),
        (Some(total), Some(2))
    );
    assert_eq!(
        (q["limit_bytes"].as_u64(), q["limit_messages"].as_u64()),
        (Some(1 << 20), Some(10))
    );
    assert_eq!(q["percent"], 20, "2 of 10 messages");
    let text = s.ctl_ok(&["quota", "alice@example.com"]);
    assert!(
        text.contains(&format!(
            "usage:    {total} B of 1 MiB, 2 of 10 messages (20%)"
        )),
        "{text}"
    );

    // resolve shows the same usage for the mailbox.
    let v = json(&s, &["resolve", "alice@example.com"]);
    assert_eq!(v["mailboxes"][0]["usage"]["messages"], 2);
    assert_eq!(v["mailboxes"][0]["usage"]["bytes"], total);

    // A corrupt file is not trusted: the Maildir is counted, the file left
    // for vdeliver to rewrite (vmailctl quota writes nothing).
    let file = s.maildir(MD).join("maildirsize");
    fs::write(&file, b"1048576S,10C\n12 x\n").unwrap();
    let q = json(&s, &["quota", "alice@example.com"]);
    assert_eq!(q["source"], "counted");
    assert!(q["note"].as_str().unwrap().contains("corrupt"), "{q}");
    assert_eq!(
        (q["bytes"].as_i64(), q["messages"].as_i64()),
        (Some(total), Some(2))
    );
    assert_eq!(fs::read(&file).unwrap(), b"1048576S,10C\n12 x\n");

    // --recalc recounts and rewrites; a message removed behind its back
    // (as an IMAP client would) is gone from the figures.
    let first = s.files(MD, "new")[0].clone();
    fs::remove_file(s.maildir(MD).join("new").join(&first)).unwrap();
    let left: i64 = stored_sizes(&s, MD).iter().sum();
    let q = json(&s, &["quota", "alice@example.com", "--recalc"]);
    assert_eq!(q["source"], "recalculated");
    assert_eq!(
        (q["bytes"].as_i64(), q["messages"].as_i64()),
        (Some(left), Some(1))
    );
    let text = fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1048576S,10C"), "{text}");
    let sum: (i64, i64) = lines.fold((0, 0), |(b, m), l| {
        let mut it = l.split_whitespace().map(|x| x.parse::<i64>().unwrap());
        (b + it.next().unwrap(), m + it.next().unwrap())
    });
    assert_eq!(sum, (left, 1), "{text}");
    assert_eq!(
        json(&s, &["quota", "alice@example.com"])["source"],
        "maildirsize"
    );

    // Unlimited: usage without limits.
    deliver_one(&s, "bob@example.com", "example.com/bob/Maildir/");
    let q = json(&s, &["quota", "bob@example.com"]);
    assert_eq!(
        (q["limit_bytes"].as_u64(), q["percent"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(q["messages"], 1);
    let e = fails(&s, &["quota", "nobody@example.com"], 1);
    assert!(e.contains("no account nobody@example.com"), "{e}");
}

// ---------------------------------------------------------------- the guides

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

/// examples/config.toml is the README's "every key with its default".
#[test]
fn example_config_is_valid_and_shows_the_defaults() {
    let cfg = vdeliver::config::load(&example("config.toml")).unwrap();
    assert_eq!(cfg, vdeliver::config::Config::default());
}

use crate::common::dovecot::{guide_queries as dovecot_queries, guide_sql as dovecot_sql};

#[test]
fn dovecot_sql_guide_works_against_this_schema() {
    let q = dovecot_queries();
    for k in ["password_query", "user_query", "iterate_query"] {
        assert!(q.contains_key(k), "{k} missing: {q:?}");
    }
    let s = Site::new();
    s.ctl_ok(&["domain", "set", "example.com", "--quota-bytes", "2G"]);
    s.ctl_ok(&["alias-domain", "add", "example.net", "example.com"]);
    let add = |a: &str, extra: &[&str]| {
        let mut args = vec!["account", "add", a, "--password-stdin"];
        args.extend_from_slice(extra);
        let r = s.ctl(&args, b"s3cret pw\n");
        assert_eq!(r.code, Some(0), "{r:?}");
    };
    add("alice@example.com", &[]);
    add(
        "dave@example.com",
        &["--quota-bytes", "10M", "--quota-messages", "100"],
    );
    add("bob@example.com", &["--disabled"]);
    s.account("carol@example.com"); // no password
    s.ctl_ok(&["domain", "add", "off.example", "--disabled"]);
    let r = s.ctl(
        &["account", "add", "eve@off.example", "--password-stdin"],
        b"s3cret pw\n",
    );
    assert_eq!(r.code, Some(0), "{r:?}");

    let pq = &q["password_query"];
    for login in ["alice@example.com", "Alice@Example.NET"] {
        let rows = dovecot_sql(&s, pq, login);
        assert_eq!(rows.len(), 1, "{login}: {rows:?}");
        assert_eq!(rows[0]["user"].as_deref(), Some("alice@example.com"));
        let hash = rows[0]["password"].clone().unwrap();
        assert!(dovecot_accepts(&hash, "s3cret pw"), "{login}");
        assert!(!dovecot_accepts(&hash, "s3cret pW"), "{login}");
    }
    for nobody in [
        "bob@example.com",
        "carol@example.com",
        "eve@off.example",
        "zed@example.com",
        "alice",
        "x'; DROP TABLE accounts; --@example.com",
    ] {
        assert!(
            dovecot_sql(&s, pq, nobody).is_empty(),
            "{nobody} must not log in"
        );
    }

    let uq = &q["user_query"];
    let rows = dovecot_sql(&s, uq, "alice@example.com");
    assert_eq!(rows.len(), 1);
    // The home holds the Maildir (and the Sieve scripts, as vdeliver
    // finds them: sieve::store::home_of).
    assert_eq!(
        rows[0]["home"].as_deref(),
        Some("/var/vmail/example.com/alice")
    );
    assert_eq!(
        vdeliver::sieve::store::home_of("example.com/alice/Maildir/").as_deref(),
        Some("example.com/alice")
    );
    assert_eq!(
        rows[0]["mail"].as_deref(),
        Some("maildir:/var/vmail/example.com/alice/Maildir/")
    );
    assert_eq!(
        rows[0]["quota_rule"].as_deref(),
        Some("*:bytes=2147483648:messages=0")
    );
    // A Maildir not named Maildir: no home, as vdeliver sees it.
    s.ctl_ok(&[
        "account",
        "add",
        "frank@example.com",
        "--maildir",
        "example.com/frank/",
    ]);
    let rows = dovecot_sql(&s, uq, "frank@example.com");
    assert_eq!(rows[0]["home"], None);
    assert_eq!(vdeliver::sieve::store::home_of("example.com/frank/"), None);
    assert_eq!(
        rows[0]["mail"].as_deref(),
        Some("maildir:/var/vmail/example.com/frank/")
    );
    let rows = dovecot_sql(&s, uq, "dave@example.net");
    assert_eq!(
        rows[0]["quota_rule"].as_deref(),
        Some("*:bytes=10485760:messages=100")
    );
    let users: Vec<String> = dovecot_sql(&s, &q["iterate_query"], "")
        .into_iter()
        .map(|r| r["user"].clone().unwrap())
        .collect();
    assert_eq!(users.len(), 6, "{users:?}");
    assert!(users.contains(&"eve@off.example".to_string()));
}

/// Real Dovecot, given the fields the guide's user_query returns (through a
/// static userdb: the pgsql driver is a separate package), sees the same
/// Maildir, usage and limits as vdeliver and `vmailctl quota`.
#[test]
fn dovecot_reads_the_guides_userdb_fields_as_vdeliver_does() {
    let s = Site::new();
    s.ctl_ok(&[
        "account",
        "add",
        "alice@example.com",
        "--quota-bytes",
        "10M",
        "--quota-messages",
        "100",
    ]);
    deliver_one(&s, "alice@example.com", "example.com/alice/Maildir/");
    let q = dovecot_queries();
    let row = &dovecot_sql(&s, &q["user_query"], "alice@example.com")[0];
    let root = s.root.display().to_string();
    let field = |k: &str| row[k].clone().unwrap().replace("/var/vmail", &root);
    let (uid, gid) = crate::common::unpriv::unpriv_uid_gid();
    let dove = crate::common::dovecot::Dovecot::start_with(
        &s,
        &format!(
            "mail_plugins = quota\n\
             namespace inbox {{\n  inbox = yes\n  separator = .\n}}\n\
             passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={home} mail={mail} quota_rule={rule}\n}}\n\
             plugin {{\n  quota = maildir:User quota\n}}\n",
            home = field("home"),
            mail = field("mail"),
            rule = field("quota_rule"),
        ),
    );
    let out = dove.doveadm_output(
        &["-f", "tab", "quota", "get", "-u", "alice@example.com"],
        b"",
    );
    assert!(out.status.success(), "{out:?}\n{}", dove.log());
    let text = String::from_utf8(out.stdout).unwrap();
    let got: BTreeMap<String, (u64, u64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[1].to_string(),
                (f[2].parse().unwrap(), f[3].parse().unwrap()),
            )
        })
        .collect();
    let ours = json(&s, &["quota", "alice@example.com"]);
    let bytes = ours["bytes"].as_u64().unwrap();
    // doveadm reports STORAGE in KiB, rounded up.
    assert_eq!(got["STORAGE"], (bytes.div_ceil(1024), 10 * 1024), "{text}");
    assert_eq!(got["MESSAGE"], (1, 100), "{text}");
}

/// examples/vpopmail-import.sql, run on a small vpopmail site: domains,
/// accounts (password, Maildir, quota, bounce flag) and aliases arrive as
/// vdeliver and Dovecot need them.
#[test]
fn vpopmail_import_guide() {
    let s = Site::new();
    let md5 = Command::new(doveadm())
        .args([
            "-o",
            "log_path=/dev/null",
            "pw",
            "-s",
            "MD5-CRYPT",
            "-p",
            "old secret",
        ])
        .output()
        .unwrap();
    let md5 = String::from_utf8(md5.stdout).unwrap();
    let crypt = md5.trim().trim_start_matches("{MD5-CRYPT}").to_string();
    assert!(crypt.starts_with("$1$"), "{md5}");
    let root = format!("{}/", s.root.display());
    s.db.execute(&format!(
        "CREATE TABLE vpopmail (pw_name text, pw_domain text, pw_passwd text, pw_uid int,
                                pw_gid int, pw_gecos text, pw_dir text, pw_shell text,
                                pw_clear_passwd text);
         CREATE TABLE valias (alias text, domain text, valias_line text);
         INSERT INTO vpopmail VALUES
           ('alice', 'Example.ORG', '{crypt}', 0, 0, 'Alice', '{root}example.org/alice', '52428800S,1000C', ''),
           ('bob', 'example.org', '', 0, 0, 'Bob', '{root}example.org/bob/', 'NOQUOTA', ''),
           ('gone', 'example.org', '', 0, 16, 'Gone', '{root}example.org/gone', '1000S', '');
         INSERT INTO valias VALUES
           ('team', 'example.org', '&alice@example.org'),
           ('team', 'example.org', 'carol@remote.example'),
           ('alice', 'example.org', '{root}example.org/alice/Maildir/'),
           ('alice', 'example.org', '&alice@home.example'),
           ('robot', 'example.org', '|/usr/bin/autoresponder');"
    ));
    let script = fs::read_to_string(example("vpopmail-import.sql")).unwrap();
    let mut c = s.db.client();
    c.batch_execute(&format!("SET vdeliver.vpopmail_root = '{root}';\n{script}"))
        .unwrap();

    let a = json(&s, &["account", "show", "alice@example.org"]);
    assert_eq!(a["maildir"], "example.org/alice/Maildir/");
    assert_eq!(
        (a["quota_bytes"].as_i64(), a["quota_messages"].as_i64()),
        (Some(52428800), Some(1000))
    );
    assert_eq!(a["password_scheme"], "CRYPT");
    let b = json(&s, &["account", "show", "bob@example.org"]);
    assert_eq!(
        (b["quota_bytes"].as_i64(), b["password_scheme"].clone()),
        (Some(0), Value::Null)
    );
    assert_eq!(
        json(&s, &["account", "show", "gone@example.org"])["active"],
        false
    );
    let hash: String = c
        .query_one(
            "SELECT password_hash FROM accounts WHERE local_part = 'alice'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(dovecot_accepts(&hash, "old secret"));
    let aliases = json(&s, &["alias", "list", "example.org"]);
    assert_eq!(aliases[0]["address"], "alice@example.org");
    assert_eq!(strs(&aliases[0]["destinations"]).len(), 2, "{aliases}");
    assert!(strs(&aliases[0]["destinations"]).contains(&"alice@example.org".to_string()));
    assert_eq!(aliases[1]["address"], "team@example.org");
    assert_eq!(
        aliases.as_array().unwrap().len(),
        2,
        "the program line is not imported: {aliases}"
    );
    // vdeliver delivers to the imported site; the bounce flag bounces.
    let stub = qmail_queue_stub();
    let cfg = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        format!("{cfg}[forward]\nqmail_queue = \"{}\"\n", stub.display()),
    )
    .unwrap();
    let r = vdeliver(&s, "team@example.org", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        r.stdout,
        "delivered to example.org/alice/Maildir/ and forwarded to 2\n"
    );
    let r = vdeliver(&s, "gone@example.org", &[]);
    assert_eq!(r.code, Some(100), "{r:?}");
}

/// `vmailctl account junk ADDRESS on|off|default` (issue 12) sets
/// `accounts.junk`, and the setting is shown wherever the account's are:
/// `account show` and `list` (text and JSON, with the setting that
/// applies), and `resolve`'s mailboxes, through an alias too.
#[test]
fn account_junk_sets_the_column_and_is_shown() {
    let s = Site::new();
    s.account("alice@example.com");
    s.ctl_ok(&["alias", "add", "team@example.com", "alice@example.com"]);
    let mut c = postgres::Client::connect(&s.db.url, postgres::NoTls).unwrap();
    let column = |c: &mut postgres::Client| -> Option<bool> {
        c.query_one("SELECT junk FROM accounts WHERE local_part = 'alice'", &[])
            .unwrap()
            .get(0)
    };
    // A new account follows the site's default (off unless configured).
    assert_eq!(column(&mut c), None);
    let text = s.ctl_ok(&["account", "show", "alice@example.com"]);
    assert!(
        text.contains("\njunk:           off (site default, junk.enabled)\n"),
        "{text}"
    );
    let a = json(&s, &["account", "show", "alice@example.com"]);
    assert_eq!(
        (&a["junk"], &a["effective_junk"]),
        (&Value::Null, &false.into())
    );

    // (setting, the column, show's text, list's text, resolve's line)
    for (setting, want, shown, listed, resolved) in [
        (
            "on",
            Some(true),
            "on (own)",
            "  junk on\n",
            "junk:  on (own)",
        ),
        (
            "off",
            Some(false),
            "off (own)",
            "  junk off\n",
            "junk:  off (own)",
        ),
        (
            "default",
            None,
            "off (site default, junk.enabled)",
            " msgs\n",
            "junk:  off (site default, junk.enabled)",
        ),
        (
            "on",
            Some(true),
            "on (own)",
            "  junk on\n",
            "junk:  on (own)",
        ),
        (
            "inherit",
            None,
            "off (site default, junk.enabled)",
            " msgs\n",
            "junk:  off (site default, junk.enabled)",
        ),
    ] {
        let out = s.ctl_ok(&["account", "junk", "alice@example.com", setting]);
        assert!(
            out.contains(&format!("\njunk:           {shown}\n")),
            "{setting}: {out}"
        );
        assert_eq!(column(&mut c), want, "{setting}");
        let effective = want.unwrap_or(false);
        let v = json(&s, &["account", "junk", "alice@example.com", setting]);
        assert_eq!(v["junk"], serde_json::json!(want), "{setting}: {v}");
        assert_eq!(v["effective_junk"], effective, "{setting}: {v}");
        let show = s.ctl_ok(&["account", "show", "alice@example.com"]);
        assert!(
            show.contains(&format!("\njunk:           {shown}\n")),
            "{setting}: {show}"
        );
        let list = s.ctl_ok(&["account", "list", "example.com"]);
        assert!(list.starts_with("alice@example.com  "), "{list}");
        assert!(list.ends_with(listed), "{setting}: {list}");
        let l = json(&s, &["account", "list"]);
        assert_eq!(l[0]["junk"], serde_json::json!(want), "{setting}: {l}");
        assert_eq!(l[0]["effective_junk"], effective, "{setting}: {l}");
        for to in [
            "alice@example.com",
            "alice-x@example.com",
            "team@example.com",
        ] {
            let r = s.ctl(&["resolve", to], b"");
            assert_eq!(r.code, Some(0), "{to}: {r:?}");
            assert!(r.stdout.contains(resolved), "{setting} {to}: {}", r.stdout);
            let v: Value =
                serde_json::from_str(&s.ctl(&["resolve", to, "--json"], b"").stdout).unwrap();
            assert_eq!(v["mailboxes"][0]["junk"], serde_json::json!(want), "{v}");
            assert_eq!(v["mailboxes"][0]["effective_junk"], effective, "{v}");
        }
    }

    // A site whose default is on: NULL means on, an account can opt out.
    let on = Site::with_config("[junk]\nenabled = true\n");
    on.account("bob@example.com");
    let b = json(&on, &["account", "show", "bob@example.com"]);
    assert_eq!(
        (&b["junk"], &b["effective_junk"]),
        (&Value::Null, &true.into())
    );
    let text = on.ctl_ok(&["account", "show", "bob@example.com"]);
    assert!(
        text.contains("junk:           on (site default, junk.enabled)"),
        "{text}"
    );
    let b = json(&on, &["account", "junk", "bob@example.com", "off"]);
    assert_eq!(
        (&b["junk"], &b["effective_junk"]),
        (&false.into(), &false.into())
    );
    let r = on.ctl(&["resolve", "bob@example.com"], b"");
    assert!(r.stdout.contains("junk:  off (own)"), "{r:?}");

    // Errors: no such account (1, nothing changed), a bad setting or none (2).
    let e = fails(&s, &["account", "junk", "nobody@example.com", "on"], 1);
    assert!(e.contains("no account nobody@example.com"), "{e}");
    let e = fails(&s, &["account", "junk", "alice@nowhere.example", "on"], 1);
    assert!(e.contains("nowhere.example"), "{e}");
    for bad in [
        &["account", "junk", "alice@example.com", "maybe"][..],
        &["account", "junk", "alice@example.com"],
        &["account", "junk", "alice@example.com", "yes"],
    ] {
        fails(&s, bad, 2);
    }
    assert_eq!(column(&mut c), None);
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp to the second
/// (`2026-12-01T20:51:03Z`), or None when `s` is not exactly that form.
fn rfc3339_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 {
        return None;
    }
    for (i, want) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'Z'),
    ] {
        if b[i] != want {
            return None;
        }
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's way.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

#[test]
fn rfc3339_helper_parses_and_rejects() {
    assert_eq!(rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(rfc3339_utc("2000-03-01T00:00:01Z"), Some(951868801));
    for bad in [
        "2026-12-01 20:51:03Z",
        "2026-12-01T20:51:03+00",
        "2026-12-01T20:51:03.123Z",
        "2026-13-01T20:51:03Z",
        "2026-12-01T20:51:03",
    ] {
        assert_eq!(rfc3339_utc(bad), None, "{bad}");
    }
}

/// The value after `label:` on a line of text output.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in {text}"))
        .trim()
}

#[test]
fn timestamps_are_rfc3339_utc_in_text_and_json() {
    let s = Site::new();
    s.account("alice@example.com");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let d = json(&s, &["domain", "show", "example.com"]);
    let a = json(&s, &["account", "show", "alice@example.com"]);
    for (what, v, text) in [
        ("domain", &d, s.ctl_ok(&["domain", "show", "example.com"])),
        (
            "account",
            &a,
            s.ctl_ok(&["account", "show", "alice@example.com"]),
        ),
    ] {
        let ts = v["created_at"].as_str().unwrap();
        let t = rfc3339_utc(ts).unwrap_or_else(|| panic!("{what}: {ts:?}"));
        // UTC, not the server's zone: within a minute of now.
        assert!((t - now).abs() < 60, "{what}: {ts} vs {now}");
        assert_eq!(field(&text, "created:"), ts, "{what}");
    }
    // Lists give the same form.
    let l = json(&s, &["account", "list"]);
    assert_eq!(l[0]["created_at"], a["created_at"]);
}

#[test]
fn single_address_views_in_text_and_json() {
    let s = Site::new();
    s.account("alice@example.com");
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "dave@remote.org",
    ]);
    s.ctl_ok(&["relocated", "add", "old@example.com", "new@example.org"]);
    s.ctl_ok(&["catchall", "add", "example.com", "alice@example.com"]);

    assert_eq!(
        s.ctl_ok(&["alias", "show", "Team@Example.com"]),
        "team@example.com -> alice@example.com, dave@remote.org\n"
    );
    let a = json(&s, &["alias", "show", "team@example.com"]);
    assert_eq!(a["address"], "team@example.com");
    assert_eq!(
        strs(&a["destinations"]),
        ["alice@example.com", "dave@remote.org"]
    );
    // Not an alias: says what it is instead.
    let e = fails(&s, &["alias", "show", "alice@example.com"], 1);
    assert!(
        e.contains("no alias alice@example.com (it is an account)"),
        "{e}"
    );
    let e = fails(&s, &["alias", "show", "nobody@example.com"], 1);
    assert!(e.contains("no alias nobody@example.com"), "{e}");
    fails(&s, &["alias", "show", "team@nowhere.example"], 1);
    fails(&s, &["alias", "show", "not-an-address"], 2);

    assert_eq!(
        s.ctl_ok(&["relocated", "show", "old@example.com"]),
        "old@example.com has moved to new@example.org\n"
    );
    let r = json(&s, &["relocated", "show", "OLD@example.com"]);
    assert_eq!(r["address"], "old@example.com");
    assert_eq!(r["new_address"], "new@example.org");
    let e = fails(&s, &["relocated", "show", "team@example.com"], 1);
    assert!(
        e.contains("no relocated address team@example.com (it is an alias)"),
        "{e}"
    );

    assert_eq!(
        s.ctl_ok(&["catchall", "show", "Example.COM"]),
        "@example.com -> alice@example.com\n"
    );
    let c = json(&s, &["catchall", "show", "example.com"]);
    assert_eq!(c["domain"], "example.com");
    assert_eq!(strs(&c["destinations"]), ["alice@example.com"]);
    s.ctl_ok(&["domain", "add", "example.org"]);
    let e = fails(&s, &["catchall", "show", "example.org"], 1);
    assert!(e.contains("example.org has no catch-all"), "{e}");

    // `list` given an address points at `show` (it used to say "bad domain").
    for (entity, arg, hint) in [
        (
            "alias",
            "team@example.com",
            "vmailctl alias show team@example.com",
        ),
        (
            "relocated",
            "old@example.com",
            "vmailctl relocated show old@example.com",
        ),
        (
            "catchall",
            "x@example.com",
            "vmailctl catchall show example.com",
        ),
        (
            "account",
            "alice@example.com",
            "vmailctl account show alice@example.com",
        ),
    ] {
        let e = fails(&s, &[entity, "list", arg], 2);
        assert!(e.contains(hint) && !e.contains("bad domain"), "{e}");
    }
}

#[test]
fn domain_addresses_lists_every_kind_sorted() {
    let s = Site::new();
    s.account("bob@example.com");
    s.account("alice@example.com");
    s.ctl_ok(&["alias-domain", "add", "example.net", "example.com"]);
    s.ctl_ok(&["alias-domain", "add", "example.biz", "example.com"]);
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "bob@example.com",
        "carol@remote.org",
    ]);
    // An alias that keeps a copy in its own mailbox: account and alias.
    s.ctl_ok(&[
        "alias",
        "add",
        "alice@example.com",
        "alice@example.com",
        "alice@home.example",
    ]);
    s.ctl_ok(&["relocated", "add", "old@example.com", "new@example.org"]);
    s.ctl_ok(&["catchall", "add", "example.com", "bob@example.com"]);
    // Another domain's addresses are not listed.
    s.ctl_ok(&["domain", "add", "other.example"]);
    s.account("zed@other.example");

    let v = json(&s, &["domain", "addresses", "example.com"]);
    let got: Vec<(String, String, Vec<String>)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
                strs(&e["destinations"]),
            )
        })
        .collect();
    let want: Vec<(String, String, Vec<String>)> = [
        ("example.biz", "alias_domain", vec!["example.com"]),
        ("example.net", "alias_domain", vec!["example.com"]),
        ("@example.com", "catchall", vec!["bob@example.com"]),
        ("alice@example.com", "account", vec![]),
        (
            "alice@example.com",
            "alias",
            vec!["alice@example.com", "alice@home.example"],
        ),
        ("bob@example.com", "account", vec![]),
        ("old@example.com", "relocated", vec!["new@example.org"]),
        (
            "team@example.com",
            "alias",
            vec!["bob@example.com", "carol@remote.org"],
        ),
    ]
    .into_iter()
    .map(|(a, k, d)| {
        (
            a.to_string(),
            k.to_string(),
            d.into_iter().map(String::from).collect(),
        )
    })
    .collect();
    assert_eq!(got, want);

    let text = s.ctl_ok(&["domain", "addresses", "example.com"]);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert_eq!(
        lines[0],
        [
            "example.biz",
            "alias",
            "domain",
            "(another",
            "name",
            "for",
            "example.com)"
        ]
    );
    assert_eq!(
        lines[2],
        ["@example.com", "catchall", "->", "bob@example.com"]
    );
    assert_eq!(lines[3], ["alice@example.com", "account"]);
    assert_eq!(
        lines[6],
        ["old@example.com", "relocated", "->", "new@example.org"]
    );
    assert_eq!(
        lines[7],
        [
            "team@example.com",
            "alias",
            "->",
            "bob@example.com,",
            "carol@remote.org"
        ]
    );
    // Columns line up: every kind starts at the same place.
    let col: Vec<usize> = text
        .lines()
        .map(|l| l.find("  ").unwrap() + l[l.find("  ").unwrap()..].find(|c| c != ' ').unwrap())
        .collect();
    assert!(col.windows(2).all(|w| w[0] == w[1]), "{text}");

    // An empty domain lists nothing; unknown and alias domains are errors.
    s.ctl_ok(&["domain", "add", "empty.example"]);
    assert_eq!(s.ctl_ok(&["domain", "addresses", "empty.example"]), "");
    assert_eq!(
        json(&s, &["domain", "addresses", "empty.example"]),
        serde_json::json!([])
    );
    let e = fails(&s, &["domain", "addresses", "nowhere.example"], 1);
    assert!(e.contains("no domain nowhere.example"), "{e}");
    let e = fails(&s, &["domain", "addresses", "example.net"], 1);
    assert!(e.contains("alias domain of example.com"), "{e}");
}

/// Run vmailctl with `--json` expecting failure with exit `code`: the
/// error object on stdout, nothing on stderr; returns (kind, message).
fn json_error(s: &Site, args: &[&str], code: i32) -> (String, String) {
    let mut a = args.to_vec();
    a.push("--json");
    let r = s.ctl(&a, b"");
    assert_eq!(r.code, Some(code), "vmailctl {a:?}: {r:?}");
    assert!(r.stderr.is_empty(), "{a:?}: {r:?}");
    let v: Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{a:?}: {e}: {}", r.stdout));
    let e = &v["error"];
    assert_eq!(e.as_object().unwrap().len(), 2, "{v}");
    (
        e["kind"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn json_errors_have_a_stable_kind_and_the_same_exit_codes() {
    let s = Site::new();
    s.account("alice@example.com");
    s.ctl_ok(&["alias", "add", "team@example.com", "alice@example.com"]);
    let (k, m) = json_error(&s, &["alias", "show", "nobody@example.com"], 1);
    assert_eq!(k, "not_found");
    assert!(m.contains("no alias nobody@example.com"), "{m}");
    let (k, m) = json_error(&s, &["domain", "add", "bad_domain!"], 2);
    assert_eq!(k, "invalid");
    assert!(m.contains("bad domain"), "{m}");
    let (k, m) = json_error(&s, &["domain", "add", "example.com"], 1);
    assert_eq!(k, "conflict");
    assert!(m.contains("already a domain"), "{m}");
    let (k, m) = json_error(&s, &["account", "delete", "alice@example.com"], 1);
    assert_eq!(k, "would_break_delivery");
    assert!(m.contains("alias team@example.com"), "{m}");
    let (k, _) = json_error(&s, &["catchall", "add", "example.com", "x@example.com"], 1);
    assert_eq!(k, "would_break_delivery");
    // A usage error clap catches is JSON too, exit 2.
    let (k, m) = json_error(&s, &["alias", "show"], 2);
    assert_eq!(k, "usage");
    assert!(m.contains("ADDRESS"), "{m}");
    // A configuration that cannot be read.
    let r = Command::new(crate::common::site::bin("vmailctl"))
        .args([
            "--config",
            "/nonexistent/vdeliver.toml",
            "domain",
            "list",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "config");
    // Without --json the error stays on stderr.
    let e = fails(&s, &["alias", "show", "nobody@example.com"], 1);
    assert!(
        e.starts_with("vmailctl: no alias nobody@example.com"),
        "{e}"
    );
}

#[test]
fn messages_explain_themselves() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("postmaster@example.com");
    s.ctl_ok(&["alias", "add", "team@example.com", "alice@example.com"]);
    let mut seen = String::new();
    let mut run = |args: &[&str], code: i32| -> String {
        let r = s.ctl(args, b"");
        assert_eq!(r.code, Some(code), "{args:?}: {r:?}");
        seen += &r.stdout;
        seen += &r.stderr;
        format!("{}{}", r.stdout, r.stderr)
    };
    // A catch-all to an address that does not exist: that is what is said.
    let e = run(&["catchall", "add", "example.com", "ghost@example.com"], 1);
    assert!(
        e.contains("ghost@example.com does not exist") && e.contains("--force"),
        "{e}"
    );
    let e = run(
        &[
            "alias",
            "add",
            "sales@example.com",
            "ghost@example.com",
            "gone@example.com",
        ],
        1,
    );
    assert!(
        e.contains("ghost@example.com, gone@example.com do not exist"),
        "{e}"
    );
    // An extension of an existing account exists; a remote one is not ours.
    run(
        &[
            "alias",
            "add",
            "lists@example.com",
            "alice-lists@example.com",
            "x@remote.org",
        ],
        0,
    );
    // The catch-all is probed with a made-up name: shown as *.
    run(
        &["catchall", "add", "example.com", "postmaster@example.com"],
        0,
    );
    let e = run(&["account", "delete", "postmaster@example.com"], 1);
    assert!(
        e.contains("catch-all of example.com") && e.contains("*@example.com"),
        "{e}"
    );
    let out = run(
        &["account", "delete", "postmaster@example.com", "--force"],
        0,
    );
    assert!(
        out.contains("warning (forced): catch-all of example.com"),
        "{out}"
    );
    let e = run(
        &[
            "catchall",
            "delete",
            "example.com",
            "postmaster@example.com",
        ],
        0,
    );
    assert!(e.contains("removed from the catch-all"), "{e}");

    // relocated add says what the name already is.
    s.ctl_ok(&["relocated", "add", "old@example.com", "new@example.org"]);
    let e = run(
        &["relocated", "add", "alice@example.com", "a@example.org"],
        1,
    );
    assert!(e.contains("alice@example.com is an account;"), "{e}");
    let e = run(&["relocated", "add", "old@example.com", "b@example.org"], 1);
    assert!(
        e.contains("old@example.com is already relocated, to new@example.org"),
        "{e}"
    );
    let e = run(
        &["relocated", "add", "team@example.com", "c@example.org"],
        1,
    );
    assert!(
        e.contains("team@example.com is an alias (-> alice@example.com)"),
        "{e}"
    );
    assert_eq!(
        json(&s, &["relocated", "list"]).as_array().unwrap().len(),
        1
    );

    // Singular and plural.
    s.ctl_ok(&["domain", "add", "one.example", "--quota-messages", "1"]);
    s.account("a@one.example");
    let t = run(&["domain", "show", "one.example"], 0);
    assert!(t.contains(", 1 message (account default)"), "{t}");
    let t = run(&["account", "show", "a@one.example"], 0);
    assert!(t.contains(", 1 message (domain default)"), "{t}");
    let e = run(&["domain", "delete", "one.example"], 1);
    assert!(
        e.contains("has 1 account;") && e.contains("deletes it too"),
        "{e}"
    );
    s.account("b@one.example");
    let e = run(&["domain", "delete", "one.example"], 1);
    assert!(
        e.contains("has 2 accounts;") && e.contains("deletes them too"),
        "{e}"
    );
    for bad in ["1 messages", "1 accounts", "account(s)", "1 bytes"] {
        assert!(!seen.contains(bad), "{bad}: {seen}");
    }
    assert!(!seen.contains("vmailctlprobe"), "{seen}");
}
