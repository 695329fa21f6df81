//! The delivery guard: "would this change break delivery?". Every entity
//! operation that can reroute mail runs its change through [`guarded`]
//! inside one transaction ([`in_tx`]): the addresses the change may affect
//! (probes: aliases and catch-alls that point at it, found by
//! [`referrers`]) are resolved before and after with the same lookup
//! vdeliver runs ([`crate::db::fetch`] + [`crate::plan`]), and the change
//! is rolled back, unless forced, when a probe that delivered before fails
//! afterwards or delivers somewhere it did not (a catch-all, a remote
//! address). Fewer destinations is not a break. With force the breakage
//! comes back as warnings. Also [`resolve_on`], the lookup itself, and
//! [`delivers`].

use super::{AdminError, Result};
use crate::outcome::{Exit, Failure};
use crate::plan::{Plan, Rules};
use crate::recipient::{fold_local, Recipient};
use postgres::Client;

/// Run `f` in a transaction on the plain client (BEGIN … COMMIT), so that
/// the resolution check ([`db::fetch`], which takes a `Client`) sees the
/// change. Rolled back on any error.
pub(super) fn in_tx<T>(client: &mut Client, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
    client.batch_execute("BEGIN")?;
    match f(client) {
        Ok(v) => {
            client.batch_execute("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            // A failed ROLLBACK leaves nothing committed either.
            let _ = client.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// Resolve `rcpt` over `client` exactly as [`crate::deliver::lookup`]
/// does over its own connection: the outer error is the database's, the
/// inner one what vdeliver would answer.
pub fn resolve_on(
    client: &mut Client,
    rcpt: &Recipient,
    rules: &Rules,
) -> Result<std::result::Result<Plan, Failure>> {
    Ok(crate::deliver::resolve_over(client, rcpt, rules)?)
}

fn recipient_of(local: &str, domain: &str) -> Recipient {
    Recipient {
        local_as_addressed: local.to_string(),
        local: fold_local(local),
        domain: domain.to_string(),
    }
}

/// A local part no one has, for probing what a domain does with unknown
/// addresses (its catch-all). No delimiter, so no extension matches.
pub(super) fn probe_local() -> String {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).ok();
    format!("vmailctlprobe{:016x}", u64::from_le_bytes(b))
}

/// An address whose delivery a change may affect, and how to name it.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    /// What the user sees: `alias team@example.com` or `catch-all of example.com`.
    pub(super) what: String,
    pub(super) local: String,
    pub(super) domain: String,
}

/// Where vdeliver would send mail for a probe: its destinations (sorted:
/// mailboxes, forwards, a discard) when it delivers, else its failure.
pub(super) type Route = std::result::Result<Vec<String>, Failure>;

/// What vdeliver would answer for each probe.
pub(super) fn outcomes(client: &mut Client, probes: &[Probe], rules: &Rules) -> Result<Vec<Route>> {
    let mut v = Vec::with_capacity(probes.len());
    for p in probes {
        let r = resolve_on(client, &recipient_of(&p.local, &p.domain), rules)?;
        v.push(r.map(|plan| {
            let mut d: Vec<String> = plan
                .mailboxes
                .iter()
                .map(|m| match &m.folder {
                    Some(f) => format!("mailbox {} ({}, folder {f})", m.owner, m.maildir),
                    None => format!("mailbox {} ({})", m.owner, m.maildir),
                })
                .chain(plan.remote.iter().map(|r| format!("forward to {r}")))
                .chain(plan.discard.iter().map(|_| "discard".to_string()))
                .collect();
            d.sort();
            d.dedup();
            d
        }));
    }
    Ok(v)
}

/// The failure of a route, unless it is a definite "disabled" (#5.2.1),
/// which is the administrator's own choice.
pub(super) fn failure(r: &Route) -> Option<&Failure> {
    r.as_ref().err().filter(|f| f.status != "5.2.1")
}

/// What would break, one line per probe that delivered before and
/// afterwards fails, or — with `moved` — delivers to a destination it did
/// not deliver to before (the mail goes somewhere else: a catch-all, a
/// remote address). Fewer destinations is what removing one means, and
/// is not a break.
pub(super) fn broken(
    probes: &[Probe],
    before: &[Route],
    after: &[Route],
    moved: bool,
) -> Vec<String> {
    probes
        .iter()
        .zip(before.iter().zip(after))
        .filter_map(|(p, (b, a))| {
            let b = b.as_ref().ok()?;
            if let Some(f) = failure(a) {
                return Some(format!("{}: vdeliver would say {}", p.what, say(f)));
            }
            let new: Vec<&str> = match a {
                Ok(a) if moved => a
                    .iter()
                    .filter(|d| !b.contains(d))
                    .map(String::as_str)
                    .collect(),
                _ => Vec::new(),
            };
            (!new.is_empty()).then(|| {
                format!(
                    "{}: its mail would go to {}, where it does not go today",
                    p.what,
                    new.join(", ")
                )
            })
        })
        .collect()
}

/// A failure as vdeliver prints it, without the newline.
pub(super) fn say(f: &Failure) -> String {
    format!("{} (#{}), exit {}", f.text, f.status, f.exit.code())
}

/// Make `change` under the resolution check: refused (rolled back) when a
/// probe that delivered before fails after, or delivers somewhere it did
/// not, unless `force`; with `force`, the breakage comes back as warnings.
pub(super) fn guarded<T>(
    client: &mut Client,
    rules: &Rules,
    probes: &[Probe],
    force: bool,
    change: impl FnOnce(&mut Client) -> Result<T>,
) -> Result<(T, Vec<String>)> {
    in_tx(client, |c| {
        let before = outcomes(c, probes, rules)?;
        let t = change(c)?;
        let after = outcomes(c, probes, rules)?;
        let bad = broken(probes, &before, &after, true);
        if !bad.is_empty() && !force {
            return Err(AdminError::Conflict(format!(
                "refused, this would break or redirect delivery ({}); --force does it anyway",
                bad.join("; ")
            )));
        }
        Ok((t, bad))
    })
}

/// Alias and catch-all rows whose destination points into `domains`
/// (at `local` only, when given), except rows of the domain `except`.
pub(super) fn referrers(
    client: &mut Client,
    domains: &[String],
    local: Option<&str>,
    except: Option<i64>,
) -> Result<Vec<Probe>> {
    let rows = client.query(
        "WITH x AS (
           SELECT 'a' AS kind, a.local_part AS loc, d.name AS dom, a.domain_id, a.destination AS dest
             FROM aliases a JOIN domains d ON d.id = a.domain_id
           UNION ALL
           SELECT 'c', NULL, d.name, c.domain_id, c.destination
             FROM catchalls c JOIN domains d ON d.id = c.domain_id)
         SELECT DISTINCT kind, loc, dom FROM x
          WHERE strpos(dest, '@') > 1
            AND translate(right(dest, strpos(reverse(dest), '@') - 1),
                          'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') = ANY($1)
            AND ($2::text IS NULL
                 OR translate(left(dest, length(dest) - strpos(reverse(dest), '@')),
                              'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') = $2)
            AND ($3::bigint IS NULL OR domain_id <> $3)
          ORDER BY 1, 3, 2",
        &[&domains, &local, &except],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind: &str = r.get(0);
            let loc: Option<String> = r.get(1);
            let dom: String = r.get(2);
            match (kind, loc) {
                ("a", Some(l)) => Probe {
                    what: format!("alias {l}@{dom}"),
                    local: l,
                    domain: dom,
                },
                _ => Probe {
                    what: format!("catch-all of {dom}"),
                    local: probe_local(),
                    domain: dom,
                },
            }
        })
        .collect())
}

/// Whether an exit code is a delivery (0 or 99).
pub fn delivers(exit: Exit) -> bool {
    matches!(exit, Exit::Delivered | Exit::DeliveredStop)
}
