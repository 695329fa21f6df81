//! The loop and hop checks, as a streaming scanner: a `Delivered-To:`
//! naming an address this delivery writes as, or 100 or more `Received:`
//! and `Delivered-To:` lines, is a loop (100, `#5.4.6`).
//!
//! Feed the message in chunks of any size; the scanner looks only at the
//! header (up to the first empty line, or EOF) and keeps a bounded amount of
//! state whatever the input: huge headers, lines without LF, binary, NULs.
//! Time is linear in the header's length; once the header has ended, a chunk
//! costs nothing.
//!
//! A `Delivered-To:` line loops when its value, with surrounding blanks, a
//! trailing CR and optional angle brackets removed, equals one of the target
//! addresses case-insensitively. Substrings never match. Continuation lines
//! (starting with a blank) are never header field starts.

use memchr::memchr;

/// What qmail counts as hops: a message with this many `Received:` plus
/// `Delivered-To:` lines is looping.
pub const MAX_HOPS: u32 = 100;

/// Blanks past the longest target that a `Delivered-To:` value may carry and
/// still be compared; a longer line cannot match and is not kept.
const SLACK: usize = 256;

const DELIVERED_TO: &[u8] = b"delivered-to:";
const RECEIVED: &[u8] = b"received:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No loop found.
    Clean,
    /// A `Delivered-To:` line names this target (its index in the targets).
    Loop(usize),
    /// Too many `Received:`/`Delivered-To:` lines: the count.
    TooManyHops(u32),
}

/// Streaming header scanner. See the module docs.
#[derive(Debug)]
pub struct HeaderScan {
    /// Lowercased addresses that this delivery writes as.
    targets: Vec<Vec<u8>>,
    /// The start of the current line, at most `cap` bytes.
    line: Vec<u8>,
    /// Whether the current line was longer than `cap`.
    overflow: bool,
    cap: usize,
    hops: u32,
    looped: Option<usize>,
    in_header: bool,
}

impl HeaderScan {
    pub fn new<S: AsRef<str>>(targets: &[S]) -> HeaderScan {
        let targets: Vec<Vec<u8>> = targets
            .iter()
            .map(|t| t.as_ref().to_ascii_lowercase().into_bytes())
            .collect();
        let longest = targets.iter().map(Vec::len).max().unwrap_or(0);
        let cap = DELIVERED_TO.len() + longest + SLACK;
        HeaderScan {
            targets,
            line: Vec::with_capacity(cap.min(4096)),
            overflow: false,
            cap,
            hops: 0,
            looped: None,
            in_header: true,
        }
    }

    /// Whether the header has ended (nothing further is examined).
    pub fn header_done(&self) -> bool {
        !self.in_header
    }

    /// Look at the next chunk of the message.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while self.in_header && !chunk.is_empty() {
            match memchr(b'\n', chunk) {
                Some(i) => {
                    self.take(&chunk[..i]);
                    self.end_line();
                    chunk = &chunk[i + 1..];
                }
                None => {
                    self.take(chunk);
                    return;
                }
            }
        }
    }

    /// The message has ended: judge the last line (if it had no LF) and
    /// give the verdict.
    pub fn finish(&mut self) -> Verdict {
        if self.in_header && (!self.line.is_empty() || self.overflow) {
            self.end_line();
        }
        self.in_header = false;
        self.verdict()
    }

    /// The verdict on what has been seen so far.
    pub fn verdict(&self) -> Verdict {
        if let Some(i) = self.looped {
            Verdict::Loop(i)
        } else if self.hops >= MAX_HOPS {
            Verdict::TooManyHops(self.hops)
        } else {
            Verdict::Clean
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        let room = self.cap - self.line.len();
        if bytes.len() > room {
            self.overflow = true;
        }
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if line.is_empty() && !self.overflow {
            self.in_header = false;
        } else if starts_with_ci(line, RECEIVED) {
            self.hops = self.hops.saturating_add(1);
        } else if starts_with_ci(line, DELIVERED_TO) {
            self.hops = self.hops.saturating_add(1);
            if !self.overflow && self.looped.is_none() {
                let value = address_value(&line[DELIVERED_TO.len()..]);
                self.looped = self
                    .targets
                    .iter()
                    .position(|t| t.eq_ignore_ascii_case(value));
            }
        }
        self.line.clear();
        self.overflow = false;
    }
}

fn starts_with_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A header value with blanks trimmed and one pair of angle brackets removed.
fn address_value(v: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t' || *b == b'\r';
    let start = v.iter().position(|b| !is_blank(b)).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |e| e + 1);
    let v = &v[start..end];
    match v {
        [b'<', inner @ .., b'>'] => inner,
        _ => v,
    }
}

