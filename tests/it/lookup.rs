//! The delivery lookup on the server (issue 11): the function
//! `vdeliver_lookup` of schema version 2, its fast path for a plain
//! account, the upgrade of a version-1 and of a populated version-3
//! database in place, the account's Junk setting (version 4, issue 12)
//! through every layer, and `vmailctl explain`.

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
    // vdeliver needs version 4: before the upgrade it defers (a database
    // error: the columns it reads are missing) and loses nothing.
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("database: lookup"), "{r:?}");
    assert!(r.stdout.contains("does not exist"), "{r:?}");
    let out = s.ctl_ok(&["migrate"]);
    assert!(
        out.contains("from version 1 to 5"),
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

/// Every row of the tables a migration must keep, as JSON text per table
/// (the columns versions 4 and 5 add left out).
fn all_rows(c: &mut Client) -> Vec<(String, String)> {
    [
        "domains",
        "alias_domains",
        "accounts",
        "aliases",
        "catchalls",
        "relocated",
        "vdeliver_routes",
    ]
    .iter()
    .map(|t| {
        let q = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(x) - 'junk' - 'real_name' - 'note'
                                           - 'imap' - 'pop3' - 'smtp' - 'sieve'
                                       ORDER BY to_jsonb(x)::text), '[]')::text
               FROM {t} x"
        );
        (t.to_string(), c.query_one(&q, &[]).unwrap().get(0))
    })
    .collect()
}

