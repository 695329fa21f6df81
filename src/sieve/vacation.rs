//! The delivery side of [`Action::Vacation`](super::action::Action): whether
//! to answer (RFC 5230 section 4.5/4.6, RFC 3834 section 2), the reply
//! itself (RFC 5230 section 5, RFC 3834 section 3, RFC 2047 for non-ASCII
//! header text), the once-per-period memory under the account's home, and
//! queueing the reply through qmail-queue ([`crate::forward`]).
//!
//! # The one call
//!
//! [`respond`] does all of it for one vacation action and returns a
//! [`Response`] that displays as one line (`vacation reply sent to …`,
//! `vacation skipped: …`, `vacation failed: …`). It never fails the
//! delivery: every error becomes [`Response::Failed`], to be put on the
//! output line. Call it after the message is safely stored.
//!
//! # Guarantees
//!
//! * [`decide`] is pure (no filesystem, clock or network).
//! * At most one reply per (sender, handle) per period: the memory is read,
//!   the reply queued and the memory rewritten all under one exclusive
//!   `flock`, so concurrent deliveries from one sender send exactly one
//!   reply. A reply is recorded only once qmail-queue has accepted it: a
//!   failed send is retried by the next message, never counted as sent.
//! * A reply is never sent when the memory cannot be read or locked (an
//!   unknown state could mean a reply storm): that is a `failed` line.
//!
//! # Choices where the RFCs leave room
//!
//! * **Addresses are compared case-insensitively as a whole**, local part
//!   included (RFC 5321 makes local parts case-sensitive, but every site
//!   this program serves folds them, as vdeliver's own lookup does).
//! * **The user's addresses**: the account, the aliases that led here, the
//!   addressed recipient, `:addresses`, and the `:from` address. The
//!   sender being any of them, or none of them being in
//!   To/Cc/Bcc/Resent-To/Resent-Cc/Resent-Bcc, means no reply.
//! * **Senders that get no reply**: empty (`<>`) and qmail's `#@[]`; one
//!   that is not a plain `local@domain` (blanks, controls, `<>`, not UTF-8):
//!   no reply rather than a mangled `To:`; local parts `mailer-daemon`,
//!   `listserv`, `majordomo`, `owner-*`, `*-request`, `*-owner` (ASCII case
//!   ignored).
//! * **Headers that mean no reply**: any `List-*` field; `Precedence:`
//!   `bulk`, `list` or `junk`; `Auto-Submitted:` other than `no` (its
//!   keyword, parameters ignored); `X-Auto-Response-Suppress:` unless every
//!   value in it is one that does not concern out-of-office replies
//!   (`None`, `DR`, `NDR`, `RN`, `NRN`) — so `All`, `OOF`, `AutoReply`, an
//!   empty or unknown value all suppress.
//! * **Periods** ([`Limits`]): no `:days`/`:seconds` → 7 days (RFC 5230);
//!   then clamped to [`Limits::min`] (default 1 day, Pigeonhole's default
//!   `sieve_vacation_min_period`, applied to `:seconds` too, so `:seconds
//!   1` behaves as on a stock Pigeonhole site) and [`Limits::max`] (default
//!   90 days, Pigeonhole's `sieve_vacation_max_period`).
//! * **Handle**: `:handle` as given; without it, one derived from the
//!   reason, subject, from and `:mime` (RFC 5230 section 4.2) with a
//!   64-bit FNV-1a hash written as hex, stable across versions.
//! * **Subject**: `:subject`, else `Auto: ` and the original subject with
//!   RFC 2047 encoded words decoded (UTF-8, US-ASCII, ISO-8859-1; other
//!   charsets are left encoded), else `Automatic reply` when the original
//!   has none. Non-ASCII text (or a line too long for one header line) is
//!   written as RFC 2047 `B` encoded words in UTF-8, folded.
//! * **From**: `:from` (a display name with non-ASCII text is encoded),
//!   else `<addressed recipient>`.
//! * **In-Reply-To / References**: the original `Message-ID`; `References`
//!   is the original `References` (or its single-id `In-Reply-To`) plus
//!   that id (RFC 5322 section 3.6.4), at most [`MAX_REFERENCES`] ids (the
//!   first and the newest kept). Without an original `Message-ID` neither
//!   field is written.
//! * **Body**: without `:mime`, `text/plain; charset=utf-8`, `7bit` when it
//!   is ASCII with short lines, else `quoted-printable` (qmail-remote sends
//!   8-bit data unchanged even to a server without 8BITMIME, so 8bit is not
//!   safe to send). With `:mime` the reason is the MIME entity: its
//!   `Content-*` header fields go into the reply's header (other fields in
//!   it are dropped: the reply's own header is ours), its body follows.
//!   Line ends are LF, as qmail-queue expects.
//! * **The memory file** (`<home>/.vdeliver.vacation` by default) holds
//!   one line per (sender, handle): `<sent> <expires> <handle> <sender>`,
//!   times in seconds since the epoch, handle and sender with `%XX` for
//!   bytes outside printable ASCII, `%` and blank (an empty field is a
//!   lone `%`). Expired entries are
//!   dropped whenever it is rewritten; at most [`MAX_ENTRIES`] are kept
//!   (the newest). It is locked through the companion `<name>.lock`, which
//!   is never replaced (the memory is replaced by rename, so its own inode
//!   cannot carry the lock). A file that does not parse (or is larger than
//!   [`MAX_MEMORY_FILE`]) is treated as empty and replaced, with a note;
//!   a symlink (memory or lock file) or anything not a regular file is
//!   refused: no reply, a `failed` line, the file left alone. The lock is
//!   waited for at most [`Limits::lock_timeout`] (default 5 s; the lock
//!   is held while qmail-queue runs), then the reply is given up
//!   (`failed`), so a stuck delivery cannot hold others past their
//!   deadlines.

use super::action::VacationReply;
use crate::forward::{Queue, QueueError};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Seconds in a day.
pub const DAY: u64 = 86_400;
/// Most ids written in `References:`.
pub const MAX_REFERENCES: usize = 32;
/// Most entries the memory keeps.
pub const MAX_ENTRIES: usize = 10_000;
/// Largest memory file read; a larger one is treated as corrupt.
pub const MAX_MEMORY_FILE: u64 = 4 << 20;
/// The memory file's default name in the home directory.
pub const DEFAULT_MEMORY_FILE: &str = ".vdeliver.vacation";

/// Site limits on the period between two replies to one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Used when the script gives no period (RFC 5230: 7 days).
    pub default: u64,
    /// The shortest period, `:seconds` included (default 1 day).
    pub min: u64,
    /// The longest period (default 90 days).
    pub max: u64,
    /// Longest wait for another delivery's lock on the memory.
    pub lock_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            default: 7 * DAY,
            min: DAY,
            max: 90 * DAY,
            lock_timeout: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// The period to use for what the script gave.
    pub fn period(&self, given: Option<u64>) -> u64 {
        // `min` wins over a (misconfigured) smaller `max`.
        given.unwrap_or(self.default).min(self.max).max(self.min)
    }
}

// ---------------------------------------------------------------------
// Deciding
// ---------------------------------------------------------------------

/// Why no reply is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The envelope sender is empty (a bounce) or qmail's `#@[]`.
    NoSender,
    /// The envelope sender is not a plain `local@domain`.
    UnusableSender,
    /// The sender is one of the user's own addresses.
    SenderIsUser(String),
    /// The sender looks like a mailing list or a daemon.
    DaemonSender(String),
    /// The message has a `List-*` field (its name).
    ListHeader(String),
    /// `Precedence:` bulk, list or junk (the value).
    Precedence(String),
    /// `Auto-Submitted:` other than `no` (the value).
    AutoSubmitted(String),
    /// `X-Auto-Response-Suppress:` asks for no reply (the value).
    Suppressed(String),
    /// None of the user's addresses is in To/Cc/Bcc/Resent-*.
    NotAddressed,
    /// Already answered within the period (from the memory).
    AlreadyReplied,
    /// The site's Junk verdict marks the message as spam (the verdict, as
    /// configured): its sender is most likely forged, and a reply would be
    /// backscatter. Decided by delivery, not by [`decide`].
    Spam(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoSender => write!(f, "the envelope sender is empty"),
            Reason::UnusableSender => write!(f, "the envelope sender is not a plain address"),
            Reason::SenderIsUser(s) => write!(f, "the sender {s} is the user"),
            Reason::DaemonSender(s) => {
                write!(f, "the sender {s} looks like a mailing list or daemon")
            }
            Reason::ListHeader(h) => write!(f, "the message has a {h} header"),
            Reason::Precedence(v) => write!(f, "the message has Precedence: {v}"),
            Reason::AutoSubmitted(v) => write!(f, "the message has Auto-Submitted: {v}"),
            Reason::Suppressed(v) => {
                write!(f, "the message has X-Auto-Response-Suppress: {v}")
            }
            Reason::NotAddressed => {
                write!(f, "none of the user's addresses is in To/Cc/Bcc/Resent-*")
            }
            Reason::Spam(v) => write!(f, "the message is marked as spam ({v})"),
            Reason::AlreadyReplied => write!(f, "already replied to this sender in the period"),
        }
    }
}

