//! The differential-testing oracle for Sieve: Dovecot Pigeonhole's
//! `sieve-test`, run on one (script, message, envelope) case and turned into
//! a normalised list of actions.
//!
//! Written against Debian 12's `dovecot-sieve` 1:2.3.19.1+dfsg1-2.1+deb12u7
//! (Dovecot 2.3.19.1, Pigeonhole 0.5.19), installed by `.ci/run` when
//! `/usr/bin/sieve-test` is missing. When it is missing here, [`run`] panics
//! and names the package: a differential test is never skipped silently.
//!
//! # What one case does
//!
//! A fresh temporary directory per case holds everything sieve-test reads
//! or writes, so no state leaks between cases (vacation's and duplicate's
//! memory, compiled `.svbin` binaries, created folders):
//!
//! ```text
//! <dir>/dovecot.conf        the whole configuration (no system file read)
//! <dir>/script.sieve        the script under test
//! <dir>/message.eml         the message
//! <dir>/home/               $HOME: Maildir/ (INBOX), Maildir/.<folder>/,
//!                           sieve/<name>.sieve (`include :personal`),
//!                           .dovecot.lda-dupes (vacation/duplicate memory)
//! <dir>/global/<name>.sieve `include :global`
//! <dir>/run, <dir>/state    base_dir, state_dir
//! ```
//!
//! The configuration: `mail_location = maildir:<home>/Maildir`, one inbox
//! namespace with `.` as separator and no prefix (Maildir++ as vdeliver
//! writes it), `recipient_delimiter` from [`Settings::extension_delimiter`]
//! (default `-`, vdeliver's default), and in `plugin {}`:
//! `sieve = file:<home>/sieve;active=<home>/.dovecot.sieve`,
//! `sieve_global = <dir>/global`, `recipient_delimiter` again (subaddress
//! reads it from `plugin {}` only; the top-level one is ignored by Sieve and
//! Pigeonhole's default is `+`), `sieve_extensions = +vacation-seconds
//! +spamtest +spamtestplus` (off by default in Pigeonhole) plus
//! [`Settings::plugin`] (later lines win).
//!
//! sieve-test runs twice, as the unprivileged user when the tests run as
//! root (as root it refuses: "Couldn't drop privileges: User is missing
//! UID"), with an empty environment except `HOME=<dir>/home`:
//!
//! 1. The plan — what the script asks for:
//!    `sieve-test -c <dir>/dovecot.conf -C -f SENDER -r RECIPIENT
//!    -a ORIGINAL [-x EXTENSIONS] <dir>/script.sieve <dir>/message.eml`.
//!    Without `-e` nothing is stored or sent; it prints the result. This is
//!    [`Oracle::actions`].
//! 2. The execution — what Pigeonhole then does with it:
//!    the same with `-e -l maildir:<home>/Maildir`. Stores really happen (we
//!    read the Maildir back: [`Executed::stored`]); redirects, vacation
//!    replies and rejects are "sent" to standard error and logged. Only this
//!    run applies vacation's no-reply rules (`Precedence: bulk`, own
//!    address not in the headers, …), its `:days` memory, and the fallback
//!    of a failed `fileinto` (missing folder) to the implicit keep. Skipped
//!    after a compile error, and when [`Settings::plan_only`] is set.
//!
//! `-a` is always given (the original recipient, or the recipient): without
//! it sieve-test takes the envelope "to" from the message's headers.
//!
//! # Output formats parsed (as observed; not a documented interface)
//!
//! Plan run, standard output: a line `Performed actions:`, then one entry per
//! action, then `Implicit keep:` and the same for the implicit keep; an empty
//! section is `  (none)`. An entry starts with ` * ` and an action text:
//! `store message in folder: NAME` (keep and fileinto alike; keep names the
//! default mailbox `INBOX`), `redirect message to: <ADDR>`, `discard`,
//! `reject message with reason: TEXT`, `send vacation message:`, `track
//! duplicate` (the `duplicate` test ran and will remember the message). Modifiers
//! follow on lines indented eight spaces and starting with `+ `:
//! `add IMAP flags: F1 F2 …` (system flags lower-cased, in no fixed order),
//! `create mailbox if it does not exist` (`:create`), `preserve implicit
//! keep` (`:copy`). A vacation entry has `    => KEY : VALUE` lines
//! (`seconds`, `subject`, `from`, `handle`) and then the reason between the
//! lines `START MESSAGE` and `END MESSAGE`.
//!
//! A compile error: exit status 89 and, on standard error, lines
//! `script: line N: error: TEXT` and `script: error: validation failed.`
//! ([`OracleAction::CompileError`] holds them without the `script: ` prefix).
//! A run-time error: exit status 1, lines `error: TEXT` and
//! `... final result: failed; resolved with successful implicit keep`, and no
//! action listing ([`OracleAction::RuntimeError`]; the implicit keep that
//! Pigeonhole then does shows in [`Executed::stored`]).
//!
//! Execution run, standard error: per action a line `info: msgid=<ID>: TEXT.`
//! (or `msgid=unspecified` without a Message-ID; failures as `error: …`):
//! `redirect action: forwarded to <ADDR>`, `vacation action: sent vacation
//! response to <ADDR>` or `vacation action: discarding vacation response …`
//! (the reason), `reject action: rejected message from <ADDR> (reject)`,
//! `stored mail into mailbox 'NAME'`. Each message "sent" is printed between
//! `Info: sending message from <…>:` and the next `sieve-test(` log line;
//! those blocks are skipped, so a message whose body contains such text does
//! not confuse the parser. The last line says `final result: success` or
//! why not.
//!
//! # Normalisation
//!
//! - Folders: `INBOX` in any case becomes `INBOX`, also as the first
//!   hierarchy level (`inbox.Foo` → `INBOX.Foo`); nothing else changes. In
//!   this namespace `INBOX.Foo` is a child of INBOX, a different folder from
//!   `Foo` (vdeliver strips the prefix; that difference is deliberate).
//! - Flags: the four-letter system flags get their RFC 3501 spelling
//!   (`\seen` → `\Seen`), keywords stay as written; the list is sorted
//!   (system flags first) and duplicates removed (system flags
//!   case-insensitively).
//! - A store into the default mailbox is [`OracleAction::Keep`]: sieve-test
//!   prints `keep` and `fileinto "INBOX"` identically. The store of the
//!   `Implicit keep:` section is [`OracleAction::ImplicitKeep`].
//! - Folder names read back from the Maildir are decoded from IMAP modified
//!   UTF-7 (`.Gel&APY-scht` → `Gelöscht`); flags read back from the
//!   `:2,` info and the folder's `dovecot-keywords`.
//!
//! # Known quirks and limits of the oracle
//!
//! - **No empty envelope sender.** sieve-test 2.3.19 refuses `-f ""`
//!   ("Mailbox is empty string") and `-f "<>"`, and without `-f` it takes the
//!   sender from `Return-Path:`/`Sender:`/`From:`, ignoring `Return-Path:
//!   <>`. Bounces (reject/vacation to `<>`) cannot be checked with it; [`run`]
//!   panics when asked to.
//! - **No `ereject`.** Debian's Pigeonhole 0.5.19 does not offer it
//!   (`require "ereject"` is "unknown Sieve capability", and
//!   `+ereject` in `sieve_extensions` is "ignored unknown extension").
//! - **Transactions.** In the execution run, one failing store (e.g. a
//!   missing folder without `:create`) aborts every action of the script,
//!   redirects and vacation included, and Pigeonhole files into INBOX
//!   (without the imap4flags flags). The plan run does not know which
//!   folders exist: it lists the `fileinto` anyway.
//! - **Plan-only knowledge.** The plan run lists vacation whatever the
//!   message; whether a reply would go out is only known from the
//!   execution run ([`Vacation::reply_to`]).
//! - **Clock.** `currentdate`, vacation's memory and Date headers of
//!   generated messages use the real clock; sieve-test has no option to fix
//!   it. Cases must not depend on the current time beyond what a fresh
//!   state directory gives (no earlier reply, no earlier duplicate).
//! - **Vacation period.** Pigeonhole clamps `:seconds`/`:days` to
//!   `sieve_vacation_min_period` (default one day, with a warning) and
//!   `sieve_vacation_max_period` (default 60 days); set them through
//!   [`Settings::plugin`] to compare other periods.
//! - **Includes share the flags.** An `addflag` in an included script
//!   reaches the including script's implicit keep.
//! - **Duplicate.** `duplicate` only remembers in the execution run, and only
//!   across runs; within one fresh case it is always false.
//! - Multi-line reject reasons, vacation reasons and subjects print
//!   verbatim; a reason line that itself looked like ` * store message…`
//!   would be misread (the cases here do not do that).

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::unpriv;

