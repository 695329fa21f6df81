//! The Sieve oracle proves itself: hand-written (script, message, envelope)
//! cases run through Pigeonhole's `sieve-test` (common::sieve_oracle), each
//! with the exact normalised actions expected. The differential test that
//! compares vdeliver's interpreter against the oracle builds on these.

use crate::common::sieve_oracle::{
    decode_mutf7, normalise_flags, normalise_folder, run, run_with, Envelope, Oracle, OracleAction,
    Settings, Stored, Vacation,
};

const SENDER: &str = "alice@example.com";
const RCPT: &str = "bob@example.net";

fn env() -> Envelope<'static> {
    Envelope {
        sender: SENDER,
        recipient: RCPT,
        original_recipient: None,
    }
}

/// A message from alice to bob with `extra` header lines (CRLF-terminated)
/// and `body`.
fn msg(extra: &str, body: &str) -> Vec<u8> {
    msg_to(RCPT, extra, body)
}

/// The same, addressed (`To:`) to `to`.
fn msg_to(to: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <{SENDER}>\r\nTo: <{to}>\r\nSubject: Hello world\r\n\
         Message-ID: <case@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         {extra}\r\n{body}"
    )
    .into_bytes()
}

fn plain() -> Vec<u8> {
    msg("", "Hi Bob.\r\n")
}

fn flags(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| s.to_string()).collect()
}

fn keep(f: &[&str]) -> OracleAction {
    OracleAction::Keep {
        folder: "INBOX".into(),
        flags: flags(f),
    }
}

fn implicit(f: &[&str]) -> OracleAction {
    OracleAction::ImplicitKeep {
        folder: "INBOX".into(),
        flags: flags(f),
    }
}

fn into(folder: &str, f: &[&str], create: bool, copy: bool) -> OracleAction {
    OracleAction::FileInto {
        folder: folder.into(),
        flags: flags(f),
        create,
        copy,
    }
}

fn stored(folder: &str, f: &[&str]) -> Stored {
    Stored {
        folder: folder.into(),
        flags: flags(f),
    }
}

fn with_folders(f: &[&str]) -> Settings {
    Settings {
        folders: f.iter().map(|s| s.to_string()).collect(),
        ..Settings::default()
    }
}

#[track_caller]
fn assert_actions(o: &Oracle, want: &[OracleAction]) {
    assert_eq!(o.actions, want, "\n{}", o.transcript);
}

#[track_caller]
fn assert_stored(o: &Oracle, want: &[Stored]) {
    assert_eq!(o.executed.stored, want, "\n{}", o.transcript);
}

#[test]
fn implicit_keep_of_an_empty_script() {
    let o = run(b"", &plain(), env());
    assert_actions(&o, &[implicit(&[])]);
    assert_stored(&o, &[stored("INBOX", &[])]);
    assert!(o.executed.success, "{}", o.transcript);
}

#[test]
fn keep_is_an_explicit_store_into_inbox() {
    let o = run(b"keep;\n", &plain(), env());
    assert_actions(&o, &[keep(&[])]);
    assert_stored(&o, &[stored("INBOX", &[])]);
}

#[test]
fn discard_stores_nothing() {
    let o = run(b"discard;\n", &plain(), env());
    assert_actions(&o, &[OracleAction::Discard]);
    assert_stored(&o, &[]);
    assert!(o.executed.success, "{}", o.transcript);
}

#[test]
fn fileinto_an_existing_folder() {
    let o = run_with(
        b"require \"fileinto\";\nfileinto \"Lists\";\n",
        &plain(),
        env(),
        &with_folders(&["Lists"]),
    );
    assert_actions(&o, &[into("Lists", &[], false, false)]);
    assert_stored(&o, &[stored("Lists", &[])]);
}

#[test]
fn fileinto_copy_keeps_the_implicit_keep() {
    let o = run_with(
        b"require [\"fileinto\", \"copy\"];\nfileinto :copy \"Lists\";\n",
        &plain(),
        env(),
        &with_folders(&["Lists"]),
    );
    assert_actions(&o, &[into("Lists", &[], false, true), implicit(&[])]);
    assert_stored(&o, &[stored("INBOX", &[]), stored("Lists", &[])]);
}

