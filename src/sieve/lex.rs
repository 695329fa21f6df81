//! The lexer of RFC 5228 section 8.1: bytes in, tokens with line numbers out.
//!
//! The script must be UTF-8 and hold no NUL; either fault names its line.
//! Line ends may be CRLF or a bare LF (files on disk are often written with
//! LF); inside strings every line end comes out as CRLF, the form RFC 5228
//! gives them, so that a vacation body reads the same whichever way the file
//! was saved.

use super::{CompileError, MAX_SCRIPT_SIZE};

/// One token. Identifiers and tags are kept as written; the validator
/// compares them case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// `fileinto`, `if`, `header`, …
    Ident(String),
    /// `:contains` (without the colon).
    Tag(String),
    /// A number with its quantifier applied.
    Number(u64),
    /// A quoted or multi-line string, escapes and dot-stuffing removed.
    Str(String),
    LBracket,
    RBracket,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Semicolon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    /// 1-based line of the token's first byte.
    pub line: u32,
    /// Byte offset of the token's first byte.
    pub offset: usize,
}

/// The line (1-based) that holds byte `at` of `script`.
pub fn line_of(script: &[u8], at: usize) -> u32 {
    let end = at.min(script.len());
    let n = memchr::memchr_iter(b'\n', &script[..end]).count();
    u32::try_from(n).unwrap_or(u32::MAX - 1) + 1
}

/// Cut `script` into tokens. Fails on the first lexical error.
pub fn lex(script: &[u8]) -> Result<Vec<Token>, CompileError> {
    if script.len() > MAX_SCRIPT_SIZE {
        return Err(CompileError::new(
            line_of(script, MAX_SCRIPT_SIZE),
            format!(
                "script is {} bytes, over the limit of {MAX_SCRIPT_SIZE} bytes",
                script.len()
            ),
        ));
    }
    let text = match std::str::from_utf8(script) {
        Ok(t) => t,
        Err(e) => {
            return Err(CompileError::new(
                line_of(script, e.valid_up_to()),
                "script is not valid UTF-8",
            ))
        }
    };
    if let Some(at) = memchr::memchr(0, script) {
        return Err(CompileError::new(
            line_of(script, at),
            "script contains a NUL byte",
        ));
    }
    Lexer {
        src: text.as_bytes(),
        text,
        pos: 0,
        line: 1,
    }
    .run()
}

struct Lexer<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    line: u32,
}

