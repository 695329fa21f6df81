//! `vmailctl explain`: the server's plan of every statement vdeliver sends
//! for an address, so a site can see its lookup use the indexes.
//!
//! It runs delivery's own resolution loop ([`crate::deliver::resolve_with`])
//! and, before each round trip, `EXPLAIN (ANALYZE, BUFFERS)` of the very
//! statement ([`crate::db::FETCH`]) with the very parameters vdeliver would
//! send. For a plain account that statement reads `domains` and `accounts`
//! itself; otherwise it calls the function `vdeliver_route` (and it, when
//! it must, `vdeliver_lookup`), whose own statements are where the tables
//! are read; their plans are shown through
//! the server's `auto_explain` module (nested statements, with ANALYZE and
//! BUFFERS, sent back as notices) when this connection may load it — a
//! superuser may, or anyone when the site has put it in `$libdir/plugins`.
//! Otherwise the report says so, and shows the outer plan only.
//!
//! Nothing is written; the session settings die with the connection.

use crate::config::Config;
use crate::db::{self, DbError};
use crate::deliver;
use crate::recipient::{self, Overrides, QmailEnv};
use postgres::types::Type;
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// One round trip: the pairs asked and the plans.
#[derive(Debug, Clone, Serialize)]
pub struct Trip {
    /// `local@domain` of each (domain, local part) pair sent.
    pub pairs: Vec<String>,
    /// `EXPLAIN (ANALYZE, BUFFERS)` of the statement sent, line by line.
    pub plan: Vec<String>,
    /// The plans of the statements the function ran (auto_explain).
    pub inner: Vec<String>,
}

/// What `vmailctl explain` found.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub recipient: String,
    pub statement: String,
    pub trips: Vec<Trip>,
    /// Why the inner plans are missing, when they are.
    pub note: Option<String>,
}

/// Explain the lookup of `address` (`local@domain`).
pub fn explain(cfg: &Config, address: &str) -> Result<Explained, String> {
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| format!("bad address {address:?}: no '@'"))?;
    let over = Overrides {
        local: Some(local),
        domain: Some(domain),
        sender: Some(""),
    };
    let rcpt = recipient::recipient(&QmailEnv::default(), &over)
        .map_err(|e| format!("bad address {address:?}: {e}"))?;
    let rules = deliver::rules(cfg, None).map_err(|f| f.text)?;
    let notices: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut pc = db::client_config(&cfg.database, "vmailctl").map_err(|e| e.to_string())?;
    let sink = Arc::clone(&notices);
    pc.notice_callback(move |n| {
        if let Ok(mut v) = sink.lock() {
            v.push(n.message().to_string());
        }
    });
    let mut client = pc
        .connect(postgres::NoTls)
        .map_err(|e| format!("cannot reach the database: {e}"))?;
    let note = match client.batch_execute(
        "LOAD 'auto_explain';
         SET auto_explain.log_min_duration = 0;
         SET auto_explain.log_analyze = on;
         SET auto_explain.log_buffers = on;
         SET auto_explain.log_nested_statements = on;
         SET auto_explain.log_level = notice;",
    ) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "the plans of the statements inside vdeliver_route and vdeliver_lookup need the server's \
             auto_explain module, which this connection cannot load ({}): run this \
             as a superuser, or put auto_explain in $libdir/plugins",
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().to_string())
        )),
    };
    let mut trips = Vec::new();
    let explain_sql = format!("EXPLAIN (ANALYZE, BUFFERS) {}", db::FETCH);
    let r = deliver::resolve_with(&mut client, &rcpt, &rules, |c, pairs| {
        let doms: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        let locs: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
        if let Ok(mut v) = notices.lock() {
            v.clear();
        }
        let rows = c
            .query_typed(
                &explain_sql,
                &[(&doms, Type::TEXT_ARRAY), (&locs, Type::TEXT_ARRAY)],
            )
            .map_err(|source| DbError::Postgres {
                what: "explain",
                source,
            })?;
        let mut plan = Vec::new();
        for r in &rows {
            plan.push(
                r.try_get::<_, String>(0)
                    .map_err(|source| DbError::Postgres {
                        what: "explain: reading the plan",
                        source,
                    })?,
            );
        }
        // The notices: the plans of the function's statements, and one of
        // the EXPLAIN itself (the plan above, left out).
        let inner = notices
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !n.contains("Query Text: EXPLAIN"))
            .collect();
        trips.push(Trip {
            pairs: pairs.iter().map(|(d, l)| format!("{l}@{d}")).collect(),
            plan,
            inner,
        });
        Ok(())
    });
    if let Err(e) = r {
        return Err(format!("database: {e}"));
    }
    Ok(Explained {
        recipient: rcpt.delivered_to(),
        statement: db::FETCH.to_string(),
        trips,
        note,
    })
}
