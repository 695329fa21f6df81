//! A stand-in for qmail-queue, for the tests. It speaks the protocol the
//! way qmail-queue does: the message on fd 0, read to EOF; then the
//! envelope on fd 1, `F<sender>\0` followed by `T<recipient>\0` entries and
//! a final `\0`; anything else in the envelope is refused with exit 91, as
//! qmail-queue refuses it. It records what it got in `$STUB_DIR` as
//! `<pid>.msg` and `<pid>.env` (only when the envelope is complete and the
//! exit is 0, as a real queue would keep only those), writes `<pid>.snap`
//! with the listing of the `tmp/` and `new/` directories of each Maildir
//! in `$STUB_SNAPSHOT` (colon-separated) at the moment it runs, and exits
//! with `$STUB_EXIT` (default 0).
//!
//! Built by the test harness with plain rustc; std only.

use std::fs;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::process::exit;

fn main() {
    let dir = std::env::var("STUB_DIR").unwrap_or_else(|_| {
        eprintln!("qmail-queue stub: STUB_DIR not set");
        exit(81)
    });
    let code: i32 = std::env::var("STUB_EXIT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let pid = std::process::id();

    if let Ok(list) = std::env::var("STUB_SNAPSHOT") {
        let mut snap = String::new();
        for md in list.split(':').filter(|s| !s.is_empty()) {
            for sub in ["tmp", "new"] {
                let n = fs::read_dir(format!("{md}/{sub}"))
                    .map(|d| d.count())
                    .unwrap_or(0);
                snap.push_str(&format!("{md}/{sub} {n}\n"));
            }
        }
        fs::write(format!("{dir}/{pid}.snap"), snap).unwrap_or_else(|_| exit(53));
    }

    let mut message = Vec::new();
    if std::io::stdin().read_to_end(&mut message).is_err() {
        exit(54);
    }
    // SAFETY: fd 1 is the envelope pipe qmail-queue's caller gives it; we
    // own it from here on and nothing else in this program uses stdout.
    let mut envelope_fd = unsafe { fs::File::from_raw_fd(1) };
    let mut envelope = Vec::new();
    if envelope_fd.read_to_end(&mut envelope).is_err() {
        exit(54);
    }
    if !well_formed(&envelope) {
        exit(91);
    }
    if code == 0 {
        fs::write(format!("{dir}/{pid}.msg"), &message).unwrap_or_else(|_| exit(53));
        fs::write(format!("{dir}/{pid}.env"), &envelope).unwrap_or_else(|_| exit(53));
    }
    exit(code)
}

/// `F<sender>\0` (`T<addr>\0`)* `\0`, and nothing after.
fn well_formed(e: &[u8]) -> bool {
    let Some(rest) = e.strip_prefix(b"F") else {
        return false;
    };
    let Some(end) = rest.iter().position(|b| *b == 0) else {
        return false;
    };
    let mut rest = &rest[end + 1..];
    loop {
        match rest {
            [0] => return true,
            [b'T', tail @ ..] => match tail.iter().position(|b| *b == 0) {
                Some(i) if i > 0 => rest = &tail[i + 1..],
                _ => return false,
            },
            _ => return false,
        }
    }
}
