//! The overall deadline, and the one place that prints the result and exits.
//!
//! A one-shot `ITIMER_REAL` timer enforces `delivery.deadline` (default
//! 24 h) and, around each bounded phase (connecting: `connect_timeout` per
//! server + 1 s; each database round trip: `statement_timeout` + 1 s; the
//! quota check: `lock_timeout`), the earlier of the phase's end and the
//! overall one. So a hung server, a stuck NFS mount or a lock can only ever
//! end in 111, never in a hang. Whoever reports first — the delivery or the
//! timer — is the only one to print and exit.
//!
//! Why a timer signal and not a watchdog thread: the thread cost
//! every delivery a `clone3`, its stack and guard page, a signal stack,
//! its page faults and a futex hand-off per phase; the timer costs one
//! `rt_sigaction` and one `setitimer` per change of deadline, and keeps
//! the process single-threaded, so its system calls come in a fixed order
//! (the fault-injection test relies on that).
//!
//! When the timer fires, the handler does only async-signal-safe work: it
//! claims the report (an atomic flag), removes every `tmp/` file still
//! pending (a lock-free list of leaked, immutable nodes: `openat2` beneath
//! the mail root, or the `O_NOFOLLOW` walk, then `unlinkat`), assembles
//! the line on its stack from constant parts and the armed phase's name,
//! writes it with one `write(2)`, and calls `_exit(111)`. It never
//! allocates, locks or unwinds. This is the crate's only module
//! with `unsafe` code; every block says why it is sound.

#![allow(unsafe_code)]

use crate::outcome::{Failure, Outcome};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::CString;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// When the whole delivery must be over (set once, by [`start`]).
static OVERALL: OnceLock<Instant> = OnceLock::new();

/// What the armed deadline bounds, named in the line the handler prints:
/// a leaked, never-freed `&'static str` behind a thin pointer, so that it
/// is read in one atomic load.
static WHAT: AtomicPtr<&'static str> = AtomicPtr::new(std::ptr::null_mut());

/// Set by whoever reports first: the delivery ([`report_and_exit`]) or
/// the timer's handler.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Names already leaked for [`WHAT`], one per phase name (the main thread
/// only; the handler never touches it), so each is leaked once.
static NAMES: Mutex<Vec<&'static &'static str>> = Mutex::new(Vec::new());

/// The line for "`what` did not finish in time" is
/// `EXPIRY_HEAD + what + EXPIRY_TAIL`, exactly as [`Outcome::line`] makes
/// it (a unit test checks): the handler assembles it on its stack.
const EXPIRY_HEAD: &[u8] = b"Temporary failure: ";
const EXPIRY_TAIL: &[u8] = b" did not finish in time. (#4.3.0)\n";

const OVERALL_NAME: &str = "the delivery";

/// Arm the overall deadline. Call once, early, on the main thread.
pub fn start(overall: Duration) {
    let now = Instant::now();
    let end = now
        .checked_add(overall)
        .unwrap_or(now + Duration::from_secs(86400 * 365));
    if OVERALL.set(end).is_err() {
        return;
    }
    // SAFETY: `on_timer` is an `extern "C" fn(c_int)` that does only
    // async-signal-safe work (see the module docs); no other code in the
    // process installs a SIGALRM handler or uses ITIMER_REAL.
    let installed = unsafe {
        nix::sys::signal::sigaction(
            nix::sys::signal::Signal::SIGALRM,
            &nix::sys::signal::SigAction::new(
                nix::sys::signal::SigHandler::Handler(on_timer),
                nix::sys::signal::SaFlags::SA_RESTART,
                nix::sys::signal::SigSet::empty(),
            ),
        )
    };
    if let Err(e) = installed {
        report_and_exit(
            &Failure::temporary(format_args!("cannot set up the deadline: {e}")).into(),
        );
    }
    arm(end, OVERALL_NAME);
}

