//! The Sieve interpreter: runs a compiled [`Program`] against a parsed
//! [`Message`] and an [`Env`], and returns an [`Outcome`]. Pure: the clock,
//! the mailbox list, the duplicate memory and the included scripts come in
//! through [`Env`] and the [`Host`] trait; nothing is stored or sent here.
//!
//! # Semantics (RFC 5228 and the extensions)
//!
//! * The implicit keep is cancelled by `keep`, `fileinto`, `redirect`
//!   (without `:copy`), `discard` and `reject`; when still in effect at the
//!   end it is the last action, a `Store` into INBOX with `implicit: true`
//!   carrying the internal flag variable (imap4flags).
//! * Repeated actions collapse (RFC 5228 section 2.10.3, message
//!   uniqueness in a mailbox): stores into the same folder are one store
//!   (the flags of the later one win, `:create` if any said so), redirects
//!   to the same address are one redirect (local part compared exactly,
//!   domain in any case); the implicit keep collapses into an explicit
//!   store into INBOX with the same flags (with other flags it is a second
//!   copy, as in Pigeonhole). `INBOX` is matched case-insensitively (also
//!   as the first hierarchy level) and written `INBOX`.
//! * `reject` together with a store, a redirect or `vacation` is a
//!   run-time error (RFC 5429 section 2.1 lets an implementation refuse
//!   these; Pigeonhole does), as are a second `reject` and a second
//!   `vacation` (Pigeonhole alike).
//! * Match variables (`${0}`…) are set by a successful `:matches` or
//!   `:regex` match when `variables` is required: the first matching
//!   (value, key) pair, values in order outside, keys inside. `:matches`
//!   wildcards are matched leftmost-shortest (RFC 5229 section 3.2), in
//!   linear work.
//! * `i;ascii-numeric` (RFC 4790 section 9.1): a string's value is its
//!   leading digits; a string without them is positive infinity, equal only
//!   to another such string.
//! * `:count` compares the number of values (header fields, addresses,
//!   non-empty strings for `string`, flags for `hasflag`) as a decimal
//!   string with the key, through the comparator.
//! * `:lower`, `:upper`, `:lowerfirst`, `:upperfirst` change ASCII letters
//!   only (as Pigeonhole; `i;ascii-casemap` ignores other letters too).
//! * `address`: a header value without any `local@domain` in it gives
//!   the value itself to `:all` (and nothing to the other parts), as
//!   RFC 5228 section 2.7.4 lets it; where some items are addresses, the
//!   others are skipped. A local part that is not a dot-atom is quoted
//!   again for `:all`.
//! * Variables hold at most [`MAX_VARIABLE_SIZE`] bytes (longer values are
//!   cut at a character boundary, as Pigeonhole's 4 KiB limit does).
//! * `envelope "to"` is [`Env::envelope_to`] (the original recipient);
//!   an empty envelope sender gives the value `""` to `:all` and nothing to
//!   the other address parts.
//! * `subaddress`: every character of [`Env::extension_delimiter`] is a
//!   delimiter; `:user` is the local part before the first one, `:detail`
//!   what follows it (nothing when there is none, so `:detail` fails).
//! * `body :text`: the text/* leaves; text/html reduced to its text (tags,
//!   `script` and `style` dropped, blanks collapsed, entities decoded; the
//!   spacing may differ from Pigeonhole's in details).
//! * `body` sets no match variables (RFC 5173 section 6).
//! * `date`: every parseable instance of the header is a value (for
//!   `Received`, the date after the last `;`); a header that does not parse
//!   is no value. [`Zone::Local`] is [`Env::local_offset`].
//! * `spamtest` (RFC 5235): the first number in the topmost instance of
//!   [`SpamSettings::header`], `s`, over the maximum `m`: `0` without the
//!   header, otherwise `1` for `s <= 0`, `10` for `s >= m`, else
//!   `1 + floor(9·s/m)` (as Pigeonhole); with `:percent`, `round(100·s/m)` clamped to
//!   0–100 (`0` without the header).
//! * `duplicate`: the id is the `:handle` and the unique id (Message-ID by
//!   default, `:header`'s value, or `:uniqueid`) joined by a NUL; a
//!   message without the header is not a duplicate and is not tracked.
//!   [`Host::duplicate`] checks and records.
//! * `include`: an included script has its own variables except those
//!   both sides declare `global`; the flags and the implicit keep are
//!   shared; `:once` skips a script already included in this run. Every
//!   included script is resolved through [`Host::include`] before the run
//!   starts (as Pigeonhole does when it compiles), so a missing script
//!   (without `:optional`), one that does not compile, a script including
//!   itself (directly or not), nesting deeper than [`MAX_INCLUDE_DEPTH`] or
//!   more than [`MAX_INCLUDES`] distinct scripts is a run-time error even
//!   when that `include` would not run.
//! * `vacation`: the reply as the script gave it, the period in seconds
//!   (`:days` × 86400, `:seconds`), not clamped; sending rules are the
//!   delivery side's.
//!
//! # Limits
//!
//! [`Env::max_actions`] actions (default 32, Pigeonhole's), [`Env::max_redirects`]
//! redirects (default 4), [`MAX_STEPS`] commands and tests evaluated; `:regex`
//! uses the `regex` crate (linear time, compiled size bounded by
//! [`super::MAX_REGEX_SIZE`]). Exceeding a limit is a run-time error.
//! A run-time error empties `actions`: the delivery side falls back to the
//! implicit keep.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::action::{Action, Outcome, VacationReply};
use super::message::{parse_addresses, Address, Message};
use super::{
    build_regex, AddressPart, BodyTransform, Command, Comparator, DatePart, DuplicateId, Ext,
    FlagOp, Location, Match, MatchType, Modifier, Part, Period, Program, Relation, Stmt, Str, Test,
    Zone,
};

/// Longest variable value, in bytes.
pub const MAX_VARIABLE_SIZE: usize = 4096;
/// Deepest include nesting.
pub const MAX_INCLUDE_DEPTH: usize = 10;
/// Most includes executed in one run.
pub const MAX_INCLUDES: usize = 255;
/// Most commands and tests evaluated in one run.
pub const MAX_STEPS: u64 = 1_000_000;

/// The spam score header (`spamtest`).
#[derive(Debug, Clone, PartialEq)]
pub struct SpamSettings {
    /// The header holding the score (e.g. `X-Spam-Score`).
    pub header: String,
    /// The score that means "certainly spam" (10 on RFC 5235's scale).
    pub max_score: f64,
}

/// What the run knows besides the message.
#[derive(Debug, Clone)]
pub struct Env {
    /// The envelope sender; empty for `<>`.
    pub envelope_from: String,
    /// The original envelope recipient (what `envelope "to"` sees).
    pub envelope_to: String,
    /// The subaddress delimiter characters (`mail.extension_delimiter`).
    pub extension_delimiter: String,
    /// Now, in seconds since the Unix epoch (`currentdate`).
    pub now: i64,
    /// The local zone, minutes east of UTC ([`Zone::Local`]).
    pub local_offset: i32,
    pub spam: Option<SpamSettings>,
    pub max_redirects: usize,
    pub max_actions: usize,
}

impl Default for Env {
    fn default() -> Env {
        Env {
            envelope_from: String::new(),
            envelope_to: String::new(),
            extension_delimiter: "-".into(),
            now: 0,
            local_offset: 0,
            spam: None,
            max_redirects: 4,
            max_actions: 32,
        }
    }
}

/// What the interpreter asks of the outside world.
pub trait Host {
    /// Whether the folder exists (`mailboxexists`); `name` as the script
    /// gave it, `INBOX` normalised ([`normalise_folder`]).
    fn mailbox_exists(&mut self, name: &str) -> bool;
    /// Whether `id` was seen within `seconds` (None: the site's default)
    /// before. The host also remembers `id` (`last`: the period restarts
    /// from now), but should commit that only once the delivery succeeded
    /// (RFC 7352 section 3), e.g. by collecting the ids asked about during
    /// the run and storing them afterwards. The period and `:last` come
    /// along because the memory is the host's.
    fn duplicate(&mut self, id: &str, seconds: Option<u64>, last: bool) -> bool;
    /// The compiled script `name` at `location`; `Ok(None)` when there is
    /// none, `Err` when it does not compile or cannot be read.
    fn include(&mut self, location: Location, name: &str) -> Result<Option<Program>, String>;
}

/// A [`Host`] with no mailboxes besides INBOX, no duplicate memory and no
/// scripts to include.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHost;

impl Host for NoHost {
    fn mailbox_exists(&mut self, name: &str) -> bool {
        name.eq_ignore_ascii_case("inbox")
    }
    fn duplicate(&mut self, _id: &str, _seconds: Option<u64>, _last: bool) -> bool {
        false
    }
    fn include(&mut self, _location: Location, _name: &str) -> Result<Option<Program>, String> {
        Ok(None)
    }
}

/// Run `program` on `msg`.
pub fn run(program: &Program, msg: &Message, env: &Env, host: &mut dyn Host) -> Outcome {
    let mut r = Run {
        msg,
        env,
        host,
        actions: Vec::new(),
        keep_cancelled: false,
        discard: false,
        rejected: false,
        vacation: false,
        flags: Vec::new(),
        globals: HashMap::new(),
        included: HashSet::new(),
        stack: Vec::new(),
        steps: 0,
        scripts: HashMap::new(),
    };
    let mut scope = Scope::new(program);
    let mut stack = Vec::new();
    let result = r
        .link(program, &mut stack)
        .and_then(|()| r.block(&program.commands, &mut scope));
    match result {
        Ok(_) => r.finish(),
        Err(e) => Outcome {
            actions: Vec::new(),
            discarded: false,
            error: Some(e),
        },
    }
}

enum Flow {
    Next,
    Return,
    Stop,
}

type R<T> = Result<T, String>;

struct Scope {
    variables: bool,
    vars: HashMap<String, String>,
    global_names: HashSet<String>,
    matches: Vec<String>,
}

impl Scope {
    fn new(p: &Program) -> Scope {
        Scope {
            variables: p.requires(Ext::Variables),
            vars: HashMap::new(),
            global_names: HashSet::new(),
            matches: Vec::new(),
        }
    }
}

struct Run<'a> {
    msg: &'a Message,
    env: &'a Env,
    host: &'a mut dyn Host,
    actions: Vec<Action>,
    keep_cancelled: bool,
    discard: bool,
    rejected: bool,
    vacation: bool,
    flags: Vec<String>,
    globals: HashMap<String, String>,
    included: HashSet<(bool, String)>,
    stack: Vec<(bool, String)>,
    steps: u64,
    /// The included scripts, resolved before the run: None for a missing
    /// `:optional` one.
    scripts: HashMap<(bool, String), Option<Rc<Program>>>,
}

/// Every `include` in `stmts`, at any depth.
fn includes_in(stmts: &[Stmt], out: &mut Vec<(u32, Location, String, bool)>) {
    for s in stmts {
        match &s.command {
            Command::Include {
                location,
                name,
                optional,
                ..
            } => out.push((s.line, *location, name.clone(), *optional)),
            Command::If {
                branches,
                otherwise,
            } => {
                for b in branches {
                    includes_in(&b.block, out);
                }
                if let Some(o) = otherwise {
                    includes_in(o, out);
                }
            }
            _ => {}
        }
    }
}

