//! A whole installation for one test: a fresh database (migrated with the
//! real `vmailctl`), a mail root owned by the unprivileged user, a config
//! file, and the real `vdeliver` run the way qmail-local runs it.

use super::pg::{Pg, TestDb};
use super::unpriv::{chown_for_unpriv, command_as_unprivileged, is_root, temp_dir_for_unpriv};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The product binaries, copied where the unprivileged user can run them
/// (the checkout itself may sit in a directory only root can enter).
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = super::base_temp_dir();
        // Remove copies left by earlier runs whose process is gone.
        if let Ok(entries) = fs::read_dir(&base) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = n.strip_prefix("vdeliver-it-bin-") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = base.join(format!("vdeliver-it-bin-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        for (n, src) in [
            ("vdeliver", env!("CARGO_BIN_EXE_vdeliver")),
            ("vmailctl", env!("CARGO_BIN_EXE_vmailctl")),
        ] {
            let tmp = dir.join(format!(".{n}.tmp"));
            fs::copy(src, &tmp).unwrap();
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
            fs::rename(&tmp, dir.join(n)).unwrap();
        }
        dir
    });
    dir.join(name)
}

/// The stand-in qmail-queue (tests/it/stubs/qmail_queue.rs), compiled
/// once per test process with plain rustc into the binaries' directory.
pub fn qmail_queue_stub() -> PathBuf {
    static STUB: OnceLock<PathBuf> = OnceLock::new();
    STUB.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/stubs/qmail_queue.rs");
        let out = bin("vdeliver").with_file_name("qmail-queue");
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let status = Command::new(&rustc)
            .args(["--edition", "2021", "-O", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {rustc:?} to build the qmail-queue stub: {e}"));
        assert!(status.success(), "building the qmail-queue stub failed");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).unwrap();
        out
    })
    .clone()
}

/// What the stub qmail-queue received in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub message: Vec<u8>,
    pub sender: String,
    pub recipients: Vec<String>,
}

/// The result of one vdeliver run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub struct Site {
    pub db: TestDb,
    /// Holds the mail root, the config and scratch files.
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
}

impl Site {
    /// A directory the stub qmail-queue (running as the unprivileged user)
    /// records into; and the environment that points vdeliver at the stub.
    pub fn queue_env(&self, exit: i32, snapshot: &[&str]) -> Vec<(String, String)> {
        let dir = self.dir.path().join("queue");
        if !dir.exists() {
            fs::create_dir(&dir).unwrap();
            chown_for_unpriv(&dir);
        }
        let snap: Vec<String> = snapshot
            .iter()
            .map(|m| self.maildir(m).display().to_string())
            .collect();
        vec![
            (
                "QMAILQUEUE".into(),
                qmail_queue_stub().display().to_string(),
            ),
            ("STUB_DIR".into(), dir.display().to_string()),
            ("STUB_EXIT".into(), exit.to_string()),
            ("STUB_SNAPSHOT".into(), snap.join(":")),
        ]
    }

