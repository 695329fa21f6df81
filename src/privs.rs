//! Process set-up: standard fds, umask, and the refusal to run privileged.
//!
//! qmail-local never runs a delivery program as root, so privilege here
//! means a mistake (a test run by hand, a wrong `users/assign`, a binary
//! installed setgid root or given file capabilities, a service manager
//! handing down ambient capabilities). Writing Maildirs with privilege
//! would leave files the real user cannot read, or reach files the mail
//! user must not. vdeliver refuses, with 111 so the message waits for the
//! fix: a real or effective user id of 0, a real or effective group id of
//! 0, or any capability in the effective or permitted set (a permitted one
//! can be raised at will). Supplementary groups are not checked.

use crate::outcome::Failure;

/// What std's start-up does, and `vdeliver` (which skips it) needs: each
/// of the file descriptors 0, 1 and 2 that is closed is opened on
/// `/dev/null`, so that no file opened later takes its number (a Maildir
/// file on fd 1 would receive the result line). `open` returns the lowest
/// free number, which is the closed one, as they are checked in order.
pub fn standard_fds() -> rustix::io::Result<()> {
    use rustix::fs::{open, Mode, OFlags};
    use rustix::io::{fcntl_getfd, Errno};
    use rustix::stdio::{stderr, stdin, stdout};
    for fd in [stdin(), stdout(), stderr()] {
        if fcntl_getfd(fd) == Err(Errno::BADF) {
            // Kept open for the life of the process, as std does.
            let null = open("/dev/null", OFlags::RDWR, Mode::empty())?;
            std::mem::forget(null);
        }
    }
    Ok(())
}

/// `umask(077)`: whatever the caller had, files are private.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Refuse to run with a real or effective user or group id of 0, or with
/// any effective or permitted capability.
pub fn refuse_root() -> Result<(), Failure> {
    use rustix::process::{getegid, geteuid, getgid, getuid};
    let refuse = |what: &str| {
        Err(Failure::config(format_args!(
            "vdeliver refuses to run {what}; run it as the virtual mail user, without privileges"
        )))
    };
    if getuid().is_root() || geteuid().is_root() {
        return refuse("as root");
    }
    if getgid().is_root() || getegid().is_root() {
        return refuse("with group id 0");
    }
    match rustix::thread::capabilities(None) {
        Ok(caps) if caps.effective.bits() == 0 && caps.permitted.bits() == 0 => Ok(()),
        Ok(caps) => refuse(&format!(
            "with capabilities (effective {:#x}, permitted {:#x})",
            caps.effective.bits(),
            caps.permitted.bits()
        )),
        Err(e) => Err(Failure::temporary(format_args!(
            "cannot read the process capabilities: {e}"
        ))),
    }
}

/// Block SIGXFSZ. Under a file size limit (RLIMIT_FSIZE) the kernel sends
/// it, which would kill vdeliver mid-write; blocked, the write fails with
/// EFBIG instead, and the errno table decides (over quota). Called first in
/// `main`, so every thread (and qmail-queue, which inherits the mask and
/// then sees the same EFBIG) has it blocked.
pub fn block_file_size_signal() {
    let mut xfsz = nix::sys::signal::SigSet::empty();
    xfsz.add(nix::sys::signal::Signal::SIGXFSZ);
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&xfsz),
        None,
    );
}
