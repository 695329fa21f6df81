//! Delivery through Debian's PgBouncer in transaction pooling mode: the
//! lookup uses no named prepared statements and no session state.

use crate::common::pg::Pg;
use crate::common::pgbouncer::Bouncer;
use crate::common::site::{qmail_env, Site};

const MSG: &[u8] = b"Subject: through the pool\n\nbody\n";

#[test]
fn delivers_through_pgbouncer_transaction_pooling() {
    let s = Site::new();
    s.account("alice@example.com");
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "alice-%n@example.com",
    ]);
    let bouncer = Bouncer::start(Pg::shared(), &s.db.name);
    s.set_database_url(&bouncer.url(&s.db.name));
    // Concurrent deliveries share the pool's server connections; an alias
    // whose %n destination needs a second round trip is included.
    let env_alice = qmail_env("alice@example.com", "bob@remote.org");
    let env_team = qmail_env("team@example.com", "bob@remote.org");
    let children: Vec<_> = (0..30)
        .map(|i| {
            let env = if i % 3 == 0 { &env_team } else { &env_alice };
            s.command(env, &[])
                .stdin(s.message_file(MSG))
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", bouncer.log());
    }
    // 20 to alice directly, 10 through the alias: each to alice once more
    // (the alias's alice-%n destination is alice's extension "team", whose
    // folder does not exist, so INBOX, and the same Maildir is deduplicated).
    assert_eq!(s.files("example.com/alice/Maildir/", "new").len(), 30);
}
