//! Aliases: add destinations (creating the alias), delete some or all of
//! them, show one, list. An alias that would not deliver afterwards, or a change that
//! breaks another alias pointing at it, is refused unless forced (see
//! [`super::guard`]). Also the destination handling catch-alls share
//! ([`Alias`], [`Changed`], [`delete_destinations`]).

use super::domain::{domain_id, names_of, not_there};
use super::guard::{
    broken, failure, guarded, in_tx, missing, outcomes, referrers, refuse_add, Probe,
};
use super::names::{address, destination, list_filter};
use super::{AdminError, Result};
use crate::plan::Rules;
use crate::recipient::fold_local;
use postgres::Client;
use serde::Serialize;

/// An address with its destinations.
#[derive(Debug, Clone, Serialize)]
pub struct Alias {
    pub address: String,
    pub destinations: Vec<String>,
}

/// What a change of aliases or catch-alls did.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    /// The address (or domain, for a catch-all).
    pub name: String,
    /// The destinations added or removed.
    pub destinations: Vec<String>,
    pub warnings: Vec<String>,
}

pub(super) fn destinations(raw: &[String]) -> Result<Vec<String>> {
    let mut v: Vec<String> = Vec::with_capacity(raw.len());
    for d in raw {
        let d = destination(d)?;
        // Exact duplicates only: a remote local part's case may matter.
        if !v.contains(&d) {
            v.push(d);
        }
    }
    Ok(v)
}

/// Add destinations to an alias (creating it). Refused, unless `force`,
/// when the alias would not deliver afterwards (a destination that does
/// not exist, a loop, a copy for itself without an account), or when it
/// breaks an alias pointing at it.
pub fn alias_add(
    client: &mut Client,
    rules: &Rules,
    raw: &str,
    dests: &[String],
    force: bool,
) -> Result<Changed> {
    let (local, domain) = address(raw)?;
    let dests = destinations(dests)?;
    let id = domain_id(client, &domain)?;
    let names = names_of(client, id, &domain)?;
    let mut probes = vec![Probe {
        what: format!("alias {local}@{domain}"),
        local: local.clone(),
        domain: domain.clone(),
    }];
    probes.extend(referrers(client, &names, Some(&local), None)?);
    let (added, warnings) = in_tx(client, |c| {
        let before = outcomes(c, &probes[1..], rules)?;
        let mut added = Vec::new();
        for d in &dests {
            let n = c.execute(
                "INSERT INTO aliases (domain_id, local_part, destination) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&id, &local, d],
            )?;
            if n == 1 {
                added.push(d.clone());
            }
        }
        if added.is_empty() {
            return Err(AdminError::Conflict(format!(
                "{local}@{domain} already has {}",
                dests.join(", ")
            )));
        }
        // The alias itself must deliver afterwards, whatever it did
        // before, and nothing pointing at it may stop delivering.
        let now = outcomes(c, &probes, rules)?;
        let mut bad = Vec::new();
        if let Some(f) = failure(&now[0]) {
            bad.push(probes[0].said(f));
        }
        // What points at the alias gets the new destinations too: that is
        // the point of adding them, so only a failure counts.
        bad.extend(broken(&probes[1..], &before, &now[1..], false));
        if !bad.is_empty() && !force {
            return Err(refuse_add(&missing(c, rules, &added)?, &bad));
        }
        Ok((added, bad))
    })?;
    Ok(Changed {
        name: format!("{local}@{domain}"),
        destinations: added,
        warnings,
    })
}

/// Remove some destinations of an alias, or all of them (`dests` empty).
/// Refused, unless `force`, when something that delivers today would stop.
pub fn alias_delete(
    client: &mut Client,
    rules: &Rules,
    raw: &str,
    dests: &[String],
    force: bool,
) -> Result<Changed> {
    let (local, domain) = address(raw)?;
    let dests = destinations(dests)?;
    let id = domain_id(client, &domain)?;
    let names = names_of(client, id, &domain)?;
    let mut probes = referrers(client, &names, Some(&local), None)?;
    if !dests.is_empty() {
        // Removing some destinations must leave the alias delivering.
        probes.push(Probe {
            what: format!("alias {local}@{domain}"),
            local: local.clone(),
            domain: domain.clone(),
        });
    }
    let addr = format!("{local}@{domain}");
    let (removed, warnings) = guarded(client, rules, &probes, force, |c| {
        let what = format!("alias {addr}");
        delete_destinations(c, id, Some(&local), &dests, &what, &format!("no {what}"))
    })?;
    Ok(Changed {
        name: addr,
        destinations: removed,
        warnings,
    })
}

/// Delete destinations of an alias (`local` given) or of a domain's
/// catch-all (`local` None), in one statement: those in `dests`, compared
/// without regard to ASCII case, or all of them when `dests` is empty. Every
/// destination asked for must exist; `what` names the alias or catch-all
/// in that error, `none` says that there was nothing to delete. Returns the
/// destinations removed, as stored.
pub(super) fn delete_destinations(
    c: &mut Client,
    domain_id: i64,
    local: Option<&str>,
    dests: &[String],
    what: &str,
    none: &str,
) -> Result<Vec<String>> {
    let wanted: Vec<String> = dests.iter().map(|d| fold_local(d)).collect();
    let rows = match local {
        Some(local) => c.query(
            "DELETE FROM aliases WHERE domain_id = $1 AND local_part = $2
                AND (cardinality($3::text[]) = 0 OR translate(destination,
                     'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') = ANY($3))
             RETURNING destination",
            &[&domain_id, &local, &wanted],
        )?,
        None => c.query(
            "DELETE FROM catchalls WHERE domain_id = $1
                AND (cardinality($2::text[]) = 0 OR translate(destination,
                     'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') = ANY($2))
             RETURNING destination",
            &[&domain_id, &wanted],
        )?,
    };
    let removed: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let gone: Vec<String> = removed.iter().map(|r| fold_local(r)).collect();
    if let Some(missing) = dests.iter().find(|d| !gone.contains(&fold_local(d))) {
        return Err(AdminError::NotFound(format!(
            "{what} has no destination {missing}"
        )));
    }
    if removed.is_empty() {
        return Err(AdminError::NotFound(none.to_string()));
    }
    Ok(removed)
}

/// One alias with its destinations.
pub fn alias_show(client: &mut Client, raw: &str) -> Result<Alias> {
    let (local, domain) = address(raw)?;
    let id = domain_id(client, &domain)?;
    let dests: Vec<String> = client
        .query(
            "SELECT destination FROM aliases WHERE domain_id = $1 AND local_part = $2 ORDER BY id",
            &[&id, &local],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if dests.is_empty() {
        return Err(not_there(client, id, &local, &domain, "alias")?);
    }
    Ok(Alias {
        address: format!("{local}@{domain}"),
        destinations: dests,
    })
}

/// Aliases, of one domain or all, one entry per address.
pub fn alias_list(client: &mut Client, raw_domain: Option<&str>) -> Result<Vec<Alias>> {
    let filter = list_filter(raw_domain, "alias")?;
    if let Some(d) = &filter {
        domain_id(client, d)?;
    }
    Ok(client
        .query(
            "SELECT a.local_part || '@' || d.name, array_agg(a.destination ORDER BY a.id)
               FROM aliases a JOIN domains d ON d.id = a.domain_id
              WHERE $1::text IS NULL OR d.name = $1
              GROUP BY d.name, a.local_part ORDER BY d.name, a.local_part",
            &[&filter],
        )?
        .iter()
        .map(|r| Alias {
            address: r.get(0),
            destinations: r.get(1),
        })
        .collect())
}