#[test]
fn fileinto_flags_are_normalised_and_land_in_the_maildir() {
    let o = run_with(
        br#"require ["fileinto", "imap4flags"];
fileinto :flags ["\\seen", "$Work", "\\Flagged", "\\Seen"] "Lists";
"#,
        &plain(),
        env(),
        &with_folders(&["Lists"]),
    );
    let want = ["\\Flagged", "\\Seen", "$Work"];
    assert_actions(&o, &[into("Lists", &want, false, false)]);
    assert_stored(&o, &[stored("Lists", &want)]);
}

#[test]
fn fileinto_a_missing_folder_falls_back_to_inbox_when_executed() {
    let o = run(
        b"require \"fileinto\";\nfileinto \"Nowhere\";\n",
        &plain(),
        env(),
    );
    // The plan does not know which folders exist ...
    assert_actions(&o, &[into("Nowhere", &[], false, false)]);
    // ... the execution fails the store and keeps into INBOX.
    assert_stored(&o, &[stored("INBOX", &[])]);
    assert!(!o.executed.success, "{}", o.transcript);
    assert!(
        o.executed
            .errors
            .iter()
            .any(|e| e.contains("Mailbox doesn't exist: Nowhere")),
        "{}",
        o.transcript
    );
}

#[test]
fn fileinto_create_makes_a_folder_with_a_non_ascii_name() {
    let o = run(
        "require [\"fileinto\", \"mailbox\"];\nfileinto :create \"Archiv.Gelöscht\";\n".as_bytes(),
        &plain(),
        env(),
    );
    assert_actions(&o, &[into("Archiv.Gelöscht", &[], true, false)]);
    assert_stored(&o, &[stored("Archiv.Gelöscht", &[])]);
}

#[test]
fn mailboxexists_sees_the_precreated_folders() {
    let o = run_with(
        br#"require ["fileinto", "mailbox"];
if mailboxexists "Lists" { fileinto "Lists"; }
if mailboxexists "Nope" { discard; }
"#,
        &plain(),
        env(),
        &with_folders(&["Lists"]),
    );
    assert_actions(&o, &[into("Lists", &[], false, false)]);
}

#[test]
fn inbox_is_normalised_in_any_case() {
    let o = run_with(
        br#"require ["fileinto", "copy"];
fileinto "inbox";
fileinto :copy "Inbox.Sub";
"#,
        &plain(),
        env(),
        &with_folders(&["INBOX.Sub"]),
    );
    assert_actions(&o, &[keep(&[]), into("INBOX.Sub", &[], false, true)]);
    assert_stored(&o, &[stored("INBOX", &[]), stored("INBOX.Sub", &[])]);
}

#[test]
fn redirect_forwards_and_cancels_the_keep() {
    let o = run(b"redirect \"carol@example.org\";\n", &plain(), env());
    assert_actions(
        &o,
        &[OracleAction::Redirect {
            address: "carol@example.org".into(),
            copy: false,
        }],
    );
    assert_eq!(
        o.executed.forwarded,
        ["carol@example.org"],
        "{}",
        o.transcript
    );
    assert_stored(&o, &[]);
}

#[test]
fn redirect_copy_keeps_too() {
    let o = run(
        b"require \"copy\";\nredirect :copy \"carol@example.org\";\n",
        &plain(),
        env(),
    );
    assert_actions(
        &o,
        &[
            OracleAction::Redirect {
                address: "carol@example.org".into(),
                copy: true,
            },
            implicit(&[]),
        ],
    );
    assert_eq!(
        o.executed.forwarded,
        ["carol@example.org"],
        "{}",
        o.transcript
    );
    assert_stored(&o, &[stored("INBOX", &[])]);
}

#[test]
fn reject_with_its_reason() {
    let o = run(
        b"require \"reject\";\nreject \"Not wanted here.\";\n",
        &plain(),
        env(),
    );
    assert_actions(
        &o,
        &[OracleAction::Reject {
            reason: "Not wanted here.".into(),
        }],
    );
    assert!(o.executed.rejected, "{}", o.transcript);
    assert_stored(&o, &[]);
}

#[test]
fn ereject_is_not_offered_by_this_pigeonhole() {
    let o = run(b"require \"ereject\";\nereject \"No.\";\n", &plain(), env());
    assert_actions(
        &o,
        &[OracleAction::CompileError(
            "line 1: error: require command: unknown Sieve capability `ereject'.\n\
             line 2: error: unknown command 'ereject' (only reported once at first occurrence).\n\
             error: validation failed."
                .into(),
        )],
    );
    assert_eq!(o.executed, Default::default());
}