    /// Everything the stub queued so far (complete envelopes, exit 0).
    pub fn queued(&self) -> Vec<Queued> {
        let dir = self.dir.path().join("queue");
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&dir) else {
            return out;
        };
        let mut names: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "env"))
        {
            let env = fs::read(p).unwrap();
            let message = fs::read(p.with_extension("msg")).unwrap();
            let mut parts = env.split(|b| *b == 0);
            let sender = String::from_utf8(parts.next().unwrap()[1..].to_vec()).unwrap();
            let recipients = parts
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8(p[1..].to_vec()).unwrap())
                .collect();
            out.push(Queued {
                message,
                sender,
                recipients,
            });
        }
        out
    }

    /// The snapshots the stub took of the Maildirs it was told to watch.
    pub fn queue_snapshots(&self) -> Vec<String> {
        let dir = self.dir.path().join("queue");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "snap"))
            .map(|p| fs::read_to_string(p).unwrap())
            .collect()
    }

    /// A migrated database with `example.com`, and an empty mail root.
    pub fn new() -> Site {
        Site::with_config("")
    }

    /// As [`Site::new`], with extra TOML appended to the `[mail]`-less
    /// config (give whole sections).
    pub fn with_config(extra: &str) -> Site {
        Site::on(Pg::shared(), extra, true)
    }

    /// A site on a given cluster; `migrate` false leaves the database empty.
    pub fn on(pg: &Pg, extra: &str, migrate: bool) -> Site {
        let db = pg.fresh_db();
        let dir = temp_dir_for_unpriv();
        let root = dir.path().join("vmail");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        chown_for_unpriv(&root);
        let config = dir.path().join("config.toml");
        let text = format!(
            "[database]\nurl = \"{}\"\nconnect_timeout = \"5s\"\nstatement_timeout = \"10s\"\n\
             [mail]\nroot = \"{}\"\n{extra}",
            db.url,
            root.display()
        );
        fs::write(&config, text).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
        let site = Site {
            db,
            dir,
            root,
            config,
        };
        if migrate {
            site.ctl_ok(&["migrate"]);
            site.ctl_ok(&["domain", "add", "example.com"]);
        }
        site
    }

    /// Point the configuration's `database.url` elsewhere (PgBouncer, a
    /// standby).
    pub fn set_database_url(&self, url: &str) {
        let text = fs::read_to_string(&self.config).unwrap();
        let old = format!("url = \"{}\"", self.db.url);
        assert!(text.contains(&old), "config has no url line: {text}");
        fs::write(
            &self.config,
            text.replace(&old, &format!("url = \"{url}\"")),
        )
        .unwrap();
    }

    /// Run vmailctl (as the current user: it is an admin tool).
    pub fn ctl(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut child = Command::new(bin("vmailctl"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap().into()
    }

    /// Run vmailctl with `--json`, expecting exit 0, and parse stdout.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let r = self.ctl(&a, b"");
        assert_eq!(r.code, Some(0), "vmailctl {a:?}: {r:?}");
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{a:?}: {e}: {}", r.stdout))
    }

    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let r = self.ctl(args, b"");
        assert_eq!(r.code, Some(0), "vmailctl {args:?}: {r:?}");
        r.stdout
    }

    /// Add an account with the default Maildir path.
    pub fn account(&self, address: &str) {
        self.ctl_ok(&["account", "add", address]);
    }

    /// Write a message into a file and open it, the way qmail-local hands
    /// over its queue file: a regular, seekable file at offset 0.
    pub fn message_file(&self, msg: &[u8]) -> fs::File {
        let mut f = tempfile::tempfile_in(self.dir.path()).unwrap();
        f.write_all(msg).unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f
    }

    /// vdeliver with exactly the given environment (plus VDELIVER_CONFIG),
    /// run as the unprivileged user, cwd = mail root, the message as a
    /// regular file on stdin.
    pub fn deliver_env(&self, env: &[(String, String)], msg: &[u8]) -> Run {
        self.command(env, &[])
            .stdin(self.message_file(msg))
            .output()
            .unwrap()
            .into()
    }

    /// The command, not yet run.
    pub fn command(&self, env: &[(String, String)], args: &[&str]) -> Command {
        let mut c = command_as_unprivileged(&bin("vdeliver"));
        c.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("VDELIVER_CONFIG", &self.config)
            .current_dir(&self.root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Deliver to `to` (e.g. `Alice@Example.COM`) from `from`, with the
    /// environment qmail-local gives for `control/virtualdomains` =
    /// `example.com:vmail-example.com` and `|vdeliver` in `.qmail-default`.
    pub fn deliver(&self, to: &str, from: &str, msg: &[u8]) -> Run {
        self.deliver_env(&qmail_env(to, from), msg)
    }

    /// vdeliver run under a tool (strace, say): `tool[0]` is found in PATH,
    /// the rest of `tool` and `tool_args` go before `-- vdeliver`. Run as
    /// the unprivileged user, like [`Site::command`].
    pub fn command_via(
        &self,
        env: &[(String, String)],
        tool: &[&str],
        tool_args: &[&str],
    ) -> Command {
        let path = super::find_in_path(tool[0])
            .unwrap_or_else(|| panic!("{} is not installed (.ci/run installs it)", tool[0]));
        let mut c = command_as_unprivileged(&path);
        c.args(&tool[1..])
            .args(tool_args)
            .arg("--")
            .arg(bin("vdeliver"))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("VDELIVER_CONFIG", &self.config)
            .current_dir(&self.root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// The absolute path of a Maildir (relative to the root).
    pub fn maildir(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The files in `<maildir>/<sub>`, sorted.
    pub fn files(&self, rel: &str, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = match fs::read_dir(self.maildir(rel).join(sub)) {
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    /// The one message in `<maildir>/new`, asserting there is exactly one.
    pub fn only_message(&self, rel: &str) -> (String, Vec<u8>) {
        let files = self.files(rel, "new");
        assert_eq!(files.len(), 1, "{rel}new/ holds {files:?}");
        let bytes = fs::read(self.maildir(rel).join("new").join(&files[0])).unwrap();
        (files[0].clone(), bytes)
    }
}

pub use super::throwaway::qmail_env;

/// Replace (or add) one variable.
pub fn set(env: &mut Vec<(String, String)>, k: &str, val: &str) {
    env.retain(|(n, _)| n != k);
    env.push((k.to_string(), val.to_string()));
}

/// Remove one variable.
pub fn unset(env: &mut Vec<(String, String)>, k: &str) {
    env.retain(|(n, _)| n != k);
}

/// Whether the tests run as root (CI does).
pub fn running_as_root() -> bool {
    is_root()
}
