//! Maildir++ quota arithmetic, pure: reading and writing the
//! `maildirsize` file, the quota check, and when the file must not be
//! trusted. No filesystem, no clock: the caller passes the file's bytes.
//!
//! # The file
//!
//! ```text
//! 10000000S,1000C          limits: bytes (S) and messages (C); 0 or absent = unlimited
//!     52341     12         Courier's padded form of "<bytes> <count>"
//! 2048 1                   Dovecot's and vdeliver's unpadded form
//! -2048 -1                 an expunge (lines may be negative; the total may not)
//! ```
//!
//! The usage is the sum of the lines after the first. Both Courier's
//! (`%12s %12s`) and Dovecot's (`%lld %d`) lines are read; vdeliver writes
//! the unpadded form and the header in the form both write (`<n>S,<n>C`,
//! zero parts left out, `0S` when there is no limit at all).
//!
//! # When the file is recalculated instead of trusted ([`Trigger`])
//!
//! Missing; [`MAX_FILE`] bytes or more; corrupt (a NUL, a line that is not
//! two integers, a last line without its newline, no data line, a sum that
//! overflows); a negative total; a header that differs from the limits the
//! database gives (the database is authoritative); and whenever the
//! delivery would be refused ([`Trigger::OverQuota`]). A mail client that
//! does not speak Maildir++ removes messages without touching the file, so
//! its figures can only be trusted to let a message in, never to keep one
//! out: no refusal rests on them without a recount. (Courier trusts a
//! single fresh line for 15 minutes, and bounced mail to an emptied
//! mailbox for that long.) A delivery that fits costs nothing more; a
//! refusal costs one recount of the mailbox's directories.

use std::fmt;

/// A file this long or longer is recalculated (the Maildir++ rule).
pub const MAX_FILE: usize = 5120;

/// Quota limits; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub bytes: u64,
    pub messages: u64,
}

impl Limits {
    /// From the database: NULL, 0 (and anything negative, which the schema
    /// refuses) is unlimited.
    pub fn from_db(bytes: Option<i64>, messages: Option<i64>) -> Limits {
        let lim = |v: Option<i64>| v.filter(|n| *n > 0).map_or(0, |n| n as u64);
        Limits {
            bytes: lim(bytes),
            messages: lim(messages),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.bytes == 0 && self.messages == 0
    }

    /// The stricter of two sets of limits, each part on its own (for two
    /// accounts that share one Maildir).
    pub fn stricter(self, other: Limits) -> Limits {
        let min = |a: u64, b: u64| match (a, b) {
            (0, x) | (x, 0) => x,
            (a, b) => a.min(b),
        };
        Limits {
            bytes: min(self.bytes, other.bytes),
            messages: min(self.messages, other.messages),
        }
    }

    /// The header line, without its newline: `10000S,10C`, `10C`, `0S`.
    pub fn header(&self) -> String {
        match (self.bytes, self.messages) {
            (0, 0) => "0S".to_string(),
            (b, 0) => format!("{b}S"),
            (0, m) => format!("{m}C"),
            (b, m) => format!("{b}S,{m}C"),
        }
    }
}

/// Parse a header line (`10000S,10C`). `None` when it is not made only of
/// `<digits>S` and `<digits>C` items, each at most once, separated by
/// commas. An empty line means no limits.
pub fn parse_header(line: &[u8]) -> Option<Limits> {
    let line = trim(line);
    let mut limits = Limits::default();
    if line.is_empty() {
        return Some(limits);
    }
    let (mut seen_s, mut seen_c) = (false, false);
    for item in line.split(|b| *b == b',') {
        let item = trim(item);
        let (num, unit) = item.split_at(item.len().checked_sub(1)?);
        let n = parse_unsigned(num)?;
        match unit {
            b"S" if !seen_s => {
                seen_s = true;
                limits.bytes = n;
            }
            b"C" if !seen_c => {
                seen_c = true;
                limits.messages = n;
            }
            _ => return None,
        }
    }
    Some(limits)
}

/// Usage: the sum of the data lines. Signed, as the lines are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub bytes: i64,
    pub messages: i64,
}