/// What [`decide`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Send(Reply),
    Skip(Reason),
}

/// A reply to send (everything but the date and Message-ID, which
/// [`Reply::render`] takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The envelope recipient: the original envelope sender.
    pub to: String,
    /// The `From:` value, ready to write (ASCII).
    pub from: String,
    /// The subject as text (encoded when rendered).
    pub subject: String,
    /// The original Message-ID (`<…>`), if any.
    pub in_reply_to: Option<String>,
    /// The `References:` ids, in order.
    pub references: Vec<String>,
    /// The reason text or (`mime`) MIME entity, LF line ends.
    pub body: String,
    pub mime: bool,
    /// The memory key besides the sender.
    pub handle: String,
    /// The period as the script gave it (clamped by [`Limits::period`]).
    pub period: Option<u64>,
}

/// Decide whether to answer a message. `msg_headers` is the original
/// message's header block (anything after its end is ignored),
/// `envelope_sender` the envelope sender (`$SENDER`), `recipient` the
/// address the message was delivered to, `account` the account's address,
/// `alias_addresses` the aliases that led here.
pub fn decide(
    reply: &VacationReply,
    msg_headers: &[u8],
    envelope_sender: &[u8],
    recipient: &str,
    account: &str,
    alias_addresses: &[String],
) -> Decision {
    match check(
        reply,
        msg_headers,
        envelope_sender,
        recipient,
        account,
        alias_addresses,
    ) {
        Ok(r) => Decision::Send(r),
        Err(why) => Decision::Skip(why),
    }
}

fn check(
    reply: &VacationReply,
    msg_headers: &[u8],
    envelope_sender: &[u8],
    recipient: &str,
    account: &str,
    alias_addresses: &[String],
) -> Result<Reply, Reason> {
    if envelope_sender.is_empty() || envelope_sender == b"#@[]" {
        return Err(Reason::NoSender);
    }
    let sender = std::str::from_utf8(envelope_sender).map_err(|_| Reason::UnusableSender)?;
    if !plain_address(sender) {
        return Err(Reason::UnusableSender);
    }

    let mut mine: Vec<String> = Vec::new();
    for a in [account, recipient]
        .into_iter()
        .chain(alias_addresses.iter().map(String::as_str))
        .chain(reply.addresses.iter().map(String::as_str))
    {
        mine.extend(parse_addresses(a));
    }
    if let Some(f) = &reply.from {
        mine.extend(parse_addresses(f));
    }
    let is_mine = |a: &str| mine.iter().any(|m| m.eq_ignore_ascii_case(a));
    if is_mine(sender) {
        return Err(Reason::SenderIsUser(sender.to_string()));
    }
    if daemon_like(sender) {
        return Err(Reason::DaemonSender(sender.to_string()));
    }

    let fields = header_fields(msg_headers);
    for (name, value) in &fields {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("list-") {
            return Err(Reason::ListHeader(name.clone()));
        }
        let v = value.trim();
        match lower.as_str() {
            "precedence" => {
                let p = v.to_ascii_lowercase();
                if matches!(p.as_str(), "bulk" | "list" | "junk") {
                    return Err(Reason::Precedence(v.to_string()));
                }
            }
            "auto-submitted" => {
                let keyword = v.split([';', '(']).next().unwrap_or("").trim();
                if !keyword.eq_ignore_ascii_case("no") {
                    return Err(Reason::AutoSubmitted(v.to_string()));
                }
            }
            "x-auto-response-suppress" => {
                let harmless = ["none", "dr", "ndr", "rn", "nrn"];
                let values: Vec<String> = v
                    .split([',', ' ', '\t'])
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_ascii_lowercase())
                    .collect();
                if values.is_empty() || values.iter().any(|s| !harmless.contains(&s.as_str())) {
                    return Err(Reason::Suppressed(v.to_string()));
                }
            }
            _ => {}
        }
    }

    const ADDRESSED: [&str; 6] = ["to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"];
    let addressed = fields
        .iter()
        .filter(|(n, _)| ADDRESSED.iter().any(|a| n.eq_ignore_ascii_case(a)))
        .flat_map(|(_, v)| parse_addresses(v))
        .any(|a| is_mine(&a));
    if !addressed {
        return Err(Reason::NotAddressed);
    }

    Ok(compose(reply, &fields, sender, recipient))
}

/// `local@domain` with nothing that would need quoting in a header.
fn plain_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() => a
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>' | ',' | ';')),
        _ => false,
    }
}

/// RFC 3834 section 2 / RFC 5230 section 4.6: senders that are lists or
/// programs.
fn daemon_like(sender: &str) -> bool {
    let local = sender
        .rsplit_once('@')
        .map_or(sender, |(l, _)| l)
        .to_ascii_lowercase();
    matches!(local.as_str(), "mailer-daemon" | "listserv" | "majordomo")
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-owner")
}

/// The header block's fields, unfolded: (name, value). Lines without a
/// colon are skipped; the block ends at the first empty line.
pub fn header_fields(block: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for raw in block.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, v)) = out.last_mut() {
                v.push_str(&String::from_utf8_lossy(line));
            }
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon])
            .trim_end()
            .to_string();
        if name.is_empty() || name.contains(' ') {
            continue;
        }
        let value = String::from_utf8_lossy(&line[colon + 1..]).into_owned();
        out.push((name, value));
    }
    out
}

fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The addr-specs in an address list (RFC 5322 section 3.4): display
/// names, comments, quoted strings, groups and source routes handled;
/// quotes around a local part removed. Lenient: what is not an address is
/// skipped.
pub fn parse_addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Each element's text outside comments, and its angle-bracket part.
    let mut plain = String::new();
    let mut angle: Option<String> = None;
    let mut in_angle = false;
    let mut depth = 0usize;
    let mut chars = value.chars();
    let mut flush = |plain: &mut String, angle: &mut Option<String>| {
        let a = match angle.take() {
            Some(a) => a,
            None => std::mem::take(plain),
        };
        plain.clear();
        // A source route `@a,@b:` before the address.
        let a = match a.rfind(':') {
            Some(i) if a.trim_start().starts_with('@') => a[i + 1..].to_string(),
            _ => a,
        };
        let a: String = a
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"')
            .collect();
        if a.contains('@') {
            out.push(a);
        }
    };
    while let Some(c) = chars.next() {
        if depth > 0 {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                '\\' => {
                    chars.next();
                }
                _ => {}
            }
            continue;
        }
        let target = if in_angle {
            angle.get_or_insert_with(String::new)
        } else {
            &mut plain
        };
        match c {
            '(' => depth = 1,
            '"' => {
                target.push('"');
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                target.push(e);
                            }
                        }
                        _ => target.push(q),
                    }
                }
                target.push('"');
            }
            '<' if !in_angle => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => in_angle = false,
            ',' if !in_angle => flush(&mut plain, &mut angle),
            // A group's name ends here (a colon in an angle address is a
            // source route's, handled by `flush`).
            ':' if !in_angle => plain.clear(),
            ';' if !in_angle => flush(&mut plain, &mut angle),
            _ => target.push(c),
        }
    }
    flush(&mut plain, &mut angle);
    out
}

// ---------------------------------------------------------------------
// Composing
// ---------------------------------------------------------------------

