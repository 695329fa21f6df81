//! Manual pages, and the check that every `--help` is complete, from the
//! clap `Command` descriptions of the two programs: vmailctl's (its own
//! argument parser) and vdeliver's ([`crate::invocation::command`], a
//! description only: vdeliver parses its few options by hand). Pages made
//! from the parser's own description cannot drift from what the programs
//! accept. `vmailctl man vmailctl|vdeliver` prints them; the README's
//! installation puts them in `/usr/local/share/man/man8/`.
//!
//! [`page`] renders one section-8 page for a whole command tree: NAME,
//! SYNOPSIS, DESCRIPTION, OPTIONS (the top level's, global ones included),
//! then, for a program with subcommands, a COMMANDS section with one
//! subsection per command path (`vmailctl domain add`: what it does, its
//! usage, its arguments, and the text that closes its `--help`, examples
//! included, line for line), then the top level's closing text under
//! EXAMPLES, VERSION and SEE ALSO. One page rather than clap_mangen's page
//! per subcommand: a postmaster types `man vmailctl` and searches it.
//!
//! [`help_gaps`] lists what a `--help` lacks (an argument without help
//! text, a command without a one-line purpose or without an example of
//! itself); vmailctl's tests and vdeliver's require the list to be empty,
//! so a command added later without them fails the tests.

use clap::Command;
use roff::{roman, Roff};
use std::io;

/// The manual page of `cmd` and all its subcommands, as roff source for
/// `man` (section 8, title in capitals: `.TH VMAILCTL 8 …`). `see_also`
/// are references such as `vdeliver(8)`.
pub fn page(cmd: Command, see_also: &[&str]) -> io::Result<Vec<u8>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone())
        .title(cmd.get_name().to_uppercase())
        .section("8")
        .manual("System Manager's Manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    let mut sections = Vec::new();
    man.render_name_section(&mut sections)?;
    man.render_synopsis_section(&mut sections)?;
    man.render_description_section(&mut sections)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut sections)?;
    }
    out.extend(body(&String::from_utf8_lossy(&sections)).as_bytes());
    if cmd.has_subcommands() {
        let mut r = Roff::new();
        r.control("SH", ["COMMANDS"]);
        out.extend(body(&r.render()).as_bytes());
        commands(&mut out, &cmd)?;
    }
    if let Some(after) = closing_text(&cmd) {
        let mut r = Roff::new();
        r.control("SH", ["EXAMPLES"]);
        verbatim(&mut r, &after);
        out.extend(body(&r.render()).as_bytes());
    }
    if cmd.get_version().is_some() {
        let mut version = Vec::new();
        man.render_version_section(&mut version)?;
        out.extend(body(&String::from_utf8_lossy(&version)).as_bytes());
    }
    if !see_also.is_empty() {
        let mut r = Roff::new();
        r.control("SH", ["SEE ALSO"]);
        r.text([roman(see_also.join(", "))]);
        out.extend(body(&r.render()).as_bytes());
    }
    Ok(out)
}

/// One subsection per subcommand of `cmd`, depth first, in declaration
/// order (the order of `--help`).
fn commands(out: &mut Vec<u8>, cmd: &Command) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let path = sub.get_bin_name().unwrap_or(sub.get_name()).to_string();
        let mut r = Roff::new();
        r.control("SS", [path.as_str()]);
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            for line in about.to_string().lines() {
                r.text([roman(line)]);
            }
        }
        let usage = sub.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage:").trim();
        r.control("PP", []);
        r.text([roman(format!("Usage: {usage}"))]);
        out.extend(body(&r.render()).as_bytes());
        // Its own arguments: the global ones are the top level's, and
        // every command has --help.
        let own = sub.clone().mut_args(|a| {
            if a.is_global_set() || a.get_id() == "help" {
                a.hide(true)
            } else {
                a
            }
        });
        if own.get_arguments().any(|a| !a.is_hide_set()) {
            let mut options = Vec::new();
            clap_mangen::Man::new(own).render_options_section(&mut options)?;
            let options = body(&String::from_utf8_lossy(&options));
            let options = options.strip_prefix(".SH OPTIONS\n").unwrap_or(&options);
            out.extend(options.as_bytes());
        }
        if let Some(after) = closing_text(sub) {
            let mut r = Roff::new();
            r.control("PP", []);
            verbatim(&mut r, &after);
            out.extend(body(&r.render()).as_bytes());
        }
        commands(out, sub)?;
    }
    Ok(())
}

/// What closes a command's `--help` (its examples, among others).
fn closing_text(cmd: &Command) -> Option<String> {
    cmd.get_after_long_help()
        .or(cmd.get_after_help())
        .map(|s| s.to_string())
}

