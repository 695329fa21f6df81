//! The delivery lookup on the server (issue 11): the function
//! `vdeliver_lookup` of schema version 2, its fast path for a plain
//! account, the upgrade of a version-1 database in place, and
//! `vmailctl explain`.

use crate::common::pg::Pg;
use crate::common::site::Site;
use postgres::{Client, NoTls};
use std::collections::BTreeSet;

const MSG: &[u8] = b"From: bob@remote.org\nSubject: lookup\n\nHello.\n";

fn client(s: &Site) -> Client {
    Client::connect(&s.db.url, NoTls).unwrap()
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<i64>,
    Option<i64>,
);

/// The rows `vdeliver_lookup` answers for these pairs, as a set.
fn lookup(c: &mut Client, doms: &[&str], locs: &[&str]) -> BTreeSet<Row> {
    c.query(
        "SELECT kind, dom, loc, val, flag, qb, qm FROM vdeliver_lookup($1, $2)",
        &[&doms, &locs],
    )
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        )
    })
    .collect()
}

#[test]
fn migrate_upgrades_a_version_1_database_in_place() {
    let s = Site::on(Pg::shared(), "", false);
    let mut c = client(&s);
    // A database as vmailctl migrate left it at version 1, with data.
    c.batch_execute(
        "CREATE TABLE vdeliver_schema (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .unwrap();
    let (v, name, sql) = vdeliver::schema::MIGRATIONS[0];
    assert_eq!(v, 1);
    c.batch_execute(sql).unwrap();
    c.execute(
        "INSERT INTO vdeliver_schema (version, name) VALUES ($1, $2)",
        &[&v, &name],
    )
    .unwrap();
    c.batch_execute(
        "INSERT INTO domains (name) VALUES ('example.com');
         INSERT INTO accounts (domain_id, local_part, maildir)
             SELECT id, 'alice', 'example.com/alice/Maildir/' FROM domains;
         INSERT INTO aliases (domain_id, local_part, destination)
             SELECT id, 'team', 'alice@example.com' FROM domains;",
    )
    .unwrap();
    // vdeliver needs version 2: before the upgrade it defers, naming the
    // missing function, and loses nothing.
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("vdeliver_lookup"), "{r:?}");
    let out = s.ctl_ok(&["migrate"]);
    assert!(
        out.contains("from version 1 to 2"),
        "vmailctl migrate said: {out}"
    );
    let out = s.ctl_ok(&["migrate"]);
    assert!(out.contains("nothing to do"), "{out}");
    for to in ["alice@example.com", "team@example.com"] {
        let r = s.deliver(to, "bob@remote.org", MSG);
        assert_eq!(r.code, Some(0), "{to}: {r:?}");
    }
    assert_eq!(s.files("example.com/alice/Maildir/", "new").len(), 2);
}

#[test]
fn fast_path_answers_as_the_full_lookup_does() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.ctl_ok(&["catchall", "add", "example.com", "bob@example.com"]);
    s.ctl_ok(&[
        "account",
        "add",
        "carol@example.com",
        "--quota-bytes",
        "1000",
    ]);
    let mut c = client(&s);
    for loc in ["alice", "carol"] {
        // One pair: the fast path. The same pair twice: the general path
        // (it answers each pair once), which also follows the catch-all.
        let fast = lookup(&mut c, &["example.com"], &[loc]);
        let full = lookup(&mut c, &["example.com", "example.com"], &[loc, loc]);
        assert!(fast.is_subset(&full), "{loc}: {fast:?} not within {full:?}");
        let about_it: BTreeSet<Row> = full
            .iter()
            .filter(|r| r.1 == "example.com" && r.2.as_deref().is_none_or(|l| l == loc))
            .cloned()
            .collect();
        assert_eq!(fast, about_it, "{loc}");
        // The fast path did answer: the general one also asked about the
        // catch-all's destination.
        assert_eq!(fast.iter().filter(|r| r.0 == "q").count(), 1, "{fast:?}");
        assert_eq!(full.iter().filter(|r| r.0 == "q").count(), 2, "{full:?}");
    }
}

