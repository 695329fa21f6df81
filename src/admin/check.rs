//! `vmailctl check`: is this installation ready to deliver? One result per
//! check, each with a reason; nothing is changed.
//!
//! What the delivery user can open is tested as that user, not inferred
//! from mode bits: run as root, this thread switches to the user
//! ([`super::asuser`]: its uid, its primary gid, no other group, as
//! qmail-local runs a delivery) and really opens the configuration for
//! reading and asks the kernel (`access(2)`, real ids = the user's) whether
//! it may search and write `mail.root` and execute qmail-queue, so ACLs,
//! parent directories and group membership all count. Run as the delivery
//! user itself, the same tests run directly; run as anyone else they cannot
//! be made, and the lines say so and fail.

use super::asuser::{as_user, User};
use crate::config::{self, Config};
use crate::{db, schema};
use serde::Serialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn pass(name: &'static str, detail: String) -> Check {
    Check {
        name,
        ok: true,
        detail,
    }
}

fn fail(name: &'static str, detail: String) -> Check {
    Check {
        name,
        ok: false,
        detail,
    }
}

/// Run every check. `user` is the account qmail-local runs vdeliver as
/// (e.g. `vmail`); without it, the owner of `mail.root` is taken to be
/// that account.
pub fn check(path: &Path, user: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    let cfg = match config::load(path) {
        Ok(c) => {
            out.push(pass(
                "configuration",
                format!("{} is readable and valid", path.display()),
            ));
            c
        }
        Err(e) => {
            out.push(fail("configuration", e.to_string()));
            for name in [
                "configuration file",
                "database",
                "schema",
                "delivery user",
                "mail root",
                "qmail-queue",
                "renames",
            ] {
                out.push(fail(
                    name,
                    "not checked: the configuration is unusable".into(),
                ));
            }
            return out;
        }
    };
    let root = &cfg.mail.root;
    let root_meta = std::fs::symlink_metadata(root);
    let (delivery, who) = match user {
        Some(u) => match User::by_name(u) {
            Some(pw) => (Some(pw), format!("user {u}")),
            None => (None, format!("user {u}")),
        },
        None => match &root_meta {
            Ok(m) => (
                Some(User {
                    uid: m.uid(),
                    gid: nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(m.uid()))
                        .ok()
                        .flatten()
                        .map_or(m.gid(), |pw| pw.gid.as_raw()),
                }),
                format!("the owner of {}", root.display()),
            ),
            Err(_) => (None, String::new()),
        },
    };
    // What the delivery user can open (root itself is failed below).
    let access = delivery
        .filter(|u| u.uid != 0)
        .map(|u| opens_as(u, &who, path, root, &cfg.forward.qmail_queue));
    let cannot = |i: usize| -> Option<String> {
        match &access {
            Some(Ok(a)) => a[i].clone(),
            Some(Err(e)) => Some(e.clone()),
            None => None,
        }
    };
    out.push(match cannot(0) {
        Some(why) => fail("configuration file", why),
        None => config_file(path, &cfg),
    });
    let mut db_client = None;
    match db::connect(&cfg.database, "vmailctl") {
        Err(e) => {
            out.push(fail("database", format!("cannot connect: {e}")));
            out.push(fail(
                "schema",
                "not checked: the database is unreachable".into(),
            ));
        }
        Ok(mut client) => {
            out.push(pass("database", "reachable".into()));
            let want = schema::current_version();
            out.push(match super::schema_version(&mut client) {
                Ok(v) if v == want => match super::drift(&mut client) {
                    Ok(0) => pass(
                        "schema",
                        format!("at version {v}, the current one; the lookup's copies agree"),
                    ),
                    Ok(n) => fail(
                        "schema",
                        format!(
                            "at version {v}, but {n} {} of the lookup's trigger-kept copies \
                             disagree with the tables they copy (triggers disabled during a \
                             load?): run vmailctl migrate, which repairs them",
                            if n == 1 { "row" } else { "rows" }
                        ),
                    ),
                    Err(e) => fail("schema", e.to_string()),
                },
                Ok(v) if v < want => fail(
                    "schema",
                    format!("at version {v}, this vdeliver needs {want}: run vmailctl migrate"),
                ),
                Ok(v) => fail(
                    "schema",
                    format!("at version {v}, newer than this vdeliver ({want}): upgrade vdeliver"),
                ),
                Err(e) => fail("schema", e.to_string()),
            });
            db_client = Some(client);
        }
    }
    if let (Some(u), None) = (user, delivery) {
        out.push(fail("delivery user", format!("there is no user {u}")));
    }
    let uid = delivery.map(|u| u.uid);
    match uid {
        Some(0) => out.push(fail(
            "delivery user",
            format!(
                "{who} is root; vdeliver refuses to run as root: run it as the virtual mail user"
            ),
        )),
        Some(n) => out.push(pass(
            "delivery user",
            format!("{who} (uid {n}) is not root"),
        )),
        None if user.is_none() => out.push(fail(
            "delivery user",
            "unknown: mail.root is missing and no --user was given".into(),
        )),
        None => {}
    }
    out.push(match (mail_root(root, root_meta, uid), cannot(1)) {
        (c, None) => c,
        (c, Some(_)) if !c.ok => c,
        (_, Some(why)) => fail("mail root", why),
    });
    out.push(match (qmail_queue(&cfg.forward.qmail_queue), cannot(2)) {
        (c, None) => c,
        (c, Some(_)) if !c.ok => c,
        (_, Some(why)) => fail("qmail-queue", why),
    });
    out.push(renames(root, db_client.as_mut()));
    out
}

