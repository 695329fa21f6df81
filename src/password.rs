//! Password hashes in forms Dovecot verifies, and reading a password
//! without it ever touching the command line.
//!
//! The stored value carries Dovecot's scheme prefix, so a Dovecot passdb
//! can use the column as it is (`default_pass_scheme` does not matter):
//!
//! * `{SHA512-CRYPT}$6$rounds=5000$…` (the default): every Dovecot build
//!   verifies it, as does libc `crypt(3)`.
//! * `{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$…`: memory-hard; Dovecot
//!   verifies it when built with libsodium (Debian's is). `p=1` because
//!   libsodium only verifies single-lane hashes.
//!
//! A password is never taken from argv (other users can read it in
//! `/proc`) and never printed: it comes from standard input
//! (`--password-stdin`) or from a prompt on the terminal with echo off.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{BufRead, Write};

/// Which hash `vmailctl` stores (`[password] scheme` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum Scheme {
    #[default]
    #[serde(rename = "SHA512-CRYPT")]
    Sha512Crypt,
    #[serde(rename = "ARGON2ID")]
    Argon2id,
}

impl Scheme {
    /// Dovecot's name for it, as in `{NAME}`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Argon2id => "ARGON2ID",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Raw salt bytes for SHA512-CRYPT; base64 makes them the 16 characters
/// crypt(3) reads.
const SHA_CRYPT_SALT_BYTES: usize = 12;

/// Argon2id cost: 64 MiB, 3 passes, one lane (libsodium's limit).
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;

/// Hash a password for the `accounts.password_hash` column.
pub fn hash(scheme: Scheme, password: &[u8]) -> Result<String, String> {
    let fail = |e: &dyn fmt::Display| format!("cannot hash the password: {e}");
    match scheme {
        Scheme::Sha512Crypt => {
            use sha_crypt::{PasswordHasher, ShaCrypt};
            // 12 random bytes, 16 salt characters: glibc's crypt(3), which
            // Dovecot uses, reads at most 16 and would compute another hash
            // from the 22 the crate makes by default.
            let mut salt = [0u8; SHA_CRYPT_SALT_BYTES];
            rustix::rand::getrandom(&mut salt, rustix::rand::GetRandomFlags::empty())
                .map_err(|e| fail(&e))
                .and_then(|n| {
                    if n == salt.len() {
                        Ok(())
                    } else {
                        Err(fail(&"short read from getrandom"))
                    }
                })?;
            let h = ShaCrypt::default()
                .hash_password_with_salt(password, &salt)
                .map_err(|e| fail(&e))?;
            Ok(format!("{{SHA512-CRYPT}}{}", h.as_str()))
        }
        Scheme::Argon2id => {
            use argon2::password_hash::PasswordHasher;
            use argon2::{Algorithm, Argon2, Params, Version};
            let params =
                Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).map_err(|e| fail(&e))?;
            let h = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(password)
                .map_err(|e| fail(&e))?;
            Ok(format!("{{ARGON2ID}}{h}"))
        }
    }
}

/// The scheme prefix of a stored hash (`SHA512-CRYPT`), for display; never
/// the hash itself.
pub fn scheme_of(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix('{')?;
    let end = rest.find('}')?;
    Some(&rest[..end])
}

/// The characters of a generated password: letters and digits without
/// the ones that are easy to misread (0 O o, 1 l I), so it can be read
/// aloud or copied by hand; 56 of them, about 5.8 bits each.
pub const RANDOM_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// The length of a generated password: 20 characters, about 116 bits.
pub const RANDOM_LEN: usize = 20;

/// A new random password of `len` characters from [`RANDOM_ALPHABET`],
/// from the kernel's random source (getrandom), each character uniform
/// (bytes beyond the largest multiple of the alphabet's size are
/// drawn again).
pub fn random(len: usize) -> Result<String, String> {
    let n = RANDOM_ALPHABET.len();
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        let got = rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| format!("cannot make a random password: {e}"))?;
        for &b in &buf[..got] {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(RANDOM_ALPHABET[usize::from(b) % n]));
            }
        }
    }
    Ok(out)
}

/// A password scheme as `vmailctl password-schemes` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SchemeInfo {
    /// Dovecot's name, the `{NAME}` prefix of the stored value.
    pub name: &'static str,
    /// What the stored value looks like after the prefix.
    pub form: &'static str,
    /// vmailctl can store it (`[password] scheme`).
    pub store: bool,
    /// Dovecot verifies it (the build Debian ships).
    pub verify: bool,
    pub note: &'static str,
}

/// What vmailctl stores and what Dovecot verifies: the schemes vmailctl
/// writes, and those an import brings (vpopmail's crypt(3) strings, kept
/// as `{CRYPT}…`, examples/vpopmail-import.sql). Dovecot picks the scheme
/// from the prefix; a value without one uses the passdb's
/// `default_pass_scheme` (SHA512-CRYPT in the guide).
pub fn schemes() -> Vec<SchemeInfo> {
    let s = |name, form, store, verify, note| SchemeInfo {
        name,
        form,
        store,
        verify,
        note,
    };
    vec![
        s(
            "SHA512-CRYPT",
            "$6$rounds=5000$SALT$HASH",
            true,
            true,
            "the default; crypt(3) SHA-512",
        ),
        s(
            "ARGON2ID",
            "$argon2id$v=19$m=65536,t=3,p=1$SALT$HASH",
            true,
            true,
            "memory-hard; needs Dovecot built with libsodium (Debian's is)",
        ),
        s(
            "CRYPT",
            "$6$… (SHA-512), $5$… (SHA-256), $1$… (MD5), or 13-character DES",
            false,
            true,
            "crypt(3) strings as vpopmail stored them (the import keeps them);              MD5 and DES are weak: set a new password",
        ),
        s(
            "SHA256-CRYPT",
            "$5$SALT$HASH",
            false,
            true,
            "crypt(3) SHA-256",
        ),
        s(
            "MD5-CRYPT",
            "$1$SALT$HASH",
            false,
            true,
            "weak: set a new password",
        ),
        s(
            "PLAIN",
            "the password itself",
            false,
            true,
            "clear text (vpopmail's pw_clear_passwd): never imported; avoid",
        ),
    ]
}

