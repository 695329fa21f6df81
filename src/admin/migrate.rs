//! The schema as vmailctl manages it: `migrate` applies the pending
//! migrations under an advisory lock, `resync` and `drift` repair and count
//! the lookup's trigger-kept copies, `schema_version` reads the version
//! recorded in the database.

use super::{AdminError, Result};
use crate::schema;
use postgres::Client;

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

/// Rewrite the lookup's trigger-kept copies that disagree with the tables
/// they copy (triggers that did not run during a load); returns how many
/// rows were wrong. Changes nothing when they agree.
pub fn resync(client: &mut Client) -> Result<i64> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::LOCK_KEY])?;
    let n: i64 = tx.query_one("SELECT vdeliver_resync()", &[])?.get(0);
    tx.commit()?;
    Ok(n)
}

/// How many rows of the lookup's trigger-kept copies disagree with the
/// tables they copy.
pub fn drift(client: &mut Client) -> Result<i64> {
    Ok(client.query_one("SELECT vdeliver_drift()", &[])?.get(0))
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
