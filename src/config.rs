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
    pub quota: Quota,
    pub sieve: Sieve,
    pub junk: Junk,
}

/// Users' Sieve scripts ([`crate::sieve`]) and the site's own around them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sieve {
    /// Run the account's active script (`<home>/.dovecot.sieve`) and the
    /// global ones. `false`: no script is looked for or run.
    pub enabled: bool,
    /// Admin scripts (absolute paths) run before the user's, in order,
    /// each while the implicit keep is still in effect (as Pigeonhole's
    /// `sieve_before`). They are read and compiled when the configuration
    /// is loaded: a missing or broken one is a configuration error.
    pub before: Vec<PathBuf>,
    /// Admin scripts run after the user's (Pigeonhole's `sieve_after`),
    /// only while the implicit keep is still in effect.
    pub after: Vec<PathBuf>,
    /// Directory of the scripts `include :global` names (`NAME.sieve`);
    /// none: `include :global` finds nothing.
    pub global_dir: Option<PathBuf>,
    /// Most redirects one delivery makes (the rest are errors).
    pub max_redirects: usize,
    /// Most actions one run makes.
    pub max_actions: usize,
    /// `fileinto` a missing folder creates it, as if `:create` were given
    /// (Dovecot's `lda_mailbox_autocreate`). Off: the message is kept in
    /// INBOX and the error logged (Pigeonhole's default).
    pub create_folders: bool,
    /// The vacation period when the script gives none (RFC 5230: 7 days).
    #[serde(with = "duration")]
    pub vacation_default_period: Duration,
    /// The shortest period a script may ask for (`:seconds` included).
    #[serde(with = "duration")]
    pub vacation_min_period: Duration,
    /// The longest period.
    #[serde(with = "duration")]
    pub vacation_max_period: Duration,
    /// The compiled `before` scripts, read by [`load`].
    #[serde(skip)]
    pub before_programs: Vec<GlobalScript>,
    /// The compiled `after` scripts, read by [`load`].
    #[serde(skip)]
    pub after_programs: Vec<GlobalScript>,
}

/// An admin script from the configuration, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalScript {
    pub path: PathBuf,
    pub program: std::sync::Arc<crate::sieve::Program>,
}

impl Default for Sieve {
    fn default() -> Sieve {
        Sieve {
            enabled: true,
            before: Vec::new(),
            after: Vec::new(),
            global_dir: None,
            max_redirects: 4,
            max_actions: 32,
            create_folders: false,
            vacation_default_period: Duration::from_secs(7 * 86_400),
            vacation_min_period: Duration::from_secs(86_400),
            vacation_max_period: Duration::from_secs(90 * 86_400),
            before_programs: Vec::new(),
            after_programs: Vec::new(),
        }
    }
}

/// Filing spam into a Junk folder by the scanner's verdict, without a
/// script.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Junk {
    /// The site's default; an account's `junk` column (set with
    /// `vmailctl account junk`) overrides it either way.
    pub enabled: bool,
    /// The folder (Maildir++ name, `.Junk` on disk).
    pub folder: String,
    /// Verdict headers, `"Name: value"`: the message is spam when the
    /// topmost instance of the header `Name` begins with the word `value`
    /// (compared without case; the word ends at a blank, `,` or `;`).
    pub verdict: Vec<String>,
    /// The header holding the scanner's score (`spamtest`).
    pub score_header: String,
    /// The score that maps to 10, "certainly spam", on RFC 5235's scale.
    pub score_max: f64,
}

impl Default for Junk {
    fn default() -> Junk {
        Junk {
            enabled: false,
            folder: "Junk".into(),
            verdict: ["X-Spam-Flag: YES", "X-Spam-Status: Yes", "X-Spam: Yes"]
                .map(String::from)
                .to_vec(),
            score_header: "X-Spam-Score".into(),
            score_max: 10.0,
        }
    }
}

impl Junk {
    /// The verdict headers as (name, word).
    pub fn verdicts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.verdict.iter().filter_map(|v| {
            let (name, word) = v.split_once(':')?;
            Some((name.trim(), word.trim()))
        })
    }
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
    /// The obsolete `lowercase_local_part` key. Local parts are always
    /// compared with ASCII case folded ([`crate::recipient::fold_local`]):
    /// `true` is accepted and changes nothing, so an old file still loads;
    /// `false` is an error (the schema stores names lowercased, so it could
    /// only ever make mixed-case addresses bounce).
    #[serde(
        rename = "lowercase_local_part",
        deserialize_with = "obsolete_lowercase_local_part"
    )]
    pub obsolete_lowercase_local_part: (),
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

