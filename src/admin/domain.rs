//! Primary domains: add, set (quotas, active, note), list, show, list
//! every address ([`domain_addresses`]) and delete (with their alias domains, aliases, catch-alls and relocated
//! rows; accounts or aliases of other domains pointing in need force).
//! Also the lookups every other entity starts from: [`domain_id`] (a
//! primary domain's id, or a "not found" naming the primary when given an
//! alias domain) and [`names_of`] (a domain with its alias domains).

use super::guard::{guarded, in_tx, referrers};
use super::names::{domain_name, unicode};
use super::{conflict, AdminError, Result};
use crate::plan::Rules;
use postgres::Client;
use serde::Serialize;

/// Settings of a domain; `None` leaves a value as it is (or at its default
/// for a new domain). Quotas: 0 = unlimited.
#[derive(Debug, Clone, Default)]
pub struct DomainSettings {
    pub quota_bytes: Option<i64>,
    pub quota_messages: Option<i64>,
    pub active: Option<bool>,
    pub note: Option<String>,
}

/// A domain as `list` and `show` give it.
#[derive(Debug, Clone, Serialize)]
pub struct Domain {
    /// Stored (ASCII) form.
    pub name: String,
    pub unicode: String,
    pub active: bool,
    /// Defaults for the domain's accounts; `None` or 0 = unlimited.
    pub quota_bytes: Option<i64>,
    pub quota_messages: Option<i64>,
    pub note: String,
    pub accounts: i64,
    /// Addresses with alias rows.
    pub aliases: i64,
    pub relocated: i64,
    pub alias_domains: Vec<String>,
    pub catchalls: Vec<String>,
    /// RFC 3339, UTC, to the second: `2026-12-01T20:51:03Z`.
    pub created_at: String,
}

const DOMAIN_SELECT: &str = "\
SELECT d.name, d.active, d.quota_bytes, d.quota_messages, d.note,
       to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
       (SELECT count(*) FROM accounts a WHERE a.domain_id = d.id),
       (SELECT count(DISTINCT local_part) FROM aliases x WHERE x.domain_id = d.id),
       (SELECT count(*) FROM relocated r WHERE r.domain_id = d.id),
       ARRAY(SELECT name FROM alias_domains ad WHERE ad.domain_id = d.id ORDER BY name),
       ARRAY(SELECT destination FROM catchalls c WHERE c.domain_id = d.id ORDER BY destination)
  FROM domains d";

fn domain_row(r: &postgres::Row) -> Domain {
    let name: String = r.get(0);
    Domain {
        unicode: unicode(&name),
        name,
        active: r.get(1),
        quota_bytes: r.get(2),
        quota_messages: r.get(3),
        note: r.get(4),
        created_at: r.get(5),
        accounts: r.get(6),
        aliases: r.get(7),
        relocated: r.get(8),
        alias_domains: r.get(9),
        catchalls: r.get(10),
    }
}

fn check_note(note: &Option<String>) -> Result<()> {
    match note {
        Some(n) if n.chars().any(char::is_control) => Err(AdminError::Invalid(
            "bad note: it contains a control character".into(),
        )),
        Some(n) if n.len() > 1000 => Err(AdminError::Invalid(
            "bad note: longer than 1000 bytes".into(),
        )),
        _ => Ok(()),
    }
}

/// Add a primary domain with default settings. Returns its stored name.
pub fn domain_add(client: &mut Client, raw: &str) -> Result<String> {
    domain_add_with(client, raw, &DomainSettings::default()).map(|d| d.name)
}

/// Add a primary domain.
pub fn domain_add_with(client: &mut Client, raw: &str, s: &DomainSettings) -> Result<Domain> {
    let name = domain_name(raw)?;
    check_note(&s.note)?;
    client
        .execute(
            "INSERT INTO domains (name, quota_bytes, quota_messages, active, note)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &name,
                &s.quota_bytes,
                &s.quota_messages,
                &s.active.unwrap_or(true),
                &s.note.clone().unwrap_or_default(),
            ],
        )
        .map_err(|e| {
            conflict(e, || {
                format!("{name} is already a domain or an alias domain")
            })
        })?;
    domain_show(client, &name)
}

