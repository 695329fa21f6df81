//! vdeliver's command line, pure.
//!
//! ```text
//! vdeliver [--config PATH] [--local LOCAL --domain DOMAIN] [--sender S] ['' FALLBACK]
//! ```
//!
//! Parsed by hand: the grammar is tiny and vdeliver starts once per message,
//! so it carries no argument-parsing library. The optional positional pair
//! is vpopmail's `vdelivermail '' FALLBACK` form (the first argument is
//! ignored, as vdelivermail ignores it).
//!
//! `--help` (`-h`) and `--version` (`-V`) are answered by [`info`] before
//! anything else runs: before the root and capability refusal, before
//! standard input is looked at, before the configuration is read. They are
//! recognised anywhere among the options (not after `--`, not as the value
//! of `--local` and the like), even next to arguments that would be a usage
//! error, so `vdeliver --help` always prints [`USAGE`] and exits 0, for
//! root too: asking how to run it is not running it. The answer goes to
//! standard output, as every line of vdeliver does.
//!
//! [`command`] describes the same command line to clap, for vdeliver's
//! manual page only (`vmailctl man vdeliver`): vdeliver itself never builds
//! it. The tests below hold the two together: every option the hand parser
//! takes is in the description and nothing else is, and both accept and
//! refuse the same command lines with the same values.

use std::ffi::OsStr;
use std::path::PathBuf;

/// What `vdeliver --help` prints.
pub const USAGE: &str = concat!(
    "vdeliver ",
    env!("CARGO_PKG_VERSION"),
    " - qmail delivery agent for PostgreSQL-backed virtual domains

Usage:
  |/usr/local/bin/vdeliver                  a line of a .qmail file, run by qmail-local
  |/usr/local/bin/vdeliver '' FALLBACK      the same, with vpopmail's fallback argument
  vdeliver --local LOCAL --domain DOMAIN [--sender SENDER] [--config PATH] < MESSAGE
  vdeliver --help | --version

qmail-local runs it once per recipient, as the virtual mail user (never
root: vdeliver refuses it), with the message on standard input and the
recipient in the environment: the domain is HOST, the local part is EXT
less a leading \"HOST-\" (control/virtualdomains gives
EXT=example.com-alice for alice@example.com), else DEFAULT; the envelope
sender is SENDER (and RPLINE). Under qmail-local no argument is needed.

Options (none is needed under qmail-local):
  --local LOCAL     the recipient's local part; required with --domain
  --domain DOMAIN   the recipient's domain; required with --local
  --sender SENDER   the envelope sender (\"\" for a bounce); required when
                    SENDER is not in the environment
  --config PATH     the configuration (default: $VDELIVER_CONFIG, else
                    /etc/vdeliver/config.toml)
  '' FALLBACK       for an address that exists nowhere: bounce-no-mailbox
                    (the default), delete, an address to forward to, or a
                    Maildir beneath mail.root
  -h, --help        this text
  -V, --version     the version

Exit codes, as qmail-local reads them: 0 delivered; 99 delivered, skip the
following .qmail lines; 100 permanent failure (the message bounces); 111
temporary failure (qmail retries). One line on standard output says why.
"
);

/// The line `vdeliver --version` prints.
pub const VERSION: &str = concat!("vdeliver ", env!("CARGO_PKG_VERSION"), "\n");

/// The options [`parse`] takes, each with a value (`--name VALUE` or
/// `--name=VALUE`); `--help` and `--version` are [`info`]'s.
pub const OPTIONS: [&str; 4] = ["--config", "--local", "--domain", "--sender"];

/// A request for information rather than a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Info {
    Help,
    Version,
}

impl Info {
    /// The text to print on standard output (then exit 0).
    pub fn text(self) -> &'static str {
        match self {
            Info::Help => USAGE,
            Info::Version => VERSION,
        }
    }
}