/// Read a password from the first line of `r` (for `--password-stdin`).
pub fn read_line(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    check(pw)?;
    Ok(pw.to_string())
}

fn check(pw: &str) -> Result<(), String> {
    if pw.is_empty() {
        return Err("the password is empty".into());
    }
    if pw.chars().any(char::is_control) {
        return Err("the password contains a control character".into());
    }
    Ok(())
}

/// Ask for a password on the controlling terminal with echo off, twice.
/// Fails (rather than reading stdin) when there is no terminal.
pub fn prompt(what: &str) -> Result<String, String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            "there is no terminal to ask for the password on; use --password-stdin".to_string()
        })?;
    let first = prompt_once(&tty, &format!("{what}: "))?;
    let again = prompt_once(&tty, "Again: ")?;
    if first != again {
        return Err("the passwords do not match".into());
    }
    check(&first)?;
    Ok(first)
}

fn prompt_once(tty: &std::fs::File, text: &str) -> Result<String, String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let io = |e: &dyn fmt::Display| format!("the terminal: {e}");
    let saved = tcgetattr(tty).map_err(|e| io(&e))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    (&*tty).write_all(text.as_bytes()).map_err(|e| io(&e))?;
    tcsetattr(tty, OptionalActions::Flush, &quiet).map_err(|e| io(&e))?;
    let mut line = String::new();
    let read = std::io::BufReader::new(tty).read_line(&mut line);
    // Echo comes back whatever happened.
    let restored = tcsetattr(tty, OptionalActions::Flush, &saved);
    read.map_err(|e| io(&e))?;
    restored.map_err(|e| io(&e))?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    Ok(pw.strip_suffix('\r').unwrap_or(pw).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha512_round_trip() {
        use sha_crypt::{PasswordHashRef, PasswordVerifier, ShaCrypt};
        let h = hash(Scheme::Sha512Crypt, b"s3cret").unwrap();
        let mcf = h.strip_prefix("{SHA512-CRYPT}").unwrap();
        assert!(mcf.starts_with("$6$"), "{h}");
        // crypt(3) reads at most 16 salt characters.
        let salt = mcf
            .trim_start_matches("$6$")
            .trim_start_matches("rounds=5000$");
        assert_eq!(salt.split('$').next().unwrap().len(), 16, "{h}");
        let parsed = PasswordHashRef::new(mcf).unwrap();
        assert!(ShaCrypt::default()
            .verify_password(b"s3cret", parsed)
            .is_ok());
        assert!(ShaCrypt::default()
            .verify_password(b"wrong", parsed)
            .is_err());
        assert_eq!(scheme_of(&h), Some("SHA512-CRYPT"));
    }

    #[test]
    fn argon2id_round_trip() {
        use argon2::password_hash::phc::PasswordHash;
        use argon2::password_hash::PasswordVerifier;
        let h = hash(Scheme::Argon2id, b"s3cret").unwrap();
        let phc = h.strip_prefix("{ARGON2ID}").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=65536,t=3,p=1$"), "{h}");
        let parsed = PasswordHash::new(phc).unwrap();
        assert!(argon2::Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok());
        assert!(argon2::Argon2::default()
            .verify_password(b"wrong", &parsed)
            .is_err());
        assert_eq!(scheme_of(&h), Some("ARGON2ID"));
    }

    #[test]
    fn random_passwords() {
        let a = random(RANDOM_LEN).unwrap();
        let b = random(RANDOM_LEN).unwrap();
        assert_eq!(a.len(), RANDOM_LEN);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| RANDOM_ALPHABET.contains(&c)), "{a}");
        assert!(!RANDOM_ALPHABET.iter().any(|c| b"0Oo1lI".contains(c)));
        // Every character of the alphabet shows up in enough draws.
        let many = random(5000).unwrap();
        assert!(RANDOM_ALPHABET.iter().all(|c| many.as_bytes().contains(c)));
        check(&a).unwrap();
    }

    #[test]
    fn schemes_listed() {
        let v = schemes();
        let stored: Vec<&str> = v.iter().filter(|s| s.store).map(|s| s.name).collect();
        assert_eq!(
            stored,
            [Scheme::Sha512Crypt.name(), Scheme::Argon2id.name()]
        );
        assert!(v.iter().all(|s| s.verify));
    }

    #[test]
    fn reads_first_line() {
        assert_eq!(read_line(&mut &b"pw\r\nrest"[..]).unwrap(), "pw");
        assert!(read_line(&mut &b"\n"[..]).is_err());
        assert!(read_line(&mut &b""[..]).is_err());
        assert!(read_line(&mut &b"a\tb\n"[..]).is_err());
    }
}