/// Ignore SIGPIPE, as std's start-up does (vdeliver skips it): a reader
/// gone (qmail-queue, the database) is an `EPIPE` error, not a silent
/// death. Children get the default back from std's process spawning.
pub fn ignore_broken_pipe() {
    // SAFETY: SIG_IGN runs no code; nothing else handles SIGPIPE.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
}

/// Bound the next phase (e.g. the database lookup) to `limit`; `what` names
/// it in the message if it runs over. The overall deadline still holds.
pub fn phase(limit: Duration, what: &'static str) {
    let Some(&overall) = OVERALL.get() else {
        return;
    };
    let now = Instant::now();
    match now.checked_add(limit) {
        Some(end) if end < overall => arm(end, what),
        _ => arm(overall, OVERALL_NAME),
    }
}

/// The phase finished in time: back to the overall deadline alone.
pub fn phase_done() {
    if let Some(&overall) = OVERALL.get() {
        arm(overall, OVERALL_NAME);
    }
}

/// Make the timer fire at `end`, reporting that `what` did not finish.
fn arm(end: Instant, what: &'static str) {
    let what = leaked(what);
    // At least 1 µs: a zero value would disarm the timer instead.
    let left = end
        .saturating_duration_since(Instant::now())
        .max(Duration::from_micros(1));
    let value = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(left.subsec_micros()),
        },
    };
    // The name first: a timer that fires from here on names this deadline.
    WHAT.store(std::ptr::from_ref(what).cast_mut(), Ordering::SeqCst);
    // SAFETY: plain system call on valid, initialised structures; a null
    // old-value pointer is allowed.
    let r = unsafe { libc::setitimer(libc::ITIMER_REAL, &value, std::ptr::null_mut()) };
    if r != 0 {
        report_and_exit(
            &Failure::temporary(format_args!(
                "cannot arm the deadline timer: {}",
                std::io::Error::last_os_error()
            ))
            .into(),
        );
    }
}

/// `what`, leaked once per name for [`WHAT`].
fn leaked(what: &'static str) -> &'static &'static str {
    let mut names = match NAMES.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(w) = names
        .iter()
        .find(|w| w.as_ptr() == what.as_ptr() && w.len() == what.len())
    {
        return w;
    }
    let w: &'static &'static str = Box::leak(Box::new(what));
    names.push(w);
    w
}

/// The expiry line for `what`, assembled in `buf` without allocating
/// (cut short, like any line, if the name were absurdly long).
fn expiry_line<'b>(what: &str, buf: &'b mut [u8; 256]) -> &'b [u8] {
    let room = buf.len() - EXPIRY_HEAD.len() - EXPIRY_TAIL.len();
    let what = &what.as_bytes()[..what.len().min(room)];
    let mut n = 0;
    for part in [EXPIRY_HEAD, what, EXPIRY_TAIL] {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    &buf[..n]
}

extern "C" fn on_timer(_: libc::c_int) {
    if REPORTED.swap(true, Ordering::SeqCst) {
        // The delivery is printing its own result and exiting.
        return;
    }
    remove_pending_tmp();
    let what = WHAT.load(Ordering::SeqCst);
    let what: &str = if what.is_null() {
        OVERALL_NAME
    } else {
        // SAFETY: WHAT only ever holds pointers made by `leaked` with
        // `Box::leak`: valid for the whole process, never written again.
        unsafe { *what }
    };
    let mut buf = [0u8; 256];
    let _ = rustix::io::write(rustix::stdio::stdout(), expiry_line(what, &mut buf));
    // SAFETY: `_exit` is async-signal-safe and ends the process at once.
    unsafe { libc::_exit(111) }
}

/// Print the outcome's one line and exit with its code. Only the first
/// caller does; a later one (the delivery racing the timer's handler on
/// another thread) never returns.
pub fn report_and_exit(outcome: &Outcome) -> ! {
    if REPORTED.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    let line = outcome.line();
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    std::process::exit(outcome.exit().code());
}

