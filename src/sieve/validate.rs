//! From the generic AST to the typed [`Program`]: every command and test
//! known, its extension required, its arguments of the right kinds and
//! counts, tags known and not repeated, comparators and relational
//! operators valid, constant regexes compiled, strings decoded.

use super::ast::{self, Arg, Tests};
use super::*;

/// Check `commands` and build the program.
pub fn validate(commands: Vec<ast::Command>) -> Result<Program, CompileError> {
    let mut v = Validator {
        exts: Vec::new(),
        regexes: std::cell::Cell::new(0),
    };
    let mut rest = commands.into_iter().peekable();
    while let Some(c) = rest.next_if(|c| c.name.eq_ignore_ascii_case("require")) {
        v.require(c)?;
    }
    let commands = v.block(rest.collect(), true)?;
    Ok(Program {
        extensions: v.exts,
        commands,
    })
}

struct Validator {
    exts: Vec<Ext>,
    /// `:regex` keys seen so far (see `MAX_REGEXES`).
    regexes: std::cell::Cell<usize>,
}

/// What a tag or positional argument holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A tag standing alone.
    Flag,
    Str,
    List,
    Num,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Flag => "nothing",
            Kind::Str => "a string",
            Kind::List => "a string list",
            Kind::Num => "a number",
        }
    }
}

/// A tag a command or test accepts. Tags of one group exclude each other.
struct TagSpec {
    name: &'static str,
    group: &'static str,
    kind: Kind,
    ext: Option<Ext>,
}

const fn tag(name: &'static str, group: &'static str, kind: Kind, ext: Option<Ext>) -> TagSpec {
    TagSpec {
        name,
        group,
        kind,
        ext,
    }
}

const MATCH_TYPE: &[TagSpec] = &[
    tag("is", "match type", Kind::Flag, None),
    tag("contains", "match type", Kind::Flag, None),
    tag("matches", "match type", Kind::Flag, None),
    tag("regex", "match type", Kind::Flag, Some(Ext::Regex)),
    tag("count", "match type", Kind::Str, Some(Ext::Relational)),
    tag("value", "match type", Kind::Str, Some(Ext::Relational)),
];
const COMPARATOR: &[TagSpec] = &[tag("comparator", "comparator", Kind::Str, None)];
const ADDRESS_PART: &[TagSpec] = &[
    tag("all", "address part", Kind::Flag, None),
    tag("localpart", "address part", Kind::Flag, None),
    tag("domain", "address part", Kind::Flag, None),
    tag("user", "address part", Kind::Flag, Some(Ext::Subaddress)),
    tag("detail", "address part", Kind::Flag, Some(Ext::Subaddress)),
];
const FLAGS: &[TagSpec] = &[tag("flags", "flags", Kind::List, Some(Ext::Imap4Flags))];
const COPY: &[TagSpec] = &[tag("copy", "copy", Kind::Flag, Some(Ext::Copy))];
const CREATE: &[TagSpec] = &[tag("create", "create", Kind::Flag, Some(Ext::Mailbox))];
const SIZE: &[TagSpec] = &[
    tag("over", "size", Kind::Flag, None),
    tag("under", "size", Kind::Flag, None),
];
const BODY_TRANSFORM: &[TagSpec] = &[
    tag("raw", "body transform", Kind::Flag, None),
    tag("content", "body transform", Kind::List, None),
    tag("text", "body transform", Kind::Flag, None),
];
const DATE_ZONE: &[TagSpec] = &[
    tag("zone", "zone", Kind::Str, None),
    tag("originalzone", "zone", Kind::Flag, None),
];
const CURRENTDATE_ZONE: &[TagSpec] = &[tag("zone", "zone", Kind::Str, None)];
const VACATION: &[TagSpec] = &[
    tag("days", "period", Kind::Num, None),
    tag("seconds", "period", Kind::Num, Some(Ext::VacationSeconds)),
    tag("subject", "subject", Kind::Str, None),
    tag("from", "from", Kind::Str, None),
    tag("addresses", "addresses", Kind::List, None),
    tag("mime", "mime", Kind::Flag, None),
    tag("handle", "handle", Kind::Str, None),
];
const INCLUDE: &[TagSpec] = &[
    tag("personal", "location", Kind::Flag, None),
    tag("global", "location", Kind::Flag, None),
    tag("once", "once", Kind::Flag, None),
    tag("optional", "optional", Kind::Flag, None),
];
const SPAMTEST: &[TagSpec] = &[tag(
    "percent",
    "percent",
    Kind::Flag,
    Some(Ext::SpamTestPlus),
)];
const DUPLICATE: &[TagSpec] = &[
    tag("handle", "handle", Kind::Str, None),
    tag("header", "id", Kind::Str, None),
    tag("uniqueid", "id", Kind::Str, None),
    tag("seconds", "seconds", Kind::Num, None),
    tag("last", "last", Kind::Flag, None),
];
const SET: &[TagSpec] = &[
    tag("lower", "case", Kind::Flag, None),
    tag("upper", "case", Kind::Flag, None),
    tag("lowerfirst", "first", Kind::Flag, None),
    tag("upperfirst", "first", Kind::Flag, None),
    tag("quotewildcard", "quotewildcard", Kind::Flag, None),
    tag("encodeurl", "encodeurl", Kind::Flag, None),
    tag("length", "length", Kind::Flag, None),
];

/// The value a tag came with.
enum TagVal {
    None,
    Str(String, u32),
    List(Vec<String>, u32),
    Num(u64),
}

/// The tags given to one command or test, in the order written.
struct Tagged {
    tags: Vec<(&'static TagSpec, TagVal)>,
}

impl Tagged {
    fn has(&self, name: &str) -> bool {
        self.tags.iter().any(|(s, _)| s.name == name)
    }

    fn get(&mut self, name: &str) -> Option<TagVal> {
        let i = self.tags.iter().position(|(s, _)| s.name == name)?;
        Some(self.tags.remove(i).1)
    }

    /// The tag given from `group`, if any.
    fn group(&self, group: &str) -> Option<&'static str> {
        self.tags
            .iter()
            .find(|(s, _)| s.group == group)
            .map(|(s, _)| s.name)
    }
}

/// Names the command or test in messages: `command fileinto`.
fn what(is_test: bool, name: &str) -> String {
    format!("{} {name}", if is_test { "test" } else { "command" })
}

impl Validator {
    fn has(&self, e: Ext) -> bool {
        self.exts.contains(&e)
    }

    fn need(&self, e: Ext, what: &str, line: u32) -> Result<(), CompileError> {
        if self.has(e) {
            Ok(())
        } else {
            Err(CompileError::new(
                line,
                format!("{what} needs require \"{}\"", e.name()),
            ))
        }
    }

    fn require(&mut self, c: ast::Command) -> Result<(), CompileError> {
        no_test(&c)?;
        no_block(&c)?;
        let mut args = c.args;
        if args.len() != 1 || matches!(args[0], Arg::Tag(..) | Arg::Number(..)) {
            return Err(CompileError::new(
                c.line,
                "require takes one string or string list",
            ));
        }
        let names = match args.remove(0) {
            Arg::String(s, _) => vec![s],
            Arg::List(l, _) => l,
            _ => Vec::new(),
        };
        for name in names {
            let Some(e) = Ext::from_name(&name) else {
                return Err(CompileError::new(
                    c.line,
                    format!("require \"{name}\": extension not supported"),
                ));
            };
            let implied = match e {
                Ext::SpamTestPlus => Some(Ext::SpamTest),
                Ext::VacationSeconds => Some(Ext::Vacation),
                _ => None,
            };
            for e in std::iter::once(e).chain(implied) {
                if !self.has(e) {
                    self.exts.push(e);
                }
            }
        }
        Ok(())
    }

    fn block(&self, cmds: Vec<ast::Command>, top: bool) -> Result<Vec<Stmt>, CompileError> {
        let mut out: Vec<Stmt> = Vec::new();
        // Whether the last statement is an `if` that may still take an
        // `elsif` or `else`.
        let mut open_if = false;
        for c in cmds {
            let name = c.name.to_ascii_lowercase();
            let line = c.line;
            match name.as_str() {
                "require" => {
                    return Err(CompileError::new(
                        line,
                        if top {
                            "require must come before any other command"
                        } else {
                            "require is only allowed at the top of the script"
                        },
                    ))
                }
                "if" => {
                    let branch = self.branch(c, "if")?;
                    out.push(Stmt {
                        line,
                        command: Command::If {
                            branches: vec![branch],
                            otherwise: None,
                        },
                    });
                    open_if = true;
                }
                "elsif" | "else" => {
                    let chain = match out.last_mut() {
                        Some(Stmt {
                            command:
                                Command::If {
                                    branches,
                                    otherwise,
                                },
                            ..
                        }) if open_if => (branches, otherwise),
                        _ => {
                            return Err(CompileError::new(
                                line,
                                format!("{name} without a preceding if"),
                            ))
                        }
                    };
                    if name == "elsif" {
                        let b = self.branch(c, "elsif")?;
                        chain.0.push(b);
                    } else {
                        no_args(&c)?;
                        no_test(&c)?;
                        let Some(body) = c.block else {
                            return Err(CompileError::new(line, "else needs a block { … }"));
                        };
                        *chain.1 = Some(self.block(body, false)?);
                        open_if = false;
                    }
                }
                _ => {
                    open_if = false;
                    let command = self.command(&name, c)?;
                    out.push(Stmt { line, command });
                }
            }
        }
        Ok(out)
    }

    fn branch(&self, c: ast::Command, name: &str) -> Result<Branch, CompileError> {
        no_args(&c)?;
        let line = c.line;
        let test = match c.tests {
            Tests::One(t) => self.test(*t)?,
            Tests::List(mut l) if l.len() == 1 => self.test(l.remove(0))?,
            Tests::List(_) => {
                return Err(CompileError::new(
                    line,
                    format!("{name} takes one test, not a list (use allof or anyof)"),
                ))
            }
            Tests::None => return Err(CompileError::new(line, format!("{name} needs a test"))),
        };
        let Some(body) = c.block else {
            return Err(CompileError::new(
                line,
                format!("{name} needs a block {{ … }}"),
            ));
        };
        Ok(Branch {
            test,
            block: self.block(body, false)?,
        })
    }

