//! `vmailctl vacation`: an out-of-office reply that coexists with the
//! account's own filters.
//!
//! # How it coexists
//!
//! Dovecot runs one personal script, the one `.dovecot.sieve` points at
//! (see [`super::sieve`] for the layout). `vacation on` therefore writes
//! an ordinary Sieve script, [`SCRIPT`] (`sieve/vmailctl-vacation.sieve`),
//! and makes it the active one; the script the user had active before is
//! not changed, but *included* at the end of the new one:
//!
//! ```sieve
//! # Out-of-office reply written by `vmailctl vacation`. ...
//! # vmailctl-vacation: previous active script "roundcube"
//! require ["vacation", "date", "relational", "include"];
//! if allof (currentdate :value "ge" "date" "2030-07-01",
//!           currentdate :value "le" "date" "2030-07-14") {
//!     vacation :days 7 :subject "Out of office" "I am away until the 15th.";
//! }
//! include :personal :optional "roundcube";
//! ```
//!
//! So a message first gets the vacation reply (vacation does not cancel
//! the implicit keep), then the user's filters run exactly as before:
//! their `fileinto`, `discard`, `redirect` and even `stop` work, since the
//! reply was decided first. `:optional` keeps the reply working if the
//! user deletes that script meanwhile. Because the result is a normal
//! script in the normal place, Dovecot/Pigeonhole and ManageSieve clients
//! (Roundcube lists it) see exactly what vdeliver runs.
//!
//! The comment line `# vmailctl-vacation: previous active script "NAME"`
//! (or `... script none`) records what was active; `vacation off` reads it
//! back ([`previous_of`]; strict: exactly one such line, the name a quoted
//! string with `\\` and `\"` escapes and a valid script name, or the word
//! `none`; anything else is refused rather than guessed at).
//!
//! * `on` with nothing active: the vacation script alone; `off` leaves
//!   nothing active again.
//! * `on` with a script active: that script is included and remembered;
//!   `off` makes it active again (if it still exists; otherwise nothing is
//!   active) and deletes the vacation script. The link is switched first
//!   and the script deleted after, so a delivery never meets a dangling
//!   link.
//! * `on` while on: the script is regenerated from the new options,
//!   keeping the remembered previous script.
//! * The user activates another script (ManageSieve, Roundcube) while on
//!   vacation: the vacation is simply no longer active; the status says
//!   "present but not active", and `off` only deletes the vacation script,
//!   leaving the user's choice alone. A later `on` includes the user's new
//!   choice.
//! * A regular file `.dovecot.sieve` (not managed) or a foreign symlink:
//!   `on` refuses, as `sieve activate` does.
//! * The previously active script must compile: a vacation script that
//!   includes a broken one would fail at run time (the message is kept,
//!   but no reply is sent), so `on` refuses and names it.
//! * A vacation script rewritten without the record (by a ManageSieve
//!   client that regenerates scripts): `off` deactivates it and says no
//!   previous script was recorded.
//!
//! # The generated text
//!
//! * The dates are `currentdate :value "ge"/"le" "date" "YYYY-MM-DD"`
//!   (RFC 5260, RFC 5231), compared in the server's local zone, both ends
//!   inclusive; either may be absent. `--from` after `--until` is refused.
//!   The dates must be real calendar dates (`2030-02-30` is refused).
//! * `:days` is checked against [`MIN_DAYS`]..=[`MAX_DAYS`] (1 to 365, as
//!   RFC 5230 suggests days and a year is the longest period anyone
//!   means); absent, the site's default applies. Delivery clamps it to
//!   `sieve.vacation_min_period`..`vacation_max_period` anyway.
//! * The subject and body are quoted strings, `\` and `"` escaped
//!   ([`quote`]); the body keeps its line breaks literally. Sieve strings
//!   hold CRLF line ends, so the reply's text is the body with each bare LF
//!   made CRLF and nothing else changed: lines beginning with `.`, `${…}`
//!   (no `variables` is required, so it is literal text), non-ASCII, a
//!   missing final line end all survive. The subject may be non-ASCII (the
//!   delivery side encodes it, RFC 2047) but holds no control characters;
//!   without `--subject` the reply says `Auto: <original subject>`. The
//!   body must be UTF-8 (Sieve scripts are), not empty and without NUL.
//! * The script is compiled with [`crate::sieve::compile`] before it is
//!   written, as `sieve put` does, and written and activated atomically
//!   with the same helpers.

