//! A complete throwaway installation outside the test binary: a private
//! PostgreSQL (optionally behind PgBouncer) holding a realistic site, a
//! mail root and a config file the unprivileged user can read. Shared by
//! the load example, the soak example and the benchmarks.
//!
//! The site ([`Site`]) is made server-side with `INSERT … SELECT
//! generate_series` (10,000 accounts in seconds, a million in about a
//! minute on a shared 2-core machine), then `ANALYZE`d as
//! a real site's autovacuum would have it:
//!
//! - `accounts` accounts in domains of `per_domain` (default 100): domain 0
//!   is `example.com`, domain `j` is `d<j>.example.net`; account `m` of a
//!   domain is `user<m>` (`alice` for account 0 of `example.com`), Maildir
//!   `<domain>/<local>/Maildir/` as `vmailctl account add` makes it, no
//!   quota limits (so neither vdeliver nor the floor does quota
//!   bookkeeping; the lookup reads the columns all the same);
//! - `aliases` aliases (default 1 % of the accounts) `alias<k>` in domain
//!   `k mod D`: an even `k` to one account of its domain, an odd `k` to
//!   three (one in the next domain);
//! - a catch-all, to the domain's account 0, in every tenth domain (the
//!   last one when there are fewer than ten);
//! - an alias domain `alias-d<j>.example.org` for every twentieth domain;
//! - one relocated address `moved<k>` per thousand accounts.

use super::pg::{Pg, TestDb};
use super::pgbouncer::Bouncer;
use super::unpriv::{chown_for_unpriv, temp_dir_for_unpriv};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The shape of a generated site; every name in it can be computed.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub accounts: usize,
    pub per_domain: usize,
    pub aliases: usize,
}

/// An address to deliver to and the account the message ends in.
#[derive(Debug, Clone)]
pub struct Target {
    /// `local@domain` as addressed.
    pub address: String,
    /// The final account: (domain, local part).
    pub account: (String, String),
    /// Its Maildir, relative to the mail root.
    pub maildir: String,
}

/// Which kind of address a delivery is sent to (`load --case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// An account, as addressed.
    Plain,
    /// `user<m>-ext<r>@`: an extension of an account.
    Extension,
    /// An alias with one destination, an account.
    Alias,
    /// An unknown address in a domain with a catch-all.
    Catchall,
}

impl Case {
    pub fn parse(s: &str) -> Option<Case> {
        Some(match s {
            "plain" => Case::Plain,
            "extension" => Case::Extension,
            "alias" => Case::Alias,
            "catchall" => Case::Catchall,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::Extension => "extension",
            Case::Alias => "alias",
            Case::Catchall => "catchall",
        }
    }
}

/// A small deterministic generator (splitmix64): the same seed, the same
/// addresses.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

impl Site {
    /// `accounts` accounts, 100 a domain, 1 % aliases.
    pub fn new(accounts: usize) -> Site {
        Site {
            accounts: accounts.max(1),
            per_domain: 100,
            aliases: (accounts / 100).max(1),
        }
    }

    pub fn domains(&self) -> usize {
        self.accounts.div_ceil(self.per_domain)
    }

    pub fn domain(&self, j: usize) -> String {
        if j == 0 {
            "example.com".into()
        } else {
            format!("d{j}.example.net")
        }
    }

    pub fn local(&self, j: usize, m: usize) -> String {
        if j == 0 && m == 0 {
            "alice".into()
        } else {
            format!("user{m}")
        }
    }

    /// How many accounts domain `j` has.
    pub fn in_domain(&self, j: usize) -> usize {
        (self.accounts - j * self.per_domain).min(self.per_domain)
    }

    /// The `i`-th account: (domain, local part).
    pub fn account(&self, i: usize) -> (String, String) {
        let (j, m) = (i / self.per_domain, i % self.per_domain);
        (self.domain(j), self.local(j, m))
    }

    pub fn address(&self, i: usize) -> String {
        let (d, l) = self.account(i);
        format!("{l}@{d}")
    }

    pub fn has_catchall(&self, j: usize) -> bool {
        j % 10 == 9 || (self.domains() < 10 && j == self.domains() - 1)
    }

