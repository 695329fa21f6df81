//! Sieve (RFC 5228 and the extensions Roundcube and Pigeonhole users rely
//! on): the pure front end. [`compile`] takes a script's bytes and returns a
//! typed, checked [`Program`] or one [`CompileError`] naming the line. No
//! filesystem, clock or network: the interpreter ([`interp::run`]) runs the
//! program against a [`message::Message`] and returns the actions
//! ([`action::Outcome`]). The delivery side's building blocks live beside
//! it: [`store`] (folders, flags, the script's location, the error log)
//! and [`vacation`] (the RFC 3834 rules are pure; the once-per-period
//! memory and qmail-queue are I/O).
//!
//! The pipeline: [`lex`] (bytes → tokens) → [`parse`] (tokens → the generic
//! [`ast`], RFC 5228 section 8.2) → [`validate`] (AST → [`Program`]:
//! commands and tests known, `require` enforced, arguments typed, constant
//! regexes compiled).
//!
//! # What the typed program means
//!
//! A [`Program`] is a list of [`Stmt`]s (a command and the line it starts
//! on) run top to bottom. Each [`Command`]:
//!
//! * `Keep { flags }`: file into INBOX (cancels the implicit keep). `flags`
//!   is `Some` when `:flags` was given (imap4flags); each string may hold
//!   several space-separated flags. `None` means the current internal flag
//!   variable applies.
//! * `Discard`: cancel the implicit keep, store nothing.
//! * `Stop`: end the whole run (in an included script too).
//! * `Return`: end the current script (include); in the main script it acts
//!   like `stop`.
//! * `FileInto { mailbox, copy, create, flags }`: store into `mailbox`;
//!   `copy` (`:copy`) leaves the implicit keep in effect; `create`
//!   (`:create`, mailbox) makes a missing folder; `flags` as for keep.
//! * `Redirect { address, copy }`: forward; `copy` as above.
//! * `Reject { reason, extended }`: refuse the message; `extended` is
//!   `ereject` (RFC 5429; same action for a delivery agent).
//! * `If { branches, otherwise }`: the first branch whose test is true runs
//!   its block; when none is, `otherwise` (`else`) runs when present.
//!   `elsif` chains become further branches.
//! * `Set { name, modifiers, value }`: variables (RFC 5229); `name` is
//!   lowercase; `modifiers` are already in the order they apply (RFC 5229
//!   4.1: highest precedence first).
//! * `Flags { op, variable, flags }`: setflag/addflag/removeflag on the
//!   internal flag variable, or on the named variable when `variable` is
//!   `Some`.
//! * `Vacation(v)`: RFC 5230/6131; see [`Vacation`]. `period` is what the
//!   script said; clamping to a site's minimum is the interpreter's.
//! * `Include { location, name, once, optional }`: RFC 6609; `name` is a
//!   constant script name without `/`.
//! * `Global { names }`: RFC 6609 `global`: the (lowercase) variable names
//!   shared with included scripts.
//!
//! Each [`Test`] evaluates to a boolean:
//!
//! * `True`, `False`, `Not`, `AllOf` (all true, `allof()` of one test is
//!   that test), `AnyOf`.
//! * `Address { headers, part, m }`, `Envelope { parts, part, m }`: the
//!   addresses in those headers / envelope parts (`from`, `to`), reduced to
//!   `part`, matched by `m`.
//! * `Header { names, m }`, `Exists { names }` (every named header exists).
//! * `Size { over, limit }`: message size `>` (`:over`) or `<` (`:under`)
//!   `limit` bytes.
//! * `Body { transform, m }` (RFC 5173; default `:text`).
//! * `Date { header, zone, part, m }`, `CurrentDate { zone, part, m }`
//!   (RFC 5260). `zone` is [`Zone::Local`] when neither `:zone` nor
//!   `:originalzone` was given.
//! * `MailboxExists { names }`, `HasFlag { variables, m }` (the keys of
//!   `m` are the flags), `SpamTest { percent, m }` (the key is the value
//!   compared with the score), `String { sources, m }`,
//!   `Duplicate(d)` (RFC 7352, see [`Duplicate`]).
//!
//! A [`Match`] is a match type, a comparator (the default,
//! `i;ascii-casemap`, already filled in) and the key list. For `:regex`,
//! `regexes` holds, per key, the compiled pattern when the key is constant
//! (`None` when it holds variables: compile it at run time with
//! [`build_regex`], which applies the same rules and limits).
//!
//! Strings are [`Str`]: literal text and, only when `variables` is
//! required, references to variables (`${name}`, lowercase) and match
//! variables (`${1}`). Encoded characters (`${hex:…}`, `${unicode:…}`) are
//! already decoded when `encoded-character` is required.
//!
//! # Choices where the RFCs leave room
//!
//! * Line ends in strings come out as CRLF whether the file has CRLF or LF.
//! * Tagged arguments must come before positional ones (as Pigeonhole
//!   requires); a tag after a positional argument is an error.
//! * Where one test is expected (`if`, `elsif`, `not`), a parenthesised
//!   list of exactly one test is accepted too; `allof`/`anyof` accept a
//!   single test without parentheses.
//! * `require "spamtestplus"` also enables `spamtest`, and
//!   `"vacation-seconds"` also enables `vacation`, as each RFC's text says
//!   the one extends the other.
//! * `${hex:…}` may produce bytes; the decoded string must be UTF-8 (an
//!   error otherwise), since every string here is text.
//! * `:encodeurl` (defined by RFC 5435, enotify) is accepted with
//!   `variables` alone, as a modifier of `set` like the others.
//! * A namespaced variable reference (`${a.b}`) is an error: no namespace
//!   is supported (RFC 5229 section 3).
//! * Values that must be known at compile time (comparator names,
//!   relational operators, date parts, zones, variable names in `set`,
//!   `include` names, `envelope` parts) may not hold variables.
//! * A constant `redirect` address must look like `local@domain` (both
//!   parts non-empty, no blanks, controls, `<>`, `,` or `;`); one built
//!   from variables is checked when the interpreter expands it.
//! * Header names given as constants must be RFC 5322 field names
//!   (printable ASCII without `:`); `envelope` parts must be `from` or
//!   `to`; `include` names may not be empty or hold `/`.
//! * `:regex` uses the `regex-lite` crate's syntax (the `regex` crate's,
//!   close to POSIX ERE for the patterns Roundcube writes; no
//!   backreferences); with `i;ascii-casemap` it ignores ASCII case only,
//!   as the comparator's name says, and `\w`, `\d`, `\s` are ASCII
//!   classes. `regex-lite`, not `regex`: a delivery compiles its scripts
//!   afresh in a new process, and `regex` with Unicode case folding took
//!   0.2–1 ms to compile two of Roundcube's patterns there (measured),
//!   `regex-lite` 20–30 µs. Matching is slower but bounded (no
//!   backtracking blow-up) and header values are short.
//!
//! # Limits
//!
//! [`MAX_SCRIPT_SIZE`], [`MAX_NESTING`], [`MAX_COMMANDS`],
//! [`MAX_REGEX_SIZE`], [`MAX_REGEXES`]: each exceeded is a compile error saying which.

