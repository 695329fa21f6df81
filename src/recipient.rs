//! Who a message is for: the recipient and the sender, taken from what
//! qmail-local puts in the environment (or from the command line).
//!
//! Pure: the caller hands in the variables, as the bytes the environment
//! holds; nothing here reads the process environment. Every way the input can be wrong is a [`EnvError`], which the
//! outcome layer turns into a deferral (`#4.3.5`): a malformed environment is
//! a configuration mismatch between qmail and vdeliver, never a reason to
//! bounce.

use std::fmt;

/// The variables vdeliver reads, as qmail-local sets them: bytes, since
/// the environment need not be UTF-8. `None` means unset.
///
/// The envelope sender (`SENDER`, `RPLINE`) is opaque: it is stored and
/// forwarded byte for byte, whatever its encoding; only bytes that would
/// break the header line (controls) are refused. The local part (`EXT`,
/// `DEFAULT`) must be UTF-8 to be looked up: one that is not can match no
/// mailbox, so it is an address error (100 `#5.1.3`). `HOST` must be UTF-8
/// too, but a `HOST` that is not cannot be a domain in the database, and
/// qmail routed it here, so it is a qmail/vdeliver mismatch like any other
/// unusable `HOST` (111 `#4.3.5`), never a bounce.
#[derive(Debug, Default, Clone)]
pub struct QmailEnv<'a> {
    pub host: Option<&'a [u8]>,
    pub ext: Option<&'a [u8]>,
    pub default: Option<&'a [u8]>,
    pub sender: Option<&'a [u8]>,
    pub rpline: Option<&'a [u8]>,
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
    /// The local part used for lookups: ASCII letters folded ([`fold_local`]).
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
    NotUtf8(&'static str),
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
            EnvError::NotUtf8(v) => write!(f, "{v} is not valid UTF-8"),
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
    /// Whether the problem is the address itself (a control character,
    /// bytes that are not UTF-8 or excessive length in the local part): no
    /// mailbox can have it, so it is permanent. Everything else is a
    /// qmail/vdeliver mismatch.
    pub fn is_bad_address(&self) -> bool {
        matches!(
            self,
            EnvError::ControlCharacter("EXT" | "DEFAULT" | "--local")
                | EnvError::NotUtf8("EXT" | "DEFAULT")
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

/// `v` as text, or the error naming it.
fn utf8<'a>(name: &'static str, v: &'a [u8]) -> Result<&'a str, EnvError> {
    std::str::from_utf8(v).map_err(|_| EnvError::NotUtf8(name))
}

/// Opaque bytes (the envelope sender): when they are UTF-8, no control
/// character (as [`check_text`]); otherwise no C0 control or DEL, the
/// bytes that could break a header line. Other bytes are kept as given.
fn check_bytes(name: &'static str, v: &[u8]) -> Result<(), EnvError> {
    match std::str::from_utf8(v) {
        Ok(t) => check_text(name, t),
        Err(_) if v.iter().any(|b| *b < 0x20 || *b == 0x7f) => {
            Err(EnvError::ControlCharacter(name))
        }
        Err(_) => Ok(()),
    }
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

/// Work out the recipient.
///
/// Domain = `HOST`; local part = `EXT` less a leading `<HOST>-`, or `DEFAULT`
/// when that leaves nothing. `--local`/`--domain` replace both.
pub fn recipient(env: &QmailEnv<'_>, over: &Overrides<'_>) -> Result<Recipient, EnvError> {
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
            let host = utf8("HOST", host)?;
            check_text("HOST", host)?;
            let from_ext = match env.ext {
                Some(ext) => {
                    let ext = utf8("EXT", ext)?;
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
                        let d = utf8("DEFAULT", d)?;
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
    Ok(Recipient {
        local_as_addressed: local.to_string(),
        local: fold_local(local),
        domain,
    })
}

/// The `Return-Path:` line to prepend, with its newline, as bytes: the
/// sender is kept exactly as given, whatever its encoding.
///
/// `RPLINE` is used as qmail-local wrote it when present (it must be one line
/// of the form `Return-Path: <...>\n`); otherwise it is built from the sender
/// (`--sender`, else `SENDER`). An empty sender (a bounce) gives `<>`.
pub fn return_path(env: &QmailEnv<'_>, over: &Overrides<'_>) -> Result<Vec<u8>, EnvError> {
    let line = |s: &[u8]| [b"Return-Path: <", s, b">\n"].concat();
    if let Some(s) = over.sender {
        check_text("--sender", s)?;
        return Ok(line(s.as_bytes()));
    }
    if let Some(rp) = env.rpline {
        let body = rp.strip_suffix(b"\n").ok_or(EnvError::BadRpline)?;
        let ok = body.starts_with(b"Return-Path: <")
            && body.ends_with(b">")
            && check_bytes("RPLINE", body).is_ok();
        if !ok {
            return Err(EnvError::BadRpline);
        }
        return Ok(rp.to_vec());
    }
    let s = env.sender.ok_or(EnvError::Missing("SENDER"))?;
    check_bytes("SENDER", s)?;
    Ok(line(s))
}

/// The envelope sender (for forwarding), as bytes: `--sender`, else
/// `SENDER`.
pub fn sender<'a>(env: &QmailEnv<'a>, over: &Overrides<'a>) -> Result<&'a [u8], EnvError> {
    if let Some(s) = over.sender {
        check_text("--sender", s)?;
        return Ok(s.as_bytes());
    }
    let s = env.sender.ok_or(EnvError::Missing("SENDER"))?;
    check_bytes("SENDER", s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(host: &'a str, ext: Option<&'a str>, default: Option<&'a str>) -> QmailEnv<'a> {
        QmailEnv {
            host: Some(host.as_bytes()),
            ext: ext.map(str::as_bytes),
            default: default.map(str::as_bytes),
            sender: Some(b"bob@remote.org"),
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
            let got = recipient(&env(host, *ext, *default), &Overrides::default())
                .unwrap_or_else(|e| panic!("{host} {ext:?}: {e}"));
            assert_eq!(got.local, *want_local, "{host} {ext:?}");
            assert_eq!(got.domain, *want_domain, "{host} {ext:?}");
        }
    }

    #[test]
    fn case_kept_as_addressed_folded_for_lookup() {
        let r = recipient(
            &env("example.com", Some("Alice\u{212A}"), None),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(r.local, "alice\u{212A}");
        assert_eq!(r.local_as_addressed, "Alice\u{212A}");
    }

    #[test]
    fn errors() {
        let none = Overrides::default();
        let mut e = env("example.com", Some("a"), None);
        e.host = None;
        assert_eq!(recipient(&e, &none), Err(EnvError::Missing("HOST")));
        e.host = Some(b"");
        assert_eq!(recipient(&e, &none), Err(EnvError::Empty("HOST")));
        let e = env("example.com", None, None);
        assert_eq!(recipient(&e, &none), Err(EnvError::Missing("EXT")));
        let e = env("example.com", Some(""), None);
        assert_eq!(recipient(&e, &none), Err(EnvError::Empty("EXT")));
        let e = env("example.com", Some("a\nb"), None);
        assert_eq!(recipient(&e, &none), Err(EnvError::ControlCharacter("EXT")));
        let e = env("exa mple.com", Some("a"), None);
        assert!(matches!(recipient(&e, &none), Err(EnvError::BadDomain(_))));
        let e = env("../etc", Some("a"), None);
        assert!(matches!(recipient(&e, &none), Err(EnvError::BadDomain(_))));
        let half = Overrides {
            local: Some("a"),
            ..Default::default()
        };
        assert_eq!(recipient(&e, &half), Err(EnvError::OverrideNeedsBoth));
    }

    #[test]
    fn undecodable_bytes() {
        let none = Overrides::default();
        let mut e = env("example.com", None, None);
        e.ext = Some(b"j\xf6rg");
        let err = recipient(&e, &none).unwrap_err();
        assert_eq!(err, EnvError::NotUtf8("EXT"));
        assert!(err.is_bad_address());
        e.ext = Some(b"example.com-");
        e.default = Some(b"example.com-j\xf6rg");
        let err = recipient(&e, &none).unwrap_err();
        assert_eq!(err, EnvError::NotUtf8("DEFAULT"));
        assert!(err.is_bad_address());
        e.default = Some(b"alice");
        e.host = Some(b"\xe9xample.com");
        let err = recipient(&e, &none).unwrap_err();
        assert_eq!(err, EnvError::NotUtf8("HOST"));
        assert!(
            !err.is_bad_address(),
            "a HOST qmail routed here never bounces"
        );
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            local: Some("Zed"),
            domain: Some("Other.ORG"),
            sender: None,
        };
        let r = recipient(&env("example.com", Some("alice"), None), &o).unwrap();
        assert_eq!((r.local.as_str(), r.domain.as_str()), ("zed", "other.org"));
    }

    #[test]
    fn return_paths() {
        let none = Overrides::default();
        let mut e = env("example.com", Some("a"), None);
        assert_eq!(
            return_path(&e, &none).unwrap(),
            b"Return-Path: <bob@remote.org>\n"
        );
        e.sender = Some(b"");
        assert_eq!(return_path(&e, &none).unwrap(), b"Return-Path: <>\n");
        e.rpline = Some(b"Return-Path: <x@y>\n");
        assert_eq!(return_path(&e, &none).unwrap(), b"Return-Path: <x@y>\n");
        e.rpline = Some(b"Return-Path: <x@y>\nX-Evil: 1\n");
        assert_eq!(return_path(&e, &none), Err(EnvError::BadRpline));
        // A C1 control (U+0093) found by the recipient fuzz target.
        e.rpline = Some("Return-Path: <x\u{93}@y>\n".as_bytes());
        assert_eq!(return_path(&e, &none), Err(EnvError::BadRpline));
        // Latin-1 (not UTF-8): opaque, kept byte for byte.
        e.rpline = Some(b"Return-Path: <j\xf6rg@y>\n");
        assert_eq!(
            return_path(&e, &none).unwrap(),
            b"Return-Path: <j\xf6rg@y>\n"
        );
        e.rpline = Some(b"Return-Path: <j\xf6rg\r@y>\n");
        assert_eq!(return_path(&e, &none), Err(EnvError::BadRpline));
        e.rpline = None;
        e.sender = Some(b"j\xf6rg@remote.org");
        assert_eq!(
            return_path(&e, &none).unwrap(),
            b"Return-Path: <j\xf6rg@remote.org>\n"
        );
        assert_eq!(sender(&e, &none).unwrap(), b"j\xf6rg@remote.org");
        e.sender = Some(b"j\xf6rg\n@remote.org");
        assert_eq!(sender(&e, &none), Err(EnvError::ControlCharacter("SENDER")));
        e.sender = None;
        assert_eq!(return_path(&e, &none), Err(EnvError::Missing("SENDER")));
        e.sender = Some(b"a\r\nb");
        assert_eq!(
            return_path(&e, &none),
            Err(EnvError::ControlCharacter("SENDER"))
        );
    }
}
