//! What `vmailctl` does to the database. Each function is one operation
//! with typed errors; the binary only parses arguments and prints.

use crate::recipient::normalize_domain;
use crate::schema;
use postgres::error::SqlState;
use postgres::Client;
use std::fmt;

/// Why an administrative operation failed.
#[derive(Debug)]
pub enum AdminError {
    /// The input is not acceptable (a bad name): a usage error.
    Invalid(String),
    NotFound(String),
    Conflict(String),
    Db(postgres::Error),
}

impl AdminError {
    /// vmailctl's exit code: 2 for bad input, 1 for a failed operation.
    pub fn exit_code(&self) -> i32 {
        match self {
            AdminError::Invalid(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Invalid(s) | AdminError::NotFound(s) | AdminError::Conflict(s) => {
                f.write_str(s)
            }
            AdminError::Db(e) => match e.as_db_error() {
                Some(db) => write!(f, "database: {}", db.message()),
                None => write!(f, "database: {e}"),
            },
        }
    }
}

impl std::error::Error for AdminError {}

impl From<postgres::Error> for AdminError {
    fn from(e: postgres::Error) -> AdminError {
        AdminError::Db(e)
    }
}

type Result<T> = std::result::Result<T, AdminError>;

/// Turn a unique violation into a conflict with a readable text.
fn conflict(e: postgres::Error, what: impl FnOnce() -> String) -> AdminError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        AdminError::Conflict(what())
    } else {
        AdminError::Db(e)
    }
}

/// A domain as an administrator types it, normalised for storage.
pub fn domain_name(raw: &str) -> Result<String> {
    normalize_domain(raw.trim())
        .map_err(|w| AdminError::Invalid(format!("bad domain {raw:?}: {w}")))
}

