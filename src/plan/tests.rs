//! Resolution, table-driven, against a model of the database that answers
//! exactly the questions asked and counts the round trips. (The real query
//! also follows literal alias and catch-all destinations by itself, so real
//! round trips can only be fewer; tests/it/routing.rs counts those on the
//! server.)

use super::*;
use crate::outcome::Exit;

/// All rows of a pretend site.
#[derive(Default)]
struct World {
    domains: HashMap<String, DomainFacts>,
    locals: HashMap<(String, String), LocalFacts>,
}

impl World {
    fn site() -> World {
        let mut w = World::default();
        w.domain("example.com", "example.com");
        w.domain("alias.example", "example.com");
        w.domain("other.net", "other.net");
        w.account("example.com", "alice");
        w.account("example.com", "bob");
        w.account("example.com", "alice-lists");
        w.account("other.net", "carol");
        w
    }

    fn domain(&mut self, name: &str, primary: &str) {
        let active = true;
        let catchalls = Vec::new();
        let primary = primary.to_string();
        self.domains.insert(
            name.into(),
            DomainFacts {
                primary,
                active,
                catchalls,
            },
        );
    }

    fn entry(&mut self, domain: &str, local: &str) -> &mut LocalFacts {
        // Rows belong to the primary domain; alias domains share them.
        self.locals
            .entry((domain.into(), local.into()))
            .or_default()
    }

    fn account(&mut self, domain: &str, local: &str) {
        self.entry(domain, local).account = Some(AccountFacts {
            maildir: format!("{domain}/{local}/Maildir/"),
            active: true,
            quota_bytes: None,
            quota_messages: None,
            junk: None,
        });
    }

    fn alias(&mut self, domain: &str, local: &str, dests: &[&str]) {
        self.entry(domain, local).aliases = dests.iter().map(|d| d.to_string()).collect();
    }

    fn catchall(&mut self, domain: &str, dests: &[&str]) {
        self.domains.get_mut(domain).unwrap().catchalls =
            dests.iter().map(|d| d.to_string()).collect();
    }

    /// Answer one round trip, as db::fetch does.
    fn answer(&self, pairs: &[(String, String)], facts: &mut Facts) {
        for (d, l) in pairs {
            let dom = self.domains.get(d).cloned().map(|mut df| {
                let primary = self.domains.get(&df.primary).unwrap();
                df.catchalls = primary.catchalls.clone();
                df.active = primary.active;
                df
            });
            let primary = dom.as_ref().map(|x| x.primary.clone());
            facts.domains.insert(d.clone(), dom);
            if let Some(p) = primary {
                if let Some(lf) = self.locals.get(&(p, l.clone())) {
                    facts.locals.insert((d.clone(), l.clone()), lf.clone());
                }
            }
            facts.asked.insert((d.clone(), l.clone()));
        }
    }

    /// Resolve to the end; returns the plan and the number of round trips.
    fn run(&self, to: &str, rules: &Rules) -> (Result<Plan, Failure>, usize) {
        let (local, domain) = to.rsplit_once('@').unwrap();
        let rcpt = Recipient {
            local_as_addressed: local.into(),
            local: crate::recipient::fold_local(local),
            domain: domain.to_lowercase(),
        };
        let mut facts = Facts::default();
        self.answer(&first_question(&rcpt, rules), &mut facts);
        let mut rounds = 1;
        loop {
            match resolve(&rcpt, &facts, rules) {
                Err(f) => return (Err(f), rounds),
                Ok(Step::Done(p)) => return (Ok(p), rounds),
                Ok(Step::Need(pairs)) => {
                    assert!(rounds < 40, "no progress");
                    self.answer(&pairs, &mut facts);
                    rounds += 1;
                }
            }
        }
    }
}

fn boxes(p: &Plan) -> Vec<String> {
    p.mailboxes
        .iter()
        .map(|m| match &m.folder {
            Some(f) => format!("{}.{f}", m.maildir),
            None => m.maildir.clone(),
        })
        .collect()
}

