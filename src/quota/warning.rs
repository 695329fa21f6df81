//! The quota warning message, pure: its template and the RFC 5322 message
//! made from it.
//!
//! A template is a small message: header lines, an empty line, the body.
//! `Subject:` and `From:` come from it (built-in ones when it has none),
//! other header lines are kept; vdeliver adds `Return-Path`, `Date`, `To`,
//! `Message-ID`, `MIME-Version`, `Content-Type`,
//! `Content-Transfer-Encoding` and `Auto-Submitted`, so the template may not
//! set those. Placeholders, in the header and the body: `{address}`,
//! `{domain}`, `{percent}`, `{warn_percent}`, `{bytes_used}`,
//! `{bytes_limit}`, `{messages_used}`, `{messages_limit}` (a limit of 0 is
//! shown as `unlimited`); `{{` and `}}` are literal braces. The body is
//! UTF-8 and sent as `text/plain; charset=utf-8`; header values are ASCII.

use crate::maildirsize::{Limits, Usage};
use std::fmt::Write;

/// Longest template file accepted.
pub const MAX_TEMPLATE: usize = 64 * 1024;

/// The built-in template.
pub const BUILT_IN: &str = "\
Subject: Your mailbox is {percent}% full
From: Mail Delivery System <MAILER-DAEMON@{domain}>

Your mailbox {address} is {percent}% full:

  {bytes_used} bytes used of {bytes_limit},
  {messages_used} messages of {messages_limit}.

When it is full, new mail to you is returned to its senders. Please delete
messages you no longer need (and empty the Trash folder).

This warning is sent when a message takes the mailbox past
{warn_percent}% (at most once a day). It does not count against your quota.
";

/// Header fields vdeliver writes itself.
const OWN_FIELDS: &[&str] = &[
    "return-path",
    "delivered-to",
    "date",
    "to",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "auto-submitted",
];

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// (field name as written, unexpanded value with any folding).
    headers: Vec<(String, String)>,
    body: String,
}

impl Default for Template {
    fn default() -> Template {
        // The built-in text is checked by a test; should it ever fail, a
        // bare template still gives a well-formed message.
        parse(BUILT_IN).unwrap_or(Template {
            headers: Vec::new(),
            body: String::new(),
        })
    }
}

/// What the warning says.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub address: &'a str,
    pub domain: &'a str,
    pub usage: Usage,
    pub limits: Limits,
    pub percent: u64,
    pub warn_percent: u8,
}

/// Check a template. The error is one line.
pub fn parse(text: &str) -> Result<Template, String> {
    if text.len() > MAX_TEMPLATE {
        return Err(format!("is longer than {MAX_TEMPLATE} bytes"));
    }
    let text = text.replace("\r\n", "\n");
    let (head, body) = if let Some(body) = text.strip_prefix('\n') {
        ("", body)
    } else {
        text.split_once("\n\n")
            .ok_or("has no empty line between its header and its body")?
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for (i, line) in head.split('\n').enumerate().filter(|_| !head.is_empty()) {
        let n = i + 1;
        if line.starts_with([' ', '\t']) {
            let last = headers
                .last_mut()
                .ok_or(format!("line {n}: a continuation line comes first"))?;
            last.1.push('\n');
            last.1.push_str(line);
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(format!("line {n}: not a header line (Name: value)"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("line {n}: {name:?} is not a header field name"));
        }
        let lower = name.to_ascii_lowercase();
        if OWN_FIELDS.contains(&lower.as_str()) {
            return Err(format!("line {n}: vdeliver writes the {name} field itself"));
        }
        if headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(name)) {
            return Err(format!("line {n}: {name} appears twice"));
        }
        headers.push((
            name.to_string(),
            value.trim_start_matches([' ', '\t']).to_string(),
        ));
    }
    for (name, value) in &headers {
        if !value.is_ascii()
            || value
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(format!("the {name} field must be printable ASCII"));
        }
    }
    if body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err("the body contains a control character".into());
    }
    let t = Template {
        headers,
        body: body.to_string(),
    };
    // Every placeholder must be known: expand once with sample facts.
    let sample = Facts {
        address: "a@b",
        domain: "b",
        usage: Usage::default(),
        limits: Limits::default(),
        percent: 0,
        warn_percent: 0,
    };
    for (_, v) in &t.headers {
        expand(v, &sample)?;
    }
    expand(&t.body, &sample)?;
    Ok(t)
}

/// Fill in the placeholders.
pub fn expand(s: &str, f: &Facts<'_>) -> Result<String, String> {
    let limit = |n: u64| {
        if n == 0 {
            "unlimited".to_string()
        } else {
            n.to_string()
        }
    };
    let mut out = String::with_capacity(s.len() + 64);
    let mut rest = s;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            out.push('{');
            rest = t;
            continue;
        }
        if let Some(t) = tail.strip_prefix("}}") {
            out.push('}');
            rest = t;
            continue;
        }
        if tail.starts_with('}') {
            return Err("a lone '}' (write '}}')".into());
        }
        let end = tail.find('}').ok_or("an unclosed '{' (write '{{')")?;
        let name = &tail[1..end];
        let value = match name {
            "address" => f.address.to_string(),
            "domain" => f.domain.to_string(),
            "percent" => f.percent.to_string(),
            "warn_percent" => f.warn_percent.to_string(),
            "bytes_used" => f.usage.bytes.max(0).to_string(),
            "bytes_limit" => limit(f.limits.bytes),
            "messages_used" => f.usage.messages.max(0).to_string(),
            "messages_limit" => limit(f.limits.messages),
            other => return Err(format!("unknown placeholder {{{other}}}")),
        };
        out.push_str(&value);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The stored message: LF line endings, header then body.