impl Usage {
    /// This usage plus `copies` messages of `size` bytes (saturating: the
    /// result is only compared with limits).
    pub fn plus(self, size: u64, copies: u64) -> Usage {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let copies = i64::try_from(copies).unwrap_or(i64::MAX);
        Usage {
            bytes: self.bytes.saturating_add(size.saturating_mul(copies)),
            messages: self.messages.saturating_add(copies),
        }
    }
}

/// A readable `maildirsize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The header's limits; `None` when the header is not understood (it
    /// then differs from any limits, and the file is rewritten).
    pub limits: Option<Limits>,
    pub usage: Usage,
    /// Data lines (all lines but the header).
    pub lines: usize,
}

/// Why the file is recalculated rather than trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Missing,
    TooLarge,
    Corrupt,
    Negative,
    LimitsDiffer,
    /// The delivery would be refused on the file's figures, which may have
    /// drifted.
    OverQuota,
    /// The file is not vdeliver's own: hard-linked elsewhere, owned by
    /// another user, or not a regular file. It is replaced, never written
    /// through.
    NotOwn,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Missing => "it is missing",
            Trigger::TooLarge => "it is too large",
            Trigger::Corrupt => "it is corrupt",
            Trigger::Negative => "its total is negative",
            Trigger::LimitsDiffer => "its limits differ from the database's",
            Trigger::OverQuota => "it claims over quota and may have drifted",
            Trigger::NotOwn => {
                "it is not vdeliver's own file (hard-linked, another owner, or not a regular file)"
            }
        })
    }
}

