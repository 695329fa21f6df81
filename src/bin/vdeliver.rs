//! vdeliver: run by qmail-local, once per recipient, from `.qmail-default`.
//! Reads the message on stdin, prints one line, exits 0, 100 or 111.
//!
//! Entered straight from the C start-up code (`#![no_main]`):
//! std's own start-up reads and parses `/proc/self/maps` to find the main
//! thread's stack guard for its stack-overflow message, and sets up a
//! signal stack: a sixth of the instructions of a whole delivery, for a
//! message vdeliver does not need (an overflow still kills the process, which qmail-local
//! treats as temporary). The two things of std's start-up that vdeliver
//! does rely on are done first, by hand: file descriptors 0, 1 and 2 are
//! open (on `/dev/null` if they were closed) and SIGPIPE is ignored.
//! `--help` and `--version` are answered right after those two, before
//! any check (see `invocation`).
//!
//! Under `cargo test` (which builds every binary with the test harness and
//! runs it) the harness's own `main` is used, and this one is left out.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::os::unix::ffi::OsStringExt;
use vdeliver::input::Input;
use vdeliver::outcome::{Failure, Outcome};
use vdeliver::recipient::{Overrides, QmailEnv};
use vdeliver::{config, deadline, deliver, invocation, maildir, privs};

// SAFETY: the one `main` symbol of this binary (with `no_main`, std emits
// none); the C start-up code calls it with the usual arguments, which std
// also captures on its own (`std::env::args_os` works as ever).
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    if let Err(e) = privs::standard_fds() {
        deadline::report_and_exit(
            &Failure::temporary(format_args!(
                "cannot open /dev/null for a closed fd 0-2: {e}"
            ))
            .into(),
        );
    }
    deadline::ignore_broken_pipe();
    // `--help` and `--version` before any check (root may ask too).
    if let Some(info) = invocation::info(std::env::args_os().skip(1)) {
        print_and_exit(info.text());
    }
    privs::private_umask();
    privs::block_file_size_signal();
    std::panic::set_hook(Box::new(|info| {
        maildir::remove_pending_tmp();
        deadline::report_and_exit(
            &Failure::temporary(format_args!("internal error: {info}")).into(),
        )
    }));
    deadline::report_and_exit(&run())
}

/// Print `text` on standard output and exit 0, or 111 when it cannot be
/// written (a closed pipe, a full disk): nothing is claimed that was not said.
#[cfg(not(test))]
fn print_and_exit(text: &str) -> ! {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    std::process::exit(if written.is_ok() { 0 } else { 111 })
}

fn run() -> Outcome {
    if let Err(f) = privs::refuse_root() {
        return f.into();
    }
    // Before anything is opened: a closed fd 0 is /dev/null by now.
    let input = match Input::check(rustix::stdio::stdin()) {
        Ok(i) => i,
        Err(f) => return f.into(),
    };
    // Arguments are text (std::env::args would panic on other bytes).
    let mut args = Vec::new();
    for (i, a) in std::env::args_os().enumerate().skip(1) {
        match a.into_string() {
            Ok(a) => args.push(a),
            Err(_) => {
                return Failure::config(format_args!("usage: argument {i} is not valid UTF-8"))
                    .into()
            }
        }
    }
    let inv = match invocation::parse(args) {
        Ok(i) => i,
        Err(e) => return Failure::config(format_args!("usage: {e}")).into(),
    };
    let env_config = std::env::var("VDELIVER_CONFIG").ok();
    let path = config::choose_path(inv.config.as_deref(), env_config.as_deref());
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => return Failure::config(e).into(),
    };
    deadline::start(cfg.delivery.deadline);
    // The envelope is bytes: recipient.rs decides what must be text.
    let var = |k: &str| std::env::var_os(k).map(OsStringExt::into_vec);
    let (host, ext, default) = (var("HOST"), var("EXT"), var("DEFAULT"));
    let (sender, rpline) = (var("SENDER"), var("RPLINE"));
    let qmailqueue = match std::env::var("QMAILQUEUE") {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Failure::config("QMAILQUEUE is not valid UTF-8").into()
        }
    };
    let env = QmailEnv {
        host: host.as_deref(),
        ext: ext.as_deref(),
        default: default.as_deref(),
        sender: sender.as_deref(),
        rpline: rpline.as_deref(),
    };
    let over = Overrides {
        local: inv.local.as_deref(),
        domain: inv.domain.as_deref(),
        sender: inv.sender.as_deref(),
    };
    let req = deliver::Request {
        env,
        over,
        fallback: inv.fallback.as_deref(),
        qmailqueue: qmailqueue.as_deref(),
    };
    deliver::deliver(&cfg, &req, input)
}
