//! Catch-alls (where a domain's unknown addresses go): add destinations,
//! delete some or all, show one domain's, list. Stored and checked like alias destinations
//! ([`super::alias`]); a catch-all that would not deliver, or a delete that
//! stops or reroutes mail delivered through it today, is refused unless
//! forced (see [`super::guard`]).

use super::alias::{delete_destinations, destinations, Alias, Changed};
use super::domain::{domain_id, names_of};
use super::guard::{
    failure, guarded, in_tx, missing, outcomes, probe_local, referrers, refuse_add, Probe,
};
use super::names::{domain_name, list_filter};
use super::{AdminError, Result};
use crate::plan::Rules;
use postgres::Client;

/// Add catch-all destinations to a domain. Refused, unless `force`, when
/// the catch-all would not deliver.
pub fn catchall_add(
    client: &mut Client,
    rules: &Rules,
    raw_domain: &str,
    dests: &[String],
    force: bool,
) -> Result<Changed> {
    let domain = domain_name(raw_domain)?;
    let dests = destinations(dests)?;
    let id = domain_id(client, &domain)?;
    let probe = Probe {
        what: format!("catch-all of {domain}"),
        local: probe_local(),
        domain: domain.clone(),
    };
    let (added, warnings) = in_tx(client, |c| {
        let mut added = Vec::new();
        for d in &dests {
            let n = c.execute(
                "INSERT INTO catchalls (domain_id, destination) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, d],
            )?;
            if n == 1 {
                added.push(d.clone());
            }
        }
        if added.is_empty() {
            return Err(AdminError::Conflict(format!(
                "the catch-all of {domain} already has {}",
                dests.join(", ")
            )));
        }
        let now = outcomes(c, std::slice::from_ref(&probe), rules)?;
        let bad: Vec<String> = now
            .iter()
            .filter_map(failure)
            .map(|f| probe.said(f))
            .collect();
        if !bad.is_empty() && !force {
            return Err(refuse_add(&missing(c, rules, &added)?, &bad));
        }
        Ok((added, bad))
    })?;
    Ok(Changed {
        name: domain,
        destinations: added,
        warnings,
    })
}

/// Remove some catch-all destinations of a domain, or all. Refused,
/// unless `force`, when an alias or catch-all that delivers today through
/// this catch-all (a destination in the domain that is no account) would
/// stop delivering or deliver elsewhere.
pub fn catchall_delete(
    client: &mut Client,
    rules: &Rules,
    raw_domain: &str,
    dests: &[String],
    force: bool,
) -> Result<Changed> {
    let domain = domain_name(raw_domain)?;
    let dests = destinations(dests)?;
    let id = domain_id(client, &domain)?;
    let names = names_of(client, id, &domain)?;
    let own = format!("catch-all of {domain}");
    let mut probes = referrers(client, &names, None, None)?;
    // The catch-all itself is what goes; removing some destinations must
    // leave it delivering (to fewer places).
    probes.retain(|p| p.what != own);
    if !dests.is_empty() {
        probes.push(Probe {
            what: own,
            local: probe_local(),
            domain: domain.clone(),
        });
    }
    let (removed, warnings) = guarded(client, rules, &probes, force, |c| {
        let what = format!("the catch-all of {domain}");
        delete_destinations(
            c,
            id,
            None,
            &dests,
            &what,
            &format!("{domain} has no catch-all"),
        )
    })?;
    Ok(Changed {
        name: domain,
        destinations: removed,
        warnings,
    })
}

/// The catch-all of one domain: its destinations (`address` is the
/// domain). A domain without one is "not found".
pub fn catchall_show(client: &mut Client, raw_domain: &str) -> Result<Alias> {
    let domain = domain_name(raw_domain)?;
    let id = domain_id(client, &domain)?;
    let dests: Vec<String> = client
        .query(
            "SELECT destination FROM catchalls WHERE domain_id = $1 ORDER BY id",
            &[&id],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if dests.is_empty() {
        return Err(AdminError::NotFound(format!("{domain} has no catch-all")));
    }
    Ok(Alias {
        address: domain,
        destinations: dests,
    })
}

/// Catch-alls, of one domain or all.
pub fn catchall_list(client: &mut Client, raw_domain: Option<&str>) -> Result<Vec<Alias>> {
    let filter = list_filter(raw_domain, "catchall")?;
    if let Some(d) = &filter {
        domain_id(client, d)?;
    }
    Ok(client
        .query(
            "SELECT d.name, array_agg(c.destination ORDER BY c.id)
               FROM catchalls c JOIN domains d ON d.id = c.domain_id
              WHERE $1::text IS NULL OR d.name = $1
              GROUP BY d.name ORDER BY d.name",
            &[&filter],
        )?
        .iter()
        .map(|r| Alias {
            address: r.get(0),
            destinations: r.get(1),
        })
        .collect())
}