use super::sieve::{self as s, Active, SieveHome};
use super::{AdminError, Result};
use crate::maildir::MailRoot;
use crate::sieve::{Command, DatePart, MatchType, Part, Period, Relation, Stmt, Str, Test};
use rustix::fd::AsFd;
use serde::Serialize;
use std::path::Path;

/// The name of the generated script (`sieve/vmailctl-vacation.sieve`).
pub const SCRIPT: &str = "vmailctl-vacation";

/// The shortest `--days`.
pub const MIN_DAYS: u64 = 1;
/// The longest `--days`.
pub const MAX_DAYS: u64 = 365;

/// The record of the previously active script begins so.
const RECORD: &str = "# vmailctl-vacation: previous active script ";
/// Any line beginning so is taken as the record (and must be one).
const RECORD_STEM: &str = "# vmailctl-vacation: previous";

/// What `vacation on` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// `:subject`; None: the delivery side's `Auto: <original>`.
    pub subject: Option<String>,
    /// The reply's text.
    pub body: String,
    /// First day of the window (`YYYY-MM-DD`, inclusive).
    pub from: Option<String>,
    /// Last day of the window (inclusive).
    pub until: Option<String>,
    /// `:days`; None: the site's default.
    pub days: Option<u64>,
}

impl Settings {
    /// Refuse what the generated script could not carry (see the module
    /// doc).
    pub fn check(&self) -> Result<()> {
        let bad = |w: String| Err(AdminError::Invalid(w));
        if let Some(d) = self.days {
            if !(MIN_DAYS..=MAX_DAYS).contains(&d) {
                return bad(format!("--days {d}: must be from {MIN_DAYS} to {MAX_DAYS}"));
            }
        }
        for d in [&self.from, &self.until].into_iter().flatten() {
            date(d)?;
        }
        if let (Some(f), Some(u)) = (&self.from, &self.until) {
            if f > u {
                return bad(format!("--from {f} is after --until {u}"));
            }
        }
        if let Some(sub) = &self.subject {
            if sub.trim().is_empty() {
                return bad("--subject is empty (leave it out for \"Auto: <subject>\")".into());
            }
            if sub.chars().any(char::is_control) {
                return bad("--subject contains a control character (a line break?)".into());
            }
        }
        if self.body.trim().is_empty() {
            return bad("the body is empty".into());
        }
        if self.body.contains('\0') {
            return bad("the body contains a NUL byte".into());
        }
        Ok(())
    }
}

/// Check a `YYYY-MM-DD` date: a real calendar day, years 1970 to 9999.
pub fn date(raw: &str) -> Result<String> {
    let bad = || AdminError::Invalid(format!("bad date {raw:?}: want YYYY-MM-DD, a real day"));
    let b = raw.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = b.get(r)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(d.iter().fold(0, |n, c| n * 10 + u32::from(c - b'0')))
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, m, d) = match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => return Err(bad()),
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let last = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if y < 1970 || d == 0 || d > last {
        return Err(bad());
    }
    Ok(raw.to_string())
}

/// `text` as a Sieve quoted string (RFC 5228 2.4.2): `\` and `"` escaped,
/// everything else (line breaks included) literal.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The vacation script for `set`, including `previous` (the script active
/// before) at its end.
pub fn generate(set: &Settings, previous: Option<&str>) -> String {
    let mut t = String::from(
        "# Out-of-office reply written by `vmailctl vacation`. `vmailctl vacation\n\
         # ADDRESS off` removes it and makes the script recorded below active again.\n",
    );
    t += RECORD;
    t += &previous.map_or_else(|| "none".to_string(), quote);
    t += "\n";
    let mut req = vec!["vacation"];
    let window: Vec<String> = [("ge", &set.from), ("le", &set.until)]
        .into_iter()
        .filter_map(|(rel, d)| {
            d.as_ref()
                .map(|d| format!("currentdate :value \"{rel}\" \"date\" {}", quote(d)))
        })
        .collect();
    if !window.is_empty() {
        req.extend(["date", "relational"]);
    }
    if previous.is_some() {
        req.push("include");
    }
    let req: Vec<String> = req.iter().map(|r| quote(r)).collect();
    t += &format!("require [{}];\n", req.join(", "));
    let mut vac = String::from("vacation");
    if let Some(d) = set.days {
        vac += &format!(" :days {d}");
    }
    if let Some(sub) = &set.subject {
        vac += &format!(" :subject {}", quote(sub));
    }
    vac += &format!(" {};\n", quote(&set.body));
    match window.as_slice() {
        [] => t += &vac,
        [one] => t += &format!("if {one} {{\n    {vac}}}\n"),
        many => {
            t += &format!(
                "if allof ({}) {{\n    {vac}}}\n",
                many.join(",\n          ")
            )
        }
    }
    if let Some(p) = previous {
        t += "# Then the script that was active before, so that its filters still run.\n";
        t += &format!("include :personal :optional {};\n", quote(p));
    }
    t
}