fn compose(
    reply: &VacationReply,
    fields: &[(String, String)],
    sender: &str,
    recipient: &str,
) -> Reply {
    let subject = match &reply.subject {
        Some(s) => one_line(s),
        None => {
            let original = field(fields, "subject")
                .map(|s| one_line(&decode_words(s)))
                .unwrap_or_default();
            if original.trim().is_empty() {
                "Automatic reply".to_string()
            } else {
                format!("Auto: {}", original.trim())
            }
        }
    };
    let from = match &reply.from {
        Some(f) => from_value(f),
        None => format!("<{}>", one_line(recipient)),
    };
    let message_id = field(fields, "message-id").and_then(|v| msg_ids(v).into_iter().next());
    let references = match &message_id {
        None => Vec::new(),
        Some(id) => {
            let mut refs = match field(fields, "references") {
                Some(r) => msg_ids(r),
                None => {
                    let irt = field(fields, "in-reply-to")
                        .map(msg_ids)
                        .unwrap_or_default();
                    if irt.len() == 1 {
                        irt
                    } else {
                        Vec::new()
                    }
                }
            };
            refs.push(id.clone());
            if refs.len() > MAX_REFERENCES {
                // The first (the thread's root) and the newest.
                let cut = refs.len() - (MAX_REFERENCES - 1);
                refs.drain(1..cut);
            }
            refs
        }
    };
    let handle = reply
        .handle
        .clone()
        .unwrap_or_else(|| derived_handle(reply));
    Reply {
        to: sender.to_string(),
        from,
        subject,
        in_reply_to: message_id,
        references,
        body: reply.reason.replace("\r\n", "\n"),
        mime: reply.mime,
        handle,
        period: reply.period,
    }
}

/// RFC 5230 section 4.2: a handle from what makes two vacation actions the
/// same reply. FNV-1a, 64 bits: stable, no dependency.
fn derived_handle(r: &VacationReply) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(r.reason.as_bytes());
    eat(r.subject.as_deref().unwrap_or("").as_bytes());
    eat(r.from.as_deref().unwrap_or("").as_bytes());
    eat(if r.mime { b"mime" } else { b"text" });
    format!("auto-{h:016x}")
}

/// The `<…>` ids in a Message-ID/References/In-Reply-To value.
fn msg_ids(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let id = &rest[start..start + len + 1];
        if id.len() > 2
            && id.len() <= 250
            && id[1..id.len() - 1]
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '<')
        {
            out.push(id.to_string());
        }
        rest = &rest[start + len + 1..];
    }
    out
}

/// Controls (folding included) become single spaces.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `:from` as a header value: ASCII kept, a non-ASCII display name encoded.
fn from_value(f: &str) -> String {
    let f = one_line(f).trim().to_string();
    if f.is_ascii() {
        return f;
    }
    match f.rfind('<') {
        Some(i) if f[i..].is_ascii() => {
            let name = f[..i].trim().trim_matches('"').trim();
            format!("{} {}", encode_words(name), &f[i..])
        }
        // A UTF-8 address (SMTPUTF8): left as it is.
        _ => f,
    }
}

/// Header text as written: ASCII as is when it fits one line, else RFC 2047
/// `B` encoded words (UTF-8), folded. `used` is what precedes it on the
/// first line (`Subject: ` is 9).
pub fn encode_header_text(s: &str, used: usize) -> String {
    if s.is_ascii() && !s.contains("=?") && used + s.len() <= 998 {
        s.to_string()
    } else {
        encode_words(s)
    }
}

fn encode_words(s: &str) -> String {
    // 45 bytes → 60 base64 characters → a 72-character encoded word.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\n ")
}

/// Decode RFC 2047 encoded words (blanks between two adjacent words go).
/// Unknown charsets and malformed words are left as written.
pub fn decode_words(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, word) = rest.split_at(start);
        match decode_word(word) {
            Some((text, len)) => {
                let blank = before.chars().all(|c| c == ' ' || c == '\t');
                if !(after_word && blank) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &word[len..];
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &word[2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `w`: its text and length.
fn decode_word(w: &str) -> Option<(String, usize)> {
    let inner = w.strip_prefix("=?")?;
    let q1 = inner.find('?')?;
    let charset = inner[..q1].split('*').next()?.to_ascii_lowercase();
    let rest = &inner[q1 + 1..];
    let q2 = rest.find('?')?;
    let enc = &rest[..q2];
    let text_and_more = &rest[q2 + 1..];
    let end = text_and_more.find("?=")?;
    let text = &text_and_more[..end];
    if text.contains([' ', '\t']) {
        return None;
    }
    let bytes = match enc {
        "B" | "b" => unbase64(text)?,
        "Q" | "q" => unq(text)?,
        _ => return None,
    };
    let decoded = match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        "iso-8859-1" | "latin1" | "iso8859-1" => bytes.iter().map(|b| char::from(*b)).collect(),
        _ => return None,
    };
    Some((decoded, 2 + q1 + 1 + q2 + 1 + end + 2))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in s.bytes().take_while(|b| *b != b'=') {
        let v = B64.iter().position(|x| *x == b)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn unq(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// Quoted-printable (RFC 2045 section 6.7), LF line ends, lines ≤ 76.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    let lines: Vec<&str> = text.split('\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let bytes = line.as_bytes();
        let mut col = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let lit = (b.is_ascii_graphic() && b != b'=') || ((b == b' ' || b == b'\t') && !last);
            let piece = if lit {
                char::from(b).to_string()
            } else {
                format!("={b:02X}")
            };
            // Room for a soft break `=` at 76.
            let room = if last { 76 } else { 75 };
            if col + piece.len() > room {
                out.push_str("=\n");
                col = 0;
            }
            out.push_str(&piece);
            col += piece.len();
        }
        if n + 1 < lines.len() {
            out.push('\n');
        }
    }
    out
}

impl Reply {
    /// The reply's bytes as qmail-queue takes them (LF line ends).
    /// `date` is an RFC 5322 date, `message_id` the id without `<>`.
    pub fn render(&self, date: &str, message_id: &str) -> Vec<u8> {
        use std::fmt::Write as _;
        let mut m = String::with_capacity(1024 + self.body.len() * 2);
        let _ = writeln!(m, "Date: {date}");
        let _ = writeln!(m, "From: {}", self.from);
        let _ = writeln!(m, "To: <{}>", self.to);
        let _ = writeln!(m, "Subject: {}", encode_header_text(&self.subject, 9));
        let _ = writeln!(m, "Message-ID: <{message_id}>");
        if let Some(id) = &self.in_reply_to {
            let _ = writeln!(m, "In-Reply-To: {id}");
        }
        if !self.references.is_empty() {
            let _ = writeln!(m, "References: {}", self.references.join("\n "));
        }
        let _ = writeln!(m, "Auto-Submitted: auto-replied (vacation)");
        let _ = writeln!(m, "MIME-Version: 1.0");
        if self.mime {
            let (head, body) = match self.body.split_once("\n\n") {
                Some((h, b)) => (h, b),
                None if self.body.starts_with('\n') => ("", &self.body[1..]),
                // No empty line: all header (an entity with an empty body).
                None => (self.body.as_str(), ""),
            };
            let entity = header_fields(head.as_bytes());
            let mut typed = false;
            for (name, value) in &entity {
                if name.to_ascii_lowercase().starts_with("content-") {
                    typed |= name.eq_ignore_ascii_case("content-type");
                    let _ = writeln!(m, "{name}:{}", one_line(value));
                }
            }
            if !typed {
                // RFC 2045's default, said out loud.
                let _ = writeln!(m, "Content-Type: text/plain; charset=us-ascii");
            }
            m.push('\n');
            m.push_str(body);
        } else {
            let _ = writeln!(m, "Content-Type: text/plain; charset=utf-8");
            let plain = self.body.is_ascii() && self.body.split('\n').all(|l| l.len() <= 998);
            if plain {
                let _ = writeln!(m, "Content-Transfer-Encoding: 7bit");
                m.push('\n');
                m.push_str(&self.body);
            } else {
                let _ = writeln!(m, "Content-Transfer-Encoding: quoted-printable");
                m.push('\n');
                m.push_str(&quoted_printable(&self.body));
            }
        }
        if !m.ends_with('\n') {
            m.push('\n');
        }
        m.into_bytes()
    }
}

// ---------------------------------------------------------------------
// The once-per-period memory
// ---------------------------------------------------------------------

/// What went wrong with the memory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryError {
    /// The memory (or its lock file) is a symlink or not a regular file.
    Refused(String),
    /// A system call failed.
    Io {
        op: &'static str,
        path: String,
        errno: Errno,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Refused(why) => write!(f, "{why}"),
            MemoryError::Io { op, path, errno } => write!(f, "{op} {path}: {errno}"),
        }
    }
}

impl std::error::Error for MemoryError {}