    fn command(&self, name: &str, c: ast::Command) -> Result<Command, CompileError> {
        let line = c.line;
        let ext = match name {
            "keep" | "discard" | "stop" => None,
            "fileinto" => Some(Ext::FileInto),
            "redirect" => None,
            "reject" => Some(Ext::Reject),
            "ereject" => Some(Ext::EReject),
            "set" => Some(Ext::Variables),
            "setflag" | "addflag" | "removeflag" => Some(Ext::Imap4Flags),
            "vacation" => Some(Ext::Vacation),
            "include" | "return" | "global" => Some(Ext::Include),
            _ if is_test_name(name) => {
                return Err(CompileError::new(
                    line,
                    format!("{name} is a test, not a command (missing if?)"),
                ))
            }
            _ => return Err(CompileError::new(line, format!("unknown command {name}"))),
        };
        let me = what(false, name);
        if let Some(e) = ext {
            self.need(e, &me, line)?;
        }
        if name == "global" {
            self.need(Ext::Variables, &me, line)?;
        }
        no_test(&c)?;
        no_block(&c)?;
        let specs: &[&[TagSpec]] = match name {
            "keep" => &[FLAGS],
            "fileinto" => &[COPY, FLAGS, CREATE],
            "redirect" => &[COPY],
            "set" => &[SET],
            "vacation" => &[VACATION],
            "include" => &[INCLUDE],
            _ => &[],
        };
        let (mut tags, pos) = self.tags(&me, c.args, specs)?;
        let flags = |tags: &mut Tagged| match tags.get("flags") {
            Some(TagVal::List(l, line)) => self.strs(l, line).map(Some),
            _ => Ok(None),
        };
        Ok(match name {
            "keep" => {
                positional(&me, line, pos, &[])?;
                Command::Keep {
                    flags: flags(&mut tags)?,
                }
            }
            "discard" => {
                positional(&me, line, pos, &[])?;
                Command::Discard
            }
            "stop" => {
                positional(&me, line, pos, &[])?;
                Command::Stop
            }
            "return" => {
                positional(&me, line, pos, &[])?;
                Command::Return
            }
            "fileinto" => {
                let mut p = positional(&me, line, pos, &[Kind::Str])?;
                let (s, l) = p.remove(0).string();
                let mailbox = self.str(s, l)?;
                if mailbox.constant() == Some("") {
                    return Err(CompileError::new(l, "fileinto: empty mailbox name"));
                }
                Command::FileInto {
                    mailbox,
                    copy: tags.has("copy"),
                    create: tags.has("create"),
                    flags: flags(&mut tags)?,
                }
            }
            "redirect" => {
                let mut p = positional(&me, line, pos, &[Kind::Str])?;
                let (s, l) = p.remove(0).string();
                let address = self.str(s, l)?;
                if let Some(a) = address.constant() {
                    if !plausible_address(a) {
                        return Err(CompileError::new(
                            l,
                            format!("redirect: \"{a}\" is not a valid address"),
                        ));
                    }
                }
                Command::Redirect {
                    address,
                    copy: tags.has("copy"),
                }
            }
            "reject" | "ereject" => {
                let mut p = positional(&me, line, pos, &[Kind::Str])?;
                let (s, l) = p.remove(0).string();
                Command::Reject {
                    reason: self.str(s, l)?,
                    extended: name == "ereject",
                }
            }
            "set" => {
                let mut p = positional(&me, line, pos, &[Kind::Str, Kind::Str])?;
                let (n, nl) = p.remove(0).string();
                let (v, vl) = p.remove(0).string();
                let name = self.var_name(n, nl, "set")?;
                let mut modifiers: Vec<Modifier> = tags
                    .tags
                    .iter()
                    .map(|(s, _)| match s.name {
                        "lower" => Modifier::Lower,
                        "upper" => Modifier::Upper,
                        "lowerfirst" => Modifier::LowerFirst,
                        "upperfirst" => Modifier::UpperFirst,
                        "quotewildcard" => Modifier::QuoteWildcard,
                        "encodeurl" => Modifier::EncodeUrl,
                        _ => Modifier::Length,
                    })
                    .collect();
                modifiers.sort_by_key(|m| std::cmp::Reverse(m.precedence()));
                Command::Set {
                    name,
                    modifiers,
                    value: self.str(v, vl)?,
                }
            }
            "setflag" | "addflag" | "removeflag" => {
                let op = match name {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                };
                let (variable, flags) = self.optional_var_then_list(&me, line, pos)?;
                Command::Flags {
                    op,
                    variable: variable.into_iter().next(),
                    flags,
                }
            }
            "vacation" => {
                let mut p = positional(&me, line, pos, &[Kind::Str])?;
                let (s, l) = p.remove(0).string();
                let reason = self.str(s, l)?;
                let period = match (tags.get("days"), tags.get("seconds")) {
                    (Some(TagVal::Num(n)), _) => Period::Days(n),
                    (_, Some(TagVal::Num(n))) => Period::Seconds(n),
                    _ => Period::Default,
                };
                let mut opt = |t: &str| match tags.get(t) {
                    Some(TagVal::Str(s, l)) => self.str(s, l).map(Some),
                    _ => Ok(None),
                };
                let subject = opt("subject")?;
                let from = opt("from")?;
                let handle = opt("handle")?;
                let addresses = match tags.get("addresses") {
                    Some(TagVal::List(l, line)) => self.strs(l, line)?,
                    _ => Vec::new(),
                };
                Command::Vacation(Box::new(Vacation {
                    period,
                    subject,
                    from,
                    addresses,
                    mime: tags.has("mime"),
                    handle,
                    reason,
                }))
            }
            "include" => {
                let mut p = positional(&me, line, pos, &[Kind::Str])?;
                let (s, l) = p.remove(0).string();
                let name = self.constant(s, l, "include: the script name")?;
                if name.is_empty() || name.contains('/') || name.len() > 255 {
                    return Err(CompileError::new(
                        l,
                        format!("include: invalid script name \"{name}\""),
                    ));
                }
                Command::Include {
                    location: if tags.has("global") {
                        Location::Global
                    } else {
                        Location::Personal
                    },
                    name,
                    once: tags.has("once"),
                    optional: tags.has("optional"),
                }
            }
            "global" => {
                let mut p = positional(&me, line, pos, &[Kind::List])?;
                let (l, ll) = p.remove(0).list();
                let names = l
                    .into_iter()
                    .map(|n| self.var_name(n, ll, "global"))
                    .collect::<Result<_, _>>()?;
                Command::Global { names }
            }
            _ => return Err(CompileError::new(line, format!("unknown command {name}"))),
        })
    }

