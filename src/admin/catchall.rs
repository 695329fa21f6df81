//! Catch-alls (where a domain's unknown addresses go): add destinations,
//! delete some or all, list. Stored and checked like alias destinations
//! ([`super::alias`]); a catch-all that would not deliver, or a delete that
//! stops or reroutes mail delivered through it today, is refused unless
//! forced (see [`super::guard`]).

use super::alias::{delete_destinations, destinations, Alias, Changed};
use super::domain::{domain_id, names_of};
use super::guard::{failure, guarded, in_tx, outcomes, probe_local, referrers, say, Probe};
use super::names::domain_name;
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
            .map(|f| format!("{}: vdeliver would say {}", probe.what, say(f)))
            .collect();
        if !bad.is_empty() && !force {
            return Err(AdminError::Conflict(format!(
                "refused, this would break delivery ({}); --force adds it anyway",
                bad.join("; ")
            )));
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

/// Catch-alls, of one domain or all.
pub fn catchall_list(client: &mut Client, raw_domain: Option<&str>) -> Result<Vec<Alias>> {
    let filter = raw_domain.map(domain_name).transpose()?;
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
