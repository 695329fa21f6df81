//! Property checks over the pure modules, shared by the fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the corpus replay test
//! (`tests/it/fuzz_corpus.rs`), so that a crash found by the fuzzer is a
//! failing `cargo test` as soon as its input is added to the corpus.
//!
//! Each function takes arbitrary bytes, derives its inputs from them, and
//! panics (through `assert!`) when a property does not hold. None of this is
//! part of the crate's API.

use crate::config;
use crate::header::{self, HeaderScan, Verdict};
use crate::maildirsize::{self, Limits, Parsed, Trigger, Usage};
use crate::names::{self, NameParts};
use crate::outcome::{Failure, Outcome, MAX_LINE};
use crate::recipient::{self, Overrides, QmailEnv, MAX_PART};
use std::path::Path;

/// A tiny deterministic generator, so chunk sizes follow from the input.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The streaming header scanner agrees with `header::reference_scan`
/// however the message is cut into chunks; `header::scan` never panics.
///
/// Input layout: byte 0 picks the number of targets (low 2 bits) and the
/// chunking style (next 2 bits); byte 1 seeds the chunk sizes; then the
/// targets, each ended by `\n`; the rest is the message. When bit 4 of
/// byte 0 is set, the value of the message's first `Delivered-To:` line is
/// added as a target, so that loops are found often.
pub fn header_scan(data: &[u8]) {
    let (ctrl, seed, mut rest) = match data {
        [c, s, rest @ ..] => (*c, *s, rest),
        _ => (0, 0, data),
    };
    let mut targets: Vec<String> = Vec::new();
    for _ in 0..(ctrl & 3) {
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        targets.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }
    let message = rest;
    if ctrl & 0x10 != 0 {
        if let Some(v) = first_delivered_to(message) {
            targets.push(v);
        }
    }

    let want = header::reference_scan(message, &targets);
    assert_eq!(header::scan(message, &targets), want, "scan disagrees");

    // Chunk sizes: 1 byte at a time, small, medium, or large, with empty
    // chunks thrown in.
    let max = match (ctrl >> 2) & 3 {
        0 => 1,
        1 => 8,
        2 => 300,
        _ => 5000,
    };
    let mut rng = XorShift::new(u64::from(seed) << 8 | u64::from(ctrl));
    let mut s = HeaderScan::new(&targets);
    let mut at = 0;
    let mut settled: Option<Verdict> = None;
    while at < message.len() {
        let r = rng.next();
        if r.is_multiple_of(17) {
            s.feed(&[]);
        }
        let n = (1 + (r >> 8) as usize % max).min(message.len() - at);
        s.feed(&message[at..at + n]);
        at += n;
        if s.header_done() {
            // Once the header is over, nothing that follows may change the
            // verdict.
            let v = s.verdict();
            if let Some(prev) = &settled {
                assert_eq!(*prev, v, "verdict changed after the header ended");
            }
            settled = Some(v);
        }
    }
    let got = s.finish();
    assert!(s.header_done());
    assert_eq!(got, want, "streaming scan disagrees (chunks up to {max})");
    if let Some(v) = settled {
        assert_eq!(v, got, "finish changed the verdict after the header ended");
    }
    if let Verdict::Loop(i) = got {
        assert!(i < targets.len());
    }
    if let Verdict::TooManyHops(n) = got {
        assert!(n >= header::MAX_HOPS);
    }
}

/// The trimmed value of the first `Delivered-To:` header line, if any.
fn first_delivered_to(message: &[u8]) -> Option<String> {
    for line in message.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() >= 13 && line[..13].eq_ignore_ascii_case(b"delivered-to:") {
            let v = String::from_utf8_lossy(&line[13..]);
            let v = v.trim_matches(|c| c == ' ' || c == '\t');
            let v = v.strip_prefix('<').unwrap_or(v);
            let v = v.strip_suffix('>').unwrap_or(v);
            return Some(v.to_string());
        }
    }
    None
}

fn has_ascii_control(s: &[u8]) -> bool {
    s.iter().any(|b| *b < 0x20 || *b == 0x7f)
}

