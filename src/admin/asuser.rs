//! Working as another user: every operation vmailctl makes beneath
//! `mail.root` runs as the mail user, whoever runs vmailctl.
//!
//! # The rule
//!
//! Everything vmailctl creates or rewrites beneath `mail.root` (a
//! `maildirsize` put back by `quota --recalc`, the `cur/` or folders a
//! Maildir is completed with, anything later) belongs to the mail user,
//! and everything it reads or removes there it reads or removes with the
//! mail user's rights, never root's. The mail user is the owner of
//! `mail.root`; its group is that user's primary group (the group of
//! `mail.root` when the uid has no passwd entry), and it has no
//! supplementary groups, as qmail-local runs a delivery (`prot_gid`).
//!
//! # How
//!
//! [`as_mail_user`] is the one door to the mail root: the admin functions
//! that touch it ([`super::purge_maildir`], [`super::usage`], the Maildir
//! check of [`super::account_add`]) run their filesystem work inside it.
//! Run as root, it switches *this thread's* credentials to the mail user
//! for the duration of the closure — `setgroups`, then `setresgid`, then
//! `setresuid`, through rustix's per-thread calls (on Linux credentials
//! are per thread; glibc's `seteuid` would broadcast to every thread) —
//! and back when the closure returns or panics. Real and effective ids are
//! both switched and the saved ids stay root's, which is what allows the
//! way back. Files are therefore created owned by the mail user by the
//! kernel itself (no `chown` after the fact, no window), and root's
//! `CAP_DAC_OVERRIDE` is gone while the closure runs, so vmailctl cannot
//! write through a link or into a file the mail user could not.
//!
//! Run as the mail user, the closure runs as is. Run as anyone else,
//! mail-root operations are refused: files made then would belong to the
//! wrong user. A `mail.root` owned by root is refused too (`vmailctl
//! check` already fails it): vdeliver, which never runs as root, could
//! not deliver into it.
//!
//! The database is never used inside the switch: a new connection made
//! there would present the mail user to PostgreSQL's peer authentication.

use super::{AdminError, Result};
use rustix::process::{Gid, Uid};
use std::path::Path;

/// A user to act as: uid, gid, and the only group it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// `name`'s uid and primary gid from the passwd database.
    pub fn by_name(name: &str) -> Option<User> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(pw)) => Some(User {
                uid: pw.uid.as_raw(),
                gid: pw.gid.as_raw(),
            }),
            _ => None,
        }
    }

    /// The owner of `root` with its primary group (`root`'s own group when
    /// the uid has no passwd entry).
    fn owner_of(root: &Path) -> Result<User> {
        let st = rustix::fs::stat(root)
            .map_err(|e| AdminError::Failed(format!("mail.root {}: {e}", root.display())))?;
        if st.st_uid == 0 {
            return Err(AdminError::Failed(format!(
                "mail.root {} is owned by root: vmailctl works beneath it only as its owner, \
                 the mail user vdeliver runs as (chown it to that user; see vmailctl check)",
                root.display()
            )));
        }
        let gid = match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(st.st_uid)) {
            Ok(Some(pw)) => pw.gid.as_raw(),
            _ => st.st_gid,
        };
        Ok(User {
            uid: st.st_uid,
            gid,
        })
    }
}

/// This thread, switched to another user until dropped.
#[must_use]
pub struct Switched {
    groups: Vec<Gid>,
    rgid: Gid,
    egid: Gid,
    ruid: Uid,
    euid: Uid,
}

/// Switch this thread to `user` (real and effective ids, groups = its
/// gid only). Needs root; checked after the switch.
pub fn switch_to(user: User) -> std::io::Result<Switched> {
    use rustix::process::{getegid, geteuid, getgid, getgroups, getuid};
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
    let saved = Switched {
        groups: getgroups()?,
        rgid: getgid(),
        egid: getegid(),
        ruid: getuid(),
        euid: geteuid(),
    };
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    // Group first: once the uid is not root, the gid can no longer change.
    // The saved ids stay root's, the way back.
    set_thread_groups(&[gid])?;
    if let Err(e) = set_thread_res_gid(gid, gid, None) {
        restore(&saved);
        return Err(e.into());
    }
    // The saved uid is root's (whoever started vmailctl, sudo included):
    // the way back.
    if let Err(e) = set_thread_res_uid(uid, uid, Uid::ROOT) {
        restore(&saved);
        return Err(e.into());
    }
    let now = (getuid(), geteuid(), getgid(), getegid(), getgroups().ok());
    if now != (uid, uid, gid, gid, Some(vec![gid])) {
        restore(&saved);
        return Err(std::io::Error::other(format!(
            "switching to uid {} gid {} did not take",
            user.uid, user.gid
        )));
    }
    Ok(saved)
}