/// Maildir++ quota. The limits themselves come from the database.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    /// What an over-quota mailbox does to a message: bounce it (100,
    /// `#5.2.2`) or defer it (111, `#4.2.2`). A message larger than the
    /// whole limit always bounces.
    pub over_quota: OverQuota,
    /// Put a warning in the INBOX when a delivery takes the mailbox from
    /// below this full to at least this full (percent; 0 = never), at most
    /// once a day. The warning is not charged to the quota.
    pub warn_percent: u8,
    /// A file with the warning's text (see `quota::warning`); none: the
    /// built-in text.
    pub warning_template: Option<PathBuf>,
    /// Folders (names without the leading dot, e.g. `Trash`) that do not
    /// count; mail delivered into them is not limited either.
    pub ignore: Vec<String>,
    /// Longest wait for another delivery's lock on `maildirsize`.
    #[serde(with = "duration")]
    pub lock_timeout: Duration,
    /// The template read from `warning_template` by [`load`].
    #[serde(skip)]
    pub warning: Option<crate::quota::warning::Template>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OverQuota {
    #[default]
    Bounce,
    Defer,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            over_quota: OverQuota::Bounce,
            warn_percent: 90,
            warning_template: None,
            ignore: Vec::new(),
            lock_timeout: Duration::from_secs(300),
            warning: None,
        }
    }
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
            obsolete_lowercase_local_part: (),
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
    let mut cfg = parse(path, &text)?;
    if let Some(t) = cfg.quota.warning_template.clone() {
        cfg.quota.warning = Some(load_template(path, &t)?);
    }
    cfg.sieve.before_programs = load_scripts(path, "sieve.before", &cfg.sieve.before)?;
    cfg.sieve.after_programs = load_scripts(path, "sieve.after", &cfg.sieve.after)?;
    Ok(cfg)
}

