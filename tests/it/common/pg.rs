//! A throwaway PostgreSQL cluster.
//!
//! Guarantees:
//! - The server listens on a Unix socket only (`listen_addresses = ''`), in a
//!   directory inside a fresh temporary directory that every user can reach:
//!   the product runs as `nobody` when the tests run as root.
//! - Every cluster is removed (server stopped, directory deleted) when the
//!   test process ends, however it ends: a reaper process waits for the end
//!   of a pipe only the test process holds, which the kernel closes on exit,
//!   SIGKILL included. A private cluster is also removed when dropped.
//! - A missing PostgreSQL installation is a panic naming what is missing,
//!   never a silently skipped test.
//!
//! As root (`initdb` refuses to run as root) the server runs as the
//! `postgres` OS user, or `nobody` when there is no such user.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::unpriv;

/// The PostgreSQL server programs used.
struct Tools {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    pg_basebackup: PathBuf,
}

/// The server programs from the highest-versioned `/usr/lib/postgresql/*/bin`
/// holding all of them, else from `PATH`.
fn tools() -> Result<&'static Tools, String> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    TOOLS.get_or_init(find_tools).as_ref().map_err(Clone::clone)
}

fn find_tools() -> Result<Tools, String> {
    const NEEDED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    let from_lib = versions.into_iter().rev().map(|(_, bin)| bin).find(|bin| {
        NEEDED
            .iter()
            .all(|tool| super::is_executable(&bin.join(tool)))
    });
    let tool = |name: &str| match &from_lib {
        Some(bin) => Some(bin.join(name)),
        None => super::find_in_path(name),
    };
    match (tool("initdb"), tool("pg_ctl"), tool("postgres")) {
        (Some(initdb), Some(pg_ctl), Some(_postgres)) => Ok(Tools {
            pg_basebackup: initdb.with_file_name("pg_basebackup"),
            initdb,
            pg_ctl,
        }),
        _ => Err(format!(
            "the integration tests need a PostgreSQL server installation ({}) in \
             /usr/lib/postgresql/*/bin or in PATH, and none was found \
             (Debian: apt-get install postgresql)",
            NEEDED.join(", ")
        )),
    }
}

/// The uid/gid the server runs as: `None` when the tests do not run as root.
fn server_user() -> Option<(u32, u32)> {
    if !unpriv::is_root() {
        return None;
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(u)) if !u.uid.is_root() => Some((u.uid.as_raw(), u.gid.as_raw())),
        _ => Some(unpriv::unpriv_uid_gid()),
    }
}

/// A port number for a new cluster. It only names the socket file (there is
/// no TCP listener), and each cluster has its own socket directory, so
/// clashes are harmless; still, vary it per process and per attempt.
fn next_port() -> u16 {
    static ATTEMPTS: AtomicU32 = AtomicU32::new(0);
    let n = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
    let port = 20_000 + (std::process::id().wrapping_add(n.wrapping_mul(7)) % 20_000);
    u16::try_from(port).expect("port < 40000")
}

/// Runs in the reaper: waits until the test process either writes `disarm`
/// (it cleaned up itself) or ends (the pipe closes), then stops the server
/// and removes the directory. Arguments: the directory, the data directory,
/// then the command that runs `pg_ctl` as the server user.
const REAPER_SCRIPT: &str = r#"
read -r word || word=
[ "$word" = disarm ] && exit 0
dir=$1 data=$2
shift 2
"$@" -D "$data" stop -m immediate -w -t 30 >/dev/null 2>&1
if [ -f "$data/postmaster.pid" ]; then
    read -r pid < "$data/postmaster.pid" && kill -KILL "$pid" 2>/dev/null
fi
rm -rf -- "$dir"
"#;

/// The reaper child and the write end of its stdin.
struct Reaper {
    child: Child,
    alive: ChildStdin,
}

/// A running (or, for a private one, stoppable) PostgreSQL cluster.
pub struct Pg {
    /// The temporary directory holding everything below.
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    /// Whom the server runs as, when the tests run as root.
    run_as: Option<(u32, u32)>,
    reaper: Option<Reaper>,
}