/// `recipient::recipient` and `recipient::return_path` never panic, and
/// what they accept is safe to write into a header and to look up.
///
/// Input layout: bytes 0–1 say which of the eight fields are set (bit i of
/// the first byte, field i); byte 1 is unused (it chose a case policy that
/// no longer exists, and is kept so the corpus keeps its meaning); the rest, split on NUL, gives HOST, EXT, DEFAULT, SENDER, RPLINE,
/// `--local`, `--domain`, `--sender` in that order.
pub fn recipient(data: &[u8]) {
    let (present, rest) = match data {
        [p, _, rest @ ..] => (*p, rest),
        _ => (0b0001_1111, data),
    };
    // The environment is bytes (as the process gets it); the command line
    // is text.
    let raw: Vec<&[u8]> = rest.split(|b| *b == 0).take(8).collect();
    let texts: Vec<String> = raw
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let bytes = |i: usize| -> Option<&[u8]> {
        if present & (1 << i) == 0 {
            return None;
        }
        Some(raw.get(i).copied().unwrap_or(b""))
    };
    let field = |i: usize| -> Option<&str> {
        if present & (1 << i) == 0 {
            return None;
        }
        Some(texts.get(i).map_or("", String::as_str))
    };
    let env = QmailEnv {
        host: bytes(0),
        ext: bytes(1),
        default: bytes(2),
        sender: bytes(3),
        rpline: bytes(4),
    };
    let over = Overrides {
        local: field(5),
        domain: field(6),
        sender: field(7),
    };
    let got = recipient::recipient(&env, &over);
    if let Err(e) = &got {
        assert!(!e.to_string().contains('\n'), "error on two lines: {e}");
    }
    if let Ok(r) = &got {
        let d = &r.domain;
        assert!(!d.is_empty() && d.len() <= 253, "domain length: {d:?}");
        assert!(
            d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'),
            "domain characters: {d:?}"
        );
        assert!(
            d.split('.').all(|l| !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')),
            "domain labels: {d:?}"
        );
        assert_eq!(
            recipient::normalize_domain(d).as_deref(),
            Ok(d.as_str()),
            "normalize_domain is not idempotent"
        );

        assert!(!r.local.is_empty(), "empty local part: {r:?}");
        assert!(
            r.local_as_addressed.len() <= MAX_PART,
            "local part longer than MAX_PART"
        );
        assert!(
            !r.local_as_addressed.chars().any(char::is_control),
            "control character in the local part: {r:?}"
        );
        assert_eq!(r.local, r.local_as_addressed.to_ascii_lowercase());
        // Folding never turns a non-ASCII character into an ASCII one.
        assert_eq!(
            r.local.chars().filter(char::is_ascii).count(),
            r.local_as_addressed.chars().filter(char::is_ascii).count()
        );

        let dt = r.delivered_to();
        assert!(
            !dt.chars().any(char::is_control),
            "control character in Delivered-To: {dt:?}"
        );
        let (l, dom) = dt.rsplit_once('@').expect("Delivered-To without '@'");
        assert_eq!(dom, d.as_str());
        assert_eq!(l, r.local.to_ascii_lowercase());
        assert_eq!(dt, dt.to_ascii_lowercase(), "Delivered-To not lowercased");

        // What vdeliver writes into Delivered-To: must be found again by the
        // loop check when a message comes back with it.
        let looped = format!("Delivered-To: {dt}\r\n\r\n");
        assert_eq!(
            header::scan(looped.as_bytes(), &[&dt]),
            Verdict::Loop(0),
            "own Delivered-To: line not recognised as a loop"
        );
    }

    if let Ok(rp) = recipient::return_path(&env, &over) {
        assert!(rp.starts_with(b"Return-Path: <"), "{rp:?}");
        assert!(rp.ends_with(b">\n"), "{rp:?}");
        assert_eq!(rp.iter().filter(|b| **b == b'\n').count(), 1, "{rp:?}");
        assert!(!has_ascii_control(&rp[..rp.len() - 1]), "{rp:?}");
        // Opaque bytes are kept; text must hold no control character.
        if let Ok(text) = std::str::from_utf8(&rp[..rp.len() - 1]) {
            assert!(
                !text.chars().any(char::is_control),
                "control character in Return-Path: {rp:?}"
            );
        }
    }
    if let Ok(s) = recipient::sender(&env, &over) {
        assert!(!has_ascii_control(s), "{s:?}");
    }
}

/// Maildir names: escaped hosts and unique names hold no `/` or `:`, and the
/// size written into a name is the size read back from it.
///
/// Input layout: 40 bytes of numbers (secs, usec, pid, seq, random, size;
/// missing bytes are 0), then the host name.
pub fn names(data: &[u8]) {
    let mut num = [0u8; 40];
    let n = data.len().min(40);
    num[..n].copy_from_slice(&data[..n]);
    let host = String::from_utf8_lossy(&data[n..]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&num[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let u32_at = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&num[i..i + 4]);
        u32::from_le_bytes(b)
    };
    let escaped = names::escape_host(&host);
    assert!(!escaped.contains('/'), "{escaped:?}");
    assert!(!escaped.contains(':'), "{escaped:?}");
    let parts = NameParts {
        secs: u64_at(0),
        usec: u32_at(8),
        pid: u32_at(12),
        seq: u64_at(16),
        random: u64_at(24),
        host: &escaped,
    };
    let size = u64_at(32);
    let unique = names::unique(&parts);
    assert!(!unique.contains('/'), "{unique:?}");
    assert!(!unique.contains(':'), "{unique:?}");
    assert!(unique.ends_with(escaped.as_str()));
    let prefix = format!(
        "{}.M{}P{}Q{}R",
        parts.secs, parts.usec, parts.pid, parts.seq
    );
    assert!(unique.starts_with(&prefix), "{unique:?}");
    let new = names::new_name(&unique, size);
    assert!(!new.contains('/') && !new.contains(':'), "{new:?}");
    assert_eq!(
        names::size_from_name(&new),
        Some(size),
        "size not read back from {new:?}"
    );
    // With the info part a reader sees once the message is in cur/.
    assert_eq!(names::size_from_name(&format!("{new}:2,S")), Some(size));
    // Whatever a name holds, reading its size never panics.
    let _ = names::size_from_name(&host);
}

/// `config::parse` never panics on any text; an error names the file and is
/// one line; an accepted configuration passes its own checks.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/etc/vdeliver/config.toml");
    match config::parse(path, &text) {
        Ok(c) => {
            assert!(c.mail.root.is_absolute(), "{:?}", c.mail.root);
            for f in &c.mail.folders {
                assert!(config::check_folder_name(f).is_ok(), "{f:?}");
            }
            assert!(!c.delivery.deadline.is_zero());
            assert!(!c.database.connect_timeout.is_zero());
            assert!(!c.database.url.trim().is_empty());
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with("/etc/vdeliver/config.toml: "),
                "{shown:?}"
            );
            assert!(
                !shown.chars().any(char::is_control),
                "error not on one line: {shown:?}"
            );
            // Through the outcome layer it stays one line.
            outcome_line_ok(&Failure::config(&e).into(), Some("4.3.5"));
        }
    }
}

