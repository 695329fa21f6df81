//! The overall deadline, and the one place that prints the result and exits.
//!
//! A watchdog thread enforces `delivery.deadline` (default 24 h) and, around
//! each database round trip, a shorter one (statement timeout + 1 s),
//! so a hung server, a stuck NFS mount or a lock can only ever end in 111,
//! never in a hang. Whoever reports first — the delivery or the watchdog —
//! is the only one to print and exit.

use crate::outcome::{Failure, Outcome};
use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

struct State {
    overall: Instant,
    phase: Option<(Instant, &'static str)>,
}

struct Watchdog {
    state: Mutex<State>,
    wake: Condvar,
}

static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();
static REPORTED: Mutex<bool> = Mutex::new(false);

/// Cleanup run when the deadline fires, before exiting (removes tmp/ files).
static ON_EXPIRY: OnceLock<fn()> = OnceLock::new();

/// Start the watchdog with the overall deadline. Call once, early.
pub fn start(overall: Duration, on_expiry: fn()) {
    let _ = ON_EXPIRY.set(on_expiry);
    let now = Instant::now();
    let dog = Watchdog {
        state: Mutex::new(State {
            overall: now
                .checked_add(overall)
                .unwrap_or(now + Duration::from_secs(86400 * 365)),
            phase: None,
        }),
        wake: Condvar::new(),
    };
    if WATCHDOG.set(dog).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("deadline".into())
        .spawn(watch);
    if let Err(e) = spawned {
        report_and_exit(
            &Failure::temporary(format!("cannot start the deadline thread: {e}")).into(),
        );
    }
}

/// Bound the next phase (e.g. the database lookup) to `limit`; `what` names
/// it in the message if it runs over.
pub fn phase(limit: Duration, what: &'static str) {
    if let Some(dog) = WATCHDOG.get() {
        if let Ok(mut s) = dog.state.lock() {
            s.phase = Some((Instant::now() + limit, what));
        }
        dog.wake.notify_one();
    }
}

/// The phase finished in time.
pub fn phase_done() {
    if let Some(dog) = WATCHDOG.get() {
        if let Ok(mut s) = dog.state.lock() {
            s.phase = None;
        }
    }
}

fn watch() {
    let Some(dog) = WATCHDOG.get() else { return };
    let Ok(mut s) = dog.state.lock() else { return };
    loop {
        let (when, what) = match s.phase {
            Some((t, what)) if t < s.overall => (t, what),
            _ => (s.overall, "the delivery"),
        };
        let now = Instant::now();
        if now >= when {
            drop(s);
            if let Some(f) = ON_EXPIRY.get() {
                f();
            }
            report_and_exit(&Failure::temporary(format!("{what} did not finish in time")).into());
        }
        s = match dog.wake.wait_timeout(s, when - now) {
            Ok((g, _)) => g,
            Err(_) => return,
        };
    }
}

/// Print the outcome's one line and exit with its code. Only the first
/// caller does; a second (the watchdog racing the delivery) never returns.
pub fn report_and_exit(outcome: &Outcome) -> ! {
    let mut first = match REPORTED.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if *first {
        drop(first);
        loop {
            std::thread::park();
        }
    }
    *first = true;
    let line = outcome.line();
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    std::process::exit(outcome.exit().code());
}
