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
            b"--config" | b"--local" | b"--domain" | b"--sender" => {
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

#[cfg(test)]
mod tests {
    use super::*;

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