#[test]
fn unknown_require_is_a_compile_error() {
    let o = run(b"require \"x-no-such\";\nkeep;\n", &plain(), env());
    assert_actions(
        &o,
        &[OracleAction::CompileError(
            "line 1: error: require command: unknown Sieve capability `x-no-such'.\n\
             error: validation failed."
                .into(),
        )],
    );
}

#[test]
fn invalid_redirect_address_is_a_runtime_error_and_keeps() {
    let o = run(
        br#"require "variables";
set "to" "not an address";
redirect "${to}";
"#,
        &plain(),
        env(),
    );
    assert_actions(
        &o,
        &[OracleAction::RuntimeError(
            "specified redirect address 'not an address' is invalid: \
             invalid or lonely local part 'not' (expecting '@')"
                .into(),
        )],
    );
    assert_stored(&o, &[stored("INBOX", &[])]);
    assert!(o.executed.forwarded.is_empty(), "{}", o.transcript);
}

#[test]
fn vacation_replies_to_the_sender() {
    let o = run(
        br#"require "vacation";
vacation :days 3 :subject "Away" :from "bob@example.net" "I am away.";
"#,
        &plain(),
        env(),
    );
    assert_actions(
        &o,
        &[
            OracleAction::Vacation(Vacation {
                reply_to: Some(SENDER.into()),
                seconds: 3 * 86400,
                subject: Some("Away".into()),
                from: Some("bob@example.net".into()),
                reason: "I am away.".into(),
            }),
            implicit(&[]),
        ],
    );
    assert_stored(&o, &[stored("INBOX", &[])]);
}

/// Pigeonhole clamps the period to `sieve_vacation_min_period` (one day by
/// default); with the minimum lowered, `:seconds` is taken as given.
#[test]
fn vacation_seconds_clamped_to_the_minimum_period() {
    let script = b"require \"vacation-seconds\";\nvacation :seconds 3600 \"Back soon.\";\n";
    let o = run(script, &plain(), env());
    assert!(
        matches!(
            &o.actions[..],
            [OracleAction::Vacation(Vacation { seconds: 86400, .. }), _]
        ),
        "{:?}\n{}",
        o.actions,
        o.transcript
    );
    let o = run_with(
        script,
        &plain(),
        env(),
        &Settings {
            plugin: vec![("sieve_vacation_min_period".into(), "0".into())],
            ..Settings::default()
        },
    );
    assert_actions(
        &o,
        &[
            OracleAction::Vacation(Vacation {
                reply_to: Some(SENDER.into()),
                seconds: 3600,
                subject: None,
                from: None,
                reason: "Back soon.".into(),
            }),
            implicit(&[]),
        ],
    );
}

#[test]
fn vacation_no_reply_to_precedence_bulk() {
    let o = run(
        b"require \"vacation\";\nvacation \"I am away.\";\n",
        &msg("Precedence: bulk\r\n", "News.\r\n"),
        env(),
    );
    assert_actions(
        &o,
        &[
            OracleAction::Vacation(Vacation {
                reply_to: None,
                seconds: 7 * 86400,
                subject: None,
                from: None,
                reason: "I am away.".into(),
            }),
            implicit(&[]),
        ],
    );
    let note = o.executed.vacation_note.as_deref().unwrap_or("");
    assert!(
        note.contains("precedence=bulk"),
        "{note:?}\n{}",
        o.transcript
    );
}

#[test]
fn vacation_no_reply_to_a_daemon_sender() {
    let o = run(
        b"require \"vacation\";\nvacation \"I am away.\";\n",
        &plain(),
        Envelope {
            sender: "MAILER-DAEMON@example.com",
            ..env()
        },
    );
    assert!(
        matches!(
            &o.actions[..],
            [OracleAction::Vacation(Vacation { reply_to: None, .. }), _]
        ),
        "{:?}\n{}",
        o.actions,
        o.transcript
    );
    assert!(o.executed.vacation_note.is_some(), "{}", o.transcript);
}

#[test]
fn vacation_no_reply_when_not_addressed_to_the_user() {
    let o = run(
        b"require \"vacation\";\nvacation \"I am away.\";\n",
        &msg_to("list@example.org", "", "x\r\n"),
        env(),
    );
    assert!(
        matches!(
            &o.actions[..],
            [OracleAction::Vacation(Vacation { reply_to: None, .. }), _]
        ),
        "{:?}\n{}",
        o.actions,
        o.transcript
    );
    let note = o.executed.vacation_note.as_deref().unwrap_or("");
    assert!(
        note.contains("no known (envelope) recipient address"),
        "{note:?}"
    );
}

