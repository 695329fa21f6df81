//! Debian's PgBouncer in transaction pooling mode in front of a test
//! cluster, run as the unprivileged user. Stopped when dropped.

use super::pg::Pg;
use super::unpriv::{chown_for_unpriv, command_as_unprivileged, temp_dir_for_unpriv};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct Bouncer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// Where Debian puts pgbouncer, or PATH.
pub fn pgbouncer_path() -> PathBuf {
    let debian = Path::new("/usr/sbin/pgbouncer");
    if super::is_executable(debian) {
        return debian.to_path_buf();
    }
    super::find_in_path("pgbouncer").unwrap_or_else(|| {
        panic!("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does this)")
    })
}

impl Bouncer {
    /// Start PgBouncer for database `dbname` of `pg`, transaction pooling.
    pub fn start(pg: &Pg, dbname: &str) -> Bouncer {
        let dir = temp_dir_for_unpriv();
        let port = 30000 + (std::process::id() % 20000) as u16;
        let ini = dir.path().join("pgbouncer.ini");
        let text = format!(
            "[databases]\n{dbname} = host={sock} port={pgport} user=postgres dbname={dbname}\n\
             [pgbouncer]\nlisten_addr =\nlisten_port = {port}\nunix_socket_dir = {dir}\n\
             auth_type = any\npool_mode = transaction\nmax_client_conn = 500\n\
             default_pool_size = 20\nignore_startup_parameters = options,extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            sock = pg.socket_dir().display(),
            pgport = pg.port(),
            dir = dir.path().display(),
        );
        fs::write(&ini, text).unwrap();
        chown_for_unpriv(dir.path());
        let child = command_as_unprivileged(&pgbouncer_path())
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let b = Bouncer { child, dir, port };
        let socket = b.dir.path().join(format!(".s.PGSQL.{port}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start: {}",
                b.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        b
    }

    /// A libpq key=value URL through the bouncer.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.dir.path().display(),
            self.port
        )
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