/// Whether the arguments after the program name ask for `--help` or
/// `--version` (the first one given wins). Bytes, not text: an argument
/// that is not UTF-8 does not hide a `--help` beside it.
pub fn info<I, S>(args: I) -> Option<Info>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_ref().as_encoded_bytes() {
            b"--" => return None,
            b"--help" | b"-h" => return Some(Info::Help),
            b"--version" | b"-V" => return Some(Info::Version),
            // An option whose value is the next argument: skip the value.
            o if OPTIONS.iter().any(|k| k.as_bytes() == o) => {
                it.next();
            }
            _ => {}
        }
    }
    None
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub config: Option<PathBuf>,
    pub local: Option<String>,
    pub domain: Option<String>,
    pub sender: Option<String>,
    /// vpopmail-compatible fallback for unknown users: `bounce-no-mailbox`,
    /// `delete`, an address, or a path: a user directory (its `Maildir/`
    /// gets the mail) or a Maildir (see `deliver::parse_fallback`).
    pub fallback: Option<String>,
}

/// Parse the arguments after the program name. The error is one line.
pub fn parse<I, S>(args: I) -> Result<Invocation, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut inv = Invocation::default();
    let mut config = None;
    let mut positional = Vec::new();
    let mut it = args.into_iter().map(Into::into);
    while let Some(a) = it.next() {
        if a == "--" {
            positional.extend(it.by_ref());
            break;
        }
        if !a.starts_with("--") {
            positional.push(a);
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let slot = match name.as_str() {
            "--config" => &mut config,
            "--local" => &mut inv.local,
            "--domain" => &mut inv.domain,
            "--sender" => &mut inv.sender,
            _ => return Err(format!("unknown option {name} (see vdeliver --help)")),
        };
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        *slot = Some(value);
    }
    inv.config = config.map(PathBuf::from);
    match positional.len() {
        0 => {}
        2 => inv.fallback = positional.pop(),
        1 => {
            return Err(format!(
                "a fallback needs two arguments, as in vdeliver '' {}",
                positional[0]
            ))
        }
        _ => return Err("too many arguments".into()),
    }
    Ok(inv)
}

/// vdeliver's command line as a clap `Command`, for its manual page: the
/// options of [`USAGE`] with the same help, the qmail-local environment in
/// the description, the exit codes and examples after. Not used to parse
/// (vdeliver starts once per message and carries no argument parser).
pub fn command() -> clap::Command {
    use clap::{Arg, ArgAction, Command};
    let value = |name: &'static str, value_name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name(value_name)
            .action(ArgAction::Set)
            .help(help)
    };
    Command::new("vdeliver")
        .version(env!("CARGO_PKG_VERSION"))
        .about("qmail delivery agent for PostgreSQL-backed virtual domains")
        .long_about(DESCRIPTION)
        .override_usage(
            "vdeliver\n\
             vdeliver '' FALLBACK\n\
             vdeliver --local LOCAL --domain DOMAIN [--sender SENDER] [--config PATH]\n\
             vdeliver --help | --version",
        )
        // A repeated option: the last one counts, as in `parse`.
        .args_override_self(true)
        .arg(value(
            "local",
            "LOCAL",
            "The recipient's local part; required with --domain",
        ))
        .arg(value(
            "domain",
            "DOMAIN",
            "The recipient's domain; required with --local",
        ))
        .arg(value(
            "sender",
            "SENDER",
            "The envelope sender (\"\" for a bounce); required when SENDER is not in the environment",
        ))
        .arg(value(
            "config",
            "PATH",
            "The configuration [default: $VDELIVER_CONFIG, else /etc/vdeliver/config.toml]",
        ))
        .arg(
            Arg::new("fallback")
                .num_args(2)
                .value_names(["''", "FALLBACK"])
                .help(
                    "For an address that exists nowhere, as vpopmail's vdelivermail takes it \
                     (the first argument is ignored): bounce-no-mailbox (the default), delete, \
                     an address to forward to, or a Maildir beneath mail.root",
                ),
        )
        .after_help(AFTER_HELP)
}

/// The description in [`command`]: how qmail-local runs vdeliver.
const DESCRIPTION: &str = "\
qmail-local runs it once per recipient, from a line of a .qmail file (the \
line |/usr/local/bin/vdeliver in ~vmail/.qmail-default), as the virtual mail \
user (never root: vdeliver refuses it), with the message on standard input \
and the recipient in the environment: the domain is HOST, the local part is \
EXT less a leading \"HOST-\" (control/virtualdomains gives \
EXT=example.com-alice for alice@example.com), else DEFAULT; the envelope \
sender is SENDER (and RPLINE). Under qmail-local no argument is needed.