pub mod action;
pub mod ast;
pub mod interp;
pub mod lex;
pub mod message;
pub mod parse;
pub mod store;
#[doc(hidden)]
pub mod testgen;
pub mod vacation;
pub mod validate;

use std::fmt;

/// Largest script accepted, in bytes (Pigeonhole's default is the same).
pub const MAX_SCRIPT_SIZE: usize = 1 << 20;
/// Deepest nesting of blocks and tests together.
pub const MAX_NESTING: usize = 32;
/// Most commands in one script (in all blocks together).
pub const MAX_COMMANDS: usize = 10_000;
/// Largest compiled size of one regular expression, in bytes.
pub const MAX_REGEX_SIZE: usize = 256 << 10;
/// Most `:regex` keys in one script. The costliest regexes under the size
/// limit take about 2 ms each to compile, so this bounds a script's compile
/// time (measured: 256 such keys, 0.5 s in a release build) whatever it
/// holds; scripts from Roundcube use a handful.
pub const MAX_REGEXES: usize = 256;

/// Compile a script: lex, parse, validate.
pub fn compile(script: &[u8]) -> Result<Program, CompileError> {
    let tokens = lex::lex(script)?;
    let ast = parse::parse(&tokens)?;
    validate::validate(ast)
}

/// Why a script does not compile: the line and what is wrong. Displays as
/// one line, `line N: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    line: u32,
    message: String,
}

impl CompileError {
    pub fn new(line: u32, message: impl Into<String>) -> CompileError {
        let message: String = message.into();
        // One line whatever the script held (a name with a line end in it).
        let message = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        CompileError { line, message }
    }

    /// The 1-based line the error is on.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// What is wrong, without the line.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for CompileError {}

/// The extensions a script may `require`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ext {
    FileInto,
    Envelope,
    Reject,
    EReject,
    EncodedCharacter,
    ComparatorOctet,
    ComparatorAsciiCasemap,
    ComparatorAsciiNumeric,
    Relational,
    Subaddress,
    Copy,
    Imap4Flags,
    Variables,
    Body,
    Vacation,
    VacationSeconds,
    Date,
    Mailbox,
    Include,
    Regex,
    SpamTest,
    SpamTestPlus,
    Duplicate,
}