/// Lines kept as they are (examples are laid out by hand).
fn verbatim(r: &mut Roff, text: &str) {
    r.control("nf", []);
    for line in text.lines() {
        r.text([roman(line)]);
    }
    r.control("fi", []);
}

/// Rendered roff without the preamble that every render repeats (the
/// definition of the apostrophe string, which the title's render gives
/// once, at the top of the page).
fn body(rendered: &str) -> String {
    let preamble = Roff::new().render();
    rendered.replace(preamble.as_str(), "")
}

/// What the `--help` of `cmd` and of each of its subcommands lacks, one
/// line each naming the command: an argument without help text, a command
/// without its one-line purpose, a command whose `--help` has no
/// "Example" section showing the command itself. Empty when complete.
/// clap's own `help` subcommand is not looked at.
pub fn help_gaps(cmd: &Command) -> Vec<String> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    let mut gaps = Vec::new();
    walk(&cmd, &mut gaps);
    gaps
}

fn walk(cmd: &Command, gaps: &mut Vec<String>) {
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name());
    if cmd.get_about().is_none() && cmd.get_long_about().is_none() {
        gaps.push(format!("{name}: no one-line description"));
    }
    for a in cmd.get_arguments() {
        if a.get_help().is_none() && a.get_long_help().is_none() {
            gaps.push(format!("{name}: argument {} has no help text", a.get_id()));
        }
    }
    let after = closing_text(cmd).unwrap_or_default();
    let example = after
        .lines()
        .skip_while(|l| !l.starts_with("Example"))
        .skip(1)
        .any(|l| {
            let l = l.trim_start();
            l == name || l.starts_with(&format!("{name} ")) || l.contains(&format!("| {name} "))
        });
    if !example {
        gaps.push(format!(
            "{name}: --help has no \"Example\" section showing `{name} …`"
        ));
    }
    for sub in cmd.get_subcommands() {
        walk(sub, gaps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn sample() -> Command {
        Command::new("tool")
            .version("1.2.3")
            .about("Does things")
            .after_help("Example:\n  tool thing add x")
            .arg(
                Arg::new("verbose")
                    .long("verbose")
                    .help("Say more")
                    .global(true)
                    .num_args(0),
            )
            .subcommand(
                Command::new("thing")
                    .about("Things")
                    .after_help("Examples:\n  tool thing add x\n.starts with a dot")
                    .subcommand(
                        Command::new("add")
                            .about("Add a thing")
                            .after_help("Example:\n  tool thing add x")
                            .arg(Arg::new("name").help("The thing's name").required(true))
                            .arg(Arg::new("force").long("force").num_args(0).help("Even so")),
                    ),
            )
    }

    #[test]
    fn a_complete_help_has_no_gaps() {
        assert_eq!(help_gaps(&sample()), Vec::<String>::new());
    }

    #[test]
    fn gaps_name_the_command_and_what_is_missing() {
        let cmd = sample().subcommand(
            Command::new("bare")
                .arg(Arg::new("what"))
                .after_help("Example:\n  tool thing add x"),
        );
        let gaps = help_gaps(&cmd);
        assert_eq!(
            gaps,
            [
                "tool bare: no one-line description",
                "tool bare: argument what has no help text",
                // An example of another command is not one of this one.
                "tool bare: --help has no \"Example\" section showing `tool bare …`",
            ]
        );
        let cmd = sample().after_help("Exit codes: 0.");
        assert_eq!(
            help_gaps(&cmd),
            ["tool: --help has no \"Example\" section showing `tool …`"]
        );
    }

    #[test]
    fn the_page_has_every_command_with_its_own_arguments_and_examples() {
        let page = String::from_utf8(page(sample(), &["other(8)"]).unwrap()).unwrap();
        assert!(page.contains(".TH TOOL 8"), "{page}");
        for want in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH OPTIONS",
            ".SH COMMANDS",
            ".SS \"tool thing\"",
            ".SS \"tool thing add\"",
            "Usage: tool thing add [OPTIONS] <name>",
            "\\-\\-force",
            "The thing\\*(Aqs name",
            ".SH EXAMPLES",
            ".SH VERSION",
            ".SH \"SEE ALSO\"",
            "other(8)",
        ] {
            assert!(page.contains(want), "no {want:?} in\n{page}");
        }
        // The global option is described once, at the top.
        assert_eq!(page.matches("Say more").count(), 1, "{page}");
        // A line of an example starting with a dot is not a roff request.
        assert!(page.contains("\\&.starts with a dot"), "{page}");
        // The apostrophe preamble once, at the top.
        assert_eq!(page.matches(".ds Aq").count(), 2, "{page}");
        // The examples are kept line for line.
        let add = page.split(".SS \"tool thing add\"").nth(1).unwrap();
        assert!(
            add.contains(".nf\nExample:\n  tool thing add x\n.fi"),
            "{add}"
        );
    }
}