It looks the recipient up in PostgreSQL (accounts, aliases, catch-alls, \
relocated addresses and alias domains, as vmailctl keeps them), writes each \
Maildir copy durably (on disk and linked into new/ before it says \
delivered), keeps the Maildir++ quota, runs the account's Sieve script, and \
forwards through qmail-queue.";

/// What closes [`command`]'s help: exit codes and examples.
const AFTER_HELP: &str = "\
Exit codes, as qmail-local reads them: 0 delivered; 99 delivered, skip the
following .qmail lines; 100 permanent failure (the message bounces); 111
temporary failure (qmail retries). One line on standard output says why.

Examples:
  |/usr/local/bin/vdeliver              the line of ~vmail/.qmail-default
  |/usr/local/bin/vdeliver '' delete    the same, dropping mail to unknown addresses
  vdeliver --local alice --domain example.com --sender bob@remote.example < message.eml";

#[cfg(test)]
mod tests {
    use super::*;

    /// The options of the clap description, `--help` and `--version` aside.
    fn described_options() -> Vec<String> {
        let mut cmd = command();
        cmd.build();
        cmd.get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !matches!(*l, "help" | "version"))
            .map(|l| format!("--{l}"))
            .collect()
    }

    #[test]
    fn the_description_has_the_options_of_the_hand_parser_and_no_other() {
        let mut described = described_options();
        described.sort();
        let mut taken = OPTIONS.map(String::from).to_vec();
        taken.sort();
        assert_eq!(described, taken);
        // Each is what `parse` takes (with its value) and `info` skips.
        for o in OPTIONS {
            assert!(parse([o, "v"]).is_ok(), "{o}");
            assert!(parse([format!("{o}=v")]).is_ok(), "{o}=");
            assert_eq!(info([o, "--help"]), None, "{o}");
        }
        // And the hand parser takes nothing beside them.
        for o in [
            "--user",
            "--maildir",
            "--fallback",
            "--configs",
            "--loca",
            "--help",
        ] {
            assert!(parse([o, "v"]).is_err(), "{o}");
        }
        // --help and --version are described as `info` answers them.
        let mut cmd = command();
        cmd.build();
        for (id, short, long) in [("help", 'h', "help"), ("version", 'V', "version")] {
            let a = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert_eq!((a.get_short(), a.get_long()), (Some(short), Some(long)));
            assert!(info([format!("-{short}")]).is_some());
            assert!(info([format!("--{long}")]).is_some());
        }
        // The usage text names every option too.
        for o in OPTIONS {
            assert!(USAGE.contains(o), "{o}");
        }
    }

    /// The clap description's reading of `args`, as `parse` would give it.
    fn clap_parse(args: &[&str]) -> Result<Invocation, String> {
        let m = command()
            .try_get_matches_from(std::iter::once("vdeliver").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let get = |id: &str| m.get_one::<String>(id).cloned();
        Ok(Invocation {
            config: get("config").map(PathBuf::from),
            local: get("local"),
            domain: get("domain"),
            sender: get("sender"),
            fallback: m
                .get_many::<String>("fallback")
                .and_then(|mut v| v.nth(1).cloned()),
        })
    }

    #[test]
    fn the_description_and_the_hand_parser_read_command_lines_alike() {
        let lines: &[&[&str]] = &[
            &[],
            &["", "bounce-no-mailbox"],
            &["", "delete"],
            &["ignored", "alice@example.org"],
            &["--local", "alice", "--domain", "example.com"],
            &["--local=alice", "--domain=example.com", "--sender="],
            &[
                "--sender", "", "--local", "a", "--domain", "b", "--config", "/c",
            ],
            &["--config", "/a", "--config", "/b"],
            &["--local", "a", "", "/var/vmail/catch/Maildir/"],
            &["--", "", "--odd"],
            &["--local"],
            &["--bogus", "x"],
            &["delete"],
            &["a", "b", "c"],
            &["--domain", "x", "one"],
        ];
        for args in lines {
            let hand = parse(args.iter().copied());
            let clap = clap_parse(args);
            match (&hand, &clap) {
                (Ok(h), Ok(c)) => assert_eq!(h, c, "{args:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{args:?}: by hand {hand:?}, by clap {clap:?}"),
            }
        }
    }

    #[test]
    fn the_description_is_complete_and_its_page_renders() {
        assert_eq!(crate::manual::help_gaps(&command()), Vec::<String>::new());
        let page = crate::manual::page(command(), &["vmailctl(8)"]).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH VDELIVER 8"), "{page}");
        for want in [
            "\\fB\\-\\-local\\fR",
            "\\fB\\-\\-domain\\fR",
            "\\fB\\-\\-sender\\fR",
            "\\fB\\-\\-config\\fR",
            "FALLBACK",
            "\\fBvdeliver\\fR \\-\\-local LOCAL \\-\\-domain DOMAIN [\\-\\-sender SENDER]",
            "required with \\-\\-domain",
            "qmail\\-local runs it once per recipient",
            "111",
            "vmailctl(8)",
        ] {
            assert!(page.contains(want), "no {want:?} in\n{page}");
        }
    }

    #[test]
    fn forms() {
        assert_eq!(parse(Vec::<String>::new()).unwrap(), Invocation::default());
        let i = parse(["--config", "/c", "--local=Bob", "--domain", "x.org"]).unwrap();
        assert_eq!(i.config, Some(PathBuf::from("/c")));
        assert_eq!(i.local.as_deref(), Some("Bob"));
        assert_eq!(i.domain.as_deref(), Some("x.org"));
        let i = parse(["", "bounce-no-mailbox"]).unwrap();
        assert_eq!(i.fallback.as_deref(), Some("bounce-no-mailbox"));
        let i = parse(["--", "", "--odd"]).unwrap();
        assert_eq!(i.fallback.as_deref(), Some("--odd"));
    }

    #[test]
    fn errors() {
        assert!(parse(["--bogus"]).unwrap_err().contains("--bogus"));
        assert!(parse(["--local"]).unwrap_err().contains("needs a value"));
        assert!(parse(["delete"]).is_err());
        assert!(parse(["a", "b", "c"]).is_err());
    }

    #[test]
    fn help_and_version_anywhere_among_the_options() {
        assert_eq!(info(["--help"]), Some(Info::Help));
        assert_eq!(info(["-h"]), Some(Info::Help));
        assert_eq!(info(["--version"]), Some(Info::Version));
        assert_eq!(info(["-V"]), Some(Info::Version));
        assert_eq!(
            info(["--local", "x", "--bogus", "--help"]),
            Some(Info::Help)
        );
        assert_eq!(info(["--version", "--help"]), Some(Info::Version));
        // Not an option: the value of one, or after `--`.
        assert_eq!(info(["--local", "--help", "--domain", "x.org"]), None);
        assert_eq!(info(["--sender", "-V"]), None);
        assert_eq!(info(["--", "", "--help"]), None);
        assert_eq!(info(["--local=--help"]), None);
        assert_eq!(info(Vec::<String>::new()), None);
        assert_eq!(info(["", "bounce-no-mailbox"]), None);
        // Beside an argument that is not UTF-8.
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"\xff");
        assert_eq!(info([bad, OsStr::new("--help")]), Some(Info::Help));
    }

    #[test]
    fn usage_names_what_is_required_and_the_version() {
        assert!(USAGE.contains("--local LOCAL --domain DOMAIN [--sender SENDER]"));
        assert!(USAGE.contains("required with --domain"));
        assert!(USAGE.contains("required with --local"));
        assert!(USAGE.contains("|/usr/local/bin/vdeliver"));
        assert!(USAGE.starts_with(&format!("vdeliver {}", env!("CARGO_PKG_VERSION"))));
        assert_eq!(VERSION, format!("vdeliver {}\n", env!("CARGO_PKG_VERSION")));
        assert!(parse(["--bogus"]).unwrap_err().contains("vdeliver --help"));
    }
}
