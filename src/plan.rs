//! Resolution, pure: from what the database said to a delivery
//! plan, or to the list of further facts it needs.
//!
//! The database layer answers questions of the form "what is there for
//! these (domain, local part) pairs" — domain or alias domain, aliases,
//! account, relocated, catch-alls — and records the answers in [`Facts`].
//! [`resolve`] walks the rules over those facts. When it meets an address
//! it has no facts for (a destination in another domain, a level deeper),
//! it returns [`Step::Need`] with every pair missing at that level; the
//! caller fetches them in one round trip and calls again. So a plain
//! account, an alias with local destinations in the same answer, an
//! extension and a catch-all all take one round trip; each further level of
//! aliasing across domains takes one more.
//!
//! "The database said nothing" (no rows) and "the database failed" never
//! meet here: a failure never becomes [`Facts`].
//!
//! # Rules, in order, for `local@domain`
//!
//! 1. The domain must be a domain or an alias domain; at the top level an
//!    unknown one is a configuration error (111), deeper it is remote.
//! 2. Aliases of the exact address replace delivery; a destination equal to
//!    the address itself keeps a copy in its own mailbox.
//! 3. The account. 4. Relocated. 5. The same for each shorter prefix cut at
//!    a delimiter, longest first; an account reached so gets the message in
//!    the folder named by the cut-off part when that folder exists.
//! 6. Catch-all destinations. 7. The vpopmail-style fallback, else no such
//!    user.
//!
//! Destinations may use `%n` (the local part as addressed), `%d` (the
//! domain as addressed), `%=` (`local=domain`) and `%%`. Depth is limited
//! to [`MAX_DEPTH`]; a cycle or the limit is a loop (100, `#5.4.6`).
//!
//! Only the address vdeliver was run for can bounce as "no such user",
//! "disabled" or "relocated". The same finding one or more alias steps down
//! is an error in the site's configuration, and defers (111, `#4.3.5`)
//! naming the chain, so no alias member silently misses mail.

use crate::outcome::Failure;
use crate::recipient::{fold_local, normalize_domain, Recipient};
use std::collections::{HashMap, HashSet};

/// Longest alias chain followed.
pub const MAX_DEPTH: usize = 16;

/// Longest address accepted anywhere (RFC 5321 allows far less).
pub const MAX_ADDRESS: usize = 1000;

/// A domain the database knows, keyed by the name as addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFacts {
    /// The primary domain (differs from the key for an alias domain).
    pub primary: String,
    pub active: bool,
    pub catchalls: Vec<String>,
}

/// An account row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    /// Relative to `mail.root`, as stored.
    pub maildir: String,
    pub active: bool,
    /// Effective limits (the account's own, else the domain's); `None` or
    /// 0 = unlimited.
    pub quota_bytes: Option<i64>,
    pub quota_messages: Option<i64>,
    /// The account's own Junk routing setting (`accounts.junk`); `None`:
    /// the site's (`junk.enabled`).
    pub junk: Option<bool>,
}

/// What exists for one local part in one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalFacts {
    pub aliases: Vec<String>,
    pub account: Option<AccountFacts>,
    pub relocated: Option<String>,
}

impl LocalFacts {
    /// No alias, account or relocated row: the candidate does not decide.
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty() && self.account.is_none() && self.relocated.is_none()
    }
}

/// Everything fetched so far.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Addressed domain → its facts, `None` when the database does not
    /// know it. A domain absent from the map has not been asked about.
    pub domains: HashMap<String, Option<DomainFacts>>,
    /// (addressed domain, local part) → rows; pairs asked about are in
    /// `asked` whether or not anything came back.
    pub locals: HashMap<(String, String), LocalFacts>,
    pub asked: HashSet<(String, String)>,
}

impl Facts {
    fn known(&self, domain: &str, local: &str) -> bool {
        self.domains.contains_key(domain)
            && self
                .asked
                .contains(&(domain.to_string(), local.to_string()))
    }

    fn local(&self, domain: &str, local: &str) -> Option<&LocalFacts> {
        self.locals.get(&(domain.to_string(), local.to_string()))
    }
}

/// vpopmail's `vdelivermail '' FALLBACK` argument, for unknown users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    Bounce,
    Delete,
    Forward(String),
    /// A Maildir path relative to `mail.root`.
    Maildir(String),
}

/// The knobs resolution depends on.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Characters that start an extension (`-` by default).
    pub delimiters: String,
    pub fallback: Option<Fallback>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            delimiters: "-".into(),
            fallback: None,
        }
    }
}

