//! The message as the Sieve interpreter sees it: parsed once from the raw
//! bytes, then read by the tests.
//!
//! * Headers: unfolded (a line end followed by a blank is removed, the
//!   blank kept), leading and trailing blanks trimmed; [`Message::header`]
//!   gives the values with RFC 2047 encoded words decoded (UTF-8, US-ASCII,
//!   ISO-8859-1 and Windows-1252; other charsets stay encoded), adjacent
//!   encoded words joined as RFC 2047 section 6.2 says.
//! * Addresses ([`parse_addresses`]): RFC 5322 address lists with groups,
//!   comments, quoted local parts, display names and obsolete routes.
//! * Body ([`Message::body_parts`]): the MIME tree (multipart/* split at
//!   its boundary, at most [`MAX_MIME_DEPTH`] levels, at most
//!   [`MAX_MIME_PARTS`] parts), leaves decoded from quoted-printable or
//!   base64 and their charset into text; a part without Content-Type is
//!   text/plain.
//!
//! Bytes that are not UTF-8 are read as ISO-8859-1 (so nothing is lost to
//! replacement characters in the header test).

/// Deepest multipart nesting followed; deeper parts are not looked into.
pub const MAX_MIME_DEPTH: usize = 16;
/// Most MIME leaves looked at.
pub const MAX_MIME_PARTS: usize = 256;

/// A parsed message.
#[derive(Debug, Clone)]
pub struct Message {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    size: u64,
    /// The MIME leaves, parsed on first use.
    parts: std::cell::OnceCell<Vec<BodyPart>>,
}

/// One MIME leaf for the body test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    /// `type/subtype`, lowercase.
    pub content_type: String,
    /// The decoded text.
    pub text: String,
}

/// An address from a header: the local part (unquoted) and the domain;
/// `domain` is None when the text had no `@` (then `local` is the text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub local: String,
    pub domain: Option<String>,
}

impl Address {
    /// The whole address, `local@domain`, the local part quoted again when
    /// it is not a dot-atom (`"a b"@example.org`), as Pigeonhole shows it.
    pub fn all(&self) -> String {
        match &self.domain {
            Some(d) if is_dot_atom(&self.local) => format!("{}@{}", self.local, d),
            Some(d) => {
                let mut q = String::from("\"");
                for c in self.local.chars() {
                    if c == '"' || c == '\\' {
                        q.push('\\');
                    }
                    q.push(c);
                }
                format!("{q}\"@{d}")
            }
            None => self.local.clone(),
        }
    }
}

impl Message {
    /// Parse `raw` (CRLF or LF line ends).
    pub fn parse(raw: &[u8]) -> Message {
        let (headers, body) = split_header(raw);
        Message {
            headers,
            body: body.to_vec(),
            size: raw.len() as u64,
            parts: std::cell::OnceCell::new(),
        }
    }

    /// The message size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The unfolded raw values (not decoded) of header `name`
    /// (case-insensitive), in order.
    pub fn header_raw<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of header `name`, encoded words decoded.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.header_raw(name).map(decode_words).collect()
    }

    /// Whether header `name` is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.header_raw(name).next().is_some()
    }

    /// The body after the header, undecoded.
    pub fn raw_body(&self) -> String {
        text_of(&self.body)
    }

    /// The MIME leaves of the message, decoded (parsed once).
    pub fn body_parts(&self) -> &[BodyPart] {
        self.parts.get_or_init(|| {
            let mut out = Vec::new();
            walk(&self.headers, &self.body, 0, &mut out);
            out
        })
    }
}

fn text_of(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b.iter().map(|&c| c as char).collect(),
    }
}