impl Ext {
    pub const ALL: [Ext; 23] = [
        Ext::FileInto,
        Ext::Envelope,
        Ext::Reject,
        Ext::EReject,
        Ext::EncodedCharacter,
        Ext::ComparatorOctet,
        Ext::ComparatorAsciiCasemap,
        Ext::ComparatorAsciiNumeric,
        Ext::Relational,
        Ext::Subaddress,
        Ext::Copy,
        Ext::Imap4Flags,
        Ext::Variables,
        Ext::Body,
        Ext::Vacation,
        Ext::VacationSeconds,
        Ext::Date,
        Ext::Mailbox,
        Ext::Include,
        Ext::Regex,
        Ext::SpamTest,
        Ext::SpamTestPlus,
        Ext::Duplicate,
    ];

    /// The capability string of `require`.
    pub fn name(self) -> &'static str {
        match self {
            Ext::FileInto => "fileinto",
            Ext::Envelope => "envelope",
            Ext::Reject => "reject",
            Ext::EReject => "ereject",
            Ext::EncodedCharacter => "encoded-character",
            Ext::ComparatorOctet => "comparator-i;octet",
            Ext::ComparatorAsciiCasemap => "comparator-i;ascii-casemap",
            Ext::ComparatorAsciiNumeric => "comparator-i;ascii-numeric",
            Ext::Relational => "relational",
            Ext::Subaddress => "subaddress",
            Ext::Copy => "copy",
            Ext::Imap4Flags => "imap4flags",
            Ext::Variables => "variables",
            Ext::Body => "body",
            Ext::Vacation => "vacation",
            Ext::VacationSeconds => "vacation-seconds",
            Ext::Date => "date",
            Ext::Mailbox => "mailbox",
            Ext::Include => "include",
            Ext::Regex => "regex",
            Ext::SpamTest => "spamtest",
            Ext::SpamTestPlus => "spamtestplus",
            Ext::Duplicate => "duplicate",
        }
    }

    /// The extension named by a capability string (case-sensitive, as
    /// RFC 5228 section 3.2 compares them).
    pub fn from_name(name: &str) -> Option<Ext> {
        Ext::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// A checked script, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The extensions the script required, in order, without repeats.
    pub extensions: Vec<Ext>,
    pub commands: Vec<Stmt>,
}

impl Program {
    /// Whether the script required `ext` (or an extension implying it).
    pub fn requires(&self, ext: Ext) -> bool {
        self.extensions.contains(&ext)
    }
}

/// A command and the line it starts on (for run-time error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub line: u32,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Keep {
        flags: Option<Vec<Str>>,
    },
    Discard,
    Stop,
    Return,
    FileInto {
        mailbox: Str,
        copy: bool,
        create: bool,
        flags: Option<Vec<Str>>,
    },
    Redirect {
        address: Str,
        copy: bool,
    },
    Reject {
        reason: Str,
        extended: bool,
    },
    If {
        branches: Vec<Branch>,
        otherwise: Option<Vec<Stmt>>,
    },
    Set {
        name: String,
        modifiers: Vec<Modifier>,
        value: Str,
    },
    Flags {
        op: FlagOp,
        variable: Option<String>,
        flags: Vec<Str>,
    },
    Vacation(Box<Vacation>),
    Include {
        location: Location,
        name: String,
        once: bool,
        optional: bool,
    },
    Global {
        names: Vec<String>,
    },
}

/// One `if`/`elsif` arm.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub test: Test,
    pub block: Vec<Stmt>,
}

/// `set` modifiers (RFC 5229 4.1, and `:encodeurl` of RFC 5435).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Lower,
    Upper,
    LowerFirst,
    UpperFirst,
    QuoteWildcard,
    EncodeUrl,
    Length,
}

impl Modifier {
    /// RFC 5229 precedence: higher applies first.
    pub fn precedence(self) -> u8 {
        match self {
            Modifier::Lower | Modifier::Upper => 40,
            Modifier::LowerFirst | Modifier::UpperFirst => 30,
            Modifier::QuoteWildcard => 20,
            Modifier::EncodeUrl => 15,
            Modifier::Length => 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Set,
    Add,
    Remove,
}

/// RFC 6609 script locations; `:personal` is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Personal,
    Global,
}

/// The arguments of `vacation`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vacation {
    pub period: Period,
    pub subject: Option<Str>,
    pub from: Option<Str>,
    pub addresses: Vec<Str>,
    /// `:mime`: `reason` is a MIME entity (headers and body), not text.
    pub mime: bool,
    pub handle: Option<Str>,
    pub reason: Str,
}