/// One Maildir to store the message in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// `local@primary-domain` of the account (or the fallback's path).
    pub owner: String,
    pub maildir: String,
    /// A Maildir++ folder (without the leading dot) to use when it exists.
    pub folder: Option<String>,
    pub quota_bytes: Option<i64>,
    pub quota_messages: Option<i64>,
    /// See [`AccountFacts::junk`]; `None` for a fallback Maildir.
    pub junk: Option<bool>,
    /// The addresses walked to reach this mailbox (folded `local@domain`,
    /// as addressed: the recipient first, then the aliases' destinations,
    /// the last being the address whose account this is, in the domain it
    /// was addressed in). A vacation reply counts them among the user's
    /// own addresses. Empty for a fallback Maildir.
    pub via: Vec<String>,
}

/// Where the message goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub mailboxes: Vec<Mailbox>,
    /// Remote addresses, for qmail-queue, each once.
    pub remote: Vec<String>,
    /// Accept and discard (vpopmail's `delete`), with the reason.
    pub discard: Option<String>,
    /// The resolution steps, for logs and `vmailctl resolve`.
    pub trace: Vec<String>,
}

/// The result of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done(Plan),
    /// Fetch these (domain, local part) pairs and call again.
    Need(Vec<(String, String)>),
}

/// Resolve the recipient over the facts fetched so far.
pub fn resolve(rcpt: &Recipient, facts: &Facts, rules: &Rules) -> Result<Step, Failure> {
    let mut w = Walk {
        facts,
        rules,
        plan: Plan::default(),
        need: Vec::new(),
        seen_boxes: HashSet::new(),
        seen_remote: HashSet::new(),
    };
    let top = Addr {
        local: rcpt.local.clone(),
        shown_local: rcpt.local_as_addressed.clone(),
        domain: rcpt.domain.clone(),
    };
    w.expand(&top, &mut Vec::new())?;
    if !w.need.is_empty() {
        w.need.sort();
        w.need.dedup();
        return Ok(Step::Need(w.need));
    }
    Ok(Step::Done(w.plan))
}

/// The pairs to ask about first: every candidate of the recipient.
pub fn first_question(rcpt: &Recipient, rules: &Rules) -> Vec<(String, String)> {
    candidates(&rcpt.local_as_addressed, &rules.delimiters)
        .into_iter()
        .map(|(c, _)| (rcpt.domain.clone(), c))
        .collect()
}

#[derive(Debug, Clone)]
struct Addr {
    /// For lookups: folded by [`fold_local`].
    local: String,
    /// As addressed, for `%n` and messages.
    shown_local: String,
    domain: String,
}

impl Addr {
    fn shown(&self) -> String {
        format!("{}@{}", self.shown_local, self.domain)
    }

    /// The address as the chain and the loop check know it.
    fn key(&self) -> String {
        format!("{}@{}", fold_local(&self.local), self.domain)
    }
}

/// A stop in the walk: a failure for the whole delivery.
type Stop = Failure;

struct Walk<'a> {
    facts: &'a Facts,
    rules: &'a Rules,
    plan: Plan,
    need: Vec<(String, String)>,
    seen_boxes: HashSet<(String, Option<String>)>,
    seen_remote: HashSet<String>,
}