fn io_err(op: &'static str, path: &str, errno: Errno) -> MemoryError {
    MemoryError::Io {
        op,
        path: path.to_string(),
        errno,
    }
}

fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// One remembered reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    sent: i64,
    expires: i64,
    handle: String,
    /// Lowercased.
    sender: String,
}

/// The memory file beneath a home directory. See the module docs.
pub struct Memory<'h> {
    home: BorrowedFd<'h>,
    name: String,
    lock_timeout: Duration,
    notes: Vec<String>,
}

/// The memory, locked and read; dropped, the lock goes.
pub struct Held<'m, 'h> {
    memory: &'m mut Memory<'h>,
    _lock: File,
    entries: Vec<Entry>,
}

impl<'h> Memory<'h> {
    /// The memory file `name` (one component, e.g. [`DEFAULT_MEMORY_FILE`])
    /// in the directory `home`; nothing is opened yet.
    pub fn new(home: BorrowedFd<'h>, name: &str) -> Memory<'h> {
        Memory {
            home,
            name: name.to_string(),
            lock_timeout: Limits::default().lock_timeout,
            notes: Vec::new(),
        }
    }

    /// Wait at most this long for another delivery's lock.
    pub fn lock_timeout(mut self, wait: Duration) -> Memory<'h> {
        self.lock_timeout = wait;
        self
    }

    /// What was noticed on the way (a corrupt file treated as empty).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Under the lock: whether to reply to `sender` for `handle` now, and
    /// if so the reply recorded as sent now for `period` seconds.
    pub fn check_and_record(
        &mut self,
        sender: &str,
        handle: &str,
        period: u64,
        now: i64,
    ) -> Result<bool, MemoryError> {
        let mut held = self.lock()?;
        if !held.due(sender, handle, now) {
            return Ok(false);
        }
        held.record(sender, handle, period, now)?;
        Ok(true)
    }

    /// Take the lock (waiting up to the lock timeout) and read the memory.
    pub fn lock(&mut self) -> Result<Held<'_, 'h>, MemoryError> {
        let lock_name = format!("{}.lock", self.name);
        let fd = retry(|| {
            rfs::openat(
                self.home,
                lock_name.as_str(),
                OFlags::RDWR
                    | OFlags::CREATE
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC
                    | OFlags::NONBLOCK,
                Mode::from_raw_mode(0o600),
            )
        })
        .map_err(|e| match e {
            Errno::LOOP => MemoryError::Refused(format!("{lock_name} is a symlink; refused")),
            e => io_err("open", &lock_name, e),
        })?;
        let lock = File::from(fd);
        regular(&lock, &lock_name)?;
        flock_until(&lock, &lock_name, Instant::now() + self.lock_timeout)?;
        let entries = self.read()?;
        Ok(Held {
            memory: self,
            _lock: lock,
            entries,
        })
    }

    fn read(&mut self) -> Result<Vec<Entry>, MemoryError> {
        let name = self.name.as_str();
        let fd = match retry(|| {
            rfs::openat(
                self.home,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                Mode::empty(),
            )
        }) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Vec::new()),
            Err(Errno::LOOP) => {
                return Err(MemoryError::Refused(format!(
                    "{name} is a symlink; refused"
                )))
            }
            Err(e) => return Err(io_err("open", name, e)),
        };
        let file = File::from(fd);
        let size = regular(&file, name)?;
        if size > MAX_MEMORY_FILE {
            self.notes.push(format!(
                "{name} is larger than {MAX_MEMORY_FILE} bytes; treated as empty"
            ));
            return Ok(Vec::new());
        }
        let mut bytes = Vec::with_capacity(size as usize);
        let mut buf = [0u8; 8192];
        loop {
            match retry(|| rustix::io::read(&file, &mut buf)) {
                Ok(0) => break,
                Ok(n) => {
                    bytes.extend_from_slice(&buf[..n]);
                    if bytes.len() as u64 > MAX_MEMORY_FILE {
                        self.notes.push(format!(
                            "{name} is larger than {MAX_MEMORY_FILE} bytes; treated as empty"
                        ));
                        return Ok(Vec::new());
                    }
                }
                Err(e) => return Err(io_err("read", name, e)),
            }
        }
        match parse_memory(&bytes) {
            Ok(entries) => Ok(entries),
            Err(line) => {
                self.notes
                    .push(format!("{name} is corrupt (line {line}); treated as empty"));
                Ok(Vec::new())
            }
        }
    }
}

/// The file is a regular file: its size.
fn regular(file: &File, name: &str) -> Result<u64, MemoryError> {
    let st = rfs::fstat(file).map_err(|e| io_err("fstat", name, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(MemoryError::Refused(format!(
            "{name} is not a regular file; refused"
        )));
    }
    Ok(u64::try_from(st.st_size).unwrap_or(0))
}

/// Exclusive `flock` (fs4), polled until `end`.
fn flock_until(file: &File, name: &str, end: Instant) -> Result<(), MemoryError> {
    crate::quota::flock_polled(file, end, Duration::from_millis(50))
        .map_err(|errno| io_err("lock", name, errno))
}

impl Held<'_, '_> {
    /// Whether a reply to `sender` for `handle` is due at `now` (no
    /// unexpired entry for them).
    pub fn due(&self, sender: &str, handle: &str, now: i64) -> bool {
        let sender = sender.to_ascii_lowercase();
        !self
            .entries
            .iter()
            .any(|e| e.sender == sender && e.handle == handle && live(e, now))
    }

    /// Record a reply sent now and rewrite the file (expired entries
    /// dropped): a new file under a temporary name, fsynced, renamed over
    /// the old one, the directory fsynced.
    pub fn record(
        &mut self,
        sender: &str,
        handle: &str,
        period: u64,
        now: i64,
    ) -> Result<(), MemoryError> {
        let sender = sender.to_ascii_lowercase();
        self.entries
            .retain(|e| live(e, now) && !(e.sender == sender && e.handle == handle));
        self.entries.push(Entry {
            sent: now,
            expires: now.saturating_add(i64::try_from(period).unwrap_or(i64::MAX)),
            handle: handle.to_string(),
            sender,
        });
        if self.entries.len() > MAX_ENTRIES {
            self.entries.sort_by_key(|e| e.sent);
            let cut = self.entries.len() - MAX_ENTRIES;
            self.entries.drain(..cut);
        }
        self.write()
    }

    fn write(&self) -> Result<(), MemoryError> {
        let home = self.memory.home;
        let name = self.memory.name.as_str();
        let text = render_memory(&self.entries);
        let mut r = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::NONBLOCK);
        let tmp = format!(
            "{name}.tmp.{}.{:016x}",
            rustix::process::getpid().as_raw_nonzero(),
            u64::from_le_bytes(r)
        );
        let fd: OwnedFd = retry(|| {
            rfs::openat(
                home,
                tmp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })
        .map_err(|e| io_err("create", &tmp, e))?;
        let done = (|| {
            let mut f = File::from(fd);
            f.write_all(text.as_bytes())
                .map_err(|e| io_err("write", &tmp, errno_of(&e)))?;
            retry(|| rfs::fsync(&f)).map_err(|e| io_err("fsync", &tmp, e))?;
            retry(|| rfs::renameat(home, tmp.as_str(), home, name))
                .map_err(|e| io_err("rename into", name, e))
        })();
        if done.is_err() {
            let _ = rfs::unlinkat(home, tmp.as_str(), rfs::AtFlags::empty());
            return done;
        }
        // The rename is durable once the directory is: a lost directory
        // sync at worst sends one more reply after a crash.
        let _ = retry(|| rfs::fsync(home));
        Ok(())
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw_os_error(e.raw_os_error().unwrap_or(Errno::IO.raw_os_error()))
}

/// Still within its period at `now`; an entry from more than a day in the
/// future (the clock was wrong) no longer counts.
fn live(e: &Entry, now: i64) -> bool {
    now < e.expires && e.sent <= now.saturating_add(DAY as i64)
}

fn render_memory(entries: &[Entry]) -> String {
    let mut s = String::with_capacity(entries.len() * 64);
    for e in entries {
        s.push_str(&format!(
            "{} {} {} {}\n",
            e.sent,
            e.expires,
            escape(&e.handle),
            escape(&e.sender)
        ));
    }
    s
}

/// The entries, or the (1-based) number of the first bad line.
fn parse_memory(bytes: &[u8]) -> Result<Vec<Entry>, usize> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = i + 1;
        let line = std::str::from_utf8(line).map_err(|_| bad)?;
        let mut f = line.split(' ');
        let (Some(sent), Some(expires), Some(handle), Some(sender), None) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Err(bad);
        };
        out.push(Entry {
            sent: sent.parse().map_err(|_| bad)?,
            expires: expires.parse().map_err(|_| bad)?,
            handle: unescape(handle).ok_or(bad)?,
            sender: unescape(sender).ok_or(bad)?,
        });
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        // An empty field would vanish between the blanks.
        out.push('%');
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    if s == "%" {
        return Some(String::new());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------

/// Queue a rendered reply: envelope sender `<>`, the one recipient `to`.
pub fn queue(qmail_queue: &Path, message: &[u8], to: &str) -> Result<(), QueueError> {
    let mut q = Queue::start(qmail_queue, None)?;
    let written = match q.message.as_mut() {
        Some(pipe) => pipe.write_all(message),
        None => Ok(()),
    };
    match written {
        Ok(()) => q.finish(b"", &[to.to_string()]),
        Err(e) => {
            q.abandon();
            Err(QueueError::Io(e))
        }
    }
}

/// What [`respond`] did; displays as the output line's vacation part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Queued to this address.
    Sent(String),
    Skipped(Reason),
    /// Not sent: why (the delivery itself is unaffected).
    Failed(String),
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Sent(to) => write!(f, "vacation reply sent to {to}"),
            Response::Skipped(why) => write!(f, "vacation skipped: {why}"),
            Response::Failed(why) => write!(f, "vacation failed: {why}"),
        }
    }
}