/// Change a domain's settings. Disabling it is refused, unless `force`,
/// when an alias or catch-all of another domain pointing into it delivers
/// today (it would then defer). Returns the domain and what `force` let
/// break.
pub fn domain_set(
    client: &mut Client,
    rules: &Rules,
    raw: &str,
    s: &DomainSettings,
    force: bool,
) -> Result<(Domain, Vec<String>)> {
    let name = domain_name(raw)?;
    check_note(&s.note)?;
    let id = domain_id(client, &name)?;
    let probes = if s.active == Some(false) {
        let names = names_of(client, id, &name)?;
        referrers(client, &names, None, Some(id))?
    } else {
        Vec::new()
    };
    let ((), warnings) = guarded(client, rules, &probes, force, |c| {
        c.execute(
            "UPDATE domains SET quota_bytes = coalesce($2, quota_bytes),
                                quota_messages = coalesce($3, quota_messages),
                                active = coalesce($4, active),
                                note = coalesce($5, note)
              WHERE id = $1",
            &[&id, &s.quota_bytes, &s.quota_messages, &s.active, &s.note],
        )?;
        Ok(())
    })?;
    Ok((domain_show(client, &name)?, warnings))
}

/// All primary domains, by name.
pub fn domain_list(client: &mut Client) -> Result<Vec<Domain>> {
    Ok(client
        .query(&format!("{DOMAIN_SELECT} ORDER BY d.name"), &[])?
        .iter()
        .map(domain_row)
        .collect())
}

/// One domain.
pub fn domain_show(client: &mut Client, raw: &str) -> Result<Domain> {
    let name = domain_name(raw)?;
    let id = domain_id(client, &name)?;
    let r = client.query_one(&format!("{DOMAIN_SELECT} WHERE d.id = $1"), &[&id])?;
    Ok(domain_row(&r))
}

/// What a delete removed, for the report and for `--purge`.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub name: String,
    /// Maildirs (relative to mail.root) of the accounts deleted: left on
    /// disk unless purged.
    pub maildirs: Vec<String>,
    /// What `--force` let break.
    pub warnings: Vec<String>,
}