/// Version 3 to 4 (accounts.junk, and the lookup functions redefined) on
/// a populated database: every row kept as it was, every account
/// following the site's default, vdeliver deferring (never bouncing)
/// until the upgrade and delivering through every layer after it, and
/// `vmailctl check` content at version 4.
#[test]
fn migrate_upgrades_a_version_3_database_keeping_every_row() {
    let s = Site::on(Pg::shared(), "", false);
    let mut c = client(&s);
    c.batch_execute(
        "CREATE TABLE vdeliver_schema (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .unwrap();
    for (v, name, sql) in &vdeliver::schema::MIGRATIONS[..3] {
        c.batch_execute(sql).unwrap();
        c.execute(
            "INSERT INTO vdeliver_schema (version, name) VALUES ($1, $2)",
            &[v, name],
        )
        .unwrap();
    }
    assert_eq!(vdeliver::schema::current_version(), 5);
    c.batch_execute(
        "INSERT INTO domains (name, quota_bytes) VALUES ('example.com', 1000000), ('other.org', NULL);
         INSERT INTO alias_domains (name, domain_id)
             SELECT 'alias.example', id FROM domains WHERE name = 'example.com';
         INSERT INTO accounts (domain_id, local_part, maildir, quota_messages, active)
             SELECT id, l, 'example.com/' || l || '/Maildir/', q, a FROM domains,
                    (VALUES ('alice', NULL::bigint, true), ('bob', 10, true),
                            ('off', NULL, false)) v(l, q, a)
              WHERE name = 'example.com';
         INSERT INTO accounts (domain_id, local_part, maildir)
             SELECT id, 'u' || i, 'other.org/u' || i || '/Maildir/'
               FROM domains, generate_series(1, 500) i WHERE name = 'other.org';
         INSERT INTO aliases (domain_id, local_part, destination)
             SELECT id, 'team', d FROM domains,
                    unnest(ARRAY['alice@example.com', 'u1@other.org', 'x@remote.net']) d
              WHERE name = 'example.com';
         INSERT INTO catchalls (domain_id, destination)
             SELECT id, 'u2@other.org' FROM domains WHERE name = 'other.org';
         INSERT INTO relocated (domain_id, local_part, new_address)
             SELECT id, 'gone', 'gone@new.example' FROM domains WHERE name = 'example.com';",
    )
    .unwrap();
    let before = all_rows(&mut c);
    // This vdeliver reads accounts.junk: at version 3 it defers.
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(r.stdout.contains("does not exist"), "{r:?}");
    let r = s.ctl(&["check", "--json"], b"");
    assert!(
        r.stdout
            .contains("at version 3, this vdeliver needs 5: run vmailctl migrate"),
        "{r:?}"
    );
    let out = s.ctl_ok(&["migrate"]);
    assert!(out.contains("from version 3 to 5"), "{out}");
    assert!(!out.contains("repaired"), "{out}");
    let after = all_rows(&mut c);
    for ((t, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{t}");
    }
    let versions: Vec<(i32, String)> = c
        .query(
            "SELECT version, name FROM vdeliver_schema ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want: Vec<(i32, String)> = vdeliver::schema::MIGRATIONS
        .iter()
        .map(|m| (m.0, m.1.to_string()))
        .collect();
    assert_eq!(versions, want);
    let (n, set): (i64, i64) = {
        let r = c
            .query_one("SELECT count(*), count(junk) FROM accounts", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (n, set),
        (503, 0),
        "every account follows the site's default"
    );
    let drift: i64 = c.query_one("SELECT vdeliver_drift()", &[]).unwrap().get(0);
    assert_eq!(drift, 0);
    // (Its qmail-queue check fails here: this site has none.)
    let r = s.ctl(&["check", "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let schema = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "schema")
        .unwrap();
    assert_eq!(schema["ok"], true, "{v}");
    assert_eq!(
        schema["detail"],
        "at version 5, the current one; the lookup's copies agree"
    );
    // Delivered through each layer: plain, extension, alias (one copy
    // local, one in the other domain, one remote, so vdeliver_lookup),
    // catch-all, alias domain; the relocated address and the disabled
    // account bounce as before.
    for (to, code) in [
        ("alice@example.com", 0),
        ("alice-x@example.com", 0),
        ("alice@alias.example", 0),
        ("nobody@other.org", 0),
        ("gone@example.com", 100),
        ("off@example.com", 100),
    ] {
        let r = s.deliver(to, "bob@remote.org", MSG);
        assert_eq!(r.code, Some(code), "{to}: {r:?}");
    }
    assert_eq!(s.files("example.com/alice/Maildir/", "new").len(), 3);
    assert_eq!(s.files("other.org/u2/Maildir/", "new").len(), 1);
    let out = s.ctl_ok(&["migrate"]);
    assert!(out.contains("nothing to do"), "{out}");
}

/// What each row db::FETCH answers for these pairs carries: "f" (the
/// plain account's columns), "p" (vdeliver_route's, whole) or the kind
/// of vdeliver_lookup's fact.
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
        .map(|r| {
            if r.get::<_, Option<String>>(vdeliver::db::F).is_some() {
                "f".to_string()
            } else {
                r.get::<_, Option<String>>(vdeliver::db::L)
                    .unwrap_or_else(|| "p".to_string())
            }
        })
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
        assert!(
            k.contains(&"q".to_string()) || k.contains(&"p".to_string()),
            "{pairs:?}: {k:?}"
        );
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
    s.ctl_ok(&["alias", "add", "chain@example.com", "team@example.com"]);
    // alice: the one statement reads domains and accounts by their
    // indexes. team: vdeliver_route's statement does, vdeliver_routes and
    // accounts. chain (an alias to an alias): vdeliver_lookup's do.
    for (to, inside, index) in [
        (
            "alice@example.com",
            false,
            "accounts_domain_id_local_part_key",
        ),
        ("team@example.com", true, "vdeliver_routes_pkey"),
        (
            "chain@example.com",
            true,
            "aliases_domain_id_local_part_destination_key",
        ),
    ] {
        let out = s.ctl_ok(&["explain", to]);
        assert!(out.contains("round trip 1: "), "{out}");
        assert!(!out.contains("round trip 2"), "{to}: one round trip: {out}");
        assert_eq!(out.contains("inside the function:"), inside, "{to}: {out}");
        assert!(
            out.contains("Index Scan using accounts_domain_id_local_part_key on accounts"),
            "{to}: {out}"
        );
        assert!(out.contains(index), "{to}: {out}");
        for table in ["accounts", "aliases", "vdeliver_routes"] {
            assert!(
                !out.contains(&format!("Seq Scan on {table}")),
                "{to}: {out}"
            );
        }
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
                           FROM catchalls c WHERE c.domain_id = d.id), '{}')
                     OR d.vdeliver_catchall_domains
                        IS DISTINCT FROM (vdeliver_targets(d.vdeliver_catchalls)).domains
                     OR d.vdeliver_catchall_locals
                        IS DISTINCT FROM (vdeliver_targets(d.vdeliver_catchalls)).locals)
              + (SELECT count(*)
                   FROM (SELECT domain_id, local_part FROM aliases
                         UNION SELECT domain_id, local_part FROM relocated) k
                   FULL JOIN vdeliver_routes r
                     ON r.domain_id = k.domain_id AND r.local_part = k.local_part
                  WHERE k.domain_id IS NULL OR r.domain_id IS NULL
                     OR r.aliases IS DISTINCT FROM coalesce(
                        (SELECT array_agg(destination ORDER BY destination) FROM aliases a
                          WHERE a.domain_id = r.domain_id AND a.local_part = r.local_part), '{}')
                     OR r.relocated IS DISTINCT FROM (
                        SELECT new_address FROM relocated x
                         WHERE x.domain_id = r.domain_id AND x.local_part = r.local_part)
                     OR r.target_domains IS DISTINCT FROM (vdeliver_targets(r.aliases)).domains
                     OR r.target_locals IS DISTINCT FROM (vdeliver_targets(r.aliases)).locals)",
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
        // Relocated rows added, moved, deleted, beside an alias of the
        // same name and alone.
        format!("INSERT INTO aliases (domain_id, local_part, destination) VALUES ({ex}, 'old', 'Bob@Example.com'), ({ex}, 'old', '%n@two.example')"),
        format!("INSERT INTO relocated (domain_id, local_part, new_address) VALUES ({ex}, 'old', 'old@new.example'), ({ex}, 'older', 'x@new.example')"),
        "UPDATE relocated SET local_part = 'oldest' WHERE local_part = 'older'".to_string(),
        format!("UPDATE relocated SET domain_id = {two} WHERE local_part = 'old'"),
        "DELETE FROM relocated WHERE local_part = 'oldest'".to_string(),
        "DELETE FROM relocated".to_string(),
        "DELETE FROM aliases".to_string(),
        "DELETE FROM catchalls".to_string(),
    ];
    for (i, q) in sql.iter().enumerate() {
        c.batch_execute(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(copies_wrong(&mut c), 0, "after step {i}: {q}");
    }
    // vdeliver_routes written by hand (a row missing would read as "no
    // aliases"): refused, saying what to change instead.
    c.batch_execute(&format!(
        "INSERT INTO aliases (domain_id, local_part, destination) VALUES ({ex}, 'kept', 'bob@example.com')"
    ))
    .unwrap();
    for q in [
        "DELETE FROM vdeliver_routes",
        "TRUNCATE vdeliver_routes",
        "UPDATE vdeliver_routes SET local_part = 'other'",
        &format!("INSERT INTO vdeliver_routes VALUES ({ex}, 'made', '{{}}', NULL, '{{}}', '{{}}')"),
    ] {
        let e = c.batch_execute(q).expect_err(q);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{q}: {e}"));
        assert!(db.message().contains("kept by triggers"), "{q}: {db:?}");
        assert!(
            db.hint().is_some_and(|h| h.contains("vmailctl alias")),
            "{q}: {db:?}"
        );
        assert_eq!(copies_wrong(&mut c), 0, "after {q}");
    }
    c.batch_execute("DELETE FROM aliases").unwrap();
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

/// Resolve `to` (`local@domain`) round trip by round trip with
/// `statement`, as delivery does: the outcome and the number of trips.
fn resolve_by(c: &mut Client, statement: &str, to: &str) -> (String, usize) {
    let (r, trips) = plan_by(c, statement, to);
    match r {
        Ok(p) => (format!("{:?} {:?}", p.mailboxes, p.remote), trips),
        Err(f) => (f, trips),
    }
}

/// [`resolve_by`]'s plan itself (or the failure, in words).
fn plan_by(
    c: &mut Client,
    statement: &str,
    to: &str,
) -> (Result<vdeliver::plan::Plan, String>, usize) {
    use vdeliver::plan::{self, Step};
    let (local, domain) = to.rsplit_once('@').unwrap();
    let rcpt = vdeliver::recipient::Recipient {
        local_as_addressed: local.to_string(),
        local: vdeliver::recipient::fold_local(local),
        domain: domain.to_string(),
    };
    let rules = plan::Rules {
        delimiters: "-".into(),
        fallback: None,
    };
    let mut facts = plan::Facts::default();
    let mut ask = plan::first_question(&rcpt, &rules);
    for trip in 1..=10 {
        vdeliver::db::fetch_with(c, statement, &ask, &mut facts).unwrap();
        match plan::resolve(&rcpt, &facts, &rules) {
            Err(f) => return (Err(format!("{f:?}")), trip),
            Ok(Step::Done(p)) => return (Ok(p), trip),
            Ok(Step::Need(more)) => {
                ask = more
                    .into_iter()
                    .filter(|p| !facts.asked.contains(p))
                    .collect();
            }
        }
    }
    panic!("{to}: no answer in 10 trips");
}

/// Which part of db::FETCH answers the first question for `to`: "f" (the
/// plain account's row), "p" (vdeliver_route alone) or "function"
/// (vdeliver_lookup, for some pairs at least).
fn answered_by(c: &mut Client, to: &str) -> &'static str {
    let (local, domain) = to.rsplit_once('@').unwrap();
    let rcpt = vdeliver::recipient::Recipient {
        local_as_addressed: local.to_string(),
        local: vdeliver::recipient::fold_local(local),
        domain: domain.to_string(),
    };
    let rules = vdeliver::plan::Rules {
        delimiters: "-".into(),
        fallback: None,
    };
    let ask = vdeliver::plan::first_question(&rcpt, &rules);
    let pairs: Vec<(&str, &str)> = ask.iter().map(|p| (p.0.as_str(), p.1.as_str())).collect();
    let k = kinds(c, &pairs);
    if k == ["f"] {
        "f"
    } else if !k.is_empty() && k.iter().all(|k| k == "p") {
        "p"
    } else {
        // Some destinations whole, others vdeliver_lookup's to follow.
        assert!(!k.iter().any(|k| k == "f"), "{to}: mixed {k:?}");
        "function"
    }
}

/// vdeliver_route (schema version 3) answers extensions, aliases and
/// catch-alls to plain local accounts in one round trip, and hands the
/// rest to vdeliver_lookup; either way, resolution ends exactly where
/// vdeliver_lookup alone ends it, in no more round trips.
#[test]
fn route_resolves_as_the_function_does() {
    let s = Site::new();
    s.ctl_ok(&["domain", "add", "other.org"]);
    for a in [
        "alice@example.com",
        "bob@example.com",
        "aliased@example.com",
        "off@example.com",
        "dave@other.org",
        "carol@example.com",
        "self@example.com",
        "first-last@example.com",
    ] {
        s.account(a);
    }
    s.ctl_ok(&["domain", "set", "example.com", "--quota-messages", "7"]);
    for (from, to) in [
        ("team@example.com", "alice@example.com"),
        ("team@example.com", "Dave@Other.org"),
        ("aliased@example.com", "bob@example.com"),
        ("chain@example.com", "aliased@example.com"),
        ("self@example.com", "self@example.com"),
        ("self@example.com", "bob@example.com"),
        ("pct@example.com", "%n@other.org"),
        ("ext@example.com", "carol@example.com"),
        ("remote@example.com", "x@remote.net"),
        ("viaalias@example.com", "alice@alias.example"),
        ("tooff@example.com", "off@example.com"),
        ("carol-list@example.com", "bob@example.com"),
        ("deep@example.com", "chain@example.com"),
        ("named@example.com", "First-Last@example.com"),
        ("byext@example.com", "carol-x@example.com"),
    ] {
        s.ctl_ok(&["alias", "add", from, to, "--force"]);
    }
    s.ctl_ok(&["alias-domain", "add", "alias.example", "example.com"]);
    s.ctl_ok(&["catchall", "add", "other.org", "dave@other.org"]);
    s.ctl_ok(&["domain", "add", "third.org"]);
    s.ctl_ok(&[
        "catchall",
        "add",
        "third.org",
        "team@example.com",
        "--force",
    ]);
    s.ctl_ok(&["domain", "add", "fourth.org"]);
    s.ctl_ok(&["catchall", "add", "fourth.org", "%n@example.com", "--force"]);
    s.ctl_ok(&["domain", "add", "fifth.org"]);
    s.ctl_ok(&["domain", "add", "sixth.org"]);
    s.ctl_ok(&["catchall", "add", "sixth.org", "BOB@example.com"]);
    s.ctl_ok(&["catchall", "add", "sixth.org", "carol@example.com"]);
    let mut c = client(&s);
    // Junk routing on, off and the site's default (NULL) among the
    // accounts, so that every comparison below covers the column too.
    c.batch_execute(
        "UPDATE accounts SET junk = true WHERE local_part IN ('alice', 'carol', 'off');
         UPDATE accounts SET junk = false WHERE local_part IN ('bob', 'dave');
         UPDATE accounts SET active = false WHERE local_part = 'off';
         INSERT INTO relocated (domain_id, local_part, new_address)
             SELECT id, 'gone', 'gone@new.example' FROM domains WHERE name = 'example.com';",
    )
    .unwrap();
    // (address, the part of the statement that answers it)
    let cases = [
        // Extensions whose first existing candidate is a plain account.
        ("alice-x@example.com", "p"),
        ("alice-x-y@example.com", "p"),
        ("off-x@example.com", "p"),
        ("first-last@example.com", "p"),
        ("first-last-x@example.com", "p"),
        // Relocated, with and without an extension; no such user.
        ("gone@example.com", "p"),
        ("gone-x@example.com", "p"),
        ("nobody@example.com", "p"),
        ("nobody-x@example.com", "p"),
        // Aliases to plain local accounts, of the address or a candidate,
        // in this domain or another, whatever the case of the destination.
        ("team@example.com", "p"),
        ("Team-x@example.com", "p"),
        ("aliased@example.com", "p"),
        ("ext@example.com", "p"),
        ("tooff@example.com", "p"),
        ("carol-list@example.com", "p"),
        ("carol-list-x@example.com", "p"),
        ("named@example.com", "p"),
        // Catch-all hits to plain local accounts.
        ("nobody@other.org", "p"),
        ("nobody-x@other.org", "p"),
        ("dave-x@other.org", "p"),
        ("nobody@sixth.org", "p"),
        // A '%' destination: its pairs are known only after the first
        // round trip, with either statement.
        ("pct@example.com", "p"),
        ("someone@fourth.org", "p"),
        ("someone@fifth.org", "p"),
        // Everything else: vdeliver_lookup.
        ("chain@example.com", "function"),
        ("deep@example.com", "function"),
        ("self@example.com", "function"),
        ("remote@example.com", "function"),
        ("viaalias@example.com", "function"),
        ("byext@example.com", "function"),
        ("team@alias.example", "function"),
        ("alice-x@alias.example", "function"),
        ("someone@third.org", "function"),
        ("x@unknown.example", "function"),
        // The plain row.
        ("alice@example.com", "f"),
        ("bob@example.com", "f"),
        ("off@example.com", "f"),
    ];
    let mut junk_seen = std::collections::BTreeSet::new();
    for (to, part) in cases {
        assert_eq!(answered_by(&mut c, to), part, "{to}: answered by");
        let (got, trips) = resolve_by(&mut c, vdeliver::db::FETCH, to);
        let (want, function_trips) = resolve_by(&mut c, vdeliver::db::FETCH_FUNCTION, to);
        assert_eq!(got, want, "{to}");
        for j in ["junk: Some(true)", "junk: Some(false)", "junk: None"] {
            if got.contains(j) {
                junk_seen.insert((part, j));
            }
        }
        assert!(trips <= function_trips, "{to}: {trips} > {function_trips}");
        if part == "p" && !["pct@example.com", "someone@fourth.org"].contains(&to) {
            assert_eq!(trips, 1, "{to}: {got}");
        }
    }
    // Each layer answered accounts with junk on and off.
    for part in ["f", "p", "function"] {
        for j in ["junk: Some(true)", "junk: Some(false)"] {
            assert!(
                junk_seen.contains(&(part, j)),
                "no case answered by {part} with {j}: {junk_seen:?}"
            );
        }
    }
}

/// An account's Junk routing setting (`accounts.junk`, schema version 4)
/// reaches the plan's mailbox whichever layer of the statement answers:
/// the plain row, vdeliver_route (an extension, an alias, a catch-all)
/// and vdeliver_lookup (an alias domain, a chain of aliases), as
/// vdeliver_lookup alone reads it.
#[test]
fn junk_setting_reaches_the_mailbox_through_every_layer() {
    let s = Site::new();
    let accounts = [("yes", Some(true)), ("no", Some(false)), ("dflt", None)];
    s.ctl_ok(&["alias-domain", "add", "alias.example", "example.com"]);
    for (local, _) in accounts {
        s.account(&format!("{local}@example.com"));
        let to = format!("{local}@example.com");
        s.ctl_ok(&["alias", "add", &format!("to-{local}@example.com"), &to]);
        s.ctl_ok(&[
            "alias",
            "add",
            &format!("chain-{local}@example.com"),
            &format!("to-{local}@example.com"),
        ]);
        let catch = format!("catch-{local}.example");
        s.ctl_ok(&["domain", "add", &catch]);
        s.ctl_ok(&["catchall", "add", &catch, &to]);
    }
    let mut c = client(&s);
    c.batch_execute(
        "UPDATE accounts SET junk = true WHERE local_part = 'yes';
         UPDATE accounts SET junk = false WHERE local_part = 'no';",
    )
    .unwrap();
    for (local, want) in accounts {
        let owner = format!("{local}@example.com");
        for (to, part) in [
            (format!("{local}@example.com"), "f"),
            (format!("{local}-tag@example.com"), "p"),
            (format!("to-{local}@example.com"), "p"),
            (format!("anyone@catch-{local}.example"), "p"),
            (format!("{local}@alias.example"), "function"),
            (format!("chain-{local}@example.com"), "function"),
        ] {
            assert_eq!(answered_by(&mut c, &to), part, "{to}: answered by");
            for statement in [vdeliver::db::FETCH, vdeliver::db::FETCH_FUNCTION] {
                let plan = plan_by(&mut c, statement, &to)
                    .0
                    .unwrap_or_else(|f| panic!("{to}: {f}"));
                let got: Vec<(&str, Option<bool>)> = plan
                    .mailboxes
                    .iter()
                    .map(|m| (m.owner.as_str(), m.junk))
                    .collect();
                assert_eq!(got, [(owner.as_str(), want)], "{to}");
            }
        }
    }
}

/// Two transactions changing the same address's aliases (or an alias
/// and a relocated row) at once: the second waits on the domain's row
/// lock, then recomputes the route from what the first committed, so
/// the route holds both.
#[test]
fn concurrent_alias_changes_on_one_address_both_reach_the_route() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    let ex = "(SELECT id FROM domains WHERE name = 'example.com')";
    for (first, second) in [
        (
            format!("INSERT INTO aliases (domain_id, local_part, destination) VALUES ({ex}, 'team', 'alice@example.com')"),
            format!("INSERT INTO aliases (domain_id, local_part, destination) VALUES ({ex}, 'team', 'bob@example.com')"),
        ),
        (
            "DELETE FROM aliases WHERE destination = 'alice@example.com'".to_string(),
            format!("INSERT INTO aliases (domain_id, local_part, destination) VALUES ({ex}, 'team', 'carol@example.com')"),
        ),
    ] {
        let mut a = client(&s);
        let mut b = client(&s);
        a.batch_execute(&format!("BEGIN; {first}")).unwrap();
        let sql = format!("BEGIN; {second}; COMMIT");
        let waiter = std::thread::spawn(move || {
            b.batch_execute(&sql).unwrap();
            b
        });
        // Let the second block on the lock the first holds.
        let mut watch = client(&s);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let waiting: i64 = watch
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE wait_event_type = 'Lock' AND datname = current_database()",
                    &[],
                )
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the second never waited");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        a.batch_execute("COMMIT").unwrap();
        waiter.join().unwrap();
        assert_eq!(copies_wrong(&mut watch), 0, "{first} / {second}");
    }
    let mut c = client(&s);
    let aliases: Vec<String> = c
        .query_one(
            "SELECT aliases FROM vdeliver_routes WHERE local_part = 'team'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(aliases, ["bob@example.com", "carol@example.com"]);
}

/// Triggers that did not run (a load with `session_replication_role =
/// replica`) leave the lookup's copies behind the tables: `vmailctl
/// check` says so, and `vmailctl migrate` repairs exactly those rows, after
/// which delivery follows the aliases again and hand writes to
/// vdeliver_routes are still refused.
#[test]
fn drift_from_disabled_triggers_is_reported_and_repaired_by_migrate() {
    let s = Site::new();
    s.account("alice@example.com");
    s.account("bob@example.com");
    s.ctl_ok(&["alias", "add", "old@example.com", "bob@example.com"]);
    let mut c = client(&s);
    let ex = "(SELECT id FROM domains WHERE name = 'example.com')";
    c.batch_execute(&format!(
        "SET session_replication_role = replica;
         INSERT INTO aliases (domain_id, local_part, destination)
              VALUES ({ex}, 'alice', 'bob@example.com'), ({ex}, 'team', 'alice@example.com');
         INSERT INTO catchalls (domain_id, destination) VALUES ({ex}, 'bob@example.com');
         INSERT INTO relocated (domain_id, local_part, new_address)
              VALUES ({ex}, 'gone', 'gone@new.example');
         DELETE FROM aliases WHERE local_part = 'old';
         SET session_replication_role = DEFAULT;"
    ))
    .unwrap();
    // alice's flag, the domain's catch-alls, and the routes of alice,
    // team, gone (missing) and old (stale).
    assert_eq!(copies_wrong(&mut c), 6);
    let r = s.ctl(&["check"], b"");
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout
            .contains("6 rows of the lookup's trigger-kept copies"),
        "{r:?}"
    );
    let out = s.ctl_ok(&["migrate"]);
    assert!(out.contains("repaired 6 rows"), "{out}");
    assert_eq!(copies_wrong(&mut c), 0);
    let out = s.ctl_ok(&["migrate"]);
    assert!(!out.contains("repaired"), "{out}");
    let r = s.ctl(&["check"], b"");
    assert!(r.stdout.contains("the lookup's copies agree"), "{r:?}");
    // Delivery follows the repaired copies: alice's alias, the catch-all,
    // the relocated address.
    let r = s.deliver("alice@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = s.deliver("nobody@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(s.files("example.com/bob/Maildir/", "new").len(), 2);
    assert!(s.files("example.com/alice/Maildir/", "new").is_empty());
    let r = s.deliver("gone@example.com", "x@remote.org", MSG);
    assert_eq!(r.code, Some(100), "{r:?}");
    let e = c
        .batch_execute("DELETE FROM vdeliver_routes")
        .expect_err("a hand write after a repair");
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("kept by triggers")),
        "{e}"
    );
}