/// `Outcome::line` is one line ending in `\n`, at most `MAX_LINE` bytes,
/// with the status code last, whatever text it carries.
///
/// Input layout: byte 0 picks the kind of outcome; the rest is the text
/// (split on NUL for lists of mailboxes).
pub fn outcome_line(data: &[u8]) {
    let (kind, rest) = match data {
        [k, rest @ ..] => (*k, rest),
        [] => (0, data),
    };
    let text = String::from_utf8_lossy(rest);

    // The property asked for by name: any text in a temporary failure.
    let line = outcome_line_ok(&Failure::temporary(&text).into(), Some("4.3.0"));
    assert!(line.starts_with("Temporary failure: "), "{line:?}");

    let (o, status): (Outcome, Option<&str>) = match kind % 7 {
        0 => (Failure::config(&text).into(), Some("4.3.5")),
        1 => (Failure::looping(&text).into(), Some("5.4.6")),
        2 => (Failure::disabled(&text).into(), Some("5.2.1")),
        3 => {
            let (a, b) = text.split_once('\0').unwrap_or((&text, ""));
            (Failure::relocated(a, b).into(), Some("5.1.6"))
        }
        4 => (Failure::unknown_domain(&text).into(), Some("4.3.5")),
        5 => (Outcome::Discarded(text.to_string()), None),
        _ => (
            Outcome::Delivered {
                mailboxes: text.split('\0').map(String::from).collect(),
                forwarded: usize::from(kind >> 4),
                stop: kind & 8 != 0,
                notes: Vec::new(),
            },
            None,
        ),
    };
    outcome_line_ok(&o, status);
}