/// Where Debian's `dovecot-sieve` installs the tester.
pub const SIEVE_TEST: &str = "/usr/bin/sieve-test";

/// The SMTP envelope of a case.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    /// The envelope sender (`-f`). Must not be empty: see the module doc.
    pub sender: &'a str,
    /// The final recipient (`-r`): the script owner's address.
    pub recipient: &'a str,
    /// The original recipient (`-a`), what `envelope "to"` sees; the
    /// recipient when `None`.
    pub original_recipient: Option<&'a str>,
}

/// What a case may change in the environment sieve-test runs in.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Dovecot's `recipient_delimiter` (subaddress `:user`/`:detail`).
    pub extension_delimiter: String,
    /// Folders that exist before the run (ASCII, `.` as hierarchy
    /// separator, e.g. `Lists.rust`); INBOX always exists.
    pub folders: Vec<String>,
    /// Scripts for `include :personal "NAME"`: (NAME, text).
    pub personal_scripts: Vec<(String, Vec<u8>)>,
    /// Scripts for `include :global "NAME"`: (NAME, text).
    pub global_scripts: Vec<(String, Vec<u8>)>,
    /// `-x` when set (e.g. `"-body"` to switch an extension off).
    pub extensions: Option<String>,
    /// More `plugin {}` settings (e.g. `sieve_spamtest_status_header`).
    pub plugin: Vec<(String, String)>,
    /// Run the plan only, not the execution ([`Oracle::executed`] stays
    /// empty, no vacation `reply_to`): half the cost, for tests that
    /// compare the plan alone.
    pub plan_only: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            extension_delimiter: "-".into(),
            folders: Vec::new(),
            personal_scripts: Vec::new(),
            global_scripts: Vec::new(),
            extensions: None,
            plugin: Vec::new(),
            plan_only: false,
        }
    }
}

