//! Recursive-descent parser for the grammar of RFC 5228 section 8.2.
//!
//! Recursion is bounded: blocks and nested tests together may be at most
//! `MAX_NESTING` deep, so no script can exhaust the stack, and a script holds
//! at most `MAX_COMMANDS` commands.

use super::ast::{Arg, Command, Test, Tests};
use super::lex::{Tok, Token};
use super::{CompileError, MAX_COMMANDS, MAX_NESTING};

/// Parse a token stream into the list of top-level commands.
pub fn parse(tokens: &[Token]) -> Result<Vec<Command>, CompileError> {
    let mut p = Parser {
        toks: tokens,
        pos: 0,
        depth: 0,
        commands: 0,
    };
    let cmds = p.commands()?;
    if let Some(t) = p.peek() {
        return Err(CompileError::new(
            t.line,
            format!("unexpected {}", describe(&t.tok)),
        ));
    }
    Ok(cmds)
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    depth: usize,
    commands: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {s}"),
        Tok::Tag(s) => format!("tag :{s}"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Str(_) => "string".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBrace => "'{'".into(),
        Tok::RBrace => "'}'".into(),
        Tok::Comma => "','".into(),
        Tok::Semicolon => "';'".into(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn last_line(&self) -> u32 {
        self.toks.last().map_or(1, |t| t.line)
    }

    fn next(&mut self, wanted: &str) -> Result<&Token, CompileError> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t)
            }
            None => Err(CompileError::new(
                self.last_line(),
                format!("script ends where {wanted} was expected"),
            )),
        }
    }

    fn enter(&mut self, line: u32) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(CompileError::new(
                line,
                format!("nested more than {MAX_NESTING} levels deep"),
            ));
        }
        Ok(())
    }

    /// Commands up to the end of the input or a `}` (left unconsumed).
    fn commands(&mut self) -> Result<Vec<Command>, CompileError> {
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            match &t.tok {
                Tok::RBrace => break,
                Tok::Ident(name) => {
                    let (name, line) = (name.clone(), t.line);
                    self.pos += 1;
                    self.commands += 1;
                    if self.commands > MAX_COMMANDS {
                        return Err(CompileError::new(
                            line,
                            format!("more than {MAX_COMMANDS} commands"),
                        ));
                    }
                    out.push(self.command(name, line)?);
                }
                other => {
                    return Err(CompileError::new(
                        t.line,
                        format!("expected a command, found {}", describe(other)),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn command(&mut self, name: String, line: u32) -> Result<Command, CompileError> {
        let (args, tests) = self.arguments()?;
        let t = self.next(&format!("';' or '{{' after {name}"))?;
        let block = match t.tok {
            Tok::Semicolon => None,
            Tok::LBrace => {
                let open = t.line;
                self.enter(open)?;
                let body = self.commands()?;
                self.depth -= 1;
                match self.peek() {
                    Some(Token {
                        tok: Tok::RBrace, ..
                    }) => self.pos += 1,
                    _ => {
                        return Err(CompileError::new(
                            open,
                            format!("block of {name} not closed by '}}'"),
                        ))
                    }
                }
                Some(body)
            }
            ref other => {
                return Err(CompileError::new(
                    t.line,
                    format!(
                        "expected ';' or '{{' after {name}, found {}",
                        describe(other)
                    ),
                ))
            }
        };
        Ok(Command {
            name,
            line,
            args,
            tests,
            block,
        })
    }

    /// `*argument [ test / test-list ]`.
    fn arguments(&mut self) -> Result<(Vec<Arg>, Tests), CompileError> {
        let mut args = Vec::new();
        loop {
            let Some(t) = self.peek() else {
                return Ok((args, Tests::None));
            };
            let line = t.line;
            match &t.tok {
                Tok::Tag(s) => args.push(Arg::Tag(s.clone(), line)),
                Tok::Number(n) => args.push(Arg::Number(*n, line)),
                Tok::Str(s) => args.push(Arg::String(s.clone(), line)),
                Tok::LBracket => {
                    self.pos += 1;
                    args.push(Arg::List(self.string_list(line)?, line));
                    continue;
                }
                Tok::Ident(_) => {
                    self.enter(line)?;
                    let test = self.test()?;
                    self.depth -= 1;
                    return Ok((args, Tests::One(Box::new(test))));
                }
                Tok::LParen => {
                    self.pos += 1;
                    self.enter(line)?;
                    let list = self.test_list(line)?;
                    self.depth -= 1;
                    return Ok((args, Tests::List(list)));
                }
                _ => return Ok((args, Tests::None)),
            }
            self.pos += 1;
        }
    }

    /// After `[`: `string *("," string) "]"`.
    fn string_list(&mut self, open: u32) -> Result<Vec<String>, CompileError> {
        let mut out = Vec::new();
        loop {
            let t = self.next("a string in a string list")?;
            match &t.tok {
                Tok::Str(s) => out.push(s.clone()),
                Tok::RBracket if out.is_empty() => {
                    return Err(CompileError::new(t.line, "empty string list"))
                }
                other => {
                    return Err(CompileError::new(
                        t.line,
                        format!(
                            "expected a string in the list opened on line {open}, found {}",
                            describe(other)
                        ),
                    ))
                }
            }
            let t = self.next("',' or ']'")?;
            match &t.tok {
                Tok::Comma => {}
                Tok::RBracket => return Ok(out),
                other => {
                    return Err(CompileError::new(
                        t.line,
                        format!(
                            "expected ',' or ']' in a string list, found {}",
                            describe(other)
                        ),
                    ))
                }
            }
        }
    }

    /// After `(`: `test *("," test) ")"`.
    fn test_list(&mut self, open: u32) -> Result<Vec<Test>, CompileError> {
        let mut out = Vec::new();
        loop {
            out.push(self.test()?);
            let t = self.next("',' or ')'")?;
            match &t.tok {
                Tok::Comma => {}
                Tok::RParen => return Ok(out),
                other => {
                    return Err(CompileError::new(
                        t.line,
                        format!(
                            "expected ',' or ')' in the test list opened on line {open}, found {}",
                            describe(other)
                        ),
                    ))
                }
            }
        }
    }

    fn test(&mut self) -> Result<Test, CompileError> {
        let t = self.next("a test")?;
        let (name, line) = match &t.tok {
            Tok::Ident(name) => (name.clone(), t.line),
            other => {
                return Err(CompileError::new(
                    t.line,
                    format!("expected a test, found {}", describe(other)),
                ))
            }
        };
        let (args, tests) = self.arguments()?;
        Ok(Test {
            name,
            line,
            args,
            tests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::lex::lex;

    fn p(s: &str) -> Vec<Command> {
        parse(&lex(s.as_bytes()).unwrap()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(s: &str) -> String {
        match parse(&lex(s.as_bytes()).unwrap()) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_script_is_no_commands() {
        assert!(p("").is_empty());
        assert!(p("# only a comment\n").is_empty());
    }

    #[test]
    fn command_with_every_argument_kind() {
        let c = p("x :tag 5 \"s\" [\"a\", \"b\"] ;");
        assert_eq!(
            c,
            vec![Command {
                name: "x".into(),
                line: 1,
                args: vec![
                    Arg::Tag("tag".into(), 1),
                    Arg::Number(5, 1),
                    Arg::String("s".into(), 1),
                    Arg::List(vec!["a".into(), "b".into()], 1),
                ],
                tests: Tests::None,
                block: None,
            }]
        );
    }

    #[test]
    fn nested_tests_and_blocks() {
        let c = p("if anyof (not exists \"a\", true) {\n keep;\n} else { stop; }");
        assert_eq!(c.len(), 2);
        let Tests::One(t) = &c[0].tests else {
            panic!("{:?}", c[0].tests)
        };
        assert_eq!(t.name, "anyof");
        let Tests::List(l) = &t.tests else {
            panic!("{:?}", t.tests)
        };
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "not");
        assert!(matches!(&l[0].tests, Tests::One(e) if e.name == "exists"));
        let block = c[0].block.as_ref().unwrap();
        assert_eq!((block[0].name.as_str(), block[0].line), ("keep", 2));
        assert_eq!(c[1].name, "else");
    }

    #[test]
    fn missing_semicolon() {
        assert_eq!(
            err("keep \"a\"\n}"),
            "line 2: expected ';' or '{' after keep, found '}'"
        );
    }

    #[test]
    fn script_ending_mid_command() {
        assert_eq!(
            err("keep"),
            "line 1: script ends where ';' or '{' after keep was expected"
        );
        assert_eq!(
            err("if true {\nkeep;"),
            "line 1: block of if not closed by '}'"
        );
    }

    #[test]
    fn stray_closing_brace() {
        assert_eq!(err("keep;\n}"), "line 2: unexpected '}'");
    }

    #[test]
    fn command_must_start_with_identifier() {
        assert_eq!(err("\"x\";"), "line 1: expected a command, found string");
    }

    #[test]
    fn empty_string_list() {
        assert_eq!(err("x [];"), "line 1: empty string list");
    }

    #[test]
    fn bad_string_list() {
        assert_eq!(
            err("x [\"a\" \"b\"];"),
            "line 1: expected ',' or ']' in a string list, found string"
        );
        assert_eq!(
            err("x [\"a\",\n 5];"),
            "line 2: expected a string in the list opened on line 1, found number 5"
        );
    }

    #[test]
    fn bad_test_list() {
        assert_eq!(
            err("if anyof (true;\n false) {}"),
            "line 1: expected ',' or ')' in the test list opened on line 1, found ';'"
        );
        assert_eq!(err("if anyof () {}"), "line 1: expected a test, found ')'");
    }

    #[test]
    fn nesting_limit_blocks() {
        let ok = "if true {".repeat(MAX_NESTING - 1) + &"}".repeat(MAX_NESTING - 1);
        assert_eq!(p(&ok).len(), 1);
        let deep = "if true {".repeat(MAX_NESTING + 1) + &"}".repeat(MAX_NESTING + 1);
        assert_eq!(
            err(&deep),
            format!("line 1: nested more than {MAX_NESTING} levels deep")
        );
    }

    #[test]
    fn nesting_limit_tests() {
        let deep = "if ".to_string() + &"not ".repeat(MAX_NESTING * 4) + "true {}";
        assert_eq!(
            err(&deep),
            format!("line 1: nested more than {MAX_NESTING} levels deep")
        );
        let deep = "if ".to_string() + &"anyof(".repeat(100_000) + "true";
        assert_eq!(
            err(&deep),
            format!("line 1: nested more than {MAX_NESTING} levels deep")
        );
    }

    #[test]
    fn command_count_limit() {
        let ok = "keep;".repeat(MAX_COMMANDS);
        assert_eq!(p(&ok).len(), MAX_COMMANDS);
        let over = "keep;\n".repeat(MAX_COMMANDS + 1);
        assert_eq!(
            err(&over),
            format!(
                "line {}: more than {MAX_COMMANDS} commands",
                MAX_COMMANDS + 1
            )
        );
    }
}
