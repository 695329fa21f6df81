//! The name rules: how a domain, a local part, an address, a Maildir path
//! and an alias or catch-all destination typed by an administrator are
//! checked and normalised before they reach SQL (domains lowercased and in
//! their ASCII/punycode form, local parts RFC 5322 atoms and dots,
//! lowercased), and how a stored domain is shown back in its Unicode form.
//! Pure: no database, no filesystem.

use super::{AdminError, Result};
use crate::plan;
use crate::recipient::normalize_domain;

/// A domain as an administrator types it, normalised for storage.
pub fn domain_name(raw: &str) -> Result<String> {
    normalize_domain(raw.trim())
        .map_err(|w| AdminError::Invalid(format!("bad domain {raw:?}: {w}")))
}

/// The domain a `list` command is limited to, if any. An address given
/// instead (`alias list team@example.com`) is refused naming the command
/// that shows one: `vmailctl {entity} show ADDRESS` (for a catch-all, the
/// domain).
pub fn list_filter(raw: Option<&str>, entity: &str) -> Result<Option<String>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if let Some((_, domain)) = raw.trim().rsplit_once('@') {
        let shown = if entity == "catchall" {
            domain.to_string()
        } else {
            raw.trim().to_string()
        };
        return Err(AdminError::Invalid(format!(
            "{raw:?} is an address, and `{entity} list` takes a domain: use \
             `vmailctl {entity} show {shown}` for one, or `vmailctl {entity} list {domain}`"
        )));
    }
    domain_name(raw).map(Some)
}

/// The Unicode form of a stored (ASCII) domain, for display.
pub fn unicode(ascii: &str) -> String {
    let (u, r) = idna::domain_to_unicode(ascii);
    if r.is_ok() {
        u
    } else {
        ascii.to_string()
    }
}

/// A domain shown in both forms when they differ: `bücher.example
/// (xn--bcher-kva.example)`.
pub fn both_forms(ascii: &str) -> String {
    let u = unicode(ascii);
    if u == ascii {
        u
    } else {
        format!("{u} ({ascii})")
    }
}

/// Local parts vdeliver accepts for accounts: RFC 5322 atoms and dots, but
/// no `/` (they name directories), at most 64 bytes, stored lowercased.
pub fn local_part(raw: &str) -> Result<String> {
    let bad = |w: &str| AdminError::Invalid(format!("bad local part {raw:?}: {w}"));
    if raw.is_empty() {
        return Err(bad("empty"));
    }
    if raw.len() > 64 {
        return Err(bad("longer than 64 bytes"));
    }
    if raw.starts_with('.') || raw.ends_with('.') || raw.contains("..") {
        return Err(bad("leading, trailing or doubled '.'"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+=?^_`{|}~.-".contains(c);
    if let Some(c) = raw.chars().find(|c| !ok(*c)) {
        return Err(bad(&format!("character {c:?} is not allowed")));
    }
    Ok(raw.to_ascii_lowercase())
}

/// Split and normalise `local@domain`.
pub fn address(raw: &str) -> Result<(String, String)> {
    let (l, d) = raw
        .trim()
        .rsplit_once('@')
        .ok_or_else(|| AdminError::Invalid(format!("bad address {raw:?}: no '@'")))?;
    Ok((local_part(l)?, domain_name(d)?))
}

/// A Maildir path as given on the command line: relative, no `..`.
pub fn check_maildir(m: &str) -> Result<String> {
    let bad = |w: &str| AdminError::Invalid(format!("bad Maildir path {m:?}: {w}"));
    if m.is_empty() {
        return Err(bad("empty"));
    }
    if m.starts_with('/') {
        return Err(bad("must be relative to mail.root"));
    }
    if m.split('/').any(|c| c == "..") {
        return Err(bad("must not contain '..'"));
    }
    if m.split('/').all(|c| c.is_empty() || c == ".") {
        return Err(bad("must name a directory beneath mail.root"));
    }
    if m.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok(if m.ends_with('/') {
        m.to_string()
    } else {
        format!("{m}/")
    })
}

/// Check a destination as an alias or catch-all row will hold it: an
/// address once `%n`, `%d`, `%=` are filled in.
pub fn destination(raw: &str) -> Result<String> {
    let d = raw.trim();
    plan::interpolate(d, "x", "example.org")
        .and_then(|s| plan::split_address(&s).map(|_| ()))
        .map_err(|w| AdminError::Invalid(format!("bad destination {raw:?}: {w}")))?;
    // Store the domain part normalised when it is literal, so the
    // database's own follow-up of literal destinations finds it.
    if d.contains('%') {
        return Ok(d.to_string());
    }
    let (l, dom) = plan::split_address(d)
        .map_err(|w| AdminError::Invalid(format!("bad destination {raw:?}: {w}")))?;
    Ok(format!("{l}@{dom}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            address("Alice@Example.COM").unwrap(),
            ("alice".into(), "example.com".into())
        );
        for bad in [
            "alice",
            "@x.org",
            "a/b@x.org",
            "a..b@x.org",
            ".a@x.org",
            "a@",
            "a@x_y.org",
            "a b@x.org",
        ] {
            let e = address(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        assert_eq!(check_maildir("x/y").unwrap(), "x/y/");
        assert!(check_maildir("../y").is_err());
        assert!(check_maildir("/y").is_err());
        assert!(check_maildir("./").is_err());
        assert!(destination("%n@%d").is_ok());
        assert_eq!(destination("a@B.Org").unwrap(), "a@b.org");
        assert!(destination("nope").is_err());
        assert!(destination("%q@x.org").is_err());
    }

    #[test]
    fn idn_forms() {
        assert_eq!(
            domain_name("Bücher.Example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(unicode("xn--bcher-kva.example"), "bücher.example");
        assert_eq!(
            both_forms("xn--bcher-kva.example"),
            "bücher.example (xn--bcher-kva.example)"
        );
        assert_eq!(both_forms("example.com"), "example.com");
    }
}