fn ok(w: &World, to: &str) -> (Plan, usize) {
    let (r, n) = w.run(to, &Rules::default());
    (r.unwrap_or_else(|f| panic!("{to}: {f:?}")), n)
}

fn fails(w: &World, to: &str, rules: &Rules) -> Failure {
    match w.run(to, rules).0 {
        Err(f) => f,
        Ok(p) => panic!("{to}: expected a failure, got {p:?}"),
    }
}

#[test]
fn plain_account_is_one_round_trip() {
    let (p, n) = ok(&World::site(), "Alice@Example.COM");
    assert_eq!(boxes(&p), ["example.com/alice/Maildir/"]);
    assert!(p.remote.is_empty());
    assert_eq!(n, 1);
}

#[test]
fn definite_answers_at_the_top() {
    let mut w = World::site();
    w.entry("example.com", "moved").relocated = Some("moved@new.example".into());
    w.account("example.com", "off");
    w.entry("example.com", "off")
        .account
        .as_mut()
        .unwrap()
        .active = false;
    let r = Rules::default();
    // (address, exit, status, text fragment)
    let cases = [
        ("nobody@example.com", Exit::Permanent, "5.1.1", "no mailbox"),
        ("x@unknown.org", Exit::Temporary, "4.3.5", "unknown.org"),
        (
            "moved@example.com",
            Exit::Permanent,
            "5.1.6",
            "try moved@new.example",
        ),
        ("off@example.com", Exit::Permanent, "5.2.1", "disabled"),
    ];
    for (to, exit, status, text) in cases {
        let f = fails(&w, to, &r);
        assert_eq!((f.exit, f.status), (exit, status), "{to}: {f:?}");
        assert!(f.text.contains(text), "{to}: {f:?}");
    }
    w.domains.get_mut("example.com").unwrap().active = false;
    assert_eq!(fails(&w, "alice@example.com", &r).status, "5.2.1");
}

#[test]
fn alias_to_two_locals_and_a_remote() {
    let mut w = World::site();
    w.alias(
        "example.com",
        "team",
        &["alice@example.com", "carol@other.net", "dave@remote.org"],
    );
    let (p, n) = ok(&w, "team@example.com");
    assert_eq!(
        boxes(&p),
        ["example.com/alice/Maildir/", "other.net/carol/Maildir/"]
    );
    assert_eq!(p.remote, ["dave@remote.org"]);
    assert_eq!(n, 2, "one level of aliasing: one more round trip");
}

#[test]
fn alias_keeps_own_copy_when_it_names_itself() {
    let mut w = World::site();
    w.alias(
        "example.com",
        "alice",
        &["alice@example.com", "x@remote.org"],
    );
    let (p, _) = ok(&w, "alice@example.com");
    assert_eq!(boxes(&p), ["example.com/alice/Maildir/"]);
    assert_eq!(p.remote, ["x@remote.org"]);
    // Without itself among the destinations the alias replaces the mailbox.
    w.alias("example.com", "alice", &["x@remote.org"]);
    let (p, _) = ok(&w, "alice@example.com");
    assert!(p.mailboxes.is_empty());
    // Through the alias domain, the copy is still its own.
    w.alias("example.com", "alice", &["%n@%d", "x@remote.org"]);
    let (p, _) = ok(&w, "alice@alias.example");
    assert_eq!(boxes(&p), ["example.com/alice/Maildir/"]);
}

