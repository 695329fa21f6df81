//! Relocated addresses (mail to them bounces #5.1.6 naming the new
//! address): add, delete, show, list. An account's address cannot be
//! relocated, nor an alias's (the alias would still decide where mail
//! goes), and the refusal says which it is; a change that stops or
//! reroutes mail of an alias or catch-all pointing at the address is
//! refused unless forced (see [`super::guard`]).

use super::domain::{domain_id, names_of, not_there};
use super::guard::{guarded, referrers};
use super::names::{address, list_filter};
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
    let addr = format!("{local}@{domain}");
    let ((), warnings) = guarded(client, rules, &probes, force, |c| {
        let r = c.query_one(
            "SELECT (SELECT new_address FROM relocated WHERE domain_id = $1 AND local_part = $2),
                    EXISTS (SELECT 1 FROM accounts WHERE domain_id = $1 AND local_part = $2),
                    ARRAY(SELECT destination FROM aliases
                           WHERE domain_id = $1 AND local_part = $2 ORDER BY id)",
            &[&id, &local],
        )?;
        let (old, account, aliases): (Option<String>, bool, Vec<String>) =
            (r.get(0), r.get(1), r.get(2));
        if let Some(old) = old {
            return Err(AdminError::Conflict(format!(
                "{addr} is already relocated, to {old}; `vmailctl relocated delete {addr}` first \
                 to record another address"
            )));
        }
        if account {
            return Err(AdminError::Conflict(format!(
                "{addr} is an account; delete the account first to relocate it"
            )));
        }
        if !aliases.is_empty() {
            return Err(AdminError::Conflict(format!(
                "{addr} is an alias (-> {}); its mail follows the alias, so relocating it \
                 would change nothing: delete the alias first",
                aliases.join(", ")
            )));
        }
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

/// One relocated address.
pub fn relocated_show(client: &mut Client, raw: &str) -> Result<Relocated> {
    let (local, domain) = address(raw)?;
    let id = domain_id(client, &domain)?;
    let r = client.query_opt(
        "SELECT new_address FROM relocated WHERE domain_id = $1 AND local_part = $2",
        &[&id, &local],
    )?;
    match r {
        Some(r) => Ok(Relocated {
            address: format!("{local}@{domain}"),
            new_address: r.get(0),
            warnings: Vec::new(),
        }),
        None => Err(not_there(client, id, &local, &domain, "relocated address")?),
    }
}

/// Relocated addresses, of one domain or all.
pub fn relocated_list(client: &mut Client, raw_domain: Option<&str>) -> Result<Vec<Relocated>> {
    let filter = list_filter(raw_domain, "relocated")?;
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