/// How long to wait before replying to the same sender again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Neither `:days` nor `:seconds`: the site's default (RFC 5230: 7 days).
    Default,
    Days(u64),
    Seconds(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    True,
    False,
    Not(Box<Test>),
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    Address {
        headers: Vec<Str>,
        part: AddressPart,
        m: Match,
    },
    Envelope {
        parts: Vec<Str>,
        part: AddressPart,
        m: Match,
    },
    Header {
        names: Vec<Str>,
        m: Match,
    },
    Exists {
        names: Vec<Str>,
    },
    Size {
        over: bool,
        limit: u64,
    },
    Body {
        transform: BodyTransform,
        m: Match,
    },
    Date {
        header: Str,
        zone: Zone,
        part: DatePart,
        m: Match,
    },
    CurrentDate {
        zone: Zone,
        part: DatePart,
        m: Match,
    },
    MailboxExists {
        names: Vec<Str>,
    },
    HasFlag {
        variables: Vec<String>,
        m: Match,
    },
    SpamTest {
        percent: bool,
        m: Match,
    },
    String {
        sources: Vec<Str>,
        m: Match,
    },
    Duplicate(Box<Duplicate>),
}

/// How a test compares: match type, comparator, keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub kind: MatchType,
    pub comparator: Comparator,
    pub keys: Vec<Str>,
    /// For `:regex` only: one entry per key, the compiled pattern of a
    /// constant key. Empty for other match types.
    pub regexes: Vec<Option<Pattern>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    Is,
    Contains,
    Matches,
    Regex,
    Count(Relation),
    Value(Relation),
}

/// RFC 5231 relational operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Octet,
    AsciiCasemap,
    AsciiNumeric,
}

impl Comparator {
    pub fn name(self) -> &'static str {
        match self {
            Comparator::Octet => "i;octet",
            Comparator::AsciiCasemap => "i;ascii-casemap",
            Comparator::AsciiNumeric => "i;ascii-numeric",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    All,
    LocalPart,
    Domain,
    /// RFC 5233: the local part before the extension delimiter.
    User,
    /// RFC 5233: the part after it.
    Detail,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BodyTransform {
    Raw,
    /// The MIME parts whose type matches one of these (`""` = any).
    Content(Vec<Str>),
    Text,
}

/// The time zone a date is shown in before its part is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The local zone of the delivery (neither tag given).
    Local,
    /// `:originalzone`: the zone written in the header.
    Original,
    /// `:zone "+hhmm"`: offset east of UTC, in minutes.
    Fixed(i32),
}

/// RFC 5260 section 4 date parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePart {
    Year,
    Month,
    Day,
    Date,
    Julian,
    Hour,
    Minute,
    Second,
    Time,
    Iso8601,
    Std11,
    Zone,
    Weekday,
}

/// The arguments of the `duplicate` test.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    pub handle: Option<Str>,
    pub id: DuplicateId,
    pub seconds: Option<u64>,
    /// `:last`: the period counts from the last time seen, not the first.
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DuplicateId {
    /// The default: the message's Message-ID.
    MessageId,
    /// `:header NAME`: that header's value.
    Header(Str),
    /// `:uniqueid VALUE`.
    UniqueId(Str),
}

/// A string as the script wrote it: literal text and, with `variables`,
/// references to expand at run time. An empty string has no parts; no part
/// is an empty `Text`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Str(pub Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `${name}`: a variable, name lowercased.
    Var(String),
    /// `${N}`: a match variable (saturated at `usize::MAX`: always empty).
    Match(usize),
}

impl Str {
    /// A string without variable references.
    pub fn text(s: &str) -> Str {
        if s.is_empty() {
            Str(Vec::new())
        } else {
            Str(vec![Part::Text(s.to_string())])
        }
    }

    /// The text, when the string holds no variable reference.
    pub fn constant(&self) -> Option<&str> {
        match self.0.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }
}

/// A compiled `:regex` key (compares equal by pattern and case rule).
#[derive(Debug, Clone)]
pub struct Pattern {
    pub regex: regex_lite::Regex,
    pub case_insensitive: bool,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.regex.as_str() == other.regex.as_str()
            && self.case_insensitive == other.case_insensitive
    }
}

/// Compile a `:regex` key as the validator does: case-insensitive unless
/// the comparator is `i;octet`, compiled size at most [`MAX_REGEX_SIZE`].
pub fn build_regex(pattern: &str, comparator: Comparator) -> Result<Pattern, String> {
    let case_insensitive = comparator != Comparator::Octet;
    regex_lite::RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(MAX_REGEX_SIZE)
        .build()
        .map(|regex| Pattern {
            regex,
            case_insensitive,
        })
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("size limit") {
                return format!("compiles to more than {MAX_REGEX_SIZE} bytes");
            }
            // The crate's syntax errors may span several lines; the last
            // non-empty one says what is wrong.
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ")
                .to_string()
        })
}