/// `INBOX` in any case, also as the first level, becomes `INBOX`.
pub fn normalise_folder(f: &str) -> String {
    if f.eq_ignore_ascii_case("inbox") {
        return "INBOX".into();
    }
    if f.len() > 6 && f.is_char_boundary(6) && f[..6].eq_ignore_ascii_case("inbox.") {
        return format!("INBOX.{}", &f[6..]);
    }
    f.to_string()
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_VARIABLE_SIZE {
        let mut n = MAX_VARIABLE_SIZE;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
    s
}

fn add_flag(list: &mut Vec<String>, f: &str) {
    if !f.is_empty() && !list.iter().any(|x| x.eq_ignore_ascii_case(f)) {
        list.push(f.to_string());
    }
}

fn flag_list<'s>(strs: impl IntoIterator<Item = &'s str>) -> Vec<String> {
    let mut out = Vec::new();
    for s in strs {
        for f in s.split_whitespace() {
            add_flag(&mut out, f);
        }
    }
    out
}

/// The same forwarding address: the local part exactly, the domain in any
/// case.
fn same_address(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

impl Run<'_> {
    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!("more than {MAX_STEPS} commands and tests run"));
        }
        Ok(())
    }

    fn finish(self) -> Outcome {
        let mut actions = self.actions;
        if !self.keep_cancelled {
            // Collapses into an explicit store into INBOX with the same
            // flags; with other flags it is a second copy (as Pigeonhole).
            let same = |flags: &Vec<String>| {
                flags.len() == self.flags.len()
                    && flags
                        .iter()
                        .all(|f| self.flags.iter().any(|g| g.eq_ignore_ascii_case(f)))
            };
            let existing = actions.iter().any(|a| {
                matches!(a, Action::Store { folder, flags, .. } if folder == "INBOX" && same(flags))
            });
            match existing {
                true => {}
                false => actions.push(Action::Store {
                    folder: "INBOX".into(),
                    flags: self.flags.clone(),
                    create: false,
                    implicit: true,
                    keep: false,
                }),
            }
        }
        let stores = actions.iter().any(|a| matches!(a, Action::Store { .. }));
        Outcome {
            discarded: self.discard && !stores,
            actions,
            error: None,
        }
    }

    fn push(&mut self, a: Action) -> R<()> {
        if self.actions.len() >= self.env.max_actions {
            return Err(format!(
                "more than {} actions (too many actions)",
                self.env.max_actions
            ));
        }
        self.actions.push(a);
        Ok(())
    }

    fn store(
        &mut self,
        line: u32,
        folder: String,
        flags: Vec<String>,
        create: bool,
        keep: bool,
    ) -> R<()> {
        if self.rejected {
            return Err(format!(
                "line {line}: reject cannot be combined with keep or fileinto"
            ));
        }
        for a in &mut self.actions {
            if let Action::Store {
                folder: f,
                flags: fl,
                create: c,
                keep: k,
                ..
            } = a
            {
                if *f == folder {
                    *fl = flags;
                    *c |= create;
                    *k |= keep;
                    return Ok(());
                }
            }
        }
        self.push(Action::Store {
            folder,
            flags,
            create,
            implicit: false,
            keep,
        })
    }

    fn block(&mut self, stmts: &[Stmt], sc: &mut Scope) -> R<Flow> {
        for s in stmts {
            self.step()?;
            let flow = self.command(s, sc).map_err(|e| {
                if e.starts_with("line ") {
                    e
                } else {
                    format!("line {}: {e}", s.line)
                }
            })?;
            match flow {
                Flow::Next => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Next)
    }

    fn expand(&self, s: &Str, sc: &Scope) -> String {
        let mut out = String::new();
        for p in &s.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(n) => {
                    if let Some(v) = self.get_var(n, sc) {
                        out.push_str(v);
                    }
                }
                Part::Match(i) => {
                    if let Some(v) = sc.matches.get(*i) {
                        out.push_str(v);
                    }
                }
            }
            if out.len() > 4 * MAX_VARIABLE_SIZE + 65536 {
                break;
            }
        }
        out
    }

    fn get_var<'s>(&'s self, n: &str, sc: &'s Scope) -> Option<&'s str> {
        if sc.global_names.contains(n) {
            self.globals.get(n).map(String::as_str)
        } else {
            sc.vars.get(n).map(String::as_str)
        }
    }

    fn set_var(&mut self, n: &str, v: String, sc: &mut Scope) {
        let v = truncate(v);
        if sc.global_names.contains(n) {
            self.globals.insert(n.to_string(), v);
        } else {
            sc.vars.insert(n.to_string(), v);
        }
    }

    fn flags_of(&self, f: &Option<Vec<Str>>, sc: &Scope) -> Vec<String> {
        match f {
            Some(list) => {
                let strs: Vec<String> = list.iter().map(|s| self.expand(s, sc)).collect();
                flag_list(strs.iter().map(String::as_str))
            }
            None => self.flags.clone(),
        }
    }

    fn command(&mut self, s: &Stmt, sc: &mut Scope) -> R<Flow> {
        let line = s.line;
        match &s.command {
            Command::Keep { flags } => {
                let flags = self.flags_of(flags, sc);
                self.keep_cancelled = true;
                self.store(line, "INBOX".into(), flags, false, true)?;
            }
            Command::Discard => {
                self.keep_cancelled = true;
                self.discard = true;
            }
            Command::Stop => return Ok(Flow::Stop),
            Command::Return => return Ok(Flow::Return),
            Command::FileInto {
                mailbox,
                copy,
                create,
                flags,
            } => {
                let folder = normalise_folder(&self.expand(mailbox, sc));
                if folder.is_empty() {
                    return Err(format!("line {line}: fileinto: empty folder name"));
                }
                let flags = self.flags_of(flags, sc);
                if !copy {
                    self.keep_cancelled = true;
                }
                self.store(line, folder, flags, *create, false)?;
            }
            Command::Redirect { address, copy } => {
                let a = self.expand(address, sc);
                let a = a.trim();
                let a = a
                    .strip_prefix('<')
                    .and_then(|x| x.strip_suffix('>'))
                    .unwrap_or(a)
                    .to_string();
                if !super::validate::plausible_address(&a) {
                    return Err(format!("line {line}: redirect: invalid address {a:?}"));
                }
                if !copy {
                    self.keep_cancelled = true;
                }
                if self.rejected {
                    return Err(format!(
                        "line {line}: redirect cannot be combined with reject"
                    ));
                }
                let dup = self.actions.iter().any(
                    |x| matches!(x, Action::Redirect { address } if same_address(address, &a)),
                );
                if !dup {
                    let n = self
                        .actions
                        .iter()
                        .filter(|x| matches!(x, Action::Redirect { .. }))
                        .count();
                    if n >= self.env.max_redirects {
                        return Err(format!(
                            "line {line}: more than {} redirects",
                            self.env.max_redirects
                        ));
                    }
                    self.push(Action::Redirect { address: a })?;
                }
            }
            Command::Reject { reason, .. } => {
                if self.rejected {
                    return Err(format!(
                        "line {line}: reject: the message is already rejected"
                    ));
                }
                if self.vacation
                    || self
                        .actions
                        .iter()
                        .any(|a| matches!(a, Action::Store { .. } | Action::Redirect { .. }))
                {
                    return Err(format!(
                        "line {line}: reject cannot be combined with keep, fileinto, redirect or vacation"
                    ));
                }
                let reason = self.expand(reason, sc);
                self.keep_cancelled = true;
                self.rejected = true;
                self.push(Action::Reject { reason })?;
            }
            Command::If {
                branches,
                otherwise,
            } => {
                for b in branches {
                    if self.test(&b.test, sc)? {
                        return self.block(&b.block, sc);
                    }
                }
                if let Some(o) = otherwise {
                    return self.block(o, sc);
                }
            }
            Command::Set {
                name,
                modifiers,
                value,
            } => {
                let mut v = self.expand(value, sc);
                for m in modifiers {
                    v = apply_modifier(*m, v);
                }
                self.set_var(name, v, sc);
            }
            Command::Flags {
                op,
                variable,
                flags,
            } => {
                let strs: Vec<String> = flags.iter().map(|s| self.expand(s, sc)).collect();
                let given = flag_list(strs.iter().map(String::as_str));
                let mut cur = match variable {
                    Some(v) => flag_list(self.get_var(v, sc)),
                    None => self.flags.clone(),
                };
                match op {
                    FlagOp::Set => cur = given,
                    FlagOp::Add => {
                        for f in &given {
                            add_flag(&mut cur, f);
                        }
                    }
                    FlagOp::Remove => {
                        cur.retain(|c| !given.iter().any(|g| g.eq_ignore_ascii_case(c)))
                    }
                }
                match variable {
                    Some(v) => {
                        let joined = cur.join(" ");
                        self.set_var(v, joined, sc);
                    }
                    None => self.flags = cur,
                }
            }
            Command::Vacation(v) => {
                if self.vacation {
                    return Err(format!("line {line}: vacation: only one vacation per run"));
                }
                if self.rejected {
                    return Err(format!(
                        "line {line}: vacation cannot be combined with reject"
                    ));
                }
                let reply = VacationReply {
                    reason: self.expand(&v.reason, sc),
                    mime: v.mime,
                    subject: v.subject.as_ref().map(|s| self.expand(s, sc)),
                    from: v.from.as_ref().map(|s| self.expand(s, sc)),
                    addresses: v.addresses.iter().map(|s| self.expand(s, sc)).collect(),
                    period: match v.period {
                        Period::Default => None,
                        Period::Days(d) => Some(d.saturating_mul(86400)),
                        Period::Seconds(s) => Some(s),
                    },
                    handle: v.handle.as_ref().map(|s| self.expand(s, sc)),
                };
                self.vacation = true;
                self.push(Action::Vacation(reply))?;
            }
            Command::Include {
                location,
                name,
                once,
                optional,
            } => return self.include(line, *location, name, *once, *optional),
            Command::Global { names } => {
                for n in names {
                    sc.global_names.insert(n.clone());
                }
            }
        }
        Ok(Flow::Next)
    }

    /// Resolve every script `program` includes, and theirs, before
    /// anything runs (as Pigeonhole does when it compiles): a missing
    /// script (without `:optional`), one that does not compile, an include
    /// loop or nesting deeper than [`MAX_INCLUDE_DEPTH`] is an error even
    /// when the `include` would not run.
    fn link(&mut self, program: &Program, stack: &mut Vec<(bool, String)>) -> R<()> {
        let mut found = Vec::new();
        includes_in(&program.commands, &mut found);
        for (line, loc, name, optional) in found {
            let key = (loc == Location::Global, name.clone());
            let what = format!(
                "{} script {name:?}",
                if key.0 { "global" } else { "personal" }
            );
            if stack.contains(&key) {
                return Err(format!(
                    "line {line}: include: {what} includes itself (include loop)"
                ));
            }
            match self.scripts.get(&key) {
                Some(Some(_)) => continue,
                Some(None) if optional => continue,
                Some(None) => return Err(format!("line {line}: include: {what} not found")),
                None => {}
            }
            if stack.len() >= MAX_INCLUDE_DEPTH {
                return Err(format!(
                    "line {line}: include: {what} nested deeper than {MAX_INCLUDE_DEPTH}"
                ));
            }
            if self.scripts.len() >= MAX_INCLUDES {
                return Err(format!(
                    "line {line}: include: more than {MAX_INCLUDES} scripts included"
                ));
            }
            match self.host.include(loc, &name) {
                Ok(Some(p)) => {
                    let p = Rc::new(p);
                    self.scripts.insert(key.clone(), Some(p.clone()));
                    stack.push(key);
                    let r = self.link(&p, stack);
                    stack.pop();
                    r?;
                }
                Ok(None) if optional => {
                    self.scripts.insert(key, None);
                }
                Ok(None) => return Err(format!("line {line}: include: {what} not found")),
                Err(e) => return Err(format!("line {line}: include: {what}: {e}")),
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        line: u32,
        loc: Location,
        name: &str,
        once: bool,
        optional: bool,
    ) -> R<Flow> {
        let key = (loc == Location::Global, name.to_string());
        let what = format!(
            "{} script {name:?}",
            if key.0 { "global" } else { "personal" }
        );
        if self.stack.contains(&key) {
            return Err(format!(
                "line {line}: include: {what} includes itself (include loop)"
            ));
        }
        if once && self.included.contains(&key) {
            return Ok(Flow::Next);
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(format!(
                "line {line}: include: {what} nested deeper than {MAX_INCLUDE_DEPTH}"
            ));
        }
        let program = match self.scripts.get(&key) {
            Some(Some(p)) => p.clone(),
            _ if optional => return Ok(Flow::Next),
            _ => return Err(format!("line {line}: include: {what} not found")),
        };
        self.included.insert(key.clone());
        self.stack.push(key);
        let mut sc = Scope::new(&program);
        let flow = self.block(&program.commands, &mut sc);
        self.stack.pop();
        match flow? {
            Flow::Stop => Ok(Flow::Stop),
            _ => Ok(Flow::Next),
        }
    }

    // ---- tests ----

    fn test(&mut self, t: &Test, sc: &mut Scope) -> R<bool> {
        self.step()?;
        Ok(match t {
            Test::True => true,
            Test::False => false,
            Test::Not(t) => !self.test(t, sc)?,
            Test::AllOf(ts) => {
                for t in ts {
                    if !self.test(t, sc)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::AnyOf(ts) => {
                for t in ts {
                    if self.test(t, sc)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Address { headers, part, m } => {
                let mut vals = Vec::new();
                for h in headers {
                    let h = self.expand(h, sc);
                    for v in self.msg.header(&h) {
                        let addrs: Vec<Address> = parse_addresses(&v)
                            .into_iter()
                            .filter(|a| a.domain.as_ref().is_some_and(|d| !d.is_empty()))
                            .collect();
                        if addrs.is_empty() {
                            // No address in it: the value itself, for :all
                            // only (RFC 5228 section 2.7.4).
                            if !v.trim().is_empty() && *part == AddressPart::All {
                                vals.push(v.trim().to_string());
                            }
                            continue;
                        }
                        for a in addrs {
                            if let Some(x) = self.address_part(&a, *part) {
                                vals.push(x);
                            }
                        }
                    }
                }
                self.matches(m, &vals, sc)?
            }
            Test::Envelope { parts, part, m } => {
                let mut vals = Vec::new();
                for p in parts {
                    let p = self.expand(p, sc).to_ascii_lowercase();
                    let raw = match p.as_str() {
                        "from" => &self.env.envelope_from,
                        "to" => &self.env.envelope_to,
                        _ => continue,
                    };
                    if raw.is_empty() {
                        if *part == AddressPart::All {
                            vals.push(String::new());
                        }
                        continue;
                    }
                    let a = match raw.rsplit_once('@') {
                        Some((l, d)) => Address {
                            local: l.to_string(),
                            domain: Some(d.to_string()),
                        },
                        None => Address {
                            local: raw.clone(),
                            domain: None,
                        },
                    };
                    if let Some(x) = self.address_part(&a, *part) {
                        vals.push(x);
                    }
                }
                self.matches(m, &vals, sc)?
            }
            Test::Header { names, m } => {
                let mut vals = Vec::new();
                for n in names {
                    let n = self.expand(n, sc);
                    vals.extend(self.msg.header(&n));
                }
                self.matches(m, &vals, sc)?
            }
            Test::Exists { names } => names.iter().all(|n| {
                let n = self.expand(n, sc);
                self.msg.has_header(&n)
            }),
            Test::Size { over, limit } => {
                if *over {
                    self.msg.size() > *limit
                } else {
                    self.msg.size() < *limit
                }
            }
            Test::Body { transform, m } => {
                let vals: Vec<String> = match transform {
                    BodyTransform::Raw => vec![self.msg.raw_body()],
                    BodyTransform::Text => self
                        .msg
                        .body_parts()
                        .iter()
                        .filter(|p| p.content_type.starts_with("text/"))
                        .map(|p| {
                            if p.content_type == "text/html" {
                                html_to_text(&p.text)
                            } else {
                                p.text.clone()
                            }
                        })
                        .collect(),
                    BodyTransform::Content(types) => {
                        let types: Vec<String> = types
                            .iter()
                            .map(|t| self.expand(t, sc).to_ascii_lowercase())
                            .collect();
                        self.msg
                            .body_parts()
                            .iter()
                            .filter(|p| {
                                types.iter().any(|t| {
                                    t.is_empty()
                                        || if t.contains('/') {
                                            p.content_type == *t
                                        } else {
                                            p.content_type.split('/').next() == Some(t.as_str())
                                        }
                                })
                            })
                            .map(|p| p.text.clone())
                            .collect()
                    }
                };
                self.matches_vars(m, &vals, sc, false)?
            }
            Test::Date {
                header,
                zone,
                part,
                m,
            } => {
                let h = self.expand(header, sc);
                let mut vals = Vec::new();
                for v in self.msg.header(&h) {
                    let text = if h.eq_ignore_ascii_case("received") {
                        v.rsplit(';').next().unwrap_or("").to_string()
                    } else {
                        v
                    };
                    if let Some((t, off)) = parse_date(&text) {
                        let z = match zone {
                            Zone::Local => self.env.local_offset,
                            Zone::Original => off,
                            Zone::Fixed(z) => *z,
                        };
                        vals.push(date_part(t, z, *part));
                    }
                }
                self.matches(m, &vals, sc)?
            }
            Test::CurrentDate { zone, part, m } => {
                let z = match zone {
                    Zone::Fixed(z) => *z,
                    _ => self.env.local_offset,
                };
                let v = vec![date_part(self.env.now, z, *part)];
                self.matches(m, &v, sc)?
            }
            Test::MailboxExists { names } => {
                let names: Vec<String> = names
                    .iter()
                    .map(|n| normalise_folder(&self.expand(n, sc)))
                    .collect();
                names.iter().all(|n| self.host.mailbox_exists(n))
            }
            Test::HasFlag { variables, m } => {
                let vals = if variables.is_empty() {
                    self.flags.clone()
                } else {
                    flag_list(variables.iter().filter_map(|v| self.get_var(v, sc)))
                };
                // The keys are flag lists too.
                let mut m2 = m.clone();
                if !matches!(m.kind, MatchType::Count(_)) {
                    let keys: Vec<String> = m.keys.iter().map(|k| self.expand(k, sc)).collect();
                    let split = flag_list(keys.iter().map(String::as_str));
                    if m.kind != MatchType::Regex {
                        m2.keys = split.iter().map(|k| Str::text(k)).collect();
                    }
                }
                self.matches(&m2, &vals, sc)?
            }
            Test::SpamTest { percent, m } => {
                let v = vec![self.spam_value(*percent)];
                self.matches(m, &v, sc)?
            }
            Test::String { sources, m } => {
                let vals: Vec<String> = sources.iter().map(|s| self.expand(s, sc)).collect();
                if let MatchType::Count(_) = m.kind {
                    let nonempty: Vec<String> =
                        vals.into_iter().filter(|v| !v.is_empty()).collect();
                    self.matches(m, &nonempty, sc)?
                } else {
                    self.matches(m, &vals, sc)?
                }
            }
            Test::Duplicate(d) => {
                let id = match &d.id {
                    DuplicateId::MessageId => self.msg.header("message-id").into_iter().next(),
                    DuplicateId::Header(h) => {
                        let h = self.expand(h, sc);
                        self.msg.header(&h).into_iter().next()
                    }
                    DuplicateId::UniqueId(u) => Some(self.expand(u, sc)),
                };
                match id {
                    None => false,
                    Some(id) => {
                        let handle = d.handle.as_ref().map(|h| self.expand(h, sc));
                        let key = format!("{}\0{}", handle.unwrap_or_default(), id.trim());
                        self.host.duplicate(&key, d.seconds, d.last)
                    }
                }
            }
        })
    }

    fn spam_value(&self, percent: bool) -> String {
        let score = self.env.spam.as_ref().and_then(|s| {
            let v = self.msg.header(&s.header).into_iter().next()?;
            Some((first_number(&v)?, s.max_score))
        });
        let Some((s, max)) = score else {
            return "0".into();
        };
        if percent {
            let p = if max > 0.0 {
                (100.0 * s / max).round()
            } else {
                100.0
            };
            return format!("{}", p.clamp(0.0, 100.0) as i64);
        }
        if s <= 0.0 {
            "1".into()
        } else if s >= max {
            "10".into()
        } else {
            format!("{}", (1.0 + (9.0 * s / max).floor()) as i64)
        }
    }

    fn address_part(&self, a: &Address, part: AddressPart) -> Option<String> {
        let delim = |c: char| self.env.extension_delimiter.contains(c);
        match part {
            AddressPart::All => Some(a.all()),
            AddressPart::LocalPart => a.domain.as_ref().map(|_| a.local.clone()),
            AddressPart::Domain => a.domain.clone(),
            AddressPart::User => {
                a.domain.as_ref()?;
                Some(match a.local.find(delim) {
                    Some(i) => a.local[..i].to_string(),
                    None => a.local.clone(),
                })
            }
            AddressPart::Detail => {
                a.domain.as_ref()?;
                let i = a.local.find(delim)?;
                let c = a.local[i..].chars().next()?;
                Some(a.local[i + c.len_utf8()..].to_string())
            }
        }
    }

    /// Whether any value matches any key; sets match variables.
    fn matches(&mut self, m: &Match, vals: &[String], sc: &mut Scope) -> R<bool> {
        self.matches_vars(m, vals, sc, true)
    }

    /// [`Self::matches`]; `set_vars` false leaves the match variables alone
    /// (the body test, RFC 5173 section 6).
    fn matches_vars(
        &mut self,
        m: &Match,
        vals: &[String],
        sc: &mut Scope,
        set_vars: bool,
    ) -> R<bool> {
        let keys: Vec<String> = m.keys.iter().map(|k| self.expand(k, sc)).collect();
        let cmp = m.comparator;
        match m.kind {
            MatchType::Count(rel) => {
                let n = vals.len().to_string();
                Ok(keys.iter().any(|k| relation(rel, compare(cmp, &n, k))))
            }
            MatchType::Value(rel) => Ok(vals
                .iter()
                .any(|v| keys.iter().any(|k| relation(rel, compare(cmp, v, k))))),
            MatchType::Is => Ok(vals
                .iter()
                .any(|v| keys.iter().any(|k| compare(cmp, v, k) == Ordering::Equal))),
            MatchType::Contains => Ok(vals
                .iter()
                .any(|v| keys.iter().any(|k| contains(cmp, v, k)))),
            MatchType::Matches => {
                for v in vals {
                    for k in &keys {
                        if let Some(caps) = glob(cmp, v, k) {
                            if sc.variables && set_vars {
                                let mut all = vec![v.clone()];
                                all.extend(caps);
                                sc.matches = all;
                            }
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            MatchType::Regex => {
                let mut pats = Vec::with_capacity(keys.len());
                for (i, k) in keys.iter().enumerate() {
                    match m.regexes.get(i).and_then(|p| p.clone()) {
                        Some(p) => pats.push(p),
                        None => match build_regex(k, cmp) {
                            Ok(p) => pats.push(p),
                            Err(e) => return Err(format!("regex {k:?}: {e}")),
                        },
                    }
                }
                for v in vals {
                    for p in &pats {
                        self.step()?;
                        if let Some(c) = p.regex.captures(v) {
                            if sc.variables && set_vars {
                                sc.matches = c
                                    .iter()
                                    .map(|g| g.map_or(String::new(), |g| g.as_str().to_string()))
                                    .collect();
                            }
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
        }
    }
}

/// The text of an HTML part for `body :text`: tags dropped (block tags
/// separate words), the contents of `script` and `style` dropped, blank
/// runs made one space, the common entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut skip_until: Option<&str> = None;
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            out.push_str(&rest[..lt]);
        }
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = after[..gt].trim().to_ascii_lowercase();
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '/')
            .collect();
        match skip_until {
            Some(end) if name == end => skip_until = None,
            Some(_) => {}
            None => {
                skip_until = match name.as_str() {
                    "script" => Some("/script"),
                    "style" => Some("/style"),
                    _ => None,
                };
                if matches!(
                    name.as_str(),
                    "br" | "p" | "/p" | "div" | "/div" | "tr" | "li"
                ) {
                    out.push(' ');
                }
            }
        }
        rest = &after[gt + 1..];
    }
    if skip_until.is_none() {
        out.push_str(rest);
    }
    // Blank runs become one space.
    let mut text = String::with_capacity(out.len());
    for w in out.split_whitespace() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(w);
    }
    decode_entities(&text)
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';').filter(|&i| i <= 10);
        let decoded = semi.and_then(|i| {
            let e = &after[..i];
            let c = match e {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                "nbsp" => ' ',
                _ => {
                    let n = e.strip_prefix('#')?;
                    let v = match n.strip_prefix(['x', 'X']) {
                        Some(h) => u32::from_str_radix(h, 16).ok()?,
                        None => n.parse().ok()?,
                    };
                    char::from_u32(v)?
                }
            };
            Some((c, i + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn first_number(s: &str) -> Option<f64> {
    let start = s.find(|c: char| c.is_ascii_digit() || c == '-')?;
    let rest = &s[start..];
    let end = rest
        .char_indices()
        .skip(1)
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

fn apply_modifier(m: Modifier, v: String) -> String {
    match m {
        Modifier::Lower => v.to_ascii_lowercase(),
        Modifier::Upper => v.to_ascii_uppercase(),
        Modifier::LowerFirst | Modifier::UpperFirst => {
            let mut c = v.chars();
            match c.next() {
                None => v,
                Some(f) => {
                    let f = if m == Modifier::LowerFirst {
                        f.to_ascii_lowercase()
                    } else {
                        f.to_ascii_uppercase()
                    };
                    format!("{f}{}", c.as_str())
                }
            }
        }
        Modifier::QuoteWildcard => {
            let mut o = String::with_capacity(v.len());
            for c in v.chars() {
                if matches!(c, '*' | '?' | '\\') {
                    o.push('\\');
                }
                o.push(c);
            }
            o
        }
        Modifier::EncodeUrl => {
            let mut o = String::new();
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    o.push(b as char);
                } else {
                    o.push_str(&format!("%{b:02X}"));
                }
            }
            o
        }
        Modifier::Length => v.chars().count().to_string(),
    }
}

fn relation(r: Relation, o: Ordering) -> bool {
    match r {
        Relation::Gt => o == Ordering::Greater,
        Relation::Ge => o != Ordering::Less,
        Relation::Lt => o == Ordering::Less,
        Relation::Le => o != Ordering::Greater,
        Relation::Eq => o == Ordering::Equal,
        Relation::Ne => o != Ordering::Equal,
    }
}

/// The ordering of two strings under a comparator.
pub fn compare(c: Comparator, a: &str, b: &str) -> Ordering {
    match c {
        Comparator::Octet => a.as_bytes().cmp(b.as_bytes()),
        Comparator::AsciiCasemap => a
            .bytes()
            .map(|x| x.to_ascii_lowercase())
            .cmp(b.bytes().map(|x| x.to_ascii_lowercase())),
        Comparator::AsciiNumeric => {
            let num = |s: &str| -> Option<String> {
                let d: &str = &s[..s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())];
                if d.is_empty() {
                    None
                } else {
                    let t = d.trim_start_matches('0');
                    Some(if t.is_empty() { "0".into() } else { t.into() })
                }
            };
            match (num(a), num(b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(&y)),
            }
        }
    }
}

fn contains(c: Comparator, v: &str, k: &str) -> bool {
    match c {
        Comparator::Octet => v.contains(k),
        Comparator::AsciiCasemap => v.to_ascii_lowercase().contains(&k.to_ascii_lowercase()),
        Comparator::AsciiNumeric => false,
    }
}

fn char_eq(c: Comparator, a: char, b: char) -> bool {
    match c {
        Comparator::AsciiCasemap => a.eq_ignore_ascii_case(&b),
        _ => a == b,
    }
}

/// One element of a `:matches` pattern.
#[derive(Clone, Copy, PartialEq)]
enum G {
    Lit(char),
    One,
}

/// `:matches`: the captures (one per `*` and `?`, in order) when `v`
/// matches `pattern`; leftmost-shortest, linear in segments.
pub fn glob(c: Comparator, v: &str, pattern: &str) -> Option<Vec<String>> {
    if c == Comparator::AsciiNumeric {
        return None;
    }
    // Segments between stars.
    let mut segs: Vec<Vec<G>> = vec![Vec::new()];
    let mut it = pattern.chars();
    while let Some(ch) = it.next() {
        match ch {
            '\\' => {
                if let Some(n) = it.next() {
                    segs.last_mut()?.push(G::Lit(n));
                }
            }
            '*' => segs.push(Vec::new()),
            '?' => segs.last_mut()?.push(G::One),
            ch => segs.last_mut()?.push(G::Lit(ch)),
        }
    }
    let text: Vec<char> = v.chars().collect();
    let seg_at = |seg: &[G], at: usize| -> bool {
        at + seg.len() <= text.len()
            && seg.iter().zip(&text[at..]).all(|(g, &t)| match g {
                G::One => true,
                G::Lit(l) => char_eq(c, *l, t),
            })
    };
    let ones = |seg: &[G], at: usize, caps: &mut Vec<String>| {
        for (i, g) in seg.iter().enumerate() {
            if *g == G::One {
                caps.push(text[at + i].to_string());
            }
        }
    };
    let mut caps = Vec::new();
    let n = segs.len();
    if n == 1 {
        return if segs[0].len() == text.len() && seg_at(&segs[0], 0) {
            ones(&segs[0], 0, &mut caps);
            Some(caps)
        } else {
            None
        };
    }
    // First segment anchored at the start.
    if !seg_at(&segs[0], 0) {
        return None;
    }
    ones(&segs[0], 0, &mut caps);
    let mut pos = segs[0].len();
    let last = &segs[n - 1];
    if text.len() < last.len() {
        return None;
    }
    let last_at = text.len() - last.len();
    for seg in &segs[1..n - 1] {
        // Earliest occurrence, leaving room for the last segment.
        let mut at = pos;
        loop {
            if at + seg.len() > last_at {
                return None;
            }
            if seg_at(seg, at) {
                break;
            }
            at += 1;
        }
        caps.push(text[pos..at].iter().collect());
        ones(seg, at, &mut caps);
        pos = at + seg.len();
    }
    if last_at < pos || !seg_at(last, last_at) {
        return None;
    }
    caps.push(text[pos..last_at].iter().collect());
    ones(last, last_at, &mut caps);
    Some(caps)
}

// ---- dates ----

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day number.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// An RFC 5322 date-time: seconds since the epoch (UTC) and the zone
/// written, in minutes east of UTC.
pub fn parse_date(s: &str) -> Option<(i64, i32)> {
    // Drop comments.
    let mut clean = String::new();
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            c if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    let mut toks: Vec<&str> = clean
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    if toks.first()?.chars().next()?.is_ascii_alphabetic() {
        toks.remove(0);
    }
    let day: i64 = toks.first()?.parse().ok()?;
    let mon = toks.get(1)?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| mon.starts_with(m))? as i64 + 1;
    let ytok = toks.get(2)?;
    let mut year: i64 = ytok.parse().ok()?;
    if ytok.len() == 2 {
        year += if year < 50 { 2000 } else { 1900 };
    } else if ytok.len() == 3 {
        year += 1900;
    }
    let time: Vec<&str> = toks.get(3)?.split(':').collect();
    if time.len() < 2 || time.len() > 3 {
        return None;
    }
    let hh: i64 = time[0].parse().ok()?;
    let mm: i64 = time[1].parse().ok()?;
    let ss: i64 = match time.get(2) {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 || !(0..=9999).contains(&year) {
        return None;
    }
    let zone = match toks.get(4) {
        None => 0,
        Some(z) => parse_zone(z)?,
    };
    let t =
        days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss - i64::from(zone) * 60;
    Some((t, zone))
}

fn parse_zone(z: &str) -> Option<i32> {
    if let Some(sign) = z.chars().next().filter(|c| *c == '+' || *c == '-') {
        let d = &z[1..];
        if d.len() != 4 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: i32 = d[..2].parse().ok()?;
        let m: i32 = d[2..].parse().ok()?;
        let mins = v * 60 + m;
        return Some(if sign == '-' { -mins } else { mins });
    }
    Some(match z.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "EDT" => -4 * 60,
        "EST" | "CDT" => -5 * 60,
        "CST" | "MDT" => -6 * 60,
        "MST" | "PDT" => -7 * 60,
        "PST" => -8 * 60,
        z if z.len() == 1 && z.chars().all(|c| c.is_ascii_alphabetic()) => 0,
        _ => return None,
    })
}

fn zone_str(z: i32, colon: bool) -> String {
    let sign = if z < 0 { '-' } else { '+' };
    let a = z.abs();
    if colon {
        format!("{sign}{:02}:{:02}", a / 60, a % 60)
    } else {
        format!("{sign}{:02}{:02}", a / 60, a % 60)
    }
}

/// A date part (RFC 5260 section 4) of the time `t` shown in zone `z`.
pub fn date_part(t: i64, z: i32, part: DatePart) -> String {
    let local = t.saturating_add(i64::from(z) * 60);
    let days = local.div_euclid(86400);
    let secs = local.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let wd = (days + 4).rem_euclid(7) as usize;
    match part {
        DatePart::Year => format!("{y:04}"),
        DatePart::Month => format!("{m:02}"),
        DatePart::Day => format!("{d:02}"),
        DatePart::Date => format!("{y:04}-{m:02}-{d:02}"),
        DatePart::Julian => (days - days_from_civil(1858, 11, 17)).to_string(),
        DatePart::Hour => format!("{hh:02}"),
        DatePart::Minute => format!("{mm:02}"),
        DatePart::Second => format!("{ss:02}"),
        DatePart::Time => format!("{hh:02}:{mm:02}:{ss:02}"),
        DatePart::Iso8601 => format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{}",
            if z == 0 {
                "Z".to_string()
            } else {
                zone_str(z, true)
            }
        ),
        DatePart::Std11 => {
            let mon = MONTHS[(m - 1) as usize];
            let mut mon = mon.to_string();
            mon[..1].make_ascii_uppercase();
            format!(
                "{}, {d:02} {mon} {y:04} {hh:02}:{mm:02}:{ss:02} {}",
                DAYS[wd],
                zone_str(z, false)
            )
        }
        DatePart::Zone => zone_str(z, false),
        DatePart::Weekday => wd.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::compile;

    #[derive(Default)]
    struct TestHost {
        folders: Vec<String>,
        seen: Vec<String>,
        scripts: Vec<(Location, String, String)>,
        dup_calls: Vec<(String, Option<u64>, bool)>,
    }

    impl Host for TestHost {
        fn mailbox_exists(&mut self, name: &str) -> bool {
            name == "INBOX" || self.folders.iter().any(|f| f == name)
        }
        fn duplicate(&mut self, id: &str, seconds: Option<u64>, last: bool) -> bool {
            self.dup_calls.push((id.to_string(), seconds, last));
            if self.seen.iter().any(|s| s == id) {
                true
            } else {
                self.seen.push(id.to_string());
                false
            }
        }
        fn include(&mut self, location: Location, name: &str) -> Result<Option<Program>, String> {
            match self
                .scripts
                .iter()
                .find(|(l, n, _)| *l == location && n == name)
            {
                None => Ok(None),
                Some((_, _, text)) => compile(text.as_bytes())
                    .map(Some)
                    .map_err(|e| e.to_string()),
            }
        }
    }

    const MSG: &str = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.net>\r\n\
        Cc: \"Carol, C.\" <carol+work@example.org>, team: dave@example.org;\r\n\
        Subject: Hello world\r\nMessage-ID: <m1@example.com>\r\n\
        Date: Mon, 1 Jan 2024 10:00:00 +0200\r\nX-Number: 42\r\n\
        X-Spam-Score: 6.5\r\nX-Encoded: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\n\
        Hi Bob,\r\nthe secret word is banana.\r\n";

    fn env() -> Env {
        Env {
            envelope_from: "alice@example.com".into(),
            envelope_to: "bob-lists@example.net".into(),
            now: 1_704_103_200, // 2024-01-01T10:00:00Z
            spam: Some(SpamSettings {
                header: "X-Spam-Score".into(),
                max_score: 10.0,
            }),
            ..Env::default()
        }
    }

    fn run_with(script: &str, msg: &str, env: &Env, host: &mut TestHost) -> Outcome {
        let p = compile(script.as_bytes()).unwrap_or_else(|e| panic!("{script}: {e}"));
        run(&p, &Message::parse(msg.as_bytes()), env, host)
    }

    fn go(script: &str) -> Outcome {
        run_with(script, MSG, &env(), &mut TestHost::default())
    }

    fn store(folder: &str, flags: &[&str], implicit: bool, keep: bool) -> Action {
        Action::Store {
            folder: folder.into(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            create: false,
            implicit,
            keep,
        }
    }

    fn implicit() -> Vec<Action> {
        vec![store("INBOX", &[], true, false)]
    }

    /// Whether the test `t` (with its requires) is true on MSG.
    fn t(require: &str, test: &str) -> bool {
        let o = go(&format!("require [{require}]; if {test} {{ discard; }}"));
        assert_eq!(o.error, None, "{test}");
        o.discarded
    }

    fn plain(test: &str) -> bool {
        let o = go(&format!("if {test} {{ discard; }}"));
        assert_eq!(o.error, None, "{test}");
        o.discarded
    }

    fn folder_of(o: &Outcome) -> String {
        assert_eq!(o.error, None);
        match o.actions.first() {
            Some(Action::Store { folder, .. }) => folder.clone(),
            other => panic!("not a store: {other:?}"),
        }
    }

    #[test]
    fn empty_script_keeps() {
        let o = go("");
        assert_eq!(o.actions, implicit());
        assert!(!o.discarded);
    }

    #[test]
    fn keep_is_explicit() {
        assert_eq!(go("keep;").actions, vec![store("INBOX", &[], false, true)]);
    }

    #[test]
    fn discard_cancels_the_implicit_keep() {
        let o = go("discard;");
        assert!(o.actions.is_empty());
        assert!(o.discarded);
    }

    #[test]
    fn discard_then_keep_stores() {
        let o = go("discard; keep;");
        assert!(!o.discarded);
        assert_eq!(o.actions, vec![store("INBOX", &[], false, true)]);
    }

    #[test]
    fn stop_ends_the_run() {
        assert_eq!(go("stop; discard;").actions, implicit());
    }

    #[test]
    fn fileinto_cancels_the_implicit_keep() {
        let o = go("require \"fileinto\"; fileinto \"Work\";");
        assert_eq!(o.actions, vec![store("Work", &[], false, false)]);
    }

    #[test]
    fn fileinto_twice_stores_once() {
        let o = go("require \"fileinto\"; fileinto \"Work\"; fileinto \"Work\";");
        assert_eq!(o.actions.len(), 1);
    }

    #[test]
    fn fileinto_copy_keeps_the_implicit_keep() {
        let o = go("require [\"fileinto\", \"copy\"]; fileinto :copy \"Work\";");
        assert_eq!(
            o.actions,
            vec![
                store("Work", &[], false, false),
                store("INBOX", &[], true, false)
            ]
        );
    }

    #[test]
    fn inbox_is_normalised() {
        assert_eq!(
            folder_of(&go("require \"fileinto\"; fileinto \"inbox\";")),
            "INBOX"
        );
        assert_eq!(
            folder_of(&go("require \"fileinto\"; fileinto \"Inbox.Sub\";")),
            "INBOX.Sub"
        );
        assert_eq!(normalise_folder("Inboxes"), "Inboxes");
    }

    #[test]
    fn fileinto_create() {
        let o = go("require [\"fileinto\", \"mailbox\"]; fileinto :create \"New\";");
        assert!(matches!(&o.actions[0], Action::Store { create: true, .. }));
    }

    #[test]
    fn redirect_and_copy() {
        let o = go("redirect \"c@example.org\";");
        assert_eq!(
            o.actions,
            vec![Action::Redirect {
                address: "c@example.org".into()
            }]
        );
        let o = go("require \"copy\"; redirect :copy \"c@example.org\";");
        assert_eq!(o.actions.len(), 2);
        assert!(!o.discarded);
    }

    #[test]
    fn redirect_duplicates_collapse() {
        let o = go("redirect \"c@example.org\"; redirect \"c@EXAMPLE.org\";");
        assert_eq!(o.actions.len(), 1);
        let o = go("redirect \"C@example.org\"; redirect \"c@example.org\";");
        assert_eq!(o.actions.len(), 2);
    }

    #[test]
    fn redirect_limit() {
        let four = "redirect \"a@x.org\"; redirect \"b@x.org\"; redirect \"c@x.org\"; redirect \"d@x.org\";";
        assert_eq!(go(four).error, None);
        let o = go(&format!("{four} redirect \"e@x.org\";"));
        assert!(o
            .error
            .unwrap_or_default()
            .contains("more than 4 redirects"));
        assert!(o.actions.is_empty());
        let e = Env {
            max_redirects: 1,
            ..env()
        };
        let o = run_with(
            "redirect \"a@x.org\"; redirect \"b@x.org\";",
            MSG,
            &e,
            &mut TestHost::default(),
        );
        assert!(o.error.is_some());
    }

    #[test]
    fn redirect_to_a_bad_address_from_variables() {
        let o = go("require \"variables\"; set \"a\" \"nobody\"; redirect \"${a}\";");
        assert!(o.error.unwrap_or_default().contains("invalid address"));
        let o = go("require \"variables\"; set \"a\" \"<x@y.org>\"; redirect \"${a}\";");
        assert_eq!(
            o.actions,
            vec![Action::Redirect {
                address: "x@y.org".into()
            }]
        );
    }

    #[test]
    fn action_limit() {
        let mut s = String::from("require \"fileinto\";");
        for i in 0..40 {
            s.push_str(&format!("fileinto \"F{i}\";"));
        }
        let o = go(&s);
        assert!(o.error.unwrap_or_default().contains("too many actions"));
    }

    #[test]
    fn reject_and_its_conflicts() {
        let o = go("require \"reject\"; reject \"go away\";");
        assert_eq!(
            o.actions,
            vec![Action::Reject {
                reason: "go away".into()
            }]
        );
        assert!(
            go("require [\"reject\", \"fileinto\"]; fileinto \"W\"; reject \"x\";")
                .error
                .is_some()
        );
        assert!(go("require \"reject\"; reject \"x\"; keep;")
            .error
            .is_some());
        assert!(go("require \"reject\"; reject \"x\"; redirect \"a@b.c\";")
            .error
            .is_some());
        assert!(go("require \"reject\"; reject \"x\"; reject \"y\";")
            .error
            .is_some());
        assert!(
            go("require [\"reject\", \"vacation\"]; vacation \"v\"; reject \"x\";")
                .error
                .is_some()
        );
        assert_eq!(go("require \"reject\"; reject \"x\"; discard;").error, None);
    }

    #[test]
    fn ereject_is_a_reject() {
        let o = go("require \"ereject\"; ereject \"no\";");
        assert_eq!(
            o.actions,
            vec![Action::Reject {
                reason: "no".into()
            }]
        );
    }

    #[test]
    fn if_elsif_else() {
        let s = "require \"fileinto\"; if false { fileinto \"A\"; } elsif true { fileinto \"B\"; } else { fileinto \"C\"; }";
        assert_eq!(folder_of(&go(s)), "B");
        let s = "require \"fileinto\"; if false { fileinto \"A\"; } else { fileinto \"C\"; }";
        assert_eq!(folder_of(&go(s)), "C");
    }

    #[test]
    fn boolean_tests() {
        assert!(plain("true"));
        assert!(!plain("false"));
        assert!(plain("not false"));
        assert!(!plain("allof(true, false)"));
        assert!(plain("anyof(false, true)"));
        assert!(plain("allof(true, not false)"));
    }

    #[test]
    fn size_test() {
        let n = MSG.len();
        assert!(plain(&format!("size :over {}", n - 1)));
        assert!(!plain(&format!("size :over {n}")));
        assert!(plain(&format!("size :under {}", n + 1)));
        assert!(!plain(&format!("size :under {n}")));
    }

    #[test]
    fn exists_test() {
        assert!(plain("exists \"subject\""));
        assert!(plain("exists [\"From\", \"To\"]"));
        assert!(!plain("exists [\"From\", \"X-None\"]"));
    }

    #[test]
    fn header_is_contains_matches() {
        assert!(plain("header :is \"Subject\" \"hello WORLD\""));
        assert!(!plain(
            "header :is :comparator \"i;octet\" \"Subject\" \"hello world\""
        ));
        assert!(plain("header :contains \"Subject\" \"LO WO\""));
        assert!(plain("header :matches \"Subject\" \"H*o w?rld\""));
        assert!(!plain("header :matches \"Subject\" \"H*x\""));
        assert!(plain(
            "header :contains [\"X-None\", \"Subject\"] [\"zz\", \"world\"]"
        ));
        assert!(!plain("header :contains \"X-None\" \"\""));
    }

    #[test]
    fn header_encoded_words_are_decoded() {
        assert!(plain("header :is \"X-Encoded\" \"Grüße\""));
    }

    #[test]
    fn matches_wildcards_and_escapes() {
        let c = Comparator::AsciiCasemap;
        assert_eq!(glob(c, "abc", "a*c"), Some(vec!["b".to_string()]));
        assert_eq!(glob(c, "abc", "*"), Some(vec!["abc".to_string()]));
        assert_eq!(glob(c, "", "*"), Some(vec![String::new()]));
        assert_eq!(glob(c, "a*b", "a\\*b"), Some(vec![]));
        assert_eq!(glob(c, "axb", "a\\*b"), None);
        assert_eq!(glob(c, "ab", "???"), None);
        assert_eq!(glob(c, "42", "?ello*"), None);
        assert_eq!(
            glob(c, "[acme] [fwd] hi", "[*] *"),
            Some(vec!["acme".to_string(), "[fwd] hi".to_string()])
        );
        assert_eq!(
            glob(c, "xaya", "*a*"),
            Some(vec!["x".to_string(), "ya".to_string()])
        );
        assert_eq!(glob(Comparator::Octet, "ABC", "a*"), None);
    }

    #[test]
    fn matches_is_linear_on_hostile_patterns() {
        let v = "a".repeat(20_000);
        let p = format!("{}b", "*a".repeat(200));
        let start = std::time::Instant::now();
        assert_eq!(glob(Comparator::Octet, &v, &p), None);
        assert!(start.elapsed().as_secs() < 5);
    }

    #[test]
    fn match_variables() {
        let s = "require [\"variables\", \"fileinto\"]; if header :matches \"Subject\" \"* *\" { fileinto \"${2}-${1}-${0}\"; }";
        assert_eq!(folder_of(&go(s)), "world-Hello-Hello world");
    }

    #[test]
    fn match_variables_keep_their_value_when_a_match_fails() {
        let s = "require [\"variables\", \"fileinto\"]; if header :matches \"Subject\" \"*o*\" {} \
                 if header :matches \"Subject\" \"x*\" {} fileinto \"${1}|${2}\";";
        assert_eq!(folder_of(&go(s)), "Hell| world");
    }

    #[test]
    fn regex_and_groups() {
        assert!(t("\"regex\"", "header :regex \"Subject\" \"^hello\""));
        assert!(!t(
            "\"regex\"",
            "header :regex :comparator \"i;octet\" \"Subject\" \"^hello\""
        ));
        let s = "require [\"regex\", \"variables\", \"fileinto\"]; if header :regex \"Subject\" \"^(H[a-z]+) (w.*)$\" { fileinto \"${2}${1}\"; }";
        assert_eq!(folder_of(&go(s)), "worldHello");
    }

    #[test]
    fn regex_built_at_run_time() {
        let s = "require [\"regex\", \"variables\"]; set \"p\" \"w.rld$\"; if header :regex \"Subject\" \"${p}\" { discard; }";
        assert!(go(s).discarded);
        let s = "require [\"regex\", \"variables\"];\nset \"p\" \"(\";\nif header :regex \"Subject\" \"${p}\" { discard; }";
        let e = go(s).error.unwrap_or_default();
        assert!(e.starts_with("line 3: regex \"(\""), "{e}");
    }

    #[test]
    fn ascii_numeric_comparator() {
        let c = Comparator::AsciiNumeric;
        assert_eq!(compare(c, "042", "42"), Ordering::Equal);
        assert_eq!(compare(c, "9", "10"), Ordering::Less);
        assert_eq!(compare(c, "abc", "99999"), Ordering::Greater);
        assert_eq!(compare(c, "abc", "x"), Ordering::Equal);
        assert_eq!(compare(c, "12abc", "12"), Ordering::Equal);
        assert!(t(
            "\"comparator-i;ascii-numeric\"",
            "header :is :comparator \"i;ascii-numeric\" \"X-Number\" \"0042\""
        ));
    }

    #[test]
    fn casemap_and_octet_ordering() {
        assert_eq!(
            compare(Comparator::AsciiCasemap, "ABC", "abc"),
            Ordering::Equal
        );
        assert_eq!(compare(Comparator::Octet, "ABC", "abc"), Ordering::Less);
    }

    #[test]
    fn relational_value() {
        let r = "\"relational\", \"comparator-i;ascii-numeric\"";
        assert!(t(
            r,
            "header :value \"gt\" :comparator \"i;ascii-numeric\" \"X-Number\" \"41\""
        ));
        assert!(!t(
            r,
            "header :value \"lt\" :comparator \"i;ascii-numeric\" \"X-Number\" \"41\""
        ));
        assert!(t(
            r,
            "header :value \"ne\" :comparator \"i;ascii-numeric\" \"X-Number\" \"41\""
        ));
        assert!(t(
            r,
            "header :value \"ge\" :comparator \"i;ascii-numeric\" \"X-Number\" \"42\""
        ));
        assert!(t(
            r,
            "header :value \"le\" :comparator \"i;ascii-numeric\" \"X-Number\" \"42\""
        ));
        assert!(t(
            r,
            "header :value \"eq\" :comparator \"i;ascii-numeric\" \"X-Number\" \"42\""
        ));
        // Casemap compares as strings: "42" > "100".
        assert!(t(r, "header :value \"gt\" \"X-Number\" \"100\""));
    }

    #[test]
    fn relational_count() {
        let r = "\"relational\", \"comparator-i;ascii-numeric\"";
        assert!(t(
            r,
            "address :count \"eq\" :comparator \"i;ascii-numeric\" \"Cc\" \"2\""
        ));
        assert!(t(
            r,
            "header :count \"eq\" :comparator \"i;ascii-numeric\" \"X-None\" \"0\""
        ));
        assert!(t(
            r,
            "header :count \"ge\" :comparator \"i;ascii-numeric\" [\"To\", \"From\"] \"2\""
        ));
    }

    #[test]
    fn address_parts() {
        assert!(plain("address :all \"From\" \"alice@example.com\""));
        assert!(plain("address :localpart \"From\" \"ALICE\""));
        assert!(plain("address :domain \"To\" \"example.net\""));
        assert!(plain("address :is \"Cc\" \"dave@example.org\""));
        assert!(plain("address :localpart \"Cc\" \"carol+work\""));
        assert!(!plain("address :domain \"Subject\" \"world\""));
    }

    #[test]
    fn address_header_without_addresses() {
        let m = "To: bob\r\nBcc: undisclosed-recipients:;\r\nCc: a@b.c, bob\r\nReply-To: \"a b\"@x.org\r\n\r\n";
        let h = &mut TestHost::default();
        let yes = |test: &str, h: &mut TestHost| {
            run_with(&format!("if {test} {{ discard; }}"), m, &env(), h).discarded
        };
        assert!(yes("address :is \"To\" \"bob\"", h));
        assert!(!yes("address :localpart \"To\" \"bob\"", h));
        assert!(yes("address :contains \"Bcc\" \"undisclosed\"", h));
        assert!(!yes("address :is \"Cc\" \"bob\"", h));
        assert!(yes("address :is \"Reply-To\" \"\\\"a b\\\"@x.org\"", h));
        assert!(yes("address :localpart \"Reply-To\" \"a b\"", h));
    }

    #[test]
    fn case_modifiers_change_ascii_only() {
        assert_eq!(apply_modifier(Modifier::Upper, "köln".into()), "KöLN");
        assert_eq!(
            apply_modifier(Modifier::UpperFirst, "ärger".into()),
            "ärger"
        );
    }

    #[test]
    fn subaddress_parts() {
        assert!(t("\"subaddress\"", "address :user \"Cc\" \"dave\""));
        let e = Env {
            extension_delimiter: "+-".into(),
            ..env()
        };
        let s = "require \"subaddress\"; if address :detail \"Cc\" \"work\" { discard; }";
        assert!(run_with(s, MSG, &e, &mut TestHost::default()).discarded);
        let s = "require \"subaddress\"; if address :user \"Cc\" \"carol\" { discard; }";
        assert!(run_with(s, MSG, &e, &mut TestHost::default()).discarded);
        // No delimiter: :detail has no value.
        let s = "require \"subaddress\"; if address :detail :matches \"From\" \"*\" { discard; }";
        assert!(!run_with(s, MSG, &e, &mut TestHost::default()).discarded);
    }

    #[test]
    fn envelope_test() {
        let r = "\"envelope\", \"subaddress\"";
        assert!(t(r, "envelope \"from\" \"alice@example.com\""));
        assert!(t(r, "envelope :domain \"to\" \"example.net\""));
        assert!(t(r, "envelope :user \"to\" \"bob\""));
        assert!(t(r, "envelope :detail \"to\" \"lists\""));
        assert!(!t(r, "envelope :localpart \"from\" \"bob\""));
    }

    #[test]
    fn envelope_empty_sender() {
        let e = Env {
            envelope_from: String::new(),
            ..env()
        };
        let s = "require \"envelope\"; if envelope :all \"from\" \"\" { discard; }";
        assert!(run_with(s, MSG, &e, &mut TestHost::default()).discarded);
        let s = "require \"envelope\"; if envelope :domain :matches \"from\" \"*\" { discard; }";
        assert!(!run_with(s, MSG, &e, &mut TestHost::default()).discarded);
    }

    #[test]
    fn body_text_raw_content() {
        let r = "\"body\"";
        assert!(t(r, "body :contains \"BANANA\""));
        assert!(t(r, "body :raw :contains \"secret word\""));
        assert!(t(r, "body :content \"text\" :contains \"banana\""));
        assert!(!t(r, "body :content \"image\" :contains \"banana\""));
        assert!(!t(r, "body :contains \"cherry\""));
    }

    #[test]
    fn body_multipart_decoded() {
        let m = "Content-Type: multipart/alternative; boundary=zz\r\n\r\n--zz\r\n\
                 Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                 caf=E9\r\n--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                 c2VjcmV0\r\n--zz--\r\n";
        let h = &mut TestHost::default();
        let s = "require \"body\"; if body :text :contains \"café\" { discard; }";
        assert!(run_with(s, m, &env(), h).discarded);
        let s = "require \"body\"; if body :content \"application/octet-stream\" :is \"secret\" { discard; }";
        assert!(run_with(s, m, &env(), h).discarded);
        let s = "require \"body\"; if body :text :contains \"secret\" { discard; }";
        assert!(!run_with(s, m, &env(), h).discarded);
        let s = "require \"body\"; if body :raw :contains \"c2VjcmV0\" { discard; }";
        assert!(run_with(s, m, &env(), h).discarded);
    }

    #[test]
    fn date_parts() {
        let (t0, z) = parse_date("Mon, 1 Jan 2024 10:00:00 +0200").unwrap_or((0, 99));
        assert_eq!(z, 120);
        assert_eq!(date_part(t0, 0, DatePart::Time), "08:00:00");
        assert_eq!(date_part(t0, z, DatePart::Hour), "10");
        assert_eq!(date_part(t0, 0, DatePart::Date), "2024-01-01");
        assert_eq!(date_part(t0, 0, DatePart::Year), "2024");
        assert_eq!(date_part(t0, 0, DatePart::Month), "01");
        assert_eq!(date_part(t0, 0, DatePart::Day), "01");
        assert_eq!(date_part(t0, 0, DatePart::Minute), "00");
        assert_eq!(date_part(t0, 0, DatePart::Second), "00");
        assert_eq!(date_part(t0, 0, DatePart::Weekday), "1");
        assert_eq!(date_part(t0, 0, DatePart::Julian), "60310");
        assert_eq!(date_part(t0, -300, DatePart::Date), "2024-01-01");
        assert_eq!(date_part(t0, -600, DatePart::Date), "2023-12-31");
        assert_eq!(date_part(t0, z, DatePart::Zone), "+0200");
        assert_eq!(
            date_part(t0, z, DatePart::Iso8601),
            "2024-01-01T10:00:00+02:00"
        );
        assert_eq!(date_part(t0, 0, DatePart::Iso8601), "2024-01-01T08:00:00Z");
        assert_eq!(
            date_part(t0, z, DatePart::Std11),
            "Mon, 01 Jan 2024 10:00:00 +0200"
        );
    }

    #[test]
    fn date_parts_at_the_ends_of_time() {
        for t in [i64::MIN, i64::MAX, 0, -1] {
            for p in [DatePart::Std11, DatePart::Julian, DatePart::Weekday] {
                assert!(!date_part(t, 840, p).is_empty());
            }
        }
    }

    #[test]
    fn date_parsing_variants() {
        assert!(parse_date("1 Jan 2024 10:00 GMT").is_some());
        assert_eq!(
            parse_date("Tue, 2 Jan 24 00:00:00 EST").map(|x| x.1),
            Some(-300)
        );
        assert!(parse_date("not a date").is_none());
        assert!(parse_date("Mon, 32 Jan 2024 10:00:00 +0000").is_none());
        assert_eq!(
            parse_date("Thu, 1 Jan 1970 00:00:00 +0000 (UTC)"),
            Some((0, 0))
        );
    }

    #[test]
    fn date_test_zones() {
        let r = "\"date\"";
        assert!(t(r, "date :originalzone \"Date\" \"hour\" \"10\""));
        assert!(t(r, "date :zone \"+0000\" \"Date\" \"hour\" \"08\""));
        // Local zone from the Env.
        let e = Env {
            local_offset: -60,
            ..env()
        };
        let s = "require \"date\"; if date \"Date\" \"hour\" \"07\" { discard; }";
        assert!(run_with(s, MSG, &e, &mut TestHost::default()).discarded);
        assert!(!t(r, "date :matches \"X-None\" \"year\" \"*\""));
    }

    #[test]
    fn currentdate_uses_the_env_clock() {
        let r = "\"date\"";
        assert!(t(r, "currentdate \"date\" \"2024-01-01\""));
        assert!(t(r, "currentdate :zone \"-1100\" \"date\" \"2023-12-31\""));
        assert!(t(r, "currentdate \"iso8601\" \"2024-01-01T10:00:00Z\""));
    }

    #[test]
    fn set_modifiers() {
        assert_eq!(apply_modifier(Modifier::Lower, "AbC".into()), "abc");
        assert_eq!(apply_modifier(Modifier::Upper, "AbC".into()), "ABC");
        assert_eq!(apply_modifier(Modifier::UpperFirst, "abc".into()), "Abc");
        assert_eq!(apply_modifier(Modifier::LowerFirst, "ABC".into()), "aBC");
        assert_eq!(
            apply_modifier(Modifier::QuoteWildcard, "a*b?\\".into()),
            "a\\*b\\?\\\\"
        );
        assert_eq!(apply_modifier(Modifier::Length, "Grüße".into()), "5");
        assert_eq!(
            apply_modifier(Modifier::EncodeUrl, "a b/ü".into()),
            "a%20b%2F%C3%BC"
        );
    }

    #[test]
    fn set_applies_modifiers_in_precedence_order() {
        let s = "require [\"variables\", \"fileinto\"]; set :length :upper \"a\" \"abc\"; fileinto \"L${a}\";";
        assert_eq!(folder_of(&go(s)), "L3");
        let s = "require [\"variables\", \"fileinto\"]; set :upperfirst :lower \"a\" \"wORK\"; fileinto \"${a}\";";
        assert_eq!(folder_of(&go(s)), "Work");
    }

    #[test]
    fn variables_names_are_case_insensitive_and_unset_is_empty() {
        let s = "require [\"variables\", \"fileinto\"]; set \"Foo\" \"W\"; fileinto \"${FOO}${nope}x\";";
        assert_eq!(folder_of(&go(s)), "Wx");
    }

    #[test]
    fn variable_size_is_bounded() {
        let mut s = String::from("require \"variables\"; set \"a\" \"0123456789abcdef\";");
        for _ in 0..12 {
            s.push_str("set \"a\" \"${a}${a}\";");
        }
        s.push_str("set :length \"n\" \"${a}\"; if string :is \"${n}\" \"4096\" { discard; }");
        assert!(go(&s).discarded);
        assert_eq!(truncate("ü".repeat(3000)).len(), MAX_VARIABLE_SIZE);
    }

    #[test]
    fn string_test() {
        let r = "\"variables\", \"relational\", \"comparator-i;ascii-numeric\"";
        assert!(t(r, "string :is \"\" \"\""));
        assert!(t(r, "string :contains [\"abc\", \"x\"] \"b\""));
        assert!(t(
            r,
            "string :count \"eq\" :comparator \"i;ascii-numeric\" [\"a\", \"\", \"b\"] \"2\""
        ));
    }

    #[test]
    fn imap4flags_internal_variable() {
        let o =
            go("require \"imap4flags\"; addflag [\"\\\\Seen\", \"$A\"]; removeflag \"\\\\seen\";");
        assert_eq!(o.actions, vec![store("INBOX", &["$A"], true, false)]);
        let o = go("require \"imap4flags\"; addflag \"$A\"; setflag \"$B $C\";");
        assert_eq!(o.actions, vec![store("INBOX", &["$B", "$C"], true, false)]);
        let o = go("require \"imap4flags\"; addflag \"$A\"; addflag \"$a\";");
        assert_eq!(o.actions, vec![store("INBOX", &["$A"], true, false)]);
    }

    #[test]
    fn imap4flags_on_fileinto_and_keep() {
        let o = go("require [\"imap4flags\", \"fileinto\"]; addflag \"$X\"; fileinto \"W\"; fileinto :flags \"$Y \\\\Seen\" \"V\";");
        assert_eq!(
            o.actions,
            vec![
                store("W", &["$X"], false, false),
                store("V", &["$Y", "\\Seen"], false, false)
            ]
        );
        let o = go("require \"imap4flags\"; keep :flags \"\\\\Flagged\";");
        assert_eq!(o.actions, vec![store("INBOX", &["\\Flagged"], false, true)]);
    }

    #[test]
    fn imap4flags_named_variable_and_hasflag() {
        let r = "\"imap4flags\", \"variables\", \"relational\", \"comparator-i;ascii-numeric\"";
        let o = go("require [\"imap4flags\", \"variables\"]; addflag \"v\" \"a b\"; removeflag \"v\" \"a\"; if hasflag \"v\" \"b\" { discard; }");
        assert!(o.discarded);
        assert!(!t(r, "hasflag \"\\\\Seen\""));
        let o = go("require [\"imap4flags\", \"relational\", \"comparator-i;ascii-numeric\"]; addflag \"a b c\"; if hasflag :count \"eq\" :comparator \"i;ascii-numeric\" \"3\" { discard; }");
        assert!(o.discarded);
        let o = go("require \"imap4flags\"; addflag \"$Label1\"; if hasflag :contains \"label\" { discard; }");
        assert!(o.discarded);
    }

    #[test]
    fn implicit_keep_and_explicit_inbox_store() {
        let o = go("require [\"copy\", \"fileinto\"]; fileinto :copy \"INBOX\";");
        assert_eq!(o.actions, vec![store("INBOX", &[], false, false)]);
        let o = go("require [\"copy\", \"fileinto\", \"imap4flags\"]; fileinto :copy :flags \"$A\" \"INBOX\"; addflag \"$B\";");
        assert_eq!(o.actions.len(), 2);
    }

    #[test]
    fn mailbox_exists_uses_the_host() {
        let mut h = TestHost {
            folders: vec!["Work".into()],
            ..TestHost::default()
        };
        let s = "require \"mailbox\"; if mailboxexists [\"Work\", \"inbox\"] { discard; }";
        assert!(run_with(s, MSG, &env(), &mut h).discarded);
        let s = "require \"mailbox\"; if mailboxexists [\"Work\", \"Nope\"] { discard; }";
        assert!(!run_with(s, MSG, &env(), &mut h).discarded);
    }

    #[test]
    fn spamtest_scale() {
        let msg = |score: &str| format!("X-Spam-Score: {score}\r\n\r\nx\r\n");
        let value = |score: &str, percent: bool| {
            let s = if percent {
                "require [\"spamtestplus\", \"variables\", \"fileinto\"]; if spamtest :percent :matches \"*\" { fileinto \"S${1}\"; }"
            } else {
                "require [\"spamtest\", \"variables\", \"fileinto\"]; if spamtest :matches \"*\" { fileinto \"S${1}\"; }"
            };
            folder_of(&run_with(s, &msg(score), &env(), &mut TestHost::default()))
        };
        assert_eq!(value("0", false), "S1");
        assert_eq!(value("-3", false), "S1");
        assert_eq!(value("1.0", false), "S1");
        assert_eq!(value("5.5", false), "S5");
        assert_eq!(value("10", false), "S10");
        assert_eq!(value("25", false), "S10");
        assert_eq!(value("6.5", true), "S65");
        assert_eq!(value("30", true), "S100");
        let s = "require [\"spamtest\", \"variables\", \"fileinto\"]; if spamtest :matches \"*\" { fileinto \"S${1}\"; }";
        assert_eq!(
            folder_of(&run_with(
                s,
                "Subject: x\r\n\r\n",
                &env(),
                &mut TestHost::default()
            )),
            "S0"
        );
        let e = Env {
            spam: None,
            ..env()
        };
        assert_eq!(
            folder_of(&run_with(s, MSG, &e, &mut TestHost::default())),
            "S0"
        );
    }

    #[test]
    fn duplicate_uses_the_host() {
        let mut h = TestHost::default();
        let s = "require \"duplicate\"; if duplicate { discard; }";
        assert!(!run_with(s, MSG, &env(), &mut h).discarded);
        assert!(run_with(s, MSG, &env(), &mut h).discarded);
        assert_eq!(
            h.dup_calls[0],
            ("\0<m1@example.com>".to_string(), None, false)
        );
        let s = "require \"duplicate\"; if duplicate :handle \"h\" :uniqueid \"u\" :seconds 60 :last { discard; }";
        run_with(s, MSG, &env(), &mut h);
        assert_eq!(h.dup_calls[2], ("h\0u".to_string(), Some(60), true));
        let s = "require \"duplicate\"; if duplicate :header \"Subject\" { discard; }";
        run_with(s, MSG, &env(), &mut h);
        assert_eq!(h.dup_calls[3].0, "\0Hello world");
    }

    #[test]
    fn duplicate_without_message_id_is_false_and_untracked() {
        let mut h = TestHost::default();
        let s = "require \"duplicate\"; if duplicate { discard; }";
        assert!(!run_with(s, "Subject: x\r\n\r\n", &env(), &mut h).discarded);
        assert!(h.dup_calls.is_empty());
    }

    #[test]
    fn vacation_action() {
        let o = go("require \"vacation\"; vacation :days 3 :subject \"Away\" :from \"bob@example.net\" :addresses [\"b@x.org\"] :handle \"h\" \"Back soon\";");
        assert_eq!(
            o.actions[0],
            Action::Vacation(VacationReply {
                reason: "Back soon".into(),
                mime: false,
                subject: Some("Away".into()),
                from: Some("bob@example.net".into()),
                addresses: vec!["b@x.org".into()],
                period: Some(3 * 86400),
                handle: Some("h".into()),
            })
        );
        assert_eq!(o.actions[1], store("INBOX", &[], true, false));
    }

    #[test]
    fn vacation_periods_and_variables() {
        let o = go("require \"vacation-seconds\"; vacation :seconds 30 \"x\";");
        assert!(matches!(&o.actions[0], Action::Vacation(v) if v.period == Some(30)));
        let o = go("require \"vacation\"; vacation \"x\";");
        assert!(matches!(&o.actions[0], Action::Vacation(v) if v.period.is_none()));
        let o = go("require [\"vacation\", \"variables\"]; set \"s\" \"Hi\"; vacation :mime :subject \"Re: ${s}\" \"${s}\";");
        assert!(
            matches!(&o.actions[0], Action::Vacation(v) if v.subject.as_deref() == Some("Re: Hi") && v.mime && v.reason == "Hi")
        );
    }

    #[test]
    fn vacation_twice_is_an_error() {
        assert!(go("require \"vacation\"; vacation \"x\"; vacation \"y\";")
            .error
            .is_some());
    }

    fn with_scripts(scripts: &[(Location, &str, &str)]) -> TestHost {
        TestHost {
            scripts: scripts
                .iter()
                .map(|(l, n, t)| (*l, n.to_string(), t.to_string()))
                .collect(),
            ..TestHost::default()
        }
    }

    #[test]
    fn include_personal_and_global() {
        let mut h = with_scripts(&[
            (
                Location::Personal,
                "a",
                "require \"fileinto\"; fileinto \"A\";",
            ),
            (
                Location::Global,
                "a",
                "require \"fileinto\"; fileinto \"G\";",
            ),
        ]);
        let o = run_with(
            "require \"include\"; include \"a\"; include :global \"a\";",
            MSG,
            &env(),
            &mut h,
        );
        assert_eq!(
            o.actions,
            vec![store("A", &[], false, false), store("G", &[], false, false)]
        );
    }

    #[test]
    fn include_missing_optional_and_not() {
        let mut h = TestHost::default();
        let o = run_with(
            "require \"include\"; include :optional \"x\"; discard;",
            MSG,
            &env(),
            &mut h,
        );
        assert!(o.discarded);
        let o = run_with("require \"include\"; include \"x\";", MSG, &env(), &mut h);
        assert!(o.error.unwrap_or_default().contains("not found"));
        // Even when the include would not run.
        let o = run_with(
            "require \"include\"; if false { include \"x\"; }",
            MSG,
            &env(),
            &mut h,
        );
        assert!(o.error.is_some());
    }

    #[test]
    fn include_loop_and_depth() {
        let mut h = with_scripts(&[
            (
                Location::Personal,
                "a",
                "require \"include\"; include \"b\";",
            ),
            (
                Location::Personal,
                "b",
                "require \"include\"; include \"a\";",
            ),
        ]);
        let o = run_with("require \"include\"; include \"a\";", MSG, &env(), &mut h);
        assert!(o.error.unwrap_or_default().contains("include loop"));
        let chain: Vec<(Location, String, String)> = (0..15)
            .map(|i| {
                (
                    Location::Personal,
                    format!("s{i}"),
                    format!("require \"include\"; include \"s{}\";", i + 1),
                )
            })
            .collect();
        let mut h = TestHost {
            scripts: chain,
            ..TestHost::default()
        };
        let o = run_with("require \"include\"; include \"s0\";", MSG, &env(), &mut h);
        assert!(o.error.unwrap_or_default().contains("deeper than 10"));
    }

    #[test]
    fn include_broken_script() {
        let mut h = with_scripts(&[(Location::Personal, "a", "frobnicate;")]);
        let o = run_with("require \"include\"; include \"a\";", MSG, &env(), &mut h);
        assert!(o.error.unwrap_or_default().contains("script \"a\""));
    }

    #[test]
    fn include_return_and_stop() {
        let mut h = with_scripts(&[
            (
                Location::Personal,
                "r",
                "require \"include\"; return; discard;",
            ),
            (Location::Personal, "s", "stop;"),
        ]);
        let o = run_with(
            "require \"include\"; include \"r\"; redirect \"x@y.org\";",
            MSG,
            &env(),
            &mut h,
        );
        assert_eq!(o.actions.len(), 1);
        let o = run_with(
            "require \"include\"; include \"s\"; discard;",
            MSG,
            &env(),
            &mut h,
        );
        assert_eq!(o.actions, implicit());
    }

    #[test]
    fn include_once() {
        let mut h = with_scripts(&[(
            Location::Personal,
            "a",
            "require \"vacation\"; vacation \"x\";",
        )]);
        let o = run_with(
            "require \"include\"; include :once \"a\"; include :once \"a\";",
            MSG,
            &env(),
            &mut h,
        );
        assert_eq!(o.error, None);
        let o = run_with(
            "require \"include\"; include \"a\"; include \"a\";",
            MSG,
            &env(),
            &mut h,
        );
        assert!(o.error.is_some());
    }

    #[test]
    fn include_global_variables() {
        let mut h = with_scripts(&[
            (Location::Personal, "g", "require [\"include\", \"variables\", \"fileinto\"]; global \"f\"; fileinto \"${f}\"; set \"f\" \"Back\";"),
            (Location::Personal, "l", "require [\"variables\", \"fileinto\"]; fileinto \"L${f}\";"),
        ]);
        let s = "require [\"include\", \"variables\", \"fileinto\"]; global \"f\"; set \"f\" \"Work\"; include \"g\"; include \"l\"; fileinto \"${f}\";";
        let o = run_with(s, MSG, &env(), &mut h);
        assert_eq!(
            o.actions,
            vec![
                store("Work", &[], false, false),
                store("L", &[], false, false),
                store("Back", &[], false, false)
            ]
        );
    }

    #[test]
    fn include_shares_flags() {
        let mut h = with_scripts(&[(
            Location::Personal,
            "a",
            "require \"imap4flags\"; addflag \"$I\";",
        )]);
        let o = run_with(
            "require [\"include\", \"imap4flags\"]; include \"a\";",
            MSG,
            &env(),
            &mut h,
        );
        assert_eq!(o.actions, vec![store("INBOX", &["$I"], true, false)]);
    }

    #[test]
    fn return_in_the_main_script_stops() {
        assert_eq!(
            go("require \"include\"; return; discard;").actions,
            implicit()
        );
    }

    #[test]
    fn an_error_empties_the_actions() {
        let o = go("require \"fileinto\"; fileinto \"W\"; redirect \"a@b.c\"; redirect \"b@b.c\"; redirect \"c@b.c\"; redirect \"d@b.c\"; redirect \"e@b.c\";");
        assert!(o.actions.is_empty());
        assert!(!o.discarded);
    }

    #[test]
    fn encoded_character_in_strings() {
        let s = "require [\"fileinto\", \"encoded-character\"]; fileinto \"${hex:57}ork${unicode:fc}\";";
        assert_eq!(folder_of(&go(s)), "Workü");
    }

    #[test]
    fn no_host_has_only_inbox() {
        let mut h = NoHost;
        assert!(h.mailbox_exists("INBOX"));
        assert!(!h.mailbox_exists("Work"));
        assert!(!h.duplicate("x", None, false));
        assert_eq!(h.include(Location::Personal, "x"), Ok(None));
    }

    #[test]
    fn body_sets_no_match_variables() {
        let s = "require [\"body\", \"variables\", \"fileinto\"]; if body :matches \"*banana*\" { fileinto \"[${1}]\"; }";
        assert_eq!(folder_of(&go(s)), "[]");
    }

    #[test]
    fn html_text_for_the_body_test() {
        assert_eq!(
            html_to_text("<html><head><title>T</title><style>p {}</style></head><body><p>Hi <b>there</b> &amp; &#233;&#x41;</p>\r\n<script>x</script></body></html>"),
            "T Hi there & éA"
        );
        assert_eq!(decode_entities("a & b &unknown; &"), "a & b &unknown; &");
    }

    #[test]
    fn first_number_in_a_header() {
        assert_eq!(first_number("6.5"), Some(6.5));
        assert_eq!(first_number("score=12.25 required=5"), Some(12.25));
        assert_eq!(first_number("no"), None);
    }
}