    fn test(&self, t: ast::Test) -> Result<Test, CompileError> {
        let name = t.name.to_ascii_lowercase();
        let line = t.line;
        let ext = match name.as_str() {
            "true" | "false" | "not" | "allof" | "anyof" | "address" | "header" | "exists"
            | "size" => None,
            "envelope" => Some(Ext::Envelope),
            "body" => Some(Ext::Body),
            "date" | "currentdate" => Some(Ext::Date),
            "mailboxexists" => Some(Ext::Mailbox),
            "hasflag" => Some(Ext::Imap4Flags),
            "spamtest" => Some(Ext::SpamTest),
            "string" => Some(Ext::Variables),
            "duplicate" => Some(Ext::Duplicate),
            n if is_command_name(n) => {
                return Err(CompileError::new(
                    line,
                    format!("{n} is a command, not a test"),
                ))
            }
            n => return Err(CompileError::new(line, format!("unknown test {n}"))),
        };
        let me = what(true, &name);
        if let Some(e) = ext {
            self.need(e, &me, line)?;
        }
        // Logical tests take tests, the others none.
        match name.as_str() {
            "not" => {
                if !t.args.is_empty() {
                    return Err(CompileError::new(line, "not takes a test and no arguments"));
                }
                return match t.tests {
                    Tests::One(x) => Ok(Test::Not(Box::new(self.test(*x)?))),
                    Tests::List(mut l) if l.len() == 1 => {
                        Ok(Test::Not(Box::new(self.test(l.remove(0))?)))
                    }
                    _ => Err(CompileError::new(line, "not takes exactly one test")),
                };
            }
            "allof" | "anyof" => {
                if !t.args.is_empty() {
                    return Err(CompileError::new(
                        line,
                        format!("{name} takes a test list and no arguments"),
                    ));
                }
                let list = match t.tests {
                    Tests::One(x) => vec![self.test(*x)?],
                    Tests::List(l) => l
                        .into_iter()
                        .map(|x| self.test(x))
                        .collect::<Result<_, _>>()?,
                    Tests::None => {
                        return Err(CompileError::new(line, format!("{name} needs a test list")))
                    }
                };
                return Ok(if name == "allof" {
                    Test::AllOf(list)
                } else {
                    Test::AnyOf(list)
                });
            }
            _ => {
                if !matches!(t.tests, Tests::None) {
                    return Err(CompileError::new(
                        line,
                        format!("{me} does not take a test"),
                    ));
                }
            }
        }
        let specs: &[&[TagSpec]] = match name.as_str() {
            "address" | "envelope" => &[COMPARATOR, ADDRESS_PART, MATCH_TYPE],
            "header" | "string" | "hasflag" => &[COMPARATOR, MATCH_TYPE],
            "size" => &[SIZE],
            "body" => &[COMPARATOR, MATCH_TYPE, BODY_TRANSFORM],
            "date" => &[COMPARATOR, MATCH_TYPE, DATE_ZONE],
            "currentdate" => &[COMPARATOR, MATCH_TYPE, CURRENTDATE_ZONE],
            "spamtest" => &[COMPARATOR, MATCH_TYPE, SPAMTEST],
            "duplicate" => &[DUPLICATE],
            _ => &[],
        };
        let (mut tags, pos) = self.tags(&me, t.args, specs)?;
        Ok(match name.as_str() {
            "true" => {
                positional(&me, line, pos, &[])?;
                Test::True
            }
            "false" => {
                positional(&me, line, pos, &[])?;
                Test::False
            }
            "address" | "envelope" => {
                let mut p = positional(&me, line, pos, &[Kind::List, Kind::List])?;
                let (h, hl) = p.remove(0).list();
                let (k, kl) = p.remove(0).list();
                let part = match tags.group("address part") {
                    Some("localpart") => AddressPart::LocalPart,
                    Some("domain") => AddressPart::Domain,
                    Some("user") => AddressPart::User,
                    Some("detail") => AddressPart::Detail,
                    _ => AddressPart::All,
                };
                let first = self.strs(h, hl)?;
                let m = self.matcher(&mut tags, k, kl, line)?;
                if name == "address" {
                    check_header_names(&first, hl)?;
                    Test::Address {
                        headers: first,
                        part,
                        m,
                    }
                } else {
                    for p in &first {
                        if let Some(s) = p.constant() {
                            if !s.eq_ignore_ascii_case("from") && !s.eq_ignore_ascii_case("to") {
                                return Err(CompileError::new(
                                    hl,
                                    format!("envelope part \"{s}\" not supported (from, to)"),
                                ));
                            }
                        }
                    }
                    Test::Envelope {
                        parts: first,
                        part,
                        m,
                    }
                }
            }
            "header" => {
                let mut p = positional(&me, line, pos, &[Kind::List, Kind::List])?;
                let (h, hl) = p.remove(0).list();
                let (k, kl) = p.remove(0).list();
                let names = self.strs(h, hl)?;
                check_header_names(&names, hl)?;
                Test::Header {
                    names,
                    m: self.matcher(&mut tags, k, kl, line)?,
                }
            }
            "exists" => {
                let mut p = positional(&me, line, pos, &[Kind::List])?;
                let (h, hl) = p.remove(0).list();
                let names = self.strs(h, hl)?;
                check_header_names(&names, hl)?;
                Test::Exists { names }
            }
            "size" => {
                let mut p = positional(&me, line, pos, &[Kind::Num])?;
                let Some(which) = tags.group("size") else {
                    return Err(CompileError::new(line, "size needs :over or :under"));
                };
                let Arg::Number(limit, _) = p.remove(0) else {
                    return Err(CompileError::new(line, "size needs a number"));
                };
                Test::Size {
                    over: which == "over",
                    limit,
                }
            }
            "body" => {
                let mut p = positional(&me, line, pos, &[Kind::List])?;
                let (k, kl) = p.remove(0).list();
                let transform = match tags.get("content") {
                    Some(TagVal::List(l, ll)) => BodyTransform::Content(self.strs(l, ll)?),
                    _ if tags.has("raw") => BodyTransform::Raw,
                    _ => BodyTransform::Text,
                };
                Test::Body {
                    transform,
                    m: self.matcher(&mut tags, k, kl, line)?,
                }
            }
            "date" => {
                let mut p = positional(&me, line, pos, &[Kind::Str, Kind::Str, Kind::List])?;
                let (h, hl) = p.remove(0).string();
                let (d, dl) = p.remove(0).string();
                let (k, kl) = p.remove(0).list();
                let header = self.str(h, hl)?;
                check_header_names(std::slice::from_ref(&header), hl)?;
                let zone = self.zone(&mut tags)?;
                Test::Date {
                    header,
                    zone,
                    part: self.date_part(d, dl)?,
                    m: self.matcher(&mut tags, k, kl, line)?,
                }
            }
            "currentdate" => {
                let mut p = positional(&me, line, pos, &[Kind::Str, Kind::List])?;
                let (d, dl) = p.remove(0).string();
                let (k, kl) = p.remove(0).list();
                let zone = self.zone(&mut tags)?;
                Test::CurrentDate {
                    zone,
                    part: self.date_part(d, dl)?,
                    m: self.matcher(&mut tags, k, kl, line)?,
                }
            }
            "mailboxexists" => {
                let mut p = positional(&me, line, pos, &[Kind::List])?;
                let (l, ll) = p.remove(0).list();
                Test::MailboxExists {
                    names: self.strs(l, ll)?,
                }
            }
            "hasflag" => {
                let (variables, keys) = match pos.len() {
                    2 => {
                        let mut p = positional(&me, line, pos, &[Kind::List, Kind::List])?;
                        let (v, vl) = p.remove(0).list();
                        if !self.has(Ext::Variables) {
                            return Err(CompileError::new(
                                vl,
                                "hasflag: a variable list needs require \"variables\"",
                            ));
                        }
                        let vars = v
                            .into_iter()
                            .map(|n| self.var_name(n, vl, "hasflag"))
                            .collect::<Result<_, _>>()?;
                        (vars, p.remove(0).list())
                    }
                    _ => {
                        let mut p = positional(&me, line, pos, &[Kind::List])?;
                        (Vec::new(), p.remove(0).list())
                    }
                };
                Test::HasFlag {
                    variables,
                    m: self.matcher(&mut tags, keys.0, keys.1, line)?,
                }
            }
            "spamtest" => {
                let mut p = positional(&me, line, pos, &[Kind::Str])?;
                let (v, vl) = p.remove(0).string();
                Test::SpamTest {
                    percent: tags.has("percent"),
                    m: self.matcher(&mut tags, vec![v], vl, line)?,
                }
            }
            "string" => {
                let mut p = positional(&me, line, pos, &[Kind::List, Kind::List])?;
                let (s, sl) = p.remove(0).list();
                let (k, kl) = p.remove(0).list();
                Test::String {
                    sources: self.strs(s, sl)?,
                    m: self.matcher(&mut tags, k, kl, line)?,
                }
            }
            "duplicate" => {
                positional(&me, line, pos, &[])?;
                let handle = match tags.get("handle") {
                    Some(TagVal::Str(s, l)) => Some(self.str(s, l)?),
                    _ => None,
                };
                let id = match (tags.get("header"), tags.get("uniqueid")) {
                    (Some(TagVal::Str(s, l)), _) => {
                        let h = self.str(s, l)?;
                        check_header_names(std::slice::from_ref(&h), l)?;
                        DuplicateId::Header(h)
                    }
                    (_, Some(TagVal::Str(s, l))) => DuplicateId::UniqueId(self.str(s, l)?),
                    _ => DuplicateId::MessageId,
                };
                let seconds = match tags.get("seconds") {
                    Some(TagVal::Num(n)) => Some(n),
                    _ => None,
                };
                Test::Duplicate(Box::new(Duplicate {
                    handle,
                    id,
                    seconds,
                    last: tags.has("last"),
                }))
            }
            n => return Err(CompileError::new(line, format!("unknown test {n}"))),
        })
    }

    /// Split `args` into the tags (checked against `specs`) and the
    /// positional arguments after them.
    fn tags(
        &self,
        me: &str,
        args: Vec<Arg>,
        specs: &[&'static [TagSpec]],
    ) -> Result<(Tagged, Vec<Arg>), CompileError> {
        let mut tagged = Tagged { tags: Vec::new() };
        let mut pos = Vec::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let (name, line) = match a {
                Arg::Tag(name, line) => (name, line),
                other => {
                    pos.push(other);
                    continue;
                }
            };
            let lower = name.to_ascii_lowercase();
            let Some(spec) = specs
                .iter()
                .flat_map(|s| s.iter())
                .find(|s| s.name == lower)
            else {
                return Err(CompileError::new(
                    line,
                    format!("{me}: unknown tag :{name}"),
                ));
            };
            if !pos.is_empty() {
                return Err(CompileError::new(
                    line,
                    format!("{me}: tag :{name} must come before the other arguments"),
                ));
            }
            if let Some(e) = spec.ext {
                self.need(e, &format!("tag :{lower}"), line)?;
            }
            if let Some((prev, _)) = tagged.tags.iter().find(|(s, _)| s.group == spec.group) {
                return Err(CompileError::new(
                    line,
                    if prev.name == spec.name {
                        format!("{me}: tag :{lower} given twice")
                    } else {
                        format!("{me}: :{} and :{lower} cannot both be given", prev.name)
                    },
                ));
            }
            let val = match spec.kind {
                Kind::Flag => TagVal::None,
                kind => match (kind, it.next()) {
                    (Kind::Str, Some(Arg::String(s, l))) => TagVal::Str(s, l),
                    (Kind::List, Some(Arg::String(s, l))) => TagVal::List(vec![s], l),
                    (Kind::List, Some(Arg::List(v, l))) => TagVal::List(v, l),
                    (Kind::Num, Some(Arg::Number(n, _))) => TagVal::Num(n),
                    (kind, got) => {
                        return Err(CompileError::new(
                            got.as_ref().map_or(line, Arg::line),
                            format!(
                                "{me}: tag :{lower} needs {}, found {}",
                                kind.describe(),
                                got.map_or("nothing".to_string(), |a| a.kind())
                            ),
                        ))
                    }
                },
            };
            tagged.tags.push((spec, val));
        }
        Ok((tagged, pos))
    }