#[test]
fn loops_and_depth() {
    let mut w = World::site();
    w.alias("example.com", "a", &["b@example.com"]);
    w.alias("example.com", "b", &["a@example.com"]);
    let f = fails(&w, "a@example.com", &Rules::default());
    assert_eq!((f.exit, f.status), (Exit::Permanent, "5.4.6"));
    assert!(
        f.text
            .contains("a@example.com -> b@example.com -> a@example.com"),
        "{f:?}"
    );
    for i in 0..20 {
        w.alias(
            "example.com",
            &format!("c{i}"),
            &[&format!("c{}@example.com", i + 1)],
        );
    }
    w.account("example.com", "c20");
    let f = fails(&w, "c0@example.com", &Rules::default());
    assert_eq!(f.status, "5.4.6");
    assert!(f.text.contains("longer than 16"), "{f:?}");
    // 16 steps are fine, 17 are not.
    let (p, _) = ok(&w, "c4@example.com");
    assert_eq!(boxes(&p), ["example.com/c20/Maildir/"]);
    assert_eq!(
        fails(&w, "c3@example.com", &Rules::default()).status,
        "5.4.6"
    );
}

#[test]
fn alias_domains_reach_the_primary_and_keep_percent_d() {
    let mut w = World::site();
    let (p, n) = ok(&w, "bob@alias.example");
    assert_eq!(boxes(&p), ["example.com/bob/Maildir/"]);
    assert_eq!(n, 1);
    w.alias(
        "example.com",
        "list",
        &["archive+%n=%d@store.example", "copy-%=@store.example"],
    );
    let (p, _) = ok(&w, "List@Alias.Example");
    assert_eq!(
        p.remote,
        [
            "archive+List=alias.example@store.example",
            "copy-List=alias.example@store.example"
        ]
    );
}

#[test]
fn extensions() {
    let w = World::site();
    // Longest prefix first: alice-lists is an account itself.
    let (p, n) = ok(&w, "alice-lists-rust@example.com");
    assert_eq!(boxes(&p), ["example.com/alice-lists/Maildir/.rust"]);
    assert_eq!(n, 1);
    let (p, _) = ok(&w, "bob-news@example.com");
    assert_eq!(boxes(&p), ["example.com/bob/Maildir/.news"]);
    let (p, _) = ok(&w, "Bob-News@example.com");
    assert_eq!(boxes(&p), ["example.com/bob/Maildir/.News"]);
    // An extension that cannot be a folder name goes to INBOX.
    let (p, _) = ok(&w, "bob-..@example.com");
    assert_eq!(boxes(&p), ["example.com/bob/Maildir/"]);
    // Another delimiter.
    let plus = Rules {
        delimiters: "+".into(),
        ..Rules::default()
    };
    let (p, _) = w.run("bob+news@example.com", &plus);
    assert_eq!(boxes(&p.unwrap()), ["example.com/bob/Maildir/.news"]);
    assert_eq!(fails(&w, "bob-news@example.com", &plus).status, "5.1.1");
}

#[test]
fn catchall_only_for_what_does_not_exist() {
    let mut w = World::site();
    w.catchall("example.com", &["%n@catch.example", "bob@example.com"]);
    w.entry("example.com", "moved").relocated = Some("m@new.example".into());
    let (p, _) = ok(&w, "alice@example.com");
    assert_eq!(boxes(&p), ["example.com/alice/Maildir/"]);
    assert_eq!(
        fails(&w, "moved@example.com", &Rules::default()).status,
        "5.1.6"
    );
    let (p, _) = ok(&w, "Stranger@example.com");
    assert_eq!(boxes(&p), ["example.com/bob/Maildir/"]);
    assert_eq!(p.remote, ["Stranger@catch.example"]);
}

#[test]
fn duplicates_are_delivered_once() {
    let mut w = World::site();
    w.alias(
        "example.com",
        "dup",
        &[
            "alice@example.com",
            "ALICE@example.com",
            "alice@alias.example",
            "x@Remote.org",
            "X@remote.ORG",
            "ali@example.com",
        ],
    );
    w.alias("example.com", "ali", &["alice@example.com"]);
    let (p, _) = ok(&w, "dup@example.com");
    assert_eq!(boxes(&p), ["example.com/alice/Maildir/"]);
    assert_eq!(p.remote.len(), 1);
}

