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
//!
//! A catch-all is probed with a made-up local part ([`probe_local`]); that
//! name never reaches a message: [`Probe::said`] shows it as `*`
//! (`alias loop: *@example.com -> …`, "any address of example.com"). When
//! a new alias or catch-all destination in one of our domains does not
//! exist (no account, alias or relocated address of that name, nor of a
//! shorter name it is an extension of), the refusal says so
//! ([`missing`]) instead of the loop or bounce that follows from it.

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

/// What every probe's local part starts with.
const PROBE_PREFIX: &str = "vmailctlprobe";

/// A local part no one has, for probing what a domain does with unknown
/// addresses (its catch-all). No delimiter, so no extension matches.
pub(super) fn probe_local() -> String {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).ok();
    format!("{PROBE_PREFIX}{:016x}", u64::from_le_bytes(b))
}

/// An address whose delivery a change may affect, and how to name it.
#[derive(Debug, Clone)]
pub(super) struct Probe {
    /// What the user sees: `alias team@example.com` or `catch-all of example.com`.
    pub(super) what: String,
    pub(super) local: String,
    pub(super) domain: String,
}

impl Probe {
    /// `what: vdeliver would say …`, the probe's made-up local part (a
    /// catch-all's) shown as `*`.
    pub(super) fn said(&self, f: &Failure) -> String {
        let mut text = say(f);
        if self.local.starts_with(PROBE_PREFIX) {
            text = text.replace(&self.local, "*");
        }
        format!("{}: vdeliver would say {text}", self.what)
    }
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
                return Some(p.said(f));
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
fn say(f: &Failure) -> String {
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
            return Err(AdminError::WouldBreak(format!(
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

/// The destinations among `dests` that are addresses of one of our
/// domains (a domain or an alias domain) where nothing exists: no account,
/// alias or relocated address of that local part, nor of a shorter one cut
/// at a delimiter (of which it would be an extension). Mail to them falls
/// to the catch-all or bounces. Destinations with `%` templates are not
/// checked (they depend on the address mail comes for).
pub(super) fn missing(client: &mut Client, rules: &Rules, dests: &[String]) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for d in dests {
        if d.contains('%') {
            continue;
        }
        let Some((local, domain)) = d.rsplit_once('@') else {
            continue;
        };
        let domain = domain.to_ascii_lowercase();
        let cands: Vec<String> = crate::plan::candidates(local, &rules.delimiters)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let row = client.query_one(
            "WITH dom AS (
               SELECT id FROM domains WHERE name = $1
               UNION ALL SELECT domain_id FROM alias_domains WHERE name = $1)
             SELECT EXISTS (SELECT 1 FROM dom),
                    EXISTS (SELECT 1 FROM dom WHERE
                               EXISTS (SELECT 1 FROM accounts a
                                        WHERE a.domain_id = dom.id AND a.local_part = ANY($2))
                            OR EXISTS (SELECT 1 FROM aliases a
                                        WHERE a.domain_id = dom.id AND a.local_part = ANY($2))
                            OR EXISTS (SELECT 1 FROM relocated r
                                        WHERE r.domain_id = dom.id AND r.local_part = ANY($2)))",
            &[&domain, &cands],
        )?;
        let (ours, exists): (bool, bool) = (row.get(0), row.get(1));
        if ours && !exists {
            v.push(d.clone());
        }
    }
    Ok(v)
}

/// The refusal of an alias or catch-all whose new destinations do not all
/// resolve: naming the destinations that do not exist when there are
/// any, else what vdeliver would say (`bad`).
pub(super) fn refuse_add(missing: &[String], bad: &[String]) -> AdminError {
    let why = match missing {
        [] => bad.join("; "),
        [one] => format!("{one} does not exist (no account, alias or relocated address)"),
        many => format!(
            "{} do not exist (no account, alias or relocated address)",
            many.join(", ")
        ),
    };
    AdminError::WouldBreak(format!(
        "refused, this would break delivery: {why}; --force adds it anyway"
    ))
}
