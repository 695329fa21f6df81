//! Issue 10, the data items: rows of an unexpected shape (7), a Maildir
//! path naming the mail root (15), the vpopmail import's bounce flag (16),
//! the vpopmail fallback user directory (17), the obsolete
//! `lowercase_local_part` (18) and ASCII-only case folding (19). Each test
//! drives the real binaries against a real database and looks at what is
//! (and is not) on disk.

use crate::common::site::{qmail_env, Run, Site};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const MSG: &[u8] = b"From: bob@remote.org\nSubject: data\n\nHello.\n";
const ALICE: &str = "example.com/alice/Maildir/";
const CATCH: &str = "example.com/catch/Maildir/";

/// Every path beneath `root`, relative to it: to see that a delivery
/// created or stored nothing.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out
}

/// Files in `new/` of every Maildir beneath the root.
fn messages(root: &Path) -> Vec<PathBuf> {
    tree(root)
        .into_iter()
        .filter(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "new" || n == "tmp")
                && root.join(p).is_file()
        })
        .collect()
}

fn deliver(s: &Site, to: &str, args: &[&str]) -> Run {
    s.command(&qmail_env(to, "bob@remote.org"), args)
        .stdin(s.message_file(MSG))
        .output()
        .unwrap()
        .into()
}

fn defers(r: &Run, status: &str, what: &str) {
    assert_eq!(r.code, Some(111), "{what}: {r:?}");
    assert!(
        r.stdout.ends_with(&format!("(#{status})\n")),
        "{what}: {r:?}"
    );
}

/// A site with alice, and a catch-all account that would take anything
/// that is not found.
fn site_with_catchall() -> Site {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("catch@example.com");
    s.ctl_ok(&["catchall", "add", "example.com", "catch@example.com"]);
    s
}

/// Item 7: where a NOT NULL (or CHECK) has been dropped by hand, a NULL
/// (or negative quota) is a database error: 111 `#4.3.0`, nothing stored
/// anywhere, and in particular nothing handed to the catch-all.
#[test]
fn issue10_null_columns_are_database_errors_not_absences() {
    let s = site_with_catchall();
    s.db.execute(
        "ALTER TABLE accounts ALTER maildir DROP NOT NULL, ALTER active DROP NOT NULL;
         ALTER TABLE accounts DROP CONSTRAINT accounts_quota_bytes_check;
         ALTER TABLE domains ALTER active DROP NOT NULL;
         ALTER TABLE aliases ALTER destination DROP NOT NULL;
         ALTER TABLE catchalls ALTER destination DROP NOT NULL;
         ALTER TABLE relocated ALTER new_address DROP NOT NULL;",
    );
    let id = "(SELECT id FROM domains WHERE name = 'example.com')";
    s.db.execute(&format!(
        "INSERT INTO accounts (domain_id, local_part, maildir)
              VALUES ({id}, 'nomaildir', NULL);
         INSERT INTO accounts (domain_id, local_part, maildir, active)
              VALUES ({id}, 'noactive', 'example.com/noactive/Maildir/', NULL);
         INSERT INTO accounts (domain_id, local_part, maildir, quota_bytes)
              VALUES ({id}, 'negative', 'example.com/negative/Maildir/', -1);
         INSERT INTO aliases (domain_id, local_part, destination)
              VALUES ({id}, 'team', 'alice@example.com'), ({id}, 'team', NULL);
         INSERT INTO relocated (domain_id, local_part, new_address)
              VALUES ({id}, 'moved', NULL);"
    ));
    let before = tree(&s.root);
    // (address, the column the line names)
    let cases = [
        ("nomaildir@example.com", "accounts.maildir is NULL"),
        ("noactive@example.com", "accounts.active is NULL"),
        (
            "negative@example.com",
            "quota_bytes (the account's or its domain's) is negative",
        ),
        ("team@example.com", "aliases.destination is NULL"),
        ("moved@example.com", "relocated.new_address is NULL"),
    ];
    for (to, fragment) in cases {
        let r = deliver(&s, to, &[]);
        defers(&r, "4.3.0", to);
        assert!(r.stdout.contains("database: lookup"), "{to}: {r:?}");
        assert!(r.stdout.contains(fragment), "{to}: {r:?}");
        assert_eq!(r.stdout.lines().count(), 1, "{to}: {r:?}");
    }
    assert_eq!(tree(&s.root), before, "a deferral created something");
    assert!(messages(&s.root).is_empty());

    // A NULL catch-all destination: the unknown user defers, the other
    // catch-all destination gets nothing.
    s.db.execute(&format!(
        "INSERT INTO catchalls (domain_id, destination) VALUES ({id}, NULL)"
    ));
    let r = deliver(&s, "nobody@example.com", &[]);
    defers(&r, "4.3.0", "catch-all");
    assert!(r.stdout.contains("catchalls.destination is NULL"), "{r:?}");
    s.db.execute("DELETE FROM catchalls WHERE destination IS NULL");

    // A NULL domains.active: not a disabled domain (a bounce).
    s.db.execute("UPDATE domains SET active = NULL WHERE name = 'example.com'");
    let r = deliver(&s, "alice@example.com", &[]);
    defers(&r, "4.3.0", "domains.active");
    assert!(r.stdout.contains("domains.active is NULL"), "{r:?}");
    assert_eq!(tree(&s.root), before);
    assert!(s.files(CATCH, "new").is_empty());
    assert!(s.files(ALICE, "new").is_empty());

    // vmailctl resolve says the same (it shares the lookup).
    let r = s.ctl(&["resolve", "alice@example.com"], b"");
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("domains.active is NULL"),
        "{r:?}"
    );

    // Sanity: with the row repaired the same site delivers.
    s.db.execute("UPDATE domains SET active = true WHERE name = 'example.com'");
    let r = deliver(&s, "alice@example.com", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(ALICE);
}

