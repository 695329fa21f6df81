//! Issue 10, the process-level items: stdin integrity (2), a hung database
//! (3), undecodable envelope bytes (6), privileges (14) and connection
//! errors that name their cause (20).

use crate::common::pg::Pg;
use crate::common::site::{bin, qmail_env, set, unset, Site};
use crate::common::unpriv::{command_as_unprivileged, setpriv_path, unpriv_uid_gid};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MSG: &[u8] = b"From: bob@remote.org\nTo: alice@example.com\nSubject: hi\n\nHello Alice.\n";
const ALICE: &str = "example.com/alice/Maildir/";

/// Wait for `child` at most `limit` (then kill it); the output and how long
/// it took from `start`.
fn wait_limited(mut child: Child, start: Instant, limit: Duration) -> (Output, Duration) {
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    (child.wait_with_output().unwrap(), took)
}

fn line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Nothing in the Maildir: neither visible nor left in `tmp/`.
fn untouched(s: &Site) {
    assert!(s.files(ALICE, "new").is_empty(), "new/ not empty");
    assert!(s.files(ALICE, "tmp").is_empty(), "tmp/ not empty");
}

/// Replace the timeouts the site's config was written with.
fn set_timeouts(s: &Site, connect: &str, statement: &str) {
    let text = fs::read_to_string(&s.config).unwrap();
    assert!(text.contains("connect_timeout = \"5s\""), "{text}");
    let text = text
        .replace(
            "connect_timeout = \"5s\"",
            &format!("connect_timeout = \"{connect}\""),
        )
        .replace(
            "statement_timeout = \"10s\"",
            &format!("statement_timeout = \"{statement}\""),
        );
    fs::write(&s.config, text).unwrap();
}

// ---------------------------------------------------------------- item 2