/// Delete a domain with its alias domains, aliases, catch-alls and
/// relocated rows. A domain with accounts needs `force`, and so does one
/// that other domains' aliases still point into.
pub fn domain_delete(client: &mut Client, raw: &str, force: bool) -> Result<Deleted> {
    let name = domain_name(raw)?;
    in_tx(client, |c| {
        let id = domain_id(c, &name)?;
        c.execute("SELECT 1 FROM domains WHERE id = $1 FOR UPDATE", &[&id])?;
        let names = names_of(c, id, &name)?;
        let refs = referrers(c, &names, None, Some(id))?;
        let maildirs: Vec<String> = c
            .query(
                "SELECT maildir FROM accounts WHERE domain_id = $1 ORDER BY local_part",
                &[&id],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut warnings = Vec::new();
        if !refs.is_empty() {
            let what: Vec<&str> = refs.iter().map(|p| p.what.as_str()).collect();
            let w = format!("still referenced by {}", what.join(", "));
            if !force {
                return Err(AdminError::WouldBreak(format!(
                    "refused: {name} is {w}; --force deletes it anyway"
                )));
            }
            warnings.push(w);
        }
        if !maildirs.is_empty() && !force {
            return Err(AdminError::WouldBreak(format!(
                "refused: {name} has {}; --force deletes {} too \
                 (their Maildirs stay unless --purge)",
                super::sizes::count_of(maildirs.len() as u64, "account", "accounts"),
                if maildirs.len() == 1 { "it" } else { "them" }
            )));
        }
        c.execute("DELETE FROM accounts WHERE domain_id = $1", &[&id])?;
        c.execute("DELETE FROM domains WHERE id = $1", &[&id])?;
        Ok(Deleted {
            name: name.clone(),
            maildirs,
            warnings,
        })
    })
}

/// One entry of [`domain_addresses`].
#[derive(Debug, Clone, Serialize)]
pub struct DomainAddress {
    /// `local@domain`; `@domain` for the catch-all; the alias domain's
    /// name for an alias domain.
    pub address: String,
    /// `alias_domain`, `catchall`, `account`, `alias` or `relocated`.
    pub kind: &'static str,
    /// Where mail goes: an alias's or catch-all's destinations, the new
    /// address of a relocated one, the primary domain of an alias domain;
    /// empty for an account.
    pub destinations: Vec<String>,
}

/// Every address a domain has, with its kind: the alias domains (sharing
/// its addresses), the catch-all, then its accounts, aliases and relocated
/// addresses, sorted by local part. An address that is both an alias and
/// an account (the alias keeps a copy in the mailbox) is listed under both
/// kinds, account first.
pub fn domain_addresses(client: &mut Client, raw: &str) -> Result<Vec<DomainAddress>> {
    let name = domain_name(raw)?;
    let id = domain_id(client, &name)?;
    let mut v: Vec<DomainAddress> = client
        .query(
            "SELECT name FROM alias_domains WHERE domain_id = $1 ORDER BY name",
            &[&id],
        )?
        .iter()
        .map(|r| DomainAddress {
            address: r.get(0),
            kind: "alias_domain",
            destinations: vec![name.clone()],
        })
        .collect();
    let catchall: Vec<String> = client
        .query(
            "SELECT destination FROM catchalls WHERE domain_id = $1 ORDER BY id",
            &[&id],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !catchall.is_empty() {
        v.push(DomainAddress {
            address: format!("@{name}"),
            kind: "catchall",
            destinations: catchall,
        });
    }
    let rows = client.query(
        "SELECT loc, kind, dests FROM (
           SELECT local_part AS loc, 0 AS kind, ARRAY[]::text[] AS dests
             FROM accounts WHERE domain_id = $1
           UNION ALL
           SELECT local_part, 1, array_agg(destination ORDER BY id) FROM aliases
            WHERE domain_id = $1 GROUP BY local_part
           UNION ALL
           SELECT local_part, 2, ARRAY[new_address] FROM relocated WHERE domain_id = $1) x
          ORDER BY loc COLLATE \"C\", kind",
        &[&id],
    )?;
    v.extend(rows.iter().map(|r| {
        let local: String = r.get(0);
        DomainAddress {
            address: format!("{local}@{name}"),
            kind: match r.get::<_, i32>(1) {
                0 => "account",
                1 => "alias",
                _ => "relocated",
            },
            destinations: r.get(2),
        }
    }));
    Ok(v)
}

/// The "not found" of a show command looking for a `what` (`alias`,
/// `relocated address`) at `local@domain`, saying what the address is
/// instead, when it is something.
pub(super) fn not_there(
    client: &mut Client,
    id: i64,
    local: &str,
    domain: &str,
    what: &str,
) -> Result<AdminError> {
    let r = client.query_one(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE domain_id = $1 AND local_part = $2),
                EXISTS (SELECT 1 FROM aliases WHERE domain_id = $1 AND local_part = $2),
                EXISTS (SELECT 1 FROM relocated WHERE domain_id = $1 AND local_part = $2)",
        &[&id, &local],
    )?;
    let is: Vec<&str> = [(0, "an account"), (1, "an alias"), (2, "relocated")]
        .into_iter()
        .filter(|(i, _)| r.get::<_, bool>(*i))
        .map(|(_, k)| k)
        .collect();
    let addr = format!("{local}@{domain}");
    Ok(AdminError::NotFound(if is.is_empty() {
        format!("no {what} {addr} (it is no address of {domain} at all)")
    } else {
        format!("no {what} {addr} (it is {})", is.join(" and "))
    }))
}

/// The primary domain and its alias domains' names.
pub(super) fn names_of(client: &mut Client, id: i64, name: &str) -> Result<Vec<String>> {
    let mut v = vec![name.to_string()];
    for r in client.query(
        "SELECT name FROM alias_domains WHERE domain_id = $1 ORDER BY name",
        &[&id],
    )? {
        v.push(r.get(0));
    }
    Ok(v)
}

/// The id of a primary domain, or a clear "not found" (naming the primary
/// when `name` is an alias domain).
pub(super) fn domain_id(client: &mut Client, name: &str) -> Result<i64> {
    if let Some(r) = client.query_opt("SELECT id FROM domains WHERE name = $1", &[&name])? {
        return Ok(r.get(0));
    }
    let primary = client.query_opt(
        "SELECT d.name FROM alias_domains a JOIN domains d ON d.id = a.domain_id WHERE a.name = $1",
        &[&name],
    )?;
    Err(AdminError::NotFound(match primary {
        Some(r) => format!(
            "{name} is an alias domain of {}; use {} instead",
            r.get::<_, String>(0),
            r.get::<_, String>(0)
        ),
        None => format!("no domain {name}"),
    }))
}
