//! PostgreSQL: connecting, and the one lookup a delivery makes.
//!
//! Delivery writes nothing to the database and keeps no session state: the
//! lookup is one unnamed statement sent as Parse/Bind/Execute/Sync in a
//! single round trip (`query_typed`), so it works through PgBouncer in
//! transaction pooling mode and against a read-only hot standby.
//!
//! Every error here — cannot connect, authentication, a missing table, a
//! timeout, a row of an unexpected shape — is a [`DbError`], which the
//! outcome layer always turns into a deferral. "No such row" is not an
//! error; it is an absence in [`Facts`].

use crate::config;
use crate::plan::{AccountFacts, DomainFacts, Facts};
use postgres::config::Host;
use postgres::types::Type;
use postgres::{Client, NoTls};
use std::fmt;
use std::time::Duration;

/// A database failure. Its text never contains the connection string
/// (nor, so, a password); it names the server's host and port and the
/// cause.
#[derive(Debug)]
pub enum DbError {
    /// `database.url` does not parse (its text is not repeated).
    BadUrl,
    /// Connecting (socket, start-up, authentication) failed. `to` names
    /// the server(s); with several, `source` is the last one's error.
    Connect { to: String, source: postgres::Error },
    /// Connecting, start-up and authentication included, did not finish
    /// within `after`.
    ConnectTimeout { to: String, after: Duration },
    /// The connecting thread could not be started or died.
    ConnectThread(String),
    Postgres {
        what: &'static str,
        source: postgres::Error,
    },
}

impl DbError {
    fn new(what: &'static str) -> impl FnOnce(postgres::Error) -> DbError {
        move |source| DbError::Postgres { what, source }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            DbError::Postgres { source, .. } | DbError::Connect { source, .. } => {
                source.code().map(|c| c.code())
            }
            _ => None,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::BadUrl => f.write_str("database.url does not parse"),
            DbError::Connect { to, source } => {
                write!(f, "connect to {to}: ")?;
                connect_cause(f, source)
            }
            DbError::ConnectTimeout { to, after } => write!(
                f,
                "connect to {to}: timed out: no answer within {} \
                 (database.connect_timeout, start-up and authentication included)",
                humantime::format_duration(*after)
            ),
            DbError::ConnectThread(e) => {
                write!(f, "connect: cannot start the connecting thread: {e}")
            }
            DbError::Postgres { what, source } => match source.as_db_error() {
                Some(db) => write!(
                    f,
                    "{what}: {} (SQLSTATE {})",
                    db.message(),
                    db.code().code()
                ),
                None => write!(f, "{what}: {source}"),
            },
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Postgres { source, .. } | DbError::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The client configuration: the URL plus timeouts and our name.
pub fn client_config(
    cfg: &config::Database,
    application: &str,
) -> Result<postgres::Config, DbError> {
    let mut c: postgres::Config = cfg.url.parse().map_err(|_| DbError::BadUrl)?;
    c.connect_timeout(cfg.connect_timeout);
    if c.get_application_name().is_none() {
        c.application_name(application);
    }
    let ms = cfg.statement_timeout.as_millis();
    if ms > 0 {
        let opt = format!("-c statement_timeout={ms}");
        let all = match c.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {opt}"),
            _ => opt,
        };
        c.options(&all);
    }
    Ok(c)
}

/// Why a connection failed, in words: rust-postgres's own text for a
/// connection error is only "error connecting to server", the cause is in
/// its `source()`.
fn connect_cause(f: &mut fmt::Formatter<'_>, e: &postgres::Error) -> fmt::Result {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let what = if code.starts_with("28") {
            "authentication failed: "
        } else {
            ""
        };
        return write!(f, "{what}{} (SQLSTATE {code})", db.message());
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let why = match io.kind() {
                K::NotFound => "no such socket (is the server running, is the host right?)",
                K::ConnectionRefused => "connection refused (no server listening there)",
                K::TimedOut => "timed out (database.connect_timeout)",
                K::PermissionDenied => "permission denied",
                K::ConnectionReset | K::UnexpectedEof | K::BrokenPipe => {
                    "the server closed the connection during start-up"
                }
                _ => "",
            };
            return match why {
                "" => write!(f, "{io}"),
                why => write!(f, "{why}: {io}"),
            };
        }
        if std::error::Error::source(c).is_none() {
            return write!(f, "{e}: {c}");
        }
        cause = std::error::Error::source(c);
    }
    write!(f, "{e}")
}