    fn target(&self, address: String, j: usize, m: usize) -> Target {
        let account = (self.domain(j), self.local(j, m));
        let maildir = format!("{}/{}/Maildir/", account.0, account.1);
        Target {
            address,
            account,
            maildir,
        }
    }

    /// A random address of kind `case` and where it ends.
    pub fn pick(&self, case: Case, rng: &mut Rng) -> Target {
        match case {
            Case::Plain => {
                let i = rng.below(self.accounts);
                let (j, m) = (i / self.per_domain, i % self.per_domain);
                self.target(self.address(i), j, m)
            }
            Case::Extension => {
                let i = rng.below(self.accounts);
                let (j, m) = (i / self.per_domain, i % self.per_domain);
                let (d, l) = self.account(i);
                let r = rng.below(1000);
                self.target(format!("{l}-ext{r}@{d}"), j, m)
            }
            Case::Alias => {
                // The even-numbered aliases have one destination.
                let k = 2 * rng.below(self.aliases.div_ceil(2));
                let j = k % self.domains();
                let m = (k / self.domains()) % self.in_domain(j);
                self.target(format!("alias{k}@{}", self.domain(j)), j, m)
            }
            Case::Catchall => {
                let with: Vec<usize> = (0..self.domains())
                    .filter(|&j| self.has_catchall(j))
                    .collect();
                let j = with[rng.below(with.len())];
                let r = rng.next() % 1_000_000;
                self.target(format!("nosuch{r}@{}", self.domain(j)), j, 0)
            }
        }
    }

    /// Make the site in an empty, migrated database, then ANALYZE it.
    pub fn populate(&self, client: &mut postgres::Client) {
        let (n, p, a, d) = (
            self.accounts as i64,
            self.per_domain as i64,
            self.aliases as i64,
            self.domains() as i64,
        );
        // The naming scheme of the methods above, for the statements below.
        let sql = format!(
            "CREATE FUNCTION pg_temp.dom(j bigint) RETURNS text IMMUTABLE LANGUAGE sql AS
               $$ SELECT CASE WHEN j = 0 THEN 'example.com' ELSE 'd' || j || '.example.net' END $$;
             CREATE FUNCTION pg_temp.loc(j bigint, m bigint) RETURNS text IMMUTABLE LANGUAGE sql AS
               $$ SELECT CASE WHEN j = 0 AND m = 0 THEN 'alice' ELSE 'user' || m END $$;
             CREATE FUNCTION pg_temp.cnt(j bigint) RETURNS bigint IMMUTABLE LANGUAGE sql AS
               $$ SELECT least({p}, {n} - j * {p}) $$;
             INSERT INTO domains (name)
               SELECT pg_temp.dom(j) FROM generate_series(0, {d} - 1) j;
             CREATE TEMP TABLE dj AS
               SELECT id, j, pg_temp.dom(j) AS name FROM domains, generate_series(0, {d} - 1) j
                WHERE name = pg_temp.dom(j);
             INSERT INTO accounts (domain_id, local_part, maildir)
               SELECT dj.id, pg_temp.loc(dj.j, i % {p}),
                      dj.name || '/' || pg_temp.loc(dj.j, i % {p}) || '/Maildir/'
                 FROM generate_series(0, {n} - 1) i JOIN dj ON dj.j = i / {p};
             INSERT INTO aliases (domain_id, local_part, destination)
               SELECT dj.id, 'alias' || k,
                      pg_temp.loc(dj.j, (k / {d}) % pg_temp.cnt(dj.j)) || '@' || dj.name
                 FROM generate_series(0, {a} - 1) k JOIN dj ON dj.j = k % {d};
             INSERT INTO aliases (domain_id, local_part, destination)
               SELECT dj.id, 'alias' || k, x.dest
                 FROM generate_series(1, {a} - 1, 2) k JOIN dj ON dj.j = k % {d}
                 CROSS JOIN LATERAL (
                   SELECT pg_temp.loc(dj.j, (k / {d} + 1) % pg_temp.cnt(dj.j)) || '@' || dj.name
                   UNION
                   SELECT pg_temp.loc(n.j, 0) || '@' || n.name
                     FROM dj n WHERE n.j = (dj.j + 1) % {d}) x(dest)
               ON CONFLICT DO NOTHING;
             INSERT INTO catchalls (domain_id, destination)
               SELECT id, pg_temp.loc(j, 0) || '@' || name FROM dj
                WHERE j % 10 = 9 OR ({d} < 10 AND j = {d} - 1);
             INSERT INTO alias_domains (name, domain_id)
               SELECT 'alias-d' || j || '.example.org', id FROM dj WHERE j % 20 = 3;
             INSERT INTO relocated (domain_id, local_part, new_address)
               SELECT dj.id, 'moved' || k, 'moved' || k || '@elsewhere.example'
                 FROM generate_series(0, greatest({n} / 1000, 1) - 1) k JOIN dj ON dj.j = k % {d};
             ANALYZE;"
        );
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("making the site: {e}"));
    }
}