pub fn render(t: &Template, f: &Facts<'_>, date: &str, message_id: &str) -> Vec<u8> {
    // Placeholders were checked when the template was; a value that still
    // fails leaves the text as written rather than losing the warning.
    let x = |s: &str| expand(s, f).unwrap_or_else(|_| s.to_string());
    let field = |name: &str| {
        t.headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(name))
            .map(|(_, v)| header_value(&x(v)))
    };
    let mut m = String::with_capacity(1024 + t.body.len());
    let _ = writeln!(m, "Return-Path: <>");
    let _ = writeln!(m, "Date: {date}");
    let from = field("from").unwrap_or_else(|| {
        header_value(&format!(
            "Mail Delivery System <MAILER-DAEMON@{}>",
            f.domain
        ))
    });
    let _ = writeln!(m, "From: {from}");
    let _ = writeln!(m, "To: <{}>", header_value(f.address));
    let subject =
        field("subject").unwrap_or_else(|| format!("Your mailbox is {}% full", f.percent));
    let _ = writeln!(m, "Subject: {subject}");
    let _ = writeln!(m, "Message-ID: <{message_id}>");
    let _ = writeln!(m, "MIME-Version: 1.0");
    let _ = writeln!(m, "Content-Type: text/plain; charset=utf-8");
    let _ = writeln!(m, "Content-Transfer-Encoding: 8bit");
    let _ = writeln!(m, "Auto-Submitted: auto-generated");
    for (name, v) in &t.headers {
        if !name.eq_ignore_ascii_case("from") && !name.eq_ignore_ascii_case("subject") {
            let _ = writeln!(m, "{name}: {}", header_value(&x(v)));
        }
    }
    m.push('\n');
    m.push_str(&x(&t.body));
    if !m.ends_with('\n') {
        m.push('\n');
    }
    m.into_bytes()
}

/// A header value as it may be written: ASCII (anything else becomes `?`),
/// folding kept, no other control characters.
fn header_value(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect()
}

/// `Sun, 22 Nov 2026 20:50:00 +0000` for seconds since the epoch (UTC).
pub fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31), proleptic
/// Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts<'static> {
        Facts {
            address: "alice@example.com",
            domain: "example.com",
            usage: Usage {
                bytes: 950,
                messages: 3,
            },
            limits: Limits {
                bytes: 1000,
                messages: 0,
            },
            percent: 95,
            warn_percent: 90,
        }
    }

    #[test]
    fn built_in_template_is_valid() {
        assert_eq!(parse(BUILT_IN).map(|_| ()), Ok(()));
        let msg = String::from_utf8(render(&Template::default(), &facts(), "D", "id@h")).unwrap();
        let (head, body) = msg.split_once("\n\n").unwrap();
        for want in [
            "Return-Path: <>",
            "Date: D",
            "From: Mail Delivery System <MAILER-DAEMON@example.com>",
            "To: <alice@example.com>",
            "Subject: Your mailbox is 95% full",
            "Message-ID: <id@h>",
            "Auto-Submitted: auto-generated",
        ] {
            assert!(
                head.lines().any(|l| l == want),
                "{want:?} missing in {head}"
            );
        }
        assert!(body.contains("950 bytes used of 1000"), "{body}");
        assert!(body.contains("3 messages of unlimited"), "{body}");
        assert!(msg.ends_with('\n'));
    }

    #[test]
    fn template_rules() {
        let ok = parse("Subject: {percent}% {{x}}\nX-Site: one\n two\n\nHi {address}\n").unwrap();
        let msg = String::from_utf8(render(&ok, &facts(), "D", "i@h")).unwrap();
        assert!(msg.contains("\nSubject: 95% {x}\n"), "{msg}");
        assert!(msg.contains("\nX-Site: one\n two\n"), "{msg}");
        assert!(msg.ends_with("\n\nHi alice@example.com\n"), "{msg}");
        // A body-only template (leading empty line) gets the default header.
        let bare = parse("\nJust a body.").unwrap();
        let msg = String::from_utf8(render(&bare, &facts(), "D", "i@h")).unwrap();
        assert!(
            msg.contains("\nSubject: Your mailbox is 95% full\n"),
            "{msg}"
        );
        assert!(msg.ends_with("\n\nJust a body.\n"), "{msg}");
        // CRLF templates are read as LF.
        assert!(parse("Subject: s\r\n\r\nbody\r\n").unwrap().body == "body\n");

        for (bad, want) in [
            ("Subject: x\nbody without separator", "no empty line"),
            ("Subject: {nope}\n\nb", "unknown placeholder {nope}"),
            ("Subject: x\n\n{address", "unclosed"),
            ("Subject: x\n\na } b", "lone"),
            ("To: someone\n\nb", "writes the To field itself"),
            ("Message-Id: x\n\nb", "itself"),
            ("Subject: a\nSubject: b\n\nb", "twice"),
            ("Bad Name: x\n\nb", "not a header field name"),
            ("no colon here\n\nb", "not a header line"),
            (" cont\n\nb", "continuation"),
            ("Subject: é\n\nb", "ASCII"),
            ("Subject: x\n\nbell \u{7}", "control"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(parse(&"x".repeat(MAX_TEMPLATE + 1)).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_380_600),
            "Sun, 22 Nov 2026 20:50:00 +0000"
        );
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(
            rfc5322_date(4_102_444_799),
            "Thu, 31 Dec 2099 23:59:59 +0000"
        );
    }
}
