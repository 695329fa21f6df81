//! The configuration file (TOML).
//!
//! Found at `--config PATH`, else `$VDELIVER_CONFIG`, else
//! [`DEFAULT_PATH`]. Every key has a default (see the README); unknown keys
//! and bad values are errors that name the file, the key and what is wrong,
//! on one line. For vdeliver such an error is a deferral (`#4.3.5`).

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/etc/vdeliver/config.toml";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: Database,
    pub mail: Mail,
    pub delivery: Delivery,
    pub forward: Forward,
    pub password: Password,
}

/// How `vmailctl` hashes the passwords it stores.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Password {
    /// `"SHA512-CRYPT"` (the default; every Dovecot verifies it) or
    /// `"ARGON2ID"` (Dovecot built with libsodium).
    pub scheme: crate::password::Scheme,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// libpq `key=value` string or `postgres://` URL. Never printed.
    pub url: String,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Sent as the `statement_timeout` startup option (0 = not sent) and
    /// enforced on the client side as well.
    #[serde(with = "duration")]
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mail {
    /// Every Maildir lives beneath this directory.
    pub root: PathBuf,
    /// Folders created (as `.Name`) with a new Maildir.
    pub folders: Vec<String>,
    /// Compare local parts lowercased (the default) or as addressed.
    pub lowercase_local_part: bool,
    /// Characters that start an address extension (`alice-lists`); each
    /// character is a delimiter, as in Postfix's `recipient_delimiter`.
    /// Empty: no extensions.
    pub extension_delimiter: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Forward {
    /// qmail-queue; `$QMAILQUEUE` in the environment overrides it.
    pub qmail_queue: PathBuf,
}

impl Default for Forward {
    fn default() -> Forward {
        Forward {
            qmail_queue: PathBuf::from(crate::forward::DEFAULT_QMAIL_QUEUE),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Give up with 111 after this long.
    #[serde(with = "duration")]
    pub deadline: Duration,
}

impl Default for Database {
    fn default() -> Database {
        Database {
            url: "host=/run/postgresql dbname=mail user=vmail".into(),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for Mail {
    fn default() -> Mail {
        Mail {
            root: PathBuf::from("/var/vmail"),
            folders: ["Drafts", "Sent", "Trash", "Junk"]
                .map(String::from)
                .to_vec(),
            lowercase_local_part: true,
            extension_delimiter: "-".into(),
        }
    }
}

impl Default for Delivery {
    fn default() -> Delivery {
        Delivery {
            deadline: Duration::from_secs(24 * 3600),
        }
    }
}

/// What is wrong with the configuration, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// The key (`database.url`), when the problem is one key's.
    pub key: Option<String>,
    pub what: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(k) = &self.key {
            write!(f, ": key {k}")?;
        }
        write!(f, ": {}", self.what)
    }
}

impl std::error::Error for ConfigError {}

/// Which file to read: the command line, the environment, the default.
pub fn choose_path(cli: Option<&Path>, env: Option<&str>) -> PathBuf {
    match (cli, env) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(e)) if !e.is_empty() => PathBuf::from(e),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// Read and check the file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        key: None,
        what: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parse and check configuration text; `path` only names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let err = |key: Option<String>, what: String| ConfigError {
        path: path.to_path_buf(),
        key,
        what,
    };
    let de = toml::Deserializer::parse(text).map_err(|e| err(None, toml_message(text, &e)))?;
    let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = crate::outcome::one_line(&e.path().to_string());
        let inner = e.into_inner();
        err((key != ".").then_some(key), toml_message(text, &inner))
    })?;
    cfg.check().map_err(|(k, w)| err(Some(k.into()), w))?;
    Ok(cfg)
}

/// toml's messages span several lines; keep the line number and the reason.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let what = crate::outcome::one_line(e.message().trim());
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {what}")
        }
        None => what,
    }
}

