//! Running the product as an unprivileged user.
//!
//! qmail-local never runs a delivery program as root. When the tests run as
//! root (as CI does) the product is started through `setpriv` as `nobody`,
//! and what it must write to is handed over to that user first. When the
//! tests run as an ordinary user, everything runs as that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Whether the test process runs with effective uid 0.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid and gid the product runs as: `nobody`'s (65534/65534 when there is
/// no such user) when the tests run as root, the current ones otherwise.
pub fn unpriv_uid_gid() -> (u32, u32) {
    if is_root() {
        static NOBODY: OnceLock<(u32, u32)> = OnceLock::new();
        *NOBODY.get_or_init(|| match nix::unistd::User::from_name("nobody") {
            Ok(Some(u)) if !u.uid.is_root() => (u.uid.as_raw(), u.gid.as_raw()),
            _ => (65534, 65534),
        })
    } else {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    }
}

/// The absolute path of `setpriv`, looked up once. Callers clear the
/// environment of the commands they build, so it cannot be left to `PATH`.
pub fn setpriv_path() -> &'static Path {
    static SETPRIV: OnceLock<PathBuf> = OnceLock::new();
    SETPRIV.get_or_init(|| {
        ["/usr/bin/setpriv", "/bin/setpriv"]
            .iter()
            .map(PathBuf::from)
            .find(|p| super::is_executable(p))
            .or_else(|| super::find_in_path("setpriv"))
            .unwrap_or_else(|| {
                panic!(
                    "the tests run as root and need `setpriv` to drop privileges, \
                     but it is neither in /usr/bin nor in PATH (Debian: apt-get install util-linux)"
                )
            })
    })
}

/// A command that runs `program` (give an absolute path: callers clear the
/// environment, `PATH` included) as the unprivileged user.
///
/// As root: `setpriv --reuid=UID --regid=GID --clear-groups -- program`, so
/// arguments added by the caller go to `program`. Otherwise just
/// `Command::new(program)`.
pub fn command_as_unprivileged(program: &Path) -> Command {
    if !is_root() {
        return Command::new(program);
    }
    let (uid, gid) = unpriv_uid_gid();
    let mut cmd = Command::new(setpriv_path());
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program);
    cmd
}

/// Hands `path` and everything below it to the unprivileged user when the
/// tests run as root (no-op otherwise). Symbolic links are not followed.
pub fn chown_for_unpriv(path: &Path) {
    if !is_root() {
        return;
    }
    let (uid, gid) = unpriv_uid_gid();
    chown_tree(path, uid, gid);
}

/// Recursively `lchown`s `path` to `uid:gid`; panics on any error.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {uid}:{gid} {}: {e}", path.display()));
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    if meta.is_dir() {
        let entries =
            std::fs::read_dir(path).unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()));
            chown_tree(&entry.path(), uid, gid);
        }
    }
}

/// A fresh temporary directory (mode 0755, in a directory every user can
/// reach) owned by the unprivileged user when the tests run as root.
/// Removed when dropped.
pub fn temp_dir_for_unpriv() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("vdeliver-it-")
        .tempdir_in(super::base_temp_dir())
        .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod 0755 {}: {e}", dir.path().display()));
    chown_for_unpriv(dir.path());
    dir
}