/// Item 15: a Maildir path of `""`, `.`, `./` (or `/`) names the mail
/// root itself; it is refused like `..`, and the root is left untouched.
#[test]
fn issue10_maildir_naming_the_mail_root_is_refused() {
    let s = Site::new();
    s.account("alice@example.com");
    s.db.execute("ALTER TABLE accounts DROP CONSTRAINT accounts_maildir_check");
    let before = tree(&s.root);
    for path in ["", ".", "./", ".//.", "/"] {
        s.db.execute(&format!(
            "UPDATE accounts SET maildir = '{path}' WHERE local_part = 'alice'"
        ));
        let r = deliver(&s, "alice@example.com", &[]);
        defers(&r, "4.3.5", path);
        if path != "/" {
            assert!(
                r.stdout.contains("names the mail root itself"),
                "{path:?}: {r:?}"
            );
        }
        assert_eq!(tree(&s.root), before, "{path:?}: the root changed");
        let r = s.ctl(&["resolve", "alice@example.com"], b"");
        assert_ne!(r.code, Some(0), "resolve {path:?}: {r:?}");
    }
    for sub in ["cur", "new", "tmp"] {
        assert!(!s.root.join(sub).exists(), "{sub}/ made in the root");
    }
}

/// Items 15 and 17: the vpopmail fallback path. A user directory gets
/// the mail in its `Maildir/`; a path ending in `Maildir` is that Maildir;
/// `mail.root` itself is refused.
#[test]
fn issue10_vpopmail_fallback_user_directory_gets_its_maildir() {
    let s = Site::new();
    let root = s.root.display().to_string();

    let r = deliver(&s, "zed@example.com", &["", &format!("{root}/spool")]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stdout, "delivered to spool/Maildir/\n", "{r:?}");
    s.only_message("spool/Maildir/");
    for sub in ["cur", "new", "tmp"] {
        assert!(
            !s.root.join("spool").join(sub).exists(),
            "{sub}/ made in the user directory itself"
        );
    }
    // Trailing slash: the same.
    let r = deliver(&s, "zed@example.com", &["", &format!("{root}/spool/")]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files("spool/Maildir/", "new").len(), 2);

    // The Maildir itself, with or without the slash: no second Maildir/.
    for arg in ["other/Maildir/", "other/Maildir"] {
        let r = deliver(&s, "zed@example.com", &["", &format!("{root}/{arg}")]);
        assert_eq!(r.code, Some(0), "{arg}: {r:?}");
        assert_eq!(r.stdout, "delivered to other/Maildir/\n", "{r:?}");
    }
    assert_eq!(s.files("other/Maildir/", "new").len(), 2);
    assert!(!s.root.join("other/Maildir/Maildir").exists());

    // The mail root itself is no user directory.
    let before = tree(&s.root);
    for arg in [root.clone(), format!("{root}/"), format!("{root}/.")] {
        let r = deliver(&s, "zed@example.com", &["", &arg]);
        defers(&r, "4.3.5", &arg);
        assert_eq!(tree(&s.root), before, "{arg}");
    }
}