/// Read a `maildirsize` file's bytes. Errors are the triggers a file's
/// content alone can fire: [`Trigger::TooLarge`], [`Trigger::Corrupt`],
/// [`Trigger::Negative`].
pub fn parse(file: &[u8]) -> Result<Parsed, Trigger> {
    if file.len() >= MAX_FILE {
        return Err(Trigger::TooLarge);
    }
    // A partly written last line, an empty file or a NUL: not trusted.
    let body = file.strip_suffix(b"\n").ok_or(Trigger::Corrupt)?;
    if memchr::memchr(0, body).is_some() {
        return Err(Trigger::Corrupt);
    }
    let mut lines = body.split(|b| *b == b'\n');
    let limits = parse_header(lines.next().unwrap_or_default());
    let mut usage = Usage::default();
    let mut count = 0;
    for line in lines {
        let (b, m) = parse_line(line).ok_or(Trigger::Corrupt)?;
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
    Ok(Parsed {
        limits,
        usage,
        lines: count,
    })
}

/// One data line: two integers separated by blanks, blanks around them.
pub fn parse_line(line: &[u8]) -> Option<(i64, i64)> {
    let line = trim(line);
    let sep = line.iter().position(|b| is_blank(*b))?;
    let (a, rest) = line.split_at(sep);
    Some((parse_signed(a)?, parse_signed(trim(rest))?))
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_blank(*b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_blank(*b))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn parse_unsigned(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_signed(s: &[u8]) -> Option<i64> {
    let digits = match s {
        [b'-' | b'+', rest @ ..] => rest,
        _ => s,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// A whole file: the header and one line with the totals.
pub fn render(limits: Limits, usage: Usage) -> String {
    format!("{}\n{}", limits.header(), line(usage.bytes, usage.messages))
}

/// One data line, with its newline.
pub fn line(bytes: i64, messages: i64) -> String {
    format!("{bytes} {messages}\n")
}

/// The result of a quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fits,
    /// Usage plus the message would exceed a limit.
    Over,
    /// One message is larger than the whole byte limit: no amount of
    /// expunging can make it fit.
    TooLarge,
}

/// Would `copies` messages of `size` bytes fit? A limit may be reached
/// exactly (a 10-message quota holds 10 messages), as Courier and Dovecot
/// count.
pub fn check(usage: Usage, limits: Limits, size: u64, copies: u64) -> Verdict {
    if limits.bytes > 0 && copies > 0 && size > limits.bytes {
        return Verdict::TooLarge;
    }
    let after = usage.plus(size, copies);
    let over = |used: i64, limit: u64| limit > 0 && used > 0 && used as u64 > limit;
    if over(after.bytes, limits.bytes) || over(after.messages, limits.messages) {
        Verdict::Over
    } else {
        Verdict::Fits
    }
}

/// Decide whether a parsed file can be trusted for this delivery, or what
/// makes it be recalculated. Figures that would refuse the delivery are
/// never trusted (see the module docs); a message larger than the whole
/// byte limit needs no recount, since no usage can make it fit.
pub fn assess(
    parsed: Result<Parsed, Trigger>,
    limits: Limits,
    size: u64,
    copies: u64,
) -> Result<Usage, Trigger> {
    let p = parsed?;
    if p.limits != Some(limits) {
        return Err(Trigger::LimitsDiffer);
    }
    if check(p.usage, limits, size, copies) == Verdict::Over {
        return Err(Trigger::OverQuota);
    }
    Ok(p.usage)
}

/// How full the mailbox is, in whole percent: the larger of the byte and
/// the message ratio (as Courier computes it); 0 when unlimited.
pub fn percent(usage: Usage, limits: Limits) -> u64 {
    let pc = |used: i64, limit: u64| {
        if limit == 0 || used <= 0 {
            0
        } else {
            (u128::from(used as u64) * 100 / u128::from(limit)).min(u128::from(u64::MAX)) as u64
        }
    };
    pc(usage.bytes, limits.bytes).max(pc(usage.messages, limits.messages))
}

/// Whether a delivery that takes the mailbox from `before` to `after`
/// crosses the warning mark: limited, warnings on (`warn_percent` > 0),
/// below the mark before and at or above it after. A mailbox that stays
/// above the mark is not warned again; one that drops below (messages
/// expunged) and fills up again is. The once-a-day cap is the caller's (it
/// needs a clock).
pub fn crosses(before: Usage, after: Usage, limits: Limits, warn_percent: u8) -> bool {
    let mark = u64::from(warn_percent);
    warn_percent > 0
        && !limits.is_unlimited()
        && percent(before, limits) < mark
        && percent(after, limits) >= mark
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(bytes: u64, messages: u64) -> Limits {
        Limits { bytes, messages }
    }

    fn usage(bytes: i64, messages: i64) -> Usage {
        Usage { bytes, messages }
    }

    #[test]
    fn courier_and_dovecot_files() {
        // (file, want limits, want usage, want data lines)
        let cases: &[(&[u8], Option<Limits>, Usage, usize)] = &[
            // Courier: padded lines, header without zero parts.
            (
                b"10000000S,1000C\n       52341           12\n        1024            1\n",
                Some(lim(10_000_000, 1000)),
                usage(53365, 13),
                2,
            ),
            // Dovecot: unpadded, an expunge as a negative line.
            (
                b"1048576S\n4096 2\n2048 1\n-2048 -1\n",
                Some(lim(1_048_576, 0)),
                usage(4096, 2),
                3,
            ),
            // Dovecot with no limit writes 0S.
            (b"0S\n0 0\n", Some(lim(0, 0)), usage(0, 0), 1),
            (b"10C\n5 1\n", Some(lim(0, 10)), usage(5, 1), 1),
            (b"10C,20S\n5 1\n", Some(lim(20, 10)), usage(5, 1), 1),
            // Tabs and trailing blanks; a leading plus.
            (b"5S\n\t3\t+1 \n", Some(lim(5, 0)), usage(3, 1), 1),
            // A header nobody understands is still a readable file.
            (b"100B\n1 1\n", None, usage(1, 1), 1),
            (b"100S,100S\n1 1\n", None, usage(1, 1), 1),
            (b"S\n1 1\n", None, usage(1, 1), 1),
        ];
        for (file, want_limits, want_usage, want_lines) in cases {
            let got =
                parse(file).unwrap_or_else(|t| panic!("{:?}: {t}", String::from_utf8_lossy(file)));
            assert_eq!(
                got.limits,
                *want_limits,
                "{:?}",
                String::from_utf8_lossy(file)
            );
            assert_eq!(
                got.usage,
                *want_usage,
                "{:?}",
                String::from_utf8_lossy(file)
            );
            assert_eq!(
                got.lines,
                *want_lines,
                "{:?}",
                String::from_utf8_lossy(file)
            );
        }
    }

    #[test]
    fn broken_files_are_triggers() {
        let big = format!("100S\n{}", "1 1\n".repeat(MAX_FILE / 4));
        let cases: &[(&[u8], Trigger)] = &[
            (b"", Trigger::Corrupt),
            (b"100S\n", Trigger::Corrupt),
            (b"100S", Trigger::Corrupt),
            (b"100S\n1 1", Trigger::Corrupt),
            (b"100S\n1 1\n\n", Trigger::Corrupt),
            (b"100S\n1\n", Trigger::Corrupt),
            (b"100S\n1 1 1\n", Trigger::Corrupt),
            (b"100S\n1 x\n", Trigger::Corrupt),
            (b"100S\n1 1\r\n", Trigger::Corrupt),
            (b"100S\n1\0 1\n", Trigger::Corrupt),
            (b"100S\n--1 1\n", Trigger::Corrupt),
            (b"100S\n- 1\n", Trigger::Corrupt),
            (b"100S\n9223372036854775808 1\n", Trigger::Corrupt),
            (b"100S\n9223372036854775807 1\n1 1\n", Trigger::Corrupt),
            (b"100S\n99999999999999999999 1\n", Trigger::Corrupt),
            (b"100S\n5 1\n-6 -1\n", Trigger::Negative),
            (b"100S\n5 1\n-5 -2\n", Trigger::Negative),
            (big.as_bytes(), Trigger::TooLarge),
        ];
        for (file, want) in cases {
            assert_eq!(
                parse(file),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(file)
            );
        }
        // Just under the size limit is fine.
        let mut ok = b"1S\n".to_vec();
        while ok.len() + 4 < MAX_FILE {
            ok.extend_from_slice(b"0 0\n");
        }
        assert!(ok.len() < MAX_FILE && parse(&ok).is_ok());
    }

    #[test]
    fn header_round_trip() {
        for l in [
            lim(0, 0),
            lim(1, 0),
            lim(0, 1),
            lim(123, 45),
            lim(u64::MAX, u64::MAX),
        ] {
            assert_eq!(
                parse_header(l.header().as_bytes()),
                Some(l),
                "{}",
                l.header()
            );
            let file = render(l, usage(7, 2));
            let p = parse(file.as_bytes()).unwrap();
            assert_eq!((p.limits, p.usage, p.lines), (Some(l), usage(7, 2), 1));
        }
        assert_eq!(lim(0, 0).header(), "0S");
        assert_eq!(lim(10, 0).header(), "10S");
        assert_eq!(lim(0, 10).header(), "10C");
        assert_eq!(lim(10, 5).header(), "10S,5C");
    }

    #[test]
    fn limits_from_the_database() {
        assert_eq!(Limits::from_db(None, None), lim(0, 0));
        assert_eq!(Limits::from_db(Some(0), Some(0)), lim(0, 0));
        assert_eq!(Limits::from_db(Some(-1), Some(5)), lim(0, 5));
        assert_eq!(Limits::from_db(Some(100), None), lim(100, 0));
        assert!(Limits::from_db(Some(0), None).is_unlimited());
        assert_eq!(lim(100, 0).stricter(lim(50, 7)), lim(50, 7));
        assert_eq!(lim(0, 3).stricter(lim(0, 0)), lim(0, 3));
    }

    #[test]
    fn checks() {
        // (usage, limits, size, copies, want)
        let cases = [
            (usage(0, 0), lim(0, 0), 1 << 40, 1, Verdict::Fits),
            (usage(0, 9), lim(0, 10), 100, 1, Verdict::Fits),
            (usage(0, 10), lim(0, 10), 100, 1, Verdict::Over),
            (usage(0, 9), lim(0, 10), 100, 2, Verdict::Over),
            (usage(900, 1), lim(1000, 0), 100, 1, Verdict::Fits),
            (usage(901, 1), lim(1000, 0), 100, 1, Verdict::Over),
            (usage(0, 0), lim(1000, 0), 1001, 1, Verdict::TooLarge),
            (usage(0, 0), lim(1000, 0), 1000, 1, Verdict::Fits),
            (usage(0, 0), lim(1000, 0), 600, 2, Verdict::Over),
            // Over already (someone else's files), too large wins.
            (usage(5000, 1), lim(1000, 0), 2000, 1, Verdict::TooLarge),
            (usage(i64::MAX, 1), lim(1000, 0), 1, 1, Verdict::Over),
        ];
        for (u, l, size, copies, want) in cases {
            assert_eq!(
                check(u, l, size, copies),
                want,
                "{u:?} {l:?} {size} {copies}"
            );
        }
    }

    #[test]
    fn trust_or_recalculate() {
        let l = lim(1000, 10);
        let p = |lines: usize, u: Usage| -> Result<Parsed, Trigger> {
            Ok(Parsed {
                limits: Some(l),
                usage: u,
                lines,
            })
        };
        // Fits: trusted however many lines.
        assert_eq!(assess(p(40, usage(100, 1)), l, 10, 1), Ok(usage(100, 1)));
        // Would be refused: never trusted, one line and fresh or not.
        assert_eq!(
            assess(p(1, usage(995, 1)), l, 10, 1),
            Err(Trigger::OverQuota)
        );
        assert_eq!(
            assess(p(2, usage(995, 1)), l, 10, 1),
            Err(Trigger::OverQuota)
        );
        assert_eq!(assess(p(1, usage(0, 10)), l, 1, 1), Err(Trigger::OverQuota));
        // Exactly at the limit after this message: fits, trusted.
        assert_eq!(assess(p(1, usage(0, 9)), l, 1, 1), Ok(usage(0, 9)));
        // Limits from the database differ.
        assert_eq!(
            assess(p(1, usage(0, 0)), lim(1000, 11), 10, 1),
            Err(Trigger::LimitsDiffer)
        );
        let unknown = Ok(Parsed {
            limits: None,
            usage: usage(0, 0),
            lines: 1,
        });
        assert_eq!(assess(unknown, l, 10, 1), Err(Trigger::LimitsDiffer));
        // Content triggers pass through.
        assert_eq!(
            assess(Err(Trigger::Negative), l, 1, 1),
            Err(Trigger::Negative)
        );
        // Too large needs no recalculation: no usage can make it fit.
        assert_eq!(assess(p(9, usage(0, 0)), l, 5000, 1), Ok(usage(0, 0)));
    }

    #[test]
    fn percentages_and_warnings() {
        assert_eq!(percent(usage(900, 1), lim(1000, 100)), 90);
        assert_eq!(percent(usage(1, 95), lim(1000, 100)), 95);
        assert_eq!(percent(usage(899, 0), lim(1000, 0)), 89);
        assert_eq!(percent(usage(5, 5), lim(0, 0)), 0);
        assert_eq!(percent(usage(-5, -1), lim(10, 10)), 0);
        assert_eq!(percent(usage(i64::MAX, 0), lim(1, 0)), u64::MAX);
        // (before, after, limits, mark, want)
        let cases = [
            (usage(0, 8), usage(0, 9), lim(0, 10), 90, true),
            (usage(0, 7), usage(0, 8), lim(0, 10), 90, false),
            // Already above: no new warning.
            (usage(0, 9), usage(0, 10), lim(0, 10), 90, false),
            // 3-message quota, 90%: the third message crosses.
            (usage(0, 2), usage(0, 3), lim(0, 3), 90, true),
            (usage(0, 1), usage(0, 2), lim(0, 3), 90, false),
            // Straight from empty to full.
            (usage(0, 0), usage(0, 1), lim(0, 1), 90, true),
            // By bytes, the messages far from the mark.
            (usage(890, 1), usage(900, 2), lim(1000, 100), 90, true),
            (usage(0, 9), usage(0, 10), lim(0, 10), 0, false),
            (usage(0, 9), usage(0, 10), lim(0, 0), 90, false),
            (usage(0, 10), usage(0, 11), lim(0, 10), 100, false),
            (usage(0, 9), usage(0, 10), lim(0, 10), 100, true),
        ];
        for (before, after, l, mark, want) in cases {
            assert_eq!(
                crosses(before, after, l, mark),
                want,
                "{before:?} {after:?} {l:?} {mark}"
            );
        }
    }
}