/// One action of the plan, normalised (module doc, "Normalisation").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OracleAction {
    /// An explicit store into the default mailbox (`keep`, or `fileinto
    /// "INBOX"`, which sieve-test does not tell apart).
    Keep {
        folder: String,
        flags: Vec<String>,
    },
    /// The implicit keep, still in effect at the end.
    ImplicitKeep {
        folder: String,
        flags: Vec<String>,
    },
    FileInto {
        folder: String,
        flags: Vec<String>,
        /// `:create`.
        create: bool,
        /// `:copy` (the implicit keep is not cancelled).
        copy: bool,
    },
    Redirect {
        address: String,
        copy: bool,
    },
    Discard,
    Reject {
        reason: String,
    },
    Vacation(Vacation),
    /// The `duplicate` test's side effect: remember this message (listed as
    /// an action by Pigeonhole when the test ran).
    TrackDuplicate,
    /// The script did not compile; the error lines.
    CompileError(String),
    /// The script failed while running; the error lines.
    RuntimeError(String),
    /// An entry this parser does not know, verbatim (never dropped).
    Other(String),
}

/// A vacation action: what the plan says, and whether the execution sent a
/// reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vacation {
    /// The envelope recipient of the reply the execution run sent; `None`
    /// when it sent none (see [`Executed::vacation_note`] for why).
    pub reply_to: Option<String>,
    /// The period in seconds (`:days` × 86400, or `:seconds`).
    pub seconds: u64,
    pub subject: Option<String>,
    pub from: Option<String>,
    /// The reason (the reply's text) as printed.
    pub reason: String,
}