/// The servers a configuration names, for messages: `host:port` or the
/// Unix socket path, comma-separated. Never the user, database or password.
fn servers(c: &postgres::Config) -> String {
    let ports = c.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let mut out: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port(i)),
        })
        .collect();
    if out.is_empty() {
        out = c
            .get_hostaddrs()
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{a}:{}", port(i)))
            .collect();
    }
    if out.is_empty() {
        return "the server (no host given)".into();
    }
    out.join(", ")
}

/// A connection about to be made: the client configuration, the servers
/// it names (for messages) and how long connecting may take in all —
/// socket, start-up packet and authentication, `connect_timeout` per
/// server named (rust-postgres tries them in turn). The URL is parsed
/// once, whichever way the connection is then made.
pub struct Pending {
    config: postgres::Config,
    to: String,
    limit: Duration,
}

/// Parse the configuration for a connection.
pub fn prepare(cfg: &config::Database, application: &str) -> Result<Pending, DbError> {
    let config = client_config(cfg, application)?;
    let to = servers(&config);
    let n = config
        .get_hosts()
        .len()
        .max(config.get_hostaddrs().len())
        .max(1);
    let limit = cfg
        .connect_timeout
        .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
    Ok(Pending { config, to, limit })
}

impl Pending {
    /// How long connecting may take in all before the caller gives up.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Connect on this thread (plain TCP or a Unix socket; TLS is left to
    /// a local socket or a local PgBouncer). rust-postgres's own timeout
    /// covers only the socket's connect: a server that accepts and never
    /// answers would hold this forever, so the caller bounds it by
    /// [`Pending::limit`] (vdeliver's deadline timer does, without a
    /// thread of its own).
    pub fn connect_here(self) -> Result<Client, DbError> {
        let to = self.to;
        self.config
            .connect(NoTls)
            .map_err(|source| DbError::Connect { to, source })
    }
}

/// Connect, the whole of it — socket, start-up packet, authentication —
/// ending within [`Pending::limit`]. It runs on a thread of its own, waited
/// for with that limit; one that runs over is left behind, which is
/// harmless as the caller (vmailctl, which has no watchdog) ends soon
/// after an error.
pub fn connect(cfg: &config::Database, application: &str) -> Result<Client, DbError> {
    let Pending {
        config: c,
        to,
        limit,
    } = prepare(cfg, application)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("connect".into())
        .spawn(move || {
            let _ = tx.send(c.connect(NoTls));
        })
        .map_err(|e| DbError::ConnectThread(e.to_string()))?;
    match rx.recv_timeout(limit) {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(source)) => Err(DbError::Connect { to, source }),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(DbError::ConnectTimeout { to, after: limit })
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(DbError::ConnectThread("it ended without an answer".into()))
        }
    }
}

/// Everything resolution needs about a list of (domain, local part)
/// pairs, in one statement: the domain (directly or through an alias
/// domain) with its catch-alls, and per pair the aliases, the account (with
/// its effective quota) and the relocated row.
///
/// For one pair — an address with a single candidate, the common case —
/// the statement reads only `domains` and `accounts`, as any SQL-backed
/// delivery agent must, and when the account is there and no alias of
/// the same address is (`accounts.vdeliver_aliased`), answers in one row
/// whose first columns ([`F`]) are the account, its domain and the
/// domain's catch-alls (`domains.vdeliver_catchalls`). Otherwise the same
/// statement calls `vdeliver_route` (schema version 3,
/// `migrations/0003_routes.sql`), a SQL function the server parses and
/// plans only when it is called. It answers extensions, aliases and
/// catch-alls whose destinations are plain local accounts — nearly all of
/// them — from `domains`, `accounts` and the trigger-kept
/// `vdeliver_routes`: one row per (pair asked, destination), the pair's
/// facts in columns [`P`], the destination's in [`T`]. What it cannot
/// answer whole (alias domains, remote destinations, chains) it hands, in
/// the same statement, to the PL/pgSQL function `vdeliver_lookup`
/// (version 2), which widens the pairs level by level up to the depth
/// limit by the literal destinations (those without `%`) of their aliases
/// and catch-alls, and answers one fact per row in columns [`L`], tagged
/// by kind (`q` a pair asked, `d` its domain, `c` a catch-all, `a` an
/// account, `l` an alias destination, `r` a relocated address). Every pair
/// whose facts are in the answer comes back, so the caller knows what it
/// has been told, including "nothing". Each lookup is an index probe by
/// the statement's shape, whatever the tables' sizes. The copies kept by
/// triggers are recomputed from the tables they copy on every change,
/// vmailctl's or direct SQL's.
///
/// Every layer returns an account with the same columns, its own Junk
/// routing setting (`accounts.junk`, schema version 4,
/// `migrations/0004_junk.sql`; NULL: the site's default) among them, so
/// [`AccountFacts::junk`] is filled whichever layer answers.
///
/// Destinations are case-folded there exactly as
/// [`crate::recipient::fold_local`] folds them: ASCII `A`–`Z` only, with
/// `translate()`, never `lower()`, whose result depends on the database's
/// ctype (under a UTF-8 ctype it maps U+212A KELVIN SIGN onto `k`).
///
/// An unnamed statement, no session state: PgBouncer in transaction mode
/// and a read-only hot standby both serve it.
pub const FETCH: &str = "\
SELECT f.maildir, f.active, f.qb, f.qm, f.junk, f.dname, f.dactive, f.dcatchalls, w.*
  FROM (VALUES (1)) AS o(x)
  LEFT JOIN LATERAL (
    SELECT a.maildir, a.active,
           coalesce(a.quota_bytes, m.quota_bytes) AS qb,
           coalesce(a.quota_messages, m.quota_messages) AS qm, a.junk,
           m.name AS dname, m.active AS dactive, m.vdeliver_catchalls AS dcatchalls
      FROM domains m JOIN accounts a ON a.domain_id = m.id
     WHERE m.name = $1[1] AND a.local_part = $2[1]
       AND cardinality($1) = 1 AND cardinality($2) = 1 AND NOT a.vdeliver_aliased) f ON true
  LEFT JOIN LATERAL vdeliver_route(CASE WHEN f.maildir IS NULL THEN $1 END, $2) w ON true";