/// A `tmp/` file not yet committed or removed. Nodes are leaked and never
/// change after they are published, except `live`, so the handler can walk
/// the list without a lock while the delivery is stopped anywhere.
struct Pending {
    next: *mut Pending,
    live: AtomicBool,
    /// The mail root, held open so the handler can always reach `tmp/`.
    root: Arc<OwnedFd>,
    /// `tmp/` beneath the root, as one path (for `openat2`)...
    dir: CString,
    /// ... and one component at a time (for the walk without `openat2`).
    parts: Vec<CString>,
    name: CString,
}

static PENDING: AtomicPtr<Pending> = AtomicPtr::new(std::ptr::null_mut());

/// Note that `tmp_dir/name` (relative to `root`, `/`-separated) exists until
/// [`untrack_tmp`]: a deadline or a panic removes it first.
pub fn track_tmp(root: &Arc<OwnedFd>, tmp_dir: &str, name: &str) {
    // A name or path with a NUL byte cannot have been created.
    let (Ok(dir), Ok(c_name)) = (CString::new(tmp_dir), CString::new(name)) else {
        return;
    };
    let parts = tmp_dir
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .filter_map(|c| CString::new(c).ok())
        .collect();
    let node = Box::into_raw(Box::new(Pending {
        next: std::ptr::null_mut(),
        live: AtomicBool::new(true),
        root: Arc::clone(root),
        dir,
        parts,
        name: c_name,
    }));
    let mut head = PENDING.load(Ordering::SeqCst);
    loop {
        // SAFETY: `node` is ours alone until the exchange below publishes it.
        unsafe { (*node).next = head };
        match PENDING.compare_exchange(head, node, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return,
            Err(h) => head = h,
        }
    }
}

/// `name` is gone from `tmp/` (removed, or renamed into `new/`).
pub fn untrack_tmp(name: &str) {
    each_pending(|p| {
        if p.name.as_bytes() == name.as_bytes() {
            p.live.store(false, Ordering::SeqCst);
        }
    });
}

/// Remove every `tmp/` file still pending. Async-signal-safe: the timer's
/// handler calls it, and the panic hook.
pub fn remove_pending_tmp() {
    each_pending(|p| {
        if p.live.swap(false, Ordering::SeqCst) {
            if let Ok(dir) = open_tmp(p) {
                let _ = rfs::unlinkat(&dir, p.name.as_c_str(), AtFlags::empty());
            }
        }
    });
}

fn each_pending(mut f: impl FnMut(&Pending)) {
    let mut p = PENDING.load(Ordering::SeqCst);
    while !p.is_null() {
        // SAFETY: every pointer in the list comes from `Box::into_raw` in
        // `track_tmp`, published only once fully built and never freed;
        // only its atomic `live` changes afterwards.
        let node = unsafe { &*p };
        f(node);
        p = node.next;
    }
}

/// Open the node's `tmp/` beneath the root without following a symlink, as
/// the Maildir writer does: no allocation, so safe in the handler.
fn open_tmp(p: &Pending) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rfs::openat2(
        p.root.as_fd(),
        p.dir.as_c_str(),
        flags,
        Mode::empty(),
        resolve,
    ) {
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => {}
        r => return r,
    }
    let mut cur = rfs::openat(p.root.as_fd(), c".", flags, Mode::empty())?;
    for c in &p.parts {
        cur = rfs::openat(&cur, c.as_c_str(), flags, Mode::empty())?;
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiry(what: &str) -> Outcome {
        Failure::temporary(format_args!("{what} did not finish in time")).into()
    }

    #[test]
    fn handler_lines_are_the_outcome_lines() {
        for what in [
            OVERALL_NAME,
            "a database round trip",
            "the quota check",
            "connecting to the database (database.connect_timeout)",
        ] {
            let mut buf = [0u8; 256];
            assert_eq!(expiry_line(what, &mut buf), expiry(what).line().as_bytes());
            assert!(std::ptr::eq(leaked(what), leaked(what)));
        }
        assert_eq!(
            expiry("the quota check").line(),
            "Temporary failure: the quota check did not finish in time. (#4.3.0)\n"
        );
    }
}