impl Pg {
    /// The cluster shared by all tests of this process, started on first use.
    pub fn shared() -> &'static Pg {
        static SHARED: OnceLock<Result<Pg, String>> = OnceLock::new();
        match SHARED.get_or_init(Pg::create) {
            Ok(pg) => pg,
            Err(e) => panic!("starting the shared PostgreSQL cluster failed: {e}"),
        }
    }

    /// A cluster of the caller's own, which it may stop and start. Dropping
    /// it stops the server and removes its directory.
    pub fn private() -> Pg {
        Pg::create().unwrap_or_else(|e| panic!("starting a private PostgreSQL cluster failed: {e}"))
    }

    /// The directory holding the server's Unix socket (libpq's `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port, which names the socket file `.s.PGSQL.<port>`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A libpq key=value connection string for `dbname` as the superuser
    /// `postgres` (trust authentication).
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            conninfo_value(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_value(dbname)
        )
    }

    /// A superuser connection to the `postgres` database.
    pub fn admin_client(&self) -> postgres::Client {
        postgres::Client::connect(&self.conninfo("postgres"), postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "connecting to the test cluster at {}: {e}\n{}",
                self.socket_dir.display(),
                self.log_tail()
            )
        })
    }

    /// A new, empty database with a name unique on this machine.
    pub fn fresh_db(&self) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "vdeliver_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.admin_client()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDb {
            url: self.conninfo(&name),
            name,
        }
    }

    /// Stops the server (fast shutdown) and waits until it is gone.
    pub fn stop(&self) {
        let out = self
            .pg_ctl()
            .args(["stop", "-m", "fast", "-w", "-t", "60"])
            .output();
        self.check("pg_ctl stop", out)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the server again on the same socket and waits until it
    /// accepts connections.
    pub fn start(&self) {
        self.try_start().unwrap_or_else(|e| panic!("{e}"));
    }

    fn create() -> Result<Pg, String> {
        let tools = tools()?;
        let pg = Pg::new_dir()?;
        let locale = if Path::new("/usr/lib/locale/C.utf8").exists() {
            "C.UTF-8"
        } else {
            "C"
        };
        let out = pg
            .as_server_user(&tools.initdb)
            .arg("-D")
            .arg(&pg.data_dir)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg(format!("--locale={locale}"))
            .output();
        pg.check("initdb", out)?;
        pg.configure_and_start()
    }

    /// A streaming-replication hot standby of this cluster (made with
    /// `pg_basebackup -R`), with its own socket; stoppable like a private
    /// cluster.
    pub fn standby(&self) -> Pg {
        let make = || -> Result<Pg, String> {
            let tools = tools()?;
            let pg = Pg::new_dir()?;
            let out = pg
                .as_server_user(&tools.pg_basebackup)
                .arg("-D")
                .arg(&pg.data_dir)
                .arg("-h")
                .arg(&self.socket_dir)
                .arg("-p")
                .arg(self.port.to_string())
                .args([
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                    "-c",
                    "fast",
                ])
                .output();
            pg.check("pg_basebackup", out)?;
            pg.configure_and_start()
        };
        make().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A fresh temporary directory with its reaper and a socket directory
    /// the server user owns.
    fn new_dir() -> Result<Pg, String> {
        let mut base = super::base_temp_dir();
        // A Unix socket path is at most 107 bytes:
        // <base>/vdeliver-pg-XXXXXX/sock/.s.PGSQL.NNNNN
        if base.as_os_str().len() > 60 {
            base = PathBuf::from("/tmp");
        }
        let dir = tempfile::Builder::new()
            .prefix("vdeliver-pg-")
            .tempdir_in(&base)
            .map_err(|e| format!("creating a temporary directory in {}: {e}", base.display()))?
            .keep();
        // From here on, dropping `pg` (or else the reaper) removes `dir`.
        let mut pg = Pg {
            data_dir: dir.join("data"),
            socket_dir: dir.join("sock"),
            log_file: dir.join("postgres.log"),
            dir,
            port: next_port(),
            run_as: server_user(),
            reaper: None,
        };
        pg.reaper = Some(pg.spawn_reaper()?);

        fs::create_dir(&pg.socket_dir)
            .map_err(|e| format!("mkdir {}: {e}", pg.socket_dir.display()))?;
        for d in [&pg.dir, &pg.socket_dir] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod 0755 {}: {e}", d.display()))?;
            if let Some((uid, gid)) = pg.run_as {
                std::os::unix::fs::chown(d, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", d.display()))?;
            }
        }
        Ok(pg)
    }

    /// Append the test settings (later lines win, so a standby's copy of
    /// its primary's file is overridden too) and start.
    fn configure_and_start(mut self) -> Result<Pg, String> {
        let pg = &mut self;
        let conf = pg.data_dir.join("postgresql.conf");
        let settings = format!(
            "\n# vdeliver integration tests\n\
             listen_addresses = ''\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0777\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            conf_string(&pg.socket_dir.to_string_lossy())
        );
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .map_err(|e| format!("appending to {}: {e}", conf.display()))?;

        // The port only names the socket file; if starting fails for any
        // reason, another name costs nothing to try.
        let mut result = pg.try_start();
        for _ in 0..2 {
            if result.is_ok() {
                break;
            }
            pg.port = next_port();
            result = pg.try_start();
        }
        result?;
        Ok(self)
    }

    fn try_start(&self) -> Result<(), String> {
        let out = self
            .pg_ctl()
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port))
            .arg("start")
            .output();
        self.check("pg_ctl start", out)
    }

    /// `pg_ctl -D <data>` as the server user.
    fn pg_ctl(&self) -> Command {
        let tools = tools().unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = self.as_server_user(&tools.pg_ctl);
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    /// A command running `program` as the server user, in a clean
    /// environment, from the cluster's directory (the server user may not
    /// be able to enter the test's working directory).
    fn as_server_user(&self, program: &Path) -> Command {
        let mut cmd = match self.run_as {
            Some((uid, gid)) => {
                let mut cmd = Command::new(unpriv::setpriv_path());
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
            None => Command::new(program),
        };
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LANG", "C")
            // Spares initdb its scan of the system's time zones.
            .env("TZ", "UTC")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    fn spawn_reaper(&self) -> Result<Reaper, String> {
        let tools = tools()?;
        let pg_ctl = self.as_server_user(&tools.pg_ctl);
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(REAPER_SCRIPT)
            .arg("vdeliver-pg-reaper")
            .arg(&self.dir)
            .arg(&self.data_dir)
            .arg(pg_ctl.get_program())
            .args(pg_ctl.get_args())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the test's process group, so a Ctrl-C that kills the
            // tests does not kill their cleanup.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the cleanup process /bin/sh: {e}"))?;
        let alive = child.stdin.take().expect("stdin is piped");
        Ok(Reaper { child, alive })
    }

    /// Turns a finished command into `Ok` or an error carrying its output
    /// and the end of the server log.
    fn check(&self, what: &str, out: std::io::Result<Output>) -> Result<(), String> {
        match out {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "{what} ({}) failed: {}\n{}{}{}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            )),
            Err(e) => Err(format!("{what}: cannot run: {e}")),
        }
    }

    /// The whole server log (for tests that count statements).
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_file).unwrap_or_default()).into_owned()
    }

    /// The last few kilobytes of the server log, for error messages.
    fn log_tail(&self) -> String {
        let Ok(mut f) = fs::File::open(&self.log_file) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        format!(
            "--- end of {} ---\n{}",
            self.log_file.display(),
            String::from_utf8_lossy(&buf)
        )
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["stop", "-m", "immediate", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = postmaster_pid(&self.data_dir) {
            // Still running after an immediate shutdown: do not leave it
            // behind without its data directory.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            std::thread::sleep(Duration::from_millis(100));
        }
        let removed = match fs::remove_dir_all(&self.dir) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if let Some(mut reaper) = self.reaper.take() {
            // Left armed if removing failed: it tries again when we exit.
            if removed {
                let _ = reaper.alive.write_all(b"disarm\n");
                drop(reaper.alive);
                let _ = reaper.child.wait();
            } else {
                std::mem::forget(reaper);
            }
        }
    }
}

/// The postmaster's pid from `postmaster.pid`, if that file exists.
pub fn postmaster_pid(data_dir: &Path) -> Option<rustix::process::Pid> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let raw: i32 = text.lines().next()?.trim().parse().ok()?;
    rustix::process::Pid::from_raw(raw)
}

/// `value` as a libpq connection-string value, quoted when needed.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `value` as a postgresql.conf string literal.
fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A database of its own on a test cluster. Dropping it leaves the database
/// in place (the cluster goes away with the test process).
pub struct TestDb {
    /// libpq key=value form: `host=<socket dir> port=<port> user=postgres dbname=<name>`.
    pub url: String,
    pub name: String,
}

impl TestDb {
    /// A new connection to this database.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url))
    }

    /// Runs `sql` (any number of statements); panics on error.
    pub fn execute(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("in {}: {e}\nSQL: {sql}", self.name));
    }
}
