//! Scripts and messages for the Sieve benchmarks and tests: a filter set
//! of N rules in the shape Roundcube's managesieve plugin writes, a
//! typical 4 KB message that none of them matches, and for each rule k a
//! variant of that message that matches rule k and no other, with the
//! actions the run must then return. Used by `benches/sieve.rs`, the e2e
//! bench, `examples/load.rs` and the unit tests below; not part of the
//! crate's API.
//!
//! # The script ([`roundcube_script`])
//!
//! One `require [...]` line (names quoted, comma-separated, no blanks, as
//! Roundcube writes it), then per rule a `# rule:[name]` comment and
//! `if TEST` (a single test bare, several in `anyof (…)`/`allof (…)`),
//! `{` on its own line, tab-indented actions, `}`. The rules cycle through
//! nine kinds, so any N holds a realistic mix: a mailing list by `List-Id`
//! or sender into a subfolder; a subject tag flagged into a folder; a
//! `:regex` on the subject; `redirect :copy` by recipient; a discard by
//! envelope sender; a size-and-domain rule; mark-as-read with
//! `fileinto :copy`; a `body :text` test; and, as the ninth rule, the
//! vacation rule of Roundcube's vacation form (a `currentdate` range) —
//! later ninth rules are `:matches` on the subject instead, as a user has
//! one vacation rule. Every rule's keys carry its number, zero-padded
//! (`0007`), so that no key of one rule is part of another's.
//!
//! # The messages ([`message`])
//!
//! The base message is what a real delivery looks like: three `Received`,
//! a `DKIM-Signature`, From/To/Cc/Subject/Date/Message-ID, and a
//! `multipart/alternative` body with `text/plain` and `text/html` parts,
//! 4096 bytes in all. It matches no rule (its date is outside the
//! vacation range, its keys are no rule's), so a script leaves it to the
//! implicit keep.

use super::action::{Action, Outcome, VacationReply};
use super::interp::Env;

/// The extensions the generated scripts require.
const REQUIRE: &[&str] = &[
    "fileinto",
    "imap4flags",
    "copy",
    "regex",
    "envelope",
    "body",
    "vacation",
    "date",
    "relational",
];

/// How many kinds of rule the generator cycles through.
pub const KINDS: usize = 9;

/// The vacation range of the (one) vacation rule: it is in effect from
/// 2001-07-01 to 2001-07-14, long past.
const VACATION_FROM: &str = "2001-07-01";
const VACATION_UNTIL: &str = "2001-07-14";
/// A moment inside that range (2001-07-05 00:00 UTC).
pub const VACATION_NOW: i64 = 994_291_200;
/// The base message's date (2025-01-14 08:12:38 UTC): outside the range.
pub const BASE_NOW: i64 = 1_736_842_358;

/// The vacation rule's text.
pub const VACATION_REASON: &str = "I am away until 14 July and read no mail.\r\n\
In urgent cases write to support@example.com.\r\n";

/// A filter set of `n` rules as Roundcube's managesieve plugin writes it.
pub fn roundcube_script(n: usize) -> String {
    let mut s = String::new();
    s.push_str("require [");
    for (i, e) in REQUIRE.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(e);
        s.push('"');
    }
    s.push_str("];\n");
    for k in 0..n {
        rule(&mut s, k);
    }
    s
}