/// The obvious, whole-buffer version of the same check: the test oracle for
/// the streaming scanner (unit tests and the fuzz target compare the two).
#[doc(hidden)]
pub fn reference_scan<S: AsRef<str>>(message: &[u8], targets: &[S]) -> Verdict {
    let mut hops = 0u32;
    let mut looped = None;
    let longest = targets.iter().map(|t| t.as_ref().len()).max().unwrap_or(0);
    for raw in message.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with(b"received:") {
            hops += 1;
        } else if lower.starts_with(b"delivered-to:") {
            hops += 1;
            // Same bound as the scanner: over-long lines are not compared.
            if looped.is_none() && raw.len() <= DELIVERED_TO.len() + longest + SLACK {
                let value = address_value(&lower[DELIVERED_TO.len()..]);
                looped = targets
                    .iter()
                    .position(|t| t.as_ref().to_ascii_lowercase().as_bytes() == value);
            }
        }
    }
    if let Some(i) = looped {
        Verdict::Loop(i)
    } else if hops >= MAX_HOPS {
        Verdict::TooManyHops(hops)
    } else {
        Verdict::Clean
    }
}

/// Scan a whole message in one go (for tests, benches and `resolve`).
pub fn scan<S: AsRef<str>>(message: &[u8], targets: &[S]) -> Verdict {
    let mut s = HeaderScan::new(targets);
    s.feed(message);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &[&str] = &["alice@example.com"];

    #[test]
    fn table() {
        let hops99 = "Received: x\n".repeat(99);
        let hops100 = "Received: x\n".repeat(100);
        let hops100_body = format!("Subject: a\n\n{hops100}");
        let cases: &[(&str, &[u8], Verdict)] = &[
            ("clean", b"Subject: hi\n\nbody\n", Verdict::Clean),
            (
                "loop",
                b"Delivered-To: alice@example.com\n\n",
                Verdict::Loop(0),
            ),
            (
                "loop case",
                b"DELIVERED-TO: Alice@Example.COM\n\n",
                Verdict::Loop(0),
            ),
            (
                "loop crlf",
                b"Delivered-To: alice@example.com\r\n\r\nx",
                Verdict::Loop(0),
            ),
            (
                "loop brackets",
                b"Delivered-To:  <alice@example.com> \n\n",
                Verdict::Loop(0),
            ),
            (
                "loop no lf",
                b"Subject: x\nDelivered-To: alice@example.com",
                Verdict::Loop(0),
            ),
            (
                "substring",
                b"Delivered-To: malice@example.com\n\n",
                Verdict::Clean,
            ),
            (
                "superstring",
                b"Delivered-To: alice@example.com.au\n\n",
                Verdict::Clean,
            ),
            (
                "other dt",
                b"Delivered-To: vmail-example.com-alice@example.com\n\n",
                Verdict::Clean,
            ),
            (
                "in body",
                b"Subject: x\n\nDelivered-To: alice@example.com\n",
                Verdict::Clean,
            ),
            (
                "after crlf end",
                b"A: b\r\n\r\nDelivered-To: alice@example.com\n",
                Verdict::Clean,
            ),
            (
                "continuation",
                b"X: y\n Delivered-To: alice@example.com\n\n",
                Verdict::Clean,
            ),
            ("empty", b"", Verdict::Clean),
            ("hops 99", hops99.as_bytes(), Verdict::Clean),
            ("hops 100", hops100.as_bytes(), Verdict::TooManyHops(100)),
            ("hops in body", hops100_body.as_bytes(), Verdict::Clean),
        ];
        for (name, msg, want) in cases {
            assert_eq!(scan(msg, ME), *want, "{name}");
            assert_eq!(reference_scan(msg, ME), *want, "reference {name}");
        }
    }

    #[test]
    fn every_chunking_agrees() {
        let msg = b"Received: a\r\nDelivered-To: other@x\nX: y\n  Delivered-To: alice@example.com\nDelivered-To: <ALICE@example.com>\r\n\r\nbody";
        for size in 1..msg.len() {
            let mut s = HeaderScan::new(ME);
            for c in msg.chunks(size) {
                s.feed(c);
            }
            assert_eq!(s.finish(), Verdict::Loop(0), "chunk size {size}");
        }
    }

    #[test]
    fn huge_line_bounded() {
        let mut s = HeaderScan::new(ME);
        s.feed(b"Delivered-To: ");
        let filler = vec![b'a'; 1 << 20];
        s.feed(&filler);
        assert!(s.line.capacity() <= 4096.max(s.cap));
        s.feed(b"alice@example.com\n\n");
        assert_eq!(s.finish(), Verdict::Clean);
        assert!(s.header_done());
    }
}
