//! Per-delivery lookup cost against the size of the site: does
//! it stay flat from 1,000 to 1,000,000 accounts, and with 100,000 aliases?
//!
//! ```text
//! cargo bench --bench lookup
//! VDELIVER_BENCH_SITES=1000,10000,100000:100000 cargo bench --bench lookup
//! ```
//!
//! Each site (`ACCOUNTS[:ALIASES]`; default 1 % aliases) is made once,
//! server-side, as `tests/it/common/throwaway.rs` describes (domains of 100
//! accounts, aliases, catch-alls, alias domains, relocated rows), and
//! ANALYZEd, in its own database of one private cluster. Default sites:
//! 1k, 10k, 100k and 1M accounts, and 100k accounts with 100k aliases.
//! Each iteration asks about the next of a list of random addresses across
//! the site:
//!
//! - `vdeliver_cold/<case>`: `vdeliver::deliver::lookup`, what the binary
//!   does per delivery: connect (a fresh backend, as a direct connection
//!   gets) and resolve — whatever statement(s) vdeliver sends, through its
//!   own code;
//! - `vdeliver_warm/<case>`: `vdeliver::deliver::resolve_over` on one kept
//!   connection (a warm backend, as PgBouncer hands out);
//! - `floor_cold`, `floor_warm`: the floor's own plain lookup
//!   (`examples/minimal_deliver.rs`: accounts ⨝ domains by name, unnamed,
//!   one round trip) of the account, with and without the connect.
//!
//! Cases: `plain` (an account), `alias` (an alias to one account),
//! `catchall` (an unknown address of a domain with a catch-all).
//!
//! `cargo test --all-targets` runs this file once in criterion's test mode
//! (no `--bench` argument): then only a 1,000-account site is made, unless
//! `VDELIVER_BENCH_SITES` says otherwise, so the test command stays fast.

#[allow(dead_code)]
#[path = "../tests/it/common/pg.rs"]
mod pg;
#[allow(dead_code)]
#[path = "../tests/it/common/pgbouncer.rs"]
mod pgbouncer;
#[allow(dead_code)]
#[path = "../tests/it/common/throwaway.rs"]
mod throwaway;
#[allow(dead_code)]
#[path = "../tests/it/common/unpriv.rs"]
mod unpriv;
#[allow(dead_code)]
#[path = "../tests/it/common/util.rs"]
mod util;
#[allow(unused_imports)]
use util::*;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use postgres::types::Type;
use std::path::Path;
use throwaway::{Case, Rng, Site};
use vdeliver::recipient::{Overrides, QmailEnv, Recipient};

/// The floor's statement, as `examples/minimal_deliver.rs` sends it (the
/// floor's own SQL, not vdeliver's).
const FLOOR: &str = "SELECT a.maildir, coalesce(a.quota_bytes, d.quota_bytes), \
     coalesce(a.quota_messages, d.quota_messages) \
     FROM accounts a JOIN domains d ON d.id = a.domain_id \
     WHERE d.name = $1 AND a.local_part = $2";

/// The sites to measure: `VDELIVER_BENCH_SITES`, else all sizes under
/// `cargo bench` and one small site in test mode.
fn sites() -> Vec<Site> {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let spec = std::env::var("VDELIVER_BENCH_SITES").unwrap_or_else(|_| {
        if bench_mode {
            "1000,10000,100000,1000000,100000:100000".into()
        } else {
            "1000".into()
        }
    });
    spec.split(',')
        .map(|s| {
            let (n, a) = s.split_once(':').unwrap_or((s, ""));
            let n: usize = n
                .trim()
                .parse()
                .expect("VDELIVER_BENCH_SITES: ACCOUNTS[:ALIASES],...");
            let mut site = Site::new(n);
            if !a.is_empty() {
                site.aliases = a.trim().parse().expect("VDELIVER_BENCH_SITES: ALIASES");
            }
            site
        })
        .collect()
}

fn label(s: &Site) -> String {
    let k = |n: usize| match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    };
    format!("{}acc_{}ali", k(s.accounts), k(s.aliases))
}

fn rcpt(address: &str) -> Recipient {
    let (l, d) = address.rsplit_once('@').expect("an address");
    vdeliver::recipient::recipient(
        &QmailEnv::default(),
        &Overrides {
            local: Some(l),
            domain: Some(d),
            sender: None,
        },
    )
    .expect("recipient")
}

fn lookup(c: &mut Criterion) {
    let pg = pg::Pg::private();
    for site in sites() {
        let db = pg.fresh_db();
        let mut client = db.client();
        vdeliver::admin::migrate(&mut client).expect("migrate");
        site.populate(&mut client);
        let cfg = vdeliver::config::parse(
            Path::new("bench.toml"),
            &format!(
                "[database]\nurl = \"{}\"\n[mail]\nroot = \"/nonexistent\"\n",
                db.url
            ),
        )
        .expect("config");
        let rules = vdeliver::deliver::rules(&cfg, None).expect("rules");
        let mut rng = Rng(7);
        let mut g = c.benchmark_group(format!("lookup/{}", label(&site)));
        g.sample_size(20);
        for case in [Case::Plain, Case::Alias, Case::Catchall] {
            let targets: Vec<(Recipient, (String, String))> = (0..1000)
                .map(|_| {
                    let t = site.pick(case, &mut rng);
                    (rcpt(&t.address), t.account)
                })
                .collect();
            let mut i = 0;
            let mut next = || {
                i = (i + 1) % targets.len();
                &targets[i]
            };
            g.bench_function(BenchmarkId::new("vdeliver_cold", case.name()), |b| {
                b.iter(|| {
                    let plan = vdeliver::deliver::lookup(&cfg, &next().0, &rules);
                    assert!(plan.is_ok(), "{plan:?}");
                })
            });
            g.bench_function(BenchmarkId::new("vdeliver_warm", case.name()), |b| {
                b.iter(|| {
                    let plan = vdeliver::deliver::resolve_over(&mut client, &next().0, &rules);
                    assert!(matches!(plan, Ok(Ok(_))), "{plan:?}");
                })
            });
            if case != Case::Plain {
                continue;
            }
            let floor = |client: &mut postgres::Client, (d, l): &(String, String)| {
                let rows = client
                    .query_typed(FLOOR, &[(d, Type::TEXT), (l, Type::TEXT)])
                    .expect("floor lookup");
                assert_eq!(rows.len(), 1);
            };
            g.bench_function("floor_cold", |b| {
                b.iter(|| {
                    let mut c =
                        postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
                    floor(&mut c, &next().1);
                })
            });
            g.bench_function("floor_warm", |b| b.iter(|| floor(&mut client, &next().1)));
        }
        g.finish();
    }
}

criterion_group!(benches, lookup);
criterion_main!(benches);