impl Walk<'_> {
    /// Resolve one address; `chain` holds the addresses above it.
    fn expand(&mut self, a: &Addr, chain: &mut Vec<String>) -> Result<(), Stop> {
        let key = a.key();
        if chain.contains(&key) || chain.len() > MAX_DEPTH {
            let mut shown = chain.clone();
            shown.push(key);
            let why = if chain.len() > MAX_DEPTH {
                format!("alias chain longer than {MAX_DEPTH}")
            } else {
                "alias loop".to_string()
            };
            return Err(Failure::looping(format_args!(
                "{why}: {}",
                shown.join(" -> ")
            )));
        }
        let top = chain.is_empty();
        let cands = candidates(&a.shown_local, &self.rules.delimiters);
        // The candidates are tried longest first and the first with any
        // rows decides, so those after it need not be known. The first
        // not yet known, and every one after it, are asked for.
        let unknown = cands
            .iter()
            .position(|(c, _)| {
                !self.facts.known(&a.domain, c)
                    || self
                        .facts
                        .local(&a.domain, c)
                        .is_some_and(|lf| !lf.is_empty())
            })
            .filter(|&i| !self.facts.known(&a.domain, &cands[i].0));
        if let Some(i) = unknown {
            self.need.extend(
                cands[i..]
                    .iter()
                    .map(|(c, _)| (a.domain.clone(), c.clone())),
            );
            return Ok(());
        }
        let domain = match self.facts.domains.get(&a.domain) {
            Some(Some(d)) => d,
            _ if top => return Err(Failure::unknown_domain(&a.domain)),
            _ => {
                self.add_remote(&a.shown(), chain);
                return Ok(());
            }
        };
        if !domain.active {
            let definite = Failure::disabled(&a.shown());
            return Err(self.refuse(top, chain, a, "its domain is disabled", definite));
        }
        chain.push(key);
        let r = self.expand_local(a, domain, &cands, top, chain);
        chain.pop();
        r
    }

    fn expand_local(
        &mut self,
        a: &Addr,
        domain: &DomainFacts,
        cands: &[(String, Option<String>)],
        top: bool,
        chain: &mut Vec<String>,
    ) -> Result<(), Stop> {
        let facts = self.facts;
        for (cand, ext) in cands {
            let Some(lf) = facts.local(&a.domain, cand) else {
                continue;
            };
            let owner = format!("{cand}@{}", domain.primary);
            if !lf.aliases.is_empty() {
                self.trace(chain, format!("alias {cand}@{}", a.domain));
                for dest in &lf.aliases {
                    let d = self.destination(dest, a, &owner)?;
                    let is_self = match facts.domains.get(&d.domain) {
                        Some(Some(dd)) => dd.primary == domain.primary && d.local == *cand,
                        Some(None) => false,
                        None => {
                            // Its domain is still unknown: ask, and decide next pass.
                            let pairs = candidates(&d.shown_local, &self.rules.delimiters);
                            self.need
                                .extend(pairs.into_iter().map(|(c, _)| (d.domain.clone(), c)));
                            continue;
                        }
                    };
                    if is_self {
                        self.own_copy(a, lf, &owner, ext, top, chain)?;
                    } else {
                        self.expand(&d, chain)?;
                    }
                }
                return Ok(());
            }
            if lf.account.is_some() {
                return self.own_copy(a, lf, &owner, ext, top, chain);
            }
            if let Some(new) = &lf.relocated {
                let definite = Failure::relocated(&a.shown(), new);
                let why = format!("it has moved to {new}");
                return Err(self.refuse(top, chain, a, &why, definite));
            }
        }
        if !domain.catchalls.is_empty() {
            self.trace(chain, format!("catch-all of {}", a.domain));
            for dest in &domain.catchalls {
                let d = self.destination(dest, a, &format!("@{}", domain.primary))?;
                self.expand(&d, chain)?;
            }
            return Ok(());
        }
        if top {
            return self.fallback(a, chain);
        }
        Err(self.refuse(
            false,
            chain,
            a,
            "there is no such mailbox",
            Failure::no_such_user(),
        ))
    }

    /// Deliver to the account of the candidate whose facts are `lf`.
    fn own_copy(
        &mut self,
        a: &Addr,
        lf: &LocalFacts,
        owner: &str,
        ext: &Option<String>,
        top: bool,
        chain: &[String],
    ) -> Result<(), Stop> {
        let Some(acc) = &lf.account else {
            return Err(Failure::config(format_args!(
                "alias {owner} keeps a copy for itself, but there is no account {owner}"
            )));
        };
        if !acc.active {
            let definite = Failure::disabled(&a.shown());
            return Err(self.refuse(top, chain, a, "the account is disabled", definite));
        }
        let folder = ext.as_ref().filter(|e| folder_name_ok(e)).cloned();
        let mb = Mailbox {
            owner: owner.to_string(),
            maildir: acc.maildir.clone(),
            folder,
            quota_bytes: acc.quota_bytes,
            quota_messages: acc.quota_messages,
            junk: acc.junk,
            via: chain.to_vec(),
        };
        self.trace(chain, format!("mailbox {owner}"));
        if self
            .seen_boxes
            .insert((normal_path(&mb.maildir), mb.folder.clone()))
        {
            self.plan.mailboxes.push(mb);
        }
        Ok(())
    }

    fn fallback(&mut self, a: &Addr, chain: &mut Vec<String>) -> Result<(), Stop> {
        match &self.rules.fallback {
            None | Some(Fallback::Bounce) => Err(Failure::no_such_user()),
            Some(Fallback::Delete) => {
                self.plan.discard = Some(format!(
                    "no mailbox {}; deleted as the .qmail line says",
                    a.shown()
                ));
                Ok(())
            }
            Some(Fallback::Forward(dest)) => {
                self.trace(chain, "vpopmail fallback".into());
                let d = self.destination(dest, a, "the command line")?;
                chain.push(a.key());
                let r = self.expand(&d, chain);
                chain.pop();
                r
            }
            Some(Fallback::Maildir(rel)) => {
                let mb = Mailbox {
                    owner: format!("fallback for {}", a.shown()),
                    maildir: rel.clone(),
                    folder: None,
                    quota_bytes: None,
                    quota_messages: None,
                    junk: None,
                    via: Vec::new(),
                };
                if self.seen_boxes.insert((normal_path(rel), None)) {
                    self.plan.mailboxes.push(mb);
                }
                Ok(())
            }
        }
    }

    /// A failure: at the top the definite answer, deeper a configuration
    /// error naming the chain.
    fn refuse(
        &self,
        top: bool,
        chain: &[String],
        a: &Addr,
        why: &str,
        definite: Failure,
    ) -> Failure {
        if top {
            definite
        } else {
            let mut path = chain.to_vec();
            if path.last() != Some(&a.key()) {
                path.push(a.key());
            }
            Failure::config(format_args!("{}: {why}", path.join(" -> ")))
        }
    }

    /// Interpolate and check one destination row.
    fn destination(&self, raw: &str, a: &Addr, row_owner: &str) -> Result<Addr, Stop> {
        let bad =
            |why: String| Failure::config(format_args!("destination {raw:?} of {row_owner} {why}"));
        let s = interpolate(raw, &a.shown_local, &a.domain).map_err(bad)?;
        let (local, domain) = split_address(&s).map_err(bad)?;
        Ok(Addr {
            local: fold_local(local),
            shown_local: local.to_string(),
            domain,
        })
    }

    fn add_remote(&mut self, addr: &str, chain: &[String]) {
        self.trace(chain, format!("forward to {addr}"));
        if self.seen_remote.insert(fold_local(addr)) {
            self.plan.remote.push(addr.to_string());
        }
    }

    fn trace(&mut self, chain: &[String], what: String) {
        self.plan.trace.push(format!(
            "{}{what}",
            "  ".repeat(chain.len().saturating_sub(1))
        ));
    }
}

