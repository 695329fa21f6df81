//! vdeliver's command line, pure.
//!
//! ```text
//! vdeliver [--config PATH] [--local LOCAL --domain DOMAIN] [--sender S] ['' FALLBACK]
//! ```
//!
//! Parsed by hand: the grammar is tiny and vdeliver starts once per message,
//! so it carries no argument-parsing library. The optional positional pair
//! is vpopmail's `vdelivermail '' FALLBACK` form (the first argument is
//! ignored, as vdelivermail ignores it).

use std::path::PathBuf;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub config: Option<PathBuf>,
    pub local: Option<String>,
    pub domain: Option<String>,
    pub sender: Option<String>,
    /// vpopmail-compatible fallback for unknown users: `bounce-no-mailbox`,
    /// `delete`, an address, or a path: a user directory (its `Maildir/`
    /// gets the mail) or a Maildir (see `deliver::parse_fallback`).
    pub fallback: Option<String>,
}

/// Parse the arguments after the program name. The error is one line.
pub fn parse<I, S>(args: I) -> Result<Invocation, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut inv = Invocation::default();
    let mut config = None;
    let mut positional = Vec::new();
    let mut it = args.into_iter().map(Into::into);
    while let Some(a) = it.next() {
        if a == "--" {
            positional.extend(it.by_ref());
            break;
        }
        if !a.starts_with("--") {
            positional.push(a);
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let slot = match name.as_str() {
            "--config" => &mut config,
            "--local" => &mut inv.local,
            "--domain" => &mut inv.domain,
            "--sender" => &mut inv.sender,
            _ => return Err(format!("unknown option {name}")),
        };
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        *slot = Some(value);
    }
    inv.config = config.map(PathBuf::from);
    match positional.len() {
        0 => {}
        2 => inv.fallback = positional.pop(),
        1 => {
            return Err(format!(
                "a fallback needs two arguments, as in vdeliver '' {}",
                positional[0]
            ))
        }
        _ => return Err("too many arguments".into()),
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse(Vec::<String>::new()).unwrap(), Invocation::default());
        let i = parse(["--config", "/c", "--local=Bob", "--domain", "x.org"]).unwrap();
        assert_eq!(i.config, Some(PathBuf::from("/c")));
        assert_eq!(i.local.as_deref(), Some("Bob"));
        assert_eq!(i.domain.as_deref(), Some("x.org"));
        let i = parse(["", "bounce-no-mailbox"]).unwrap();
        assert_eq!(i.fallback.as_deref(), Some("bounce-no-mailbox"));
        let i = parse(["--", "", "--odd"]).unwrap();
        assert_eq!(i.fallback.as_deref(), Some("--odd"));
    }

    #[test]
    fn errors() {
        assert!(parse(["--bogus"]).unwrap_err().contains("--bogus"));
        assert!(parse(["--local"]).unwrap_err().contains("needs a value"));
        assert!(parse(["delete"]).is_err());
        assert!(parse(["a", "b", "c"]).is_err());
    }
}