/// Everything [`respond`] needs besides the action.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The original message's header block.
    pub msg_headers: &'a [u8],
    /// The envelope sender (`$SENDER`).
    pub envelope_sender: &'a [u8],
    /// The address the message was delivered to.
    pub recipient: &'a str,
    /// The account's own address.
    pub account: &'a str,
    /// The aliases (and catch-alls) that led to the account.
    pub aliases: &'a [String],
    /// The account's home directory (holding its Maildir), opened beneath
    /// the mail root without following symlinks.
    pub home: BorrowedFd<'a>,
    /// The memory's file name in `home` ([`DEFAULT_MEMORY_FILE`]).
    pub memory_file: &'a str,
    /// qmail-queue: `forward::program(&cfg.forward.qmail_queue,
    /// req.qmailqueue)`.
    pub qmail_queue: &'a Path,
    /// Host name for the Message-ID.
    pub hostname: &'a str,
    /// Seconds since the epoch.
    pub now: i64,
    pub limits: Limits,
}

/// Carry out one vacation action: decide, consult the memory, queue the
/// reply, record it. Never fails the delivery; see the module docs. Any
/// memory note (a corrupt file replaced) is appended to a `Sent`/`Skipped`
/// result's line by [`respond_line`].
pub fn respond(reply: &VacationReply, cx: &Context<'_>) -> (Response, Vec<String>) {
    let r = match decide(
        reply,
        cx.msg_headers,
        cx.envelope_sender,
        cx.recipient,
        cx.account,
        cx.aliases,
    ) {
        Decision::Skip(why) => return (Response::Skipped(why), Vec::new()),
        Decision::Send(r) => r,
    };
    let mut memory = Memory::new(cx.home, cx.memory_file).lock_timeout(cx.limits.lock_timeout);
    let result = send_once(&r, cx, &mut memory);
    (result, memory.notes().to_vec())
}

/// [`respond`] as one line, notes included.
pub fn respond_line(reply: &VacationReply, cx: &Context<'_>) -> String {
    let (r, notes) = respond(reply, cx);
    if notes.is_empty() {
        r.to_string()
    } else {
        format!("{r} ({})", notes.join("; "))
    }
}

fn send_once(r: &Reply, cx: &Context<'_>, memory: &mut Memory<'_>) -> Response {
    let mut held = match memory.lock() {
        Ok(h) => h,
        Err(e) => return Response::Failed(format!("vacation memory: {e}")),
    };
    if !held.due(&r.to, &r.handle, cx.now) {
        return Response::Skipped(Reason::AlreadyReplied);
    }
    let date = crate::quota::warning::rfc5322_date(cx.now);
    let message = r.render(&date, &message_id(cx.now, cx.hostname));
    if let Err(e) = queue(cx.qmail_queue, &message, &r.to) {
        return Response::Failed(e.to_string());
    }
    match held.record(&r.to, &r.handle, cx.limits.period(r.period), cx.now) {
        Ok(()) => Response::Sent(r.to.clone()),
        // Queued but not remembered: the next message may be answered again.
        Err(e) => Response::Failed(format!("reply queued to {} but not recorded: {e}", r.to)),
    }
}

