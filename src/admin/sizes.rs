//! Byte and message counts as an administrator types them (`500M`,
//! `1.5GiB`, `unlimited`; binary units) and as vmailctl shows them back
//! (`2 GiB`, `unlimited`). 0 always means unlimited. Pure.

use super::{AdminError, Result};

/// A byte count as typed: `0`, `unlimited`, `5000000`, `500M`, `2G`,
/// `1.5GiB`. Units are binary (K = 1024), as Dovecot's quota rules and
/// Courier's `maildirmake -q` read them. 0 means unlimited.
pub fn parse_size(raw: &str) -> Result<i64> {
    let s = raw.trim();
    let bad = || {
        AdminError::Invalid(format!(
            "bad size {raw:?}: give bytes, or a number with K, M, G or T (binary units), or 'unlimited'"
        ))
    };
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    if num.is_empty() || num.matches('.').count() > 1 || num.starts_with('.') {
        return Err(bad());
    }
    if !num.contains('.') {
        let n: i64 = num.parse().map_err(|_| bad())?;
        return n.checked_mul(mult as i64).ok_or_else(bad);
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = (v * mult).round();
    if !(0.0..9.0e18).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// A message count as typed: a whole number, or `unlimited` (0).
pub fn parse_count(raw: &str) -> Result<i64> {
    let s = raw.trim();
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("none") {
        return Ok(0);
    }
    s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
        AdminError::Invalid(format!(
            "bad message count {raw:?}: give a whole number or 'unlimited'"
        ))
    })
}

/// A byte count for people: `2 GiB`, `1.5 MiB`, `512 B`.
pub fn human_size(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if (v - v.round()).abs() < 0.05 {
        format!("{} {}", v.round() as i64, UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A limit for people: `unlimited` for NULL or 0.
pub fn human_limit(bytes: Option<i64>) -> String {
    match bytes {
        Some(n) if n > 0 => human_size(n),
        _ => "unlimited".into(),
    }
}

/// A message limit for people.
pub fn human_count(n: Option<i64>) -> String {
    match n {
        Some(n) if n > 0 => n.to_string(),
        _ => "unlimited".into(),
    }
}

/// A count with its noun in the right number: `1 message`, `2 messages`,
/// `0 messages`.
pub fn count_of(n: impl Into<i128>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases = [
            ("0", 0),
            ("unlimited", 0),
            ("123", 123),
            ("1k", 1024),
            ("2G", 2 << 30),
            ("2 GiB", 2 << 30),
            ("500M", 500 << 20),
            ("1.5K", 1536),
            ("1T", 1 << 40),
        ];
        for (s, want) in cases {
            assert_eq!(parse_size(s).unwrap(), want, "{s}");
        }
        for bad in ["", "-1", "1X", "G", ".5G", "1.2.3", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_count("50000").unwrap(), 50000);
        assert_eq!(parse_count("unlimited").unwrap(), 0);
        assert!(parse_count("-3").is_err());
        assert!(parse_count("1.5").is_err());
        assert_eq!(human_size(2 << 30), "2 GiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_limit(Some(0)), "unlimited");
        assert_eq!(human_limit(None), "unlimited");
    }
}
