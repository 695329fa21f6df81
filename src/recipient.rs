//! Who a message is for: the recipient and the sender, taken from what
//! qmail-local puts in the environment (or from the command line).
//!
//! Pure: the caller hands in the variables; nothing here reads the process
//! environment. Every way the input can be wrong is a [`EnvError`], which the
//! outcome layer turns into a deferral (`#4.3.5`): a malformed environment is
//! a configuration mismatch between qmail and vdeliver, never a reason to
//! bounce.

use std::fmt;

/// The variables vdeliver reads, as qmail-local sets them. `None` means unset.
#[derive(Debug, Default, Clone)]
pub struct QmailEnv<'a> {
    pub host: Option<&'a str>,
    pub ext: Option<&'a str>,
    pub default: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub rpline: Option<&'a str>,
}

/// Command-line overrides (`--local`, `--domain`, `--sender`), for Postfix
/// `pipe` and for tests. `--local` and `--domain` come as a pair.
#[derive(Debug, Default, Clone)]
pub struct Overrides<'a> {
    pub local: Option<&'a str>,
    pub domain: Option<&'a str>,
    pub sender: Option<&'a str>,
}

/// The recipient as vdeliver resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The local part as addressed (case kept), used in nothing but logs.
    pub local_as_addressed: String,
    /// The local part used for lookups: lowercased unless configured not to.
    pub local: String,
    /// The domain, lowercased, in its ASCII (punycode) form.
    pub domain: String,
}

impl Recipient {
    /// `local@domain` as written into `Delivered-To:` and matched by the loop
    /// check: always lowercased, whatever the lookup policy.
    pub fn delivered_to(&self) -> String {
        format!("{}@{}", self.local.to_ascii_lowercase(), self.domain)
    }
}

/// Why the environment cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    Missing(&'static str),
    Empty(&'static str),
    ControlCharacter(&'static str),
    BadDomain(String),
    BadRpline,
    OverrideNeedsBoth,
    TooLong(&'static str),
    Blank,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Missing(v) => write!(f, "{v} is not set"),
            EnvError::Empty(v) => write!(f, "{v} is empty"),
            EnvError::ControlCharacter(v) => write!(f, "{v} contains a control character"),
            EnvError::BadDomain(why) => write!(f, "HOST is not a valid domain: {why}"),
            EnvError::BadRpline => {
                f.write_str("RPLINE is not a single \"Return-Path: <...>\" line")
            }
            EnvError::OverrideNeedsBoth => {
                f.write_str("--local and --domain must be given together")
            }
            EnvError::TooLong(v) => write!(f, "the {v} is longer than {MAX_PART} bytes"),
            EnvError::Blank => f.write_str("the local part starts or ends with a blank"),
        }
    }
}

impl std::error::Error for EnvError {}

impl EnvError {
    /// Whether the problem is the address itself (a control character or
    /// excessive length in the local part): no mailbox can have it, so it
    /// is permanent. Everything else is a qmail/vdeliver mismatch.
    pub fn is_bad_address(&self) -> bool {
        matches!(
            self,
            EnvError::ControlCharacter("EXT" | "DEFAULT" | "--local")
                | EnvError::TooLong(_)
                | EnvError::Blank
        )
    }
}

/// Longest local part or domain accepted. SMTP allows 64 and 255; qmail does
/// not enforce either, so this only bounds what a hostile input can make us
/// carry around.
pub const MAX_PART: usize = 1000;

fn check_text(name: &'static str, v: &str) -> Result<(), EnvError> {
    // C0, DEL and the C1 controls (U+0080–U+009F) alike.
    if v.chars().any(char::is_control) {
        return Err(EnvError::ControlCharacter(name));
    }
    Ok(())
}

/// Lowercase a domain and convert an internationalised one to its ASCII
/// (punycode) form, the form the database stores.
pub fn normalize_domain(raw: &str) -> Result<String, String> {
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() {
        return Err("empty".into());
    }
    if trimmed.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed)
            .map_err(|_| "not a valid internationalised name".to_string())?
    };
    if ascii.len() > 253 {
        return Err("longer than 253 characters in its ASCII form".into());
    }
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err("empty label".into());
        }
        if label.len() > 63 {
            return Err("label longer than 63 characters".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("label starts or ends with '-'".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("characters other than letters, digits, '-' and '.'".into());
        }
    }
    Ok(ascii)
}

/// The one case folding of local parts, used for every lookup and
/// comparison (recipient, alias destinations, `vmailctl`'s names, and the
/// same rule in SQL): ASCII `A`–`Z` to `a`–`z`, every other character kept
/// exactly. Unicode lowercasing would map characters onto ASCII ones
/// (U+212A KELVIN SIGN onto `k`, so `\u{212A}elly` would reach `kelly`) and
/// depends on tables that differ between Rust, PostgreSQL's ctype and
/// Dovecot; ASCII folding is what Dovecot's `%L` and qmail do.
pub fn fold_local(local: &str) -> String {
    local.to_ascii_lowercase()
}

