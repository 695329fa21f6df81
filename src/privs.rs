//! Process set-up: umask and the refusal to run as root.
//!
//! qmail-local never runs a delivery program as root, so root here means a
//! mistake (a test run by hand, a wrong `users/assign`); writing Maildirs as
//! root would leave files the real user cannot read. vdeliver refuses, with
//! 111 so the message waits for the fix.

use crate::outcome::Failure;

/// `umask(077)`: whatever the caller had, files are private.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Refuse to run with a real or effective user id of 0.
pub fn refuse_root() -> Result<(), Failure> {
    let root = rustix::process::getuid().is_root() || rustix::process::geteuid().is_root();
    if root {
        return Err(Failure::config(
            "vdeliver refuses to run as root; run it as the virtual mail user",
        ));
    }
    Ok(())
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
