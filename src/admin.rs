//! What `vmailctl` does to the database. Each function is one operation
//! with typed errors; the binary only parses arguments and prints.
//!
//! # Guarantees
//!
//! * Names are validated and normalised before they reach SQL: domains
//!   lowercased and in their ASCII (punycode) form, local parts RFC 5322
//!   atoms and dots, lowercased.
//! * A change that would make mail undeliverable is refused (exit 1)
//!   unless forced, naming what would break and what vdeliver would then
//!   say: an alias or catch-all whose destinations do not resolve (no such
//!   mailbox, a loop, a copy for itself without an account), and a delete
//!   that leaves another alias pointing at nothing. The check runs the same
//!   resolution vdeliver runs ([`crate::db::fetch`] + [`crate::plan`]),
//!   inside the transaction that makes the change, so it sees the change.
//! * The check covers every delete and every change that can reroute mail,
//!   and also refuses (unless forced) an address that delivers today
//!   delivering somewhere it does not today — an alias member's copy
//!   falling through to the catch-all, say. Fewer destinations is not a
//!   break: that is what removing one means.
//! * A new account does not silently take over a Maildir: one already on
//!   disk, or the same as, inside or around another account's, needs
//!   [`NewAccount::reuse_maildir`].
//! * Deletes never touch Maildirs; [`purge_maildir`] does, only when asked,
//!   and only beneath the mail root without following symlinks.
//! * Whatever touches the mail root goes through [`as_mail_user`]: run as
//!   root, vmailctl works there as the mail user, so what it creates
//!   belongs to that user and root's permission override is not used.
//! * Nothing here prints, reads the environment or exits.

mod asuser;
mod check;
mod dryrun;
mod explain;
mod purge;
pub mod sieve;
mod usage;
pub mod vacation;

pub use asuser::as_mail_user;
pub use check::{check, Check};
pub use dryrun::{dry_run, DryRun, Target};
pub use explain::{explain, Explained, Trip};
pub use purge::{purge_maildir, Purged};
pub use usage::{usage, Usage};

use crate::outcome::{Exit, Failure};
use crate::plan::{self, Plan, Rules};
use crate::recipient::{fold_local, normalize_domain, Recipient};
use crate::{db, schema};
use postgres::error::SqlState;
use postgres::Client;
use serde::Serialize;
use std::fmt;

/// Why an administrative operation failed.
#[derive(Debug)]
pub enum AdminError {
    /// The input is not acceptable (a bad name, a bad size): a usage error.
    Invalid(String),
    NotFound(String),
    /// Already there, or the change would break something.
    Conflict(String),
    /// Anything else that failed: the filesystem, a lookup.
    Failed(String),
    Db(postgres::Error),
}

impl AdminError {
    /// vmailctl's exit code: 2 for bad input, 1 for a failed operation.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Invalid(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Invalid(s)
            | AdminError::NotFound(s)
            | AdminError::Conflict(s)
            | AdminError::Failed(s) => f.write_str(s),
            AdminError::Db(e) => match e.as_db_error() {
                Some(db) => write!(f, "database: {}", db.message()),
                None => write!(f, "database: {e}"),
            },
        }
    }
}

impl std::error::Error for AdminError {}

impl From<postgres::Error> for AdminError {
    fn from(e: postgres::Error) -> AdminError {
        AdminError::Db(e)
    }
}