fn rule(s: &mut String, k: usize) {
    let t = format!("{k:04}");
    let (name, test, actions): (String, String, Vec<String>) = match k % KINDS {
        0 => (
            format!("List {t}"),
            format!(
                "anyof (header :contains \"list-id\" \"<list-{t}.lists.example.net>\", \
                 address :is \"from\" \"list-{t}@lists.example.net\")"
            ),
            vec![format!("fileinto \"Lists.list-{t}\";"), "stop;".into()],
        ),
        1 => (
            format!("Tickets {t}"),
            format!("header :contains \"subject\" \"[ticket-{t}]\""),
            vec![
                "addflag \"\\\\Flagged\";".into(),
                "fileinto \"Tickets\";".into(),
                "stop;".into(),
            ],
        ),
        2 => (
            format!("Monitoring {t}"),
            format!("header :regex \"subject\" \"^\\\\[alert-{t}\\\\] .* is (down|up)$\""),
            vec!["fileinto \"Alerts\";".into(), "stop;".into()],
        ),
        3 => (
            format!("Team archive {t}"),
            format!("address :is \"to\" \"team-{t}@example.com\""),
            vec![format!("redirect :copy \"team-{t}-archive@example.org\";")],
        ),
        4 => (
            format!("Drop bounces {t}"),
            format!("envelope :is \"from\" \"bounces-{t}@mailer.example.net\""),
            vec!["discard;".into(), "stop;".into()],
        ),
        5 => (
            format!("Large from {t}"),
            format!("allof (address :domain :is \"from\" \"big-{t}.example.org\", size :over 2K)"),
            vec!["fileinto \"Large\";".into()],
        ),
        6 => (
            format!("Read copies {t}"),
            format!(
                "anyof (header :contains \"cc\" \"cc-{t}@example.com\", \
                 header :is \"x-mailer\" \"Mailer {t}\")"
            ),
            vec![
                "addflag \"\\\\Seen\";".into(),
                "fileinto :copy \"Archive\";".into(),
            ],
        ),
        7 => (
            format!("Promotions {t}"),
            format!("body :text :contains \"promo-code-{t}\""),
            vec!["fileinto \"Promotions\";".into(), "stop;".into()],
        ),
        _ if k == KINDS - 1 => (
            "Out of office".into(),
            format!(
                "allof (currentdate :value \"ge\" \"date\" \"{VACATION_FROM}\", \
                 currentdate :value \"le\" \"date\" \"{VACATION_UNTIL}\")"
            ),
            vec![format!(
                "vacation :days 7 :addresses [\"alice@example.com\",\"a.smith@example.com\"] \
                 :subject \"Out of office\" text:\n{}.\n;",
                VACATION_REASON.replace("\r\n", "\n")
            )],
        ),
        _ => (
            format!("Invoices {t}"),
            format!("header :matches \"subject\" \"*invoice-{t}*\""),
            vec!["fileinto \"Invoices\";".into()],
        ),
    };
    s.push_str(&format!("# rule:[{name}]\nif {test}\n{{\n"));
    for a in actions {
        s.push('\t');
        s.push_str(&a);
        s.push('\n');
    }
    s.push_str("}\n");
}

/// What a message is made of; [`message`] fills it in.
struct Parts {
    from: String,
    to: String,
    cc: String,
    subject: String,
    extra_header: Option<String>,
    body_word: Option<String>,
}

/// The base message (`hit` None) or the variant that matches rule `hit`,
/// with the envelope and clock its run needs. 4096 bytes either way
/// (LF line ends, as qmail hands messages over).
pub fn message(hit: Option<usize>) -> (Vec<u8>, Env) {
    let mut p = Parts {
        from: "Carol Example <carol@example.org>".into(),
        to: "Alice Smith <alice@example.com>".into(),
        cc: "Bob <bob@example.net>, \"Dave D.\" <dave@example.net>".into(),
        subject: "Re: minutes of Tuesday's meeting".into(),
        extra_header: None,
        body_word: None,
    };
    let mut env = Env {
        envelope_from: "carol@example.org".into(),
        envelope_to: "alice@example.com".into(),
        now: BASE_NOW,
        ..Env::default()
    };
    if let Some(k) = hit {
        let t = format!("{k:04}");
        match k % KINDS {
            0 => {
                p.extra_header = Some(format!(
                    "List-Id: Project list <list-{t}.lists.example.net>"
                ))
            }
            1 => p.subject = format!("[ticket-{t}] printer on floor 3 jams"),
            2 => p.subject = format!("[alert-{t}] web01.example.com is down"),
            3 => p.to = format!("The team <team-{t}@example.com>"),
            4 => env.envelope_from = format!("bounces-{t}@mailer.example.net"),
            5 => p.from = format!("Big Sender <news@big-{t}.example.org>"),
            6 => p.cc = format!("Copies <cc-{t}@example.com>"),
            7 => p.body_word = Some(format!("promo-code-{t}")),
            _ if k == KINDS - 1 => env.now = VACATION_NOW,
            _ => p.subject = format!("Your invoice-{t} is ready"),
        }
    }
    (build(&p), env)
}