/// Read and check the quota warning template, so that a broken one is a
/// configuration error (mail waits) rather than a surprise at the first
/// warning.
fn load_template(
    path: &Path,
    template: &Path,
) -> Result<crate::quota::warning::Template, ConfigError> {
    let err = |what: String| ConfigError {
        path: path.to_path_buf(),
        key: Some("quota.warning_template".into()),
        what: crate::outcome::one_line(&format!("{}: {what}", template.display())),
    };
    let bytes = std::fs::read(template).map_err(|e| err(format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| err("is not UTF-8".into()))?;
    crate::quota::warning::parse(&text).map_err(err)
}

/// Read and compile the admin scripts of `key`: a broken one is a
/// configuration error (mail waits), never a surprise at delivery.
fn load_scripts(
    path: &Path,
    key: &str,
    scripts: &[PathBuf],
) -> Result<Vec<GlobalScript>, ConfigError> {
    scripts
        .iter()
        .map(|s| {
            let err = |what: String| ConfigError {
                path: path.to_path_buf(),
                key: Some(key.into()),
                what: crate::outcome::one_line(&format!("{}: {what}", s.display())),
            };
            let bytes = std::fs::read(s).map_err(|e| err(format!("cannot read: {e}")))?;
            let program = crate::sieve::compile(&bytes).map_err(|e| err(e.to_string()))?;
            Ok(GlobalScript {
                path: s.clone(),
                program: std::sync::Arc::new(program),
            })
        })
        .collect()
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
        if self.quota.warn_percent > 100 {
            return Err(("quota.warn_percent", "must be 0 to 100".into()));
        }
        if let Some(t) = &self.quota.warning_template {
            if !t.is_absolute() {
                return Err(("quota.warning_template", "must be an absolute path".into()));
            }
        }
        for f in &self.quota.ignore {
            check_folder_name(f).map_err(|w| ("quota.ignore", format!("{f:?} {w}")))?;
        }
        if self.quota.lock_timeout.is_zero() {
            return Err(("quota.lock_timeout", "must be more than 0s".into()));
        }
        for (key, list) in [
            ("sieve.before", &self.sieve.before),
            ("sieve.after", &self.sieve.after),
        ] {
            if let Some(p) = list.iter().find(|p| !p.is_absolute()) {
                return Err((key, format!("{} must be an absolute path", p.display())));
            }
        }
        if let Some(d) = &self.sieve.global_dir {
            if !d.is_absolute() {
                return Err(("sieve.global_dir", "must be an absolute path".into()));
            }
        }
        if self.sieve.max_actions == 0 {
            return Err(("sieve.max_actions", "must be at least 1".into()));
        }
        let s = &self.sieve;
        if s.vacation_min_period > s.vacation_max_period {
            return Err((
                "sieve.vacation_min_period",
                "is longer than sieve.vacation_max_period".into(),
            ));
        }
        if s.vacation_default_period < s.vacation_min_period
            || s.vacation_default_period > s.vacation_max_period
        {
            return Err((
                "sieve.vacation_default_period",
                "is outside sieve.vacation_min_period to sieve.vacation_max_period".into(),
            ));
        }
        check_folder_name(&self.junk.folder)
            .map_err(|w| ("junk.folder", format!("{:?} {w}", self.junk.folder)))?;
        for v in &self.junk.verdict {
            let ok = v.split_once(':').is_some_and(|(n, w)| {
                let n = n.trim();
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    && !w.trim().is_empty()
                    && !w.trim().contains(char::is_whitespace)
            });
            if !ok {
                return Err((
                    "junk.verdict",
                    format!("{v:?} is not \"Header-Name: word\""),
                ));
            }
        }
        if self.junk.score_header.is_empty()
            || !self
                .junk
                .score_header
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':')
        {
            return Err(("junk.score_header", "is not a header name".into()));
        }
        if !(self.junk.score_max.is_finite() && self.junk.score_max > 0.0) {
            return Err(("junk.score_max", "must be a number above 0".into()));
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

/// `mail.lowercase_local_part`: only `true`, the one behaviour there is.
fn obsolete_lowercase_local_part<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    if bool::deserialize(d)? {
        Ok(())
    } else {
        Err(serde::de::Error::custom(
            "false is no longer supported: local parts are always compared with ASCII case \
             folded, as the schema stores them; delete the line",
        ))
    }
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
            lowercase_local_part = true
            [delivery]
            deadline = "1h"
        "#)
        .unwrap();
        assert_eq!(c.database.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.database.statement_timeout, Duration::from_millis(500));
        assert_eq!(c.mail.root, PathBuf::from("/srv/mail"));
        assert_eq!(c.mail.folders, vec!["Sent".to_string()]);
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
            (
                "[mail]\nlowercase_local_part = false\n",
                Some("mail.lowercase_local_part"),
                "false is no longer supported",
            ),
            (
                "[mail]\nlowercase_local_part = \"yes\"\n",
                Some("mail.lowercase_local_part"),
                "invalid type",
            ),
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
    fn sieve_and_junk_sections() {
        let c = p(r#"
            [sieve]
            enabled = false
            max_redirects = 2
            create_folders = true
            vacation_min_period = "1h"
            [junk]
            enabled = true
            folder = "Spam"
            verdict = ["X-Spam-Flag: YES"]
            score_header = "X-Rspamd-Score"
            score_max = 15.0
        "#)
        .unwrap();
        assert!(!c.sieve.enabled && c.sieve.create_folders);
        assert_eq!(c.sieve.max_redirects, 2);
        assert_eq!(c.sieve.vacation_min_period, Duration::from_secs(3600));
        assert_eq!(c.junk.folder, "Spam");
        assert_eq!(
            c.junk.verdicts().collect::<Vec<_>>(),
            vec![("X-Spam-Flag", "YES")]
        );
        let d = Config::default();
        assert!(d.sieve.enabled && !d.junk.enabled);
        assert_eq!(d.junk.verdicts().count(), 3);
        // (text, the key named)
        for (text, key) in [
            ("[sieve]\nbefore = [\"rel.sieve\"]", "sieve.before"),
            ("[sieve]\nafter = [\"x.sieve\"]", "sieve.after"),
            ("[sieve]\nglobal_dir = \"g\"", "sieve.global_dir"),
            ("[sieve]\nmax_actions = 0", "sieve.max_actions"),
            (
                "[sieve]\nvacation_min_period = \"100d\"",
                "sieve.vacation_min_period",
            ),
            (
                "[sieve]\nvacation_default_period = \"1h\"",
                "sieve.vacation_default_period",
            ),
            ("[junk]\nfolder = \".Junk\"", "junk.folder"),
            ("[junk]\nverdict = [\"X-Spam-Flag\"]", "junk.verdict"),
            ("[junk]\nverdict = [\"X-Spam: yes please\"]", "junk.verdict"),
            ("[junk]\nscore_header = \"X Score\"", "junk.score_header"),
            ("[junk]\nscore_max = 0.0", "junk.score_max"),
        ] {
            let e = p(&format!("[database]\nurl = \"host=/x\"\n{text}")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        }
    }

    #[test]
    fn global_scripts_are_compiled_by_load() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.sieve");
        let bad = dir.path().join("bad.sieve");
        std::fs::write(&good, "require \"fileinto\"; fileinto \"Lists\";").unwrap();
        std::fs::write(&bad, "require \"nosuch\";").unwrap();
        let conf = dir.path().join("config.toml");
        let write = |before: &Path| {
            std::fs::write(
                &conf,
                format!("[sieve]\nbefore = [{:?}]\n", before.display().to_string()),
            )
            .unwrap()
        };
        write(&good);
        let c = load(&conf).unwrap();
        assert_eq!(c.sieve.before_programs.len(), 1);
        assert_eq!(c.sieve.before_programs[0].path, good);
        write(&bad);
        let e = load(&conf).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sieve.before"));
        assert!(e.to_string().contains("nosuch"), "{e}");
        write(&dir.path().join("missing.sieve"));
        let e = load(&conf).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn quota_section() {
        let d = Quota::default();
        assert_eq!(
            (d.over_quota, d.warn_percent, d.ignore.len(), d.lock_timeout),
            (OverQuota::Bounce, 90, 0, Duration::from_secs(300))
        );
        let c = p(r#"
            [quota]
            over_quota = "defer"
            warn_percent = 80
            warning_template = "/etc/vdeliver/quota-warning.txt"
            ignore = ["Trash", "Lists.spam"]
            lock_timeout = "1m"
        "#)
        .unwrap();
        assert_eq!(c.quota.over_quota, OverQuota::Defer);
        assert_eq!(c.quota.warn_percent, 80);
        assert_eq!(
            c.quota.ignore,
            vec!["Trash".to_string(), "Lists.spam".into()]
        );
        assert_eq!(c.quota.lock_timeout, Duration::from_secs(60));
        // parse() reads no file: the template is load()'s job.
        assert!(c.quota.warning.is_none());
        for (text, key, what) in [
            (
                "[quota]\nover_quota = \"drop\"\n",
                "quota.over_quota",
                "unknown variant",
            ),
            (
                "[quota]\nwarn_percent = 101\n",
                "quota.warn_percent",
                "0 to 100",
            ),
            ("[quota]\nwarn_percent = 300\n", "quota.warn_percent", ""),
            (
                "[quota]\nwarning_template = \"w.txt\"\n",
                "quota.warning_template",
                "absolute",
            ),
            (
                "[quota]\nignore = [\".Trash\"]\n",
                "quota.ignore",
                "leading",
            ),
            (
                "[quota]\nlock_timeout = \"0s\"\n",
                "quota.lock_timeout",
                "more than 0s",
            ),
        ] {
            let e = p(text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.to_string().contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn quota_template_is_read_by_load() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        let tpl = dir.path().join("warn.txt");
        std::fs::write(
            &cfg,
            format!("[quota]\nwarning_template = \"{}\"\n", tpl.display()),
        )
        .unwrap();
        let e = load(&cfg).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("quota.warning_template"));
        assert!(e.to_string().contains("cannot read"), "{e}");
        std::fs::write(&tpl, "Subject: {oops}\n\nbody\n").unwrap();
        let e = load(&cfg).unwrap_err();
        assert!(e.to_string().contains("unknown placeholder {oops}"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        std::fs::write(&tpl, "Subject: Full ({percent}%)\n\nbody\n").unwrap();
        let c = load(&cfg).unwrap();
        assert!(c.quota.warning.is_some());
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