fn outcome_line_ok(o: &Outcome, status: Option<&str>) -> String {
    let line = o.line();
    assert!(line.len() <= MAX_LINE, "{} bytes", line.len());
    assert!(line.ends_with('\n'), "{line:?}");
    let body = &line[..line.len() - 1];
    assert!(
        !body.chars().any(char::is_control),
        "control character in {line:?}"
    );
    if let Some(s) = status {
        assert!(body.ends_with(&format!(" (#{s})")), "{line:?}");
        assert!(matches!(o.exit().code(), 100 | 111));
        assert_eq!(o.exit().code() == 100, s.starts_with('5'));
    } else {
        assert!(matches!(o.exit().code(), 0 | 99));
    }
    line
}

/// `maildirsize::parse` never panics and agrees with a plain reference
/// reader; what `render` writes, and Courier's padded form of the same
/// totals, read back the same; `assess` trusts a file only when its header
/// is the database's and never to refuse a message; `check`
/// and `percent` agree with each other.
///
/// Input layout: byte 0 picks the byte limit (×1000, 0 = none), byte 1 the
/// message limit (0 = none), byte 2 the message size (×100) and the copies
/// (low 2 bits), byte 3 is unused (it was the file's age, which no longer
/// matters); the rest is the file.
pub fn maildirsize(data: &[u8]) {
    let (ctrl, file) = match data {
        [a, b, c, d, rest @ ..] => ([*a, *b, *c, *d], rest),
        _ => ([0; 4], data),
    };
    let got = maildirsize::parse(file);
    assert_eq!(
        got,
        reference_maildirsize(file),
        "{:?}",
        String::from_utf8_lossy(file)
    );

    let limits = Limits {
        bytes: u64::from(ctrl[0]) * 1000,
        messages: u64::from(ctrl[1]),
    };
    let size = u64::from(ctrl[2] >> 2) * 100;
    let copies = u64::from(ctrl[2] & 3);
    let Ok(p) = got else {
        assert_eq!(
            maildirsize::assess(got, limits, size, copies),
            Err(got.unwrap_err())
        );
        return;
    };
    assert!(p.usage.bytes >= 0 && p.usage.messages >= 0 && p.lines >= 1);

    let header = p.limits.unwrap_or_default();
    let unpadded = maildirsize::render(header, p.usage);
    let padded = format!(
        "{}\n{:>12} {:>12}\n",
        header.header(),
        p.usage.bytes,
        p.usage.messages
    );
    for again in [unpadded, padded] {
        let q = maildirsize::parse(again.as_bytes());
        let want = Parsed {
            limits: Some(header),
            usage: p.usage,
            lines: 1,
        };
        assert_eq!(q, Ok(want), "{again:?}");
    }

    let verdict = maildirsize::check(p.usage, limits, size, copies);
    match maildirsize::assess(Ok(p), limits, size, copies) {
        Ok(u) => {
            assert_eq!(u, p.usage);
            assert_eq!(p.limits, Some(limits));
            assert_ne!(verdict, maildirsize::Verdict::Over);
        }
        Err(Trigger::LimitsDiffer) => assert_ne!(p.limits, Some(limits)),
        Err(Trigger::OverQuota) => {
            assert_eq!(verdict, maildirsize::Verdict::Over);
        }
        Err(t) => panic!("assess made up {t:?} for a readable file"),
    }
    let after = p.usage.plus(size, copies);
    if verdict == maildirsize::Verdict::Fits && !limits.is_unlimited() {
        assert!(
            maildirsize::percent(after, limits) <= 100,
            "{after:?} {limits:?}"
        );
    }
    assert!(maildirsize::percent(after, limits) >= maildirsize::percent(p.usage, limits));
}