/// The general path of [`FETCH`] alone (`vdeliver_lookup`, in the same
/// row shape), for tests that compare the faster paths' answers with it.
#[doc(hidden)]
pub const FETCH_FUNCTION: &str = "\
SELECT NULL::text, NULL::boolean, NULL::bigint, NULL::bigint, NULL::boolean, NULL::text,
       NULL::boolean, NULL::text[],
       NULL::text, NULL::text, NULL::text, NULL::boolean, NULL::bigint, NULL::bigint,
       NULL::boolean, NULL::text, NULL::boolean, NULL::text[], NULL::text[], NULL::text,
       NULL::text, NULL::text, NULL::text, NULL::boolean, NULL::bigint, NULL::bigint,
       NULL::boolean, NULL::text, NULL::boolean, NULL::text[], NULL::boolean,
       l.kind, l.dom, l.loc, l.val, l.flag, l.qb, l.qm, l.junk
  FROM vdeliver_lookup($1, $2) l";

/// The first column of each part of [`FETCH`]'s rows: the plain account
/// (`maildir, active, qb, qm, junk, dname, dactive, dcatchalls`), the
/// pair asked (`dom, loc`, then the same eight, then `aliases,
/// relocated`), the destination (`dom, loc`, the same eight, `more`), and
/// `vdeliver_lookup`'s fact (`kind, dom, loc, val, flag, qb, qm, junk`).
/// An account's columns are always `maildir, active, qb, qm, junk` in
/// that order ([`account_columns`]), its domain's the three after them.
pub const F: usize = 0;
/// See [`F`].
pub const P: usize = 8;
/// See [`F`].
pub const T: usize = 20;
/// See [`F`].
pub const L: usize = 31;

/// Ask about `pairs` in one round trip and add the answers to `facts`.
pub fn fetch(
    client: &mut Client,
    pairs: &[(String, String)],
    facts: &mut Facts,
) -> Result<(), DbError> {
    fetch_with(client, FETCH, pairs, facts)
}