#[test]
fn vpopmail_fallbacks() {
    let w = World::site();
    let with = |f: Fallback| Rules {
        fallback: Some(f),
        ..Rules::default()
    };
    assert_eq!(
        fails(&w, "zed@example.com", &with(Fallback::Bounce)).status,
        "5.1.1"
    );
    let (p, _) = w.run("zed@example.com", &with(Fallback::Delete));
    assert!(p.unwrap().discard.unwrap().contains("zed@example.com"));
    let (p, _) = w.run(
        "zed@example.com",
        &with(Fallback::Forward("bob@example.com".into())),
    );
    assert_eq!(boxes(&p.unwrap()), ["example.com/bob/Maildir/"]);
    let (p, _) = w.run(
        "zed@example.com",
        &with(Fallback::Forward("x@remote.org".into())),
    );
    assert_eq!(p.unwrap().remote, ["x@remote.org"]);
    let (p, _) = w.run(
        "zed@example.com",
        &with(Fallback::Maildir("spool/Maildir/".into())),
    );
    assert_eq!(boxes(&p.unwrap()), ["spool/Maildir/"]);
    // Existing users are not affected.
    let (p, _) = w.run("bob@example.com", &with(Fallback::Delete));
    assert_eq!(boxes(&p.unwrap()), ["example.com/bob/Maildir/"]);
}

#[test]
fn problems_deeper_down_defer_naming_the_chain() {
    let mut w = World::site();
    w.alias("example.com", "staff", &["ghost@example.com"]);
    w.alias("example.com", "bad", &["not an address"]);
    w.alias("example.com", "pct", &["%x@example.com"]);
    w.account("example.com", "off");
    w.entry("example.com", "off")
        .account
        .as_mut()
        .unwrap()
        .active = false;
    w.alias("example.com", "tooff", &["off@example.com"]);
    let r = Rules::default();
    for (to, text) in [
        (
            "staff@example.com",
            "staff@example.com -> ghost@example.com: there is no such mailbox",
        ),
        ("bad@example.com", "\"not an address\" of bad@example.com"),
        ("pct@example.com", "unknown %x"),
        (
            "tooff@example.com",
            "off@example.com: the account is disabled",
        ),
    ] {
        let f = fails(&w, to, &r);
        assert_eq!(
            (f.exit, f.status),
            (Exit::Temporary, "4.3.5"),
            "{to}: {f:?}"
        );
        assert!(f.text.contains(text), "{to}: {f:?}");
    }
}

#[test]
fn candidate_lists() {
    let c = candidates("a-b-c", "-");
    let got: Vec<_> = c.iter().map(|(p, e)| (p.as_str(), e.as_deref())).collect();
    assert_eq!(
        got,
        [("a-b-c", None), ("a-b", Some("c")), ("a", Some("b-c"))]
    );
    assert_eq!(candidates("-x", "-").len(), 1);
    assert_eq!(candidates("a+b-c", "+-").len(), 3);
    assert_eq!(
        candidates("Al-Sent", "-")[1],
        ("al".to_string(), Some("Sent".to_string()))
    );
    // ASCII folding only: the Kelvin sign stays itself (issue 10, item 19).
    assert_eq!(candidates("\u{212A}elly", "-")[0].0, "\u{212A}elly");
    assert_eq!(candidates("\u{C4}RGER", "-")[0].0, "\u{C4}rger");
}

#[test]
fn interpolation() {
    assert_eq!(interpolate("%n@x", "Al", "d.org").unwrap(), "Al@x");
    assert_eq!(
        interpolate("a+%=@x", "Al", "d.org").unwrap(),
        "a+Al=d.org@x"
    );
    assert_eq!(
        interpolate("100%%@%d", "Al", "d.org").unwrap(),
        "100%@d.org"
    );
    assert!(interpolate("%q", "a", "b").is_err());
    assert!(interpolate("x%", "a", "b").is_err());
}

