//! Password hashes in a form Dovecot verifies: `{SHA512-CRYPT}$6$…`.

use sha_crypt::{PasswordHasher, ShaCrypt};

/// Hash a password for the `accounts.password_hash` column.
pub fn hash(password: &[u8]) -> Result<String, String> {
    let h = ShaCrypt::default()
        .hash_password(password)
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    Ok(format!("{{SHA512-CRYPT}}{}", h.as_str()))
}

/// Read a password from the first line of `r` (for `--password-stdin`).
pub fn read_line(r: &mut impl std::io::BufRead) -> Result<String, String> {
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    if pw.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(pw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha_crypt::{PasswordHashRef, PasswordVerifier};

    #[test]
    fn round_trip() {
        let h = hash(b"s3cret").unwrap();
        let mcf = h
            .strip_prefix("{SHA512-CRYPT}$6$")
            .map(|_| &h[14..])
            .unwrap();
        let parsed = PasswordHashRef::new(mcf).unwrap();
        assert!(ShaCrypt::default()
            .verify_password(b"s3cret", parsed)
            .is_ok());
        assert!(ShaCrypt::default()
            .verify_password(b"wrong", parsed)
            .is_err());
    }

    #[test]
    fn reads_first_line() {
        assert_eq!(read_line(&mut &b"pw\r\nrest"[..]).unwrap(), "pw");
        assert!(read_line(&mut &b"\n"[..]).is_err());
    }
}