impl From<db::DbError> for AdminError {
    fn from(e: db::DbError) -> AdminError {
        AdminError::Failed(format!("database: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, AdminError>;

/// Turn a unique violation into a conflict with a readable text.
fn conflict(e: postgres::Error, what: impl FnOnce() -> String) -> AdminError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        AdminError::Conflict(what())
    } else {
        AdminError::Db(e)
    }
}

// ---------------------------------------------------------------- names

/// A domain as an administrator types it, normalised for storage.
pub fn domain_name(raw: &str) -> Result<String> {
    normalize_domain(raw.trim())
        .map_err(|w| AdminError::Invalid(format!("bad domain {raw:?}: {w}")))
}

/// The Unicode form of a stored (ASCII) domain, for display.
pub fn unicode(ascii: &str) -> String {
    let (u, r) = idna::domain_to_unicode(ascii);
    if r.is_ok() {
        u
    } else {
        ascii.to_string()
    }
}

/// A domain shown in both forms when they differ: `bücher.example
/// (xn--bcher-kva.example)`.
pub fn both_forms(ascii: &str) -> String {
    let u = unicode(ascii);
    if u == ascii {
        u
    } else {
        format!("{u} ({ascii})")
    }
}

/// Local parts vdeliver accepts for accounts: RFC 5322 atoms and dots, but
/// no `/` (they name directories), at most 64 bytes, stored lowercased.
pub fn local_part(raw: &str) -> Result<String> {
    let bad = |w: &str| AdminError::Invalid(format!("bad local part {raw:?}: {w}"));
    if raw.is_empty() {
        return Err(bad("empty"));
    }
    if raw.len() > 64 {
        return Err(bad("longer than 64 bytes"));
    }
    if raw.starts_with('.') || raw.ends_with('.') || raw.contains("..") {
        return Err(bad("leading, trailing or doubled '.'"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+=?^_`{|}~.-".contains(c);
    if let Some(c) = raw.chars().find(|c| !ok(*c)) {
        return Err(bad(&format!("character {c:?} is not allowed")));
    }
    Ok(raw.to_ascii_lowercase())
}

/// Split and normalise `local@domain`.
pub fn address(raw: &str) -> Result<(String, String)> {
    let (l, d) = raw
        .trim()
        .rsplit_once('@')
        .ok_or_else(|| AdminError::Invalid(format!("bad address {raw:?}: no '@'")))?;
    Ok((local_part(l)?, domain_name(d)?))
}

/// A Maildir path as given on the command line: relative, no `..`.
pub fn check_maildir(m: &str) -> Result<String> {
    let bad = |w: &str| AdminError::Invalid(format!("bad Maildir path {m:?}: {w}"));
    if m.is_empty() {
        return Err(bad("empty"));
    }
    if m.starts_with('/') {
        return Err(bad("must be relative to mail.root"));
    }
    if m.split('/').any(|c| c == "..") {
        return Err(bad("must not contain '..'"));
    }
    if m.split('/').all(|c| c.is_empty() || c == ".") {
        return Err(bad("must name a directory beneath mail.root"));
    }
    if m.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok(if m.ends_with('/') {
        m.to_string()
    } else {
        format!("{m}/")
    })
}

/// Check a destination as an alias or catch-all row will hold it: an
/// address once `%n`, `%d`, `%=` are filled in.
pub fn destination(raw: &str) -> Result<String> {
    let d = raw.trim();
    plan::interpolate(d, "x", "example.org")
        .and_then(|s| plan::split_address(&s).map(|_| ()))
        .map_err(|w| AdminError::Invalid(format!("bad destination {raw:?}: {w}")))?;
    // Store the domain part normalised when it is literal, so the
    // database's own follow-up of literal destinations finds it.
    if d.contains('%') {
        return Ok(d.to_string());
    }
    let (l, dom) = plan::split_address(d)
        .map_err(|w| AdminError::Invalid(format!("bad destination {raw:?}: {w}")))?;
    Ok(format!("{l}@{dom}"))
}

// ---------------------------------------------------------------- sizes

/// A byte count as typed: `0`, `unlimited`, `5000000`, `500M`, `2G`,
/// `1.5GiB`. Units are binary (K = 1024), as Dovecot's quota rules and
/// Courier's `maildirmake -q` read them. 0 means unlimited.
pub fn parse_size(raw: &str) -> Result<i64> {
    let s = raw.trim();
    let bad = || {
        AdminError::Invalid(format!(
            "bad size {raw:?}: give bytes, or a number with K, M, G or T (binary units), or 'unlimited'"
        ))
    };
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    if num.is_empty() || num.matches('.').count() > 1 || num.starts_with('.') {
        return Err(bad());
    }
    if !num.contains('.') {
        let n: i64 = num.parse().map_err(|_| bad())?;
        return n.checked_mul(mult as i64).ok_or_else(bad);
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = (v * mult).round();
    if !(0.0..9.0e18).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// A message count as typed: a whole number, or `unlimited` (0).
pub fn parse_count(raw: &str) -> Result<i64> {
    let s = raw.trim();
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
        AdminError::Invalid(format!(
            "bad message count {raw:?}: give a whole number or 'unlimited'"
        ))
    })
}

/// A byte count for people: `2 GiB`, `1.5 MiB`, `512 B`.
pub fn human_size(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if (v - v.round()).abs() < 0.05 {
        format!("{} {}", v.round() as i64, UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A limit for people: `unlimited` for NULL or 0.
pub fn human_limit(bytes: Option<i64>) -> String {
    match bytes {
        Some(n) if n > 0 => human_size(n),
        _ => "unlimited".into(),
    }
}

/// A message limit for people.
pub fn human_count(n: Option<i64>) -> String {
    match n {
        Some(n) if n > 0 => n.to_string(),
        _ => "unlimited".into(),
    }
}

// ---------------------------------------------------------------- schema

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

// ---------------------------------------------------------------- transactions and checks

/// Run `f` in a transaction on the plain client (BEGIN … COMMIT), so that
/// the resolution check ([`db::fetch`], which takes a `Client`) sees the
/// change. Rolled back on any error.
fn in_tx<T>(client: &mut Client, f: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
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
fn probe_local() -> String {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).ok();
    format!("vmailctlprobe{:016x}", u64::from_le_bytes(b))
}

/// An address whose delivery a change may affect, and how to name it.
#[derive(Debug, Clone)]
struct Probe {
    /// What the user sees: `alias team@example.com` or `catch-all of example.com`.
    what: String,
    local: String,
    domain: String,
}

/// Where vdeliver would send mail for a probe: its destinations (sorted:
/// mailboxes, forwards, a discard) when it delivers, else its failure.
type Route = std::result::Result<Vec<String>, Failure>;

/// What vdeliver would answer for each probe.
fn outcomes(client: &mut Client, probes: &[Probe], rules: &Rules) -> Result<Vec<Route>> {
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
fn failure(r: &Route) -> Option<&Failure> {
    r.as_ref().err().filter(|f| f.status != "5.2.1")
}

/// What would break, one line per probe that delivered before and
/// afterwards fails, or — with `moved` — delivers to a destination it did
/// not deliver to before (the mail goes somewhere else: a catch-all, a
/// remote address). Fewer destinations is what removing one means, and
/// is not a break.
fn broken(probes: &[Probe], before: &[Route], after: &[Route], moved: bool) -> Vec<String> {
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
fn say(f: &Failure) -> String {
    format!("{} (#{}), exit {}", f.text, f.status, f.exit.code())
}

/// Make `change` under the resolution check: refused (rolled back) when a
/// probe that delivered before fails after, or delivers somewhere it did
/// not, unless `force`; with `force`, the breakage comes back as warnings.
fn guarded<T>(
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
fn referrers(
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

/// The primary domain and its alias domains' names.
fn names_of(client: &mut Client, id: i64, name: &str) -> Result<Vec<String>> {
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
fn domain_id(client: &mut Client, name: &str) -> Result<i64> {
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

// ---------------------------------------------------------------- domains

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
    pub created_at: String,
}

const DOMAIN_SELECT: &str = "\
SELECT d.name, d.active, d.quota_bytes, d.quota_messages, d.note, d.created_at::text,
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
                return Err(AdminError::Conflict(format!(
                    "refused: {name} is {w}; --force deletes it anyway"
                )));
            }
            warnings.push(w);
        }
        if !maildirs.is_empty() && !force {
            return Err(AdminError::Conflict(format!(
                "refused: {name} has {} account(s); --force deletes them too \
                 (their Maildirs stay unless --purge)",
                maildirs.len()
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

// ---------------------------------------------------------------- alias domains

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
                return Err(AdminError::Conflict(format!(
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

// ---------------------------------------------------------------- accounts

/// A new account's settings; the default is an active account with the
/// default Maildir, no password and the domain's limits.
#[derive(Debug)]
pub struct NewAccount {
    /// Relative to `mail.root`; default `DOMAIN/LOCAL/Maildir/`.
    pub maildir: Option<String>,
    pub password_hash: Option<String>,
    /// `None`: the domain's default.
    pub quota_bytes: Option<i64>,
    pub quota_messages: Option<i64>,
    pub active: bool,
    /// The mail root, to look (as the mail user) for a Maildir already on
    /// disk at the new account's path; `None`: not looked for.
    pub mail_root: Option<std::path::PathBuf>,
    /// Accept a Maildir that is already on disk, or that is the same as,
    /// inside or around another account's (`--reuse-maildir`).
    pub reuse_maildir: bool,
}

impl Default for NewAccount {
    fn default() -> NewAccount {
        NewAccount {
            maildir: None,
            password_hash: None,
            quota_bytes: None,
            quota_messages: None,
            active: true,
            mail_root: None,
            reuse_maildir: false,
        }
    }
}

/// An account as `list` and `show` give it. The password hash is never
/// part of it, only whether there is one and its scheme.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub address: String,
    pub local_part: String,
    pub domain: String,
    /// Relative to mail.root.
    pub maildir: String,
    pub active: bool,
    pub domain_active: bool,
    /// `SHA512-CRYPT`, `ARGON2ID`, …; `None` when it cannot log in.
    pub password_scheme: Option<String>,
    /// The account's own limits (`None`: the domain's).
    pub quota_bytes: Option<i64>,
    pub quota_messages: Option<i64>,
    /// What applies: its own, else the domain's; `None` or 0 = unlimited.
    pub effective_quota_bytes: Option<i64>,
    pub effective_quota_messages: Option<i64>,
    pub created_at: String,
}

const ACCOUNT_SELECT: &str = "\
SELECT a.local_part, d.name, a.maildir, a.active, d.active, a.password_hash,
       a.quota_bytes, a.quota_messages,
       coalesce(a.quota_bytes, d.quota_bytes), coalesce(a.quota_messages, d.quota_messages),
       a.created_at::text
  FROM accounts a JOIN domains d ON d.id = a.domain_id";

fn account_row(r: &postgres::Row) -> Account {
    let local: String = r.get(0);
    let domain: String = r.get(1);
    let hash: Option<String> = r.get(5);
    Account {
        address: format!("{local}@{domain}"),
        local_part: local,
        domain,
        maildir: r.get(2),
        active: r.get(3),
        domain_active: r.get(4),
        password_scheme: hash.as_deref().map(|h| {
            crate::password::scheme_of(h)
                .unwrap_or("unknown")
                .to_string()
        }),
        quota_bytes: r.get(6),
        quota_messages: r.get(7),
        effective_quota_bytes: r.get(8),
        effective_quota_messages: r.get(9),
        created_at: r.get(10),
    }
}

/// Add an account. Refused, unless `new.reuse_maildir`, when its Maildir
/// is already on disk (left by a deleted account: the new owner would get
/// that mail) or is the same as, inside or around another account's (each
/// would see the other's mail, and quotas would count it twice).
pub fn account_add(client: &mut Client, raw: &str, new: &NewAccount) -> Result<Account> {
    let (local, domain) = address(raw)?;
    let maildir = match &new.maildir {
        Some(m) => check_maildir(m)?,
        None => format!("{domain}/{local}/Maildir/"),
    };
    let id = domain_id(client, &domain)?;
    in_tx(client, |c| {
        // The insert first: a duplicate is "already an account", whatever
        // is on disk.
        c.execute(
            "INSERT INTO accounts (domain_id, local_part, maildir, password_hash,
                                   quota_bytes, quota_messages, active)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &local,
                &maildir,
                &new.password_hash,
                &new.quota_bytes,
                &new.quota_messages,
                &new.active,
            ],
        )
        .map_err(|e| {
            conflict(e, || {
                format!("{local}@{domain} is already an account or a relocated address")
            })
        })?;
        if new.reuse_maildir {
            return Ok(());
        }
        if let Some((other, path)) = maildir_user(c, &maildir, id, &local)? {
            return Err(AdminError::Conflict(format!(
                "refused: Maildir {maildir} is the same as, inside or around {path}, the \
                 Maildir of {other}: each account would get the other's mail; \
                 --reuse-maildir adds it anyway"
            )));
        }
        if let Some(root) = &new.mail_root {
            if maildir_on_disk(root, &maildir)? {
                return Err(AdminError::Conflict(format!(
                    "refused: Maildir {maildir} already exists on disk (left by a deleted \
                     account?): {local}@{domain} would get the mail in it; remove it first \
                     (account delete --purge), or --reuse-maildir adds the account anyway"
                )));
            }
        }
        Ok(())
    })?;
    account_show(client, &format!("{local}@{domain}"))
}

/// Another account (not `local` of domain `id`) whose Maildir is
/// `maildir`, is inside it, or holds it: (address, its Maildir). Compared
/// by path components, as stored.
fn maildir_user(
    client: &mut Client,
    maildir: &str,
    id: i64,
    local: &str,
) -> Result<Option<(String, String)>> {
    let Ok(mine) = crate::maildir::path_components(maildir) else {
        return Ok(None);
    };
    for r in client.query(
        "SELECT a.local_part || '@' || d.name, a.maildir
           FROM accounts a JOIN domains d ON d.id = a.domain_id
          WHERE NOT (a.domain_id = $1 AND a.local_part = $2) ORDER BY 1",
        &[&id, &local],
    )? {
        let other: String = r.get(1);
        let Ok(oc) = crate::maildir::path_components(&other) else {
            continue;
        };
        let n = oc.len().min(mine.len());
        if oc[..n] == mine[..n] {
            return Ok(Some((r.get(0), other)));
        }
    }
    Ok(None)
}

/// Whether something is already at `rel` beneath the mail root, looked at
/// as the mail user without following symlinks. A path vdeliver could not
/// reach (through a symlink, out of the root) holds no mail it would
/// deliver, so it counts as absent; a mail root that does not exist yet
/// holds nothing.
fn maildir_on_disk(root: &std::path::Path, rel: &str) -> Result<bool> {
    use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;
    if !root.exists() {
        return Ok(false);
    }
    let Ok(comps) = crate::maildir::path_components(rel) else {
        return Ok(false);
    };
    let joined = comps.join("/");
    as_mail_user(root, |root| {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = crate::maildir::retry(|| {
            rfs::open(root, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        })
        .map_err(|e| AdminError::Failed(format!("mail.root {}: {e}", root.display())))?;
        let r = crate::maildir::retry(|| {
            rfs::openat2(
                &dir,
                joined.as_str(),
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )
        });
        match r {
            Ok(_) => Ok(true),
            // No openat2: one component at a time, never following a link.
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => {
                let mut cur = dir;
                for c in &comps {
                    match crate::maildir::retry(|| rfs::openat(&cur, *c, flags, Mode::empty())) {
                        Ok(fd)
                            if rfs::fstat(&fd).is_ok_and(|st| {
                                rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::Symlink
                            }) =>
                        {
                            cur = fd
                        }
                        _ => return Ok(false),
                    }
                }
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    })
}

/// One account.
pub fn account_show(client: &mut Client, raw: &str) -> Result<Account> {
    let (local, domain) = address(raw)?;
    domain_id(client, &domain)?;
    client
        .query_opt(
            &format!("{ACCOUNT_SELECT} WHERE d.name = $1 AND a.local_part = $2"),
            &[&domain, &local],
        )?
        .map(|r| account_row(&r))
        .ok_or_else(|| AdminError::NotFound(format!("no account {local}@{domain}")))
}

/// Accounts, of one domain or all.
pub fn account_list(client: &mut Client, raw_domain: Option<&str>) -> Result<Vec<Account>> {
    let filter = raw_domain.map(domain_name).transpose()?;
    if let Some(d) = &filter {
        domain_id(client, d)?;
    }
    Ok(client
        .query(
            &format!(
                "{ACCOUNT_SELECT} WHERE $1::text IS NULL OR d.name = $1 ORDER BY d.name, a.local_part"
            ),
            &[&filter],
        )?
        .iter()
        .map(account_row)
        .collect())
}

/// Run an UPDATE on one account; not found when it matched nothing.
fn account_update(
    client: &mut Client,
    raw: &str,
    set: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<String> {
    let (local, domain) = address(raw)?;
    domain_id(client, &domain)?;
    let mut all: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&domain, &local];
    all.extend_from_slice(params);
    let n = client.execute(
        &format!(
            "UPDATE accounts a SET {set} FROM domains d
              WHERE a.domain_id = d.id AND d.name = $1 AND a.local_part = $2"
        ),
        &all,
    )?;
    if n == 0 {
        return Err(AdminError::NotFound(format!("no account {local}@{domain}")));
    }
    Ok(format!("{local}@{domain}"))
}

/// Enable or disable an account. Disabling is refused, unless `force`,
/// when an alias or catch-all pointing at the account delivers today (a
/// disabled member makes it defer). Returns the address and what `force`
/// let break.
pub fn account_set_active(
    client: &mut Client,
    rules: &Rules,
    raw: &str,
    active: bool,
    force: bool,
) -> Result<(String, Vec<String>)> {
    let (local, domain) = address(raw)?;
    let id = domain_id(client, &domain)?;
    let probes = if active {
        Vec::new()
    } else {
        let names = names_of(client, id, &domain)?;
        referrers(client, &names, Some(&local), None)?
    };
    guarded(client, rules, &probes, force, |c| {
        account_update(c, raw, "active = $3", &[&active])
    })
}

/// Store a new password hash (see [`crate::password::hash`]).
pub fn account_password(client: &mut Client, raw: &str, hash: &str) -> Result<String> {
    account_update(client, raw, "password_hash = $3", &[&hash])
}

/// Set an account's own limits (`None` leaves one as it is), or with
/// `inherit` drop both so the domain's defaults apply.
pub fn account_quota(
    client: &mut Client,
    raw: &str,
    bytes: Option<i64>,
    messages: Option<i64>,
    inherit: bool,
) -> Result<Account> {
    let addr = if inherit {
        account_update(
            client,
            raw,
            "quota_bytes = NULL, quota_messages = NULL",
            &[],
        )?
    } else {
        account_update(
            client,
            raw,
            "quota_bytes = coalesce($3, a.quota_bytes), quota_messages = coalesce($4, a.quota_messages)",
            &[&bytes, &messages],
        )?
    };
    account_show(client, &addr)
}

/// Delete an account (its Maildir stays; see [`purge_maildir`]). Refused,
/// unless `force`, when an alias or catch-all that delivers today would
/// stop delivering.
pub fn account_delete(
    client: &mut Client,
    rules: &Rules,
    raw: &str,
    force: bool,
) -> Result<Deleted> {
    let (local, domain) = address(raw)?;
    let id = domain_id(client, &domain)?;
    let names = names_of(client, id, &domain)?;
    let probes = referrers(client, &names, Some(&local), None)?;
    let addr = format!("{local}@{domain}");
    let (maildir, warnings) = guarded(client, rules, &probes, force, |c| {
        let row = c.query_opt(
            "DELETE FROM accounts WHERE domain_id = $1 AND local_part = $2 RETURNING maildir",
            &[&id, &local],
        )?;
        row.map(|r| r.get::<_, String>(0))
            .ok_or_else(|| AdminError::NotFound(format!("no account {addr}")))
    })?;
    Ok(Deleted {
        name: addr,
        maildirs: vec![maildir],
        warnings,
    })
}

// ---------------------------------------------------------------- aliases and catch-alls

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

fn destinations(raw: &[String]) -> Result<Vec<String>> {
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
            bad.push(format!("{}: vdeliver would say {}", probes[0].what, say(f)));
        }
        // What points at the alias gets the new destinations too: that is
        // the point of adding them, so only a failure counts.
        bad.extend(broken(&probes[1..], &before, &now[1..], false));
        if !bad.is_empty() && !force {
            return Err(AdminError::Conflict(format!(
                "refused, this would break delivery ({}); --force adds it anyway",
                bad.join("; ")
            )));
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
fn delete_destinations(
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

/// Aliases, of one domain or all, one entry per address.
pub fn alias_list(client: &mut Client, raw_domain: Option<&str>) -> Result<Vec<Alias>> {
    let filter = raw_domain.map(domain_name).transpose()?;
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

// ---------------------------------------------------------------- relocated

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

/// `vmailctl quota`: an account's usage against its limits.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaReport {
    pub address: String,
    pub maildir: String,
    #[serde(flatten)]
    pub usage: Usage,
}

/// The quota usage of an account, from its `maildirsize` (recounted and
/// rewritten with `recalc`).
pub fn quota(
    client: &mut Client,
    cfg: &crate::config::Config,
    raw: &str,
    recalc: bool,
) -> Result<QuotaReport> {
    let a = account_show(client, raw)?;
    let u = usage(
        cfg,
        &a.maildir,
        a.effective_quota_bytes,
        a.effective_quota_messages,
        recalc,
    )?;
    Ok(QuotaReport {
        address: a.address,
        maildir: a.maildir,
        usage: u,
    })
}

/// Whether an exit code is a delivery (0 or 99).
pub fn delivers(exit: Exit) -> bool {
    matches!(exit, Exit::Delivered | Exit::DeliveredStop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            address("Alice@Example.COM").unwrap(),
            ("alice".into(), "example.com".into())
        );
        for bad in [
            "alice",
            "@x.org",
            "a/b@x.org",
            "a..b@x.org",
            ".a@x.org",
            "a@",
            "a@x_y.org",
            "a b@x.org",
        ] {
            let e = address(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        assert_eq!(check_maildir("x/y").unwrap(), "x/y/");
        assert!(check_maildir("../y").is_err());
        assert!(check_maildir("/y").is_err());
        assert!(check_maildir("./").is_err());
        assert!(destination("%n@%d").is_ok());
        assert_eq!(destination("a@B.Org").unwrap(), "a@b.org");
        assert!(destination("nope").is_err());
        assert!(destination("%q@x.org").is_err());
    }

    #[test]
    fn idn_forms() {
        assert_eq!(
            domain_name("Bücher.Example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(unicode("xn--bcher-kva.example"), "bücher.example");
        assert_eq!(
            both_forms("xn--bcher-kva.example"),
            "bücher.example (xn--bcher-kva.example)"
        );
        assert_eq!(both_forms("example.com"), "example.com");
    }

    #[test]
    fn sizes() {
        let cases = [
            ("0", 0),
            ("unlimited", 0),
            ("123", 123),
            ("1k", 1024),
            ("2G", 2 << 30),
            ("2 GiB", 2 << 30),
            ("500M", 500 << 20),
            ("1.5K", 1536),
            ("1T", 1 << 40),
        ];
        for (s, want) in cases {
            assert_eq!(parse_size(s).unwrap(), want, "{s}");
        }
        for bad in ["", "-1", "1X", "G", ".5G", "1.2.3", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_count("50000").unwrap(), 50000);
        assert_eq!(parse_count("unlimited").unwrap(), 0);
        assert!(parse_count("-3").is_err());
        assert!(parse_count("1.5").is_err());
        assert_eq!(human_size(2 << 30), "2 GiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_limit(Some(0)), "unlimited");
        assert_eq!(human_limit(None), "unlimited");
    }
}