/// The local part and each shorter prefix cut at a delimiter, longest
/// first, each as a lookup key (folded by [`fold_local`]) with the cut-off
/// extension as addressed (it may name a folder, whose case matters).
pub fn candidates(local: &str, delimiters: &str) -> Vec<(String, Option<String>)> {
    let key = fold_local;
    let mut v = vec![(key(local), None)];
    if delimiters.is_empty() {
        return v;
    }
    for (i, c) in local.char_indices().rev() {
        if delimiters.contains(c) && i > 0 {
            let ext = &local[i + c.len_utf8()..];
            v.push((key(&local[..i]), Some(ext.to_string())));
        }
    }
    v
}

/// Expand `%n`, `%d`, `%=` and `%%`.
pub fn interpolate(dest: &str, local: &str, domain: &str) -> Result<String, String> {
    let mut out = String::with_capacity(dest.len() + local.len() + domain.len());
    let mut it = dest.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push_str(local),
            Some('d') => out.push_str(domain),
            Some('=') => {
                out.push_str(local);
                out.push('=');
                out.push_str(domain);
            }
            Some('%') => out.push('%'),
            Some(x) => return Err(format!("uses an unknown %{x}")),
            None => return Err("ends in a lone %".into()),
        }
    }
    Ok(out)
}

/// Split and check an address: a non-empty local part without control
/// characters or blanks, a valid domain (normalised), at most
/// [`MAX_ADDRESS`] bytes.
pub fn split_address(s: &str) -> Result<(&str, String), String> {
    if s.len() > MAX_ADDRESS {
        return Err(format!("is longer than {MAX_ADDRESS} bytes"));
    }
    let (local, domain) = s.rsplit_once('@').ok_or("is not an address (no '@')")?;
    if local.is_empty() {
        return Err("has an empty local part".into());
    }
    if local.chars().any(|c| c.is_control() || c == ' ') {
        return Err("has a control character or blank".into());
    }
    let domain = normalize_domain(domain).map_err(|w| format!("has a bad domain: {w}"))?;
    Ok((local, domain))
}

/// Whether an extension can name a folder: no path tricks.
pub fn folder_name_ok(ext: &str) -> bool {
    crate::config::check_folder_name(ext).is_ok()
}

/// A Maildir path reduced for comparison (`a//b/./c` = `a/b/c/`).
fn normal_path(p: &str) -> String {
    let mut s: String = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/");
    s.push('/');
    s
}

#[cfg(test)]
mod tests;