impl<'a> Lexer<'a> {
    fn err(&self, line: u32, msg: impl Into<String>) -> CompileError {
        CompileError::new(line, msg)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn run(mut self) -> Result<Vec<Token>, CompileError> {
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            let (line, offset) = (self.line, self.pos);
            let simple = match b {
                b' ' | b'\t' | b'\r' => {
                    self.pos += 1;
                    continue;
                }
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    continue;
                }
                b'#' => {
                    self.skip_hash_comment();
                    continue;
                }
                b'/' if self.src.get(self.pos + 1) == Some(&b'*') => {
                    self.skip_bracket_comment()?;
                    continue;
                }
                b'[' => Some(Tok::LBracket),
                b']' => Some(Tok::RBracket),
                b'(' => Some(Tok::LParen),
                b')' => Some(Tok::RParen),
                b'{' => Some(Tok::LBrace),
                b'}' => Some(Tok::RBrace),
                b',' => Some(Tok::Comma),
                b';' => Some(Tok::Semicolon),
                _ => None,
            };
            let tok = if let Some(t) = simple {
                self.pos += 1;
                t
            } else if b == b'"' {
                self.quoted()?
            } else if b == b':' {
                self.pos += 1;
                match self.identifier() {
                    Some(name) => Tok::Tag(name.to_string()),
                    None => return Err(self.err(line, "':' not followed by a tag name")),
                }
            } else if b.is_ascii_digit() {
                self.number()?
            } else if b.is_ascii_alphabetic() || b == b'_' {
                let name = self.identifier().unwrap_or_default();
                if name.eq_ignore_ascii_case("text") && self.peek() == Some(b':') {
                    self.pos += 1;
                    self.multiline(line)?
                } else {
                    Tok::Ident(name.to_string())
                }
            } else {
                let c = self.text[self.pos..].chars().next().unwrap_or('?');
                return Err(self.err(line, format!("unexpected character {c:?}")));
            };
            out.push(Token { tok, line, offset });
        }
        Ok(out)
    }

    fn skip_hash_comment(&mut self) {
        match memchr::memchr(b'\n', &self.src[self.pos..]) {
            // The newline itself is left for the main loop to count.
            Some(n) => self.pos += n,
            None => self.pos = self.src.len(),
        }
    }

    fn skip_bracket_comment(&mut self) -> Result<(), CompileError> {
        let start = self.line;
        self.pos += 2;
        while self.pos < self.src.len() {
            if self.src[self.pos..].starts_with(b"*/") {
                self.pos += 2;
                return Ok(());
            }
            if self.src[self.pos] == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
        Err(self.err(start, "comment /* … not closed by */"))
    }

    /// `(ALPHA / "_") *(ALPHA / DIGIT / "_")` at the current position.
    fn identifier(&mut self) -> Option<&'a str> {
        let start = self.pos;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.pos += 1,
            _ => return None,
        }
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
            self.pos += 1;
        }
        let text: &'a str = self.text;
        Some(&text[start..self.pos])
    }

    fn number(&mut self) -> Result<Tok, CompileError> {
        let line = self.line;
        let mut n: u64 = 0;
        let too_big = || CompileError::new(line, "number too large");
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or_else(too_big)?;
            self.pos += 1;
        }
        let shift = match self.peek() {
            Some(b'K' | b'k') => 10,
            Some(b'M' | b'm') => 20,
            Some(b'G' | b'g') => 30,
            _ => 0,
        };
        if shift > 0 {
            self.pos += 1;
            n = n.checked_mul(1 << shift).ok_or_else(too_big)?;
        }
        if matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
            return Err(self.err(line, "a number runs into letters (quantifiers are K, M, G)"));
        }
        Ok(Tok::Number(n))
    }

    /// A quoted string: `\` takes the next character literally (RFC 5228
    /// 2.4.2: an undefined escape is the character itself).
    fn quoted(&mut self) -> Result<Tok, CompileError> {
        let start = self.line;
        self.pos += 1;
        let mut out = String::new();
        let mut run = self.pos;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err(start, "string not closed by '\"'"));
            };
            match b {
                b'"' => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    return Ok(Tok::Str(out));
                }
                b'\\' => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    let Some(c) = self.text[self.pos..].chars().next() else {
                        return Err(self.err(start, "string not closed by '\"'"));
                    };
                    if c == '\n' {
                        self.line += 1;
                        out.push_str("\r\n");
                    } else {
                        out.push(c);
                    }
                    self.pos += c.len_utf8();
                    run = self.pos;
                }
                b'\n' => {
                    out.push_str(&self.text[run..self.pos]);
                    if !out.ends_with('\r') {
                        out.push('\r');
                    }
                    out.push('\n');
                    self.pos += 1;
                    self.line += 1;
                    run = self.pos;
                }
                _ => self.pos += 1,
            }
        }
    }

    /// `text:` then blanks, an optional `#` comment and a line end; lines up
    /// to one that is a lone `.`; a leading `..` loses one dot.
    fn multiline(&mut self, start: u32) -> Result<Tok, CompileError> {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        if self.peek() == Some(b'#') {
            self.skip_hash_comment();
        }
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        if self.peek() != Some(b'\n') {
            return Err(self.err(start, "text: must be followed by the end of the line"));
        }
        self.pos += 1;
        self.line += 1;
        let mut out = String::new();
        loop {
            if self.pos >= self.src.len() {
                return Err(self.err(start, "text: string not ended by a line holding only '.'"));
            }
            let rest = &self.src[self.pos..];
            let (len, next) = match memchr::memchr(b'\n', rest) {
                Some(n) => (n, n + 1),
                None => (rest.len(), rest.len()),
            };
            let mut body = &self.text[self.pos..self.pos + len];
            body = body.strip_suffix('\r').unwrap_or(body);
            let ended = next > len;
            self.pos += next;
            if body == "." {
                if ended {
                    self.line += 1;
                }
                return Ok(Tok::Str(out));
            }
            if !ended {
                return Err(self.err(start, "text: string not ended by a line holding only '.'"));
            }
            self.line += 1;
            out.push_str(body.strip_prefix('.').unwrap_or(body));
            out.push_str("\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    fn err(s: &[u8]) -> String {
        match lex(s) {
            Ok(t) => panic!("lexed: {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ident(s: &str) -> Tok {
        Tok::Ident(s.into())
    }

    fn st(s: &str) -> Tok {
        Tok::Str(s.into())
    }

    #[test]
    fn punctuation_identifiers_and_tags() {
        assert_eq!(
            toks("if header :is [\"a\", \"b\"] (x) { y; }"),
            vec![
                ident("if"),
                ident("header"),
                Tok::Tag("is".into()),
                Tok::LBracket,
                st("a"),
                Tok::Comma,
                st("b"),
                Tok::RBracket,
                Tok::LParen,
                ident("x"),
                Tok::RParen,
                Tok::LBrace,
                ident("y"),
                Tok::Semicolon,
                Tok::RBrace,
            ]
        );
        assert_eq!(toks("_a1:b_2"), vec![ident("_a1"), Tok::Tag("b_2".into())]);
    }

    #[test]
    fn numbers_with_quantifiers() {
        assert_eq!(
            toks("0 12 1K 2m 3G 007"),
            vec![
                Tok::Number(0),
                Tok::Number(12),
                Tok::Number(1024),
                Tok::Number(2 << 20),
                Tok::Number(3 << 30),
                Tok::Number(7),
            ]
        );
    }

    #[test]
    fn number_overflow_is_an_error() {
        assert_eq!(
            err(b"size :over 18446744073709551616;"),
            "line 1: number too large"
        );
        assert_eq!(err(b"\n99999999999999999999G"), "line 2: number too large");
        assert_eq!(toks("18446744073709551615"), vec![Tok::Number(u64::MAX)]);
        assert_eq!(err(b"17179869184G"), "line 1: number too large");
    }

    #[test]
    fn number_running_into_letters() {
        assert_eq!(
            err(b"10KB"),
            "line 1: a number runs into letters (quantifiers are K, M, G)"
        );
    }

    #[test]
    fn quoted_escapes() {
        assert_eq!(toks(r#""a\"b\\c\d""#), vec![st("a\"b\\cd")]);
        assert_eq!(toks(r#""""#), vec![st("")]);
        assert_eq!(toks("\"é\\ü\""), vec![st("éü")]);
    }

    #[test]
    fn quoted_string_spans_lines_as_crlf() {
        let t = lex(b"\"a\nb\r\nc\" x").unwrap();
        assert_eq!(t[0].tok, st("a\r\nb\r\nc"));
        assert_eq!(t[1].line, 3);
    }

    #[test]
    fn unterminated_quoted_names_its_first_line() {
        assert_eq!(err(b"x;\n\"abc\n\n"), "line 2: string not closed by '\"'");
        assert_eq!(err(b"\"abc\\"), "line 1: string not closed by '\"'");
    }

    #[test]
    fn multiline_dot_unstuffing() {
        let t = lex(b"text: # c\r\nline 1\r\n..dot\r\n.x\r\n.\r\n;").unwrap();
        assert_eq!(t[0].tok, st("line 1\r\n.dot\r\nx\r\n"));
        assert_eq!(t[1].tok, Tok::Semicolon);
        assert_eq!(t[1].line, 6);
    }

    #[test]
    fn multiline_with_bare_lf_and_empty_body() {
        assert_eq!(toks("text:\na\n\nb\n.\n"), vec![st("a\r\n\r\nb\r\n")]);
        assert_eq!(toks("TEXT:  \n.\n"), vec![st("")]);
        // The terminating dot may end the file.
        assert_eq!(toks("text:\nx\n."), vec![st("x\r\n")]);
    }

    #[test]
    fn multiline_errors() {
        assert_eq!(
            err(b"text: x\n.\n"),
            "line 1: text: must be followed by the end of the line"
        );
        assert_eq!(
            err(b"\ntext:\nabc\n"),
            "line 2: text: string not ended by a line holding only '.'"
        );
        assert_eq!(
            err(b"text:\nabc"),
            "line 1: text: string not ended by a line holding only '.'"
        );
    }

    #[test]
    fn text_without_colon_is_an_identifier() {
        assert_eq!(toks("text"), vec![ident("text")]);
        assert_eq!(toks("texts :x"), vec![ident("texts"), Tok::Tag("x".into())]);
    }

    #[test]
    fn comments_are_skipped_and_lines_counted() {
        let t = lex(b"# one\n/* two\nthree */ a /**/ b # x\nc").unwrap();
        let got: Vec<(Tok, u32)> = t.into_iter().map(|t| (t.tok, t.line)).collect();
        assert_eq!(got, vec![(ident("a"), 3), (ident("b"), 3), (ident("c"), 4)]);
        assert_eq!(toks("/* a * / ** */x"), vec![ident("x")]);
    }

    #[test]
    fn unterminated_bracket_comment() {
        assert_eq!(
            err(b"a;\n/* open\n\n"),
            "line 2: comment /* … not closed by */"
        );
    }

    #[test]
    fn not_utf8_names_the_line() {
        assert_eq!(
            err(b"keep;\n# caf\xe9\n"),
            "line 2: script is not valid UTF-8"
        );
    }

    #[test]
    fn nul_names_the_line() {
        assert_eq!(err(b"\n\nkeep\0;"), "line 3: script contains a NUL byte");
    }

    #[test]
    fn stray_characters() {
        assert_eq!(err(b"keep;\n@"), "line 2: unexpected character '@'");
        assert_eq!(err(b"a : b"), "line 1: ':' not followed by a tag name");
        assert_eq!(err(b"/ x"), "line 1: unexpected character '/'");
    }

    #[test]
    fn offsets_are_bytes() {
        let t = lex("\"é\" x".as_bytes()).unwrap();
        assert_eq!(t[1].offset, 5);
    }

    #[test]
    fn size_limit() {
        let big = vec![b' '; MAX_SCRIPT_SIZE + 1];
        let e = err(&big);
        assert!(
            e.starts_with("line 1: script is 1048577 bytes, over the limit"),
            "{e}"
        );
        assert!(lex(&vec![b'\n'; MAX_SCRIPT_SIZE]).unwrap().is_empty());
    }
}
