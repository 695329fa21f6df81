//! A private, real Dovecot (Debian's `dovecot-core`, `dovecot-imapd`,
//! `dovecot-pop3d`, `dovecot-sieve`, `dovecot-managesieved`) for one test,
//! and tiny IMAP, POP3 and ManageSieve clients to talk to it.
//!
//! [`Dovecot::guide`] runs the README's guide: `examples/dovecot/99-vdeliver.conf`
//! as written, except that the `mail_uid`/`mail_gid`/`first_valid_uid` lines
//! name the user the tests deliver as, and the SQL passdb/userdb (the pgsql
//! driver is a separate package) are replaced: the userdb by a
//! `passwd-file` holding exactly what the guide's `user_query`
//! (`examples/dovecot/dovecot-sql.conf.ext`) returns from the site's
//! database, with `/var/vmail` replaced by the site's mail root; the
//! passdb by a `checkpassword` script that runs the guide's
//! `password_query` against the site's database at every login, with
//! Dovecot's `%Ln`, `%Ld` and `%s` (the service) bound as `psql`
//! variables, and checks the password against the hash it returns with
//! `doveadm pw -t`. So a change made with vmailctl after the start (a
//! password, a disabled account or service) applies to the next login,
//! as with the SQL passdb. IMAP and ManageSieve listen on free ports of
//! 127.0.0.1. [`Dovecot::start_with`] takes the passdb/userdb/plugin
//! settings from the caller instead (no listeners).
//!
//! The master runs in the foreground with its own base directory and log,
//! and is stopped when the value is dropped. As root (CI) the mail
//! processes run as the tests' unprivileged user (`mail_uid`); otherwise
//! everything runs as the current user (Dovecot's rootless mode).
//! A missing package is a panic that names it, never a skipped test.

