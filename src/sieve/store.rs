//! The delivery side's building blocks for what a Sieve script decides:
//! where a folder is on disk, how flags become Maildir info, where the
//! account's active script is, and its error log. The interpreter stays
//! pure; the delivery code calls these.
//!
//! # Folder names ([`folder_dir_name`])
//!
//! Folders are Maildir++ folders as Dovecot keeps them with its default
//! `maildir:~/Maildir` layout: the folder `Lists.rust` is the directory
//! `.Lists.rust` in the Maildir, each level written in IMAP modified UTF-7
//! (RFC 3501 section 5.1.3), so `Entwürfe` is `.Entw&APw-rfe` and an IMAP
//! client sees the folder under its real name.
//!
//! * The hierarchy separator is `.`, Dovecot's default for the Maildir++
//!   layout: `fileinto "Lists.rust"` files into the child `rust` of
//!   `Lists`. A site whose IMAP namespace uses `separator = /` (the names
//!   scripts hold are then `Lists/rust`) uses [`folder_dir_name_sep`] with
//!   `/`; on disk it is the same `.Lists.rust`, and a `.` inside a level
//!   is then refused (Maildir++ cannot hold it).
//! * `INBOX` (any case) is the Maildir itself: the empty string. A name
//!   starting with `INBOX` and the separator (any case: `INBOX.Sent`,
//!   scripts written for Courier-style namespaces) names the same folder
//!   without that prefix. This is a deliberate choice and differs from
//!   Pigeonhole under Dovecot's default namespace (`inbox = yes`, empty
//!   prefix, checked with `sieve-test`): there `INBOX.Sub` is a child of
//!   the inbox, stored in `.INBOX.Sub`; here it is `.Sub`, as under a
//!   Courier-style `prefix = INBOX.` namespace. A directory `.INBOX.x`
//!   made by Dovecot therefore reads back as `INBOX.INBOX.x`
//!   ([`folder_name_from_dir`]). The README's list of differences must
//!   carry this.
//! * Refused, with a message saying why (the caller keeps the message in
//!   INBOX and logs it): an empty name or level (`a..b`, a leading or
//!   trailing separator), `.` or `..` as a level, `/` inside a level when
//!   `.` is the separator, control characters, the IMAP wildcards `*` and
//!   `%` (a folder so named could not be listed), and an on-disk name
//!   longer than 255 bytes.
//!
//! Only the named folder is made by `:create` (as Dovecot's `CREATE` does
//! with Maildir++: a parent that does not exist is shown by IMAP servers
//! as `\Noselect`); it is not subscribed (Dovecot's
//! `lda_mailbox_autosubscribe` is off by default too).
//!
//! # Flags ([`maildir_info`], [`maildir_info_with`])
//!
//! The IMAP system flags map to Maildir info letters, in ASCII order after
//! `:2,` as Dovecot writes them (checked with `sieve-test`: `\Seen
//! \Flagged \Deleted $Label1` is stored as `cur/<name>:2,FSTa`): `\Draft` D, `\Flagged` F, `\Answered` R,
//! `\Seen` S, `\Deleted` T (case-insensitive, as IMAP compares flags). A
//! copy with at least one letter goes into `cur/` as
//! `<unique>,S=<size>:2,<letters>` (see
//! [`crate::maildir::TmpFile::set_info`]); without, into `new/`.
//! `\Recent` cannot be set by anyone and is ignored.
//!
//! Keywords (`$Label1`, `Junk`, ...) are letters `a`–`z` whose meaning each
//! Maildir records in Dovecot's `dovecot-keywords` file (lines
//! `<n> <keyword>`, letter `a` + n). A keyword that file already names is
//! stored with its letter ([`Keywords::read`]); any other keyword is
//! dropped and returned to the caller to note. We never write that file:
//! Dovecot rewrites it whole (a new file renamed over the old one under
//! its own dot-lock), so an append of ours could be lost under a concurrent
//! rewrite, and the letter we used would then mean nothing or, worse, a
//! keyword Dovecot assigns to it later; a mislabelled message is worse than
//! an unlabelled one. Joining Dovecot's dot-lock protocol exactly (its
//! stale-lock rules included) is left undone on purpose. Roundcube's
//! filter form only sets system flags.
//!
//! # The active script ([`active_script`])
//!
//! The account's home is the directory holding its Maildir ([`home_of`]).
//! The active script is `<home>/.dovecot.sieve`: ManageSieve's symlink to
//! `sieve/<name>.sieve`, or a regular file. The symlink is followed only
//! where it resolves beneath the home (`openat2` with `RESOLVE_BENEATH`
//! from the home's descriptor; without `openat2`, by hand: a relative
//! target without `..`, walked without following further symlinks). The
//! path to the home itself follows no symlink, as every Maildir path.
//! Missing (or a dangling symlink): no script. Not a regular file, or
//! larger than [`super::MAX_SCRIPT_SIZE`]: an error (the caller keeps the
//! message in INBOX and logs it).
//!
//! Cost without a script: one failed `openat2` (the home's path and
//! `.dovecot.sieve` resolved in one call beneath the mail root, symlinks
//! refused). Measured with `strace -f -e trace=%file,%desc` on the test
//! `store::tests::no_script_is_none`: the lookup made exactly one system
//! call, `openat2(…, "example.com/alice/.dovecot.sieve", …) = -1 ENOENT`.
//! With a script, the symlink costs three more (the home, the file
//! beneath it, `fstat`) and the reads.
//!
//! # The error log ([`log_error`])
//!
//! `<home>/.dovecot.sieve.log`, where Pigeonhole writes it and where
//! Roundcube and users look: one line per error, `<RFC 3339 UTC time>
//! <text>`, control characters blanked, at most 1000 bytes of text. Opened
//! without following a symlink, created 0600, appended with `O_APPEND` (a
//! line is one `write`, so concurrent deliveries do not interleave within
//! a line). Bounded: when a line would take it past [`LOG_LIMIT`] bytes,
//! the log is renamed to `.dovecot.sieve.log.old` (replacing the previous
//! one) and a new one begun; two deliveries rotating at once may lose an
//! old log, never the mail.

use crate::maildir::{MailRoot, Maildir, MaildirError, DIR_FLAGS};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fmt;
use std::time::SystemTime;

/// The hierarchy separator Dovecot uses by default with Maildir++.
pub const SEPARATOR: char = '.';

/// The active script's name in the home (ManageSieve's symlink).
pub const SCRIPT_LINK: &str = ".dovecot.sieve";

/// The error log's name in the home.
pub const LOG_FILE: &str = ".dovecot.sieve.log";

/// The previous log, after a rotation.
pub const LOG_FILE_OLD: &str = ".dovecot.sieve.log.old";

/// Largest the error log grows before it is rotated.
pub const LOG_LIMIT: u64 = 64 << 10;

/// Longest text of one log line, in bytes.
const LOG_LINE_MAX: usize = 1000;

/// Longest name of a directory entry (Linux `NAME_MAX`).
const NAME_MAX: usize = 255;