/// [`fetch`] with another statement of the same shape
/// ([`FETCH_FUNCTION`]).
#[doc(hidden)]
pub fn fetch_with(
    client: &mut Client,
    statement: &str,
    pairs: &[(String, String)],
    facts: &mut Facts,
) -> Result<(), DbError> {
    let doms: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    let locs: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let rows = client
        .query_typed(
            statement,
            &[(&doms, Type::TEXT_ARRAY), (&locs, Type::TEXT_ARRAY)],
        )
        .map_err(DbError::new("lookup"))?;
    let bad = |(what, source)| DbError::Postgres { what, source };
    // Domains asked about and not answered are not in the database.
    for (d, l) in pairs {
        facts.domains.entry(d.clone()).or_insert(None);
        facts.asked.insert((d.clone(), l.clone()));
    }
    // The whole pairs first (the plain account, the pairs asked, their
    // destinations), then vdeliver_lookup's facts: pairs, then domain
    // rows (so catch-alls find their domain), then the rest, each once
    // (a fact comes once per row it is joined to).
    let mut lookup: Vec<(u8, &postgres::Row)> = Vec::new();
    for r in &rows {
        if let Some(maildir) =
            col::<Option<String>>(r, F, "lookup: reading accounts.maildir").map_err(bad)?
        {
            let (d, l) = pairs.first().cloned().unwrap_or_default();
            let domain = domain_columns(r, F + 5).map_err(bad)?;
            let account = account_columns(r, F, maildir).map_err(bad)?;
            facts.domains.insert(d.clone(), Some(domain));
            facts.locals.entry((d, l)).or_default().account = Some(account);
        }
        pair_columns(r, facts).map_err(bad)?;
        match col::<Option<&str>>(r, L, "lookup: reading the row kind").map_err(bad)? {
            None => {}
            Some("q") => lookup.push((0, r)),
            Some("d") => lookup.push((1, r)),
            Some(_) => lookup.push((2, r)),
        }
    }
    lookup.sort_by_key(|(order, _)| *order);
    let mut seen = std::collections::HashSet::new();
    for (_, r) in lookup {
        let key: Vec<Option<String>> = (L..L + 4)
            .map(|i| r.try_get::<_, Option<String>>(i).ok().flatten())
            .collect();
        if seen.insert(key) {
            add_row(r, facts).map_err(bad)?;
        }
    }
    Ok(())
}

/// The pair asked and its destination of a row of `vdeliver_route`, each
/// when whole: the pair when its domain is a primary domain (else
/// `vdeliver_lookup`'s rows say what it is), the destination when it is a
/// plain account (`more` false).
fn pair_columns(
    r: &postgres::Row,
    facts: &mut Facts,
) -> Result<(), (&'static str, postgres::Error)> {
    let dom: Option<String> = col(r, P, "lookup: reading the domain")?;
    let dname: Option<&str> = col(r, P + 7, "lookup: reading domains.name")?;
    if let (Some(dom), Some(_)) = (dom, dname) {
        let loc: String = col(r, P + 1, "lookup: reading the local part")?;
        let domain = domain_columns(r, P + 7)?;
        let maildir: Option<String> = col(r, P + 2, "lookup: reading accounts.maildir")?;
        let account = match maildir {
            Some(m) => Some(account_columns(r, P + 2, m)?),
            None => None,
        };
        let aliases: Option<Vec<String>> = col(r, P + 10, "lookup: aliases.destination is NULL")?;
        let relocated: Option<String> = col(r, P + 11, "lookup: reading relocated.new_address")?;
        facts.domains.insert(dom.clone(), Some(domain));
        facts.asked.insert((dom.clone(), loc.clone()));
        let has_aliases = aliases.as_ref().is_some_and(|a| !a.is_empty());
        if account.is_some() || has_aliases || relocated.is_some() {
            let lf = facts.locals.entry((dom, loc)).or_default();
            if account.is_some() {
                lf.account = account;
            }
            if let Some(aliases) = aliases {
                lf.aliases = aliases;
            }
            if relocated.is_some() {
                lf.relocated = relocated;
            }
        }
    }
    let more: Option<bool> = col(r, T + 10, "lookup: reading the destination")?;
    if more == Some(false) {
        let dom: String = col(r, T, "lookup: reading the destination's domain")?;
        let loc: String = col(r, T + 1, "lookup: reading the destination's local part")?;
        let maildir: String = col(r, T + 2, "lookup: accounts.maildir is NULL")?;
        let account = account_columns(r, T + 2, maildir)?;
        let domain = domain_columns(r, T + 7)?;
        facts.domains.insert(dom.clone(), Some(domain));
        facts.asked.insert((dom.clone(), loc.clone()));
        facts.locals.entry((dom, loc)).or_default().account = Some(account);
    }
    Ok(())
}

/// A domain's name, active flag and catch-alls, from column `i` on.
fn domain_columns(
    r: &postgres::Row,
    i: usize,
) -> Result<DomainFacts, (&'static str, postgres::Error)> {
    Ok(DomainFacts {
        primary: col(r, i, "lookup: domains.name is NULL")?,
        active: col(r, i + 1, "lookup: domains.active is NULL")?,
        catchalls: col(r, i + 2, "lookup: catchalls.destination is NULL")?,
    })
}

/// A quota column as the lookup returns it: NULL (no limit of its own) or
/// a count of 0 or more. A negative figure is a row the schema forbids
/// (its CHECK was dropped): an error, never read as "unlimited".
struct QuotaColumn(Option<i64>);