/// What the vacation script records as active before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Previous {
    /// No record line (the script was rewritten by something else).
    Unrecorded,
    /// Nothing was active.
    Nothing,
    /// This script was.
    Script(String),
}

/// Read the record back (strict; see the module doc).
pub fn previous_of(script: &str) -> Result<Previous> {
    let bad = |w: &str| {
        AdminError::Conflict(format!(
            "the vacation script's record of the previously active script is {w}; \
             not guessing (activate the right script with `vmailctl sieve activate` \
             and remove {SCRIPT:?} with `vmailctl sieve delete`)"
        ))
    };
    let mut found = None;
    for line in script.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !line.starts_with(RECORD_STEM) {
            continue;
        }
        if found.is_some() {
            return Err(bad("there twice"));
        }
        let rest = line.strip_prefix(RECORD).ok_or_else(|| bad("malformed"))?;
        found = Some(if rest == "none" {
            Previous::Nothing
        } else {
            let name = unquote(rest).ok_or_else(|| bad("malformed"))?;
            let name = s::script_name(&name).map_err(|_| bad("not a script name"))?;
            if name == SCRIPT {
                return Err(bad("the vacation script itself"));
            }
            Previous::Script(name)
        });
    }
    Ok(found.unwrap_or(Previous::Unrecorded))
}

/// The inverse of [`quote`] for a whole string; None unless `q` is exactly
/// one quoted string.
fn unquote(q: &str) -> Option<String> {
    let inner = q.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next()? {
                e @ ('\\' | '"') => out.push(e),
                _ => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The settings a vacation script holds, read from its compiled form;
/// None when it is not in the shape [`generate`] writes.
pub fn settings_of(script: &[u8]) -> Option<Settings> {
    let p = crate::sieve::compile(script).ok()?;
    let plain = |x: &Str| -> Option<String> {
        x.0.iter()
            .map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    };
    let from_vacation = |st: &Stmt| -> Option<Settings> {
        let Command::Vacation(v) = &st.command else {
            return None;
        };
        Some(Settings {
            subject: match &v.subject {
                Some(x) => Some(plain(x)?),
                None => None,
            },
            body: plain(&v.reason)?,
            from: None,
            until: None,
            days: match v.period {
                Period::Days(d) => Some(d),
                _ => None,
            },
        })
    };
    for st in &p.commands {
        if let Some(set) = from_vacation(st) {
            return Some(set);
        }
        let Command::If {
            branches,
            otherwise: None,
        } = &st.command
        else {
            continue;
        };
        let [b] = branches.as_slice() else {
            continue;
        };
        let [inner] = b.block.as_slice() else {
            continue;
        };
        let mut set = from_vacation(inner)?;
        let tests = match &b.test {
            Test::AllOf(ts) => ts.iter().collect(),
            t => vec![t],
        };
        for t in tests {
            let Test::CurrentDate {
                part: DatePart::Date,
                m,
                ..
            } = t
            else {
                return None;
            };
            let [key] = m.keys.as_slice() else {
                return None;
            };
            let key = plain(key)?;
            match m.kind {
                MatchType::Value(Relation::Ge) => set.from = Some(key),
                MatchType::Value(Relation::Le) => set.until = Some(key),
                _ => return None,
            }
        }
        return Some(set);
    }
    None
}

/// What [`on`] did.
#[derive(Debug, Clone, Serialize)]
pub struct On {
    /// The script the vacation script includes and `off` restores.
    pub previous: Option<String>,
    /// A vacation script was there already (it was regenerated).
    pub replaced: bool,
    pub bytes: u64,
}

/// Write the vacation script from `set` and activate it (see the module
/// doc).
pub fn on(root: &Path, h: &SieveHome, set: &Settings) -> Result<On> {
    set.check()?;
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| s::io("mail root", e))?;
        let home = s::open_or_make_home(&root, h)?;
        let active = s::active_of(home.as_fd())?;
        s::ours_or_none(&active, "replacing")?;
        let dir = s::open_or_make_script_dir(home.as_fd(), h)?;
        let existing = s::read_script(dir.as_fd(), SCRIPT)?;
        let previous = match &active {
            Active::Script(n) if n == SCRIPT => match &existing {
                Some(t) => match previous_of(&String::from_utf8_lossy(t))? {
                    Previous::Script(n) => Some(n),
                    Previous::Nothing | Previous::Unrecorded => None,
                },
                None => None,
            },
            Active::Script(n) => Some(n.clone()),
            _ => None,
        };
        if let Some(p) = &previous {
            if let Some(text) = s::read_script(dir.as_fd(), p)? {
                s::compiles(
                    &format!(
                        "the active script {p:?} does not compile, and the vacation script \
                         would include it (no reply would be sent); fix it or deactivate it \
                         first"
                    ),
                    &text,
                )?;
            }
        }
        let text = generate(set, previous.as_deref());
        let max = crate::sieve::MAX_SCRIPT_SIZE;
        if text.len() > max {
            return Err(AdminError::Invalid(format!(
                "the vacation script would be larger than {max} bytes (a shorter body?)"
            )));
        }
        s::compiles(
            "the generated vacation script does not compile",
            text.as_bytes(),
        )?;
        s::store(dir.as_fd(), &s::file_name(SCRIPT), text.as_bytes())?;
        s::link_active(home.as_fd(), h, SCRIPT)?;
        Ok(On {
            previous,
            replaced: existing.is_some(),
            bytes: text.len() as u64,
        })
    })
}