/// The empty envelope sender (a bounce) cannot be given to sieve-test
/// 2.3.19; the oracle says so instead of testing something else.
#[test]
#[should_panic(expected = "sieve-test cannot run with an empty envelope sender")]
fn empty_sender_is_refused_by_the_oracle() {
    run(
        b"require \"vacation\";\nvacation \"I am away.\";\n",
        &plain(),
        Envelope {
            sender: "",
            ..env()
        },
    );
}

#[test]
fn header_is_contains_matches() {
    let o = run(
        br#"require ["fileinto", "copy"];
if header :is "subject" "hello WORLD" { fileinto :copy "is-casemap"; }
if header :comparator "i;octet" :is "subject" "hello WORLD" { fileinto :copy "is-octet"; }
if header :contains "Subject" "lo wo" { fileinto :copy "contains"; }
if header :matches "subject" "H*d" { fileinto :copy "matches"; }
if header :matches "subject" "?ello" { fileinto :copy "no-match"; }
"#,
        &plain(),
        env(),
    );
    assert_actions(
        &o,
        &[
            into("is-casemap", &[], false, true),
            into("contains", &[], false, true),
            into("matches", &[], false, true),
            implicit(&[]),
        ],
    );
}

#[test]
fn address_parts() {
    let o = run(
        br#"require ["fileinto", "copy"];
if address :is :localpart "from" "alice" { fileinto :copy "local"; }
if address :is :domain "from" "EXAMPLE.com" { fileinto :copy "domain"; }
if address :matches :all "to" "*@example.net" { fileinto :copy "all"; }
if address :is :all "from" "Alice" { fileinto :copy "no"; }
"#,
        &plain(),
        env(),
    );
    assert_actions(
        &o,
        &[
            into("local", &[], false, true),
            into("domain", &[], false, true),
            into("all", &[], false, true),
            implicit(&[]),
        ],
    );
}

#[test]
fn envelope_uses_the_original_recipient() {
    let o = run(
        br#"require ["envelope", "fileinto", "copy"];
if envelope :is "from" "alice@example.com" { fileinto :copy "from"; }
if envelope :is "to" "info@example.net" { fileinto :copy "to-original"; }
if envelope :is "to" "bob@example.net" { fileinto :copy "to-final"; }
"#,
        &plain(),
        Envelope {
            original_recipient: Some("info@example.net"),
            ..env()
        },
    );
    assert_actions(
        &o,
        &[
            into("from", &[], false, true),
            into("to-original", &[], false, true),
            implicit(&[]),
        ],
    );
}

#[test]
fn relational_count_and_value() {
    let o = run(
        br#"require ["relational", "comparator-i;ascii-numeric", "fileinto", "copy"];
if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "2" { fileinto :copy "two"; }
if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" { fileinto :copy "three"; }
if header :value "gt" :comparator "i;ascii-numeric" "x-score" "5" { fileinto :copy "high"; }
"#,
        &msg("Cc: carol@example.org\r\nX-Score: 12\r\n", "x\r\n"),
        env(),
    );
    assert_actions(
        &o,
        &[
            into("two", &[], false, true),
            into("high", &[], false, true),
            implicit(&[]),
        ],
    );
}

#[test]
fn subaddress_detail_with_the_configured_delimiter() {
    let script = br#"require ["envelope", "subaddress", "fileinto", "variables"];
if envelope :matches :detail "to" "*" { fileinto :create "${1}"; }
if envelope :is :user "to" "bob" { keep; }
"#;
    let o = run(
        &[&b"require \"mailbox\";\n"[..], script].concat(),
        &plain(),
        Envelope {
            original_recipient: Some("bob-lists@example.net"),
            ..env()
        },
    );
    assert_actions(&o, &[into("lists", &[], true, false), keep(&[])]);
    assert_stored(&o, &[stored("INBOX", &[]), stored("lists", &[])]);

    let plus = Settings {
        extension_delimiter: "+".into(),
        ..Settings::default()
    };
    let o = run_with(
        &[&b"require \"mailbox\";\n"[..], script].concat(),
        &plain(),
        Envelope {
            original_recipient: Some("bob+news@example.net"),
            ..env()
        },
        &plus,
    );
    assert_actions(&o, &[into("news", &[], true, false), keep(&[])]);
}