/// Strip a leading `<host>-` from `ext`, comparing case-insensitively.
fn strip_host_prefix<'a>(ext: &'a str, host: &str) -> &'a str {
    let n = host.len();
    if ext.len() > n
        && ext.as_bytes()[n] == b'-'
        && ext.as_bytes()[..n].eq_ignore_ascii_case(host.as_bytes())
    {
        &ext[n + 1..]
    } else {
        ext
    }
}

/// Work out the recipient (SPEC §3).
///
/// Domain = `HOST`; local part = `EXT` less a leading `<HOST>-`, or `DEFAULT`
/// when that leaves nothing. `--local`/`--domain` replace both.
pub fn recipient(
    env: &QmailEnv<'_>,
    over: &Overrides<'_>,
    lowercase_local: bool,
) -> Result<Recipient, EnvError> {
    let (local, host) = match (over.local, over.domain) {
        (Some(l), Some(d)) => {
            check_text("--local", l)?;
            check_text("--domain", d)?;
            if l.is_empty() {
                return Err(EnvError::Empty("--local"));
            }
            (l, d)
        }
        (None, None) => {
            let host = env.host.ok_or(EnvError::Missing("HOST"))?;
            if host.is_empty() {
                return Err(EnvError::Empty("HOST"));
            }
            check_text("HOST", host)?;
            let from_ext = match env.ext {
                Some(ext) => {
                    check_text("EXT", ext)?;
                    strip_host_prefix(ext, host)
                }
                None => "",
            };
            let local = if !from_ext.is_empty() {
                from_ext
            } else {
                match env.default {
                    Some(d) if !d.is_empty() => {
                        check_text("DEFAULT", d)?;
                        strip_host_prefix(d, host)
                    }
                    Some(_) => return Err(EnvError::Empty("EXT and DEFAULT")),
                    None if env.ext.is_none() => return Err(EnvError::Missing("EXT")),
                    None => return Err(EnvError::Empty("EXT")),
                }
            };
            (local, host)
        }
        _ => return Err(EnvError::OverrideNeedsBoth),
    };
    if local.is_empty() {
        return Err(EnvError::Empty("the local part"));
    }
    if local.len() > MAX_PART {
        return Err(EnvError::TooLong("local part"));
    }
    if local.starts_with(char::is_whitespace) || local.ends_with(char::is_whitespace) {
        return Err(EnvError::Blank);
    }
    let domain = normalize_domain(host).map_err(EnvError::BadDomain)?;
    let lookup = if lowercase_local {
        fold_local(local)
    } else {
        local.to_string()
    };
    Ok(Recipient {
        local_as_addressed: local.to_string(),
        local: lookup,
        domain,
    })
}

/// The `Return-Path:` line to prepend, with its newline.
///
/// `RPLINE` is used as qmail-local wrote it when present (it must be one line
/// of the form `Return-Path: <...>\n`); otherwise it is built from the sender
/// (`--sender`, else `SENDER`). An empty sender (a bounce) gives `<>`.
pub fn return_path(env: &QmailEnv<'_>, over: &Overrides<'_>) -> Result<String, EnvError> {
    if let Some(s) = over.sender {
        check_text("--sender", s)?;
        return Ok(format!("Return-Path: <{s}>\n"));
    }
    if let Some(rp) = env.rpline {
        let body = rp.strip_suffix('\n').ok_or(EnvError::BadRpline)?;
        let ok = body.starts_with("Return-Path: <")
            && body.ends_with('>')
            && !body.chars().any(char::is_control);
        if !ok {
            return Err(EnvError::BadRpline);
        }
        return Ok(rp.to_string());
    }
    let s = env.sender.ok_or(EnvError::Missing("SENDER"))?;
    check_text("SENDER", s)?;
    Ok(format!("Return-Path: <{s}>\n"))
}