#[test]
fn an_alias_added_by_direct_sql_overrides_the_account_at_once() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    let r = s.deliver("alice@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    let mut c = client(&s);
    // The fast path (an account, no alias) must see the alias.
    c.batch_execute(
        "INSERT INTO aliases (domain_id, local_part, destination)
             SELECT id, 'alice', 'bob@example.com' FROM domains WHERE name = 'example.com'",
    )
    .unwrap();
    let r = s.deliver("alice@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files("example.com/alice/Maildir/", "new").len(), 1);
    assert_eq!(s.files("example.com/bob/Maildir/", "new").len(), 1);
    // And a catch-all, a relocated row and an alias domain added by hand
    // are all seen by the next delivery.
    c.batch_execute(
        "DELETE FROM aliases;
         INSERT INTO catchalls (domain_id, destination)
             SELECT id, 'bob@example.com' FROM domains WHERE name = 'example.com';
         INSERT INTO relocated (domain_id, local_part, new_address)
             SELECT id, 'gone', 'gone@new.example' FROM domains WHERE name = 'example.com';
         INSERT INTO alias_domains (name, domain_id)
             SELECT 'other.example', id FROM domains WHERE name = 'example.com';",
    )
    .unwrap();
    let r = s.deliver("nobody@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files("example.com/bob/Maildir/", "new").len(), 2);
    let r = s.deliver("gone@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
    assert!(r.stdout.contains("gone@new.example"), "{r:?}");
    let r = s.deliver("alice@other.example", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files("example.com/alice/Maildir/", "new").len(), 2);
    // An account disabled by hand bounces, the fast path or not.
    c.batch_execute("UPDATE accounts SET active = false WHERE local_part = 'alice'")
        .unwrap();
    let r = s.deliver("alice@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
}

#[test]
fn explain_shows_each_round_trip_using_the_indexes() {
    let s = Site::new();
    s.account("alice@example.com");
    s.ctl_ok(&["alias", "add", "team@example.com", "alice@example.com"]);
    // Enough rows, analysed, that a plan depending on size would have
    // flipped to reading the tables whole (the old statement did at 10k).
    let mut c = client(&s);
    c.batch_execute(
        "INSERT INTO accounts (domain_id, local_part, maildir)
             SELECT d.id, 'u' || i, 'example.com/u' || i || '/Maildir/'
               FROM domains d, generate_series(1, 20000) i;
         INSERT INTO aliases (domain_id, local_part, destination)
             SELECT d.id, 'a' || i, 'u' || i || '@example.com'
               FROM domains d, generate_series(1, 20000) i;
         ANALYZE;",
    )
    .unwrap();
    for (to, uses) in [
        (
            "alice@example.com",
            "aliases_domain_id_local_part_destination_key",
        ),
        (
            "team@example.com",
            "aliases_domain_id_local_part_destination_key",
        ),
    ] {
        let out = s.ctl_ok(&["explain", to]);
        assert!(out.contains("round trip 1: "), "{out}");
        assert!(!out.contains("round trip 2"), "{to}: one round trip: {out}");
        assert!(out.contains("vdeliver_lookup"), "{out}");
        assert!(out.contains("inside the function:"), "{to}: {out}");
        assert!(
            out.contains("Index Scan using accounts_domain_id_local_part_key on accounts"),
            "{to}: {out}"
        );
        assert!(out.contains(uses), "{to}: {out}");
        assert!(!out.contains("Seq Scan on accounts"), "{to}: {out}");
        assert!(!out.contains("Seq Scan on aliases"), "{to}: {out}");
    }
    let r = s.ctl(&["explain", "alice@example.com", "--json"], b"");
    assert_eq!(r.code, Some(0), "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["trips"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["trips"][0]["pairs"][0], "alice@example.com", "{v}");
    let r = s.ctl(&["explain", "no-at-sign"], b"");
    assert_eq!(r.code, Some(1), "{r:?}");
}