/// Split a message (or a MIME part) into unfolded headers and the body.
fn split_header(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    let mut in_field = false;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let mut line = &raw[pos..end];
        if let Some(l) = line.strip_suffix(b"\n") {
            line = l.strip_suffix(b"\r").unwrap_or(l);
        }
        if line.is_empty() {
            return (headers, &raw[end..]);
        }
        if matches!(line[0], b' ' | b'\t') {
            if in_field {
                if let Some((_, v)) = headers.last_mut() {
                    v.push_str(&text_of(line));
                }
            }
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = text_of(&line[..colon]).trim_end().to_string();
            headers.push((name, text_of(&line[colon + 1..])));
            in_field = true;
        } else {
            // Not a header line: the header is over (a body without the
            // blank line).
            if pos == 0 || !in_field {
                in_field = false;
                pos = end;
                continue;
            }
            return (trimmed(headers), &raw[pos..]);
        }
        pos = end;
    }
    (trimmed(headers), &raw[raw.len()..])
}

fn trimmed(mut h: Vec<(String, String)>) -> Vec<(String, String)> {
    for (_, v) in &mut h {
        *v = v.trim_matches(|c| c == ' ' || c == '\t').to_string();
    }
    h
}

/// Decode the RFC 2047 encoded words in `s`.
pub fn decode_words(s: &str) -> String {
    let s = s.trim_matches(|c| c == ' ' || c == '\t');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // Blanks seen after the last encoded word, dropped when another follows.
    let mut pending = String::new();
    let mut last_encoded = false;
    while !rest.is_empty() {
        if let Some((decoded, used)) = encoded_word(rest) {
            if !last_encoded {
                out.push_str(&pending);
            }
            pending.clear();
            out.push_str(&decoded);
            rest = &rest[used..];
            last_encoded = true;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c == ' ' || c == '\t' {
            pending.push(c);
        } else {
            out.push_str(&pending);
            pending.clear();
            out.push(c);
            last_encoded = false;
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push_str(&pending);
    // Folding blanks become plain spaces for matching.
    out.replace(['\r', '\n'], "")
}

/// One encoded word at the start of `s`: its text and the bytes used.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = &body[..q1];
    let after = &body[q1 + 1..];
    let q2 = after.find('?')?;
    let enc = &after[..q2];
    let text_start = &after[q2 + 1..];
    let end = text_start.find("?=")?;
    let text = &text_start[..end];
    if text.contains(' ') || charset.is_empty() || enc.len() != 1 {
        return None;
    }
    let bytes = match enc {
        "B" | "b" => base64(text.as_bytes())?,
        "Q" | "q" => {
            let t: Vec<u8> = text
                .bytes()
                .map(|b| if b == b'_' { b' ' } else { b })
                .collect();
            qp(&t, false)
        }
        _ => return None,
    };
    let charset = charset.split('*').next().unwrap_or("");
    let decoded = charset_decode(charset, &bytes)?;
    Some((decoded, 2 + q1 + 1 + q2 + 1 + end + 2))
}

/// Bytes in `charset` as text; None for a charset not known here.
fn charset_decode(charset: &str, b: &[u8]) -> Option<String> {
    let cs = charset.to_ascii_lowercase();
    match cs.as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => Some(String::from_utf8_lossy(b).into_owned()),
        "iso-8859-1" | "latin1" | "iso8859-1" | "windows-1252" | "cp1252" => {
            Some(b.iter().map(|&c| c as char).collect())
        }
        _ => None,
    }
}

fn b64val(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decode base64, skipping blanks and line ends; None on other junk.
pub fn base64(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut n = 0;
    for &c in s {
        if c == b'=' {
            break;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        acc = (acc << 6) | b64val(c)?;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    Some(out)
}

/// Decode quoted-printable; `soft` honours `=` at a line end.
fn qp(s: &[u8], soft: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'=' {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(&a), Some(&b)) = (s.get(i + 1), s.get(i + 2)) {
                if let (Some(h), Some(l)) = (hex(a), hex(b)) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            if soft {
                if s.get(i + 1) == Some(&b'\n') {
                    i += 2;
                    continue;
                }
                if s.get(i + 1) == Some(&b'\r') && s.get(i + 2) == Some(&b'\n') {
                    i += 3;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// A header's parameter (`boundary`, `charset`) from a Content-Type value.
fn param(value: &str, name: &str) -> Option<String> {
    for p in value.split(';').skip(1) {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return Some(v.to_string());
        }
    }
    None
}

fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn walk(headers: &[(String, String)], body: &[u8], depth: usize, out: &mut Vec<BodyPart>) {
    if out.len() >= MAX_MIME_PARTS {
        return;
    }
    let ct_value = first(headers, "content-type").unwrap_or("text/plain");
    let mut ctype = ct_value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !ctype.contains('/') {
        ctype = "text/plain".into();
    }
    if ctype.starts_with("multipart/") {
        if let (Some(boundary), true) = (param(ct_value, "boundary"), depth < MAX_MIME_DEPTH) {
            for part in split_multipart(body, &boundary) {
                let (h, b) = split_header(part);
                walk(&h, b, depth + 1, out);
                if out.len() >= MAX_MIME_PARTS {
                    return;
                }
            }
            return;
        }
    }
    let cte = first(headers, "content-transfer-encoding")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let decoded = match cte.as_str() {
        "base64" => base64(body).unwrap_or_else(|| body.to_vec()),
        "quoted-printable" => qp(body, true),
        _ => body.to_vec(),
    };
    let charset = param(ct_value, "charset").unwrap_or_else(|| "us-ascii".into());
    let text = charset_decode(&charset, &decoded).unwrap_or_else(|| text_of(&decoded));
    out.push(BodyPart {
        content_type: ctype,
        text,
    });
}

/// The parts of a multipart body between `--boundary` lines.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i + 1);
        let line = &body[pos..end];
        let trimmed = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if let Some(rest) = trimmed.strip_prefix(delim.as_bytes()) {
            let closing = rest.starts_with(b"--");
            if closing || rest.iter().all(|b| b.is_ascii_whitespace()) {
                if let Some(s) = start {
                    // The line end before the delimiter belongs to it.
                    let mut e = pos;
                    if e > s && body[e - 1] == b'\n' {
                        e -= 1;
                        if e > s && body[e - 1] == b'\r' {
                            e -= 1;
                        }
                    }
                    parts.push(&body[s..e]);
                }
                if closing {
                    return parts;
                }
                start = Some(end);
            }
        }
        pos = end;
    }
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

/// The addresses in an address-list header value (RFC 5322 section 3.4):
/// groups contribute their members, comments are dropped, quoted local
/// parts are unquoted, a route is dropped.
pub fn parse_addresses(value: &str) -> Vec<Address> {
    let mut out = Vec::new();
    let mut cur = String::new(); // the current mailbox, comments removed
    let mut angle: Option<String> = None;
    let mut in_angle = false;
    let mut chars = value.chars().peekable();
    let finish = |cur: &mut String, angle: &mut Option<String>, out: &mut Vec<Address>| {
        let spec = match angle.take() {
            Some(a) => a,
            None => std::mem::take(cur),
        };
        cur.clear();
        let spec = spec.trim();
        // An obsolete route: "@a,@b:local@domain".
        let spec = if spec.starts_with('@') {
            spec.split_once(':').map_or(spec, |(_, s)| s)
        } else {
            spec
        };
        if !spec.is_empty() {
            out.push(split_spec(spec));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                let mut depth = 1;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if !in_angle {
                    cur.push(' ');
                }
            }
            '"' => {
                let target = if in_angle {
                    angle.get_or_insert_with(String::new)
                } else {
                    &mut cur
                };
                target.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            target.push('\\');
                            if let Some(n) = chars.next() {
                                target.push(n);
                            }
                        }
                        '"' => break,
                        c => target.push(c),
                    }
                }
                target.push('"');
            }
            '<' if !in_angle => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => in_angle = false,
            ':' if !in_angle && angle.is_none() && !cur.contains('@') => {
                // A group's display name.
                cur.clear();
            }
            ';' if !in_angle => finish(&mut cur, &mut angle, &mut out),
            ',' if !in_angle => finish(&mut cur, &mut angle, &mut out),
            c => {
                if in_angle {
                    angle.get_or_insert_with(String::new).push(c);
                } else if angle.is_none() {
                    cur.push(c);
                }
            }
        }
    }
    finish(&mut cur, &mut angle, &mut out);
    out
}

/// RFC 5322 dot-atom (with RFC 6532's UTF-8).
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        })
}