/// Back to the saved credentials: the effective uid first (back to root,
/// through the saved uid, it makes the rest allowed), then the real one
/// (under sudo, not root's). Not getting back would leave vmailctl half
/// one user and half another: abort rather than go on.
fn restore(s: &Switched) {
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
    let r = set_thread_res_uid(None, s.euid, None)
        .and_then(|()| set_thread_res_uid(s.ruid, None, None))
        .and_then(|()| set_thread_res_gid(s.rgid, s.egid, None))
        .and_then(|()| set_thread_groups(&s.groups));
    if let Err(e) = r {
        eprintln!("vmailctl: cannot switch back to its own credentials: {e}");
        std::process::abort();
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        restore(self);
    }
}

/// Run `f` as `user`: switched when this thread is root, as is when it
/// already is that user, refused (`None`) otherwise.
pub fn as_user<T>(user: User, f: impl FnOnce() -> T) -> std::io::Result<Option<T>> {
    let euid = rustix::process::geteuid();
    if euid.as_raw() == user.uid {
        return Ok(Some(f()));
    }
    if !euid.is_root() {
        return Ok(None);
    }
    let guard = switch_to(user)?;
    let t = f();
    drop(guard);
    Ok(Some(t))
}

/// Run `f`, the filesystem work of one operation beneath `root`, as the
/// mail user (see the module documentation). `f` gets the root's path.
pub fn as_mail_user<T>(root: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let user = User::owner_of(root)?;
    match as_user(user, || f(root)) {
        Ok(Some(r)) => r,
        Ok(None) => Err(AdminError::Failed(format!(
            "vmailctl works beneath mail.root {} only as root or as its owner (uid {}); \
             it runs as uid {}",
            root.display(),
            user.uid,
            rustix::process::geteuid().as_raw()
        ))),
        Err(e) => Err(AdminError::Failed(format!(
            "cannot act as the mail user (uid {} gid {}): {e}",
            user.uid, user.gid
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn switches_this_thread_only_and_back() {
        let me = rustix::process::geteuid();
        if !me.is_root() {
            // Not root: another user is refused, oneself runs as is.
            let other = User {
                uid: me.as_raw() + 1,
                gid: 0,
            };
            assert!(as_user(other, || ()).unwrap().is_none());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let user = User {
            uid: 65534,
            gid: 65534,
        };
        let file = dir.path().join("made");
        // A thread that was there before the switch answers for itself.
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (tell, told) = std::sync::mpsc::channel();
        let bystander = std::thread::spawn(move || {
            asked.recv().unwrap();
            tell.send(rustix::process::geteuid()).unwrap();
        });
        let (uid, other_thread) = as_user(user, || {
            std::fs::write(&file, b"x").unwrap();
            ask.send(()).unwrap();
            (rustix::process::geteuid(), told.recv().unwrap())
        })
        .unwrap()
        .unwrap();
        bystander.join().unwrap();
        assert_eq!(uid.as_raw(), 65534);
        assert!(other_thread.is_root(), "the switch is this thread's only");
        let m = std::fs::metadata(&file).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
        assert!(rustix::process::geteuid().is_root());
        assert!(rustix::process::getegid().is_root());
        // Root's override of permissions is gone inside.
        std::fs::write(dir.path().join("private"), b"root").unwrap();
        std::fs::set_permissions(
            dir.path().join("private"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let denied = as_user(user, || std::fs::read(dir.path().join("private")).is_err())
            .unwrap()
            .unwrap();
        assert!(denied);

        // As under sudo: real uid not root. Back to exactly that.
        std::thread::spawn(move || {
            rustix::thread::set_thread_res_uid(Uid::from_raw(1000), None, None).unwrap();
            let inside = as_user(user, rustix::process::geteuid).unwrap().unwrap();
            assert_eq!(inside.as_raw(), 65534);
            assert_eq!(rustix::process::getuid().as_raw(), 1000);
            assert!(rustix::process::geteuid().is_root());
        })
        .join()
        .unwrap();
    }
}
