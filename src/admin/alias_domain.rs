//! Alias domains: add, delete, move to another primary domain, list. A
//! delete or move that would stop or reroute mail of an alias or catch-all
//! pointing into the alias domain is refused unless forced (see
//! [`super::guard`]).

use super::domain::{domain_id, Deleted};
use super::guard::{guarded, in_tx, referrers};
use super::names::{domain_name, unicode};
use super::{conflict, AdminError, Result};
use crate::plan::Rules;
use postgres::Client;
use serde::Serialize;

/// An alias domain.
#[derive(Debug, Clone, Serialize)]
pub struct AliasDomain {
    pub name: String,
    pub unicode: String,
    /// The primary domain.
    pub domain: String,
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

/// Remove an alias domain. Refused while aliases elsewhere point into it,
/// unless `force`.
pub fn alias_domain_delete(client: &mut Client, raw: &str, force: bool) -> Result<Deleted> {
    let alias = domain_name(raw)?;
    in_tx(client, |c| {
        let row = c.query_opt(
            "SELECT 1 FROM alias_domains WHERE name = $1 FOR UPDATE",
            &[&alias],
        )?;
        if row.is_none() {
            return Err(AdminError::NotFound(format!("no alias domain {alias}")));
        }
        let refs = referrers(c, std::slice::from_ref(&alias), None, None)?;
        let mut warnings = Vec::new();
        // References from the primary domain itself count too: after the
        // delete, `x@alias` is just a remote address.
        if !refs.is_empty() {
            let what: Vec<&str> = refs.iter().map(|p| p.what.as_str()).collect();
            let w = format!("still referenced by {}", what.join(", "));
            if !force {
                return Err(AdminError::WouldBreak(format!(
                    "refused: {alias} is {w}; --force deletes it anyway"
                )));
            }
            warnings.push(w);
        }
        c.execute("DELETE FROM alias_domains WHERE name = $1", &[&alias])?;
        Ok(Deleted {
            name: alias.clone(),
            maildirs: Vec::new(),
            warnings,
        })
    })
}

/// Point an alias domain at another primary domain. Refused, unless
/// `force`, when an alias or catch-all pointing into it delivers today and
/// would then fail or deliver elsewhere (another domain's mailboxes).
pub fn alias_domain_move(
    client: &mut Client,
    rules: &Rules,
    raw_alias: &str,
    raw_domain: &str,
    force: bool,
) -> Result<(AliasDomain, Vec<String>)> {
    let alias = domain_name(raw_alias)?;
    let domain = domain_name(raw_domain)?;
    let id = domain_id(client, &domain)?;
    let probes = referrers(client, std::slice::from_ref(&alias), None, None)?;
    let ((), warnings) = guarded(client, rules, &probes, force, |c| {
        let n = c.execute(
            "UPDATE alias_domains SET domain_id = $2 WHERE name = $1",
            &[&alias, &id],
        )?;
        if n == 0 {
            return Err(AdminError::NotFound(format!("no alias domain {alias}")));
        }
        Ok(())
    })?;
    Ok((
        AliasDomain {
            unicode: unicode(&alias),
            name: alias,
            domain,
        },
        warnings,
    ))
}

/// Alias domains, of one primary domain or all.
pub fn alias_domain_list(
    client: &mut Client,
    raw_domain: Option<&str>,
) -> Result<Vec<AliasDomain>> {
    let filter = raw_domain.map(domain_name).transpose()?;
    if let Some(d) = &filter {
        domain_id(client, d)?;
    }
    Ok(client
        .query(
            "SELECT a.name, d.name FROM alias_domains a JOIN domains d ON d.id = a.domain_id
              WHERE $1::text IS NULL OR d.name = $1 ORDER BY a.name",
            &[&filter],
        )?
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            AliasDomain {
                unicode: unicode(&name),
                name,
                domain: r.get(1),
            }
        })
        .collect())
}