#[test]
fn variables_from_a_match() {
    let o = run(
        br#"require ["variables", "fileinto", "mailbox"];
if header :matches "List-Id" "*<*.example.org>" { set :lower "list" "${2}"; fileinto :create "Lists.${list}"; stop; }
fileinto "never";
"#,
        &msg("List-Id: Rust users <RUST-Users.example.org>\r\n", "x\r\n"),
        env(),
    );
    assert_actions(&o, &[into("Lists.rust-users", &[], true, false)]);
    assert_stored(&o, &[stored("Lists.rust-users", &[])]);
}

#[test]
fn body_contains() {
    let o = run(
        br#"require ["body", "fileinto", "copy"];
if body :contains "invoice" { fileinto :copy "bills"; }
if body :contains "refund" { fileinto :copy "no"; }
"#,
        &msg("", "Your invoice is attached.\r\n"),
        env(),
    );
    assert_actions(&o, &[into("bills", &[], false, true), implicit(&[])]);
}

#[test]
fn include_personal_and_global() {
    let settings = Settings {
        folders: vec!["Lists".into()],
        personal_scripts: vec![(
            "mine".into(),
            b"require [\"fileinto\", \"copy\"];\nfileinto :copy \"Lists\";\n".to_vec(),
        )],
        global_scripts: vec![(
            "spam".into(),
            b"require \"imap4flags\";\naddflag \"\\\\Seen\";\n".to_vec(),
        )],
        ..Settings::default()
    };
    let o = run_with(
        br#"require ["include"];
include :personal "mine";
include :global "spam";
"#,
        &plain(),
        env(),
        &settings,
    );
    // Pigeonhole: the global script's addflag reaches the implicit keep.
    assert_actions(
        &o,
        &[into("Lists", &[], false, true), implicit(&["\\Seen"])],
    );
    assert_stored(&o, &[stored("INBOX", &["\\Seen"]), stored("Lists", &[])]);
}

#[test]
fn imap4flags_on_the_implicit_keep() {
    let o = run(
        br#"require "imap4flags";
addflag ["\\Seen", "Junk"];
addflag "\\flagged";
removeflag "Junk";
"#,
        &plain(),
        env(),
    );
    assert_actions(&o, &[implicit(&["\\Flagged", "\\Seen"])]);
    assert_stored(&o, &[stored("INBOX", &["\\Flagged", "\\Seen"])]);
}

#[test]
fn size_exists_and_logic() {
    let o = run_with(
        br#"require ["fileinto", "copy"];
if size :over 10K { fileinto :copy "big"; }
if allof (exists "subject", not exists "x-nope", anyof (false, true)) { fileinto :copy "logic"; }
if size :under 1K { discard; }
"#,
        &plain(),
        env(),
        &with_folders(&["big", "logic"]),
    );
    assert_actions(
        &o,
        &[into("logic", &[], false, true), OracleAction::Discard],
    );
    // discard cancels only the implicit keep.
    assert_stored(&o, &[stored("logic", &[])]);
}

#[test]
fn normalisers() {
    assert_eq!(
        normalise_flags(["$b", "\\seen", "a", "\\ANSWERED", "\\Seen", "a"]),
        ["\\Answered", "\\Seen", "$b", "a"]
    );
    assert_eq!(normalise_folder("inbox"), "INBOX");
    assert_eq!(normalise_folder("Inbox.Sub.x"), "INBOX.Sub.x");
    assert_eq!(normalise_folder("Inboxes"), "Inboxes");
    assert_eq!(normalise_folder("Lists.inbox"), "Lists.inbox");
    assert_eq!(decode_mutf7("Gel&APY-scht"), "Gelöscht");
    assert_eq!(decode_mutf7("A&-B"), "A&B");
    assert_eq!(decode_mutf7("&ZeVnLIqe-"), "日本語");
}

#[test]
fn date_of_the_date_header_and_a_fresh_duplicate() {
    let o = run_with(
        br#"require ["date", "relational", "duplicate", "fileinto", "copy"];
if date :is "date" "year" "2024" { fileinto :copy "y2024"; }
if date :value "lt" :originalzone "date" "hour" "09" { fileinto :copy "early"; }
if duplicate { discard; }
"#,
        &plain(),
        env(),
        &with_folders(&["y2024"]),
    );
    // A fresh state directory: nothing was seen before.
    assert_actions(
        &o,
        &[
            into("y2024", &[], false, true),
            OracleAction::TrackDuplicate,
            implicit(&[]),
        ],
    );
    assert_stored(&o, &[stored("INBOX", &[]), stored("y2024", &[])]);
}