/// What [`off`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Off {
    /// There was a vacation script (it is deleted now).
    pub removed: bool,
    /// It was the active script.
    pub was_active: bool,
    /// What the script recorded as active before it.
    pub previous: Option<Previous>,
    /// The recorded script no longer exists (so nothing is active).
    pub previous_missing: bool,
    /// What is active now.
    pub active: Active,
}

/// Remove the vacation script, making the recorded previous script active
/// again when the vacation script was the active one (see the module doc).
pub fn off(root: &Path, h: &SieveHome) -> Result<Off> {
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| s::io("mail root", e))?;
        let mut done = Off {
            removed: false,
            was_active: false,
            previous: None,
            previous_missing: false,
            active: Active::None,
        };
        let Some(home) = s::open_home(&root, h)? else {
            return Ok(done);
        };
        let active = s::active_of(home.as_fd())?;
        let Some(dir) = s::open_script_dir(home.as_fd(), h)? else {
            done.active = active;
            return Ok(done);
        };
        let existing = s::read_script(dir.as_fd(), SCRIPT)?;
        done.was_active = active == Active::Script(SCRIPT.into());
        done.active = active;
        if let Some(text) = &existing {
            done.previous = Some(previous_of(&String::from_utf8_lossy(text))?);
        }
        if done.was_active {
            let restore = match &done.previous {
                Some(Previous::Script(p)) => match s::read_script(dir.as_fd(), p)? {
                    Some(_) => Some(p.clone()),
                    None => {
                        done.previous_missing = true;
                        None
                    }
                },
                _ => None,
            };
            match restore {
                Some(p) => {
                    s::link_active(home.as_fd(), h, &p)?;
                    done.active = Active::Script(p);
                }
                None => {
                    s::unlink_link(home.as_fd(), h, &done.active)?;
                    done.active = Active::None;
                }
            }
        }
        if existing.is_some() {
            let f = s::file_name(SCRIPT);
            match s::retry(|| rustix::fs::unlinkat(&dir, f.as_str(), rustix::fs::AtFlags::empty()))
            {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(s::io(&format!("remove {}/{f}", s::SCRIPT_DIR), e)),
            }
            s::sync_dir(dir.as_fd(), s::SCRIPT_DIR)?;
            done.removed = true;
        }
        Ok(done)
    })
}

/// Whether the vacation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No vacation script.
    Off,
    /// The vacation script is the active one.
    On,
    /// The vacation script is there, but another (or none) is active.
    Inactive,
}

/// `vacation ADDRESS`: the state and the settings.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: State,
    pub active: Active,
    /// What the vacation script records as active before it.
    pub previous: Option<Previous>,
    /// None when there is no vacation script, or it is not in the form
    /// `vacation on` writes (edited by hand).
    pub settings: Option<Settings>,
}