/// The actions a run of a script of more than `k` rules returns for
/// `message(Some(k))`.
pub fn expected(k: usize) -> Outcome {
    let store = |folder: &str, flags: &[&str], implicit: bool| Action::Store {
        folder: folder.into(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        create: false,
        implicit,
        keep: false,
    };
    let keep = store("INBOX", &[], true);
    let t = format!("{k:04}");
    let (actions, discarded) = match k % KINDS {
        0 => (vec![store(&format!("Lists.list-{t}"), &[], false)], false),
        1 => (vec![store("Tickets", &["\\Flagged"], false)], false),
        2 => (vec![store("Alerts", &[], false)], false),
        3 => (
            vec![
                Action::Redirect {
                    address: format!("team-{t}-archive@example.org"),
                },
                keep,
            ],
            false,
        ),
        4 => (vec![], true),
        5 => (vec![store("Large", &[], false)], false),
        6 => (
            vec![
                store("Archive", &["\\Seen"], false),
                store("INBOX", &["\\Seen"], true),
            ],
            false,
        ),
        7 => (vec![store("Promotions", &[], false)], false),
        _ if k == KINDS - 1 => (
            vec![
                Action::Vacation(VacationReply {
                    reason: VACATION_REASON.into(),
                    mime: false,
                    subject: Some("Out of office".into()),
                    from: None,
                    addresses: vec!["alice@example.com".into(), "a.smith@example.com".into()],
                    period: Some(7 * 86_400),
                    handle: None,
                }),
                keep,
            ],
            false,
        ),
        _ => (vec![store("Invoices", &[], false)], false),
    };
    Outcome {
        actions,
        discarded,
        error: None,
    }
}

/// The outcome for a message no rule matches: the implicit keep alone.
pub fn implicit_keep() -> Outcome {
    Outcome {
        actions: vec![Action::Store {
            folder: "INBOX".into(),
            flags: Vec::new(),
            create: false,
            implicit: true,
            keep: false,
        }],
        discarded: false,
        error: None,
    }
}

/// The size of every message [`message`] makes.
pub const MESSAGE_SIZE: usize = 4096;

const BOUNDARY: &str = "b1_5f3c9a0e2d7b4c18";

const PARAGRAPH: &str = "Thanks for the notes. The migration of the build servers is\n\
scheduled for the first week of February; Bob will send the exact dates\n\
once the hardware has arrived. Until then please keep using the old\n\
machines and report anything unusual to the operations list.";

fn build(p: &Parts) -> Vec<u8> {
    let mut h = String::new();
    h.push_str(
        "Received: from mail.example.org (mail.example.org [192.0.2.25])\n\
         \tby mx1.example.com (Postfix) with ESMTPS id 4Ym2kQ0abcz9xyz\n\
         \tfor <alice@example.com>; Tue, 14 Jan 2025 09:12:41 +0100 (CET)\n\
         Received: from localhost (localhost [127.0.0.1])\n\
         \tby mail.example.org (Postfix) with ESMTP id 8F2A31C0042\n\
         \tfor <alice@example.com>; Tue, 14 Jan 2025 09:12:39 +0100 (CET)\n\
         Received: from [198.51.100.7] (dsl-7.example.org [198.51.100.7])\n\
         \t(Authenticated sender: carol)\n\
         \tby mail.example.org (Postfix) with ESMTPSA id 3C1D21C0040;\n\
         \tTue, 14 Jan 2025 09:12:38 +0100 (CET)\n\
         DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\n\
         \ts=mail2024; t=1736842358;\n\
         \tbh=q9Lr5sM0dXk1pWbGf3yT2uVnC8hJ4eA6iZoRlKxYwBs=;\n\
         \th=From:To:Cc:Subject:Date:Message-ID:MIME-Version:Content-Type;\n\
         \tb=Xb3Kq8vRt2LmN5pQ7sW9yZ1aC4eG6iK8mO0qS2uW4yA6cE8gI0kM2oQ4sU6wY8a\n\
         \t C0eG2iK4mO6qS8uW0yA2cE4gI6kM8oQ0sU2wY4aC6eG8iK0mO2qS4uW6yA8cE0gI\n\
         \t 2kM4oQ6sU8wY0aC2eG4iK6mO8qS0uW2yA4cE6gI8kM0oQ2sU4wY6aC8eG0iK2mO4\n\
         \t qS6uW8yA0cE2gI4kM6oQ8sU0wY2aC4eG6iK8mO0qS2uW4yA6cE8gI0kM2oQ4sU6w==\n",
    );
    h.push_str(&format!(
        "From: {}\nTo: {}\nCc: {}\nSubject: {}\n",
        p.from, p.to, p.cc, p.subject
    ));
    h.push_str(
        "Date: Tue, 14 Jan 2025 09:12:38 +0100\n\
         Message-ID: <20250114081238.4711.carol@mail.example.org>\n\
         User-Agent: Roundcube Webmail/1.6.9\n",
    );
    if let Some(x) = &p.extra_header {
        h.push_str(x);
        h.push('\n');
    }
    h.push_str(&format!(
        "MIME-Version: 1.0\nContent-Type: multipart/alternative;\n boundary=\"{BOUNDARY}\"\n\n"
    ));
    let word = p.body_word.as_deref().unwrap_or("");
    let part = |ct: &str, body: &str| {
        format!(
            "--{BOUNDARY}\nContent-Type: {ct}; charset=UTF-8\n\
             Content-Transfer-Encoding: 7bit\n\n{body}\n"
        )
    };
    let end = format!("--{BOUNDARY}--\n");
    // Paragraphs in both parts until the message is just under the size,
    // then a filler line in the text part makes it exact.
    let mut paras = 1;
    let make = |paras: usize, fill: usize| {
        let mut text = String::from("Hi Alice,\n\n");
        let mut html = String::from("<html><head><style>p{margin:0}</style></head><body>\n");
        for i in 0..paras {
            text.push_str(PARAGRAPH);
            text.push_str("\n\n");
            html.push_str(&format!("<p class=\"p{i}\">{PARAGRAPH}</p>\n"));
        }
        if !word.is_empty() {
            text.push_str(&format!("Your code: {word}\n"));
            html.push_str(&format!("<p>Your code: <b>{word}</b></p>\n"));
        }
        // The filler, in lines of at most 72 characters.
        let mut left = fill;
        while left > 72 {
            text.push_str(&"-".repeat(72));
            text.push('\n');
            left -= 73;
        }
        text.push_str(&"-".repeat(left));
        text.push_str("\nCarol");
        html.push_str("<p>Carol</p></body></html>");
        let mut m = h.clone();
        m.push_str(&part("text/plain", &text));
        m.push_str(&part("text/html", &html));
        m.push_str(&end);
        m
    };
    while make(paras + 1, 0).len() <= MESSAGE_SIZE {
        paras += 1;
    }
    let short = MESSAGE_SIZE - make(paras, 0).len();
    make(paras, short).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::interp::{run, NoHost};
    use crate::sieve::message::Message;

    fn outcome(script: &crate::sieve::Program, hit: Option<usize>) -> Outcome {
        let (raw, env) = message(hit);
        assert_eq!(raw.len(), MESSAGE_SIZE, "message for {hit:?}");
        run(script, &Message::parse(&raw), &env, &mut NoHost)
    }

    #[test]
    fn scripts_compile_and_each_rule_fires_alone() {
        for n in [20, 200] {
            let text = roundcube_script(n);
            assert_eq!(text.matches("# rule:[").count(), n);
            let p = crate::sieve::compile(text.as_bytes())
                .unwrap_or_else(|e| panic!("{n} rules: {e}\n{text}"));
            assert_eq!(
                outcome(&p, None),
                implicit_keep(),
                "{n} rules, base message"
            );
            for k in 0..n {
                assert_eq!(outcome(&p, Some(k)), expected(k), "{n} rules, rule {k}");
            }
        }
    }

    #[test]
    fn a_rule_beyond_the_script_does_not_fire() {
        // Rule 25's message against 20 rules: nothing matches.
        let p = crate::sieve::compile(roundcube_script(20).as_bytes()).unwrap();
        for k in 20..29 {
            assert_eq!(outcome(&p, Some(k)), implicit_keep(), "rule {k}");
        }
    }

    #[test]
    fn shape_is_roundcubes() {
        let s = roundcube_script(10);
        assert!(
            s.starts_with("require [\"fileinto\",\"imap4flags\","),
            "{s}"
        );
        assert!(s.contains("# rule:[List 0000]\nif anyof (header :contains \"list-id\""));
        assert!(
            s.contains("\n{\n\taddflag \"\\\\Flagged\";\n\tfileinto \"Tickets\";\n\tstop;\n}\n")
        );
        assert!(s.contains("# rule:[Out of office]\nif allof (currentdate :value \"ge\""));
        let m = String::from_utf8(message(None).0).unwrap();
        assert_eq!(m.matches("\nReceived: ").count() + 1, 3);
        for h in [
            "DKIM-Signature:",
            "Message-ID:",
            "Cc:",
            "Content-Type: text/html",
        ] {
            assert!(m.contains(h), "{h}");
        }
    }
}