/// One message stored by the execution run, read back from the Maildir.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stored {
    pub folder: String,
    pub flags: Vec<String>,
}

/// What the execution run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Executed {
    /// Every message in the Maildir afterwards, sorted.
    pub stored: Vec<Stored>,
    /// Redirect recipients, in order.
    pub forwarded: Vec<String>,
    /// The recipient of the vacation reply sent, if any.
    pub vacation_to: Option<String>,
    /// The vacation log line when no reply was sent (the reason).
    pub vacation_note: Option<String>,
    /// Whether a rejection was sent.
    pub rejected: bool,
    /// `error:` lines.
    pub errors: Vec<String>,
    /// `final result: success`.
    pub success: bool,
}

/// The oracle's answer for one case.
#[derive(Clone, Debug)]
pub struct Oracle {
    /// The plan, normalised, with [`Vacation::reply_to`] filled in from the
    /// execution.
    pub actions: Vec<OracleAction>,
    /// The execution; empty after a compile error.
    pub executed: Executed,
    /// Both runs' command lines and output, for assertion messages.
    pub transcript: String,
}

/// Runs `script` on `message` with the default [`Settings`].
pub fn run(script: &[u8], message: &[u8], envelope: Envelope) -> Oracle {
    run_with(script, message, envelope, &Settings::default())
}

/// Runs `script` on `message`: the plan, then (unless it did not compile)
/// the execution, each in the same fresh directory.
pub fn run_with(script: &[u8], message: &[u8], envelope: Envelope, settings: &Settings) -> Oracle {
    let tester = sieve_test_path();
    assert!(
        !envelope.sender.is_empty(),
        "sieve-test cannot run with an empty envelope sender: Pigeonhole 2.3.19 refuses \
         -f \"\" and -f \"<>\" and otherwise takes the sender from the headers \
         (see the sieve_oracle module doc)"
    );
    let dir = unpriv::temp_dir_for_unpriv();
    let d = dir.path();
    let home = d.join("home");
    let conf = d.join("dovecot.conf");
    prepare(d, &home, &conf, script, message, settings);
    unpriv::chown_for_unpriv(d);

    let original = envelope.original_recipient.unwrap_or(envelope.recipient);
    let mut args: Vec<String> = vec![
        "-c".into(),
        path_str(&conf),
        "-C".into(),
        "-f".into(),
        envelope.sender.into(),
        "-r".into(),
        envelope.recipient.into(),
        "-a".into(),
        original.into(),
    ];
    if let Some(x) = &settings.extensions {
        args.push("-x".into());
        args.push(x.clone());
    }
    let files = [
        path_str(&d.join("script.sieve")),
        path_str(&d.join("message.eml")),
    ];

    let mut transcript = String::new();
    let plan = sieve_test(&tester, &home, &args, &files, &mut transcript);
    let mut actions = parse_plan(&plan, &transcript);
    let compiled = !matches!(actions.first(), Some(OracleAction::CompileError(_)));

    let mut executed = Executed::default();
    if compiled && !settings.plan_only {
        let mut exec_args = args.clone();
        exec_args.push("-e".into());
        exec_args.push("-l".into());
        exec_args.push(format!("maildir:{}", path_str(&home.join("Maildir"))));
        let out = sieve_test(&tester, &home, &exec_args, &files, &mut transcript);
        executed = parse_execution(&out);
        executed.stored = read_maildir(&home.join("Maildir"));
        for a in &mut actions {
            if let OracleAction::Vacation(v) = a {
                v.reply_to = executed.vacation_to.clone();
            }
        }
    }
    Oracle {
        actions,
        executed,
        transcript,
    }
}

