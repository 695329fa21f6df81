//! Tests of the test harness itself: if these fail, nothing else is worth
//! reading.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::pg::{postmaster_pid, Pg};
use crate::common::unpriv::{
    command_as_unprivileged, is_root, temp_dir_for_unpriv, unpriv_uid_gid,
};

#[test]
fn shared_cluster_answers_select_1() {
    let db = Pg::shared().fresh_db();
    let got: i32 = db.client().query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(got, 1);
}

#[test]
fn shared_cluster_listens_on_its_unix_socket_only() {
    let pg = Pg::shared();
    assert!(pg
        .socket_dir()
        .join(format!(".s.PGSQL.{}", pg.port()))
        .exists());
    let row = pg
        .admin_client()
        .query_one("SELECT current_setting('listen_addresses')", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "");
}

#[test]
fn fresh_dbs_are_distinct() {
    let pg = Pg::shared();
    let a = pg.fresh_db();
    let b = pg.fresh_db();
    assert_ne!(a.name, b.name);
    assert_ne!(a.url, b.url);
    a.execute("CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (42)");
    let got: i32 = a
        .client()
        .query_one("SELECT x FROM only_in_a", &[])
        .unwrap()
        .get(0);
    assert_eq!(got, 42);
    let in_b = b
        .client()
        .query_one("SELECT to_regclass('only_in_a') IS NOT NULL", &[])
        .unwrap()
        .get::<_, bool>(0);
    assert!(!in_b, "a table made in {} is visible in {}", a.name, b.name);
    let current: String = b
        .client()
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(current, b.name);
}

#[test]
fn many_fresh_dbs_in_parallel() {
    let names: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| Pg::shared().fresh_db().name))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[test]
fn private_cluster_stops_and_starts() {
    let pg = Pg::private();
    let db = pg.fresh_db();
    db.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)");

    pg.stop();
    assert!(
        postgres::Client::connect(&db.url, postgres::NoTls).is_err(),
        "connected to a stopped cluster"
    );

    pg.start();
    let got: i32 = db
        .client()
        .query_one("SELECT x FROM kept", &[])
        .unwrap()
        .get(0);
    assert_eq!(got, 7);
}

#[test]
fn private_cluster_drop_removes_everything() {
    let pg = Pg::private();
    let data_dir = pg.data_dir().to_path_buf();
    let dir = data_dir.parent().unwrap().to_path_buf();
    let pid = postmaster_pid(&data_dir).expect("a running cluster has a postmaster.pid");
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!process_alive(pid.as_raw_nonzero().get()));
}

const CHILD_ENV: &str = "VDELIVER_HARNESS_SELFTEST_CHILD_OUT";

/// A private cluster has a live postmaster. Run again by
/// `reaper_cleans_up_after_sigkill` in a child process (with `CHILD_ENV`
/// set), where it also says where the cluster is and dies by SIGKILL without
/// running any destructor.
#[test]
fn private_cluster_has_live_postmaster() {
    let pg = Pg::private();
    let pid = postmaster_pid(pg.data_dir()).expect("postmaster.pid");
    assert!(
        process_alive(pid.as_raw_nonzero().get()),
        "postmaster not running"
    );
    let Some(out) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let report = format!("{}\n{}\n", pg.data_dir().display(), pid.as_raw_nonzero());
    std::fs::write(out, report).unwrap();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
        .unwrap();
    unreachable!("survived SIGKILL");
}

#[test]
fn reaper_cleans_up_after_sigkill() {
    let scratch = tempfile::tempdir().unwrap();
    let report = scratch.path().join("report");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "harness_selftest::private_cluster_has_live_postmaster",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(9), "child test ended with {status}");

    let report = std::fs::read_to_string(&report).expect("the child wrote its report");
    let mut lines = report.lines();
    let data_dir = PathBuf::from(lines.next().unwrap());
    let pid: i32 = lines.next().unwrap().parse().unwrap();
    let dir = data_dir.parent().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while (dir.exists() || process_alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!process_alive(pid), "postmaster {pid} still running");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn command_as_unprivileged_drops_root() {
    let out = command_as_unprivileged(Path::new("/usr/bin/id"))
        .arg("-u")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let uid: u32 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if is_root() {
        assert_ne!(uid, 0);
        assert_eq!(uid, unpriv_uid_gid().0);
    } else {
        assert_eq!(uid, rustix::process::getuid().as_raw());
    }
}

#[test]
fn unprivileged_user_writes_in_its_temp_dir() {
    let dir = temp_dir_for_unpriv();
    let file = dir.path().join("made-by-unpriv");
    let status = command_as_unprivileged(Path::new("/usr/bin/touch"))
        .arg(&file)
        .env_clear()
        .status()
        .unwrap();
    assert!(status.success());
    let meta = std::fs::metadata(&file).expect("the file exists");
    assert_eq!(meta.uid(), unpriv_uid_gid().0);
}

#[test]
fn unprivileged_user_reaches_the_server_socket() {
    let pg = Pg::shared();
    let socket = pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port()));
    let status = command_as_unprivileged(Path::new("/bin/sh"))
        .args(["-c", r#"test -S "$1" && test -w "$1""#, "sh"])
        .arg(&socket)
        .env_clear()
        .status()
        .unwrap();
    assert!(status.success(), "{} not usable", socket.display());
}

/// Whether `pid` names a process that has not exited (zombies count as
/// exited: nobody may be left to reap them).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => false,
    }
}
