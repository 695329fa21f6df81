//! PostgreSQL: connecting, and the one lookup a delivery makes.
//!
//! Delivery writes nothing to the database and keeps no session state: the
//! lookup is one unnamed statement sent as Parse/Bind/Execute/Sync in a
//! single round trip (`query_typed`), so it works through PgBouncer in
//! transaction pooling mode and against a read-only hot standby.
//!
//! Every error here — cannot connect, authentication, a missing table, a
//! timeout, a row of an unexpected shape — is a [`DbError`], which the
//! outcome layer always turns into a deferral. "No such row" is not an
//! error; it is an [`Answer`] without an account.

use crate::config;
use crate::plan::{AccountAnswer, Answer, DomainAnswer};
use postgres::types::Type;
use postgres::{Client, NoTls};
use std::fmt;

/// A database failure. Its text never contains the connection string.
#[derive(Debug)]
pub enum DbError {
    /// `database.url` does not parse (its text is not repeated).
    BadUrl,
    Postgres {
        what: &'static str,
        source: postgres::Error,
    },
}

impl DbError {
    fn new(what: &'static str) -> impl FnOnce(postgres::Error) -> DbError {
        move |source| DbError::Postgres { what, source }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            DbError::Postgres { source, .. } => source.code().map(|c| c.code()),
            DbError::BadUrl => None,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::BadUrl => f.write_str("database.url does not parse"),
            DbError::Postgres { what, source } => match source.as_db_error() {
                Some(db) => write!(
                    f,
                    "{what}: {} (SQLSTATE {})",
                    db.message(),
                    db.code().code()
                ),
                None => write!(f, "{what}: {source}"),
            },
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Postgres { source, .. } => Some(source),
            DbError::BadUrl => None,
        }
    }
}

/// The client configuration: the URL plus timeouts and our name.
pub fn client_config(
    cfg: &config::Database,
    application: &str,
) -> Result<postgres::Config, DbError> {
    let mut c: postgres::Config = cfg.url.parse().map_err(|_| DbError::BadUrl)?;
    c.connect_timeout(cfg.connect_timeout);
    if c.get_application_name().is_none() {
        c.application_name(application);
    }
    let ms = cfg.statement_timeout.as_millis();
    if ms > 0 {
        let opt = format!("-c statement_timeout={ms}");
        let all = match c.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {opt}"),
            _ => opt,
        };
        c.options(&all);
    }
    Ok(c)
}

/// Connect (plain TCP or a Unix socket; TLS is left to a local socket or a
/// local PgBouncer).
pub fn connect(cfg: &config::Database, application: &str) -> Result<Client, DbError> {
    client_config(cfg, application)?
        .connect(NoTls)
        .map_err(DbError::new("connect"))
}

/// Domain (directly or through an alias domain) and account in one query.
/// No row: the domain is unknown. A row with NULL account columns: the
/// domain exists, the account does not.
const LOOKUP: &str = "\
SELECT d.name, d.active, a.maildir, a.active
FROM (SELECT id, name, active FROM domains WHERE name = $1
      UNION ALL
      SELECT pd.id, pd.name, pd.active
        FROM alias_domains ad JOIN domains pd ON pd.id = ad.domain_id
       WHERE ad.name = $1
      LIMIT 1) d
LEFT JOIN accounts a ON a.domain_id = d.id AND a.local_part = $2";

/// Look up `local@domain` (both already normalised).
pub fn lookup(client: &mut Client, domain: &str, local: &str) -> Result<Answer, DbError> {
    let rows = client
        .query_typed(LOOKUP, &[(&domain, Type::TEXT), (&local, Type::TEXT)])
        .map_err(DbError::new("lookup"))?;
    let Some(row) = rows.first() else {
        return Ok(Answer::default());
    };
    let get = |r: &postgres::Row| -> Result<Answer, postgres::Error> {
        let maildir: Option<String> = r.try_get(2)?;
        let account_active: Option<bool> = r.try_get(3)?;
        Ok(Answer {
            domain: Some(DomainAnswer {
                name: r.try_get(0)?,
                active: r.try_get(1)?,
            }),
            account: match (maildir, account_active) {
                (Some(maildir), Some(active)) => Some(AccountAnswer { maildir, active }),
                _ => None,
            },
        })
    };
    get(row).map_err(DbError::new("lookup"))
}