/// The vacation state of the account.
pub fn status(root: &Path, h: &SieveHome) -> Result<Status> {
    super::as_mail_user(root, |root| {
        let root = MailRoot::open(root).map_err(|e| s::io("mail root", e))?;
        let mut st = Status {
            state: State::Off,
            active: Active::None,
            previous: None,
            settings: None,
        };
        let Some(home) = s::open_home(&root, h)? else {
            return Ok(st);
        };
        st.active = s::active_of(home.as_fd())?;
        let Some(dir) = s::open_script_dir(home.as_fd(), h)? else {
            return Ok(st);
        };
        let Some(text) = s::read_script(dir.as_fd(), SCRIPT)? else {
            return Ok(st);
        };
        st.state = if st.active == Active::Script(SCRIPT.into()) {
            State::On
        } else {
            State::Inactive
        };
        st.previous = previous_of(&String::from_utf8_lossy(&text)).ok();
        st.settings = settings_of(&text);
        Ok(st)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::action::Action;
    use crate::sieve::interp::{run, Env, NoHost};
    use crate::sieve::message::Message;

    fn settings(body: &str) -> Settings {
        Settings {
            subject: Some("Out of office".into()),
            body: body.into(),
            ..Settings::default()
        }
    }

    /// Run `script` and return the vacation reply's text, if any.
    fn reply(script: &str, now: i64) -> Option<(String, Option<String>, Option<u64>)> {
        let p =
            crate::sieve::compile(script.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{script}"));
        let env = Env {
            now,
            ..Env::default()
        };
        let msg =
            Message::parse(b"From: a@b.example\r\nTo: c@d.example\r\nSubject: hi\r\n\r\nx\r\n");
        let out = run(&p, &msg, &env, &mut NoHost);
        assert!(out.error.is_none(), "{:?}", out.error);
        out.actions.into_iter().find_map(|a| match a {
            Action::Vacation(v) => Some((v.reason, v.subject, v.period)),
            _ => None,
        })
    }

    #[test]
    fn quote_escapes_backslash_and_quote_only() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("é\nx"), "\"é\nx\"");
        for s in ["", "plain", "a\"b", "\\", "\\\"", "x\\\\\"\"y"] {
            assert_eq!(unquote(&quote(s)).as_deref(), Some(s), "{s:?}");
        }
        for bad in ["x", "\"a", "\"a\"b\"", "\"\\n\"", "\"a\\\""] {
            assert_eq!(unquote(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn body_round_trips_through_the_compiler() {
        let bodies = [
            "simple",
            "line one\nline two\n",
            ".\n..\n.leading dot\n.\r\nafter a lone dot",
            "quotes \" and backslashes \\ \\\" \\\\n",
            "Ich bin im Urlaub. Grüße, 休暇中です 🌴",
            "${hex:41} ${x} text: # not a comment /* nor this */",
            "crlf already\r\nand lf\nand a lone\rcr",
            "no final line end",
            "\n\nblank lines first\n\n",
            "\"\n;\n}\ninclude \"x\";\n",
        ];
        for body in bodies {
            let text = generate(&settings(body), None);
            let (got, subject, _) = reply(&text, 0).expect("a reply");
            // Sieve strings hold CRLF line ends: a bare LF becomes CRLF,
            // and nothing else changes.
            let want = body.replace("\r\n", "\n").replace('\n', "\r\n");
            assert_eq!(got, want, "{body:?}\n{text}");
            assert_eq!(subject.as_deref(), Some("Out of office"));
            let back = settings_of(text.as_bytes()).expect("readable");
            assert_eq!(back.body, want);
        }
    }

    #[test]
    fn subject_and_days() {
        let mut set = settings("x");
        set.subject = Some("Abwesend: \"Urlaub\" \\ bis Montag — ça va".into());
        set.days = Some(3);
        let text = generate(&set, None);
        let (_, subject, period) = reply(&text, 0).unwrap();
        assert_eq!(subject, set.subject);
        assert_eq!(period, Some(3 * 86_400));
        set.subject = None;
        set.days = None;
        let text = generate(&set, None);
        assert!(
            !text.contains(":subject") && !text.contains(":days"),
            "{text}"
        );
        assert_eq!(reply(&text, 0).unwrap().1, None);
        assert_eq!(settings_of(text.as_bytes()), Some(set));
    }

    #[test]
    fn the_date_window() {
        // 2030-07-01T00:00:00Z and friends.
        let day = |d: i64| 1_909_094_400 + d * 86_400;
        let mut set = settings("away");
        set.from = Some("2030-07-01".into());
        set.until = Some("2030-07-14".into());
        let text = generate(&set, None);
        assert!(text.contains("\"date\", \"relational\""), "{text}");
        for (now, want) in [
            (day(-1), false),
            (day(0), true),
            (day(7), true),
            (day(13) + 86_399, true),
            (day(14), false),
        ] {
            assert_eq!(reply(&text, now).is_some(), want, "{now}\n{text}");
        }
        assert_eq!(settings_of(text.as_bytes()), Some(set.clone()));
        // One end only.
        set.until = None;
        let text = generate(&set, None);
        assert!(reply(&text, day(-1)).is_none());
        assert!(reply(&text, day(4000)).is_some());
        assert_eq!(settings_of(text.as_bytes()), Some(set.clone()));
        set.from = None;
        set.until = Some("2030-07-14".into());
        let text = generate(&set, None);
        assert!(reply(&text, 0).is_some());
        assert!(reply(&text, day(14)).is_none());
        assert_eq!(settings_of(text.as_bytes()), Some(set));
    }

    #[test]
    fn previous_is_recorded_and_read_back_strictly() {
        for prev in [None, Some("roundcube"), Some("mine \"quoted\" \\ ü")] {
            let text = generate(&settings("x"), prev);
            crate::sieve::compile(text.as_bytes()).unwrap();
            let want = prev.map_or(Previous::Nothing, |p| Previous::Script(p.into()));
            assert_eq!(previous_of(&text).unwrap(), want, "{text}");
            assert_eq!(
                text.contains("include :personal :optional"),
                prev.is_some(),
                "{text}"
            );
        }
        assert_eq!(previous_of("keep;\n").unwrap(), Previous::Unrecorded);
        let rec = |r: &str| format!("{r}\nkeep;\n");
        for bad in [
            "# vmailctl-vacation: previous active script roundcube",
            "# vmailctl-vacation: previous active script \"a\" ",
            "# vmailctl-vacation: previous active script \"a\\nb\"",
            "# vmailctl-vacation: previous active script \"a/b\"",
            "# vmailctl-vacation: previous active script \".hidden\"",
            "# vmailctl-vacation: previous active script \"vmailctl-vacation\"",
            "# vmailctl-vacation: previous active script \"\"",
            "# vmailctl-vacation: previous script \"a\"",
            "# vmailctl-vacation: previous active script none\n\
             # vmailctl-vacation: previous active script none",
        ] {
            assert!(
                matches!(previous_of(&rec(bad)), Err(AdminError::Conflict(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn checks() {
        let ok = settings("x");
        ok.check().unwrap();
        let with = |f: &dyn Fn(&mut Settings)| {
            let mut s = ok.clone();
            f(&mut s);
            s.check()
        };
        assert!(with(&|s| s.days = Some(1)).is_ok());
        assert!(with(&|s| s.days = Some(365)).is_ok());
        assert!(with(&|s| {
            s.from = Some("2030-07-01".into());
            s.until = Some("2030-07-01".into());
        })
        .is_ok());
        for (what, r) in [
            ("days 0", with(&|s| s.days = Some(0))),
            ("days 366", with(&|s| s.days = Some(366))),
            (
                "from after until",
                with(&|s| {
                    s.from = Some("2030-07-02".into());
                    s.until = Some("2030-07-01".into());
                }),
            ),
            ("bad from", with(&|s| s.from = Some("2030-7-1".into()))),
            ("empty subject", with(&|s| s.subject = Some(" ".into()))),
            ("subject nl", with(&|s| s.subject = Some("a\nb".into()))),
            ("empty body", with(&|s| s.body = "\n \n".into())),
            ("nul body", with(&|s| s.body = "a\0b".into())),
        ] {
            assert!(matches!(r, Err(AdminError::Invalid(_))), "{what}: {r:?}");
        }
    }

    #[test]
    fn dates() {
        for good in [
            "2030-07-01",
            "2024-02-29",
            "2000-02-29",
            "1970-01-01",
            "9999-12-31",
        ] {
            assert_eq!(date(good).unwrap(), good);
        }
        for bad in [
            "",
            "2030-7-01",
            "2030-07-1",
            "30-07-01",
            "2030/07/01",
            "2030-13-01",
            "2030-00-10",
            "2030-04-31",
            "2023-02-29",
            "1900-02-29",
            "2030-07-00",
            "1969-12-31",
            "2030-07-01x",
            "２０３０-07-01",
            "+030-07-01",
        ] {
            assert!(matches!(date(bad), Err(AdminError::Invalid(_))), "{bad:?}");
        }
    }
}
