//! vdeliver: run by qmail-local, once per recipient, from `.qmail-default`.
//! Reads the message on stdin, prints one line, exits 0, 100 or 111.

use std::io::IsTerminal;
use vdeliver::outcome::{Failure, Outcome};
use vdeliver::recipient::{Overrides, QmailEnv};
use vdeliver::{config, deadline, deliver, invocation, maildir, privs};

fn main() {
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

fn run() -> Outcome {
    if let Err(f) = privs::refuse_root() {
        return f.into();
    }
    let inv = match invocation::parse(std::env::args().skip(1)) {
        Ok(i) => i,
        Err(e) => return Failure::config(format_args!("usage: {e}")).into(),
    };
    let env_config = std::env::var("VDELIVER_CONFIG").ok();
    let path = config::choose_path(inv.config.as_deref(), env_config.as_deref());
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => return Failure::config(e).into(),
    };
    deadline::start(cfg.delivery.deadline, maildir::remove_pending_tmp);
    if std::io::stdin().is_terminal() {
        return Failure::config("stdin is a terminal; vdeliver reads the message from qmail-local")
            .into();
    }
    let mut vars = Vec::with_capacity(6);
    for k in ["HOST", "EXT", "DEFAULT", "SENDER", "RPLINE", "QMAILQUEUE"] {
        match std::env::var(k) {
            Ok(v) => vars.push(Some(v)),
            Err(std::env::VarError::NotPresent) => vars.push(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Failure::config(format_args!("{k} is not valid UTF-8")).into()
            }
        }
    }
    let [host, ext, default, sender, rpline, qmailqueue]: [Option<String>; 6] =
        match vars.try_into() {
            Ok(a) => a,
            Err(_) => return Failure::temporary("reading the environment").into(),
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
    deliver::deliver(&cfg, &req, rustix::stdio::stdin())
}
