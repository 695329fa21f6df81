//! A complete throwaway installation outside the test binary: a private
//! PostgreSQL (optionally behind PgBouncer) with `example.com` and N
//! accounts, a mail root and a config file the unprivileged user can read.
//! Shared by the load example and the end-to-end benchmark.

use super::pg::{Pg, TestDb};
use super::pgbouncer::Bouncer;
use super::unpriv::{chown_for_unpriv, temp_dir_for_unpriv};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Setup {
    /// Kept alive for the run (dropped in field order: bouncer first).
    pub bouncer: Option<Bouncer>,
    pub db: Option<TestDb>,
    pub pg: Option<Pg>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
    pub root: PathBuf,
    pub recipients: Vec<String>,
    /// Where runnable copies of binaries go.
    pub bin_dir: PathBuf,
}

impl Setup {
    /// `alice@example.com` and `user1..` up to `accounts` accounts.
    pub fn throwaway(accounts: usize, pgbouncer: bool) -> Setup {
        let pg = Pg::private();
        let db = pg.fresh_db();
        let mut client = db.client();
        vdeliver::admin::migrate(&mut client).expect("migrate");
        vdeliver::admin::domain_add(&mut client, "example.com").expect("domain");
        let mut recipients = Vec::new();
        for i in 0..accounts {
            let a = if i == 0 {
                "alice@example.com".to_string()
            } else {
                format!("user{i}@example.com")
            };
            vdeliver::admin::account_add(&mut client, &a, &Default::default()).expect("account");
            recipients.push(a);
        }
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
            recipients,
            bin_dir,
        }
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
