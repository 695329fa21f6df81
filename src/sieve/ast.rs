//! The untyped syntax tree of RFC 5228 section 8.2: what the grammar says,
//! nothing about which commands exist. The validator (`validate.rs`) maps it
//! onto the typed program.

/// `identifier arguments (";" / block)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// As written; compared case-insensitively.
    pub name: String,
    pub line: u32,
    pub args: Vec<Arg>,
    pub tests: Tests,
    /// `Some` when the command ended with `{ … }` instead of `;`.
    pub block: Option<Vec<Command>>,
}

/// `identifier arguments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub name: String,
    pub line: u32,
    pub args: Vec<Arg>,
    pub tests: Tests,
}

/// The optional test or test list that ends an argument list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Tests {
    #[default]
    None,
    /// A single test, without parentheses.
    One(Box<Test>),
    /// `( test *("," test) )`.
    List(Vec<Test>),
}

/// One argument. A tag's value (`:comparator "i;octet"`) is the argument
/// that follows it; the validator pairs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Tag(String, u32),
    Number(u64, u32),
    String(String, u32),
    /// `[ string *("," string) ]`, never empty.
    List(Vec<String>, u32),
}

impl Arg {
    pub fn line(&self) -> u32 {
        match self {
            Arg::Tag(_, l) | Arg::Number(_, l) | Arg::String(_, l) | Arg::List(_, l) => *l,
        }
    }

    /// How an error message names the argument's kind.
    pub fn kind(&self) -> String {
        match self {
            Arg::Tag(t, _) => format!("tag :{t}"),
            Arg::Number(..) => "a number".into(),
            Arg::String(..) => "a string".into(),
            Arg::List(..) => "a string list".into(),
        }
    }
}