// ---------------------------------------------------------------------------
// IMAP modified UTF-7 (RFC 3501 section 5.1.3)

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b',' => Some(63),
        _ => None,
    }
}

/// Encode text in IMAP modified UTF-7: printable US-ASCII but `&` as
/// itself, `&` as `&-`, every run of other characters as `&`, the
/// modified base64 (`,` for `/`, no padding) of its UTF-16, and `-`.
pub fn encode_mutf7(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut units: Vec<u16> = Vec::new();
    let flush = |units: &mut Vec<u16>, out: &mut String| {
        if units.is_empty() {
            return;
        }
        out.push('&');
        let (mut acc, mut bits) = (0u32, 0u32);
        for u in units.drain(..) {
            acc = (acc << 16) | u32::from(u);
            bits += 16;
            while bits >= 6 {
                bits -= 6;
                out.push(char::from(B64[((acc >> bits) & 63) as usize]));
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(char::from(B64[((acc << (6 - bits)) & 63) as usize]));
        }
        out.push('-');
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut units, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut units, &mut out);
    out
}

/// Decode IMAP modified UTF-7, strictly: only printable US-ASCII outside
/// shifted runs, each run closed by `-`, no printable ASCII encoded inside
/// one, no unpaired surrogate, no non-zero leftover bits.
pub fn decode_mutf7(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(0x20..=0x7e).contains(&c) {
            return Err(format!("byte {c:#04x} is not printable US-ASCII"));
        }
        if c != b'&' {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let start = i + 1;
        let Some(len) = b[start..].iter().position(|&x| x == b'-') else {
            return Err("a '&' run is not closed by '-'".into());
        };
        let run = &b[start..start + len];
        i = start + len + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let (mut acc, mut bits) = (0u32, 0u32);
        let mut units: Vec<u16> = Vec::with_capacity(run.len() * 6 / 16);
        for &x in run {
            let v = b64_value(x)
                .ok_or_else(|| format!("{:?} is not modified base64", char::from(x)))?;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push(((acc >> bits) & 0xffff) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        if bits >= 6 || acc != 0 {
            return Err("a '&' run has leftover bits".into());
        }
        for r in char::decode_utf16(units.iter().copied()) {
            let c = r.map_err(|_| "a '&' run holds an unpaired surrogate".to_string())?;
            if (' '..='~').contains(&c) {
                return Err(format!("{c:?} is encoded though it is printable US-ASCII"));
            }
            out.push(c);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Folder names

/// The Maildir++ directory of the folder `name` (hierarchy separator `.`):
/// `Lists.rust` → `.Lists.rust`, `INBOX` → `""` (the Maildir itself). See
/// the module doc for the rules; the error says what is wrong with the
/// name.
pub fn folder_dir_name(name: &str) -> Result<String, String> {
    folder_dir_name_sep(name, SEPARATOR)
}

/// [`folder_dir_name`] with the namespace's separator, `.` or `/`.
pub fn folder_dir_name_sep(name: &str, sep: char) -> Result<String, String> {
    if sep != '.' && sep != '/' {
        return Err(format!("{sep:?} is not a supported hierarchy separator"));
    }
    let shown = || name.escape_debug().to_string();
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(String::new());
    }
    let mut rest = name;
    if let (Some(head), Some(tail)) = (name.get(..5), name.get(5..)) {
        if head.eq_ignore_ascii_case("INBOX") && tail.starts_with(sep) {
            rest = &tail[sep.len_utf8()..];
        }
    }
    if rest.is_empty() {
        return Err(format!("folder name \"{}\" is empty", shown()));
    }
    let mut dir = String::with_capacity(rest.len() + 8);
    for level in rest.split(sep) {
        let why = if level.is_empty() {
            Some("has an empty level (a leading, trailing or doubled separator)")
        } else if level == "." || level == ".." {
            Some("has a '.' or '..' level")
        } else if level.contains('/') {
            Some("contains '/' inside a level")
        } else if level.contains('.') {
            Some("contains '.' inside a level (Maildir++ cannot hold it)")
        } else if level.chars().any(char::is_control) {
            Some("contains a control character")
        } else if level.contains(['*', '%']) {
            Some("contains an IMAP wildcard ('*' or '%')")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(format!("folder name \"{}\" {why}", shown()));
        }
        dir.push('.');
        dir.push_str(&encode_mutf7(level));
    }
    if dir.len() > NAME_MAX {
        return Err(format!(
            "folder name \"{}\" is too long ({} bytes on disk, at most {NAME_MAX})",
            shown(),
            dir.len()
        ));
    }
    Ok(dir)
}

/// The folder name (separator `.`) of a Maildir++ directory name:
/// `.Entw&APw-rfe` → `Entwürfe`; `""` → `INBOX`.
pub fn folder_name_from_dir(dir: &str) -> Result<String, String> {
    if dir.is_empty() {
        return Ok("INBOX".to_string());
    }
    let Some(rest) = dir.strip_prefix('.') else {
        return Err(format!("{dir:?} is not a Maildir++ folder directory"));
    };
    let mut name = decode_mutf7(rest).map_err(|e| format!("{dir:?}: {e}"))?;
    // `.INBOX.x` is a folder `INBOX` beside the inbox: only the prefix
    // names it (a bare `INBOX.x` would be `.x`).
    let first = name.split(SEPARATOR).next().unwrap_or("");
    if first.eq_ignore_ascii_case("INBOX") {
        name = format!("INBOX{SEPARATOR}{name}");
    }
    // Whatever decodes must encode back to the same directory.
    match folder_dir_name(&name) {
        Ok(d) if d == dir => Ok(name),
        _ => Err(format!("{dir:?} is not a valid Maildir++ folder directory")),
    }
}

// ---------------------------------------------------------------------------
// Flags

/// The Maildir info letter of an IMAP system flag.
fn system_letter(flag: &str) -> Option<char> {
    const MAP: [(&str, char); 5] = [
        ("\\Draft", 'D'),
        ("\\Flagged", 'F'),
        ("\\Answered", 'R'),
        ("\\Seen", 'S'),
        ("\\Deleted", 'T'),
    ];
    MAP.iter()
        .find(|(f, _)| f.eq_ignore_ascii_case(flag))
        .map(|&(_, l)| l)
}

/// The Maildir info of a copy with these flags, system flags only:
/// `:2,` and the letters in ASCII order, or `""` when no flag maps to a
/// letter (the copy then goes into `new/`).
pub fn maildir_info(flags: &[String]) -> String {
    maildir_info_with(flags, &Keywords::default()).info
}

/// What [`maildir_info_with`] made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Info {
    /// `:2,<letters>`, or `""` for none (then `new/`).
    pub info: String,
    /// The flags that could not be stored (keywords the Maildir's
    /// `dovecot-keywords` does not name, unknown `\` flags), for the
    /// caller to note.
    pub dropped: Vec<String>,
}

/// The Maildir info of a copy with these flags, keywords included where
/// `keywords` (the target Maildir's `dovecot-keywords`) names them.
pub fn maildir_info_with(flags: &[String], keywords: &Keywords) -> Info {
    let mut letters: Vec<char> = Vec::new();
    let mut dropped = Vec::new();
    for f in flags {
        let letter = if f.starts_with('\\') {
            if f.eq_ignore_ascii_case("\\Recent") {
                continue;
            }
            system_letter(f)
        } else {
            keywords.letter(f)
        };
        match letter {
            Some(l) => letters.push(l),
            None => dropped.push(f.clone()),
        }
    }
    letters.sort_unstable();
    letters.dedup();
    let info = if letters.is_empty() {
        String::new()
    } else {
        let mut s = String::from(":2,");
        s.extend(letters);
        s
    };
    Info { info, dropped }
}

/// The keywords of one Maildir as Dovecot's `dovecot-keywords` names them:
/// letter `a` + n for the line `<n> <keyword>`, n in 0..26.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keywords {
    names: Vec<(char, String)>,
}

/// The keyword file's name in a Maildir.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// The most of `dovecot-keywords` read (26 short lines fit many times).
const KEYWORDS_MAX: usize = 64 << 10;

impl Keywords {
    /// Parse the file's text; malformed lines are skipped, the first line
    /// for a number wins.
    pub fn parse(text: &str) -> Keywords {
        let mut names: Vec<(char, String)> = Vec::new();
        for line in text.lines() {
            let Some((n, kw)) = line.split_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<u8>() else { continue };
            if n >= 26 || kw.is_empty() || kw.contains(char::is_whitespace) {
                continue;
            }
            let letter = char::from(b'a' + n);
            if names.iter().all(|(l, _)| *l != letter) {
                names.push((letter, kw.to_string()));
            }
        }
        Keywords { names }
    }

    /// The letter of `keyword`: an exact match first, else one ignoring
    /// ASCII case (IMAP compares keywords without case).
    pub fn letter(&self, keyword: &str) -> Option<char> {
        self.names
            .iter()
            .find(|(_, k)| k == keyword)
            .or_else(|| {
                self.names
                    .iter()
                    .find(|(_, k)| k.eq_ignore_ascii_case(keyword))
            })
            .map(|(l, _)| *l)
    }

    /// Read the Maildir's `dovecot-keywords` (no symlink followed);
    /// missing, or not a regular file: none. Only read, never written
    /// (see the module doc).
    pub fn read(md: &Maildir) -> Result<Keywords, MaildirError> {
        let dir = md.dir()?;
        let fd = match open_regular(dir.as_fd(), KEYWORDS_FILE, OFlags::NOFOLLOW) {
            Ok(Some(fd)) => fd,
            Ok(None) | Err(_) => return Ok(Keywords::default()),
        };
        let bytes = read_bounded(&fd, KEYWORDS_MAX).map_err(|e| MaildirError::Io {
            op: "read",
            path: format!("{}{KEYWORDS_FILE}", md.rel),
            errno: e,
        })?;
        Ok(Keywords::parse(&String::from_utf8_lossy(&bytes)))
    }
}

// ---------------------------------------------------------------------------
// Storing into a folder

/// Why a `fileinto` could not go to its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The name is not a valid folder name: keep in INBOX, log.
    BadName(String),
    /// The folder does not exist and may not be created: keep in INBOX,
    /// log (Pigeonhole's default).
    Missing(String),
    /// The folder is a symlink, is not a directory, or the mail user may
    /// not open it: keep in INBOX, log.
    Unsafe(MaildirError),
    /// A system call failed: the delivery defers (or whatever the outcome
    /// table decides for the errno).
    Maildir(MaildirError),
}

impl StoreError {
    /// Whether the caller keeps the message in INBOX (and logs this)
    /// instead of failing the delivery.
    pub fn falls_back_to_inbox(&self) -> bool {
        !matches!(self, StoreError::Maildir(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::BadName(why) => f.write_str(why),
            StoreError::Missing(name) => write!(
                f,
                "folder \"{}\" does not exist (fileinto :create makes it)",
                name.escape_debug()
            ),
            StoreError::Unsafe(e) | StoreError::Maildir(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Where a copy goes.
#[derive(Debug)]
pub enum Target {
    /// The Maildir itself.
    Inbox,
    /// A Maildir++ folder of it.
    Folder(Maildir),
}

/// Open the folder `name` (as the script gives it, separator `sep`) of
/// the account's Maildir `inbox`, creating it when `create`. Then write
/// the copy as any other: [`crate::maildir::TmpFile`], with
/// [`crate::maildir::TmpFile::set_info`] for flags, and
/// [`crate::maildir::commit_all`].
pub fn open_folder(
    inbox: &Maildir,
    name: &str,
    sep: char,
    create: bool,
) -> Result<Target, StoreError> {
    let dir = folder_dir_name_sep(name, sep).map_err(StoreError::BadName)?;
    if dir.is_empty() {
        return Ok(Target::Inbox);
    }
    match inbox.sieve_folder(&dir, create) {
        Ok(Some(md)) => Ok(Target::Folder(md)),
        Ok(None) => Err(StoreError::Missing(name.to_string())),
        Err(e @ MaildirError::Escape { .. }) => Err(StoreError::Unsafe(e)),
        // A folder the mail user may not enter (made by an admin as root):
        // the user's problem to see in the log, not a reason to hold the
        // message back; the copy goes to INBOX.
        Err(e) if matches!(e.errno(), Some(Errno::ACCESS | Errno::PERM)) => {
            Err(StoreError::Unsafe(e))
        }
        Err(e) => Err(StoreError::Maildir(e)),
    }
}

/// Whether the folder `name` exists (RFC 5490 `mailboxexists`): INBOX
/// always; an invalid name never.
pub fn folder_exists(inbox: &Maildir, name: &str, sep: char) -> Result<bool, MaildirError> {
    let Ok(dir) = folder_dir_name_sep(name, sep) else {
        return Ok(false);
    };
    if dir.is_empty() {
        return Ok(true);
    }
    match inbox.sieve_folder(&dir, false) {
        Ok(found) => Ok(found.is_some()),
        Err(MaildirError::Escape { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------
// The active script

/// The account's home from its Maildir path (relative to the mail root):
/// the directory holding it, when the Maildir's own directory is named
/// `Maildir` (`example.com/alice/Maildir/` → `example.com/alice`). For
/// any other layout `None` (no script is looked for): a home taken as the
/// parent of `example.com/alice/` would be the domain's directory, shared
/// by every account.
pub fn home_of(maildir_rel: &str) -> Option<String> {
    let comps = crate::maildir::maildir_components(maildir_rel).ok()?;
    let (last, parent) = comps.split_last()?;
    (*last == "Maildir" && !parent.is_empty()).then(|| parent.join("/"))
}

/// The account's active script, `<home>/.dovecot.sieve` (`home` relative
/// to the mail root): `Ok(None)` when there is none. See the module doc.
pub fn active_script(root: &MailRoot, home: &str) -> Result<Option<Vec<u8>>, String> {
    let comps = crate::maildir::path_components(home)
        .map_err(|why| format!("home {home:?} is not beneath the mail root: {why}"))?;
    if comps.is_empty() {
        return Err(format!("home {home:?} is the mail root itself"));
    }
    let path = format!("{}/{SCRIPT_LINK}", comps.join("/"));
    // The common case, no script: one call, the whole path beneath the
    // root, no symlink followed.
    let r = retry(|| {
        rfs::openat2(
            root.as_fd(),
            path.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
    });
    match r {
        Ok(fd) => return read_script(&fd, &path).map(Some),
        Err(Errno::NOENT) => return Ok(None),
        // A symlink (the script's, or one on the way to the home, which
        // opening the home refuses below); or no openat2.
        Err(Errno::LOOP | Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => {}
        Err(Errno::NOTDIR) => return Err(format!("{path}: a component is not a directory")),
        Err(Errno::XDEV) => return Err(format!("{path}: it crosses out of the mail root")),
        Err(e) => return Err(format!("open {path}: {e}")),
    }
    let home_fd = match root.open_dir(home) {
        Ok(fd) => fd,
        Err(MaildirError::Io {
            errno: Errno::NOENT,
            ..
        }) => return Ok(None),
        Err(e) => return Err(format!("home: {e}")),
    };
    active_script_at(home_fd.as_fd())
}

/// The active script of the home opened as `home` (for `vmailctl`, and
/// the delivery when the script is a symlink).
pub fn active_script_at(home: BorrowedFd<'_>) -> Result<Option<Vec<u8>>, String> {
    let r = retry(|| {
        rfs::openat2(
            home,
            SCRIPT_LINK,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    });
    match r {
        Ok(fd) => read_script(&fd, SCRIPT_LINK).map(Some),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::XDEV) => Err(format!(
            "{SCRIPT_LINK} points outside the home; not followed"
        )),
        Err(Errno::LOOP) => Err(format!("{SCRIPT_LINK}: too many symlinks")),
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::AGAIN) => by_hand(home),
        Err(e) => Err(format!("open {SCRIPT_LINK}: {e}")),
    }
}

/// The script `NAME` of the home opened as `home` (`include :personal`):
/// `sieve/NAME.sieve`, opened without following any symlink. `Ok(None)`
/// when there is none.
pub fn personal_script(home: BorrowedFd<'_>, name: &str) -> Result<Option<Vec<u8>>, String> {
    if name.is_empty() || name.contains(['/', '\0']) || name.starts_with('.') {
        return Err(format!("include {name:?}: not a script name"));
    }
    let dir = match retry(|| rfs::openat(home, "sieve", DIR_FLAGS, Mode::empty())) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(Errno::LOOP) => return Err("sieve/ is a symlink; not followed".into()),
        Err(e) => return Err(format!("open sieve/: {e}")),
    };
    let file = format!("{name}.sieve");
    match open_regular_or_link(dir.as_fd(), &file)? {
        Opened::Missing => Ok(None),
        Opened::File(fd) => read_script(&fd, &format!("sieve/{file}")).map(Some),
        Opened::Link => Err(format!("sieve/{file} is a symlink; not followed")),
    }
}

/// Resolving `.dovecot.sieve` without `openat2`: a regular file, or a
/// symlink with a relative target free of `..`, walked without following
/// any further symlink.
fn by_hand(home: BorrowedFd<'_>) -> Result<Option<Vec<u8>>, String> {
    match open_regular_or_link(home, SCRIPT_LINK)? {
        Opened::Missing => return Ok(None),
        Opened::File(fd) => return read_script(&fd, SCRIPT_LINK).map(Some),
        Opened::Link => {}
    }
    let target = match retry(|| rfs::readlinkat(home, SCRIPT_LINK, Vec::new())) {
        Ok(t) => t.into_string().map_err(|_| {
            format!("{SCRIPT_LINK} points to a name that is not UTF-8; not followed")
        })?,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(format!("readlink {SCRIPT_LINK}: {e}")),
    };
    let comps = crate::maildir::path_components(&target)
        .map_err(|why| format!("{SCRIPT_LINK} points outside the home ({why}); not followed"))?;
    let Some((file, dirs)) = comps.split_last() else {
        return Err(format!("{SCRIPT_LINK} points to the home itself"));
    };
    let mut cur: Option<OwnedFd> = None;
    for d in dirs {
        let at = cur.as_ref().map_or(home, |f| f.as_fd());
        match retry(|| rfs::openat(at, *d, DIR_FLAGS, Mode::empty())) {
            Ok(fd) => cur = Some(fd),
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(format!("{SCRIPT_LINK} -> {target}: goes through a symlink"))
            }
            Err(e) => return Err(format!("open {target}: {e}")),
        }
    }
    let at = cur.as_ref().map_or(home, |f| f.as_fd());
    match open_regular_or_link(at, file)? {
        Opened::Missing => Ok(None),
        Opened::File(fd) => read_script(&fd, &target).map(Some),
        Opened::Link => Err(format!("{SCRIPT_LINK} -> {target}: goes through a symlink")),
    }
}

enum Opened {
    Missing,
    File(OwnedFd),
    Link,
}

fn open_regular_or_link(dir: BorrowedFd<'_>, name: &str) -> Result<Opened, String> {
    match retry(|| {
        rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }) {
        Ok(fd) => Ok(Opened::File(fd)),
        Err(Errno::NOENT) => Ok(Opened::Missing),
        Err(Errno::LOOP) => Ok(Opened::Link),
        Err(e) => Err(format!("open {name}: {e}")),
    }
}

/// Read a script: a regular file of at most [`super::MAX_SCRIPT_SIZE`]
/// bytes.
fn read_script(fd: &OwnedFd, shown: &str) -> Result<Vec<u8>, String> {
    let max = super::MAX_SCRIPT_SIZE;
    let st = rfs::fstat(fd).map_err(|e| format!("stat {shown}: {e}"))?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Err(format!("{shown} is not a regular file"));
    }
    let too_large = || format!("{shown} is larger than {max} bytes");
    if u64::try_from(st.st_size).unwrap_or(u64::MAX) > max as u64 {
        return Err(too_large());
    }
    let bytes = read_bounded(fd, max + 1).map_err(|e| format!("read {shown}: {e}"))?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Read at most `max` bytes (to end of file).
fn read_bounded(fd: &OwnedFd, max: usize) -> rustix::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    while out.len() < max {
        let want = buf.len().min(max - out.len());
        let n = retry(|| rustix::io::read(fd, &mut buf[..want]))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

/// Open `dir/name` as a regular file without following a symlink;
/// `Ok(None)` when missing.
fn open_regular(
    dir: BorrowedFd<'_>,
    name: &str,
    extra: OFlags,
) -> rustix::io::Result<Option<OwnedFd>> {
    let fd = match retry(|| {
        rfs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | extra,
            Mode::empty(),
        )
    }) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = rfs::fstat(&fd)?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
        return Ok(None);
    }
    Ok(Some(fd))
}

fn retry<T>(f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    crate::maildir::retry(f)
}

// ---------------------------------------------------------------------------
// The error log

/// Append `line` to `<home>/.dovecot.sieve.log` (`home` relative to the
/// mail root). See the module doc.
pub fn log_error(root: &MailRoot, home: &str, line: &str) -> Result<(), String> {
    let fd = root.open_dir(home).map_err(|e| format!("home: {e}"))?;
    log_error_at(fd.as_fd(), line, SystemTime::now())
}

/// [`log_error`] in the home opened as `home`, at time `now`.
pub fn log_error_at(home: BorrowedFd<'_>, line: &str, now: SystemTime) -> Result<(), String> {
    let mut text: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() > LOG_LINE_MAX {
        let mut cut = LOG_LINE_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let entry = format!("{} {text}\n", humantime::format_rfc3339_seconds(now));
    let open = || {
        retry(|| {
            rfs::openat(
                home,
                LOG_FILE,
                OFlags::WRONLY
                    | OFlags::APPEND
                    | OFlags::CREATE
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })
        .map_err(|e| format!("open {LOG_FILE}: {e}"))
    };
    let size_of = |fd: &OwnedFd| -> Result<u64, String> {
        let st = rfs::fstat(fd).map_err(|e| format!("stat {LOG_FILE}: {e}"))?;
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            return Err(format!("{LOG_FILE} is not a regular file"));
        }
        Ok(u64::try_from(st.st_size).unwrap_or(u64::MAX))
    };
    let mut fd = open()?;
    if size_of(&fd)? + entry.len() as u64 > LOG_LIMIT {
        match retry(|| rfs::renameat(home, LOG_FILE, home, LOG_FILE_OLD)) {
            // Another delivery rotated it first.
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(format!("rename {LOG_FILE}: {e}")),
        }
        fd = open()?;
        size_of(&fd)?;
    }
    let mut buf = entry.as_bytes();
    while !buf.is_empty() {
        match retry(|| rustix::io::write(&fd, buf)) {
            Ok(0) => return Err(format!("write {LOG_FILE}: {}", Errno::IO)),
            Ok(n) => buf = &buf[n..],
            Err(e) => return Err(format!("write {LOG_FILE}: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::{commit_all, Fds, Namer, TmpFile};
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;

    // --- modified UTF-7 -------------------------------------------------

    /// Vectors derived by hand from RFC 3501 5.1.3 (UTF-16BE, base64 with
    /// `,` for `/`, no padding), two of them the RFC's own example.
    const VECTORS: &[(&str, &str)] = &[
        ("INBOX", "INBOX"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("&", "&-"),
        ("A&B", "A&-B"),
        ("台北", "&U,BTFw-"),
        ("日本語", "&ZeVnLIqe-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        // U+1F600: the surrogate pair D83D DE00.
        ("😀", "&2D3eAA-"),
        ("ü😀x", "&APzYPd4A-x"),
        ("ééé", "&AOkA6QDp-"),
        ("Ünïcödé & co", "&ANw-n&AO8-c&APY-d&AOk- &- co"),
        ("", ""),
    ];

    #[test]
    fn mutf7_known_vectors() {
        for (plain, encoded) in VECTORS {
            assert_eq!(encode_mutf7(plain), *encoded, "encode {plain}");
            assert_eq!(
                decode_mutf7(encoded).as_deref(),
                Ok(*plain),
                "decode {encoded}"
            );
        }
    }

    #[test]
    fn mutf7_round_trips() {
        let samples = [
            "Gesendete Objekte",
            "Корзина",
            "迷惑メール",
            "a&b&&c",
            "🎉🎉 party 🎉",
            "\u{FFFD}\u{10FFFF}\u{80}",
            "mixed ASCII ünd ünicode",
        ];
        for s in samples {
            let e = encode_mutf7(s);
            assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{e}");
            assert_eq!(decode_mutf7(&e).as_deref(), Ok(s), "{s} via {e}");
        }
        // Every character class, one at a time.
        for c in [
            '\u{7f}',
            '\u{a0}',
            '\u{7ff}',
            '\u{800}',
            '\u{ffff}',
            '\u{10000}',
        ] {
            let s = format!("x{c}y");
            assert_eq!(decode_mutf7(&encode_mutf7(&s)), Ok(s));
        }
    }

    #[test]
    fn mutf7_decoder_is_strict() {
        for bad in [
            "&",       // not closed
            "&APw",    // not closed
            "&AP!-",   // not base64
            "&APx-",   // leftover bits not zero
            "&AGE-",   // encodes 'a', printable ASCII
            "&2D0-",   // a lone high surrogate
            "&3gA-",   // a lone low surrogate
            "a\u{e9}", // raw non-ASCII
            "a\tb",    // raw control
        ] {
            assert!(decode_mutf7(bad).is_err(), "{bad:?} accepted");
        }
    }

    // --- folder names ---------------------------------------------------

    #[test]
    fn folder_dirs() {
        for (name, dir) in [
            ("INBOX", ""),
            ("inbox", ""),
            ("Lists", ".Lists"),
            ("Lists.rust", ".Lists.rust"),
            ("INBOX.Lists.rust", ".Lists.rust"),
            ("Inbox.Sent", ".Sent"),
            ("INBOX.INBOX", ".INBOX"),
            ("INBOXES", ".INBOXES"),
            ("Entwürfe", ".Entw&APw-rfe"),
            ("Archiv.2024.Entwürfe", ".Archiv.2024.Entw&APw-rfe"),
            ("Tom & Jerry", ".Tom &- Jerry"),
            ("日本語", ".&ZeVnLIqe-"),
        ] {
            assert_eq!(folder_dir_name(name).as_deref(), Ok(dir), "{name}");
            assert_eq!(
                folder_name_from_dir(dir).map(|n| folder_dir_name(&n)),
                Ok(Ok(dir.to_string()))
            );
        }
        assert_eq!(
            folder_name_from_dir(".Entw&APw-rfe").as_deref(),
            Ok("Entwürfe")
        );
        assert_eq!(folder_name_from_dir("").as_deref(), Ok("INBOX"));
        assert_eq!(
            folder_name_from_dir(".inbox.x").as_deref(),
            Ok("INBOX.inbox.x")
        );
        assert!(folder_name_from_dir("Lists").is_err());
        assert!(folder_name_from_dir(".a..b").is_err());
    }

    #[test]
    fn folder_dirs_with_slash_separator() {
        for (name, dir) in [
            ("Lists/rust", ".Lists.rust"),
            ("INBOX/Sent", ".Sent"),
            ("INBOX", ""),
            ("Entwürfe/Alt", ".Entw&APw-rfe.Alt"),
        ] {
            assert_eq!(folder_dir_name_sep(name, '/').as_deref(), Ok(dir), "{name}");
        }
        for bad in ["a.b", "a//b", "/a", "a/", "../x", ".hidden", "a/./b"] {
            assert!(folder_dir_name_sep(bad, '/').is_err(), "{bad} accepted");
        }
        assert!(folder_dir_name_sep("a", '\\').is_err());
    }

    #[test]
    fn bad_folder_names_are_refused_with_a_reason() {
        for (bad, why) in [
            ("", "is empty"),
            ("INBOX.", "is empty"),
            ("..", "empty level"),
            ("a..b", "empty level"),
            (".hidden", "empty level"),
            ("trailing.", "empty level"),
            ("../../etc", "empty level"),
            ("a/b", "'/'"),
            ("../other", "empty level"),
            ("Lists/rust", "'/'"),
            ("a\nb", "control"),
            ("a\u{7f}", "control"),
            ("a\0", "control"),
            ("*", "wildcard"),
            ("50%", "wildcard"),
        ] {
            let e = folder_dir_name(bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = "ü".repeat(100);
        assert!(folder_dir_name(&long)
            .expect_err("long")
            .contains("too long"));
        // Exactly at the limit is fine: 254 ASCII bytes after the dot.
        assert_eq!(folder_dir_name(&"x".repeat(254)).map(|d| d.len()), Ok(255));
    }

    // --- flags ----------------------------------------------------------

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn system_flags_to_info() {
        assert_eq!(maildir_info(&[]), "");
        assert_eq!(maildir_info(&s(&["\\Seen"])), ":2,S");
        assert_eq!(
            maildir_info(&s(&[
                "\\Seen",
                "\\Deleted",
                "\\Answered",
                "\\Flagged",
                "\\Draft"
            ])),
            ":2,DFRST"
        );
        assert_eq!(
            maildir_info(&s(&["\\seen", "\\FLAGGED", "\\Seen"])),
            ":2,FS"
        );
        assert_eq!(maildir_info(&s(&["\\Recent"])), "");
        assert_eq!(maildir_info(&s(&["$Label1", "Junk"])), "");
    }

    #[test]
    fn keywords_from_dovecot_keywords() {
        let kw = Keywords::parse("0 $Label1\n1 Junk\nbad line\n30 Far\n1 Dup\n3 $Forwarded\n");
        assert_eq!(kw.letter("$Label1"), Some('a'));
        assert_eq!(kw.letter("junk"), Some('b'));
        assert_eq!(kw.letter("$Forwarded"), Some('d'));
        assert_eq!(kw.letter("Far"), None);
        assert_eq!(kw.letter("Dup"), None);
        let got = maildir_info_with(
            &s(&["Junk", "\\Seen", "$Label1", "NonJunk", "\\Bogus"]),
            &kw,
        );
        assert_eq!(got.info, ":2,Sab");
        assert_eq!(got.dropped, s(&["NonJunk", "\\Bogus"]));
        let got = maildir_info_with(&s(&["NonJunk"]), &kw);
        assert_eq!(
            got,
            Info {
                info: String::new(),
                dropped: s(&["NonJunk"])
            }
        );
    }

    // --- the filesystem ---------------------------------------------------

    struct Mailbox {
        dir: tempfile::TempDir,
        root: MailRoot,
    }

    const MD: &str = "example.com/alice/Maildir/";
    const HOME: &str = "example.com/alice";

    fn mailbox() -> Mailbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = MailRoot::open(dir.path()).expect("root");
        Mailbox { dir, root }
    }

    impl Mailbox {
        fn path(&self, rel: &str) -> std::path::PathBuf {
            self.dir.path().join(rel)
        }
        fn inbox(&self, fds: Fds) -> Maildir {
            self.root.open_maildir(MD, &[], fds).expect("maildir")
        }
    }

    fn names_in(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        v.sort();
        v
    }

    fn store(md: &Maildir, body: &[u8], info: &str) -> String {
        let mut namer = Namer::new();
        let mut t = TmpFile::create(md, &mut namer).expect("tmp");
        t.write_all(body).expect("write");
        t.set_info(info).expect("info");
        let mut names = commit_all(vec![t], &mut namer).expect("commit");
        names.pop().expect("one name")
    }

    #[test]
    fn fileinto_missing_folder_without_create_falls_back() {
        let m = mailbox();
        let inbox = m.inbox(Fds::Kept);
        let e = open_folder(&inbox, "Lists.rust", '.', false).expect_err("missing");
        assert!(matches!(e, StoreError::Missing(_)), "{e:?}");
        assert!(e.falls_back_to_inbox());
        assert!(!m.path(&format!("{MD}.Lists.rust")).exists());
        assert_eq!(folder_exists(&inbox, "Lists.rust", '.'), Ok(false));
        assert_eq!(folder_exists(&inbox, "INBOX", '.'), Ok(true));
        let e = open_folder(&inbox, "a..b", '.', true).expect_err("bad name");
        assert!(matches!(e, StoreError::BadName(_)) && e.falls_back_to_inbox());
        assert!(matches!(
            open_folder(&inbox, "inbox", '.', false),
            Ok(Target::Inbox)
        ));
    }

    #[test]
    fn fileinto_create_with_flags_goes_to_cur() {
        for fds in [Fds::Kept, Fds::Reopened] {
            let m = mailbox();
            let inbox = m.inbox(fds);
            let Target::Folder(f) =
                open_folder(&inbox, "INBOX.Entwürfe", '.', true).expect("create")
            else {
                panic!("not a folder")
            };
            let fdir = m.path(&format!("{MD}.Entw&APw-rfe"));
            assert_eq!(names_in(&fdir), s(&["cur", "maildirfolder", "new", "tmp"]));
            let mode = std::fs::metadata(&fdir).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
            assert_eq!(f.rel, format!("{MD}.Entw&APw-rfe/"));

            let info = maildir_info(&s(&["\\Seen", "\\Flagged"]));
            let name = store(&f, b"Subject: x\r\n\r\nhi\r\n", &info);
            assert!(name.ends_with(",S=18:2,FS"), "{name}");
            assert_eq!(names_in(&fdir.join("cur")), vec![name.clone()]);
            assert!(names_in(&fdir.join("new")).is_empty());
            assert!(names_in(&fdir.join("tmp")).is_empty());
            assert_eq!(
                std::fs::read(fdir.join("cur").join(&name)).expect("read"),
                b"Subject: x\r\n\r\nhi\r\n"
            );

            // Without flags: new/, as always.
            let plain = store(&f, b"x", "");
            assert_eq!(names_in(&fdir.join("new")), vec![plain]);

            // Now it exists: found without :create.
            assert!(matches!(
                open_folder(&inbox, "Entwürfe", '.', false),
                Ok(Target::Folder(_))
            ));
            assert_eq!(folder_exists(&inbox, "Entwürfe", '.'), Ok(true));
            // IMAP names are case-sensitive: "entwürfe" is another folder.
            assert!(matches!(
                open_folder(&inbox, "entwürfe", '.', false),
                Err(StoreError::Missing(_))
            ));
        }
    }

    #[test]
    fn flags_into_the_inbox_go_to_its_cur() {
        let m = mailbox();
        let inbox = m.inbox(Fds::Kept);
        let name = store(&inbox, b"abc", ":2,S");
        assert_eq!(names_in(&m.path(&format!("{MD}cur"))), vec![name]);
        assert!(names_in(&m.path(&format!("{MD}new"))).is_empty());
        let mut namer = Namer::new();
        let mut t = TmpFile::create(&inbox, &mut namer).expect("tmp");
        for bad in [":2,SF", "S", ":2,S/", ":1,S", ":2,SS"] {
            assert!(t.set_info(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_commit_with_and_without_flags() {
        // A fan-out of one message: INBOX unflagged, a folder flagged,
        // the INBOX again flagged (fileinto :copy "INBOX" :flags).
        let m = mailbox();
        let inbox = m.inbox(Fds::Reopened);
        let Ok(Target::Folder(f)) = open_folder(&inbox, "Lists", '.', true) else {
            panic!("no folder")
        };
        let mut namer = Namer::new();
        let mut first = TmpFile::create(&inbox, &mut namer).expect("tmp");
        first.write_all(b"body").expect("write");
        first.sync().expect("sync");
        let mut second = first.link_into(&f, &mut namer).expect("link");
        second.set_info(":2,S").expect("info");
        let mut third = first.link_into(&inbox, &mut namer).expect("link");
        third.set_info(":2,F").expect("info");
        let names = commit_all(vec![first, second, third], &mut namer).expect("commit");
        assert_eq!(names.len(), 3);
        assert_eq!(
            names_in(&m.path(&format!("{MD}new"))),
            vec![names[0].clone()]
        );
        assert_eq!(
            names_in(&m.path(&format!("{MD}.Lists/cur"))),
            vec![names[1].clone()]
        );
        assert_eq!(
            names_in(&m.path(&format!("{MD}cur"))),
            vec![names[2].clone()]
        );
        assert!(names[1].ends_with(",S=4:2,S") && names[2].ends_with(",S=4:2,F"));
        assert!(names_in(&m.path(&format!("{MD}tmp"))).is_empty());
        assert!(names_in(&m.path(&format!("{MD}.Lists/tmp"))).is_empty());
    }

    #[test]
    fn half_made_folder_is_finished_only_with_create() {
        let m = mailbox();
        let inbox = m.inbox(Fds::Kept);
        std::fs::create_dir_all(m.path(&format!("{MD}.Half/new"))).expect("mkdir");
        assert!(matches!(
            open_folder(&inbox, "Half", '.', false),
            Err(StoreError::Missing(_))
        ));
        assert!(matches!(
            open_folder(&inbox, "Half", '.', true),
            Ok(Target::Folder(_))
        ));
        assert_eq!(
            names_in(&m.path(&format!("{MD}.Half"))),
            s(&["cur", "maildirfolder", "new", "tmp"])
        );
    }

    #[test]
    fn symlinked_folder_is_refused() {
        let m = mailbox();
        let inbox = m.inbox(Fds::Kept);
        std::fs::create_dir_all(m.path("elsewhere/tmp")).expect("mkdir");
        std::fs::create_dir_all(m.path("elsewhere/new")).expect("mkdir");
        symlink(m.path("elsewhere"), m.path(&format!("{MD}.Evil"))).expect("symlink");
        for create in [false, true] {
            let e = open_folder(&inbox, "Evil", '.', create).expect_err("symlink");
            assert!(matches!(e, StoreError::Unsafe(_)), "{e:?}");
            assert!(e.falls_back_to_inbox());
        }
        assert_eq!(folder_exists(&inbox, "Evil", '.'), Ok(false));
        assert!(names_in(&m.path("elsewhere/new")).is_empty());
    }

    #[test]
    fn two_threads_create_the_same_folder() {
        for _ in 0..20 {
            let m = mailbox();
            let inbox = m.inbox(Fds::Kept);
            drop(inbox);
            let results: Vec<Result<String, String>> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..4)
                    .map(|i| {
                        let root = &m.root;
                        sc.spawn(move || {
                            let inbox = root
                                .open_maildir(MD, &[], Fds::Kept)
                                .map_err(|e| e.to_string())?;
                            match open_folder(&inbox, "Lists.rust", '.', true) {
                                Ok(Target::Folder(f)) => {
                                    Ok(store(&f, format!("m{i}").as_bytes(), ""))
                                }
                                Ok(Target::Inbox) => Err("inbox".to_string()),
                                Err(e) => Err(e.to_string()),
                            }
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().expect("thread")).collect()
            });
            for r in &results {
                assert!(r.is_ok(), "{r:?}");
            }
            assert_eq!(names_in(&m.path(&format!("{MD}.Lists.rust/new"))).len(), 4);
        }
    }

    #[test]
    fn keywords_file_is_read_not_written() {
        let m = mailbox();
        let inbox = m.inbox(Fds::Kept);
        let kwpath = m.path(&format!("{MD}dovecot-keywords"));
        assert_eq!(Keywords::read(&inbox), Ok(Keywords::default()));
        std::fs::write(&kwpath, "0 $Label1\n1 Junk\n").expect("write");
        let kw = Keywords::read(&inbox).expect("read");
        let got = maildir_info_with(&s(&["Junk", "\\Answered", "New"]), &kw);
        assert_eq!(got.info, ":2,Rb");
        assert_eq!(got.dropped, s(&["New"]));
        assert_eq!(
            std::fs::read_to_string(&kwpath).expect("read"),
            "0 $Label1\n1 Junk\n"
        );
        // A symlinked keywords file is not read.
        std::fs::remove_file(&kwpath).expect("rm");
        std::fs::write(m.path("kw"), "0 Junk\n").expect("write");
        symlink(m.path("kw"), &kwpath).expect("symlink");
        assert_eq!(Keywords::read(&inbox), Ok(Keywords::default()));
    }

    // --- the active script --------------------------------------------------

    fn home_with_script(m: &Mailbox) -> std::path::PathBuf {
        let home = m.path(HOME);
        std::fs::create_dir_all(home.join("sieve")).expect("mkdir");
        std::fs::create_dir_all(home.join("Maildir")).expect("mkdir");
        std::fs::write(home.join("sieve/roundcube.sieve"), b"keep;\r\n").expect("write");
        home
    }

    #[test]
    fn home_of_default_layout() {
        assert_eq!(
            home_of("example.com/alice/Maildir/").as_deref(),
            Some("example.com/alice")
        );
        assert_eq!(
            home_of("./example.com//alice/Maildir").as_deref(),
            Some("example.com/alice")
        );
        assert_eq!(home_of("example.com/alice/"), None);
        assert_eq!(home_of("Maildir/"), None);
        assert_eq!(home_of("../x/Maildir/"), None);
    }

    #[test]
    fn no_script_is_none() {
        let m = mailbox();
        assert_eq!(active_script(&m.root, HOME), Ok(None));
        std::fs::create_dir_all(m.path(HOME)).expect("mkdir");
        assert_eq!(active_script(&m.root, HOME), Ok(None));
        // A dangling symlink: no script either.
        symlink(
            "sieve/gone.sieve",
            m.path(&format!("{HOME}/.dovecot.sieve")),
        )
        .expect("symlink");
        assert_eq!(active_script(&m.root, HOME), Ok(None));
    }

    #[test]
    fn managesieve_symlink_is_followed_beneath_the_home() {
        let m = mailbox();
        let home = home_with_script(&m);
        symlink("sieve/roundcube.sieve", home.join(".dovecot.sieve")).expect("symlink");
        assert_eq!(
            active_script(&m.root, HOME),
            Ok(Some(b"keep;\r\n".to_vec()))
        );
        let fd = m.root.open_dir(HOME).expect("home");
        assert_eq!(by_hand(fd.as_fd()), Ok(Some(b"keep;\r\n".to_vec())));
        // ./sieve/../sieve/x stays beneath: openat2 allows it, the walk by
        // hand (stricter) refuses any "..".
        std::fs::remove_file(home.join(".dovecot.sieve")).expect("rm");
        symlink(
            "./sieve/../sieve/roundcube.sieve",
            home.join(".dovecot.sieve"),
        )
        .expect("symlink");
        assert_eq!(
            active_script(&m.root, HOME),
            Ok(Some(b"keep;\r\n".to_vec()))
        );
        assert!(by_hand(fd.as_fd()).is_err());
    }

    #[test]
    fn regular_script_file_is_read() {
        let m = mailbox();
        let home = home_with_script(&m);
        std::fs::write(home.join(".dovecot.sieve"), b"discard;").expect("write");
        assert_eq!(active_script(&m.root, HOME), Ok(Some(b"discard;".to_vec())));
        let fd = m.root.open_dir(HOME).expect("home");
        assert_eq!(by_hand(fd.as_fd()), Ok(Some(b"discard;".to_vec())));
    }

    #[test]
    fn symlinks_out_of_the_home_are_refused() {
        let m = mailbox();
        let home = home_with_script(&m);
        std::fs::create_dir_all(m.path("example.com/bob/sieve")).expect("mkdir");
        std::fs::write(
            m.path("example.com/bob/sieve/x.sieve"),
            b"redirect \"x@y\";",
        )
        .expect("write");
        let abs = m.path("example.com/bob/sieve/x.sieve");
        let fd = m.root.open_dir(HOME).expect("home");
        for target in [
            Path::new("../bob/sieve/x.sieve"),
            abs.as_path(),
            Path::new("/etc/passwd"),
            Path::new("sieve/../../bob/sieve/x.sieve"),
        ] {
            let _ = std::fs::remove_file(home.join(".dovecot.sieve"));
            symlink(target, home.join(".dovecot.sieve")).expect("symlink");
            let e = active_script(&m.root, HOME).expect_err("escape");
            assert!(e.contains("outside the home"), "{target:?}: {e}");
            let e = by_hand(fd.as_fd()).expect_err("escape by hand");
            assert!(e.contains("outside the home"), "{target:?}: {e}");
        }
        // A symlink inside sieve/ pointing out is refused as well.
        std::fs::remove_file(home.join(".dovecot.sieve")).expect("rm");
        symlink(&abs, home.join("sieve/evil.sieve")).expect("symlink");
        symlink("sieve/evil.sieve", home.join(".dovecot.sieve")).expect("symlink");
        assert!(active_script(&m.root, HOME).is_err());
        assert!(by_hand(fd.as_fd()).is_err());
    }

    #[test]
    fn home_through_a_symlink_is_refused() {
        let m = mailbox();
        home_with_script(&m);
        std::fs::write(m.path(&format!("{HOME}/.dovecot.sieve")), b"keep;").expect("write");
        symlink(m.path("example.com"), m.path("other.example")).expect("symlink");
        assert!(active_script(&m.root, "other.example/alice").is_err());
        assert!(active_script(&m.root, "../x").is_err());
        assert!(active_script(&m.root, "").is_err());
    }

    #[test]
    fn oversized_or_odd_scripts_are_errors() {
        let m = mailbox();
        let home = home_with_script(&m);
        let big = vec![b'#'; crate::sieve::MAX_SCRIPT_SIZE + 1];
        std::fs::write(home.join("sieve/big.sieve"), &big).expect("write");
        symlink("sieve/big.sieve", home.join(".dovecot.sieve")).expect("symlink");
        let e = active_script(&m.root, HOME).expect_err("big");
        assert!(e.contains("larger than"), "{e}");
        // Exactly the limit is fine.
        std::fs::write(home.join("sieve/big.sieve"), &big[1..]).expect("write");
        assert_eq!(
            active_script(&m.root, HOME).map(|s| s.map(|v| v.len())),
            Ok(Some(big.len() - 1))
        );
        // A directory is not a script.
        std::fs::remove_file(home.join(".dovecot.sieve")).expect("rm");
        std::fs::create_dir(home.join(".dovecot.sieve")).expect("mkdir");
        let e = active_script(&m.root, HOME).expect_err("dir");
        assert!(e.contains("not a regular file"), "{e}");
        // A FIFO neither (and opening it does not block).
        std::fs::remove_dir(home.join(".dovecot.sieve")).expect("rmdir");
        nix::unistd::mkfifo(&home.join(".dovecot.sieve"), nix::sys::stat::Mode::S_IRWXU)
            .expect("fifo");
        let e = active_script(&m.root, HOME).expect_err("fifo");
        assert!(e.contains("not a regular file"), "{e}");
    }

    // --- the error log ------------------------------------------------------

    #[test]
    fn log_lines_are_appended_and_bounded() {
        let m = mailbox();
        let home = home_with_script(&m);
        let log = home.join(LOG_FILE);
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let fd = m.root.open_dir(HOME).expect("home");
        log_error_at(fd.as_fd(), "line 3: unknown\ncommand", t).expect("log");
        log_error(&m.root, HOME, "second").expect("log");
        let text = std::fs::read_to_string(&log).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "2023-11-14T22:13:20Z line 3: unknown command");
        assert!(lines[1].ends_with("Z second"), "{}", lines[1]);
        let mode = std::fs::metadata(&log).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Long lines are cut; the file never passes the limit.
        let long = "é".repeat(2000);
        for _ in 0..200 {
            log_error_at(fd.as_fd(), &long, t).expect("log");
            let size = std::fs::metadata(&log).expect("meta").len();
            assert!(size <= LOG_LIMIT, "{size}");
        }
        let last = std::fs::read_to_string(&log).expect("read");
        let line = last.lines().last().expect("a line");
        assert_eq!(line.len(), "2023-11-14T22:13:20Z ".len() + 1000);
        let old = std::fs::read_to_string(home.join(LOG_FILE_OLD)).expect("rotated");
        assert!(old.len() as u64 <= LOG_LIMIT && old.len() as u64 > LOG_LIMIT - 1100);
    }

    #[test]
    fn log_symlink_is_not_followed() {
        let m = mailbox();
        let home = home_with_script(&m);
        let victim = m.path("victim");
        std::fs::write(&victim, b"keep me").expect("write");
        symlink(&victim, home.join(LOG_FILE)).expect("symlink");
        assert!(log_error(&m.root, HOME, "x").is_err());
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep me");
    }
}