/// The Maildir++ rules read the plain way: strings, `split`, `parse`.
fn reference_maildirsize(file: &[u8]) -> Result<Parsed, Trigger> {
    if file.len() >= maildirsize::MAX_FILE {
        return Err(Trigger::TooLarge);
    }
    if file.contains(&0) || file.last() != Some(&b'\n') {
        return Err(Trigger::Corrupt);
    }
    let text = String::from_utf8_lossy(&file[..file.len() - 1]);
    let mut lines = text.split('\n');
    let header = lines.next().unwrap_or("");
    let blanks: &[char] = &[' ', '\t'];
    let number = |s: &str| -> Option<i64> {
        let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let mut usage = Usage::default();
    let mut count = 0;
    for line in lines {
        let fields: Vec<&str> = line.split(blanks).filter(|f| !f.is_empty()).collect();
        let [b, m] = fields[..] else {
            return Err(Trigger::Corrupt);
        };
        let (b, m) = (
            number(b).ok_or(Trigger::Corrupt)?,
            number(m).ok_or(Trigger::Corrupt)?,
        );
        usage.bytes = usage.bytes.checked_add(b).ok_or(Trigger::Corrupt)?;
        usage.messages = usage.messages.checked_add(m).ok_or(Trigger::Corrupt)?;
        count += 1;
    }
    if count == 0 {
        return Err(Trigger::Corrupt);
    }
    if usage.bytes < 0 || usage.messages < 0 {
        return Err(Trigger::Negative);
    }
    let limits = (|| {
        let mut l = Limits::default();
        let (mut s, mut c) = (false, false);
        if header.trim_matches(blanks).is_empty() {
            return Some(l);
        }
        for item in header.split(',') {
            let item = item.trim_matches(blanks);
            let n: u64 = item.get(..item.len().checked_sub(1)?)?.parse().ok()?;
            if item.starts_with('+') {
                return None;
            }
            match item.chars().last()? {
                'S' if !s => (s, l.bytes) = (true, n),
                'C' if !c => (c, l.messages) = (true, n),
                _ => return None,
            }
        }
        Some(l)
    })();
    Ok(Parsed {
        limits,
        usage,
        lines: count,
    })
}

/// Alias destinations: `plan::interpolate` then `plan::split_address`, as
/// resolution applies them to a row.
///
/// Properties: neither panics; text without `%` comes back unchanged; `%%`
/// always yields one `%`; an interpolated result contains the local part
/// and domain wherever `%n`/`%d` stood; when `split_address` accepts the
/// result, the local part is non-empty and free of controls and blanks, the
/// domain is normalised (lowercase ASCII, only `[a-z0-9.-]`, at most 253
/// bytes) and the whole is at most `MAX_ADDRESS` bytes.
///
/// Input layout: split on NUL into destination, local part, domain.
pub fn destination(data: &[u8]) {
    use crate::plan::{interpolate, split_address, MAX_ADDRESS};
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let dest = parts.next().unwrap_or("");
    let local = parts.next().unwrap_or("al");
    let domain = parts.next().unwrap_or("example.com");
    match interpolate(dest, local, domain) {
        Ok(out) => {
            if !dest.contains('%') {
                assert_eq!(out, dest, "text without % changed");
            }
            if dest == "%%" {
                assert_eq!(out, "%");
            }
            if dest == "%n@%d" {
                assert_eq!(out, format!("{local}@{domain}"));
            }
            if let Ok((l, d)) = split_address(&out) {
                assert!(!l.is_empty(), "empty local part from {out:?}");
                assert!(
                    !l.chars().any(|c| c.is_control() || c == ' '),
                    "control or blank in {l:?}"
                );
                assert!(d.len() <= 253, "domain too long: {d:?}");
                assert!(
                    d.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'.'
                        || b == b'-'),
                    "domain not normalised: {d:?}"
                );
                assert!(out.len() <= MAX_ADDRESS, "address over the limit");
            }
        }
        Err(why) => {
            assert!(dest.contains('%'), "an error without %: {why}");
        }
    }
}

