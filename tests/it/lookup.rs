//! The delivery lookup on the server (issue 11): the function
//! `vdeliver_lookup` of schema version 2, its fast path for a plain
//! account, the upgrade of a version-1 database in place, and
//! `vmailctl explain`.

use crate::common::pg::Pg;
use crate::common::site::Site;
use postgres::{Client, NoTls};

const MSG: &[u8] = b"From: bob@remote.org\nSubject: lookup\n\nHello.\n";

fn client(s: &Site) -> Client {
    Client::connect(&s.db.url, NoTls).unwrap()
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
    // vdeliver needs version 2: before the upgrade it defers (a database
    // error: the columns it reads are missing) and loses nothing.
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("database: lookup"), "{r:?}");
    assert!(r.stdout.contains("does not exist"), "{r:?}");
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

/// The kinds of the rows db::FETCH answers for these pairs.
fn kinds(c: &mut Client, pairs: &[(&str, &str)]) -> Vec<String> {
    let doms: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let locs: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    let mut k: Vec<String> = c
        .query_typed(
            vdeliver::db::FETCH,
            &[
                (&doms, postgres::types::Type::TEXT_ARRAY),
                (&locs, postgres::types::Type::TEXT_ARRAY),
            ],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    k.sort();
    k
}

#[test]
fn fast_path_answers_as_the_full_lookup_does() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.account("aliased@example.com");
    s.ctl_ok(&["alias", "add", "aliased@example.com", "bob@example.com"]);
    s.ctl_ok(&["catchall", "add", "example.com", "bob@example.com"]);
    s.ctl_ok(&["catchall", "add", "example.com", "Alice@example.com"]);
    s.ctl_ok(&["alias-domain", "add", "other.example", "example.com"]);
    s.ctl_ok(&[
        "account",
        "add",
        "carol@example.com",
        "--quota-bytes",
        "1000",
    ]);
    s.ctl_ok(&["domain", "set", "example.com", "--quota-messages", "7"]);
    let mut c = client(&s);
    for loc in ["alice", "carol"] {
        // One pair: the fast path (one row). The same pair twice: the
        // general path, through vdeliver_lookup.
        let one = [("example.com".to_string(), loc.to_string())];
        let twice = [one[0].clone(), one[0].clone()];
        assert_eq!(kinds(&mut c, &[("example.com", loc)]), ["f"], "{loc}");
        let mut fast = vdeliver::plan::Facts::default();
        vdeliver::db::fetch(&mut c, &one, &mut fast).unwrap();
        let mut full = vdeliver::plan::Facts::default();
        vdeliver::db::fetch(&mut c, &twice, &mut full).unwrap();
        assert_eq!(
            fast.domains["example.com"], full.domains["example.com"],
            "{loc}"
        );
        let key = (one[0].0.clone(), one[0].1.clone());
        assert_eq!(fast.locals[&key], full.locals[&key], "{loc}");
        assert!(fast.asked.contains(&key));
        let catchalls = &fast.domains["example.com"].as_ref().unwrap().catchalls;
        assert_eq!(catchalls.len(), 2, "{catchalls:?}");
    }
    // Not the fast path: an account with an alias of its own, an alias
    // domain, an extension's two candidates, an address with no account.
    for pairs in [
        &[("example.com", "aliased")][..],
        &[("other.example", "alice")],
        &[("example.com", "alice-x"), ("example.com", "alice")],
        &[("example.com", "nobody")],
    ] {
        let k = kinds(&mut c, pairs);
        assert!(!k.contains(&"f".to_string()), "{pairs:?}: {k:?}");
        assert!(k.contains(&"q".to_string()), "{pairs:?}: {k:?}");
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
    // alice: the one statement reads domains and accounts by their
    // indexes. team: the function's statements do, aliases and accounts.
    for (to, inside) in [("alice@example.com", false), ("team@example.com", true)] {
        let out = s.ctl_ok(&["explain", to]);
        assert!(out.contains("round trip 1: "), "{out}");
        assert!(!out.contains("round trip 2"), "{to}: one round trip: {out}");
        assert_eq!(out.contains("inside the function:"), inside, "{to}: {out}");
        assert!(
            out.contains("Index Scan using accounts_domain_id_local_part_key on accounts"),
            "{to}: {out}"
        );
        if inside {
            assert!(
                out.contains("aliases_domain_id_local_part_destination_key"),
                "{to}: {out}"
            );
        }
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

/// The copies the fast path reads, checked against the tables they copy:
/// the number of accounts and domains where they disagree.
fn copies_wrong(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT (SELECT count(*) FROM accounts a
                  WHERE a.vdeliver_aliased IS DISTINCT FROM EXISTS (
                        SELECT 1 FROM aliases al
                         WHERE al.domain_id = a.domain_id AND al.local_part = a.local_part))
              + (SELECT count(*) FROM domains d
                  WHERE d.vdeliver_catchalls IS DISTINCT FROM coalesce(
                        (SELECT array_agg(destination ORDER BY destination)
                           FROM catchalls c WHERE c.domain_id = d.id), '{}'))",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn trigger_kept_copies_stay_right_under_direct_sql_and_vmailctl() {
    let s = Site::new();
    s.ctl_ok(&["domain", "add", "two.example"]);
    for a in ["alice@example.com", "bob@example.com", "carol@two.example"] {
        s.account(a);
    }
    let mut c = client(&s);
    let ex = "(SELECT id FROM domains WHERE name = 'example.com')";
    let two = "(SELECT id FROM domains WHERE name = 'two.example')";
    let sql = [
        format!("INSERT INTO aliases (domain_id, local_part, destination) VALUES ({ex}, 'alice', 'bob@example.com')"),
        format!("INSERT INTO aliases (domain_id, local_part, destination) VALUES ({ex}, 'alice', 'carol@two.example')"),
        "DELETE FROM aliases WHERE destination = 'bob@example.com'".to_string(),
        // An alias moved to another address, then to another domain.
        "UPDATE aliases SET local_part = 'bob' WHERE local_part = 'alice'".to_string(),
        format!("UPDATE aliases SET domain_id = {two}, local_part = 'carol' WHERE local_part = 'bob'"),
        // An account renamed onto an aliased address and back.
        format!("INSERT INTO aliases (domain_id, local_part, destination) VALUES ({ex}, 'dave', 'bob@example.com')"),
        "UPDATE accounts SET local_part = 'dave' WHERE local_part = 'alice'".to_string(),
        "UPDATE accounts SET local_part = 'alice' WHERE local_part = 'dave'".to_string(),
        // The copy itself written by hand is recomputed.
        "UPDATE accounts SET vdeliver_aliased = NOT vdeliver_aliased".to_string(),
        "UPDATE domains SET vdeliver_catchalls = '{x@y.example}'".to_string(),
        // Catch-alls added, changed, moved, deleted.
        format!("INSERT INTO catchalls (domain_id, destination) VALUES ({ex}, 'bob@example.com'), ({ex}, 'alice@example.com')"),
        "UPDATE catchalls SET destination = 'Zed@remote.example' WHERE destination = 'alice@example.com'".to_string(),
        format!("UPDATE catchalls SET domain_id = {two} WHERE destination = 'bob@example.com'"),
        "DELETE FROM catchalls WHERE destination LIKE 'Zed%'".to_string(),
        // A domain with catch-alls and aliases, deleted (cascade).
        "INSERT INTO domains (name) VALUES ('gone.example')".to_string(),
        "INSERT INTO catchalls (domain_id, destination) SELECT id, 'a@b.example' FROM domains WHERE name = 'gone.example'".to_string(),
        "INSERT INTO aliases (domain_id, local_part, destination) SELECT id, 'x', 'a@b.example' FROM domains WHERE name = 'gone.example'".to_string(),
        "DELETE FROM domains WHERE name = 'gone.example'".to_string(),
        "DELETE FROM aliases".to_string(),
        "DELETE FROM catchalls".to_string(),
    ];
    for (i, q) in sql.iter().enumerate() {
        c.batch_execute(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(copies_wrong(&mut c), 0, "after step {i}: {q}");
    }
    let ctl: [&[&str]; 9] = [
        &["alias", "add", "alice@example.com", "bob@example.com"],
        &["catchall", "add", "example.com", "bob@example.com"],
        &["alias", "add", "alice@example.com", "alice@example.com"],
        &["alias", "delete", "alice@example.com", "bob@example.com"],
        &["account", "delete", "bob@example.com", "--force"],
        &["account", "add", "bob@example.com"],
        &["catchall", "delete", "example.com", "--force"],
        &["alias", "delete", "alice@example.com"],
        &["alias-domain", "add", "other.example", "example.com"],
    ];
    for args in ctl {
        s.ctl_ok(args);
        assert_eq!(copies_wrong(&mut c), 0, "after vmailctl {args:?}");
    }
    // And delivery follows: alice has no alias left, so her own mailbox.
    let r = s.deliver("alice@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files("example.com/alice/Maildir/", "new").len(), 1);
}