/// The tester's path; panics, naming the package, when it is not there.
pub fn sieve_test_path() -> PathBuf {
    let p = PathBuf::from(SIEVE_TEST);
    if super::is_executable(&p) {
        return p;
    }
    super::find_in_path("sieve-test").unwrap_or_else(|| {
        panic!(
            "the Sieve differential tests need Pigeonhole's `sieve-test` ({SIEVE_TEST}): \
             install Debian's dovecot-sieve (.ci/run does when it is missing)"
        )
    })
}

fn path_str(p: &Path) -> String {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
        .to_string()
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn maildir(path: &Path) {
    for sub in ["cur", "new", "tmp"] {
        let p = path.join(sub);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    }
}

/// Lays out the case directory (module doc) and writes the configuration.
fn prepare(d: &Path, home: &Path, conf: &Path, script: &[u8], message: &[u8], s: &Settings) {
    for sub in ["run", "state", "global", "home/sieve"] {
        let p = d.join(sub);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    }
    write(&d.join("script.sieve"), script);
    write(&d.join("message.eml"), message);
    let md = home.join("Maildir");
    maildir(&md);
    for f in &s.folders {
        assert!(
            !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'&' && b != b'/'),
            "pre-created folder names are plain ASCII here: {f:?}"
        );
        maildir(&md.join(format!(".{f}")));
    }
    for (name, text) in &s.personal_scripts {
        write(&home.join("sieve").join(format!("{name}.sieve")), text);
    }
    for (name, text) in &s.global_scripts {
        write(&d.join("global").join(format!("{name}.sieve")), text);
    }
    let d_s = path_str(d);
    let home_s = path_str(home);
    let mut extra = String::new();
    for (k, v) in &s.plugin {
        extra.push_str(&format!("  {k} = {v}\n"));
    }
    let text = format!(
        "base_dir = {d_s}/run\n\
         state_dir = {d_s}/state\n\
         first_valid_uid = 1\n\
         mail_location = maildir:{home_s}/Maildir\n\
         recipient_delimiter = {delim}\n\
         namespace inbox {{\n  inbox = yes\n  separator = .\n  prefix =\n}}\n\
         plugin {{\n\
         \x20 sieve = file:{home_s}/sieve;active={home_s}/.dovecot.sieve\n\
         \x20 sieve_global = {d_s}/global\n\
         \x20 recipient_delimiter = {delim}\n\
         \x20 sieve_extensions = +vacation-seconds +spamtest +spamtestplus\n\
         {extra}}}\n",
        delim = s.extension_delimiter,
    );
    write(conf, text.as_bytes());
}

/// One sieve-test run; appends the command and its output to `transcript`.
fn sieve_test(
    tester: &Path,
    home: &Path,
    args: &[String],
    files: &[String],
    transcript: &mut String,
) -> Output {
    let mut cmd: Command = unpriv::command_as_unprivileged(tester);
    cmd.env_clear()
        .env("HOME", home)
        .args(args)
        .args(files)
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tester.display()));
    transcript.push_str(&format!(
        "$ sieve-test {} {}\n[{}]\n--- stdout\n{}--- stderr\n{}\n",
        args.join(" "),
        files.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    ));
    out
}

/// `INBOX` in any case, also as the first hierarchy level, becomes `INBOX`.
pub fn normalise_folder(name: &str) -> String {
    let (first, rest) = match name.find('.') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    if first.eq_ignore_ascii_case("INBOX") {
        format!("INBOX{rest}")
    } else {
        name.to_string()
    }
}

const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen"];

/// System flags spelt as in RFC 3501 and first, keywords after, each group
/// sorted, duplicates removed.
pub fn normalise_flags<'a>(flags: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut system = Vec::new();
    let mut keywords = Vec::new();
    for f in flags {
        if f.is_empty() {
            continue;
        }
        match SYSTEM_FLAGS.iter().find(|s| s.eq_ignore_ascii_case(f)) {
            Some(s) => system.push(s.to_string()),
            None => keywords.push(f.to_string()),
        }
    }
    system.sort();
    system.dedup();
    keywords.sort();
    keywords.dedup();
    system.extend(keywords);
    system
}