/// Local parts vdeliver accepts for accounts: RFC 5322 atoms and dots, but
/// no `/` (they name directories), at most 64 bytes, stored lowercased.
pub fn local_part(raw: &str) -> Result<String> {
    let bad = |w: &str| AdminError::Invalid(format!("bad local part {raw:?}: {w}"));
    if raw.is_empty() {
        return Err(bad("empty"));
    }
    if raw.len() > 64 {
        return Err(bad("longer than 64 bytes"));
    }
    if raw.starts_with('.') || raw.ends_with('.') || raw.contains("..") {
        return Err(bad("leading, trailing or doubled '.'"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+=?^_`{|}~.-".contains(c);
    if let Some(c) = raw.chars().find(|c| !ok(*c)) {
        return Err(bad(&format!("character {c:?} is not allowed")));
    }
    Ok(raw.to_ascii_lowercase())
}

/// Split and normalise `local@domain`.
pub fn address(raw: &str) -> Result<(String, String)> {
    let (l, d) = raw
        .rsplit_once('@')
        .ok_or_else(|| AdminError::Invalid(format!("bad address {raw:?}: no '@'")))?;
    Ok((local_part(l)?, domain_name(d)?))
}

/// Apply every migration not yet applied, in one transaction, under an
/// advisory lock. Returns (version before, version after).
pub fn migrate(client: &mut Client) -> Result<(i32, i32)> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS vdeliver_schema (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let before: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM vdeliver_schema", &[])?
        .get(0);
    if before > schema::current_version() {
        return Err(AdminError::Conflict(format!(
            "the database is at schema version {before}, newer than this vmailctl knows ({})",
            schema::current_version()
        )));
    }
    for (version, name, sql) in schema::MIGRATIONS.iter().filter(|m| m.0 > before) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO vdeliver_schema (version, name) VALUES ($1, $2)",
            &[version, name],
        )?;
    }
    tx.commit()?;
    Ok((before, schema::current_version()))
}

/// The schema version recorded in the database (0 when never migrated).
pub fn schema_version(client: &mut Client) -> Result<i32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('vdeliver_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT coalesce(max(version), 0) FROM vdeliver_schema", &[])?
        .get(0))
}

/// Add a primary domain. Returns its stored name.
pub fn domain_add(client: &mut Client, raw: &str) -> Result<String> {
    let name = domain_name(raw)?;
    client
        .execute("INSERT INTO domains (name) VALUES ($1)", &[&name])
        .map_err(|e| conflict(e, || format!("domain {name} already exists")))?;
    Ok(name)
}

/// A new account's settings.
#[derive(Debug, Default)]
pub struct NewAccount {
    /// Relative to `mail.root`; default `DOMAIN/LOCAL/Maildir/`.
    pub maildir: Option<String>,
    pub password_hash: Option<String>,
}

/// Add an account. Returns (`local@domain`, Maildir path).
pub fn account_add(client: &mut Client, raw: &str, new: &NewAccount) -> Result<(String, String)> {
    let (local, domain) = address(raw)?;
    let maildir = match &new.maildir {
        Some(m) => check_maildir(m)?,
        None => format!("{domain}/{local}/Maildir/"),
    };
    let n = client
        .execute(
            "INSERT INTO accounts (domain_id, local_part, maildir, password_hash)
             SELECT id, $2, $3, $4 FROM domains WHERE name = $1",
            &[&domain, &local, &maildir, &new.password_hash],
        )
        .map_err(|e| conflict(e, || format!("{local}@{domain} already exists")))?;
    if n == 0 {
        return Err(AdminError::NotFound(format!("no domain {domain}")));
    }
    Ok((format!("{local}@{domain}"), maildir))
}

/// A Maildir path as given on the command line: relative, no `..`.
pub fn check_maildir(m: &str) -> Result<String> {
    let bad = |w: &str| AdminError::Invalid(format!("bad Maildir path {m:?}: {w}"));
    if m.is_empty() {
        return Err(bad("empty"));
    }
    if m.starts_with('/') {
        return Err(bad("must be relative to mail.root"));
    }
    if m.split('/').any(|c| c == "..") {
        return Err(bad("must not contain '..'"));
    }
    if m.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok(if m.ends_with('/') {
        m.to_string()
    } else {
        format!("{m}/")
    })
}

/// Enable or disable an account.
pub fn account_set_active(client: &mut Client, raw: &str, active: bool) -> Result<String> {
    let (local, domain) = address(raw)?;
    let n = client.execute(
        "UPDATE accounts a SET active = $3 FROM domains d
          WHERE a.domain_id = d.id AND d.name = $1 AND a.local_part = $2",
        &[&domain, &local, &active],
    )?;
    if n == 0 {
        return Err(AdminError::NotFound(format!("no account {local}@{domain}")));
    }
    Ok(format!("{local}@{domain}"))
}

/// Check a destination as an alias or catch-all row will hold it: an
/// address once `%n`, `%d`, `%=` are filled in.
pub fn destination(raw: &str) -> Result<String> {
    let d = raw.trim();
    let probe = crate::plan::interpolate(d, "x", "example.org")
        .and_then(|s| crate::plan::split_address(&s).map(|_| ()))
        .map_err(|w| AdminError::Invalid(format!("bad destination {raw:?}: {w}")));
    probe.map(|()| d.to_string())
}

/// The id of a primary domain.
fn domain_id(client: &mut Client, name: &str) -> Result<i64> {
    client
        .query_opt("SELECT id FROM domains WHERE name = $1", &[&name])?
        .map(|r| r.get(0))
        .ok_or_else(|| AdminError::NotFound(format!("no domain {name}")))
}

/// Add destinations to an alias (creating it). Returns the address.
pub fn alias_add(client: &mut Client, raw: &str, dests: &[String]) -> Result<String> {
    let (local, domain) = address(raw)?;
    let dests: Vec<String> = dests
        .iter()
        .map(|d| destination(d))
        .collect::<Result<_>>()?;
    let mut tx = client.transaction()?;
    let id = domain_id_tx(&mut tx, &domain)?;
    for d in &dests {
        tx.execute(
            "INSERT INTO aliases (domain_id, local_part, destination) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&id, &local, d],
        )?;
    }
    tx.commit()?;
    Ok(format!("{local}@{domain}"))
}

fn domain_id_tx(tx: &mut postgres::Transaction<'_>, name: &str) -> Result<i64> {
    tx.query_opt("SELECT id FROM domains WHERE name = $1", &[&name])?
        .map(|r| r.get(0))
        .ok_or_else(|| AdminError::NotFound(format!("no domain {name}")))
}

/// Add catch-all destinations to a domain.
pub fn catchall_add(client: &mut Client, raw_domain: &str, dests: &[String]) -> Result<String> {
    let domain = domain_name(raw_domain)?;
    let dests: Vec<String> = dests
        .iter()
        .map(|d| destination(d))
        .collect::<Result<_>>()?;
    let id = domain_id(client, &domain)?;
    for d in &dests {
        client.execute(
            "INSERT INTO catchalls (domain_id, destination) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&id, d],
        )?;
    }
    Ok(domain)
}

/// Record that an address has moved.
pub fn relocated_add(client: &mut Client, raw: &str, new_address: &str) -> Result<String> {
    let (local, domain) = address(raw)?;
    crate::plan::split_address(new_address.trim())
        .map_err(|w| AdminError::Invalid(format!("bad new address {new_address:?}: {w}")))?;
    let id = domain_id(client, &domain)?;
    client
        .execute(
            "INSERT INTO relocated (domain_id, local_part, new_address) VALUES ($1, $2, $3)",
            &[&id, &local, &new_address.trim()],
        )
        .map_err(|e| {
            conflict(e, || {
                format!("{local}@{domain} is an account or already relocated")
            })
        })?;
    Ok(format!("{local}@{domain}"))
}

/// Make `alias` an alias domain of `domain`.
pub fn alias_domain_add(client: &mut Client, raw_alias: &str, raw_domain: &str) -> Result<String> {
    let alias = domain_name(raw_alias)?;
    let domain = domain_name(raw_domain)?;
    let id = domain_id(client, &domain)?;
    client
        .execute(
            "INSERT INTO alias_domains (name, domain_id) VALUES ($1, $2)",
            &[&alias, &id],
        )
        .map_err(|e| {
            conflict(e, || {
                format!("{alias} is already a domain or an alias domain")
            })
        })?;
    Ok(alias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            address("Alice@Example.COM").unwrap(),
            ("alice".into(), "example.com".into())
        );
        for bad in [
            "alice",
            "@x.org",
            "a/b@x.org",
            "a..b@x.org",
            ".a@x.org",
            "a@",
            "a@x_y.org",
            "a b@x.org",
        ] {
            let e = address(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        assert_eq!(check_maildir("x/y").unwrap(), "x/y/");
        assert!(check_maildir("../y").is_err());
        assert!(check_maildir("/y").is_err());
        assert!(destination("%n@%d").is_ok());
        assert!(destination("a@b.org").is_ok());
        assert!(destination("nope").is_err());
        assert!(destination("%q@x.org").is_err());
    }
}