impl Config {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.database.url.trim().is_empty() {
            return Err(("database.url", "is empty".into()));
        }
        if self.database.url.parse::<postgres::Config>().is_err() {
            // The parser's message may quote the string, which may hold a
            // password: say only that it does not parse.
            return Err((
                "database.url",
                "is neither a libpq key=value string nor a postgres:// URL".into(),
            ));
        }
        if self.database.connect_timeout.is_zero() {
            return Err(("database.connect_timeout", "must be more than 0s".into()));
        }
        if !self.mail.root.is_absolute() {
            return Err(("mail.root", "must be an absolute path".into()));
        }
        for f in &self.mail.folders {
            check_folder_name(f).map_err(|w| ("mail.folders", format!("{f:?} {w}")))?;
        }
        if let Some(c) =
            self.mail.extension_delimiter.chars().find(|c| {
                c.is_alphanumeric() || c.is_control() || matches!(c, '@' | '.' | '/' | ' ')
            })
        {
            return Err((
                "mail.extension_delimiter",
                format!("{c:?} cannot be a delimiter"),
            ));
        }
        if !self.forward.qmail_queue.is_absolute() {
            return Err(("forward.qmail_queue", "must be an absolute path".into()));
        }
        if self.delivery.deadline.is_zero() {
            return Err(("delivery.deadline", "must be more than 0s".into()));
        }
        Ok(())
    }
}

/// A Maildir++ folder name as written in the configuration (`Sent`,
/// `Lists.rust`): no `/`, no leading or doubled `.`, no control characters.
pub fn check_folder_name(f: &str) -> Result<(), &'static str> {
    if f.is_empty() {
        return Err("is empty");
    }
    if f.contains('/') {
        return Err("contains '/'");
    }
    if f.starts_with('.') || f.ends_with('.') || f.contains("..") {
        return Err("has a leading, trailing or doubled '.'");
    }
    if f.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration like \"10s\" or \"24h\" ({e})"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/vdeliver/config.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(p("").unwrap(), Config::default());
    }

    #[test]
    fn full_file() {
        let c = p(r#"
            [database]
            url = "host=/run/postgresql dbname=mail user=vmail"
            connect_timeout = "3s"
            statement_timeout = "500ms"
            [mail]
            root = "/srv/mail"
            folders = ["Sent"]
            lowercase_local_part = false
            [delivery]
            deadline = "1h"
        "#)
        .unwrap();
        assert_eq!(c.database.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.database.statement_timeout, Duration::from_millis(500));
        assert_eq!(c.mail.root, PathBuf::from("/srv/mail"));
        assert_eq!(c.mail.folders, vec!["Sent".to_string()]);
        assert!(!c.mail.lowercase_local_part);
        assert_eq!(c.delivery.deadline, Duration::from_secs(3600));
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let cases = [
            (
                "[mail]\nrot = \"/x\"\n",
                Some("mail.rot"),
                "unknown field `rot`",
            ),
            ("[mail]\nroot = \"x\"\n", Some("mail.root"), "absolute"),
            ("[mail]\nroot = 3\n", Some("mail.root"), "invalid type"),
            (
                "[database]\nconnect_timeout = \"soon\"\n",
                Some("database.connect_timeout"),
                "not a duration",
            ),
            (
                "[database]\nurl = \"postgres://u:secret@h:notaport/db\"\n",
                Some("database.url"),
                "neither",
            ),
            ("[mail]\nfolders = [\"a/b\"]\n", Some("mail.folders"), "'/'"),
            ("[mail\n", None, "line 1"),
            ("[bogus]\n", Some("bogus"), "unknown field `bogus`"),
        ];
        for (text, want_key, want_what) in cases {
            let e = p(text).unwrap_err();
            let shown = e.to_string();
            assert!(shown.starts_with("/etc/vdeliver/config.toml"), "{shown}");
            assert!(!shown.contains('\n'), "{shown}");
            assert!(!shown.contains("secret"), "{shown}");
            if let Some(k) = want_key {
                assert_eq!(e.key.as_deref(), Some(k), "{shown}");
            }
            assert!(shown.contains(want_what), "{text:?}: {shown}");
        }
    }

    #[test]
    fn path_choice() {
        assert_eq!(
            choose_path(Some(Path::new("/a")), Some("/b")),
            PathBuf::from("/a")
        );
        assert_eq!(choose_path(None, Some("/b")), PathBuf::from("/b"));
        assert_eq!(choose_path(None, Some("")), PathBuf::from(DEFAULT_PATH));
        assert_eq!(choose_path(None, None), PathBuf::from(DEFAULT_PATH));
    }
}