/// Item 16: BOUNCE_MAIL is 0x10 in vpopmail.h; no other pw_gid bit (0x100
/// is V_USER1) disables an account.
#[test]
fn issue10_vpopmail_import_reads_bounce_mail_as_0x10() {
    let s = Site::new();
    let root = format!("{}/", s.root.display());
    let bits: Vec<i32> = (0..14).map(|b| 1 << b).collect();
    let mut rows = vec![format!(
        "('none', 'example.org', '', 0, 0, '', '{root}example.org/none', 'NOQUOTA', '')"
    )];
    for b in &bits {
        rows.push(format!(
            "('bit{b:x}', 'example.org', '', 0, {b}, '', '{root}example.org/bit{b:x}', 'NOQUOTA', '')"
        ));
    }
    rows.push(format!(
        "('both', 'example.org', '', 0, {}, '', '{root}example.org/both', 'NOQUOTA', '')",
        0x10 | 0x100
    ));
    s.db.execute(&format!(
        "CREATE TABLE vpopmail (pw_name text, pw_domain text, pw_passwd text, pw_uid int,
                                pw_gid int, pw_gecos text, pw_dir text, pw_shell text,
                                pw_clear_passwd text);
         CREATE TABLE valias (alias text, domain text, valias_line text);
         INSERT INTO vpopmail VALUES {};",
        rows.join(",\n")
    ));
    let script = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/vpopmail-import.sql"),
    )
    .unwrap();
    let mut c = s.db.client();
    c.batch_execute(&format!("SET vdeliver.vpopmail_root = '{root}';\n{script}"))
        .unwrap();
    let active: Vec<(String, bool)> = c
        .query(
            "SELECT local_part, active FROM accounts ORDER BY local_part",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(active.len(), bits.len() + 2, "{active:?}");
    for (name, on) in &active {
        let want = !(name == "bit10" || name == "both");
        assert_eq!(*on, want, "{name}: {active:?}");
    }
    // And vdeliver acts on it: 0x10 bounces as disabled, 0x100 delivers.
    let r = deliver(&s, "bit10@example.org", &[]);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.2.1)\n"), "{r:?}");
    let r = deliver(&s, "bit100@example.org", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message("example.org/bit100/Maildir/");
}

/// Item 18: `lowercase_local_part` is gone. `true` (what old files say)
/// still loads and mixed case is delivered; `false` is a one-line
/// configuration error naming the key, for vdeliver (111 `#4.3.5`, mail
/// waits) and vmailctl alike.
#[test]
fn issue10_lowercase_local_part_true_loads_false_is_refused() {
    let s = Site::with_config("lowercase_local_part = true\n");
    s.account("alice@example.com");
    let r = deliver(&s, "ALICE@example.com", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(ALICE);

    let text = fs::read_to_string(&s.config).unwrap();
    fs::write(
        &s.config,
        text.replace(
            "lowercase_local_part = true",
            "lowercase_local_part = false",
        ),
    )
    .unwrap();
    let before = tree(&s.root);
    for to in ["Alice@example.com", "alice@example.com"] {
        let r = deliver(&s, to, &[]);
        defers(&r, "4.3.5", to);
        assert!(
            r.stdout.contains("key mail.lowercase_local_part")
                && r.stdout.contains("no longer supported"),
            "{r:?}"
        );
        assert_eq!(r.stdout.lines().count(), 1, "{r:?}");
    }
    assert_eq!(tree(&s.root), before);
    let r = s.ctl(&["resolve", "alice@example.com"], b"");
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("mail.lowercase_local_part"), "{r:?}");
}