impl<'a> postgres::types::FromSql<'a> for QuotaColumn {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match i64::from_sql(ty, raw)? {
            n if n < 0 => Err(format!("a quota of {n} (the schema allows 0 or more)").into()),
            n => Ok(QuotaColumn(Some(n))),
        }
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(QuotaColumn(None))
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as postgres::types::FromSql>::accepts(ty)
    }
}

/// Add one fact of `vdeliver_lookup` (columns [`L`] on) to `facts`.
///
/// Each kind of row is read with the shape the schema promises: every
/// column that is NOT NULL there is read as a non-optional value, so a
/// NULL where the schema's constraint has been dropped by hand (a NULL
/// Maildir, `active`, destination or new address) is an error naming the
/// column, never an absent account (which would send the mail to the
/// catch-all), a disabled one (a bounce) or an ignored destination. So is
/// a negative quota, and a kind the statement cannot produce.
fn add_row(r: &postgres::Row, facts: &mut Facts) -> Result<(), (&'static str, postgres::Error)> {
    let kind: &str = col(r, L, "lookup: reading the row kind")?;
    let dom: String = col(r, L + 1, "lookup: reading the domain")?;
    match kind {
        "q" => {
            let loc: String = col(r, L + 2, "lookup: reading the local part")?;
            facts.domains.entry(dom.clone()).or_insert(None);
            facts.asked.insert((dom, loc));
        }
        "d" => {
            let primary: String = col(r, L + 3, "lookup: domains.name is NULL")?;
            let active: bool = col(r, L + 4, "lookup: domains.active is NULL")?;
            facts.domains.insert(
                dom,
                Some(DomainFacts {
                    primary,
                    active,
                    catchalls: Vec::new(),
                }),
            );
        }
        "c" => {
            let dest: String = col(r, L + 3, "lookup: catchalls.destination is NULL")?;
            if let Some(Some(d)) = facts.domains.get_mut(&dom) {
                d.catchalls.push(dest);
            }
        }
        "a" => {
            let loc: String = col(r, L + 2, "lookup: reading the local part")?;
            let maildir: String = col(r, L + 3, "lookup: accounts.maildir is NULL")?;
            let account = account_columns(r, L + 3, maildir)?;
            facts.locals.entry((dom, loc)).or_default().account = Some(account);
        }
        "l" => {
            let loc: String = col(r, L + 2, "lookup: reading the local part")?;
            let dest: String = col(r, L + 3, "lookup: aliases.destination is NULL")?;
            facts
                .locals
                .entry((dom, loc))
                .or_default()
                .aliases
                .push(dest);
        }
        "r" => {
            let loc: String = col(r, L + 2, "lookup: reading the local part")?;
            let new: String = col(r, L + 3, "lookup: relocated.new_address is NULL")?;
            facts.locals.entry((dom, loc)).or_default().relocated = Some(new);
        }
        // The statement makes no other kind. Reading the kind column as a
        // boolean fails (wrong type), which gives the error to report.
        _ => {
            col::<bool>(r, L, "lookup: a row of unknown kind")?;
        }
    }
    Ok(())
}

/// An account whose Maildir (column `i`) is `maildir`: its active flag
/// and effective quotas follow (`i + 1` to `i + 3`), then its own Junk
/// routing setting (`i + 4`, `accounts.junk`: NULL is the site's
/// default, not an error).
fn account_columns(
    r: &postgres::Row,
    i: usize,
    maildir: String,
) -> Result<AccountFacts, (&'static str, postgres::Error)> {
    let active: bool = col(r, i + 1, "lookup: accounts.active is NULL")?;
    let QuotaColumn(quota_bytes) = col(
        r,
        i + 2,
        "lookup: quota_bytes (the account's or its domain's) is negative",
    )?;
    let QuotaColumn(quota_messages) = col(
        r,
        i + 3,
        "lookup: quota_messages (the account's or its domain's) is negative",
    )?;
    Ok(AccountFacts {
        maildir,
        active,
        quota_bytes,
        quota_messages,
        junk: col(r, i + 4, "lookup: reading accounts.junk")?,
    })
}

/// Column `i` of `r` as a `T`; on failure, `what` says which column and
/// what is wrong with it (the column types are the statement's own, so
/// the one way reading fails is a NULL, or a negative quota), since the
/// client library's message names only the column's index.
fn col<'a, T: postgres::types::FromSql<'a>>(
    r: &'a postgres::Row,
    i: usize,
    what: &'static str,
) -> Result<T, (&'static str, postgres::Error)> {
    r.try_get(i).map_err(|e| (what, e))
}