pub struct Setup {
    /// Kept alive for the run (dropped in field order: bouncer first).
    pub bouncer: Option<Bouncer>,
    pub db: Option<TestDb>,
    pub pg: Option<Pg>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
    pub root: PathBuf,
    /// The site made (None for an installation of yours).
    pub site: Option<Site>,
    /// Accounts to send to: the first (up to) 1000 of the site.
    pub recipients: Vec<String>,
    /// Where runnable copies of binaries go.
    pub bin_dir: PathBuf,
}

impl Setup {
    /// A site of `accounts` accounts as [`Site::new`] makes it.
    pub fn throwaway(accounts: usize, pgbouncer: bool) -> Setup {
        Setup::with_site(Site::new(accounts), pgbouncer)
    }

    pub fn with_site(site: Site, pgbouncer: bool) -> Setup {
        let pg = Pg::private();
        let db = pg.fresh_db();
        let mut client = db.client();
        vdeliver::admin::migrate(&mut client).expect("migrate");
        site.populate(&mut client);
        let recipients = (0..site.accounts.min(1000))
            .map(|i| site.address(i))
            .collect();
        let bouncer = pgbouncer.then(|| Bouncer::start(&pg, &db.name));
        let url = match &bouncer {
            Some(b) => b.url(&db.name),
            None => db.url.clone(),
        };
        let dir = temp_dir_for_unpriv();
        let root = dir.path().join("vmail");
        fs::create_dir(&root).unwrap();
        chown_for_unpriv(&root);
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "[database]\nurl = \"{url}\"\n[mail]\nroot = \"{}\"\n",
                root.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
        let bin_dir = dir.path().to_path_buf();
        Setup {
            bouncer,
            db: Some(db),
            pg: Some(pg),
            dir,
            config,
            url,
            root,
            site: Some(site),
            recipients,
            bin_dir,
        }
    }

    /// Make `maildir` (relative to the mail root) with its `tmp`, `new`
    /// and `cur`, owned by the unprivileged user, mode 0700 as vdeliver
    /// makes them, so that a measurement does not count the first
    /// delivery's `mkdir`s.
    pub fn precreate_maildir(&self, maildir: &str) {
        let mut dir = self.root.clone();
        for c in Path::new(maildir).components() {
            dir.push(c);
            mkdir_unpriv(&dir);
        }
        for sub in ["tmp", "new", "cur"] {
            mkdir_unpriv(&dir.join(sub));
        }
    }
}

/// The name the benches and `examples/load.rs` give the script they
/// install (`<home>/sieve/roundcube.sieve`).
pub const SCRIPT_NAME: &str = "roundcube";

/// Where [`Setup::switch_script`] keeps the active script's symlink while
/// it is switched off (a name delivery never looks at).
const SCRIPT_LINK_OFF: &str = ".dovecot.sieve.off";