/// Split an addr-spec at its last `@` outside quotes.
fn split_spec(spec: &str) -> Address {
    let mut in_quote = false;
    let mut at = None;
    let mut prev = '\0';
    for (i, c) in spec.char_indices() {
        if c == '"' && prev != '\\' {
            in_quote = !in_quote;
        } else if c == '@' && !in_quote {
            at = Some(i);
        }
        prev = c;
    }
    let (local, domain) = match at {
        Some(i) => (&spec[..i], Some(spec[i + 1..].trim().to_string())),
        None => (spec, None),
    };
    // Unquote, and drop the blanks folding may leave around dots.
    let mut l = String::new();
    let mut in_quote = false;
    let mut esc = false;
    for c in local.trim().chars() {
        if esc {
            l.push(c);
            esc = false;
        } else if in_quote && c == '\\' {
            esc = true;
        } else if c == '"' {
            in_quote = !in_quote;
        } else if in_quote || !c.is_whitespace() || domain.is_none() {
            l.push(c);
        }
    }
    Address {
        local: l,
        domain: domain.map(|d| d.split_whitespace().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(l: &str, d: &str) -> Address {
        Address {
            local: l.into(),
            domain: Some(d.into()),
        }
    }

    #[test]
    fn headers_unfold_and_trim() {
        let m = Message::parse(b"Subject:  Hello\r\n  world \r\nX-A: 1\r\nx-a: 2\r\n\r\nbody\r\n");
        assert_eq!(m.header("subject"), vec!["Hello  world"]);
        assert_eq!(m.header("X-A"), vec!["1", "2"]);
        assert_eq!(m.raw_body(), "body\r\n");
        assert!(!m.has_header("Cc"));
    }

    #[test]
    fn encoded_words() {
        assert_eq!(decode_words("=?UTF-8?B?SMOkbGxv?= world"), "Hällo world");
        assert_eq!(
            decode_words("=?iso-8859-1?q?caf=E9_au_lait?="),
            "café au lait"
        );
        assert_eq!(decode_words("=?utf-8?q?a?= =?utf-8?q?b?="), "ab");
        assert_eq!(decode_words("x =?koi8-r?q?a?="), "x =?koi8-r?q?a?=");
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            parse_addresses("Alice <alice@example.com>, bob@example.net (Bob)"),
            vec![a("alice", "example.com"), a("bob", "example.net")]
        );
        assert_eq!(
            parse_addresses("team: a@x.org, \"b c\"@y.org;, d@z.org"),
            vec![a("a", "x.org"), a("b c", "y.org"), a("d", "z.org")]
        );
        assert_eq!(parse_addresses("undisclosed-recipients:;"), vec![]);
        assert_eq!(
            parse_addresses("\"Doe, John\" <j@d.com>"),
            vec![a("j", "d.com")]
        );
        assert_eq!(parse_addresses("<@r.net:x@y.z>"), vec![a("x", "y.z")]);
        assert_eq!(a("a b", "x.org").all(), "\"a b\"@x.org");
        assert_eq!(a("a.b+c", "x.org").all(), "a.b+c@x.org");
    }

    #[test]
    fn multipart_bodies() {
        let m = Message::parse(
            b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npre\r\n--XX\r\n\
              Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
              caf=C3=A9 =\r\nna\r\n--XX\r\nContent-Type: application/octet-stream\r\n\
              Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--XX--\r\n",
        );
        assert_eq!(
            m.body_parts(),
            vec![
                BodyPart {
                    content_type: "text/plain".into(),
                    text: "café na".into()
                },
                BodyPart {
                    content_type: "application/octet-stream".into(),
                    text: "hello".into()
                }
            ]
        );
    }
}
