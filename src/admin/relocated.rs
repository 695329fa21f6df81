//! Relocated addresses (mail to them bounces #5.1.6 naming the new
//! address): add, delete, list. An account's address cannot be relocated;
//! a change that stops or reroutes mail of an alias or catch-all pointing
//! at the address is refused unless forced (see [`super::guard`]).

use super::domain::{domain_id, names_of};
use super::guard::{guarded, referrers};
use super::names::{address, domain_name};
use super::{conflict, AdminError, Result};
use crate::plan::{self, Rules};
use postgres::Client;
use serde::Serialize;

/// A relocated address.
#[derive(Debug, Clone, Serialize)]
pub struct Relocated {
    pub address: String,
    pub new_address: String,
    /// What `--force` let break.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Record that an address has moved. The address must not be an account
/// (mail to it now bounces naming the new address, #5.1.6). Refused,
/// unless `force`, when an alias or catch-all pointing at it delivers
/// today (it would then defer).
pub fn relocated_add(
    client: &mut Client,
    rules: &Rules,
    raw: &str,
    new_address: &str,
    force: bool,
) -> Result<Relocated> {
    let (local, domain) = address(raw)?;
    let new = new_address.trim();
    let (nl, nd) = plan::split_address(new)
        .map_err(|w| AdminError::Invalid(format!("bad new address {new_address:?}: {w}")))?;
    let new = format!("{nl}@{nd}");
    if new.eq_ignore_ascii_case(&format!("{local}@{domain}")) {
        return Err(AdminError::Invalid(format!(
            "{local}@{domain} cannot move to itself"
        )));
    }
    let id = domain_id(client, &domain)?;
    let names = names_of(client, id, &domain)?;
    let probes = referrers(client, &names, Some(&local), None)?;
    let ((), warnings) = guarded(client, rules, &probes, force, |c| {
        c.execute(
            "INSERT INTO relocated (domain_id, local_part, new_address) VALUES ($1, $2, $3)",
            &[&id, &local, &new],
        )
        .map_err(|e| {
            conflict(e, || {
                format!("{local}@{domain} is an account or already relocated")
            })
        })?;
        Ok(())
    })?;
    Ok(Relocated {
        address: format!("{local}@{domain}"),
        new_address: new,
        warnings,
    })
}

/// Forget that an address has moved. Guarded like every other change
/// (nothing that delivers today may stop or go elsewhere, unless `force`).
pub fn relocated_delete(
    client: &mut Client,
    rules: &Rules,
    raw: &str,
    force: bool,
) -> Result<Relocated> {
    let (local, domain) = address(raw)?;
    let id = domain_id(client, &domain)?;
    let names = names_of(client, id, &domain)?;
    let probes = referrers(client, &names, Some(&local), None)?;
    let (new_address, warnings) = guarded(client, rules, &probes, force, |c| {
        let row = c.query_opt(
            "DELETE FROM relocated WHERE domain_id = $1 AND local_part = $2 RETURNING new_address",
            &[&id, &local],
        )?;
        row.map(|r| r.get::<_, String>(0))
            .ok_or_else(|| AdminError::NotFound(format!("no relocated address {local}@{domain}")))
    })?;
    Ok(Relocated {
        address: format!("{local}@{domain}"),
        new_address,
        warnings,
    })
}

/// Relocated addresses, of one domain or all.
pub fn relocated_list(client: &mut Client, raw_domain: Option<&str>) -> Result<Vec<Relocated>> {
    let filter = raw_domain.map(domain_name).transpose()?;
    if let Some(d) = &filter {
        domain_id(client, d)?;
    }
    Ok(client
        .query(
            "SELECT r.local_part || '@' || d.name, r.new_address
               FROM relocated r JOIN domains d ON d.id = r.domain_id
              WHERE $1::text IS NULL OR d.name = $1 ORDER BY d.name, r.local_part",
            &[&filter],
        )?
        .iter()
        .map(|r| Relocated {
            address: r.get(0),
            new_address: r.get(1),
            warnings: Vec::new(),
        })
        .collect())
}