/// vdeliver run through `sh -c` so that its fd 0 can be closed first.
fn deliver_with_shell(s: &Site, redirect: &str) -> Output {
    let mut c = command_as_unprivileged(Path::new("/bin/sh"));
    c.arg("-c")
        .arg(format!("exec \"$0\" {redirect}"))
        .arg(bin("vdeliver"))
        .env_clear()
        .envs(qmail_env("alice@example.com", "bob@remote.org"))
        .env("VDELIVER_CONFIG", &s.config)
        .current_dir(&s.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.output().unwrap()
}

#[test]
fn issue10_closed_stdin_defers_and_stores_nothing() {
    let s = Site::new();
    s.account("alice@example.com");
    for redirect in ["<&-", "</dev/null"] {
        let o = deliver_with_shell(&s, redirect);
        assert_eq!(o.status.code(), Some(111), "{redirect}: {o:?}");
        let l = line(&o);
        assert!(
            l.contains("stdin is /dev/null") && l.contains("#4.3.5"),
            "{l}"
        );
        assert!(!s.maildir(ALICE).exists(), "{redirect}: a Maildir was made");
    }
    // An empty message from an empty file, and a message on a pipe, are
    // still delivered.
    let r = s.deliver("alice@example.com", "bob@remote.org", b"");
    assert_eq!(r.code, Some(0), "{r:?}");
    let mut child = s
        .command(&qmail_env("alice@example.com", "bob@remote.org"), &[])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(MSG).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(s.files(ALICE, "new").len(), 2);
}

/// A message file and a delivery of it that waits (for a table lock the
/// test holds) after vdeliver has looked at stdin and before it reads it;
/// `change` runs on the file in between.
fn deliver_changing_file(s: &Site, env: &[(String, String)], change: impl FnOnce(&Path)) -> Output {
    let path = s.dir.path().join("message");
    let mut msg = MSG.to_vec();
    msg.extend(std::iter::repeat_n(b'x', 300_000));
    msg.push(b'\n');
    fs::write(&path, &msg).unwrap();
    let mut locker = s.db.client();
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE domains IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let start = Instant::now();
    let child = s
        .command(env, &[])
        .stdin(fs::File::open(&path).unwrap())
        .spawn()
        .unwrap();
    let mut watcher = s.db.client();
    loop {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vdeliver' \
                 AND wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "vdeliver never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    change(&path);
    tx.commit().unwrap();
    wait_limited(child, start, Duration::from_secs(60)).0
}

#[test]
fn issue10_regular_stdin_that_shrinks_or_grows_defers_and_stores_nothing() {
    let s = Site::new();
    s.account("alice@example.com");
    let env = qmail_env("alice@example.com", "bob@remote.org");
    let o = deliver_changing_file(&s, &env, |p| {
        fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(1000)
            .unwrap();
    });
    assert_eq!(o.status.code(), Some(111), "{o:?}");
    assert!(line(&o).contains("shrank"), "{}", line(&o));
    untouched(&s);

    let o = deliver_changing_file(&s, &env, |p| {
        fs::OpenOptions::new()
            .append(true)
            .open(p)
            .unwrap()
            .write_all(b"appended later\n")
            .unwrap();
    });
    assert_eq!(o.status.code(), Some(111), "{o:?}");
    assert!(line(&o).contains("grew"), "{}", line(&o));
    untouched(&s);

    // Forwarded only (streamed to qmail-queue): nothing is queued.
    s.ctl_ok(&["alias", "add", "fwd@example.com", "bob@other.org"]);
    let mut env = qmail_env("fwd@example.com", "bob@remote.org");
    env.extend(s.queue_env(0, &[]));
    let o = deliver_changing_file(&s, &env, |p| {
        fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(10)
            .unwrap();
    });
    assert_eq!(o.status.code(), Some(111), "{o:?}");
    assert!(s.queued().is_empty(), "a short message was queued");

    // Unchanged, the same message is delivered whole.
    let o = deliver_changing_file(
        &s,
        &qmail_env("alice@example.com", "bob@remote.org"),
        |_| {},
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let (_, bytes) = s.only_message(ALICE);
    assert!(bytes.ends_with(b"xxx\n") && bytes.len() > 300_000);
}

// ---------------------------------------------------------------- item 3

#[test]
fn issue10_server_that_accepts_and_never_answers_defers_within_bounds() {
    let s = Site::new();
    s.account("alice@example.com");
    set_timeouts(&s, "2s", "2s");
    // A TCP listener and a Unix socket that accept (the kernel's backlog
    // does) and never answer the start-up packet.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let sock_dir = s.dir.path().join("silent");
    fs::create_dir(&sock_dir).unwrap();
    let unix = std::os::unix::net::UnixListener::bind(sock_dir.join(".s.PGSQL.5432")).unwrap();
    crate::common::unpriv::chown_for_unpriv(&sock_dir);
    let urls = [
        format!("host=127.0.0.1 port={port} user=vd dbname=vd"),
        format!("host={} port=5432 user=vd dbname=vd", sock_dir.display()),
    ];
    let mut current = s.db.url.clone();
    for url in &urls {
        s.set_database_url_from(&current, url);
        current = url.clone();
        let start = Instant::now();
        let child = s
            .command(&qmail_env("alice@example.com", "bob@remote.org"), &[])
            .stdin(s.message_file(MSG))
            .spawn()
            .unwrap();
        let (o, took) = wait_limited(child, start, Duration::from_secs(90));
        assert_eq!(o.status.code(), Some(111), "{url}: {o:?}");
        assert!(took < Duration::from_secs(10), "{url}: took {took:?}");
        // The socket connects; the start-up never finishes: the watchdog
        // ends it at connect_timeout (+ 1 s).
        assert!(
            line(&o).contains(
                "connecting to the database (database.connect_timeout) did not finish in time"
            ),
            "{}",
            line(&o)
        );
        assert!(!s.maildir(ALICE).exists());

        // vmailctl has no watchdog: its connect is bounded all the same.
        let start = Instant::now();
        let child = Command::new(bin("vmailctl"))
            .arg("--config")
            .arg(&s.config)
            .args(["account", "list", "example.com"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (o, took) = wait_limited(child, start, Duration::from_secs(90));
        assert_ne!(o.status.code(), Some(0), "{o:?}");
        assert!(o.status.code().is_some(), "vmailctl hung: {o:?}");
        assert!(took < Duration::from_secs(10), "vmailctl took {took:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("timed out"),
            "{o:?}"
        );
    }
    drop((tcp, unix));
}

/// SIGCONT for a stopped backend, whatever happens to the test.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

#[test]
fn issue10_stopped_backend_mid_lookup_defers_within_bounds() {
    let s = Site::new();
    s.account("alice@example.com");
    set_timeouts(&s, "2s", "2s");
    // The lookup waits for a lock the test holds; its backend is then
    // stopped, so neither the lock nor the server's own statement_timeout
    // can ever end the statement.
    let mut locker = s.db.client();
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE domains IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let start = Instant::now();
    let child = s
        .command(&qmail_env("alice@example.com", "bob@remote.org"), &[])
        .stdin(s.message_file(MSG))
        .spawn()
        .unwrap();
    let mut watcher = s.db.client();
    let pid: i32 = loop {
        let rows = watcher
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'vdeliver' \
                 AND wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .unwrap();
        if let Some(r) = rows.first() {
            break r.get(0);
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no waiting backend"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let _cont = Continue(pid);
    tx.commit().unwrap();
    let (o, took) = wait_limited(child, start, Duration::from_secs(90));
    assert_eq!(o.status.code(), Some(111), "{o:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(line(&o).contains("did not finish in time"), "{}", line(&o));
    assert!(!s.maildir(ALICE).exists());
}

// ---------------------------------------------------------------- item 6

const LATIN1_SENDER: &[u8] = b"j\xf6rg@remote.org";

/// What the stub queued, raw: (envelope, message) per run.
fn queued_raw(s: &Site) -> Vec<(Vec<u8>, Vec<u8>)> {
    let dir = s.dir.path().join("queue");
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "env"))
        .map(|p| {
            (
                fs::read(p).unwrap(),
                fs::read(p.with_extension("msg")).unwrap(),
            )
        })
        .collect()
}

#[test]
fn issue10_latin1_sender_is_stored_and_forwarded_byte_exact() {
    let s = Site::new();
    s.account("alice@example.com");
    s.ctl_ok(&[
        "alias",
        "add",
        "team@example.com",
        "alice@example.com",
        "bob@other.org",
    ]);
    let mut env = qmail_env("team@example.com", "x");
    unset(&mut env, "SENDER");
    unset(&mut env, "RPLINE");
    env.extend(s.queue_env(0, &[]));
    let o = s
        .command(&env, &[])
        .env("SENDER", OsStr::from_bytes(LATIN1_SENDER))
        .stdin(s.message_file(MSG))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let (_, bytes) = s.only_message(ALICE);
    let mut want = b"Return-Path: <j\xf6rg@remote.org>\nDelivered-To: team@example.com\n".to_vec();
    want.extend_from_slice(MSG);
    assert_eq!(bytes, want);
    let q = queued_raw(&s);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].0, b"Fj\xf6rg@remote.org\0Tbob@other.org\0\0");
    assert!(q[0].1.ends_with(MSG));

    // RPLINE with the same byte, forwarded only (streamed): kept as given.
    s.ctl_ok(&["alias", "add", "fwd@example.com", "carol@other.org"]);
    let mut env = qmail_env("fwd@example.com", "x");
    unset(&mut env, "SENDER");
    unset(&mut env, "RPLINE");
    env.extend(s.queue_env(0, &[]));
    let o = s
        .command(&env, &[])
        .env("SENDER", OsStr::from_bytes(LATIN1_SENDER))
        .env(
            "RPLINE",
            OsStr::from_bytes(b"Return-Path: <j\xf6rg@remote.org>\n"),
        )
        .stdin(s.message_file(MSG))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let q = queued_raw(&s);
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(q
        .iter()
        .any(|(e, _)| e == b"Fj\xf6rg@remote.org\0Tcarol@other.org\0\0"));

    // RPLINE alone decides the stored Return-Path line.
    let mut env = qmail_env("alice@example.com", "bob@remote.org");
    unset(&mut env, "RPLINE");
    let o = s
        .command(&env, &[])
        .env(
            "RPLINE",
            OsStr::from_bytes(b"Return-Path: <m\xfcller@remote.org>\n"),
        )
        .stdin(s.message_file(MSG))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let newest = s
        .files(ALICE, "new")
        .into_iter()
        .map(|f| fs::read(s.maildir(ALICE).join("new").join(f)).unwrap())
        .find(|b| {
            b.starts_with(b"Return-Path: <m\xfcller@remote.org>\nDelivered-To: alice@example.com\n")
        });
    assert!(newest.is_some(), "RPLINE not stored byte for byte");

    // The loop check still works with such a sender.
    let mut looped = b"Delivered-To: alice@example.com\n".to_vec();
    looped.extend_from_slice(MSG);
    let mut env = qmail_env("alice@example.com", "x");
    unset(&mut env, "SENDER");
    unset(&mut env, "RPLINE");
    let o = s
        .command(&env, &[])
        .env("SENDER", OsStr::from_bytes(LATIN1_SENDER))
        .stdin(s.message_file(&looped))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(100), "{o:?}");
    assert!(line(&o).contains("#5.4.6"), "{}", line(&o));
}

#[test]
fn issue10_undecodable_local_part_bounces_and_host_defers() {
    let s = Site::new();
    s.account("alice@example.com");
    let env = qmail_env("alice@example.com", "bob@remote.org");
    // (variable, value, want exit, want status)
    let cases: [(&str, &[u8], i32, &str); 4] = [
        ("EXT", b"example.com-j\xf6rg", 100, "#5.1.3"),
        ("EXT", b"j\xf6rg", 100, "#5.1.3"),
        ("DEFAULT", b"example.com-j\xf6rg", 100, "#5.1.3"),
        ("HOST", b"\xe9xample.com", 111, "#4.3.5"),
    ];
    for (var, value, want_exit, want_status) in cases {
        let mut env = env.clone();
        if var == "DEFAULT" {
            set(&mut env, "EXT", "example.com-");
        }
        unset(&mut env, var);
        let o = s
            .command(&env, &[])
            .env(var, OsStr::from_bytes(value))
            .stdin(s.message_file(MSG))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(want_exit), "{var}: {o:?}");
        let l = line(&o);
        assert!(
            l.contains(want_status) && l.contains("not valid UTF-8"),
            "{var}: {l}"
        );
    }
    assert!(!s.maildir(ALICE).exists());
}

// ---------------------------------------------------------------- item 14

#[test]
fn issue10_group_root_and_capabilities_are_refused() {
    assert!(
        crate::common::unpriv::is_root(),
        "this test needs root to hand out group 0 and capabilities"
    );
    let s = Site::new();
    s.account("alice@example.com");
    let (uid, gid) = unpriv_uid_gid();
    let (uid, gid) = (uid.to_string(), gid.to_string());
    let cases: [(&str, Vec<String>, &str); 3] = [
        (
            "real and effective gid 0",
            vec![format!("--reuid={uid}"), "--regid=0".into()],
            "group id 0",
        ),
        (
            "effective gid 0",
            vec![
                format!("--reuid={uid}"),
                format!("--rgid={gid}"),
                "--egid=0".into(),
            ],
            "group id 0",
        ),
        (
            "ambient CAP_DAC_OVERRIDE",
            vec![
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--inh-caps=+dac_override".into(),
                "--ambient-caps=+dac_override".into(),
            ],
            "capabilities",
        ),
    ];
    for (what, args, want) in cases {
        let o = Command::new(setpriv_path())
            .args(&args)
            .arg("--clear-groups")
            .arg("--")
            .arg(bin("vdeliver"))
            .env_clear()
            .envs(qmail_env("alice@example.com", "bob@remote.org"))
            .env("VDELIVER_CONFIG", &s.config)
            .current_dir(&s.root)
            .stdin(s.message_file(MSG))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(111), "{what}: {o:?}");
        let l = line(&o);
        assert!(l.contains("refuses") && l.contains(want), "{what}: {l}");
        assert_eq!(
            fs::read_dir(&s.root).unwrap().count(),
            0,
            "{what}: the mail root was touched"
        );
    }
    // The same user without them delivers.
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(0), "{r:?}");
}