/// Item 19: case folding is ASCII only. U+212A KELVIN SIGN + `elly` is not
/// `kelly`, addressed or as an alias destination; a non-ASCII name works
/// exactly as stored.
#[test]
fn issue10_kelvin_sign_is_not_k() {
    let s = Site::new();
    s.account("kelly@example.com");
    const KELLY: &str = "example.com/kelly/Maildir/";
    let id = "(SELECT id FROM domains WHERE name = 'example.com')";
    // vmailctl takes ASCII names only; a site may still store others.
    s.db.execute(&format!(
        "INSERT INTO accounts (domain_id, local_part, maildir)
              VALUES ({id}, 'j\u{fc}rgen', 'example.com/juergen/Maildir/');
         INSERT INTO aliases (domain_id, local_part, destination)
              VALUES ({id}, 'team', '\u{212A}elly@example.com');"
    ));

    let r = deliver(&s, "\u{212A}elly@example.com", &[]);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.ends_with("(#5.1.1)\n"), "{r:?}");
    assert!(s.files(KELLY, "new").is_empty(), "delivered to kelly");

    let r = deliver(&s, "team@example.com", &[]);
    defers(&r, "4.3.5", "alias to the Kelvin sign");
    assert!(s.files(KELLY, "new").is_empty(), "delivered to kelly");
    assert!(s.files(KELLY, "tmp").is_empty());

    // ASCII case folds; the non-ASCII letter is compared exactly.
    for to in ["j\u{fc}rgen@example.com", "J\u{fc}RGEN@example.com"] {
        let r = deliver(&s, to, &[]);
        assert_eq!(r.code, Some(0), "{to}: {r:?}");
        assert_eq!(r.stdout, "delivered to example.com/juergen/Maildir/\n");
    }
    let r = deliver(&s, "J\u{dc}RGEN@example.com", &[]);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert_eq!(s.files("example.com/juergen/Maildir/", "new").len(), 2);
    let r = deliver(&s, "KELLY@example.com", &[]);
    assert_eq!(r.code, Some(0), "{r:?}");
    s.only_message(KELLY);
}

/// Item 19, the SQL half: the lookup statement follows a literal
/// destination with the same ASCII-only folding, whatever the database's
/// ctype does with `lower()`: an alias to `\u{212A}elly@` must not make it
/// fetch `kelly`.
#[test]
fn issue10_lookup_sql_folds_ascii_only() {
    let s = Site::new();
    s.account("kelly@example.com");
    s.db.execute(
        "INSERT INTO aliases (domain_id, local_part, destination)
              SELECT id, 'team', 'X\u{212A}elly@example.com' FROM domains
               WHERE name = 'example.com'",
    );
    let mut c = s.db.client();
    let mut facts = vdeliver::plan::Facts::default();
    vdeliver::db::fetch(&mut c, &[("example.com".into(), "team".into())], &mut facts).unwrap();
    let asked: BTreeSet<String> = facts
        .asked
        .iter()
        .map(|(d, l)| format!("{l}@{d}"))
        .collect();
    assert!(
        asked.contains("x\u{212A}elly@example.com"),
        "the destination was not followed: {asked:?}"
    );
    assert!(!asked.contains("xkelly@example.com"), "{asked:?}");
}

/// Item 19 in vmailctl: deleting one destination of an alias compares
/// with ASCII case folded only, so `kelly@` does not also remove a
/// `\u{212A}elly@` destination.
#[test]
fn issue10_alias_delete_does_not_fold_the_kelvin_sign() {
    let s = Site::new();
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "kelly@remote.org",
        "\u{212A}elly@remote.org",
    ]);
    s.ctl_ok(&["alias", "delete", "team@example.com", "KELLY@remote.org"]);
    let left: Vec<String> =
        s.db.client()
            .query("SELECT destination FROM aliases ORDER BY 1", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(left, ["\u{212A}elly@remote.org"]);
}
