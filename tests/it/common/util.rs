//! Small helpers shared by the harness modules (and the load example).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The directory to create temporary directories in.
///
/// `std::env::temp_dir()` unless, when running as root, some directory on
/// its path cannot be traversed by other users (e.g. `TMPDIR=/root/tmp`):
/// the product runs as `nobody` and the PostgreSQL server as `postgres`, and
/// both must reach what the tests create. `/tmp` is used then.
pub fn base_temp_dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    if !super::unpriv::is_root() || traversable_by_all(&tmp) {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Whether every directory from `/` down to `dir` has the "others may
/// search" bit.
fn traversable_by_all(dir: &Path) -> bool {
    dir.ancestors().all(|d| {
        std::fs::metadata(d)
            .map(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

/// The absolute path of `name` found in `PATH` (or in `/usr/bin:/bin` when
/// `PATH` is unset), if it is there and executable.
pub fn find_in_path(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let name = name.as_ref();
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// Whether `path` is a regular file with some execute bit set.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
