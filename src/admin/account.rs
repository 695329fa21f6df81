//! Accounts: add (refusing, unless told to reuse it, a Maildir already on
//! disk or overlapping another account's), show, list, enable/disable,
//! password, own quota limits, Junk routing, real name and note, the
//! services it may log in to, rename (see [`super::rename`]), delete (the
//! Maildir stays) and `vmailctl quota` (usage against the account's
//! limits). Changes that would stop an alias or catch-all pointing at the
//! account from delivering are refused unless forced (see
//! [`super::guard`]).
//!
//! The real name and the note are free text for the postmaster, one line
//! each (no control characters), at most 200 and 1000 characters; empty
//! when not given. The service flags (`imap`, `pop3`, `smtp`, `sieve`, all
//! on by default) are read by nothing but the Dovecot passdb query of the
//! guide: an account with every service off still receives mail, and
//! delivery never reads them.

use super::domain::{domain_id, names_of, Deleted};
use super::guard::{guarded, in_tx, referrers};
use super::names::{address, check_maildir};
use super::{as_mail_user, conflict, usage, AdminError, Result, Usage};
use crate::plan::Rules;
use postgres::Client;
use serde::Serialize;

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
    /// The holder's name and a note ('' = none).
    pub real_name: String,
    pub note: String,
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
            real_name: String::new(),
            note: String::new(),
        }
    }
}

/// What an account may log in to, through Dovecot (columns `imap`,
/// `pop3`, `smtp`, `sieve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Services {
    pub imap: bool,
    pub pop3: bool,
    /// SMTP AUTH (Dovecot's services `smtp` and `submission`).
    pub smtp: bool,
    /// ManageSieve.
    pub sieve: bool,
}

/// One of the services of [`Services`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Imap,
    Pop3,
    Smtp,
    Sieve,
}

impl Service {
    pub const ALL: [Service; 4] = [Service::Imap, Service::Pop3, Service::Smtp, Service::Sieve];

    /// Its column in `accounts`, and its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Imap => "imap",
            Service::Pop3 => "pop3",
            Service::Smtp => "smtp",
            Service::Sieve => "sieve",
        }
    }

    pub fn of(self, s: &Services) -> bool {
        match self {
            Service::Imap => s.imap,
            Service::Pop3 => s.pop3,
            Service::Smtp => s.smtp,
            Service::Sieve => s.sieve,
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
    /// Its own Junk routing setting (`accounts.junk`): on, off, or `None`
    /// to follow the site's default (`junk.enabled`, which the database
    /// does not know).
    pub junk: Option<bool>,
    /// The holder's name and the postmaster's note ('' = none).
    pub real_name: String,
    pub note: String,
    pub services: Services,
}

const ACCOUNT_SELECT: &str = "\
SELECT a.local_part, d.name, a.maildir, a.active, d.active, a.password_hash,
       a.quota_bytes, a.quota_messages,
       coalesce(a.quota_bytes, d.quota_bytes), coalesce(a.quota_messages, d.quota_messages),
       to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), a.junk,
       a.real_name, a.note, a.imap, a.pop3, a.smtp, a.sieve
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
        junk: r.get(11),
        real_name: r.get(12),
        note: r.get(13),
        services: Services {
            imap: r.get(14),
            pop3: r.get(15),
            smtp: r.get(16),
            sieve: r.get(17),
        },
    }
}

/// A real name or note as given: one line of text, `max` characters at
/// most; surrounding blanks dropped.
pub fn check_text(what: &str, raw: &str, max: usize) -> Result<String> {
    let t = raw.trim();
    if t.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!(
            "the {what} contains a control character (one line of text)"
        )));
    }
    if t.chars().count() > max {
        return Err(AdminError::Invalid(format!(
            "the {what} is longer than {max} characters"
        )));
    }
    Ok(t.to_string())
}

/// The longest real name and note.
pub const NAME_MAX: usize = 200;
pub const NOTE_MAX: usize = 1000;

/// Add an account. Refused, unless `new.reuse_maildir`, when its Maildir
/// is already on disk (left by a deleted account: the new owner would get
/// that mail) or is the same as, inside or around another account's (each
/// would see the other's mail, and quotas would count it twice).
pub fn account_add(client: &mut Client, raw: &str, new: &NewAccount) -> Result<Account> {
    let (local, domain) = address(raw)?;
    let real_name = check_text("name", &new.real_name, NAME_MAX)?;
    let note = check_text("note", &new.note, NOTE_MAX)?;
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
                                   quota_bytes, quota_messages, active, real_name, note)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &id,
                &local,
                &maildir,
                &new.password_hash,
                &new.quota_bytes,
                &new.quota_messages,
                &new.active,
                &real_name,
                &note,
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
pub(super) fn maildir_user(
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
    let filter = super::names::list_filter(raw_domain, "account")?;
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

/// Set an account's own Junk routing (`Some(true)` on, `Some(false)`
/// off), or with `None` let it follow the site's default again. It
/// changes where a message lands inside the account, never whether it is
/// delivered, so nothing is refused.
pub fn account_junk(client: &mut Client, raw: &str, junk: Option<bool>) -> Result<Account> {
    let addr = account_update(client, raw, "junk = $3", &[&junk])?;
    account_show(client, &addr)
}

/// Set an account's real name and/or note (`None` leaves one as it is;
/// `Some("")` clears it).
pub fn account_set_info(
    client: &mut Client,
    raw: &str,
    real_name: Option<&str>,
    note: Option<&str>,
) -> Result<Account> {
    let real_name = real_name
        .map(|n| check_text("name", n, NAME_MAX))
        .transpose()?;
    let note = note.map(|n| check_text("note", n, NOTE_MAX)).transpose()?;
    let addr = account_update(
        client,
        raw,
        "real_name = coalesce($3, a.real_name), note = coalesce($4, a.note)",
        &[&real_name, &note],
    )?;
    account_show(client, &addr)
}

/// Turn services on or off (the others stay as they are). Nothing is
/// refused: the flags decide logins, never delivery.
pub fn account_services(
    client: &mut Client,
    raw: &str,
    changes: &[(Service, bool)],
) -> Result<Account> {
    let want = |s: Service| changes.iter().rev().find(|c| c.0 == s).map(|c| c.1);
    let (imap, pop3, smtp, sieve) = (
        want(Service::Imap),
        want(Service::Pop3),
        want(Service::Smtp),
        want(Service::Sieve),
    );
    let addr = account_update(
        client,
        raw,
        "imap = coalesce($3, a.imap), pop3 = coalesce($4, a.pop3),
         smtp = coalesce($5, a.smtp), sieve = coalesce($6, a.sieve)",
        &[&imap, &pop3, &smtp, &sieve],
    )?;
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