/// `sieve::compile` never panics on any bytes; an error is one line,
/// `line N: …`, with N a line of the script; compiling is deterministic.
pub fn sieve_compile(data: &[u8]) {
    use crate::sieve;
    match sieve::compile(data) {
        Ok(p) => {
            assert_eq!(
                sieve::compile(data).ok(),
                Some(p),
                "compile not deterministic"
            );
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                !shown.chars().any(char::is_control),
                "error not on one line: {shown:?}"
            );
            assert_eq!(shown, format!("line {}: {}", e.line(), e.message()));
            assert!(!e.message().is_empty(), "empty error message");
            let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
            assert!(
                e.line() >= 1 && e.line() as usize <= lines,
                "line {} outside the script's {lines} lines: {shown}",
                e.line()
            );
        }
    }
}

/// `sieve::interp::run` never panics on any (script, message): the input
/// is the script, a NUL byte, then the message. When the script compiles,
/// the run is deterministic, stays within its limits, and an error leaves
/// no action. Every included script is the script itself (loops and the
/// depth limit get exercised); `duplicate` answers from a fixed bit.
pub fn sieve_run(data: &[u8]) {
    use crate::sieve::action::Action;
    use crate::sieve::interp::{self, Env, Host, SpamSettings};
    use crate::sieve::message::Message;
    use crate::sieve::{self, Location, Program};

    struct FuzzHost<'a> {
        script: &'a [u8],
        dup: bool,
    }
    impl Host for FuzzHost<'_> {
        fn mailbox_exists(&mut self, name: &str) -> bool {
            name.len().is_multiple_of(2)
        }
        fn duplicate(&mut self, _id: &str, _seconds: Option<u64>, _last: bool) -> bool {
            self.dup
        }
        fn include(&mut self, _l: Location, name: &str) -> Result<Option<Program>, String> {
            if name.starts_with('m') {
                return Ok(None);
            }
            sieve::compile(self.script)
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }

    let (script, message) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (
            data,
            &b"From: a@b.c\r\nTo: d@e.f\r\nSubject: hi\r\n\r\nbody\r\n"[..],
        ),
    };
    let Ok(program) = sieve::compile(script) else {
        return;
    };
    let msg = Message::parse(message);
    let env = Env {
        envelope_from: "a@b.c".into(),
        envelope_to: "d+x@e.f".into(),
        extension_delimiter: "+".into(),
        now: 1_700_000_000,
        spam: Some(SpamSettings {
            header: "X-Spam-Score".into(),
            max_score: 10.0,
        }),
        ..Env::default()
    };
    let dup = !message.len().is_multiple_of(2);
    let a = interp::run(&program, &msg, &env, &mut FuzzHost { script, dup });
    let b = interp::run(&program, &msg, &env, &mut FuzzHost { script, dup });
    assert_eq!(a, b, "run not deterministic");
    if a.error.is_some() {
        assert!(a.actions.is_empty(), "an error with actions: {a:?}");
        assert!(!a.discarded);
        return;
    }
    let redirects = a
        .actions
        .iter()
        .filter(|x| matches!(x, Action::Redirect { .. }))
        .count();
    assert!(redirects <= env.max_redirects, "too many redirects");
    // The implicit keep may come on top of the limit.
    assert!(a.actions.len() <= env.max_actions + 1, "too many actions");
    let stores = a
        .actions
        .iter()
        .filter(|x| matches!(x, Action::Store { .. }))
        .count();
    assert!(!(a.discarded && stores > 0), "discarded yet stored");
    for (i, x) in a.actions.iter().enumerate() {
        match x {
            Action::Store {
                folder, implicit, ..
            } => {
                assert!(!folder.is_empty(), "empty folder");
                if *implicit {
                    assert_eq!(i, a.actions.len() - 1, "implicit keep not last");
                    assert_eq!(folder, "INBOX");
                }
            }
            Action::Redirect { address } => {
                assert!(address.contains('@'), "bad redirect {address:?}");
            }
            Action::Reject { .. } | Action::Vacation(_) => {}
        }
    }
}
