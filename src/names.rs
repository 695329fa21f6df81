//! Maildir file names, pure.
//!
//! `<secs>.M<usec>P<pid>Q<n>R<random>.<host>` is unique without relying on
//! the clock alone: `Q<n>` counts deliveries within one process and
//! `R<random>` carries 64 random bits, so two processes that share a pid
//! (containers, pid wrap) in the same microsecond still differ. The host is
//! escaped so the name never holds `/` (a path separator) or `:` (the Maildir
//! info separator).

use std::fmt::Write;

/// Everything that goes into one unique name. The caller supplies the clock,
/// the pid, the counter and the randomness.
#[derive(Debug, Clone, Copy)]
pub struct NameParts<'a> {
    pub secs: u64,
    pub usec: u32,
    pub pid: u32,
    pub seq: u64,
    pub random: u64,
    pub host: &'a str,
}

/// Escape a host name for a Maildir file name: `/` → `\057`, `:` → `\072`,
/// and `,` → `\054` (a comma would start a `,S=` field readers take as the
/// size).
pub fn escape_host(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    for c in host.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            ',' => out.push_str("\\054"),
            c => out.push(c),
        }
    }
    out
}

/// The unique part of a Maildir name. `host` must already be escaped.
pub fn unique(p: &NameParts<'_>) -> String {
    let mut s = String::with_capacity(48 + p.host.len());
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "{}.M{}P{}Q{}R{:016x}.{}",
        p.secs, p.usec, p.pid, p.seq, p.random, p.host
    );
    s
}

/// The name in `new/`: the unique part plus the exact stored size, which
/// Maildir++ quota readers (Dovecot, Courier) take instead of a `stat`.
pub fn new_name(unique: &str, size: u64) -> String {
    format!("{unique},S={size}")
}

/// The size recorded in a Maildir file name (`,S=<n>` before any `:2,`
/// info), if there is one.
pub fn size_from_name(name: &str) -> Option<u64> {
    let base = name.split(':').next().unwrap_or(name);
    base.split(',')
        .skip(1)
        .find_map(|f| f.strip_prefix("S=")?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_host("mx1.example.com"), "mx1.example.com");
        assert_eq!(escape_host("a/b:c,d"), "a\\057b\\072c\\054d");
    }

    #[test]
    fn format() {
        let p = NameParts {
            secs: 1700000000,
            usec: 42,
            pid: 7,
            seq: 3,
            random: 0xabc,
            host: "h",
        };
        assert_eq!(unique(&p), "1700000000.M42P7Q3R0000000000000abc.h");
        assert_eq!(
            new_name(&unique(&p), 99),
            "1700000000.M42P7Q3R0000000000000abc.h,S=99"
        );
    }

    #[test]
    fn same_instant_differs() {
        let a = NameParts {
            secs: 1,
            usec: 2,
            pid: 3,
            seq: 0,
            random: 5,
            host: "h",
        };
        let b = NameParts { seq: 1, ..a };
        let c = NameParts { random: 6, ..a };
        assert_ne!(unique(&a), unique(&b));
        assert_ne!(unique(&a), unique(&c));
    }

    #[test]
    fn sizes() {
        assert_eq!(size_from_name("1.M1P1.h,S=123"), Some(123));
        assert_eq!(size_from_name("1.M1P1.h,S=123,W=130:2,S"), Some(123));
        assert_eq!(size_from_name("1.M1P1.h:2,S"), None);
        assert_eq!(size_from_name("1.M1P1.h,S=x"), None);
    }
}