/// Compile errors from a failed plan run: standard error's `error:` lines
/// without the script-name prefix.
fn compile_errors(stderr: &str) -> String {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("script: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run-time errors: lines that start with `error: ` (or `script: line N:
/// error: `), without that.
fn runtime_errors(text: &str) -> String {
    text.lines()
        .filter_map(|l| {
            // Also `script: line N: error: TEXT` (a conflict between
            // actions, found when the result is checked).
            l.strip_prefix("error: ").or_else(|| {
                let rest = l.strip_prefix("script: line ")?;
                let (n, msg) = rest.split_once(": error: ")?;
                n.bytes().all(|b| b.is_ascii_digit()).then_some(msg)
            })
        })
        .map(strip_msgid)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `msgid=<…>: TEXT.` → `TEXT` (also `msgid=unspecified: `); the final
/// full stop goes too.
fn strip_msgid(s: &str) -> &str {
    let s = if s.starts_with("msgid=<") {
        s.find(">: ").map_or(s, |i| &s[i + 3..])
    } else {
        s.strip_prefix("msgid=unspecified: ").unwrap_or(s)
    };
    s.strip_suffix('.').unwrap_or(s)
}

fn parse_plan(out: &Output, transcript: &str) -> Vec<OracleAction> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => parse_listing(&stdout),
        Some(1) => {
            let mut errors = runtime_errors(&stderr);
            let more = runtime_errors(&stdout);
            if !more.is_empty() {
                if !errors.is_empty() {
                    errors.push('\n');
                }
                errors.push_str(&more);
            }
            assert!(
                !errors.is_empty(),
                "sieve-test failed without an error line:\n{transcript}"
            );
            let mut actions = vec![OracleAction::RuntimeError(errors)];
            actions.extend(parse_listing(&stdout));
            actions
        }
        Some(89) if stderr.contains("failed to compile sieve script") => {
            vec![OracleAction::CompileError(compile_errors(&stderr))]
        }
        _ => panic!(
            "sieve-test failed in a way the oracle does not model (signal {:?}):\n{transcript}",
            out.status.signal()
        ),
    }
}

/// One action entry being read.
enum Entry {
    Store {
        folder: String,
        flags: Vec<String>,
        create: bool,
        copy: bool,
    },
    Redirect {
        address: String,
        copy: bool,
    },
    Vacation(Vacation, Option<String>),
    Done(OracleAction),
}

fn finish(e: Entry, implicit: bool) -> OracleAction {
    match e {
        Entry::Store {
            folder,
            flags,
            create,
            copy,
        } => {
            let folder = normalise_folder(&folder);
            let flags = normalise_flags(flags.iter().map(String::as_str));
            if implicit {
                OracleAction::ImplicitKeep { folder, flags }
            } else if folder == "INBOX" && !create && !copy {
                OracleAction::Keep { folder, flags }
            } else {
                OracleAction::FileInto {
                    folder,
                    flags,
                    create,
                    copy,
                }
            }
        }
        Entry::Redirect { address, copy } => OracleAction::Redirect { address, copy },
        Entry::Vacation(v, _) => OracleAction::Vacation(v),
        Entry::Done(a) => a,
    }
}

/// The `Performed actions:` / `Implicit keep:` listing (module doc).
fn parse_listing(stdout: &str) -> Vec<OracleAction> {
    let mut actions = Vec::new();
    let mut implicit = false;
    let mut started = false;
    let mut cur: Option<Entry> = None;
    for line in stdout.lines() {
        // Inside a vacation's message text everything is text.
        if let Some(Entry::Vacation(v, pending @ Some(_))) = &mut cur {
            if line == "END MESSAGE" {
                v.reason = pending.take().unwrap_or_default();
            } else if let Some(text) = pending {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(line);
            }
            continue;
        }
        if line == "Performed actions:" || line == "Implicit keep:" {
            if let Some(e) = cur.take() {
                actions.push(finish(e, implicit));
            }
            implicit = line == "Implicit keep:";
            started = true;
            continue;
        }
        if !started || line.trim().is_empty() || line.trim() == "(none)" {
            continue;
        }
        if let Some(entry) = line.strip_prefix(" * ") {
            if let Some(e) = cur.take() {
                actions.push(finish(e, implicit));
            }
            cur = Some(
                if let Some(f) = entry.strip_prefix("store message in folder: ") {
                    Entry::Store {
                        folder: f.to_string(),
                        flags: Vec::new(),
                        create: false,
                        copy: false,
                    }
                } else if let Some(a) = entry.strip_prefix("redirect message to: ") {
                    Entry::Redirect {
                        address: a.trim_start_matches('<').trim_end_matches('>').to_string(),
                        copy: false,
                    }
                } else if entry == "discard" {
                    Entry::Done(OracleAction::Discard)
                } else if let Some(r) = entry.strip_prefix("reject message with reason: ") {
                    Entry::Done(OracleAction::Reject {
                        reason: r.to_string(),
                    })
                } else if entry == "track duplicate" {
                    Entry::Done(OracleAction::TrackDuplicate)
                } else if entry == "send vacation message:" {
                    Entry::Vacation(Vacation::default(), None)
                } else {
                    Entry::Done(OracleAction::Other(entry.to_string()))
                },
            );
            continue;
        }
        let trimmed = line.trim_start();
        match &mut cur {
            Some(Entry::Store {
                flags,
                create,
                copy,
                ..
            }) if trimmed.starts_with("+ ") => {
                let m = &trimmed[2..];
                if let Some(f) = m.strip_prefix("add IMAP flags: ") {
                    flags.extend(f.split_whitespace().map(str::to_string));
                } else if m == "create mailbox if it does not exist" {
                    *create = true;
                } else if m == "preserve implicit keep" {
                    *copy = true;
                } else {
                    actions.push(OracleAction::Other(format!("store modifier: {m}")));
                }
            }
            Some(Entry::Redirect { copy, .. }) if trimmed.starts_with("+ ") => {
                let m = &trimmed[2..];
                if m == "preserve implicit keep" {
                    *copy = true;
                } else {
                    actions.push(OracleAction::Other(format!("redirect modifier: {m}")));
                }
            }
            Some(Entry::Vacation(v, text)) => {
                if let Some(kv) = trimmed.strip_prefix("=> ") {
                    let (k, val) = kv.split_once(':').unwrap_or((kv, ""));
                    let val = val.strip_prefix(' ').unwrap_or(val).to_string();
                    match k.trim() {
                        "seconds" => {
                            v.seconds = val.trim().parse().unwrap_or_else(|_| {
                                panic!("vacation seconds not a number: {line:?}")
                            })
                        }
                        "subject" => v.subject = Some(val),
                        "from" => v.from = Some(val),
                        _ => {} // the handle: derived from the others
                    }
                } else if line == "START MESSAGE" {
                    *text = Some(String::new());
                } else {
                    actions.push(OracleAction::Other(format!("vacation line: {line}")));
                }
            }
            _ => {
                // A continuation of a multi-line reject reason.
                if let Some(Entry::Done(OracleAction::Reject { reason })) = &mut cur {
                    reason.push('\n');
                    reason.push_str(line);
                } else {
                    actions.push(OracleAction::Other(line.to_string()));
                }
            }
        }
    }
    if let Some(e) = cur.take() {
        actions.push(finish(e, implicit));
    }
    actions
}

/// The execution run's log (module doc); `stored` is filled by the caller.
fn parse_execution(out: &Output) -> Executed {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut ex = Executed::default();
    let mut in_message = false;
    for line in stderr.lines() {
        // `sieve-test(USER): ` when $USER is set, `sieve-test: ` otherwise.
        let log_line = line.starts_with("sieve-test(") || line.starts_with("sieve-test: ");
        if in_message {
            if !log_line {
                continue;
            }
            in_message = false;
        }
        if log_line {
            if line.contains(": Info: sending message from ") {
                in_message = true;
            } else if line.ends_with(": Info: final result: success") {
                ex.success = true;
            }
            continue;
        }
        if let Some(e) = line.strip_prefix("error: ") {
            ex.errors.push(strip_msgid(e).to_string());
            continue;
        }
        let Some(info) = line.strip_prefix("info: ") else {
            continue;
        };
        let info = strip_msgid(info);
        let angle = |s: &str| {
            s.split_whitespace()
                .next()
                .unwrap_or("")
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        };
        if let Some(a) = info.strip_prefix("redirect action: forwarded to ") {
            ex.forwarded.push(angle(a));
        } else if let Some(a) = info.strip_prefix("vacation action: sent vacation response to ") {
            ex.vacation_to = Some(angle(a));
        } else if let Some(n) = info.strip_prefix("vacation action: ") {
            ex.vacation_note = Some(n.to_string());
        } else if info.starts_with("reject action: rejected message") {
            ex.rejected = true;
        }
    }
    ex
}

/// Every message in the Maildir and its Maildir++ folders, with flags.
fn read_maildir(md: &Path) -> Vec<Stored> {
    let mut folders = vec![("INBOX".to_string(), md.to_path_buf())];
    let entries = fs::read_dir(md).unwrap_or_else(|e| panic!("readdir {}: {e}", md.display()));
    for e in entries {
        let e = e.unwrap_or_else(|e| panic!("readdir {}: {e}", md.display()));
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(f) = name.strip_prefix('.') {
            if !f.is_empty() && f != "." && e.path().join("cur").is_dir() {
                folders.push((decode_mutf7(f), e.path()));
            }
        }
    }
    let mut stored = Vec::new();
    for (folder, dir) in folders {
        let keywords: Vec<(usize, String)> = fs::read_to_string(dir.join("dovecot-keywords"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (n, k) = l.split_once(' ')?;
                Some((n.parse().ok()?, k.to_string()))
            })
            .collect();
        for sub in ["new", "cur"] {
            let p = dir.join(sub);
            let files = fs::read_dir(&p).unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()));
            for f in files {
                let f = f.unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()));
                let name = f.file_name().to_string_lossy().into_owned();
                let info = name.split_once(":2,").map_or("", |(_, i)| i);
                let mut flags = Vec::new();
                for c in info.chars() {
                    let flag = match c {
                        'D' => "\\Draft".to_string(),
                        'F' => "\\Flagged".to_string(),
                        'R' => "\\Answered".to_string(),
                        'S' => "\\Seen".to_string(),
                        'T' => "\\Deleted".to_string(),
                        'a'..='z' => {
                            let i = (c as u8 - b'a') as usize;
                            keywords
                                .iter()
                                .find(|(n, _)| *n == i)
                                .map(|(_, k)| k.clone())
                                .unwrap_or_else(|| {
                                    panic!("keyword {c} of {name} not in dovecot-keywords")
                                })
                        }
                        other => panic!("unknown Maildir flag {other:?} in {name}"),
                    };
                    flags.push(flag);
                }
                stored.push(Stored {
                    folder: folder.clone(),
                    flags: normalise_flags(flags.iter().map(String::as_str)),
                });
            }
        }
    }
    stored.sort();
    stored
}

/// IMAP modified UTF-7 (RFC 3501 5.1.3) to UTF-8; `&-` is `&`, `&…-` is
/// modified base64 (`,` for `/`) of UTF-16BE.
pub fn decode_mutf7(s: &str) -> String {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b',' => 63,
            _ => panic!("not modified base64: {c:?}"),
        }
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find('-')
            .unwrap_or_else(|| panic!("unterminated &… in {s:?}"));
        let b64 = &after.as_bytes()[..end];
        if b64.is_empty() {
            out.push('&');
        } else {
            let (mut acc, mut bits, mut units) = (0u32, 0u32, Vec::new());
            for &c in b64 {
                acc = (acc << 6) | sextet(c);
                bits += 6;
                if bits >= 16 {
                    bits -= 16;
                    units.push(((acc >> bits) & 0xffff) as u16);
                }
            }
            out.push_str(&String::from_utf16(&units).unwrap_or_else(|e| panic!("{s:?}: {e}")));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}