/// The envelope sender (for forwarding): `--sender`, else `SENDER`.
pub fn sender<'a>(env: &QmailEnv<'a>, over: &Overrides<'a>) -> Result<&'a str, EnvError> {
    let s = over
        .sender
        .or(env.sender)
        .ok_or(EnvError::Missing("SENDER"))?;
    check_text("SENDER", s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(host: &'a str, ext: Option<&'a str>, default: Option<&'a str>) -> QmailEnv<'a> {
        QmailEnv {
            host: Some(host),
            ext,
            default,
            sender: Some("bob@remote.org"),
            rpline: None,
        }
    }

    /// (HOST, EXT, DEFAULT, want local, want domain)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, &'a str);

    #[test]
    fn table() {
        let cases: &[Case] = &[
            (
                "Example.COM",
                Some("example.com-Alice"),
                Some("example.com-Alice"),
                "alice",
                "example.com",
            ),
            ("example.com", Some("alice"), None, "alice", "example.com"),
            (
                "example.com",
                Some("EXAMPLE.com-a-b"),
                None,
                "a-b",
                "example.com",
            ),
            (
                "example.com",
                Some("example.com-"),
                Some("bob"),
                "bob",
                "example.com",
            ),
            (
                "example.com",
                Some(""),
                Some("carol"),
                "carol",
                "example.com",
            ),
            (
                "example.com",
                None,
                Some("example.com-dave"),
                "dave",
                "example.com",
            ),
            ("example.com.", Some("x"), None, "x", "example.com"),
            (
                "bücher.example",
                Some("ann"),
                None,
                "ann",
                "xn--bcher-kva.example",
            ),
        ];
        for (host, ext, default, want_local, want_domain) in cases {
            let got = recipient(&env(host, *ext, *default), &Overrides::default(), true)
                .unwrap_or_else(|e| panic!("{host} {ext:?}: {e}"));
            assert_eq!(got.local, *want_local, "{host} {ext:?}");
            assert_eq!(got.domain, *want_domain, "{host} {ext:?}");
        }
    }

    #[test]
    fn case_kept_when_configured() {
        let r = recipient(
            &env("example.com", Some("Alice"), None),
            &Overrides::default(),
            false,
        )
        .unwrap();
        assert_eq!(r.local, "Alice");
        assert_eq!(r.local_as_addressed, "Alice");
        assert_eq!(r.delivered_to(), "alice@example.com");
    }

    #[test]
    fn errors() {
        let none = Overrides::default();
        let mut e = env("example.com", Some("a"), None);
        e.host = None;
        assert_eq!(recipient(&e, &none, true), Err(EnvError::Missing("HOST")));
        e.host = Some("");
        assert_eq!(recipient(&e, &none, true), Err(EnvError::Empty("HOST")));
        let e = env("example.com", None, None);
        assert_eq!(recipient(&e, &none, true), Err(EnvError::Missing("EXT")));
        let e = env("example.com", Some(""), None);
        assert_eq!(recipient(&e, &none, true), Err(EnvError::Empty("EXT")));
        let e = env("example.com", Some("a\nb"), None);
        assert_eq!(
            recipient(&e, &none, true),
            Err(EnvError::ControlCharacter("EXT"))
        );
        let e = env("exa mple.com", Some("a"), None);
        assert!(matches!(
            recipient(&e, &none, true),
            Err(EnvError::BadDomain(_))
        ));
        let e = env("../etc", Some("a"), None);
        assert!(matches!(
            recipient(&e, &none, true),
            Err(EnvError::BadDomain(_))
        ));
        let half = Overrides {
            local: Some("a"),
            ..Default::default()
        };
        assert_eq!(recipient(&e, &half, true), Err(EnvError::OverrideNeedsBoth));
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            local: Some("Zed"),
            domain: Some("Other.ORG"),
            sender: None,
        };
        let r = recipient(&env("example.com", Some("alice"), None), &o, true).unwrap();
        assert_eq!((r.local.as_str(), r.domain.as_str()), ("zed", "other.org"));
    }

    #[test]
    fn return_paths() {
        let none = Overrides::default();
        let mut e = env("example.com", Some("a"), None);
        assert_eq!(
            return_path(&e, &none).unwrap(),
            "Return-Path: <bob@remote.org>\n"
        );
        e.sender = Some("");
        assert_eq!(return_path(&e, &none).unwrap(), "Return-Path: <>\n");
        e.rpline = Some("Return-Path: <x@y>\n");
        assert_eq!(return_path(&e, &none).unwrap(), "Return-Path: <x@y>\n");
        e.rpline = Some("Return-Path: <x@y>\nX-Evil: 1\n");
        assert_eq!(return_path(&e, &none), Err(EnvError::BadRpline));
        // A C1 control (U+0093) found by the recipient fuzz target.
        e.rpline = Some("Return-Path: <x\u{93}@y>\n");
        assert_eq!(return_path(&e, &none), Err(EnvError::BadRpline));
        e.rpline = None;
        e.sender = None;
        assert_eq!(return_path(&e, &none), Err(EnvError::Missing("SENDER")));
        e.sender = Some("a\r\nb");
        assert_eq!(
            return_path(&e, &none),
            Err(EnvError::ControlCharacter("SENDER"))
        );
    }
}