impl Setup {
    /// Give the account at `address`, whose Maildir is `maildir` (made
    /// beforehand), the active Sieve script `script`, stored and activated
    /// as the mail user by the code behind `vmailctl sieve put` and
    /// `activate`: `<home>/sieve/roundcube.sieve` and the symlink
    /// `<home>/.dovecot.sieve` to it, as ManageSieve leaves them.
    pub fn install_script(&self, address: &str, maildir: &str, script: &[u8]) {
        use vdeliver::admin::sieve::{activate, put, SieveHome};
        let h = SieveHome::new(address.to_string(), maildir.to_string())
            .unwrap_or_else(|e| panic!("{address}: {e}"));
        put(&self.root, &h, SCRIPT_NAME, script).unwrap_or_else(|e| panic!("sieve put: {e}"));
        activate(&self.root, &h, SCRIPT_NAME).unwrap_or_else(|e| panic!("sieve activate: {e}"));
        let link = self
            .root
            .join(&h.home)
            .join(vdeliver::sieve::store::SCRIPT_LINK);
        assert_eq!(
            fs::read_link(&link).ok(),
            Some(PathBuf::from(format!("sieve/{SCRIPT_NAME}.sieve"))),
            "{}",
            link.display()
        );
    }

    /// Switch the active script of an account made by
    /// [`Setup::install_script`] off (its symlink renamed aside, so the
    /// home is as one without a script: delivery finds no `.dovecot.sieve`)
    /// or on again. Idempotent; the rename keeps the link and its owner.
    pub fn switch_script(&self, maildir: &str, on: bool) {
        let home = vdeliver::sieve::store::home_of(maildir)
            .unwrap_or_else(|| panic!("{maildir} has no home"));
        let home = self.root.join(home);
        let link = home.join(vdeliver::sieve::store::SCRIPT_LINK);
        let off = home.join(SCRIPT_LINK_OFF);
        let (from, to) = if on { (off, link) } else { (link, off) };
        match fs::rename(&from, &to) {
            Ok(()) => {}
            // Already switched that way.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.symlink_metadata().is_ok() => {
            }
            Err(e) => panic!("rename {} to {}: {e}", from.display(), to.display()),
        }
    }

    /// Whether Sieve wrote an error log in the home of `maildir`
    /// (`<home>/.dovecot.sieve.log`): a script that failed.
    pub fn sieve_log(&self, maildir: &str) -> Option<String> {
        let home = vdeliver::sieve::store::home_of(maildir)?;
        fs::read_to_string(self.root.join(home).join(vdeliver::sieve::store::LOG_FILE)).ok()
    }
}

fn mkdir_unpriv(dir: &Path) {
    match fs::create_dir(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
            chown_for_unpriv(dir);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("mkdir {}: {e}", dir.display()),
    }
}

/// A copy of a binary the unprivileged user can run.
pub fn runnable_copy(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().unwrap());
    fs::copy(src, &dst).expect("copy binary");
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    dst
}

/// qmail-local's environment for a virtual-domain delivery (SPEC §2).
pub fn qmail_env(to: &str, from: &str) -> Vec<(String, String)> {
    let (local, host) = to.rsplit_once('@').unwrap();
    let prefix = host.to_ascii_lowercase();
    let user_local = format!("vmail-{prefix}-{local}");
    let ext = format!("{prefix}-{local}");
    let mut v: Vec<(String, String)> = vec![
        ("USER", "vmail".to_string()),
        ("HOME", "/home/vmail".to_string()),
        ("PATH", "/usr/bin:/bin".to_string()),
        ("LOCAL", user_local.clone()),
        ("HOST", host.to_string()),
        ("RECIPIENT", format!("{user_local}@{host}")),
        ("SENDER", from.to_string()),
        ("NEWSENDER", from.to_string()),
        ("EXT", ext.clone()),
        ("EXT2", local.to_string()),
        ("DEFAULT", ext),
        ("DTLINE", format!("Delivered-To: {user_local}@{host}\n")),
        ("RPLINE", format!("Return-Path: <{from}>\n")),
        (
            "UFLINE",
            format!(
                "From {} Thu Jan  1 00:00:00 2026\n",
                if from.is_empty() {
                    "MAILER-DAEMON"
                } else {
                    from
                }
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(pos) = local.find('-') {
        v.push(("EXT3".into(), local[pos + 1..].to_string()));
    }
    v
}