/// `<secs>.<pid>.<random>.vacation@<host>`, the host reduced to what a
/// Message-ID may hold.
pub fn message_id(now: i64, hostname: &str) -> String {
    let mut r = [0u8; 8];
    // Randomness only adds to time and pid; zeros still make an id.
    let _ = rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::NONBLOCK);
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    let host = host.trim_matches('.');
    let host = if host.is_empty() || host.contains("..") {
        "localhost"
    } else {
        host
    };
    format!("{now}.{pid}.{:016x}.vacation@{host}", u64::from_le_bytes(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    const ACCOUNT: &str = "alice@example.com";
    const SENDER: &[u8] = b"bob@example.org";

    fn action() -> VacationReply {
        VacationReply {
            reason: "I am away.".into(),
            mime: false,
            subject: None,
            from: None,
            addresses: Vec::new(),
            period: None,
            handle: None,
        }
    }

    fn headers(extra: &str) -> Vec<u8> {
        format!(
            "From: Bob <bob@example.org>\nTo: Alice <alice@example.com>\nSubject: Lunch\n\
             Message-ID: <m1@example.org>\n{extra}\nbody\n"
        )
        .into_bytes()
    }

    fn run(v: &VacationReply, hdr: &[u8], sender: &[u8]) -> Decision {
        decide(v, hdr, sender, ACCOUNT, ACCOUNT, &[])
    }

    fn skip(hdr: &[u8], sender: &[u8]) -> Reason {
        match run(&action(), hdr, sender) {
            Decision::Skip(r) => r,
            Decision::Send(r) => panic!("expected no reply, got one to {}", r.to),
        }
    }

    fn send(d: Decision) -> Reply {
        match d {
            Decision::Send(r) => r,
            Decision::Skip(why) => panic!("expected a reply, skipped: {why}"),
        }
    }

    // --- one test per no-reply rule -------------------------------------

    #[test]
    fn baseline_replies() {
        let r = send(run(&action(), &headers(""), SENDER));
        assert_eq!(r.to, "bob@example.org");
    }

    #[test]
    fn no_reply_to_empty_sender() {
        assert_eq!(skip(&headers(""), b""), Reason::NoSender);
        assert_eq!(Reason::NoSender.to_string(), "the envelope sender is empty");
    }

    #[test]
    fn no_reply_to_qmail_double_bounce_sender() {
        assert_eq!(skip(&headers(""), b"#@[]"), Reason::NoSender);
    }

    #[test]
    fn no_reply_to_unusable_sender() {
        for s in [
            &b"bob"[..],
            b"bob @x.org",
            b"<bob@x.org>",
            b"b\nx@y",
            b"\xff@x.org",
            b"@x.org",
        ] {
            assert_eq!(skip(&headers(""), s), Reason::UnusableSender, "{s:?}");
        }
    }

    #[test]
    fn no_reply_to_the_account_itself() {
        assert_eq!(
            skip(&headers(""), b"Alice@EXAMPLE.com"),
            Reason::SenderIsUser("Alice@EXAMPLE.com".into())
        );
    }

    #[test]
    fn no_reply_to_an_alias_or_own_address() {
        let hdr = headers("");
        let aliases = vec!["info@example.com".to_string()];
        let d = decide(
            &action(),
            &hdr,
            b"info@example.com",
            "info@example.com",
            ACCOUNT,
            &aliases,
        );
        assert_eq!(
            d,
            Decision::Skip(Reason::SenderIsUser("info@example.com".into()))
        );
        let mut v = action();
        v.addresses = vec!["alice@home.example".into()];
        assert_eq!(
            run(&v, &hdr, b"alice@home.example"),
            Decision::Skip(Reason::SenderIsUser("alice@home.example".into()))
        );
        let mut v = action();
        v.from = Some("Alice <boss@example.com>".into());
        assert_eq!(
            run(&v, &hdr, b"boss@example.com"),
            Decision::Skip(Reason::SenderIsUser("boss@example.com".into()))
        );
    }

    #[test]
    fn no_reply_to_mailer_daemon() {
        assert!(matches!(
            skip(&headers(""), b"MAILER-DAEMON@example.org"),
            Reason::DaemonSender(_)
        ));
    }

    #[test]
    fn no_reply_to_listserv() {
        assert!(matches!(
            skip(&headers(""), b"LISTSERV@lists.example.org"),
            Reason::DaemonSender(_)
        ));
    }

    #[test]
    fn no_reply_to_majordomo() {
        assert!(matches!(
            skip(&headers(""), b"Majordomo@example.org"),
            Reason::DaemonSender(_)
        ));
    }

    #[test]
    fn no_reply_to_owner_prefix() {
        let r = skip(&headers(""), b"owner-users@example.org");
        assert_eq!(r, Reason::DaemonSender("owner-users@example.org".into()));
        assert_eq!(
            r.to_string(),
            "the sender owner-users@example.org looks like a mailing list or daemon"
        );
    }

    #[test]
    fn no_reply_to_request_suffix() {
        assert!(matches!(
            skip(&headers(""), b"users-REQUEST@example.org"),
            Reason::DaemonSender(_)
        ));
    }

    #[test]
    fn no_reply_to_owner_suffix() {
        assert!(matches!(
            skip(&headers(""), b"users-owner@example.org"),
            Reason::DaemonSender(_)
        ));
    }

    #[test]
    fn daemon_rule_is_about_the_local_part() {
        // Look-alikes get a reply.
        for s in [
            "owner@example.org",
            "requester@example.org",
            "bob@majordomo.example.org",
        ] {
            send(run(&action(), &headers(""), s.as_bytes()));
        }
    }

    #[test]
    fn no_reply_with_list_id() {
        assert_eq!(
            skip(&headers("List-Id: <users.example.org>"), SENDER),
            Reason::ListHeader("List-Id".into())
        );
    }

    #[test]
    fn no_reply_with_list_unsubscribe() {
        assert_eq!(
            skip(&headers("list-unsubscribe: <mailto:x@y>"), SENDER),
            Reason::ListHeader("list-unsubscribe".into())
        );
    }

    #[test]
    fn no_reply_with_precedence_bulk_list_junk() {
        for p in ["bulk", "List", " JUNK "] {
            let r = skip(&headers(&format!("Precedence: {p}")), SENDER);
            assert_eq!(r, Reason::Precedence(p.trim().into()), "{p}");
        }
        // Other values do not stop the reply.
        send(run(&action(), &headers("Precedence: first-class"), SENDER));
    }

    #[test]
    fn no_reply_with_auto_submitted() {
        for v in [
            "auto-replied",
            "auto-generated",
            "auto-notified; owner-email=x@y",
        ] {
            let r = skip(&headers(&format!("Auto-Submitted: {v}")), SENDER);
            assert_eq!(r, Reason::AutoSubmitted(v.into()), "{v}");
        }
        assert_eq!(
            Reason::AutoSubmitted("auto-replied".into()).to_string(),
            "the message has Auto-Submitted: auto-replied"
        );
        // `no` (any case, with a comment) is an ordinary message.
        send(run(
            &action(),
            &headers("Auto-Submitted: No (by hand)"),
            SENDER,
        ));
    }

    #[test]
    fn no_reply_with_x_auto_response_suppress() {
        for v in ["All", "OOF", "DR, AutoReply", "", "Something"] {
            let r = skip(&headers(&format!("X-Auto-Response-Suppress: {v}")), SENDER);
            assert_eq!(r, Reason::Suppressed(v.into()), "{v:?}");
        }
        // Values about delivery and read receipts only do not suppress.
        send(run(
            &action(),
            &headers("X-Auto-Response-Suppress: DR, RN, NRN"),
            SENDER,
        ));
        send(run(
            &action(),
            &headers("X-Auto-Response-Suppress: None"),
            SENDER,
        ));
    }

    #[test]
    fn no_reply_when_not_addressed() {
        let hdr = b"From: bob@example.org\nTo: team@example.com\nCc: carol@example.com\n\nx\n";
        assert_eq!(skip(hdr, SENDER), Reason::NotAddressed);
        // An address in the body or in another field does not count.
        let hdr =
            b"From: alice@example.com\nReply-To: alice@example.com\n\nTo: alice@example.com\n";
        assert_eq!(skip(hdr, SENDER), Reason::NotAddressed);
        // Substrings do not count.
        let hdr = b"To: malice@example.com, alice@example.com.au\n\n";
        assert_eq!(skip(hdr, SENDER), Reason::NotAddressed);
    }

    #[test]
    fn addressed_in_any_recipient_field() {
        for f in ["To", "cc", "BCC", "Resent-To", "Resent-Cc", "Resent-Bcc"] {
            let hdr = format!("To: team@example.com\n{f}: x@y.org,\n ALICE@Example.Com\n\n");
            send(run(&action(), hdr.as_bytes(), SENDER));
        }
    }

    #[test]
    fn addressed_through_alias_recipient_or_addresses() {
        // Through an alias (the catch-all case): the addressed recipient.
        let hdr = b"To: Sales <sales@example.com>\n\n";
        let aliases = vec!["sales@example.com".to_string()];
        let d = decide(
            &action(),
            hdr,
            SENDER,
            "sales@example.com",
            ACCOUNT,
            &aliases,
        );
        let r = send(d);
        assert_eq!(r.from, "<sales@example.com>");
        // An alias that led here, not the addressed recipient.
        let hdr = b"To: info@example.net\n\n";
        let aliases = vec!["info@example.net".to_string()];
        send(decide(
            &action(),
            hdr,
            SENDER,
            "sales@example.com",
            ACCOUNT,
            &aliases,
        ));
        // `:addresses`.
        let hdr = b"To: \"Alice (old)\" <alice@old.example>\n\n";
        assert_eq!(skip(hdr, SENDER), Reason::NotAddressed);
        let mut v = action();
        v.addresses = vec!["alice@old.example".into()];
        send(run(&v, hdr, SENDER));
    }

    #[test]
    fn address_parsing() {
        let got = parse_addresses(
            "\"Smith, J\" <j@x.org>, (c) a@b.c (comment), grp: m@n.o, <p@q.r>;, \
             <@route.x,@r2:s@t.u>, \"quoted local\"@v.w, nobody",
        );
        assert_eq!(
            got,
            [
                "j@x.org",
                "a@b.c",
                "m@n.o",
                "p@q.r",
                "s@t.u",
                "quotedlocal@v.w"
            ]
        );
        assert_eq!(
            parse_addresses("undisclosed-recipients:;"),
            Vec::<String>::new()
        );
    }

    // --- composition -----------------------------------------------------

    #[test]
    fn reply_headers_exact() {
        let r = send(run(
            &action(),
            &headers("References: <r0@x> <r1@x>"),
            SENDER,
        ));
        let got = String::from_utf8(r.render("Thu, 01 Jan 1970 00:00:00 +0000", "id@h")).unwrap();
        assert_eq!(
            got,
            "Date: Thu, 01 Jan 1970 00:00:00 +0000\n\
             From: <alice@example.com>\n\
             To: <bob@example.org>\n\
             Subject: Auto: Lunch\n\
             Message-ID: <id@h>\n\
             In-Reply-To: <m1@example.org>\n\
             References: <r0@x>\n <r1@x>\n <m1@example.org>\n\
             Auto-Submitted: auto-replied (vacation)\n\
             MIME-Version: 1.0\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 7bit\n\
             \n\
             I am away.\n"
        );
    }

    #[test]
    fn references_from_in_reply_to_or_none() {
        let hdr = b"To: alice@example.com\nMessage-ID: <b@x>\nIn-Reply-To: <a@x>\n\n";
        let r = send(run(&action(), hdr, SENDER));
        assert_eq!(r.in_reply_to.as_deref(), Some("<b@x>"));
        assert_eq!(r.references, ["<a@x>", "<b@x>"]);
        let hdr = b"To: alice@example.com\nMessage-ID: <b@x>\n\n";
        assert_eq!(send(run(&action(), hdr, SENDER)).references, ["<b@x>"]);
        let hdr = b"To: alice@example.com\nReferences: <a@x>\n\n";
        let r = send(run(&action(), hdr, SENDER));
        assert_eq!(r.in_reply_to, None);
        assert!(r.references.is_empty());
        let text = String::from_utf8(r.render("D", "i@h")).unwrap();
        assert!(
            !text.contains("In-Reply-To") && !text.contains("References"),
            "{text}"
        );
    }

    #[test]
    fn references_are_bounded() {
        let many: Vec<String> = (0..100).map(|i| format!("<r{i}@x>")).collect();
        let hdr = format!(
            "To: alice@example.com\nMessage-ID: <last@x>\nReferences: {}\n\n",
            many.join(" ")
        );
        let r = send(run(&action(), hdr.as_bytes(), SENDER));
        assert_eq!(r.references.len(), MAX_REFERENCES);
        assert_eq!(r.references[0], "<r0@x>");
        assert_eq!(r.references[1], "<r70@x>");
        assert_eq!(r.references.last().map(String::as_str), Some("<last@x>"));
    }

    #[test]
    fn subject_decoded_and_reencoded() {
        let hdr = "To: alice@example.com\nSubject: =?ISO-8859-1?Q?Caf=E9?= =?utf-8?B?w6A=?=\n  demain\n\n";
        let r = send(run(&action(), hdr.as_bytes(), SENDER));
        assert_eq!(r.subject, "Auto: Caféà  demain");
        let text = String::from_utf8(r.render("D", "i@h")).unwrap();
        let line = text.lines().find(|l| l.starts_with("Subject:")).unwrap();
        assert_eq!(
            line,
            format!(
                "Subject: =?utf-8?B?{}?=",
                base64("Auto: Caféà  demain".as_bytes())
            )
        );
    }

    #[test]
    fn subject_given_or_missing() {
        let mut v = action();
        v.subject = Some("Out of office\r\nBcc: evil@x".into());
        let r = send(run(&v, &headers(""), SENDER));
        assert_eq!(r.subject, "Out of office Bcc: evil@x");
        let hdr = b"To: alice@example.com\n\n";
        assert_eq!(send(run(&action(), hdr, SENDER)).subject, "Automatic reply");
        // A long non-ASCII subject is folded into encoded words.
        v.subject = Some("é".repeat(60));
        let text = String::from_utf8(send(run(&v, &headers(""), SENDER)).render("D", "i")).unwrap();
        let words: Vec<&str> = text
            .split('\n')
            .skip_while(|l| !l.starts_with("Subject:"))
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .collect();
        assert_eq!(words.len(), 3, "{words:?}");
        let mut decoded = String::new();
        for w in &words {
            let w = w.trim_start_matches("Subject:").trim();
            assert!(w.len() <= 75, "{w}");
            decoded.push_str(&decode_words(w));
        }
        assert_eq!(decoded, "é".repeat(60));
    }

    #[test]
    fn decode_words_cases() {
        assert_eq!(decode_words("plain"), "plain");
        assert_eq!(decode_words("=?utf-8?q?a_b?= c"), "a b c");
        assert_eq!(
            decode_words("x =?UTF-8?B?w6k=?=  =?UTF-8?B?w6k=?= y"),
            "x éé y"
        );
        assert_eq!(decode_words("=?koi8-r?B?5A==?="), "=?koi8-r?B?5A==?=");
        assert_eq!(decode_words("=?utf-8?Q?bad=Z?= ok"), "=?utf-8?Q?bad=Z?= ok");
        assert_eq!(decode_words("a =? b"), "a =? b");
    }

    #[test]
    fn from_given() {
        let mut v = action();
        v.from = Some("Älice <alice@example.com>".into());
        let r = send(run(&v, &headers(""), SENDER));
        assert_eq!(
            r.from,
            format!(
                "=?utf-8?B?{}?= <alice@example.com>",
                base64("Älice".as_bytes())
            )
        );
        v.from = Some("Alice Smith <alice@example.com>".into());
        assert_eq!(
            send(run(&v, &headers(""), SENDER)).from,
            "Alice Smith <alice@example.com>"
        );
    }

    #[test]
    fn non_ascii_body_is_quoted_printable() {
        let mut v = action();
        v.reason = "Je suis absente jusqu'au 3 août.\r\nMerci = thanks \r\n".into();
        let text = String::from_utf8(send(run(&v, &headers(""), SENDER)).render("D", "i")).unwrap();
        let (head, body) = text.split_once("\n\n").unwrap();
        assert!(head.ends_with("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable"), "{head}");
        assert_eq!(
            body,
            "Je suis absente jusqu'au 3 ao=C3=BBt.\nMerci =3D thanks=20\n"
        );
    }

    #[test]
    fn long_lines_are_soft_broken() {
        let line = "x".repeat(200) + "é";
        let q = quoted_printable(&line);
        assert!(q.split('\n').all(|l| l.len() <= 76), "{q}");
        assert_eq!(q.replace("=\n", ""), "x".repeat(200) + "=C3=A9");
    }

    #[test]
    fn mime_reason_is_the_entity() {
        let mut v = action();
        v.mime = true;
        v.reason = "Content-Type: multipart/alternative; boundary=\"b\"\r\nX-Other: dropped\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nAway\r\n--b--\r\n".into();
        let text = String::from_utf8(send(run(&v, &headers(""), SENDER)).render("D", "i")).unwrap();
        assert!(text.ends_with(
            "MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nAway\n--b--\n"
        ), "{text}");
        assert!(!text.contains("X-Other"));
    }

    #[test]
    fn handle_derived_or_given() {
        let a = send(run(&action(), &headers(""), SENDER)).handle;
        assert_eq!(a, send(run(&action(), &headers(""), SENDER)).handle);
        assert!(a.starts_with("auto-"));
        let mut v = action();
        v.reason = "Other text".into();
        assert_ne!(a, send(run(&v, &headers(""), SENDER)).handle);
        v.handle = Some("summer".into());
        assert_eq!(send(run(&v, &headers(""), SENDER)).handle, "summer");
    }

    #[test]
    fn period_limits() {
        let l = Limits::default();
        assert_eq!(l.period(None), 7 * DAY);
        assert_eq!(l.period(Some(1)), DAY);
        assert_eq!(l.period(Some(3 * DAY)), 3 * DAY);
        assert_eq!(l.period(Some(365 * DAY)), 90 * DAY);
        let l = Limits {
            min: 1,
            ..Limits::default()
        };
        assert_eq!(l.period(Some(1)), 1);
        assert_eq!(l.period(Some(0)), 1);
    }

    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "abcd", "é✓"] {
            assert_eq!(unbase64(&base64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
    }

    // --- the memory -------------------------------------------------------

    fn home() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let fd = rfs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (dir, fd)
    }

    #[test]
    fn memory_respects_the_period() {
        let (dir, fd) = home();
        let mut m = Memory::new(fd.as_fd(), DEFAULT_MEMORY_FILE);
        assert!(m.check_and_record("bob@x.org", "h", DAY, 1000).unwrap());
        assert!(!m.check_and_record("bob@x.org", "h", DAY, 1001).unwrap());
        assert!(!m
            .check_and_record("BOB@X.org", "h", DAY, 1000 + 86_399)
            .unwrap());
        assert!(m.check_and_record("carol@x.org", "h", DAY, 1002).unwrap());
        assert!(m.check_and_record("bob@x.org", "other", DAY, 1003).unwrap());
        assert!(m
            .check_and_record("bob@x.org", "h", DAY, 1000 + 86_400)
            .unwrap());
        assert!(m.notes().is_empty());
        let text = std::fs::read_to_string(dir.path().join(DEFAULT_MEMORY_FILE)).unwrap();
        assert_eq!(
            text,
            "1002 87402 h carol@x.org\n1003 87403 other bob@x.org\n87400 173800 h bob@x.org\n"
        );
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn memory_prunes_expired_entries() {
        let (dir, fd) = home();
        let mut m = Memory::new(fd.as_fd(), "mem");
        assert!(m.check_and_record("a@x", "h", 10, 100).unwrap());
        assert!(m.check_and_record("b@x", "h", 1000, 100).unwrap());
        assert!(m.check_and_record("c@x", "h w", 10, 200).unwrap());
        let text = std::fs::read_to_string(dir.path().join("mem")).unwrap();
        assert_eq!(text, "100 1100 h b@x\n200 210 h%20w c@x\n");
    }

    #[test]
    fn memory_corrupt_file_is_treated_as_empty() {
        let (dir, fd) = home();
        let path = dir.path().join("mem");
        std::fs::write(&path, "100 200 h a@x\ngarbage\n").unwrap();
        let mut m = Memory::new(fd.as_fd(), "mem");
        assert!(m.check_and_record("a@x", "h", 1000, 150).unwrap());
        assert_eq!(m.notes(), ["mem is corrupt (line 2); treated as empty"]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "150 1150 h a@x\n");
        std::fs::write(&path, b"\xff\xfe\n").unwrap();
        let mut m = Memory::new(fd.as_fd(), "mem");
        assert!(m.check_and_record("a@x", "h", 1000, 150).unwrap());
        assert_eq!(m.notes().len(), 1);
    }

    #[test]
    fn memory_symlink_is_refused() {
        let (dir, fd) = home();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("mem")).unwrap();
        let mut m = Memory::new(fd.as_fd(), "mem");
        let e = m.check_and_record("a@x", "h", 10, 100).unwrap_err();
        assert_eq!(e, MemoryError::Refused("mem is a symlink; refused".into()));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        // The lock file alike.
        std::fs::remove_file(dir.path().join("mem")).unwrap();
        std::fs::remove_file(dir.path().join("mem.lock")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("mem.lock")).unwrap();
        let e = m.check_and_record("a@x", "h", 10, 100).unwrap_err();
        assert_eq!(
            e,
            MemoryError::Refused("mem.lock is a symlink; refused".into())
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert!(!dir.path().join("mem").exists());
    }

    #[test]
    fn memory_not_a_regular_file_is_refused() {
        let (dir, fd) = home();
        std::fs::create_dir(dir.path().join("mem")).unwrap();
        let mut m = Memory::new(fd.as_fd(), "mem");
        let e = m.check_and_record("a@x", "h", 10, 100).unwrap_err();
        assert_eq!(
            e,
            MemoryError::Refused("mem is not a regular file; refused".into())
        );
    }

    #[test]
    fn memory_lock_times_out() {
        let (_dir, fd) = home();
        let mut a = Memory::new(fd.as_fd(), "mem");
        let _held = a.lock().unwrap();
        let mut b = Memory::new(fd.as_fd(), "mem").lock_timeout(Duration::from_millis(20));
        let e = b.check_and_record("a@x", "h", 10, 100).unwrap_err();
        assert_eq!(e, io_err("lock", "mem.lock", Errno::TIMEDOUT));
    }

    #[test]
    fn memory_escaping_round_trips() {
        let e = Entry {
            sent: -5,
            expires: 7,
            handle: String::new(),
            sender: "a b%c\u{e9}@x".into(),
        };
        let text = render_memory(std::slice::from_ref(&e));
        assert_eq!(text, "-5 7 % a%20b%25c%C3%A9@x\n");
        assert_eq!(parse_memory(text.as_bytes()).unwrap(), [e]);
        assert_eq!(parse_memory(b"1 2 h"), Err(1));
        assert_eq!(parse_memory(b"1 2 h a b"), Err(1));
        assert_eq!(parse_memory(b"\n1 x h a"), Err(2));
        assert_eq!(parse_memory(b"1 2 h %zz"), Err(1));
    }

    #[test]
    fn twenty_concurrent_deliveries_send_one_reply() {
        let (dir, _fd) = home();
        let path = dir.path().to_path_buf();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(20));
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let path = path.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    // Each delivery opens the home itself, as separate
                    // processes would.
                    let fd = rfs::open(
                        &path,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .unwrap();
                    let mut m = Memory::new(fd.as_fd(), DEFAULT_MEMORY_FILE)
                        .lock_timeout(Duration::from_secs(30));
                    barrier.wait();
                    m.check_and_record("bob@example.org", "h", DAY, 5000)
                        .unwrap()
                })
            })
            .collect();
        let sent = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|s| *s)
            .count();
        assert_eq!(sent, 1);
    }

    // --- respond ------------------------------------------------------------

    /// A qmail-queue stand-in: the message and envelope into `dir`, exit `code`.
    fn fake_queue(dir: &Path, code: i32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("qq");
        let d = dir.display();
        std::fs::write(
            &p,
            format!("#!/bin/sh\ncat > '{d}/msg'\ncat <&1 > '{d}/env'\nexit {code}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn respond_sends_once_and_reports() {
        let (dir, fd) = home();
        let q = tempfile::tempdir().unwrap();
        let qq = fake_queue(q.path(), 0);
        let hdr = headers("");
        let aliases = vec!["sales@example.com".to_string()];
        let cx = Context {
            msg_headers: &hdr,
            envelope_sender: SENDER,
            recipient: ACCOUNT,
            account: ACCOUNT,
            aliases: &aliases,
            home: fd.as_fd(),
            memory_file: DEFAULT_MEMORY_FILE,
            qmail_queue: &qq,
            hostname: "mx.example.com",
            now: 1_700_000_000,
            limits: Limits::default(),
        };
        assert_eq!(
            respond_line(&action(), &cx),
            "vacation reply sent to bob@example.org"
        );
        assert_eq!(
            std::fs::read(q.path().join("env")).unwrap(),
            b"F\0Tbob@example.org\0\0"
        );
        let msg = String::from_utf8(std::fs::read(q.path().join("msg")).unwrap()).unwrap();
        assert!(msg.starts_with("Date: Tue, 14 Nov 2023 22:13:20 +0000\nFrom: <alice@example.com>\nTo: <bob@example.org>\n"), "{msg}");
        assert!(msg.contains("\nAuto-Submitted: auto-replied (vacation)\n"));
        assert!(msg.contains(".vacation@mx.example.com>\n"));
        std::fs::remove_file(q.path().join("env")).unwrap();
        // The second message within the period: no reply, nothing queued.
        assert_eq!(
            respond(
                &action(),
                &Context {
                    now: cx.now + 60,
                    ..cx.clone()
                }
            )
            .0,
            Response::Skipped(Reason::AlreadyReplied)
        );
        assert!(!q.path().join("env").exists());
        // A rule failing: skipped with the reason.
        let sender = b"";
        assert_eq!(
            respond_line(
                &action(),
                &Context {
                    envelope_sender: sender,
                    ..cx.clone()
                }
            ),
            "vacation skipped: the envelope sender is empty"
        );
        drop(dir);
    }

    #[test]
    fn respond_failure_is_reported_and_not_recorded() {
        let (dir, fd) = home();
        let q = tempfile::tempdir().unwrap();
        let hdr = headers("");
        let failing = fake_queue(q.path(), 71);
        let mut cx = Context {
            msg_headers: &hdr,
            envelope_sender: SENDER,
            recipient: ACCOUNT,
            account: ACCOUNT,
            aliases: &[],
            home: fd.as_fd(),
            memory_file: DEFAULT_MEMORY_FILE,
            qmail_queue: &failing,
            hostname: "h",
            now: 1000,
            limits: Limits::default(),
        };
        assert_eq!(
            respond(&action(), &cx).0,
            Response::Failed("qmail-queue failed (exit 71)".into())
        );
        assert!(!dir.path().join(DEFAULT_MEMORY_FILE).exists());
        let missing = q.path().join("nonexistent");
        cx.qmail_queue = &missing;
        assert!(respond_line(&action(), &cx).starts_with("vacation failed: cannot run "));
        // Once qmail-queue works, the reply goes out.
        let ok = q.path().join("qq");
        std::fs::remove_file(&ok).unwrap();
        let ok = fake_queue(q.path(), 0);
        cx.qmail_queue = &ok;
        assert_eq!(
            respond(&action(), &cx).0,
            Response::Sent("bob@example.org".into())
        );
    }

    #[test]
    fn respond_notes_a_corrupt_memory() {
        let (dir, fd) = home();
        let q = tempfile::tempdir().unwrap();
        let qq = fake_queue(q.path(), 0);
        std::fs::write(dir.path().join(DEFAULT_MEMORY_FILE), "junk").unwrap();
        let hdr = headers("");
        let cx = Context {
            msg_headers: &hdr,
            envelope_sender: SENDER,
            recipient: ACCOUNT,
            account: ACCOUNT,
            aliases: &[],
            home: fd.as_fd(),
            memory_file: DEFAULT_MEMORY_FILE,
            qmail_queue: &qq,
            hostname: "h",
            now: 1000,
            limits: Limits::default(),
        };
        assert_eq!(
            respond_line(&action(), &cx),
            "vacation reply sent to bob@example.org (.vdeliver.vacation is corrupt (line 1); treated as empty)"
        );
    }
}