#[test]
fn addresses_checked() {
    assert!(split_address("a@b.org").is_ok());
    for bad in [
        "ab.org",
        "@b.org",
        "a b@c.org",
        "a\n@b.org",
        "a@b..org",
        "a@",
    ] {
        assert!(split_address(bad).is_err(), "{bad}");
    }
    assert!(split_address(&format!("{}@b.org", "a".repeat(1000))).is_err());
}

/// Issue 10, item 19: case folding is ASCII only, everywhere in the walk:
/// the recipient, alias destinations and the remote de-duplication.
#[test]
fn folding_never_maps_non_ascii_onto_ascii() {
    let mut w = World::site();
    w.account("example.com", "kelly");
    w.account("example.com", "\u{e4}rger");
    let r = Rules::default();
    // Addressed with a Kelvin sign: no such user, not kelly.
    let f = fails(&w, "\u{212A}elly@example.com", &r);
    assert_eq!((f.exit, f.status), (Exit::Permanent, "5.1.1"), "{f:?}");
    // ASCII case still folds; a non-ASCII name matches as stored.
    assert_eq!(
        boxes(&ok(&w, "KELLY@example.com").0),
        ["example.com/kelly/Maildir/"]
    );
    assert_eq!(
        boxes(&ok(&w, "\u{e4}RGER@example.com").0),
        ["example.com/\u{e4}rger/Maildir/"]
    );
    assert_eq!(fails(&w, "\u{c4}rger@example.com", &r).status, "5.1.1");
    // An alias member written with a Kelvin sign is no member: the
    // delivery defers naming the chain, kelly gets nothing.
    w.alias("example.com", "team", &["\u{212A}elly@example.com"]);
    let f = fails(&w, "team@example.com", &r);
    assert_eq!((f.exit, f.status), (Exit::Temporary, "4.3.5"), "{f:?}");
    // Two remote destinations that differ only by a Kelvin sign are two.
    w.alias(
        "example.com",
        "out",
        &[
            "kelly@remote.org",
            "\u{212A}elly@remote.org",
            "KELLY@remote.org",
        ],
    );
    let (p, _) = ok(&w, "out@example.com");
    assert_eq!(p.remote, ["kelly@remote.org", "\u{212A}elly@remote.org"]);
}

/// The candidates decide longest first, so those after the first with
/// any rows need not be known: told about `first-last@…` (an account
/// whose name has the delimiter in it) along with the alias that names
/// it, as vdeliver_route tells, resolution needs nothing about `first`.
#[test]
fn candidates_after_the_deciding_one_are_not_needed() {
    let mut w = World::site();
    w.account("example.com", "first-last");
    w.alias("example.com", "named", &["first-last@example.com"]);
    let rcpt = Recipient {
        local_as_addressed: "named".into(),
        local: "named".into(),
        domain: "example.com".into(),
    };
    let rules = Rules::default();
    let both = |w: &World| {
        let mut facts = Facts::default();
        let pairs = [
            ("example.com".to_string(), "named".to_string()),
            ("example.com".to_string(), "first-last".to_string()),
        ];
        w.answer(&pairs, &mut facts);
        facts
    };
    let Ok(Step::Done(p)) = resolve(&rcpt, &both(&w), &rules) else {
        panic!("expected an answer without `first`");
    };
    assert_eq!(boxes(&p), ["example.com/first-last/Maildir/"]);
    // Not an account: the shorter candidate decides, so it is asked
    // for (with every one after the first unknown, in one round trip).
    w.entry("example.com", "first-last").account = None;
    w.account("example.com", "first");
    let Ok(Step::Need(pairs)) = resolve(&rcpt, &both(&w), &rules) else {
        panic!("expected a question about `first`");
    };
    assert_eq!(pairs, [("example.com".to_string(), "first".to_string())]);
    let (p, n) = ok(&w, "named@example.com");
    assert_eq!(boxes(&p), ["example.com/first/Maildir/.last"]);
    assert_eq!(n, 2);
}