    /// Match type, comparator and keys of a test.
    fn matcher(
        &self,
        tags: &mut Tagged,
        keys: Vec<String>,
        keys_line: u32,
        line: u32,
    ) -> Result<Match, CompileError> {
        let comparator = match tags.get("comparator") {
            Some(TagVal::Str(s, l)) => {
                let name = self.constant(s, l, "the comparator name")?;
                match name.as_str() {
                    "i;octet" => Comparator::Octet,
                    "i;ascii-casemap" => Comparator::AsciiCasemap,
                    "i;ascii-numeric" => {
                        self.need(Ext::ComparatorAsciiNumeric, "comparator i;ascii-numeric", l)?;
                        Comparator::AsciiNumeric
                    }
                    other => {
                        return Err(CompileError::new(
                            l,
                            format!("unknown comparator \"{other}\""),
                        ))
                    }
                }
            }
            _ => Comparator::AsciiCasemap,
        };
        let relation = |tags: &mut Tagged, t: &str| -> Result<Relation, CompileError> {
            let Some(TagVal::Str(s, l)) = tags.get(t) else {
                return Err(CompileError::new(line, format!(":{t} needs a relation")));
            };
            let op = self.constant(s, l, "the relational operator")?;
            Ok(match op.to_ascii_lowercase().as_str() {
                "gt" => Relation::Gt,
                "ge" => Relation::Ge,
                "lt" => Relation::Lt,
                "le" => Relation::Le,
                "eq" => Relation::Eq,
                "ne" => Relation::Ne,
                _ => {
                    return Err(CompileError::new(
                        l,
                        format!("invalid relational operator \"{op}\" (gt, ge, lt, le, eq, ne)"),
                    ))
                }
            })
        };
        let kind = match tags.group("match type") {
            Some("contains") => MatchType::Contains,
            Some("matches") => MatchType::Matches,
            Some("regex") => MatchType::Regex,
            Some("count") => MatchType::Count(relation(tags, "count")?),
            Some("value") => MatchType::Value(relation(tags, "value")?),
            _ => MatchType::Is,
        };
        if comparator == Comparator::AsciiNumeric {
            if let Some(t @ ("contains" | "matches" | "regex")) = tags.group("match type") {
                return Err(CompileError::new(
                    line,
                    format!("comparator i;ascii-numeric cannot be used with :{t}"),
                ));
            }
        }
        let keys = self.strs(keys, keys_line)?;
        let regexes = if kind == MatchType::Regex {
            let seen = self.regexes.get() + keys.len();
            self.regexes.set(seen);
            if seen > MAX_REGEXES {
                return Err(CompileError::new(
                    keys_line,
                    format!("more than {MAX_REGEXES} :regex keys in one script"),
                ));
            }
            keys.iter()
                .map(|k| match k.constant() {
                    Some(p) => build_regex(p, comparator).map(Some).map_err(|why| {
                        CompileError::new(keys_line, format!("regex \"{p}\": {why}"))
                    }),
                    None => Ok(None),
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Match {
            kind,
            comparator,
            keys,
            regexes,
        })
    }

    fn zone(&self, tags: &mut Tagged) -> Result<Zone, CompileError> {
        if tags.has("originalzone") {
            return Ok(Zone::Original);
        }
        let Some(TagVal::Str(s, l)) = tags.get("zone") else {
            return Ok(Zone::Local);
        };
        let z = self.constant(s, l, "the time zone")?;
        let b = z.as_bytes();
        let ok =
            b.len() == 5 && matches!(b[0], b'+' | b'-') && b[1..].iter().all(u8::is_ascii_digit);
        let num = |i: usize| i32::from(b[i] - b'0') * 10 + i32::from(b[i + 1] - b'0');
        if !ok || num(1) > 23 || num(3) > 59 {
            return Err(CompileError::new(
                l,
                format!("invalid time zone \"{z}\" (+hhmm or -hhmm)"),
            ));
        }
        let minutes = num(1) * 60 + num(3);
        Ok(Zone::Fixed(if b[0] == b'-' { -minutes } else { minutes }))
    }

    fn date_part(&self, s: String, line: u32) -> Result<DatePart, CompileError> {
        let p = self.constant(s, line, "the date part")?;
        Ok(match p.to_ascii_lowercase().as_str() {
            "year" => DatePart::Year,
            "month" => DatePart::Month,
            "day" => DatePart::Day,
            "date" => DatePart::Date,
            "julian" => DatePart::Julian,
            "hour" => DatePart::Hour,
            "minute" => DatePart::Minute,
            "second" => DatePart::Second,
            "time" => DatePart::Time,
            "iso8601" => DatePart::Iso8601,
            "std11" => DatePart::Std11,
            "zone" => DatePart::Zone,
            "weekday" => DatePart::Weekday,
            _ => {
                return Err(CompileError::new(
                    line,
                    format!("unknown date part \"{p}\""),
                ))
            }
        })
    }

    /// `[<variablename: string>] <list-of-flags: string-list>`.
    fn optional_var_then_list(
        &self,
        me: &str,
        line: u32,
        pos: Vec<Arg>,
    ) -> Result<(Option<String>, Vec<Str>), CompileError> {
        if pos.len() == 2 {
            let mut p = positional(me, line, pos, &[Kind::Str, Kind::List])?;
            let (v, vl) = p.remove(0).string();
            if !self.has(Ext::Variables) {
                return Err(CompileError::new(
                    vl,
                    format!("{me}: a variable name needs require \"variables\""),
                ));
            }
            let var = self.var_name(v, vl, me)?;
            let (l, ll) = p.remove(0).list();
            Ok((Some(var), self.strs(l, ll)?))
        } else {
            let mut p = positional(me, line, pos, &[Kind::List])?;
            let (l, ll) = p.remove(0).list();
            Ok((None, self.strs(l, ll)?))
        }
    }

    /// A variable name given as an argument: constant, an identifier.
    fn var_name(&self, s: String, line: u32, who: &str) -> Result<String, CompileError> {
        let n = self.constant(s, line, &format!("{who}: the variable name"))?;
        if !is_identifier(&n) {
            return Err(CompileError::new(
                line,
                format!("{who}: invalid variable name \"{n}\""),
            ));
        }
        Ok(n.to_ascii_lowercase())
    }

    /// A string that must be known at compile time.
    fn constant(&self, s: String, line: u32, what: &str) -> Result<String, CompileError> {
        let v = self.str(s, line)?;
        match v.constant() {
            Some(c) => Ok(c.to_string()),
            None => Err(CompileError::new(
                line,
                format!("{what} must be constant (no variables)"),
            )),
        }
    }

    fn strs(&self, v: Vec<String>, line: u32) -> Result<Vec<Str>, CompileError> {
        v.into_iter().map(|s| self.str(s, line)).collect()
    }

    /// A script string: encoded characters decoded, variable references
    /// split out, as the required extensions say.
    fn str(&self, s: String, line: u32) -> Result<Str, CompileError> {
        let s = if self.has(Ext::EncodedCharacter) && s.contains("${") {
            decode_encoded(&s, line)?
        } else {
            s
        };
        if self.has(Ext::Variables) && s.contains("${") {
            split_variables(&s, line)
        } else {
            Ok(Str::text(&s))
        }
    }
}

/// Commands and tests the validator knows, for "X is a test" messages.
fn is_test_name(n: &str) -> bool {
    matches!(
        n,
        "true"
            | "false"
            | "not"
            | "allof"
            | "anyof"
            | "address"
            | "envelope"
            | "header"
            | "exists"
            | "size"
            | "body"
            | "date"
            | "currentdate"
            | "mailboxexists"
            | "hasflag"
            | "spamtest"
            | "string"
            | "duplicate"
    )
}

fn is_command_name(n: &str) -> bool {
    matches!(
        n,
        "keep"
            | "discard"
            | "stop"
            | "fileinto"
            | "redirect"
            | "reject"
            | "ereject"
            | "set"
            | "setflag"
            | "addflag"
            | "removeflag"
            | "vacation"
            | "include"
            | "return"
            | "global"
            | "require"
            | "if"
            | "elsif"
            | "else"
    )
}

impl Arg {
    /// The string of an argument `positional` checked to be one.
    fn string(self) -> (String, u32) {
        match self {
            Arg::String(s, l) => (s, l),
            other => (String::new(), other.line()),
        }
    }

    /// The list of an argument `positional` checked to be a string or list.
    fn list(self) -> (Vec<String>, u32) {
        match self {
            Arg::String(s, l) => (vec![s], l),
            Arg::List(v, l) => (v, l),
            other => (Vec::new(), other.line()),
        }
    }
}

/// Check the positional arguments against `kinds` (a string is a string
/// list of one).
fn positional(
    me: &str,
    line: u32,
    pos: Vec<Arg>,
    kinds: &[Kind],
) -> Result<Vec<Arg>, CompileError> {
    if pos.len() != kinds.len() {
        let wanted: Vec<&str> = kinds.iter().map(|k| k.describe()).collect();
        return Err(CompileError::new(
            pos.get(kinds.len()).map_or(line, Arg::line),
            format!(
                "{me} takes {} argument{}{}, found {}",
                kinds.len(),
                if kinds.len() == 1 { "" } else { "s" },
                if wanted.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", wanted.join(", "))
                },
                pos.len()
            ),
        ));
    }
    for (i, (a, k)) in pos.iter().zip(kinds).enumerate() {
        let ok = matches!(
            (k, a),
            (Kind::Str, Arg::String(..))
                | (Kind::List, Arg::String(..) | Arg::List(..))
                | (Kind::Num, Arg::Number(..))
        );
        if !ok {
            return Err(CompileError::new(
                a.line(),
                format!(
                    "{me}: argument {} must be {}, found {}",
                    i + 1,
                    k.describe(),
                    a.kind()
                ),
            ));
        }
    }
    Ok(pos)
}

fn no_test(c: &ast::Command) -> Result<(), CompileError> {
    match &c.tests {
        Tests::None => Ok(()),
        Tests::One(t) => Err(CompileError::new(
            c.line,
            format!(
                "{} does not take a test (missing ';' before {}?)",
                c.name, t.name
            ),
        )),
        Tests::List(_) => Err(CompileError::new(
            c.line,
            format!("{} does not take a test list", c.name),
        )),
    }
}

fn no_block(c: &ast::Command) -> Result<(), CompileError> {
    if c.block.is_some() {
        return Err(CompileError::new(
            c.line,
            format!("{} does not take a block", c.name),
        ));
    }
    Ok(())
}

fn no_args(c: &ast::Command) -> Result<(), CompileError> {
    match c.args.first() {
        None => Ok(()),
        Some(a) => Err(CompileError::new(
            a.line(),
            format!("{} takes no arguments, found {}", c.name, a.kind()),
        )),
    }
}

/// RFC 5322 field names: printable ASCII except `:`. Checked for constants.
fn check_header_names(names: &[Str], line: u32) -> Result<(), CompileError> {
    for n in names {
        if let Some(s) = n.constant() {
            if s.is_empty() || !s.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
                return Err(CompileError::new(
                    line,
                    format!("invalid header name \"{s}\""),
                ));
            }
        }
    }
    Ok(())
}

/// `local@domain` with both parts non-empty, no blanks, controls or
/// angle brackets: enough to refuse what cannot be a forwarding target.
pub(crate) fn plausible_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !a
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';'))
}

fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Split `${name}` and `${N}` out of `s` (RFC 5229 section 3). Text that
/// only looks like a reference (`${`, `${1a}`) stays literal.
fn split_variables(s: &str, line: u32) -> Result<Str, CompileError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        text.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let inner = after.find('}').map(|j| &after[..j]);
        let part = match inner {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Part::Match(n.parse().unwrap_or(usize::MAX)))
            }
            Some(n) if is_identifier(n) => Some(Part::Var(n.to_ascii_lowercase())),
            Some(n) if n.contains('.') && n.split('.').all(is_identifier) => {
                return Err(CompileError::new(
                    line,
                    format!("variable ${{{n}}}: unknown namespace"),
                ))
            }
            _ => None,
        };
        match (part, inner) {
            (Some(p), Some(n)) => {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(p);
                rest = &after[n.len() + 1..];
            }
            _ => {
                text.push('$');
                rest = &rest[i + 1..];
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(Str(parts))
}

/// Decode `${hex:…}` and `${unicode:…}` (RFC 5228 2.4.2.4). A sequence that
/// is not well-formed stays as written; a code point outside Unicode is an
/// error; so are bytes that do not form UTF-8.
fn decode_encoded(s: &str, line: u32) -> Result<String, CompileError> {
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let after = &rest[i + 2..];
        match encoded_one(after, line)? {
            Some((bytes, used)) => {
                out.extend_from_slice(&bytes);
                rest = &after[used..];
            }
            None => {
                out.push(b'$');
                rest = &rest[i + 1..];
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8(out)
        .map_err(|_| CompileError::new(line, "encoded characters (${hex:…}) do not form UTF-8"))
}

/// After `${`: the decoded bytes of one encoded-character sequence and the
/// bytes it used (through `}`), or `None` when it is not well-formed.
fn encoded_one(after: &str, line: u32) -> Result<Option<(Vec<u8>, usize)>, CompileError> {
    let b = after.as_bytes();
    // Compared as bytes: the text after `${` may start with any character.
    let (hex, head) = if b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"hex:") {
        (true, 4)
    } else if b.len() >= 8 && b[..8].eq_ignore_ascii_case(b"unicode:") {
        (false, 8)
    } else {
        return Ok(None);
    };
    let Some(end) = after.find('}') else {
        return Ok(None);
    };
    let body = &after[head..end];
    if !body
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return Ok(None);
    }
    let items: Vec<&str> = body
        .split([' ', '\t', '\r', '\n'])
        .filter(|x| !x.is_empty())
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for it in items {
        if hex {
            if it.len() > 2 {
                return Ok(None);
            }
            out.push(u8::from_str_radix(it, 16).unwrap_or(0));
        } else {
            let digits = it.trim_start_matches('0');
            let cp = if digits.len() > 6 {
                None
            } else {
                u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16).ok()
            };
            match cp.and_then(char::from_u32) {
                Some(c) => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                None => {
                    return Err(CompileError::new(
                        line,
                        format!("${{unicode:{it}}} is not a Unicode code point"),
                    ))
                }
            }
        }
    }
    Ok(Some((out, end + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Program {
        compile(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> String {
        match compile(s.as_bytes()) {
            Ok(p) => panic!("{s:?} compiled: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The last command of the script.
    fn cmd(s: &str) -> Command {
        ok(s).commands.pop().expect("no command").command
    }

    /// The test of the last `if` of the script.
    fn test(s: &str) -> Test {
        match cmd(s) {
            Command::If { mut branches, .. } => branches.remove(0).test,
            other => panic!("not an if: {other:?}"),
        }
    }

    fn t(s: &str) -> Str {
        Str::text(s)
    }

    fn is(keys: &[&str]) -> Match {
        Match {
            kind: MatchType::Is,
            comparator: Comparator::AsciiCasemap,
            keys: keys.iter().map(|k| t(k)).collect(),
            regexes: Vec::new(),
        }
    }

    #[test]
    fn core_actions() {
        let p = ok("keep;\ndiscard;\nstop;");
        let got: Vec<(u32, Command)> = p
            .commands
            .into_iter()
            .map(|s| (s.line, s.command))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Command::Keep { flags: None }),
                (2, Command::Discard),
                (3, Command::Stop)
            ]
        );
    }

    #[test]
    fn empty_script_is_an_empty_program() {
        assert_eq!(
            ok(""),
            Program {
                extensions: Vec::new(),
                commands: Vec::new()
            }
        );
    }

    #[test]
    fn fileinto_with_every_tag() {
        assert_eq!(
            cmd(
                "require [\"fileinto\", \"copy\", \"mailbox\", \"imap4flags\"];\n\
                 fileinto :copy :create :flags [\"\\\\Seen\", \"$Junk x\"] \"Lists.dev\";"
            ),
            Command::FileInto {
                mailbox: t("Lists.dev"),
                copy: true,
                create: true,
                flags: Some(vec![t("\\Seen"), t("$Junk x")]),
            }
        );
        assert_eq!(
            cmd("require \"fileinto\"; fileinto \"Junk\";"),
            Command::FileInto {
                mailbox: t("Junk"),
                copy: false,
                create: false,
                flags: None
            }
        );
    }

    #[test]
    fn fileinto_empty_mailbox() {
        assert_eq!(
            err("require \"fileinto\";\nfileinto \"\";"),
            "line 2: fileinto: empty mailbox name"
        );
    }

    #[test]
    fn redirect_and_copy() {
        assert_eq!(
            cmd("require \"copy\"; redirect :copy \"a@example.org\";"),
            Command::Redirect {
                address: t("a@example.org"),
                copy: true
            }
        );
        assert_eq!(
            err("redirect \"not an address\";"),
            "line 1: redirect: \"not an address\" is not a valid address"
        );
        assert_eq!(
            err("redirect \"@example.org\";"),
            "line 1: redirect: \"@example.org\" is not a valid address"
        );
    }

    #[test]
    fn reject_and_ereject() {
        assert_eq!(
            cmd("require \"reject\"; reject text:\nGo away.\n.\n;"),
            Command::Reject {
                reason: t("Go away.\r\n"),
                extended: false
            }
        );
        assert_eq!(
            cmd("require \"ereject\"; ereject \"no\";"),
            Command::Reject {
                reason: t("no"),
                extended: true
            }
        );
        assert_eq!(
            err("require \"reject\"; ereject \"no\";"),
            "line 1: command ereject needs require \"ereject\""
        );
    }

    #[test]
    fn if_elsif_else_chain() {
        let c = cmd("if true { keep; } elsif false { discard; } elsif true {} else { stop; }");
        assert_eq!(
            c,
            Command::If {
                branches: vec![
                    Branch {
                        test: Test::True,
                        block: vec![Stmt {
                            line: 1,
                            command: Command::Keep { flags: None }
                        }]
                    },
                    Branch {
                        test: Test::False,
                        block: vec![Stmt {
                            line: 1,
                            command: Command::Discard
                        }]
                    },
                    Branch {
                        test: Test::True,
                        block: Vec::new()
                    },
                ],
                otherwise: Some(vec![Stmt {
                    line: 1,
                    command: Command::Stop
                }]),
            }
        );
    }

    #[test]
    fn two_ifs_are_two_statements() {
        assert_eq!(ok("if true {} if false {} else {}").commands.len(), 2);
    }

    #[test]
    fn elsif_and_else_need_an_if() {
        assert_eq!(err("elsif true {}"), "line 1: elsif without a preceding if");
        assert_eq!(err("keep;\nelse {}"), "line 2: else without a preceding if");
        assert_eq!(
            err("if true {} else {}\nelse {}"),
            "line 2: else without a preceding if"
        );
        assert_eq!(
            err("if true {}\nkeep;\nelsif true {}"),
            "line 3: elsif without a preceding if"
        );
        assert_eq!(
            err("if true {} else {} elsif true {}"),
            "line 1: elsif without a preceding if"
        );
    }

    #[test]
    fn if_needs_a_test_and_a_block() {
        assert_eq!(err("if {}"), "line 1: if needs a test");
        assert_eq!(err("if true;"), "line 1: if needs a block { … }");
        assert_eq!(err("if true {} else;"), "line 1: else needs a block { … }");
        assert_eq!(
            err("if (true, false) {}"),
            "line 1: if takes one test, not a list (use allof or anyof)"
        );
        assert_eq!(test("if (true) {}"), Test::True);
        assert_eq!(
            err("if \"x\" true {}"),
            "line 1: if takes no arguments, found a string"
        );
    }

    #[test]
    fn require_unsupported_extension_names_it() {
        assert_eq!(
            err("require [\"fileinto\", \"notify\"];"),
            "line 1: require \"notify\": extension not supported"
        );
        // Capability names are case-sensitive (RFC 5228 2.10.5 compares
        // them as octets).
        assert_eq!(
            err("require \"FileInto\";"),
            "line 1: require \"FileInto\": extension not supported"
        );
    }

    #[test]
    fn every_supported_extension_can_be_required() {
        for e in Ext::ALL {
            let p = ok(&format!("require \"{}\";", e.name()));
            assert!(p.requires(e), "{e:?}");
        }
        let all: Vec<String> = Ext::ALL
            .iter()
            .map(|e| format!("\"{}\"", e.name()))
            .collect();
        let p = ok(&format!("require [{}];", all.join(",")));
        assert_eq!(p.extensions, Ext::ALL.to_vec());
    }

    #[test]
    fn require_only_at_the_top() {
        assert_eq!(
            err("require \"fileinto\";\nkeep;\nrequire \"copy\";"),
            "line 3: require must come before any other command"
        );
        assert_eq!(
            err("if true {\n require \"copy\";\n}"),
            "line 2: require is only allowed at the top of the script"
        );
        assert_eq!(
            err("require :x;"),
            "line 1: require takes one string or string list"
        );
    }

    #[test]
    fn commands_need_their_extension() {
        for (script, ext) in [
            (
                "fileinto \"a\";",
                "command fileinto needs require \"fileinto\"",
            ),
            ("reject \"a\";", "command reject needs require \"reject\""),
            (
                "set \"a\" \"b\";",
                "command set needs require \"variables\"",
            ),
            (
                "setflag \"a\";",
                "command setflag needs require \"imap4flags\"",
            ),
            (
                "vacation \"a\";",
                "command vacation needs require \"vacation\"",
            ),
            (
                "include \"a\";",
                "command include needs require \"include\"",
            ),
            ("return;", "command return needs require \"include\""),
        ] {
            assert_eq!(err(script), format!("line 1: {ext}"), "{script}");
        }
        assert_eq!(
            err("require \"include\"; global \"a\";"),
            "line 1: command global needs require \"variables\""
        );
    }

    #[test]
    fn tests_need_their_extension() {
        for (script, ext) in [
            ("envelope \"from\" \"a\"", "envelope"),
            ("body \"a\"", "body"),
            ("date \"date\" \"year\" \"2020\"", "date"),
            ("currentdate \"year\" \"2020\"", "date"),
            ("mailboxexists \"a\"", "mailbox"),
            ("hasflag \"a\"", "imap4flags"),
            ("spamtest \"5\"", "spamtest"),
            ("string \"a\" \"b\"", "variables"),
            ("duplicate", "duplicate"),
        ] {
            let name = script.split(' ').next().unwrap();
            assert_eq!(
                err(&format!("if {script} {{}}")),
                format!("line 1: test {name} needs require \"{ext}\""),
                "{script}"
            );
        }
    }

    #[test]
    fn tags_need_their_extension() {
        assert_eq!(
            err("require \"fileinto\";\nfileinto :copy \"a\";"),
            "line 2: tag :copy needs require \"copy\""
        );
        assert_eq!(
            err("if header :regex \"a\" \"b\" {}"),
            "line 1: tag :regex needs require \"regex\""
        );
        assert_eq!(
            err("if header :count \"gt\" \"a\" \"1\" {}"),
            "line 1: tag :count needs require \"relational\""
        );
        assert_eq!(
            err("if address :user \"to\" \"a\" {}"),
            "line 1: tag :user needs require \"subaddress\""
        );
        assert_eq!(
            err("require \"fileinto\"; fileinto :create \"a\";"),
            "line 1: tag :create needs require \"mailbox\""
        );
        assert_eq!(
            err("keep :flags \"\\\\Seen\";"),
            "line 1: tag :flags needs require \"imap4flags\""
        );
    }

    #[test]
    fn unknown_and_misplaced_names() {
        assert_eq!(err("\n\nnotify \"x\";"), "line 3: unknown command notify");
        assert_eq!(err("if foo {}"), "line 1: unknown test foo");
        assert_eq!(
            err("header \"a\" \"b\";"),
            "line 1: header is a test, not a command (missing if?)"
        );
        assert_eq!(err("if keep {}"), "line 1: keep is a command, not a test");
    }

    #[test]
    fn names_and_tags_are_case_insensitive() {
        assert_eq!(
            cmd("require [\"fileinto\", \"copy\"]; FileInto :COPY \"a\";"),
            Command::FileInto {
                mailbox: t("a"),
                copy: true,
                create: false,
                flags: None
            }
        );
        assert_eq!(test("IF TRUE {}"), Test::True);
    }

    #[test]
    fn address_defaults_and_parts() {
        assert_eq!(
            test("if address \"from\" \"a@b\" {}"),
            Test::Address {
                headers: vec![t("from")],
                part: AddressPart::All,
                m: is(&["a@b"]),
            }
        );
        for (tag, part) in [
            ("all", AddressPart::All),
            ("localpart", AddressPart::LocalPart),
            ("domain", AddressPart::Domain),
            ("user", AddressPart::User),
            ("detail", AddressPart::Detail),
        ] {
            let got = test(&format!(
                "require \"subaddress\"; if address :{tag} :is [\"to\", \"cc\"] \"x\" {{}}"
            ));
            let Test::Address {
                part: p, headers, ..
            } = got
            else {
                panic!("{got:?}")
            };
            assert_eq!((p, headers.len()), (part, 2), "{tag}");
        }
    }

    #[test]
    fn every_match_type() {
        let script = |m: &str| {
            format!("require [\"regex\", \"relational\"]; if header {m} \"subject\" \"x\" {{}}")
        };
        for (m, want) in [
            (":is", MatchType::Is),
            (":contains", MatchType::Contains),
            (":matches", MatchType::Matches),
            (":regex", MatchType::Regex),
            (":count \"ge\"", MatchType::Count(Relation::Ge)),
            (":value \"LT\"", MatchType::Value(Relation::Lt)),
            (":value \"gt\"", MatchType::Value(Relation::Gt)),
            (":value \"le\"", MatchType::Value(Relation::Le)),
            (":value \"eq\"", MatchType::Value(Relation::Eq)),
            (":value \"ne\"", MatchType::Value(Relation::Ne)),
        ] {
            let Test::Header { m: got, names } = test(&script(m)) else {
                panic!("{m}")
            };
            assert_eq!(got.kind, want, "{m}");
            assert_eq!(names, vec![t("subject")]);
            assert_eq!(
                got.regexes.len(),
                usize::from(want == MatchType::Regex),
                "{m}"
            );
        }
    }

    #[test]
    fn invalid_relational_operator() {
        assert_eq!(
            err("require \"relational\";\nif header :value \"gte\" \"a\" \"1\" {}"),
            "line 2: invalid relational operator \"gte\" (gt, ge, lt, le, eq, ne)"
        );
        assert_eq!(
            err("require \"relational\"; if header :count [\"gt\"] \"a\" \"1\" {}"),
            "line 1: test header: tag :count needs a string, found a string list"
        );
    }

    #[test]
    fn duplicate_conflicting_and_unknown_tags() {
        assert_eq!(
            err("if header :is :is \"a\" \"b\" {}"),
            "line 1: test header: tag :is given twice"
        );
        assert_eq!(
            err("if header :is :contains \"a\" \"b\" {}"),
            "line 1: test header: :is and :contains cannot both be given"
        );
        assert_eq!(
            err("if header :comparator \"i;octet\" :comparator \"i;octet\" \"a\" \"b\" {}"),
            "line 1: test header: tag :comparator given twice"
        );
        assert_eq!(
            err("if header :over \"a\" \"b\" {}"),
            "line 1: test header: unknown tag :over"
        );
        assert_eq!(
            err("if size :over :under 1 {}"),
            "line 1: test size: :over and :under cannot both be given"
        );
        assert_eq!(
            err("discard :copy;"),
            "line 1: command discard: unknown tag :copy"
        );
    }

    #[test]
    fn tags_come_before_positional_arguments() {
        assert_eq!(
            err("if header \"a\" :is \"b\" {}"),
            "line 1: test header: tag :is must come before the other arguments"
        );
    }

    #[test]
    fn comparators() {
        let m = |c: &str| match test(&format!(
            "require \"comparator-i;ascii-numeric\"; if header :comparator \"{c}\" \"a\" \"1\" {{}}"
        )) {
            Test::Header { m, .. } => m.comparator,
            other => panic!("{other:?}"),
        };
        assert_eq!(m("i;octet"), Comparator::Octet);
        assert_eq!(m("i;ascii-casemap"), Comparator::AsciiCasemap);
        assert_eq!(m("i;ascii-numeric"), Comparator::AsciiNumeric);
        assert_eq!(
            err("if header :comparator \"i;unicode-casemap\" \"a\" \"b\" {}"),
            "line 1: unknown comparator \"i;unicode-casemap\""
        );
        assert_eq!(
            err("if header :comparator \"i;ascii-numeric\" \"a\" \"1\" {}"),
            "line 1: comparator i;ascii-numeric needs require \"comparator-i;ascii-numeric\""
        );
        assert_eq!(
            err("require \"comparator-i;ascii-numeric\";\nif header :contains :comparator \"i;ascii-numeric\" \"a\" \"1\" {}"),
            "line 2: comparator i;ascii-numeric cannot be used with :contains"
        );
        assert_eq!(
            err("if header :comparator 5 \"a\" \"1\" {}"),
            "line 1: test header: tag :comparator needs a string, found a number"
        );
    }

    #[test]
    fn regex_compiled_with_the_comparator_case_rule() {
        let Test::Header { m, .. } =
            test("require \"regex\"; if header :regex \"subject\" [\"^re:\", \"x+\"] {}")
        else {
            panic!()
        };
        assert_eq!(m.regexes.len(), 2);
        let r = m.regexes[0].as_ref().unwrap();
        assert!(r.case_insensitive && r.regex.is_match("RE: hello"));
        let Test::Header { m, .. } = test(
            "require \"regex\"; if header :regex :comparator \"i;octet\" \"subject\" \"^re:\" {}",
        ) else {
            panic!()
        };
        let r = m.regexes[0].as_ref().unwrap();
        assert!(!r.regex.is_match("RE: hello") && r.regex.is_match("re: hello"));
    }

    #[test]
    fn regex_that_does_not_compile() {
        let e = err("require \"regex\";\nif header :regex \"subject\" \"a(b\" {}");
        assert!(e.starts_with("line 2: regex \"a(b\": "), "{e}");
        assert!(!e.contains('\n'));
        let e = err("require \"regex\"; if header :regex \"s\" \"(a{1000}){1000}\" {}");
        assert_eq!(
            e,
            format!("line 1: regex \"(a{{1000}}){{1000}}\": compiles to more than {MAX_REGEX_SIZE} bytes")
        );
    }

    #[test]
    fn regex_with_variables_is_left_for_run_time() {
        let Test::Header { m, .. } =
            test("require [\"regex\", \"variables\"]; if header :regex \"s\" [\"${x}\", \"a\"] {}")
        else {
            panic!()
        };
        assert!(m.regexes[0].is_none());
        assert!(m.regexes[1].is_some());
    }

    #[test]
    fn size_test() {
        assert_eq!(
            test("if size :over 100K {}"),
            Test::Size {
                over: true,
                limit: 102_400
            }
        );
        assert_eq!(
            test("if size :under 1 {}"),
            Test::Size {
                over: false,
                limit: 1
            }
        );
        assert_eq!(err("if size 100 {}"), "line 1: size needs :over or :under");
        assert_eq!(
            err("if size :over \"100\" {}"),
            "line 1: test size: argument 1 must be a number, found a string"
        );
    }

    #[test]
    fn exists_and_header_names() {
        assert_eq!(
            test("if exists [\"List-Id\", \"X-Spam\"] {}"),
            Test::Exists {
                names: vec![t("List-Id"), t("X-Spam")]
            }
        );
        assert_eq!(
            err("if exists \"Subject:\" {}"),
            "line 1: invalid header name \"Subject:\""
        );
        assert_eq!(
            err("if header \"a b\" \"x\" {}"),
            "line 1: invalid header name \"a b\""
        );
    }

    #[test]
    fn logical_tests() {
        assert_eq!(
            test("if allof (true, not false, anyof (false, true)) {}"),
            Test::AllOf(vec![
                Test::True,
                Test::Not(Box::new(Test::False)),
                Test::AnyOf(vec![Test::False, Test::True]),
            ])
        );
        assert_eq!(test("if anyof true {}"), Test::AnyOf(vec![Test::True]));
        assert_eq!(
            err("if not (true, false) {}"),
            "line 1: not takes exactly one test"
        );
        assert_eq!(err("if allof {}"), "line 1: allof needs a test list");
        assert_eq!(
            err("if anyof \"x\" (true) {}"),
            "line 1: anyof takes a test list and no arguments"
        );
        assert_eq!(
            err("if true false {}"),
            "line 1: test true does not take a test"
        );
        assert_eq!(
            err("if true \"x\" {}"),
            "line 1: test true takes 0 arguments, found 1"
        );
    }

    #[test]
    fn envelope_parts() {
        assert_eq!(
            test("require \"envelope\"; if envelope :domain \"FROM\" \"b.org\" {}"),
            Test::Envelope {
                parts: vec![t("FROM")],
                part: AddressPart::Domain,
                m: is(&["b.org"]),
            }
        );
        assert_eq!(
            err("require \"envelope\"; if envelope \"auth\" \"x\" {}"),
            "line 1: envelope part \"auth\" not supported (from, to)"
        );
    }

    #[test]
    fn body_transforms() {
        let tr = |s: &str| match test(&format!("require \"body\"; if body {s} \"x\" {{}}")) {
            Test::Body { transform, m } => {
                assert_eq!(m.keys, vec![t("x")]);
                transform
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(tr(""), BodyTransform::Text);
        assert_eq!(tr(":text :contains"), BodyTransform::Text);
        assert_eq!(tr(":raw"), BodyTransform::Raw);
        assert_eq!(
            tr(":content [\"text\", \"\"]"),
            BodyTransform::Content(vec![t("text"), t("")])
        );
        assert_eq!(
            err("require \"body\"; if body :raw :text \"x\" {}"),
            "line 1: test body: :raw and :text cannot both be given"
        );
    }

    #[test]
    fn date_and_currentdate() {
        assert_eq!(
            test("require \"date\"; if date :zone \"-0130\" \"received\" \"Year\" \"2024\" {}"),
            Test::Date {
                header: t("received"),
                zone: Zone::Fixed(-90),
                part: DatePart::Year,
                m: is(&["2024"]),
            }
        );
        let Test::Date { zone, .. } =
            test("require \"date\"; if date :originalzone \"date\" \"hour\" \"09\" {}")
        else {
            panic!()
        };
        assert_eq!(zone, Zone::Original);
        assert_eq!(
            test("require \"relational\"; require \"date\"; if currentdate :value \"ge\" \"iso8601\" \"2026\" {}"),
            Test::CurrentDate {
                zone: Zone::Local,
                part: DatePart::Iso8601,
                m: Match {
                    kind: MatchType::Value(Relation::Ge),
                    ..is(&["2026"])
                },
            }
        );
        for p in [
            "year", "month", "day", "date", "julian", "hour", "minute", "second", "time",
            "iso8601", "std11", "zone", "weekday",
        ] {
            ok(&format!(
                "require \"date\"; if currentdate \"{p}\" \"x\" {{}}"
            ));
        }
    }

    #[test]
    fn date_errors() {
        assert_eq!(
            err("require \"date\";\nif currentdate \"fortnight\" \"1\" {}"),
            "line 2: unknown date part \"fortnight\""
        );
        assert_eq!(
            err("require \"date\"; if currentdate :zone \"CET\" \"year\" \"1\" {}"),
            "line 1: invalid time zone \"CET\" (+hhmm or -hhmm)"
        );
        assert_eq!(
            err("require \"date\"; if currentdate :zone \"+2460\" \"year\" \"1\" {}"),
            "line 1: invalid time zone \"+2460\" (+hhmm or -hhmm)"
        );
        assert_eq!(
            err("require \"date\"; if currentdate :originalzone \"year\" \"1\" {}"),
            "line 1: test currentdate: unknown tag :originalzone"
        );
        assert_eq!(
            err("require \"date\"; if date :zone \"+0100\" :originalzone \"date\" \"year\" \"1\" {}"),
            "line 1: test date: :zone and :originalzone cannot both be given"
        );
    }

    #[test]
    fn mailboxexists() {
        assert_eq!(
            test("require \"mailbox\"; if mailboxexists [\"Junk\", \"INBOX\"] {}"),
            Test::MailboxExists {
                names: vec![t("Junk"), t("INBOX")]
            }
        );
    }

    #[test]
    fn flag_commands() {
        let p = ok("require \"imap4flags\";\nsetflag \"\\\\Seen\";\naddflag [\"a\", \"b\"];\nremoveflag \"a\";");
        let got: Vec<Command> = p.commands.into_iter().map(|s| s.command).collect();
        assert_eq!(
            got,
            vec![
                Command::Flags {
                    op: FlagOp::Set,
                    variable: None,
                    flags: vec![t("\\Seen")]
                },
                Command::Flags {
                    op: FlagOp::Add,
                    variable: None,
                    flags: vec![t("a"), t("b")]
                },
                Command::Flags {
                    op: FlagOp::Remove,
                    variable: None,
                    flags: vec![t("a")]
                },
            ]
        );
        assert_eq!(
            cmd("require [\"imap4flags\", \"variables\"]; addflag \"MyFlags\" \"x\";"),
            Command::Flags {
                op: FlagOp::Add,
                variable: Some("myflags".into()),
                flags: vec![t("x")]
            }
        );
        assert_eq!(
            err("require \"imap4flags\"; addflag \"v\" \"x\";"),
            "line 1: command addflag: a variable name needs require \"variables\""
        );
        assert_eq!(
            cmd("require \"imap4flags\"; keep :flags \"\\\\Flagged\";"),
            Command::Keep {
                flags: Some(vec![t("\\Flagged")])
            }
        );
    }

    #[test]
    fn hasflag() {
        assert_eq!(
            test("require \"imap4flags\"; if hasflag :contains \"seen\" {}"),
            Test::HasFlag {
                variables: Vec::new(),
                m: Match {
                    kind: MatchType::Contains,
                    ..is(&["seen"])
                }
            }
        );
        let Test::HasFlag { variables, .. } =
            test("require [\"imap4flags\", \"variables\"]; if hasflag [\"A\", \"b\"] \"x\" {}")
        else {
            panic!()
        };
        assert_eq!(variables, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            err("require \"imap4flags\"; if hasflag \"a\" \"x\" {}"),
            "line 1: hasflag: a variable list needs require \"variables\""
        );
    }

    #[test]
    fn spamtest_and_percent() {
        assert_eq!(
            test(
                "require [\"spamtest\", \"relational\", \"comparator-i;ascii-numeric\"]; \
                  if spamtest :value \"ge\" :comparator \"i;ascii-numeric\" \"6\" {}"
            ),
            Test::SpamTest {
                percent: false,
                m: Match {
                    kind: MatchType::Value(Relation::Ge),
                    comparator: Comparator::AsciiNumeric,
                    keys: vec![t("6")],
                    regexes: Vec::new()
                }
            }
        );
        assert_eq!(
            err("require \"spamtest\"; if spamtest :percent \"50\" {}"),
            "line 1: tag :percent needs require \"spamtestplus\""
        );
        // spamtestplus brings spamtest.
        let Test::SpamTest { percent, .. } =
            test("require \"spamtestplus\"; if spamtest :percent \"50\" {}")
        else {
            panic!()
        };
        assert!(percent);
    }

    #[test]
    fn duplicate_options() {
        assert_eq!(
            test("require \"duplicate\"; if duplicate :handle \"h\" :header \"X-Id\" :seconds 60 :last {}"),
            Test::Duplicate(Box::new(Duplicate {
                handle: Some(t("h")),
                id: DuplicateId::Header(t("X-Id")),
                seconds: Some(60),
                last: true,
            }))
        );
        assert_eq!(
            test("require \"duplicate\"; if duplicate {}"),
            Test::Duplicate(Box::new(Duplicate {
                handle: None,
                id: DuplicateId::MessageId,
                seconds: None,
                last: false,
            }))
        );
        let Test::Duplicate(d) = test("require \"duplicate\"; if duplicate :uniqueid \"u\" {}")
        else {
            panic!()
        };
        assert_eq!(d.id, DuplicateId::UniqueId(t("u")));
        assert_eq!(
            err("require \"duplicate\"; if duplicate :header \"a\" :uniqueid \"b\" {}"),
            "line 1: test duplicate: :header and :uniqueid cannot both be given"
        );
        assert_eq!(
            err("require \"duplicate\"; if duplicate :seconds {}"),
            "line 1: test duplicate: tag :seconds needs a number, found nothing"
        );
    }

    #[test]
    fn set_with_modifiers_in_precedence_order() {
        assert_eq!(
            cmd("require \"variables\"; set :length :upperfirst :lower :quotewildcard :encodeurl \"Name\" \"v\";"),
            Command::Set {
                name: "name".into(),
                modifiers: vec![
                    Modifier::Lower,
                    Modifier::UpperFirst,
                    Modifier::QuoteWildcard,
                    Modifier::EncodeUrl,
                    Modifier::Length
                ],
                value: t("v"),
            }
        );
        assert_eq!(
            err("require \"variables\"; set :lower :upper \"a\" \"b\";"),
            "line 1: command set: :lower and :upper cannot both be given"
        );
        assert_eq!(
            err("require \"variables\"; set :lowerfirst :upperfirst \"a\" \"b\";"),
            "line 1: command set: :lowerfirst and :upperfirst cannot both be given"
        );
        assert_eq!(
            err("require \"variables\"; set \"1a\" \"b\";"),
            "line 1: set: invalid variable name \"1a\""
        );
        assert_eq!(
            err("require \"variables\"; set \"a\";"),
            "line 1: command set takes 2 arguments (a string, a string), found 1"
        );
    }

    #[test]
    fn string_test() {
        assert_eq!(
            test("require \"variables\"; if string :matches \"${A}\" \"*x\" {}"),
            Test::String {
                sources: vec![Str(vec![Part::Var("a".into())])],
                m: Match {
                    kind: MatchType::Matches,
                    ..is(&["*x"])
                }
            }
        );
    }

    #[test]
    fn variable_references_are_split_out() {
        let Command::Set { value, .. } =
            cmd("require \"variables\"; set \"x\" \"a ${Name} b ${1}${ ${bad.} $${x}} ${}\";")
        else {
            panic!()
        };
        assert_eq!(
            value,
            Str(vec![
                Part::Text("a ".into()),
                Part::Var("name".into()),
                Part::Text(" b ".into()),
                Part::Match(1),
                Part::Text("${ ${bad.} $".into()),
                Part::Var("x".into()),
                Part::Text("} ${}".into()),
            ])
        );
        assert_eq!(value.constant(), None);
    }

    #[test]
    fn without_variables_references_are_text() {
        assert_eq!(
            cmd("require \"fileinto\"; fileinto \"${x}\";"),
            Command::FileInto {
                mailbox: t("${x}"),
                copy: false,
                create: false,
                flags: None
            }
        );
    }

    #[test]
    fn namespaced_variable_is_an_error() {
        assert_eq!(
            err("require [\"variables\", \"fileinto\"];\nfileinto \"${env.home}\";"),
            "line 2: variable ${env.home}: unknown namespace"
        );
    }

    #[test]
    fn values_that_must_be_constant() {
        assert_eq!(
            err("require \"variables\"; if header :comparator \"${c}\" \"a\" \"b\" {}"),
            "line 1: the comparator name must be constant (no variables)"
        );
        assert_eq!(
            err("require [\"variables\", \"include\"]; include \"${x}\";"),
            "line 1: include: the script name must be constant (no variables)"
        );
    }

    #[test]
    fn encoded_characters() {
        let Command::Reject { reason, .. } = cmd(
            "require [\"reject\", \"encoded-character\"]; reject \"${hex:48 69}${unicode: 20 00E9 1F600}${HEX:c3 a9}\";",
        ) else {
            panic!()
        };
        assert_eq!(reason, t("Hi é😀é"));
        // Not well-formed: left as written.
        let Command::Reject { reason, .. } = cmd(
            "require [\"reject\", \"encoded-character\"]; reject \"${hex:} ${hex:123} ${hex:zz} ${unicode:41\";",
        ) else {
            panic!()
        };
        assert_eq!(reason, t("${hex:} ${hex:123} ${hex:zz} ${unicode:41"));
        // Multi-byte characters right after `${` are not cut in two.
        let Command::Reject { reason, .. } = cmd(
            "require [\"reject\", \"encoded-character\"]; reject \"${a€} ${aa€} ${héx:41} ${unicöde:41}\";",
        ) else {
            panic!()
        };
        assert_eq!(reason, t("${a€} ${aa€} ${héx:41} ${unicöde:41}"));
        // Without the require nothing is decoded.
        let Command::Reject { reason, .. } = cmd("require \"reject\"; reject \"${hex:41}\";")
        else {
            panic!()
        };
        assert_eq!(reason, t("${hex:41}"));
    }

    #[test]
    fn encoded_character_errors() {
        assert_eq!(
            err("require [\"reject\", \"encoded-character\"];\nreject \"${unicode:D800}\";"),
            "line 2: ${unicode:D800} is not a Unicode code point"
        );
        assert_eq!(
            err("require [\"reject\", \"encoded-character\"]; reject \"${unicode:110000}\";"),
            "line 1: ${unicode:110000} is not a Unicode code point"
        );
        assert_eq!(
            err("require [\"reject\", \"encoded-character\"]; reject \"${hex:ff}\";"),
            "line 1: encoded characters (${hex:…}) do not form UTF-8"
        );
    }

    #[test]
    fn encoded_characters_before_variables() {
        let Command::Set { value, .. } =
            cmd("require [\"variables\", \"encoded-character\"]; set \"a\" \"${hex:41}${b}\";")
        else {
            panic!()
        };
        assert_eq!(
            value,
            Str(vec![Part::Text("A".into()), Part::Var("b".into())])
        );
    }

    #[test]
    fn vacation_full() {
        assert_eq!(
            cmd("require \"vacation\";\nvacation :days 7 :subject \"Away\" :from \"me@example.org\" \
                 :addresses [\"a@example.org\", \"b@example.org\"] :mime :handle \"h1\" \"Back soon\";"),
            Command::Vacation(Box::new(Vacation {
                period: Period::Days(7),
                subject: Some(t("Away")),
                from: Some(t("me@example.org")),
                addresses: vec![t("a@example.org"), t("b@example.org")],
                mime: true,
                handle: Some(t("h1")),
                reason: t("Back soon"),
            }))
        );
        assert_eq!(
            cmd("require \"vacation\"; vacation \"x\";"),
            Command::Vacation(Box::new(Vacation {
                period: Period::Default,
                subject: None,
                from: None,
                addresses: Vec::new(),
                mime: false,
                handle: None,
                reason: t("x"),
            }))
        );
    }

    #[test]
    fn vacation_seconds() {
        let Command::Vacation(v) =
            cmd("require [\"vacation\", \"vacation-seconds\"]; vacation :seconds 3600 \"x\";")
        else {
            panic!()
        };
        assert_eq!(v.period, Period::Seconds(3600));
        // vacation-seconds brings vacation.
        ok("require \"vacation-seconds\"; vacation :seconds 0 \"x\";");
        assert_eq!(
            err("require \"vacation\"; vacation :seconds 60 \"x\";"),
            "line 1: tag :seconds needs require \"vacation-seconds\""
        );
        assert_eq!(
            err("require \"vacation-seconds\"; vacation :days 1 :seconds 60 \"x\";"),
            "line 1: command vacation: :days and :seconds cannot both be given"
        );
        assert_eq!(
            err("require \"vacation\"; vacation :days \"1\" \"x\";"),
            "line 1: command vacation: tag :days needs a number, found a string"
        );
    }

    #[test]
    fn include_return_global() {
        let p = ok("require [\"include\", \"variables\"];\ninclude :global :once :optional \"spam-rules\";\ninclude \"mine\";\nglobal [\"Test\", \"b\"];\nreturn;");
        let got: Vec<Command> = p.commands.into_iter().map(|s| s.command).collect();
        assert_eq!(
            got,
            vec![
                Command::Include {
                    location: Location::Global,
                    name: "spam-rules".into(),
                    once: true,
                    optional: true
                },
                Command::Include {
                    location: Location::Personal,
                    name: "mine".into(),
                    once: false,
                    optional: false
                },
                Command::Global {
                    names: vec!["test".into(), "b".into()]
                },
                Command::Return,
            ]
        );
    }

    #[test]
    fn include_errors() {
        assert_eq!(
            err("require \"include\"; include :personal :global \"a\";"),
            "line 1: command include: :personal and :global cannot both be given"
        );
        assert_eq!(
            err("require \"include\"; include \"../etc/x\";"),
            "line 1: include: invalid script name \"../etc/x\""
        );
        assert_eq!(
            err("require \"include\"; include \"\";"),
            "line 1: include: invalid script name \"\""
        );
    }

    #[test]
    fn argument_counts_and_types() {
        assert_eq!(
            err("require \"fileinto\";\nfileinto;"),
            "line 2: command fileinto takes 1 argument (a string), found 0"
        );
        assert_eq!(
            err("keep \"x\";"),
            "line 1: command keep takes 0 arguments, found 1"
        );
        assert_eq!(
            err("require \"fileinto\"; fileinto [\"a\", \"b\"];"),
            "line 1: command fileinto: argument 1 must be a string, found a string list"
        );
        assert_eq!(
            err("if header \"a\" {}"),
            "line 1: test header takes 2 arguments (a string list, a string list), found 1"
        );
        assert_eq!(
            err("if header \"a\" \"b\"\n \"c\" {}"),
            "line 2: test header takes 2 arguments (a string list, a string list), found 3"
        );
    }

    #[test]
    fn blocks_and_tests_where_none_belong() {
        assert_eq!(err("keep { stop; }"), "line 1: keep does not take a block");
        assert_eq!(
            err("keep\nstop;"),
            "line 1: keep does not take a test (missing ';' before stop?)"
        );
        assert_eq!(
            err("stop (true);"),
            "line 1: stop does not take a test list"
        );
    }

    #[test]
    fn error_lines_follow_the_script() {
        let e = compile(
            b"require \"fileinto\";\r\n# comment\r\nif true {\r\n  fileinto :bogus \"x\";\r\n}\r\n",
        )
        .unwrap_err();
        assert_eq!(e.line(), 4);
        assert_eq!(e.message(), "command fileinto: unknown tag :bogus");
        assert_eq!(
            e.to_string(),
            "line 4: command fileinto: unknown tag :bogus"
        );
    }

    #[test]
    fn error_text_is_one_line() {
        let e = err("require \"a\r\nb\";");
        assert_eq!(e, "line 1: require \"a  b\": extension not supported");
    }

    #[test]
    fn regex_key_limit() {
        let keys = |n: usize| vec!["\"a\""; n].join(",");
        let script = |a: usize, b: usize| {
            format!(
                "require \"regex\";\nif header :regex \"s\" [{}] {{}}\nif header :regex \"s\" [{}] {{}}",
                keys(a),
                keys(b)
            )
        };
        ok(&script(MAX_REGEXES - 1, 1));
        assert_eq!(
            err(&script(MAX_REGEXES, 1)),
            format!("line 3: more than {MAX_REGEXES} :regex keys in one script")
        );
    }

    #[test]
    fn limits_through_compile() {
        let big = vec![b'#'; MAX_SCRIPT_SIZE + 10];
        assert!(err(std::str::from_utf8(&big).unwrap()).contains("over the limit of 1048576 bytes"));
        let deep = "if true {".repeat(40) + &"}".repeat(40);
        assert_eq!(
            err(&deep),
            format!("line 1: nested more than {MAX_NESTING} levels deep")
        );
    }

    #[test]
    fn roundcube_style_script() {
        let script = "require [\"fileinto\",\"vacation\",\"date\",\"relational\",\"imap4flags\",\"copy\",\"regex\"];\r\n\
# rule:[Lists]\r\n\
if anyof (header :contains \"list-id\" \"dev.example.org\", address :is \"from\" \"x@y.org\")\r\n\
{\r\n\
\tfileinto :copy \"Lists/dev\";\r\n\
\tstop;\r\n\
}\r\n\
# rule:[Out of office]\r\n\
if allof (currentdate :zone \"+0100\" :value \"ge\" \"date\" \"2026-12-01\", currentdate :zone \"+0100\" :value \"le\" \"date\" \"2026-12-24\")\r\n\
{\r\n\
\tvacation :days 1 :subject \"Away\" :from \"me@example.org\" \"I am away.\";\r\n\
}\r\n\
# rule:[flag]\r\n\
if header :regex \"subject\" \"^\\\\[urgent\\\\]\" { addflag \"\\\\Flagged\"; }\r\n";
        let p = ok(script);
        assert_eq!(p.commands.len(), 3);
        assert_eq!(
            p.commands.iter().map(|s| s.line).collect::<Vec<_>>(),
            vec![3, 9, 14]
        );
    }

    /// The fuzz seeds mean what their names say: the valid ones compile
    /// (so fuzzing starts deep in the validator), the broken ones fail
    /// with the error they were written for.
    #[test]
    fn fuzz_seeds_compile_or_fail_as_named() {
        macro_rules! seed {
            ($name:literal) => {
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fuzz/corpus/sieve_compile/",
                    $name
                ))
                .as_slice()
            };
        }
        for good in [
            seed!("roundcube-filters"),
            seed!("vacation"),
            seed!("variables-encoded"),
            seed!("everything"),
        ] {
            if let Err(e) = compile(good) {
                panic!("{e}: {}", String::from_utf8_lossy(good));
            }
        }
        let e = |b: &[u8]| compile(b).unwrap_err().to_string();
        assert_eq!(
            e(seed!("unterminated-text")),
            "line 2: text: string not ended by a line holding only '.'"
        );
        assert_eq!(e(seed!("not-utf8")), "line 1: script is not valid UTF-8");
        assert_eq!(
            e(seed!("deep-nesting")),
            format!("line 1: nested more than {MAX_NESTING} levels deep")
        );
        assert!(e(seed!("bad-regex")).starts_with("line 2: regex \"a(b\": "));
        assert_eq!(
            e(seed!("require-unknown")),
            "line 1: require \"notify\": extension not supported"
        );
        assert_eq!(
            e(seed!("errors-misc")),
            "line 3: comment /* … not closed by */"
        );
        assert_eq!(e(seed!("tokens")), "line 1: number too large");
    }
}