use super::site::Site;
use super::unpriv::{is_root, unpriv_uid_gid};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A Dovecot program from PATH, /usr/sbin or /usr/bin; panics naming the
/// Debian packages when it is missing.
pub fn binary(name: &str) -> PathBuf {
    super::find_in_path(name)
        .or_else(|| {
            ["/usr/sbin", "/usr/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| super::is_executable(p))
        })
        .unwrap_or_else(|| {
            panic!(
                "the Dovecot interoperability tests need `{name}`: install Debian's \
                 dovecot-core (.ci/run does when doveadm is missing)"
            )
        })
}

/// Panics unless Dovecot's `program` (in /usr/lib/dovecot) is installed.
fn need_service(program: &str, package: &str) {
    let p = Path::new("/usr/lib/dovecot").join(program);
    assert!(
        super::is_executable(&p),
        "the Dovecot interoperability tests need {} : install Debian's {package} \
         (.ci/run does)",
        p.display()
    );
}

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

/// The queries of examples/dovecot/dovecot-sql.conf.ext, with backslash
/// continuations joined.
pub fn guide_queries() -> BTreeMap<String, String> {
    let text = fs::read_to_string(example("dovecot/dovecot-sql.conf.ext")).unwrap();
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Run a Dovecot SQL query the way Dovecot would for an IMAP login `user`:
/// `%Ln` and `%Ld` replaced by the lowercased, SQL-escaped local part and
/// domain, `%s` by `imap`.
pub fn guide_sql(s: &Site, query: &str, user: &str) -> Vec<BTreeMap<String, Option<String>>> {
    guide_sql_as(s, query, user, "imap")
}

/// [`guide_sql`] for a login to `service` (Dovecot's `%s`).
pub fn guide_sql_as(
    s: &Site,
    query: &str,
    user: &str,
    service: &str,
) -> Vec<BTreeMap<String, Option<String>>> {
    let (n, d) = user.rsplit_once('@').unwrap_or((user, ""));
    let esc = |v: &str| v.to_lowercase().replace('\'', "''");
    let sql = query
        .replace("%Ln", &esc(n))
        .replace("%Ld", &esc(d))
        .replace("%s", &esc(service));
    assert!(!sql.contains('%'), "unhandled Dovecot variable in {sql}");
    let mut c = s.db.client();
    c.simple_query(&sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| (col.name().to_string(), r.get(i).map(str::to_string)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The guide's passdb as a `checkpassword` program (see the module doc):
/// `query` with `'%Ln'`, `'%Ld'` and `'%s'` turned into psql's quoted
/// variables, run with psql against the site's database for each login;
/// no row is a refused login, the hash is checked by `doveadm pw -t`, and
/// the query's `user` column becomes the user name (as with the SQL
/// passdb, a login at an alias domain becomes the primary address).
fn checkpassword_script(s: &Site, dir: &Path, query: &str) -> PathBuf {
    let psql = super::find_in_path("psql")
        .unwrap_or_else(|| panic!("the Dovecot tests need psql (Debian: postgresql-client)"));
    let sql = query
        .replace("'%Ln'", ":'ln'")
        .replace("'%Ld'", ":'ld'")
        .replace("'%s'", ":'svc'");
    assert!(
        !sql.contains('%'),
        "unhandled Dovecot variable in the guide's password_query: {sql}"
    );
    let sql_file = dir.join("password_query.sql");
    fs::write(&sql_file, format!("{sql};\n")).unwrap();
    let sh = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let url = format!("'{}'", s.db.url.replace('\'', "'\\''"));
    let script = format!(
        r#"#!/bin/sh
# The guide's password_query, per login (tests/it/common/dovecot.rs).
creds=$(tr '\000' '\n' <&3)
user=$(printf '%s\n' "$creds" | sed -n 1p)
pass=$(printf '%s\n' "$creds" | sed -n 2p)
case "$user" in
  *@*) ln=${{user%@*}}; ld=${{user##*@}} ;;
  *) ln=$user; ld= ;;
esac
ln=$(printf '%s' "$ln" | tr A-Z a-z)
ld=$(printf '%s' "$ld" | tr A-Z a-z)
row=$({psql} -X -q -A -t -F '	' -v ON_ERROR_STOP=1 -v ln="$ln" -v ld="$ld"       -v svc="$SERVICE" -f {sql} {url}) || exit 111
# What Dovecot passed: the service and the client's address, for the tests.
printf '%s %s %s\n' "$SERVICE" "${{TCPREMOTEIP-}}" "$user" >> {logins} 2>/dev/null
row=$(printf '%s\n' "$row" | sed -n 1p)
[ -n "$row" ] || exit 1
name=$(printf '%s\n' "$row" | cut -f1)
hash=$(printf '%s\n' "$row" | cut -f2)
[ -n "$hash" ] || exit 1
{doveadm} -c {conf} pw -t "$hash" -p "$pass" >/dev/null 2>&1 || exit 1
# checkpassword-reply would otherwise answer the script's own uid and gid:
# the guide's mail_uid and mail_gid instead, as the SQL passdb leaves them.
USER=$name
userdb_uid={uid}
userdb_gid={gid}
EXTRA="userdb_uid userdb_gid"
export USER userdb_uid userdb_gid EXTRA
exec "$@"
"#,
        uid = super::unpriv::unpriv_uid_gid().0,
        gid = super::unpriv::unpriv_uid_gid().1,
        psql = sh(&psql),
        sql = sh(&sql_file),
        doveadm = sh(&binary("doveadm")),
        conf = sh(&dir.join("dovecot.conf")),
        logins = sh(&dir.join("logins")),
    );
    // Written by whichever user Dovecot runs the script as.
    let logins = dir.join("logins");
    fs::write(&logins, "").unwrap();
    fs::set_permissions(&logins, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let path = dir.join("passdb.sh");
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Replace `from` (which must occur) by `to` everywhere in `text`.
fn must_replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "examples/dovecot/99-vdeliver.conf no longer says {from:?}: update the harness"
    );
    text.replace(from, to)
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Dovecot {
    pub conf: PathBuf,
    pub dir: PathBuf,
    master: std::process::Child,
    /// IMAP on 127.0.0.1 ([`Dovecot::guide`] only).
    pub imap_port: Option<u16>,
    /// ManageSieve on 127.0.0.1 ([`Dovecot::guide`] only).
    pub sieve_port: Option<u16>,
    /// POP3 on 127.0.0.1 ([`Dovecot::guide_with`] settings that add `pop3`
    /// to `protocols`).
    pub pop3_port: Option<u16>,
}

impl Dovecot {
    /// The guide's Dovecot (see the module doc) for the accounts `users`
    /// (primary addresses; each must have a password to log in over IMAP
    /// or ManageSieve).
    pub fn guide(s: &Site, users: &[&str]) -> Dovecot {
        Dovecot::guide_with(s, users, "")
    }

    /// [`Dovecot::guide`] with `extra` settings after the guide's (a
    /// listener the README adds for one purpose, say).
    pub fn guide_with(s: &Site, users: &[&str], extra: &str) -> Dovecot {
        need_service("imap", "dovecot-imapd");
        need_service("managesieve", "dovecot-managesieved");
        let q = guide_queries();
        let root = s.root.display().to_string();
        let mut passwd = String::new();
        for user in users {
            let rows = guide_sql(s, &q["user_query"], user);
            assert_eq!(rows.len(), 1, "user_query for {user}: {rows:?}");
            let field = |k: &str| {
                rows[0]
                    .get(k)
                    .cloned()
                    .flatten()
                    .map(|v| v.replace("/var/vmail", &root))
            };
            let home = field("home").unwrap_or_default();
            let mut extra = Vec::new();
            for k in ["mail", "quota_rule"] {
                if let Some(v) = field(k) {
                    assert!(!v.contains(' '), "{k}={v:?}");
                    extra.push(format!("userdb_{k}={v}"));
                }
            }
            // The password is the passdb's: see checkpassword_script.
            passwd.push_str(&format!("{user}:::::{home}::{}\n", extra.join(" ")));
        }
        let dir = s.dir.path().join("dovecot");
        fs::create_dir_all(&dir).unwrap();
        let users_file = dir.join("users");
        fs::write(&users_file, passwd).unwrap();
        let passdb = checkpassword_script(s, &dir, &q["password_query"]);

        let (uid, gid) = unpriv_uid_gid();
        let guide = fs::read_to_string(example("dovecot/99-vdeliver.conf")).unwrap();
        let guide = must_replace(&guide, "mail_uid = vmail", &format!("mail_uid = {uid}"));
        let guide = must_replace(&guide, "mail_gid = vmail", &format!("mail_gid = {gid}"));
        let guide = must_replace(&guide, "first_valid_uid = 5000", "first_valid_uid = 1");
        let guide = must_replace(
            &guide,
            "passdb {\n  driver = sql\n  args = /etc/dovecot/dovecot-sql.conf.ext\n}",
            &format!(
                "passdb {{\n  driver = checkpassword\n  args = {}\n}}",
                passdb.display()
            ),
        );
        let guide = must_replace(&guide, "driver = sql", "driver = passwd-file");
        let guide = must_replace(
            &guide,
            "args = /etc/dovecot/dovecot-sql.conf.ext",
            &format!("args = {}", users_file.display()),
        );
        for _attempt in 0..3 {
            let (imap, sieve, pop3) = (free_port(), free_port(), free_port());
            // Debian's 10-mail.conf and the listeners conf.d would give.
            let body = format!(
                "namespace inbox {{\n  inbox = yes\n}}\n{guide}\n{extra}\n\
                 service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    \
                 port = {imap}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
                 service managesieve-login {{\n  inet_listener sieve {{\n    \
                 address = 127.0.0.1\n    port = {sieve}\n  }}\n}}\n\
                 service pop3-login {{\n  inet_listener pop3 {{\n    address = 127.0.0.1\n    \
                 port = {pop3}\n  }}\n  \
                 inet_listener pop3s {{\n    port = 0\n  }}\n}}\n\
                 service lmtp {{\n  unix_listener lmtp {{\n    mode = 0\n  }}\n}}\n"
            );
            match Dovecot::launch(s, &body) {
                Ok(mut d) => {
                    d.imap_port = Some(imap);
                    d.sieve_port = Some(sieve);
                    // Serving only when `extra` adds pop3 to `protocols`.
                    d.pop3_port = Some(pop3);
                    return d;
                }
                // A port taken in between: again with others.
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("dovecot did not start:\n{log}"),
            }
        }
        panic!("dovecot could not bind free ports three times");
    }

    /// Dovecot with `body` (passdb, userdb, plugin settings) and no
    /// network listeners.
    pub fn start_with(s: &Site, body: &str) -> Dovecot {
        let body = format!("protocols =\n{body}");
        Dovecot::launch(s, &body).unwrap_or_else(|log| panic!("dovecot did not start:\n{log}"))
    }

    fn launch(s: &Site, body: &str) -> Result<Dovecot, String> {
        let dovecot = binary("dovecot");
        let dir = s.dir.path().join("dovecot");
        for d in ["run", "state"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let _ = fs::remove_file(dir.join("log"));
        // Rootless: Dovecot's own processes run as the current user.
        let rootless = if is_root() {
            String::new()
        } else {
            let me = nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| panic!("the current user has no name"));
            format!(
                "default_internal_user = {me}\ndefault_login_user = {me}\n\
                 default_internal_group = {me}\n"
            )
        };
        let conf = dir.join("dovecot.conf");
        fs::write(
            &conf,
            format!(
                "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/log\n\
                 ssl = no\nfirst_valid_uid = 1\n{rootless}{body}",
                d = dir.display(),
            ),
        )
        .unwrap();
        let master = Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut d = Dovecot {
            conf,
            dir,
            master,
            imap_port: None,
            sieve_port: None,
            pop3_port: None,
        };
        // Ready when the auth service listens (or the master has died).
        let socket = d.dir.join("run/auth-userdb");
        for _ in 0..600 {
            if socket.exists() {
                return Ok(d);
            }
            if let Some(status) = d.master.try_wait().unwrap() {
                let err = fs::read_to_string(d.dir.join("stderr")).unwrap_or_default();
                return Err(format!("dovecot exited with {status}:\n{err}\n{}", d.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "dovecot did not start its auth service:\n{}",
            d.log()
        ))
    }

    /// One line per login the guide's passdb was asked about: `SERVICE
    /// CLIENT-ADDRESS USER` (the address empty when Dovecot had none).
    pub fn logins(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("logins"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `doveadm ARGS` with `stdin`, whatever its outcome.
    pub fn doveadm_output(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut child = Command::new(binary("doveadm"))
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// `doveadm ARGS` with `stdin`, which must succeed; its standard output.
    pub fn doveadm_in(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.doveadm_output(args, stdin);
        assert!(
            out.status.success(),
            "doveadm {args:?}: {out:?}\n{}",
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `doveadm ARGS`, which must succeed; its standard output.
    pub fn doveadm(&self, args: &[&str]) -> String {
        self.doveadm_in(args, b"")
    }

    /// An IMAP session logged in as `user` with `password`.
    pub fn imap(&self, user: &str, password: &str) -> Imap {
        let port = self.imap_port.expect("this Dovecot has no IMAP listener");
        let mut c = Imap::connect(port);
        c.command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .unwrap_or_else(|e| panic!("IMAP LOGIN {user}: {e}\n{}", self.log()));
        c
    }

    /// An IMAP LOGIN as `user` with `password`: the session, or the
    /// server's refusal.
    pub fn try_imap(&self, user: &str, password: &str) -> Result<Imap, String> {
        let port = self.imap_port.expect("this Dovecot has no IMAP listener");
        let mut c = Imap::connect(port);
        c.command(&format!("LOGIN {} {}", quote(user), quote(password)))?;
        Ok(c)
    }

    /// A ManageSieve AUTHENTICATE PLAIN as `user`: the session, or the
    /// server's refusal.
    pub fn try_managesieve(&self, user: &str, password: &str) -> Result<ManageSieve, String> {
        let port = self
            .sieve_port
            .expect("this Dovecot has no ManageSieve listener");
        let mut c = ManageSieve::connect(port);
        let creds = base64(format!("\0{user}\0{password}").as_bytes());
        c.command(format!("AUTHENTICATE \"PLAIN\" \"{creds}\"\r\n").as_bytes())?;
        Ok(c)
    }

    /// Whether Dovecot's passdb lets `user` log in to `service` (pop3,
    /// smtp, …: services without a listener here) with `password`:
    /// `doveadm auth test -x service=SERVICE`.
    pub fn auth_test(&self, service: &str, user: &str, password: &str) -> bool {
        let out = self.doveadm_output(
            &[
                "auth",
                "test",
                "-x",
                &format!("service={service}"),
                user,
                password,
            ],
            b"",
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) if text.contains("succeeded") => true,
            Some(_) if text.contains("failed") => false,
            _ => panic!("doveadm auth test: {out:?}\n{}", self.log()),
        }
    }

    /// A POP3 session logged in as `user` with `password` (USER/PASS), or
    /// the server's `-ERR` line.
    pub fn try_pop3(&self, user: &str, password: &str) -> Result<Pop3, String> {
        need_service("pop3", "dovecot-pop3d");
        let port = self.pop3_port.expect("this Dovecot has no POP3 listener");
        let mut c = Pop3::connect(port);
        c.command(&format!("USER {user}"))?;
        c.command(&format!("PASS {password}"))?;
        Ok(c)
    }

    /// A ManageSieve session logged in as `user` with `password`.
    pub fn managesieve(&self, user: &str, password: &str) -> ManageSieve {
        let port = self
            .sieve_port
            .expect("this Dovecot has no ManageSieve listener");
        let mut c = ManageSieve::connect(port);
        let creds = base64(format!("\0{user}\0{password}").as_bytes());
        c.command(format!("AUTHENTICATE \"PLAIN\" \"{creds}\"\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("ManageSieve AUTHENTICATE {user}: {e}\n{}", self.log()));
        c
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// An IMAP quoted string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One response line, with any literals (`{n}` at a line's end) read and
/// inlined, so a response is one string.
fn read_response_line(r: &mut BufReader<TcpStream>) -> String {
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).unwrap();
        assert!(n > 0, "the server closed the connection after {out:?}");
        out.extend_from_slice(&line);
        let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
        let literal = trimmed
            .strip_suffix(b"}")
            .and_then(|t| t.iter().rposition(|&c| c == b'{').map(|i| &t[i + 1..]))
            .and_then(|n| {
                std::str::from_utf8(n)
                    .ok()?
                    .trim_end_matches('+')
                    .parse()
                    .ok()
            });
        match literal {
            Some(len) => {
                let mut buf = vec![0; len];
                r.read_exact(&mut buf).unwrap();
                out.extend_from_slice(&buf);
            }
            None => return String::from_utf8_lossy(&out).into_owned(),
        }
    }
}

fn connect(port: u16) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    (BufReader::new(s.try_clone().unwrap()), s)
}

/// Enough IMAP (RFC 9051) to read folders and flags.
pub struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

/// One message as IMAP shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapMessage {
    /// System and keyword flags, `\Recent` left out, sorted.
    pub flags: Vec<String>,
    pub subject: String,
}

impl Imap {
    fn connect(port: u16) -> Imap {
        let (mut r, w) = connect(port);
        let greeting = read_response_line(&mut r);
        assert!(greeting.starts_with("* OK"), "IMAP greeting {greeting:?}");
        Imap { r, w, tag: 0 }
    }

    /// Send one command; its untagged responses, or the tagged NO/BAD.
    pub fn command(&mut self, cmd: &str) -> Result<Vec<String>, String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.w
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .unwrap();
        let mut untagged = Vec::new();
        loop {
            let line = read_response_line(&mut self.r);
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                return if rest.starts_with("OK") {
                    Ok(untagged)
                } else {
                    Err(line)
                };
            }
            untagged.push(line);
        }
    }

    /// The mailbox names LIST "" "*" shows, sorted.
    pub fn list(&mut self) -> Vec<String> {
        let lines = self.command("LIST \"\" \"*\"").unwrap();
        let mut names: Vec<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("* LIST "))
            .map(|l| {
                // (attrs) "sep" name
                let after = &l[l.find(')').unwrap() + 1..];
                let after = after.trim_start();
                let after = &after[after[1..].find('"').unwrap() + 2..];
                after.trim().trim_matches('"').to_string()
            })
            .collect();
        names.sort();
        names
    }

    /// EXAMINE `mailbox` and FETCH every message's flags and subject, in
    /// sequence order.
    pub fn messages(&mut self, mailbox: &str) -> Result<Vec<ImapMessage>, String> {
        let sel = self.command(&format!("EXAMINE {}", quote(mailbox)))?;
        let exists: usize = sel
            .iter()
            .find_map(|l| {
                l.strip_prefix("* ")?
                    .strip_suffix(" EXISTS\r\n")?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("EXAMINE {mailbox}: no EXISTS in {sel:?}"));
        if exists == 0 {
            return Ok(Vec::new());
        }
        let lines = self.command("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")?;
        let mut out = Vec::new();
        for l in lines.iter().filter(|l| l.contains(" FETCH (")) {
            let f = &l[l.find("FLAGS (").unwrap() + 7..];
            let f = &f[..f.find(')').unwrap()];
            let mut flags: Vec<String> = f
                .split_whitespace()
                .filter(|x| *x != "\\Recent")
                .map(str::to_string)
                .collect();
            flags.sort();
            let subject = l
                .find("Subject: ")
                .map(|i| {
                    let s = &l[i + 9..];
                    s[..s.find("\r\n").unwrap_or(s.len())].to_string()
                })
                .unwrap_or_default();
            out.push(ImapMessage { flags, subject });
        }
        assert_eq!(out.len(), exists, "{lines:?}");
        Ok(out)
    }
}

/// Enough ManageSieve (RFC 5804) to upload and activate a script.
pub struct ManageSieve {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl ManageSieve {
    fn connect(port: u16) -> ManageSieve {
        let (r, w) = connect(port);
        let mut c = ManageSieve { r, w };
        // The capabilities, ended by OK.
        c.read_until_status().unwrap();
        c
    }

    fn read_until_status(&mut self) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        loop {
            let line = read_response_line(&mut self.r);
            if line.starts_with("OK") {
                return Ok(lines);
            }
            if line.starts_with("NO") || line.starts_with("BYE") {
                return Err(line);
            }
            lines.push(line);
        }
    }

    /// Send raw command bytes (CRLF included); the response lines before
    /// OK, or the NO/BYE line.
    pub fn command(&mut self, raw: &[u8]) -> Result<Vec<String>, String> {
        self.w.write_all(raw).unwrap();
        self.read_until_status()
    }

    /// PUTSCRIPT as a non-synchronizing literal.
    pub fn putscript(&mut self, name: &str, script: &[u8]) -> Result<(), String> {
        let mut raw = format!("PUTSCRIPT {} {{{}+}}\r\n", quote(name), script.len()).into_bytes();
        raw.extend_from_slice(script);
        raw.extend_from_slice(b"\r\n");
        self.command(&raw).map(drop)
    }

    pub fn setactive(&mut self, name: &str) -> Result<(), String> {
        self.command(format!("SETACTIVE {}\r\n", quote(name)).as_bytes())
            .map(drop)
    }

    /// LISTSCRIPTS: (name, active).
    pub fn listscripts(&mut self) -> Vec<(String, bool)> {
        let lines = self.command(b"LISTSCRIPTS\r\n").unwrap();
        let mut v: Vec<(String, bool)> = lines
            .iter()
            .map(|l| {
                let l = l.trim_end();
                let end = l[1..].find('"').unwrap() + 1;
                (l[1..end].to_string(), l[end + 1..].trim() == "ACTIVE")
            })
            .collect();
        v.sort();
        v
    }
}

/// Enough POP3 (RFC 1939) to log in and list unique ids.
pub struct Pop3 {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pop3 {
    fn connect(port: u16) -> Pop3 {
        let (mut r, w) = connect(port);
        let greeting = read_response_line(&mut r);
        assert!(greeting.starts_with("+OK"), "POP3 greeting {greeting:?}");
        Pop3 { r, w }
    }

    /// One command; its `+OK` line, or the `-ERR` line as the error.
    pub fn command(&mut self, cmd: &str) -> Result<String, String> {
        self.w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let line = read_response_line(&mut self.r).trim_end().to_owned();
        if line.starts_with("+OK") {
            Ok(line)
        } else {
            Err(line)
        }
    }

    /// `UIDL`: (message number, unique id) for each message.
    pub fn uidl(&mut self) -> Vec<(u32, String)> {
        self.command("UIDL").unwrap();
        let mut out = Vec::new();
        loop {
            let line = read_response_line(&mut self.r).trim_end().to_owned();
            if line == "." {
                return out;
            }
            let (n, id) = line.split_once(' ').expect("UIDL line");
            out.push((n.parse().unwrap(), id.to_owned()));
        }
    }
}
