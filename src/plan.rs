//! From one database answer to a delivery plan (SPEC §3), pure.
//!
//! The database layer fetches everything the decision needs in one round
//! trip and hands it over as an [`Answer`]; this module decides. Keeping the
//! decision here means it is tested without a database, and that "the
//! database said no such row" (an [`Answer`] without an account) can never
//! be confused with "the database failed" (which never reaches this module).

use crate::outcome::Failure;
use crate::recipient::Recipient;

/// The recipient's domain as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainAnswer {
    /// The primary domain's name (differs from the addressed domain when the
    /// address used an alias domain).
    pub name: String,
    pub active: bool,
}

/// The account row for the local part, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAnswer {
    /// Maildir path relative to `mail.root`, as stored.
    pub maildir: String,
    pub active: bool,
}

/// Everything one lookup returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// `None`: the domain is neither a domain nor an alias domain.
    pub domain: Option<DomainAnswer>,
    pub account: Option<AccountAnswer>,
}

/// One Maildir to write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Relative to `mail.root`; confined beneath it when opened.
    pub maildir: String,
}

/// Decide where the message goes, or why it goes nowhere.
pub fn plan(rcpt: &Recipient, answer: &Answer) -> Result<Vec<Target>, Failure> {
    let domain = match &answer.domain {
        None => return Err(Failure::unknown_domain(&rcpt.domain)),
        Some(d) => d,
    };
    let account = match &answer.account {
        None => return Err(Failure::no_such_user()),
        Some(a) => a,
    };
    if !domain.active || !account.active {
        return Err(Failure::disabled(&format!(
            "{}@{}",
            rcpt.local_as_addressed, rcpt.domain
        )));
    }
    Ok(vec![Target {
        maildir: account.maildir.clone(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Exit;

    fn rcpt() -> Recipient {
        Recipient {
            local_as_addressed: "Alice".into(),
            local: "alice".into(),
            domain: "example.com".into(),
        }
    }

    fn answer(domain: Option<bool>, account: Option<bool>) -> Answer {
        Answer {
            domain: domain.map(|active| DomainAnswer {
                name: "example.com".into(),
                active,
            }),
            account: account.map(|active| AccountAnswer {
                maildir: "example.com/alice/Maildir/".into(),
                active,
            }),
        }
    }

    #[test]
    fn table() {
        // (domain active?, account active?, want exit or None for delivery, want status)
        let cases = [
            (Some(true), Some(true), None, ""),
            (None, None, Some(Exit::Temporary), "4.3.5"),
            (Some(true), None, Some(Exit::Permanent), "5.1.1"),
            (Some(true), Some(false), Some(Exit::Permanent), "5.2.1"),
            (Some(false), Some(true), Some(Exit::Permanent), "5.2.1"),
        ];
        for (d, a, want_exit, want_status) in cases {
            let got = plan(&rcpt(), &answer(d, a));
            match (got, want_exit) {
                (Ok(t), None) => assert_eq!(t[0].maildir, "example.com/alice/Maildir/"),
                (Err(f), Some(e)) => {
                    assert_eq!(f.exit, e, "{d:?} {a:?}");
                    assert_eq!(f.status, want_status, "{d:?} {a:?}");
                }
                (got, want) => panic!("{d:?} {a:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