// ---------------------------------------------------------------- item 20

#[test]
fn issue10_connection_errors_name_their_cause() {
    let s = Site::new();
    s.account("alice@example.com");
    set_timeouts(&s, "2s", "2s");
    let freed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_port = freed.local_addr().unwrap().port();
    drop(freed);
    let cases = [
        (
            "host=/nonexistent/socket/dir port=5432 user=vd dbname=vd password=Hunter2secret"
                .to_string(),
            "no such socket",
        ),
        (
            format!("host=127.0.0.1 port={refused_port} user=vd dbname=vd password=Hunter2secret"),
            "connection refused",
        ),
    ];
    let mut current = s.db.url.clone();
    for (url, want) in &cases {
        s.set_database_url_from(&current, url);
        current = url.clone();
        let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
        assert_eq!(r.code, Some(111), "{r:?}");
        assert!(r.stdout.contains(want), "{want}: {}", r.stdout);
        assert!(r.stdout.contains("connect to "), "{}", r.stdout);
        assert!(!r.stdout.contains("Hunter2secret"), "{}", r.stdout);
    }

    // A wrong password: a private cluster asking for SCRAM.
    let pg = Pg::private();
    let db = pg.fresh_db();
    let hba = pg.data_dir().join("pg_hba.conf");
    let old = fs::read_to_string(&hba).unwrap();
    fs::write(&hba, format!("local all vd_pw scram-sha-256\n{old}")).unwrap();
    let mut admin = pg.admin_client();
    admin
        .batch_execute(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE vd_pw LOGIN PASSWORD 'Right-Pass-77'; SELECT pg_reload_conf()",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let url = format!(
        "host={} port={} user=vd_pw dbname={} password=Wrong-Pass-42",
        pg.socket_dir().display(),
        pg.port(),
        db.name
    );
    s.set_database_url_from(&current, &url);
    let r = s.deliver("alice@example.com", "bob@remote.org", MSG);
    assert_eq!(r.code, Some(111), "{r:?}");
    assert!(
        r.stdout.contains("authentication failed") && r.stdout.contains("28P01"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("Wrong-Pass-42") && !r.stdout.contains("Right-Pass-77"),
        "{}",
        r.stdout
    );
    // vmailctl says the same.
    let c = s.ctl(&["check"], b"");
    let all = format!("{}{}", c.stdout, c.stderr);
    assert!(all.contains("authentication failed"), "{all}");
    assert!(!all.contains("Wrong-Pass-42"), "{all}");
}

trait UrlSwap {
    fn set_database_url_from(&self, old: &str, new: &str);
}

impl UrlSwap for Site {
    fn set_database_url_from(&self, old: &str, new: &str) {
        let text = fs::read_to_string(&self.config).unwrap();
        let from = format!("url = \"{old}\"");
        assert!(text.contains(&from), "{text}");
        fs::write(
            &self.config,
            text.replace(&from, &format!("url = \"{new}\"")),
        )
        .unwrap();
    }
}