/// Markers an interrupted `account rename` left in homes under the mail
/// root (see [`super::rename`]): each is mail split between two places, or
/// about to be, until the rename is finished. With the database, the line
/// says which of the two addresses is the account now, and so what to do.
fn renames(root: &Path, mut client: Option<&mut postgres::Client>) -> Check {
    const NAME: &str = "renames";
    if !root.is_dir() {
        return fail(NAME, "not checked: mail.root is not a directory".into());
    }
    let found = match super::rename::interrupted(root) {
        Ok(f) => f,
        Err(e) => return fail(NAME, format!("not checked: {e}")),
    };
    if found.is_empty() {
        return pass(
            NAME,
            format!("no interrupted account rename under {}", root.display()),
        );
    }
    let mut is_account = |a: &str| -> Option<bool> {
        match super::account_show(client.as_deref_mut()?, a) {
            Ok(_) => Some(true),
            Err(super::AdminError::NotFound(_)) => Some(false),
            Err(_) => None,
        }
    };
    let each: Vec<String> = found
        .iter()
        .map(|m| {
            let path = m.path();
            let Some((from, to)) = &m.pair else {
                return format!(
                    "{path} is a rename marker naming no pair of addresses: look at {}, then \
                     remove the file",
                    m.dir
                );
            };
            match (is_account(from), is_account(to)) {
                (Some(true), Some(false)) => format!(
                    "{path}: the rename of {from} to {to} was interrupted (the database still \
                     says {from}): run `vmailctl account rename {from} {to}` again to finish it"
                ),
                (Some(false), Some(true)) => format!(
                    "{path}: the rename of {from} to {to} finished but left its marker: remove \
                     the file"
                ),
                _ => format!(
                    "{path}: a rename of {from} to {to} was interrupted: see `vmailctl account \
                     show` of both, then run the rename again or remove the file"
                ),
            }
        })
        .collect();
    fail(NAME, each.join("; "))
}

/// As `user`, try what delivery needs: read the configuration, search and
/// write the mail root, execute qmail-queue. One entry each: `None` when
/// it can, else why not. `Err` when the test cannot be made at all.
fn opens_as(
    user: User,
    who: &str,
    config: &Path,
    root: &Path,
    queue: &Path,
) -> std::result::Result<[Option<String>; 3], String> {
    use rustix::fs::Access;
    let who = format!("{who} (uid {})", user.uid);
    let tried = as_user(user, || {
        [
            std::fs::File::open(config)
                .err()
                .map(|e| format!("{who} cannot read {}: {e}", config.display())),
            rustix::fs::access(root, Access::EXEC_OK | Access::WRITE_OK)
                .err()
                .map(|e| format!("{who} cannot create Maildirs in {}: {e}", root.display())),
            rustix::fs::access(queue, Access::EXEC_OK)
                .err()
                .map(|e| format!("{who} cannot execute {}: {e}", queue.display())),
        ]
    });
    match tried {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(format!(
            "cannot test what {who} can open: run vmailctl check as root or as that user"
        )),
        Err(e) => Err(format!("cannot act as {who} to test what it can open: {e}")),
    }
}

fn config_file(path: &Path, cfg: &Config) -> Check {
    let name = "configuration file";
    let Ok(m) = std::fs::metadata(path) else {
        return fail(name, format!("cannot stat {}", path.display()));
    };
    let mode = m.permissions().mode();
    if mode & 0o022 != 0 {
        return fail(
            name,
            format!(
                "{} is writable by group or others (mode {:04o}): anyone could redirect mail",
                path.display(),
                mode & 0o7777
            ),
        );
    }
    let has_password = cfg
        .database
        .url
        .parse::<postgres::Config>()
        .map(|c| c.get_password().is_some())
        .unwrap_or(false);
    if has_password && mode & 0o004 != 0 {
        return fail(
            name,
            format!(
                "{} holds a database password and is readable by everyone (mode {:04o})",
                path.display(),
                mode & 0o7777
            ),
        );
    }
    pass(
        name,
        format!("mode {:04o}, not writable by others", mode & 0o7777),
    )
}

fn mail_root(root: &Path, meta: std::io::Result<std::fs::Metadata>, uid: Option<u32>) -> Check {
    let name = "mail root";
    let m = match meta {
        Ok(m) => m,
        Err(e) => return fail(name, format!("{}: {e}", root.display())),
    };
    if m.file_type().is_symlink() {
        return fail(
            name,
            format!(
                "{} is a symlink; configure the real directory",
                root.display()
            ),
        );
    }
    if !m.is_dir() {
        return fail(name, format!("{} is not a directory", root.display()));
    }
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return fail(
            name,
            format!(
                "{} is writable by group or others (mode {mode:04o}); make it 0700 or 0750",
                root.display()
            ),
        );
    }
    if m.uid() == 0 {
        return fail(
            name,
            format!(
                "{} is owned by root; vdeliver (not root) must create Maildirs in it",
                root.display()
            ),
        );
    }
    if let Some(u) = uid {
        if m.uid() != u {
            return fail(
                name,
                format!(
                    "{} is owned by uid {}, not by the delivery user (uid {u})",
                    root.display(),
                    m.uid()
                ),
            );
        }
    }
    pass(
        name,
        format!(
            "{} is a directory, owner uid {}, mode {mode:04o}",
            root.display(),
            m.uid()
        ),
    )
}

fn qmail_queue(path: &Path) -> Check {
    let name = "qmail-queue";
    match std::fs::metadata(path) {
        Err(e) => fail(name, format!("{}: {e}", path.display())),
        Ok(m) if !m.is_file() => fail(name, format!("{} is not a regular file", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            fail(name, format!("{} is not executable", path.display()))
        }
        Ok(_) => pass(name, format!("{} is executable", path.display())),
    }
}
