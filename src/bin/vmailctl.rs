//! vmailctl: administration of the vdeliver database. Glue: parse the
//! command line, call `vdeliver::admin`, print text or JSON.
//!
//! Exit codes: 0 success; 1 the operation failed (not found, conflict,
//! database, a failed check, an address vdeliver would not deliver); 2 bad
//! input or usage (clap's own code for usage errors).

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vdeliver::admin::{
    self, both_forms, count_of, human_count, human_limit, AdminError, DomainSettings,
};
use vdeliver::config::{self, Config};
use vdeliver::{db, deliver, password};

const TOP_EXAMPLES: &str = "\
Examples:
  vmailctl migrate
  vmailctl domain add example.com --quota-bytes 2G --quota-messages 50000
  vmailctl account add alice@example.com --password
  vmailctl alias add team@example.com alice@example.com bob@remote.org
  vmailctl resolve team@example.com
  vmailctl check --user vmail

Exit codes: 0 success, 1 the operation failed, 2 bad input or usage.
Every command takes --json for machine-readable output.";

#[derive(Parser)]
#[command(
    name = "vmailctl",
    version,
    about = "Administer vdeliver's virtual domains, accounts, aliases and quotas",
    after_help = TOP_EXAMPLES
)]
struct Cli {
    /// Configuration file [default: $VDELIVER_CONFIG, else /etc/vdeliver/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or upgrade the database schema (idempotent)
    #[command(after_help = "Example:\n  vmailctl migrate")]
    Migrate,
    /// Domains: add, delete, list, show, set
    #[command(
        subcommand,
        after_help = "\
Each command has its own --help with more examples.

Examples:
  vmailctl domain add example.com --quota-bytes 2G --quota-messages 50000
  vmailctl domain list
  vmailctl domain show example.com"
    )]
    Domain(DomainCmd),
    /// Alias domains (another name for a domain, sharing its addresses)
    #[command(
        subcommand,
        name = "alias-domain",
        after_help = "\
Mail to alice@example.net is delivered as mail to alice@example.com once
example.net is an alias domain of example.com.

Examples:
  vmailctl alias-domain add example.net example.com
  vmailctl alias-domain list example.com"
    )]
    AliasDomain(AliasDomainCmd),
    /// Accounts (mailboxes)
    #[command(
        subcommand,
        after_help = "\
Each command has its own --help with more examples.

Examples:
  vmailctl account add alice@example.com --password
  vmailctl account list example.com
  vmailctl account quota alice@example.com --bytes 5G"
    )]
    Account(AccountCmd),
    /// Aliases: an address delivered to other addresses
    #[command(
        subcommand,
        after_help = "\
Examples:
  vmailctl alias add team@example.com alice@example.com bob@remote.org
  vmailctl alias list example.com"
    )]
    Alias(AliasCmd),
    /// Catch-all destinations of a domain (for addresses that exist nowhere else)
    #[command(
        subcommand,
        after_help = "\
Examples:
  vmailctl catchall add example.com postmaster@example.com
  vmailctl catchall list example.com"
    )]
    Catchall(CatchallCmd),
    /// Addresses that have moved (mail to them bounces naming the new one, #5.1.6)
    #[command(
        subcommand,
        after_help = "\
Examples:
  vmailctl relocated add old@example.com new@example.org
  vmailctl relocated list example.com"
    )]
    Relocated(RelocatedCmd),
    /// Dry run: what vdeliver would do with mail to ADDRESS, writing nothing
    #[command(after_help = "\
Prints the resolution (alias steps, extension, catch-all), the Maildirs with
their quota, the remote forwards, and the exit code and line vdeliver would
give. Exit 0 when vdeliver would deliver, 1 when it would bounce or defer.

With --message FILE, each account's active Sieve script is also run
against that message and its actions shown (nothing is stored or sent; an
include is not followed). Delivery does not run the scripts yet.

Examples:
  vmailctl resolve alice@example.com
  vmailctl resolve alice-lists@example.com --sender bob@remote.org
  vmailctl resolve nobody@example.com --fallback delete
  vmailctl resolve alice@example.com --message mail.eml")]
    Resolve {
        /// The recipient address (local@domain)
        address: String,
        /// Envelope sender [default: <>]
        #[arg(long, value_name = "ADDRESS")]
        sender: Option<String>,
        /// vpopmail-style fallback for unknown users, as on the .qmail line
        /// (bounce-no-mailbox, delete, an address, a Maildir path)
        #[arg(long, value_name = "ARG")]
        fallback: Option<String>,
        /// Also run each account's active Sieve script against this message
        /// (a file, or - for standard input) and show its actions
        #[arg(long, value_name = "FILE")]
        message: Option<PathBuf>,
    },
    /// The server's plan of each statement vdeliver sends for ADDRESS
    #[command(after_help = "\
Runs vdeliver's lookup for ADDRESS (writing nothing) and prints, for each
round trip, the pairs asked and EXPLAIN (ANALYZE, BUFFERS) of the statement
sent, then the plans of the statements inside the functions it calls
(vdeliver_route, vdeliver_lookup), through the server's auto_explain module
(a superuser can load it, others when it is in $libdir/plugins). Every table should be read by an index scan.

Example:
  vmailctl explain alice@example.com")]
    Explain {
        /// The recipient address (local@domain)
        address: String,
    },
    /// Quota usage of an account against its limits, from maildirsize
    #[command(after_help = "\
Examples:
  vmailctl quota alice@example.com
  vmailctl quota alice@example.com --recalc")]
    Quota {
        /// The account's address (local@domain)
        address: String,
        /// Recount the Maildir and rewrite maildirsize first
        #[arg(long)]
        recalc: bool,
    },
    /// Sieve scripts of an account (ManageSieve's layout), and checking a script
    #[command(
        subcommand,
        after_help = "\
Examples:
  vmailctl sieve check filters.sieve
  vmailctl sieve put alice@example.com filters filters.sieve
  vmailctl sieve activate alice@example.com filters"
    )]
    Sieve(SieveCmd),
    /// An out-of-office reply that keeps the account's own Sieve filters running
    #[command(after_help = "\
'on' writes the Sieve script HOME/sieve/vmailctl-vacation.sieve and makes it
the active one. The script that was active before is included at its end, so
the user's filters still run after the reply is decided, and is remembered:
'off' makes it active again and deletes the vacation script. If the user
activates another script meanwhile (ManageSieve, Roundcube), the vacation is
no longer active, and 'off' leaves that choice alone. Without a verb (or with
'status'), shows whether the vacation is on.

--from and --until are days (YYYY-MM-DD, inclusive, the server's local time);
either may be left out. --days is 1 to 365 (the site's default when left out).
Without --subject the reply's subject is 'Auto: <the original subject>'.

Examples:
  vmailctl vacation alice@example.com on --subject 'Out of office' \\
      --body-file away.txt --from 2030-07-01 --until 2030-07-14 --days 7
  echo 'Back on Monday.' | vmailctl vacation alice@example.com on --body-file -
  vmailctl vacation alice@example.com
  vmailctl vacation alice@example.com off")]
    Vacation(VacationArgs),
    /// The password schemes vmailctl stores and those Dovecot verifies
    #[command(
        name = "password-schemes",
        after_help = "\
vmailctl stores the scheme [password] scheme names (SHA512-CRYPT by default, or
ARGON2ID). Dovecot also verifies the other schemes listed, which imported
accounts may carry (vpopmail's crypt(3) strings as {CRYPT}); a new password
set with vmailctl replaces them.

Example:
  vmailctl password-schemes --json"
    )]
    PasswordSchemes,
    /// Check the installation: configuration, database, schema, mail root, qmail-queue, renames
    #[command(after_help = "\
One line per check; exit 1 if any fails.

Examples:
  vmailctl check
  vmailctl check --user vmail --json")]
    Check {
        /// The user qmail-local runs vdeliver as [default: the owner of mail.root]
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Shell completion for vmailctl (bash, zsh or fish), on standard output
    #[command(after_help = "\
Made from vmailctl's own definition of its commands, so it knows every
command and option of this version. Needs no configuration or database.

Examples:
  vmailctl completions bash > /usr/local/share/bash-completion/completions/vmailctl
  vmailctl completions zsh > /usr/local/share/zsh/site-functions/_vmailctl
  vmailctl completions fish > /usr/local/share/fish/vendor_completions.d/vmailctl.fish")]
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// A manual page (roff, section 8), vmailctl's or vdeliver's, on standard output
    #[command(after_help = "\
Made from the same definitions as the programs' --help: vmailctl's page has
every command with its arguments and examples. Needs no configuration or
database.

Examples:
  vmailctl man vmailctl > /usr/local/share/man/man8/vmailctl.8
  vmailctl man vdeliver | man -l -")]
    Man {
        /// Whose page
        #[arg(value_enum)]
        page: ManPage,
    },
}

/// The shells `vmailctl completions` writes for.
#[derive(Clone, Copy, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The pages `vmailctl man` prints.
#[derive(Clone, Copy, ValueEnum)]
enum ManPage {
    Vmailctl,
    Vdeliver,
}

/// What `completions` and `man` print: made from the clap definitions,
/// before any configuration is read.
fn generated(command: &Command) -> Option<anyhow::Result<Vec<u8>>> {
    use clap::CommandFactory as _;
    match command {
        Command::Completions { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vmailctl", &mut out);
            Some(Ok(out))
        }
        Command::Man { page } => Some(
            match page {
                ManPage::Vmailctl => vdeliver::manual::page(Cli::command(), &["vdeliver(8)"]),
                ManPage::Vdeliver => vdeliver::manual::page(
                    vdeliver::invocation::command(),
                    &["vmailctl(8)", "qmail-local(8)"],
                ),
            }
            .context("rendering the manual page"),
        ),
        _ => None,
    }
}

#[derive(Args)]
struct DomainOpts {
    /// Default quota for the domain's accounts: bytes or 500M, 2G, … (binary units); 0 = unlimited
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    quota_bytes: Option<i64>,
    /// Default message limit for the domain's accounts; 0 = unlimited
    #[arg(long, value_name = "N", value_parser = parse_count)]
    quota_messages: Option<i64>,
    /// A free-text note
    #[arg(long)]
    note: Option<String>,
}

#[derive(Subcommand)]
enum DomainCmd {
    /// Add a domain
    #[command(after_help = "\
Examples:
  vmailctl domain add example.com
  vmailctl domain add bücher.example --quota-bytes 2G --quota-messages 50000 --note 'Books Ltd'
  vmailctl domain add example.org --disabled")]
    Add {
        /// The domain (an IDN in Unicode or as xn--)
        domain: String,
        #[command(flatten)]
        opts: DomainOpts,
        /// Add it disabled (mail to it bounces, #5.2.1)
        #[arg(long)]
        disabled: bool,
    },
    /// Change a domain's quota defaults, note or active flag
    #[command(after_help = "\
Examples:
  vmailctl domain set example.com --quota-bytes 5G
  vmailctl domain set example.com --disable")]
    Set {
        /// The domain
        domain: String,
        #[command(flatten)]
        opts: DomainOpts,
        /// Mail to the domain bounces (#5.2.1)
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Mail to the domain is delivered again
        #[arg(long)]
        enable: bool,
        /// Disable it even when aliases elsewhere that deliver today point into it
        #[arg(long)]
        force: bool,
    },
    /// Delete a domain (its Maildirs stay unless --purge)
    #[command(after_help = "\
A domain with accounts needs --force. Deletes its alias domains, aliases,
catch-alls and relocated addresses too.

Examples:
  vmailctl domain delete example.org
  vmailctl domain delete example.com --force --purge")]
    Delete {
        /// The domain
        domain: String,
        /// Delete its accounts too, and ignore aliases elsewhere pointing into it
        #[arg(long)]
        force: bool,
        /// Also remove the accounts' Maildirs from disk (beneath mail.root only)
        #[arg(long, requires = "force")]
        purge: bool,
    },
    /// List domains
    #[command(after_help = "Example:\n  vmailctl domain list --json")]
    List,
    /// Show one domain
    #[command(after_help = "Example:\n  vmailctl domain show example.com --json")]
    Show {
        /// The domain
        domain: String,
    },
    /// Every address of a domain with its kind: alias domains, catch-all,
    /// accounts, aliases, relocated
    #[command(after_help = "\
One line per address: the alias domains (another name for every address
below) and the catch-all first, then the addresses by local part, each with
its kind (account, alias, relocated) and where its mail goes. An address
that is an alias keeping a copy in its own mailbox is listed as account and
as alias.

Examples:
  vmailctl domain addresses example.com
  vmailctl domain addresses example.com --json")]
    Addresses {
        /// The domain (a primary domain, not an alias domain)
        domain: String,
    },
}

#[derive(Subcommand)]
enum AliasDomainCmd {
    /// Make ALIAS another name for DOMAIN
    #[command(after_help = "Example:\n  vmailctl alias-domain add example.net example.com")]
    Add {
        /// The new name (a domain not otherwise known)
        alias: String,
        /// The domain it stands for
        domain: String,
    },
    /// Remove an alias domain
    #[command(after_help = "Example:\n  vmailctl alias-domain delete example.net")]
    Delete {
        /// The alias domain
        alias: String,
        /// Even while aliases point into it
        #[arg(long)]
        force: bool,
    },
    /// Point an alias domain at another domain
    #[command(after_help = "\
Refused when an alias or catch-all pointing into ALIAS delivers today and would
then fail or deliver to other mailboxes, unless --force.

Example:
  vmailctl alias-domain move example.net example.org")]
    Move {
        /// The alias domain
        alias: String,
        /// The domain it is to stand for
        domain: String,
        /// Even when aliases pointing into it would then fail or deliver elsewhere
        #[arg(long)]
        force: bool,
    },
    /// List alias domains (of DOMAIN, or all)
    #[command(after_help = "Example:\n  vmailctl alias-domain list example.com")]
    List {
        /// Only this domain's [default: every domain]
        domain: Option<String>,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Add an account
    #[command(after_help = "\
The password is read from the terminal (--password) or from the first line of
standard input (--password-stdin), never from the command line.

Refused when the Maildir is already on disk (a deleted account's mail would go
to the new one) or is the same as, inside or around another account's, unless
--reuse-maildir.

Examples:
  vmailctl account add alice@example.com --password
  printf '%s\\n' \"$pw\" | vmailctl account add bob@example.com --password-stdin --quota-bytes 1G
  vmailctl account add carol@example.com --maildir example.com/c/carol/Maildir/")]
    Add {
        /// The new account's address (local@domain)
        address: String,
        /// Maildir path relative to mail.root [default: DOMAIN/LOCAL/Maildir/]
        #[arg(long)]
        maildir: Option<String>,
        /// Ask for a password on the terminal
        #[arg(long, conflicts_with = "password_stdin")]
        password: bool,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// Own quota (else the domain's default): bytes or 500M, 2G, …; 0 = unlimited
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        quota_bytes: Option<i64>,
        /// Own message limit (else the domain's default); 0 = unlimited
        #[arg(long, value_name = "N", value_parser = parse_count)]
        quota_messages: Option<i64>,
        /// Add it disabled
        #[arg(long)]
        disabled: bool,
        /// Accept a Maildir already on disk (its mail goes to the new
        /// account) or shared with another account
        #[arg(long)]
        reuse_maildir: bool,
        /// The holder's real name (one line)
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
        /// A note for the postmaster (one line)
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Delete an account (its Maildir stays unless --purge)
    #[command(after_help = "\
Refused when an alias or catch-all that delivers today would stop delivering,
unless --force.

Examples:
  vmailctl account delete alice@example.com
  vmailctl account delete alice@example.com --purge")]
    Delete {
        /// The account's address (local@domain)
        address: String,
        /// Even when an alias or catch-all would stop delivering
        #[arg(long)]
        force: bool,
        /// Also remove the Maildir from disk (beneath mail.root only, never through a symlink)
        #[arg(long)]
        purge: bool,
    },
    /// List accounts (of DOMAIN, or all)
    #[command(after_help = "Example:\n  vmailctl account list example.com --json")]
    List {
        /// Only this domain's [default: every domain]
        domain: Option<String>,
    },
    /// Show one account
    #[command(after_help = "Example:\n  vmailctl account show alice@example.com --json")]
    Show {
        /// The account's address (local@domain)
        address: String,
    },
    /// Set the password (from the terminal, --password-stdin, or --random)
    #[command(after_help = "\
The new password is asked for twice on the terminal with echo off, read from
the first line of standard input (--password-stdin), or made up (--random:
20 letters and digits, without 0 O o 1 l I, printed once on standard output,
never stored in clear). It is stored with the configured scheme ([password]
scheme; see vmailctl password-schemes).

Examples:
  vmailctl account password alice@example.com
  printf '%s\\n' \"$pw\" | vmailctl account password alice@example.com --password-stdin
  vmailctl account password alice@example.com --random")]
    Password {
        /// The account's address (local@domain)
        address: String,
        /// Read the password from the first line of standard input
        #[arg(long, conflicts_with = "random")]
        password_stdin: bool,
        /// Make up a random password and print it once
        #[arg(long)]
        random: bool,
    },
    /// Set the holder's real name and/or the note ('' clears one)
    #[command(after_help = "\
Examples:
  vmailctl account set alice@example.com --name 'Alice Smith'
  vmailctl account set alice@example.com --note 'Sales; laptop and phone'
  vmailctl account set alice@example.com --note ''")]
    Set {
        /// The account's address (local@domain)
        address: String,
        /// The holder's real name (one line)
        #[arg(long, value_name = "TEXT", required_unless_present = "note")]
        name: Option<String>,
        /// A note for the postmaster (one line)
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Which services the account may log in to: IMAP, POP3, SMTP AUTH, ManageSieve
    #[command(after_help = "\
Each service is on unless turned off. Dovecot's passdb query from the guide
refuses a login to a service that is off (SMTP covers Dovecot's smtp and
submission services; sieve is ManageSieve). Delivery is not affected. Without
options, shows them.

Examples:
  vmailctl account services alice@example.com --imap off --pop3 off
  vmailctl account services alice@example.com --sieve on
  vmailctl account services alice@example.com")]
    Services {
        /// The account's address (local@domain)
        address: String,
        /// IMAP logins
        #[arg(long, value_enum, value_name = "on|off")]
        imap: Option<OnOff>,
        /// POP3 logins
        #[arg(long, value_enum, value_name = "on|off")]
        pop3: Option<OnOff>,
        /// SMTP AUTH (Dovecot's smtp and submission services)
        #[arg(long, value_enum, value_name = "on|off")]
        smtp: Option<OnOff>,
        /// ManageSieve
        #[arg(long, value_enum, value_name = "on|off")]
        sieve: Option<OnOff>,
    },
    /// Give an account another address; its Maildir moves along
    #[command(after_help = "\
The home directory DOMAIN/LOCAL/ (the Maildir, the Sieve scripts) becomes
NEWDOMAIN/NEWLOCAL/ by one rename on the same filesystem, never overwriting;
a Maildir set elsewhere (--maildir) keeps its path. Aliases and catch-alls
pointing at the old address point at the new one, in the same transaction.

Refused when NEW is already an account, an alias or a relocated address, or
when NEWDOMAIN/NEWLOCAL/ already exists on disk. If it is interrupted (a
crash), running the same command again finishes it.

Examples:
  vmailctl account rename alice@example.com alice.smith@example.com
  vmailctl account rename bob@example.com bob@example.org")]
    Rename {
        /// The account's address now (local@domain)
        old: String,
        /// Its new address (local@domain, in any domain here)
        new: String,
        /// Also when an alias or catch-all would stop delivering
        #[arg(long)]
        force: bool,
    },
    /// Set the account's own limits, or --inherit the domain's
    #[command(after_help = "\
Examples:
  vmailctl account quota alice@example.com --bytes 5G --messages 100000
  vmailctl account quota alice@example.com --bytes unlimited
  vmailctl account quota alice@example.com --inherit")]
    Quota {
        /// The account's address (local@domain)
        address: String,
        /// Quota: bytes or 500M, 2G, … (binary units); 0 or unlimited = none
        #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "inherit")]
        bytes: Option<i64>,
        /// Message limit; 0 or unlimited = none
        #[arg(long, value_name = "N", value_parser = parse_count, conflicts_with = "inherit")]
        messages: Option<i64>,
        /// Use the domain's defaults
        #[arg(long, required_unless_present_any = ["bytes", "messages"])]
        inherit: bool,
    },
    /// Stop delivering to an account (mail to it bounces with #5.2.1)
    #[command(after_help = "\
Refused when an alias or catch-all pointing at the account delivers today (it
would then defer), unless --force.

Example:
  vmailctl account disable alice@example.com")]
    Disable {
        /// The account's address (local@domain)
        address: String,
        /// Even when an alias or catch-all pointing at it delivers today
        #[arg(long)]
        force: bool,
    },
    /// Deliver to a disabled account again
    #[command(after_help = "Example:\n  vmailctl account enable alice@example.com")]
    Enable {
        /// The account's address (local@domain)
        address: String,
    },
    /// Junk routing for this account: on, off, or the site's default
    #[command(after_help = "\
With Junk routing on, a message the spam scanner's verdict header marks as
spam goes to the account's Junk folder ([junk] folder) instead of INBOX,
unless the account's own Sieve script files it elsewhere. 'default' (or
'inherit') follows the site's junk.enabled again.

Examples:
  vmailctl account junk alice@example.com on
  vmailctl account junk alice@example.com off
  vmailctl account junk alice@example.com default")]
    Junk {
        /// The account's address (local@domain)
        address: String,
        /// on, off, or default (follow the site's junk.enabled)
        #[arg(value_enum)]
        setting: JunkSetting,
    },
}

/// A service's setting in `vmailctl account services`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// `vmailctl account junk`'s setting, stored in `accounts.junk`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum JunkSetting {
    On,
    Off,
    #[value(alias = "inherit")]
    Default,
}

impl JunkSetting {
    /// The column's value: NULL follows the site's default.
    fn column(self) -> Option<bool> {
        match self {
            JunkSetting::On => Some(true),
            JunkSetting::Off => Some(false),
            JunkSetting::Default => None,
        }
    }
}

#[derive(Subcommand)]
enum AliasCmd {
    /// Add destinations to an alias
    #[command(after_help = "\
A destination equal to the address itself keeps a copy in its own mailbox.
%n, %d and %= stand for the local part, the domain and local=domain as
addressed. Refused when the alias would not deliver (no such destination, a
loop), unless --force.

Examples:
  vmailctl alias add team@example.com alice@example.com bob@remote.org
  vmailctl alias add alice@example.com alice@example.com alice@home.example
  vmailctl alias add %n@example.net %n@example.com")]
    Add {
        /// The alias (local@domain; %n@domain for every local part)
        address: String,
        /// Where its mail goes: addresses here or elsewhere
        #[arg(required = true)]
        destinations: Vec<String>,
        /// Even when the alias would not deliver (no such destination, a loop)
        #[arg(long)]
        force: bool,
    },
    /// Remove the given destinations of an alias, or all of them
    #[command(after_help = "\
Examples:
  vmailctl alias delete team@example.com bob@remote.org
  vmailctl alias delete team@example.com")]
    Delete {
        /// The alias
        address: String,
        /// The destinations to remove [default: all of them]
        destinations: Vec<String>,
        /// Even when an alias or catch-all that delivers through it would stop delivering
        #[arg(long)]
        force: bool,
    },
    /// List aliases (of DOMAIN, or all)
    #[command(after_help = "Example:\n  vmailctl alias list example.com --json")]
    List {
        /// Only this domain's [default: every domain]
        domain: Option<String>,
    },
    /// Show one alias and its destinations
    #[command(after_help = "Example:\n  vmailctl alias show team@example.com --json")]
    Show {
        /// The alias's address
        address: String,
    },
}

#[derive(Subcommand)]
enum CatchallCmd {
    /// Add catch-all destinations to a domain
    #[command(after_help = "\
Examples:
  vmailctl catchall add example.com postmaster@example.com
  vmailctl catchall add example.com %n@legacy.example")]
    Add {
        /// The domain
        domain: String,
        /// Where mail to its unknown addresses goes (%n stands for the local part)
        #[arg(required = true)]
        destinations: Vec<String>,
        /// Even when the catch-all would not deliver (no such destination, a loop)
        #[arg(long)]
        force: bool,
    },
    /// Remove the given catch-all destinations, or all of them
    #[command(after_help = "\
Refused when an alias or catch-all that delivers today through this catch-all
would stop delivering or deliver elsewhere, unless --force.

Example:
  vmailctl catchall delete example.com postmaster@example.com")]
    Delete {
        /// The domain
        domain: String,
        /// The destinations to remove [default: all of them]
        destinations: Vec<String>,
        /// Even when mail delivered through it today would stop or go elsewhere
        #[arg(long)]
        force: bool,
    },
    /// List catch-alls (of DOMAIN, or all)
    #[command(after_help = "Example:\n  vmailctl catchall list")]
    List {
        /// Only this domain's [default: every domain]
        domain: Option<String>,
    },
    /// Show the catch-all destinations of one domain
    #[command(after_help = "\
Exit 1 when the domain has no catch-all.

Example:
  vmailctl catchall show example.com")]
    Show {
        /// The domain
        domain: String,
    },
}

#[derive(Subcommand)]
enum RelocatedCmd {
    /// Record that ADDRESS has moved to NEW_ADDRESS
    #[command(after_help = "\
Refused when an alias or catch-all pointing at ADDRESS delivers today (it would
then defer), unless --force.

Example:
  vmailctl relocated add old@example.com new@example.org")]
    Add {
        /// The old address (local@domain)
        address: String,
        /// Where its owner can be reached now (named in the bounce)
        new_address: String,
        /// Even when an alias or catch-all pointing at ADDRESS delivers today
        #[arg(long)]
        force: bool,
    },
    /// Forget a relocated address
    #[command(after_help = "Example:\n  vmailctl relocated delete old@example.com")]
    Delete {
        /// The relocated address
        address: String,
        /// Even when mail to it would then be delivered elsewhere or fail
        #[arg(long)]
        force: bool,
    },
    /// List relocated addresses (of DOMAIN, or all)
    #[command(after_help = "Example:\n  vmailctl relocated list example.com")]
    List {
        /// Only this domain's [default: every domain]
        domain: Option<String>,
    },
    /// Show where one relocated address has moved to
    #[command(after_help = "Example:\n  vmailctl relocated show old@example.com")]
    Show {
        /// The relocated address
        address: String,
    },
}

#[derive(Subcommand)]
enum SieveCmd {
    /// Compile a script file and report the first error (needs no database)
    #[command(after_help = "\
Prints 'FILE: ok' and exits 0, or prints 'FILE: line N: what is wrong' and
exits 1. The compiler is the one vdeliver uses.

Examples:
  vmailctl sieve check roundcube.sieve
  vmailctl sieve check - < filters.sieve")]
    Check {
        /// The script ('-' for standard input)
        file: PathBuf,
    },
    /// List an account's scripts, marking the active one
    #[command(after_help = "\
Scripts are HOME/sieve/NAME.sieve, HOME being the directory holding the
Maildir; the active one is the symlink HOME/.dovecot.sieve, as Dovecot's
ManageSieve keeps them.

Example:
  vmailctl sieve list alice@example.com --json")]
    List {
        /// The account's address (local@domain)
        address: String,
    },
    /// Print a script
    #[command(
        after_help = "Example:\n  vmailctl sieve get alice@example.com roundcube > roundcube.sieve"
    )]
    Get {
        /// The account's address (local@domain)
        address: String,
        /// The script's name (without .sieve)
        name: String,
    },
    /// Store a script (compiled first; a script that does not compile is refused)
    #[command(after_help = "\
Reads FILE, or standard input when FILE is '-' or not given. A script that
does not compile is refused (exit 1) and nothing is written. Replacing the
active script changes what runs at the next delivery.

Examples:
  vmailctl sieve put alice@example.com filters filters.sieve
  vmailctl sieve put alice@example.com filters - < filters.sieve")]
    Put {
        /// The account's address (local@domain)
        address: String,
        /// The script's name (without .sieve)
        name: String,
        /// The script ('-' or absent: standard input)
        file: Option<PathBuf>,
    },
    /// Make a script the active one (the .dovecot.sieve symlink)
    #[command(after_help = "\
Refused when the script does not exist or does not compile, or when
.dovecot.sieve is a regular file (written by hand; it would be lost).

Example:
  vmailctl sieve activate alice@example.com filters")]
    Activate {
        /// The account's address (local@domain)
        address: String,
        /// The script's name (without .sieve)
        name: String,
    },
    /// Run no script (removes the .dovecot.sieve symlink)
    #[command(after_help = "\
A regular file .dovecot.sieve is refused: it is not a managed script.

Example:
  vmailctl sieve deactivate alice@example.com")]
    Deactivate {
        /// The account's address (local@domain)
        address: String,
    },
    /// Delete a script (the active one only with --force)
    #[command(after_help = "\
Examples:
  vmailctl sieve delete alice@example.com old
  vmailctl sieve delete alice@example.com filters --force")]
    Delete {
        /// The account's address (local@domain)
        address: String,
        /// The script's name (without .sieve)
        name: String,
        /// Delete the active script too, deactivating it (no script runs)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct VacationArgs {
    /// The account's address (local@domain)
    address: String,
    /// on, off, or status [default: status]
    #[arg(value_enum)]
    verb: Option<VacationVerb>,
    /// The reply's subject (on)
    #[arg(long)]
    subject: Option<String>,
    /// The reply's text, UTF-8 ('-' for standard input; required for on)
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// First day of replies, YYYY-MM-DD (on)
    #[arg(long, value_name = "DATE")]
    from: Option<String>,
    /// Last day of replies, YYYY-MM-DD (on)
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
    /// Reply to the same sender at most once in N days (on)
    #[arg(long, value_name = "N")]
    days: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VacationVerb {
    On,
    Off,
    Status,
}

fn parse_size(s: &str) -> Result<i64, String> {
    admin::parse_size(s).map_err(|e| e.to_string())
}

fn parse_count(s: &str) -> Result<i64, String> {
    admin::parse_count(s).map_err(|e| e.to_string())
}

/// What a command prints: text lines, or the JSON value.
struct Report {
    text: String,
    json: serde_json::Value,
    /// 0, or 1 for a result that is itself a failure (a failed check).
    code: u8,
    /// Bytes to print as they are instead of `text` (a script).
    raw: Option<Vec<u8>>,
}

impl Report {
    fn new(text: impl Into<String>, json: impl Serialize) -> anyhow::Result<Report> {
        Ok(Report {
            text: text.into(),
            json: serde_json::to_value(json)?,
            code: 0,
            raw: None,
        })
    }
}

/// The command line, parsed; a usage error exits 2 (clap's message on
/// standard error, or with `--json` a JSON error of kind "usage" on
/// standard output). Help and version are printed as clap does.
fn parse_cli() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if std::env::args_os().skip(1).any(|a| a == "--json") => {
            // clap's text up to its usage lines, on one line.
            let text = e.render().to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            println!("{}", error_json("usage", message));
            std::process::exit(2)
        }
        Err(e) => e.exit(),
    }
}

fn main() -> ExitCode {
    let cli = parse_cli();
    if let Some(out) = generated(&cli.command) {
        return match out.and_then(|bytes| {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
            Ok(())
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vmailctl: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let json = cli.json;
    match run(cli) {
        Ok(r) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r.json).unwrap_or_default()
                );
            } else if let Some(raw) = &r.raw {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                if let Err(e) = out.write_all(raw).and_then(|()| out.flush()) {
                    eprintln!("vmailctl: standard output: {e}");
                    return ExitCode::from(1);
                }
            } else if !r.text.is_empty() {
                println!("{}", r.text.trim_end_matches('\n'));
            }
            ExitCode::from(r.code)
        }
        Err(e) => {
            let admin = e.downcast_ref::<AdminError>();
            let code = admin.map_or(1, AdminError::exit_code);
            if json {
                // Anything that is not an AdminError is a failure of
                // vmailctl's own (reading a file, writing JSON): "io".
                let kind = admin.map_or("io", AdminError::kind);
                println!("{}", error_json(kind, &format!("{e:#}")));
            } else {
                eprintln!("vmailctl: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}

/// A failure as `--json` prints it on standard output:
/// `{"error": {"kind": "not_found", "message": "…"}}`.
fn error_json(kind: &str, message: &str) -> String {
    serde_json::to_string_pretty(&json!({"error": {"kind": kind, "message": message}}))
        .unwrap_or_default()
}

fn config_path(cli: &Option<PathBuf>) -> PathBuf {
    let env_config = std::env::var("VDELIVER_CONFIG").ok();
    config::choose_path(cli.as_deref(), env_config.as_deref())
}

fn load(path: &Path) -> Result<Config, AdminError> {
    config::load(path).map_err(|e| AdminError::Config(format!("configuration: {e}")))
}

fn run(cli: Cli) -> anyhow::Result<Report> {
    let path = config_path(&cli.config);
    // Commands that need no database connection of their own.
    match &cli.command {
        Command::Check { user } => return check(&path, user.as_deref()),
        Command::Resolve {
            address,
            sender,
            fallback,
            message,
        } => {
            let cfg = load(&path)?;
            let message = match message {
                Some(m) => Some(read_input(Some(m))?),
                None => None,
            };
            return resolve(
                &cfg,
                address,
                sender.as_deref(),
                fallback.as_deref(),
                message.as_deref(),
            );
        }
        Command::Explain { address } => {
            let cfg = load(&path)?;
            return explain(&cfg, address);
        }
        Command::Sieve(SieveCmd::Check { file }) => return sieve_check(file),
        Command::PasswordSchemes => return password_schemes(load(&path).ok().as_ref()),
        _ => {}
    }
    let cfg = load(&path)?;
    // Validate what needs no database, and read the password, first.
    let mut random_password = None;
    let password_hash = match &cli.command {
        Command::Account(AccountCmd::Add {
            password,
            password_stdin,
            ..
        }) if *password || *password_stdin => Some(read_password(&cfg, *password_stdin)?),
        Command::Account(AccountCmd::Password { random: true, .. }) => {
            let pw = password::random(password::RANDOM_LEN).map_err(AdminError::Failed)?;
            let hash =
                password::hash(cfg.password.scheme, pw.as_bytes()).map_err(AdminError::Failed)?;
            random_password = Some(pw);
            Some(hash)
        }
        Command::Account(AccountCmd::Password { password_stdin, .. }) => {
            Some(read_password(&cfg, *password_stdin)?)
        }
        _ => None,
    };
    // A script to put is read (and compiled) before the database is asked.
    let script = match &cli.command {
        Command::Sieve(SieveCmd::Put { name, file, .. }) => {
            let bytes = read_input(file.as_deref())?;
            admin::sieve::script_name(name)?;
            if let Err(e) = vdeliver::sieve::compile(&bytes) {
                return Err(AdminError::Conflict(format!(
                    "{}: {e}; not stored",
                    shown_input(file.as_deref())
                ))
                .into());
            }
            Some(bytes)
        }
        _ => None,
    };
    // So are the vacation's options and body.
    let vacation_settings = match &cli.command {
        Command::Vacation(v) => vacation_settings(v)?,
        _ => None,
    };
    let mut client = db::connect(&cfg.database, "vmailctl")
        .map_err(|e| AdminError::Database(format!("cannot reach the database: {e}")))?;
    let c = &mut client;
    let rules = deliver::rules(&cfg, None).map_err(|f| AdminError::Config(f.text))?;
    match cli.command {
        Command::Check { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Resolve { .. }
        | Command::Explain { .. }
        | Command::PasswordSchemes
        | Command::Sieve(SieveCmd::Check { .. }) => {
            unreachable!("handled above")
        }
        Command::Migrate => {
            let (before, after) = admin::migrate(c)?;
            let repaired = admin::resync(c)?;
            let mut text = if before == after {
                format!("schema is at version {after}, nothing to do")
            } else {
                format!("schema migrated from version {before} to {after}")
            };
            if repaired > 0 {
                text += &format!(
                    "; repaired {repaired} {} of the lookup's copies (their triggers had not run)",
                    if repaired == 1 { "row" } else { "rows" }
                );
            }
            Report::new(
                text,
                json!({"before": before, "after": after, "repaired": repaired}),
            )
        }
        Command::Domain(cmd) => domain(c, &cfg, &rules, cmd),
        Command::AliasDomain(cmd) => alias_domain(c, &rules, cmd),
        Command::Account(cmd) => account(c, &cfg, &rules, cmd, password_hash, random_password),
        Command::Alias(cmd) => alias(c, &rules, cmd),
        Command::Catchall(cmd) => catchall(c, &rules, cmd),
        Command::Relocated(cmd) => relocated(c, &rules, cmd),
        Command::Quota { address, recalc } => quota(c, &cfg, &address, recalc),
        Command::Sieve(cmd) => sieve(c, &cfg, cmd, script),
        Command::Vacation(v) => vacation(c, &cfg, &v, vacation_settings),
    }
}

fn read_password(cfg: &Config, from_stdin: bool) -> anyhow::Result<String> {
    let pw = if from_stdin {
        password::read_line(&mut std::io::stdin().lock())
    } else {
        password::prompt("New password")
    }
    .map_err(AdminError::Invalid)?;
    Ok(password::hash(cfg.password.scheme, pw.as_bytes()).map_err(AdminError::Failed)?)
}

fn settings(opts: DomainOpts, active: Option<bool>) -> DomainSettings {
    DomainSettings {
        quota_bytes: opts.quota_bytes,
        quota_messages: opts.quota_messages,
        active,
        note: opts.note,
    }
}

fn domain_text(d: &admin::Domain) -> String {
    let mut t = format!(
        "domain:         {}\nactive:         {}\nquota:          {}, {} (account default)\n\
         accounts:       {}\naliases:        {}\nrelocated:      {}\n",
        both_forms(&d.name),
        yes_no(d.active),
        human_limit(d.quota_bytes),
        messages_limit(d.quota_messages),
        d.accounts,
        d.aliases,
        d.relocated
    );
    let ads: Vec<String> = d.alias_domains.iter().map(|a| both_forms(a)).collect();
    t += &format!(
        "alias domains:  {}\n",
        if ads.is_empty() {
            "-".into()
        } else {
            ads.join(", ")
        }
    );
    t += &format!(
        "catch-all:      {}\n",
        if d.catchalls.is_empty() {
            "-".into()
        } else {
            d.catchalls.join(", ")
        }
    );
    if !d.note.is_empty() {
        t += &format!("note:           {}\n", d.note);
    }
    t += &format!("created:        {}", d.created_at);
    t
}

/// A message limit with its noun: `1 message`, `50000 messages`,
/// `unlimited messages`.
fn messages_limit(n: Option<i64>) -> String {
    match n {
        Some(n) if n > 0 => count_of(n, "message", "messages"),
        _ => format!("{} messages", human_count(n)),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn domain(
    c: &mut postgres::Client,
    cfg: &Config,
    rules: &vdeliver::plan::Rules,
    cmd: DomainCmd,
) -> anyhow::Result<Report> {
    match cmd {
        DomainCmd::Add {
            domain,
            opts,
            disabled,
        } => {
            let d = admin::domain_add_with(c, &domain, &settings(opts, Some(!disabled)))?;
            Report::new(format!("added domain {}", both_forms(&d.name)), d)
        }
        DomainCmd::Set {
            domain,
            opts,
            disable,
            enable,
            force,
        } => {
            let active = match (disable, enable) {
                (true, _) => Some(false),
                (_, true) => Some(true),
                _ => None,
            };
            let (d, warnings) =
                admin::domain_set(c, rules, &domain, &settings(opts, active), force)?;
            let mut text = domain_text(&d);
            warn(&warnings, &mut text);
            Report::new(text, d)
        }
        DomainCmd::Delete {
            domain,
            force,
            purge,
        } => {
            let del = admin::domain_delete(c, &domain, force)?;
            let mut text = format!("deleted domain {}", both_forms(&del.name));
            let purged = purge_all(c, cfg, &del.maildirs, purge, &mut text)?;
            warn(&del.warnings, &mut text);
            Report::new(text, json!({"deleted": del, "purged": purged}))
        }
        DomainCmd::List => {
            let v = admin::domain_list(c)?;
            let mut t = String::new();
            for d in &v {
                t += &format!(
                    "{}{}  accounts {}  quota {}/{} msgs{}\n",
                    both_forms(&d.name),
                    if d.active { "" } else { "  (disabled)" },
                    d.accounts,
                    human_limit(d.quota_bytes),
                    human_count(d.quota_messages),
                    if d.alias_domains.is_empty() {
                        String::new()
                    } else {
                        format!("  alias domains {}", d.alias_domains.join(", "))
                    }
                );
            }
            Report::new(t, v)
        }
        DomainCmd::Show { domain } => {
            let d = admin::domain_show(c, &domain)?;
            Report::new(domain_text(&d), d)
        }
        DomainCmd::Addresses { domain } => {
            let v = admin::domain_addresses(c, &domain)?;
            let width = v.iter().map(|a| a.address.len()).max().unwrap_or(0);
            let t: String = v
                .iter()
                .map(|a| {
                    let kind = a.kind.replace('_', " ");
                    let to = match a.kind {
                        "account" => String::new(),
                        "alias_domain" => {
                            format!("  (another name for {})", a.destinations.join(", "))
                        }
                        _ => format!("  -> {}", a.destinations.join(", ")),
                    };
                    let line = format!("{:<width$}  {kind:<12}{to}", a.address);
                    format!("{}\n", line.trim_end())
                })
                .collect();
            Report::new(t, v)
        }
    }
}

/// Purge each Maildir (when asked), reporting what happened; the first
/// failure fails the command after the others were tried.
fn purge_all(
    c: &mut postgres::Client,
    cfg: &Config,
    maildirs: &[String],
    purge: bool,
    text: &mut String,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    let mut first_err = None;
    for m in maildirs {
        if !purge {
            *text += &format!("\nMaildir {m} left on disk (use --purge to remove it)");
            continue;
        }
        match admin::purge_maildir(c, &cfg.mail.root, m) {
            Ok(p) => {
                *text += &format!(
                    "\nMaildir {m}: {}",
                    match p {
                        admin::Purged::Removed => "removed",
                        admin::Purged::Absent => "was not on disk",
                    }
                );
                out.push(json!({"maildir": m, "purged": p}));
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(anyhow::Error::new(e).context("the database change is done, but")),
        None => Ok(out),
    }
}

fn warn(warnings: &[String], text: &mut String) {
    for w in warnings {
        *text += &format!("\nwarning (forced): {w}");
    }
}

fn alias_domain(
    c: &mut postgres::Client,
    rules: &vdeliver::plan::Rules,
    cmd: AliasDomainCmd,
) -> anyhow::Result<Report> {
    match cmd {
        AliasDomainCmd::Add { alias, domain } => {
            let a = admin::alias_domain_add(c, &alias, &domain)?;
            let d = admin::domain_name(&domain)?;
            Report::new(
                format!(
                    "added alias domain {} of {}",
                    both_forms(&a),
                    both_forms(&d)
                ),
                json!({"name": a, "unicode": admin::unicode(&a), "domain": d}),
            )
        }
        AliasDomainCmd::Delete { alias, force } => {
            let del = admin::alias_domain_delete(c, &alias, force)?;
            let mut text = format!("deleted alias domain {}", both_forms(&del.name));
            warn(&del.warnings, &mut text);
            Report::new(text, del)
        }
        AliasDomainCmd::Move {
            alias,
            domain,
            force,
        } => {
            let (a, warnings) = admin::alias_domain_move(c, rules, &alias, &domain, force)?;
            let mut text = format!(
                "alias domain {} now belongs to {}",
                both_forms(&a.name),
                both_forms(&a.domain)
            );
            warn(&warnings, &mut text);
            Report::new(text, a)
        }
        AliasDomainCmd::List { domain } => {
            let v = admin::alias_domain_list(c, domain.as_deref())?;
            let t: String = v
                .iter()
                .map(|a| format!("{} -> {}\n", both_forms(&a.name), a.domain))
                .collect();
            Report::new(t, v)
        }
    }
}

/// An account's Junk routing, as `account show` and `resolve` print it:
/// `on (own)`, `off (site default)`, …
fn junk_text(own: Option<bool>, site: bool) -> String {
    let on_off = |b: bool| if b { "on" } else { "off" };
    match own {
        Some(b) => format!("{} (own)", on_off(b)),
        None => format!("{} (site default, junk.enabled)", on_off(site)),
    }
}

/// An account as `--json` prints it: its columns, and the Junk routing
/// that applies (its own, else the site's), which the database does not
/// know.
fn account_json(a: &admin::Account, site_junk: bool) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(a)?;
    v["effective_junk"] = json!(a.junk.unwrap_or(site_junk));
    Ok(v)
}

/// The services an account may log in to, as `account show` prints
/// them: `imap pop3 smtp sieve`, `imap sieve (off: pop3 smtp)`, `none`.
fn services_text(s: &admin::Services) -> String {
    let (on, off): (Vec<_>, Vec<_>) = admin::Service::ALL.iter().partition(|x| x.of(s));
    let names = |v: &[&admin::Service]| v.iter().map(|x| x.name()).collect::<Vec<_>>().join(" ");
    match (on.is_empty(), off.is_empty()) {
        (_, true) => names(&on),
        (true, _) => "none (cannot log in anywhere)".to_string(),
        _ => format!("{} (off: {})", names(&on), names(&off)),
    }
}

fn account_text(a: &admin::Account, site_junk: bool) -> String {
    format!(
        "account:        {}\nname:           {}\nactive:         {}{}\nMaildir:        {}\n\
         password:       {}\nservices:       {}\n\
         quota:          {} ({}), {} ({})\njunk:           {}\nnote:           {}\n\
         created:        {}",
        a.address,
        a.real_name,
        yes_no(a.active),
        if a.domain_active {
            ""
        } else {
            " (but its domain is disabled)"
        },
        a.maildir,
        a.password_scheme
            .as_deref()
            .map_or("none (cannot log in)".to_string(), |s| format!("set ({s})")),
        services_text(&a.services),
        human_limit(a.effective_quota_bytes),
        if a.quota_bytes.is_some() {
            "own"
        } else {
            "domain default"
        },
        messages_limit(a.effective_quota_messages),
        if a.quota_messages.is_some() {
            "own"
        } else {
            "domain default"
        },
        junk_text(a.junk, site_junk),
        a.note,
        a.created_at
    )
}

fn account(
    c: &mut postgres::Client,
    cfg: &Config,
    rules: &vdeliver::plan::Rules,
    cmd: AccountCmd,
    password_hash: Option<String>,
    random_password: Option<String>,
) -> anyhow::Result<Report> {
    match cmd {
        AccountCmd::Add {
            address,
            maildir,
            quota_bytes,
            quota_messages,
            disabled,
            reuse_maildir,
            name,
            note,
            ..
        } => {
            let new = admin::NewAccount {
                maildir,
                password_hash,
                quota_bytes,
                quota_messages,
                active: !disabled,
                mail_root: Some(cfg.mail.root.clone()),
                reuse_maildir,
                real_name: name.unwrap_or_default(),
                note: note.unwrap_or_default(),
            };
            let a = admin::account_add(c, &address, &new)?;
            Report::new(
                format!("added account {} with Maildir {}", a.address, a.maildir),
                a,
            )
        }
        AccountCmd::Delete {
            address,
            force,
            purge,
        } => {
            let del = admin::account_delete(c, rules, &address, force)?;
            let mut text = format!("deleted account {}", del.name);
            let purged = purge_all(c, cfg, &del.maildirs, purge, &mut text)?;
            warn(&del.warnings, &mut text);
            Report::new(text, json!({"deleted": del, "purged": purged}))
        }
        AccountCmd::List { domain } => {
            let v = admin::account_list(c, domain.as_deref())?;
            let t: String = v
                .iter()
                .map(|a| {
                    format!(
                        "{}{}{}  {}  quota {}/{} msgs{}{}{}\n",
                        a.address,
                        if a.real_name.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", a.real_name)
                        },
                        if a.active { "" } else { "  (disabled)" },
                        a.maildir,
                        human_limit(a.effective_quota_bytes),
                        human_count(a.effective_quota_messages),
                        // Only an account's own setting: the site's
                        // default is said once, in the configuration.
                        match a.junk {
                            Some(true) => "  junk on",
                            Some(false) => "  junk off",
                            None => "",
                        },
                        // Only services turned off: all on is the default.
                        if admin::Service::ALL.iter().all(|x| x.of(&a.services)) {
                            String::new()
                        } else {
                            format!("  services {}", services_text(&a.services))
                        },
                        if a.note.is_empty() {
                            String::new()
                        } else {
                            format!("  note: {}", a.note)
                        }
                    )
                })
                .collect();
            let json = v
                .iter()
                .map(|a| account_json(a, cfg.junk.enabled))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Report::new(t, json)
        }
        AccountCmd::Show { address } => {
            let a = admin::account_show(c, &address)?;
            Report::new(
                account_text(&a, cfg.junk.enabled),
                account_json(&a, cfg.junk.enabled)?,
            )
        }
        AccountCmd::Junk { address, setting } => {
            let a = admin::account_junk(c, &address, setting.column())?;
            Report::new(
                account_text(&a, cfg.junk.enabled),
                account_json(&a, cfg.junk.enabled)?,
            )
        }
        AccountCmd::Password { address, .. } => {
            let hash = password_hash.context("no password was read")?;
            let a = admin::account_password(c, &address, &hash)?;
            match random_password {
                // Printed once, here: it is stored only as a hash.
                Some(pw) => Report::new(
                    format!(
                        "password of {a} changed ({}); the new password:\n{pw}",
                        cfg.password.scheme
                    ),
                    json!({"address": a, "scheme": cfg.password.scheme, "password": pw}),
                ),
                None => Report::new(
                    format!("password of {a} changed ({})", cfg.password.scheme),
                    json!({"address": a, "scheme": cfg.password.scheme}),
                ),
            }
        }
        AccountCmd::Set {
            address,
            name,
            note,
        } => {
            let a = admin::account_set_info(c, &address, name.as_deref(), note.as_deref())?;
            Report::new(
                account_text(&a, cfg.junk.enabled),
                account_json(&a, cfg.junk.enabled)?,
            )
        }
        AccountCmd::Services {
            address,
            imap,
            pop3,
            smtp,
            sieve,
        } => {
            let changes: Vec<(admin::Service, bool)> = [
                (admin::Service::Imap, imap),
                (admin::Service::Pop3, pop3),
                (admin::Service::Smtp, smtp),
                (admin::Service::Sieve, sieve),
            ]
            .into_iter()
            .filter_map(|(s, v)| v.map(|v| (s, matches!(v, OnOff::On))))
            .collect();
            let a = if changes.is_empty() {
                admin::account_show(c, &address)?
            } else {
                admin::account_services(c, &address, &changes)?
            };
            Report::new(
                format!("{}: {}", a.address, services_text(&a.services)),
                json!({"address": a.address, "services": a.services}),
            )
        }
        AccountCmd::Rename { old, new, force } => {
            let r = admin::account_rename(c, rules, Some(&cfg.mail.root), &old, &new, force)?;
            let mut text = format!("renamed account {} to {}", r.from, r.to);
            text += &match r.moved {
                admin::Moved::Moved => {
                    format!("; Maildir moved from {} to {}", r.maildir_before, r.maildir)
                }
                admin::Moved::Resumed => format!(
                    "; Maildir {} (moved by an interrupted rename, now finished)",
                    r.maildir
                ),
                admin::Moved::NothingOnDisk => format!(
                    "; Maildir {} (nothing on disk yet, so nothing moved)",
                    r.maildir
                ),
                admin::Moved::KeptPath => format!(
                    "; its Maildir {} keeps its path (not in the default layout \
                     DOMAIN/LOCAL/Maildir/, so not moved)",
                    r.maildir
                ),
            };
            if !r.rewritten.is_empty() {
                text += &format!("\npointed at {}: {}", r.to, r.rewritten.join(", "));
            }
            warn(&r.warnings, &mut text);
            Report::new(text, r)
        }
        AccountCmd::Quota {
            address,
            bytes,
            messages,
            inherit,
        } => {
            let a = admin::account_quota(c, &address, bytes, messages, inherit)?;
            Report::new(
                account_text(&a, cfg.junk.enabled),
                account_json(&a, cfg.junk.enabled)?,
            )
        }
        AccountCmd::Disable { address, force } => {
            let (a, warnings) = admin::account_set_active(c, rules, &address, false, force)?;
            let mut text = format!("disabled {a}");
            warn(&warnings, &mut text);
            Report::new(
                text,
                json!({"address": a, "active": false, "warnings": warnings}),
            )
        }
        AccountCmd::Enable { address } => {
            let (a, _) = admin::account_set_active(c, rules, &address, true, false)?;
            Report::new(
                format!("enabled {a}"),
                json!({"address": a, "active": true}),
            )
        }
    }
}

/// `vmailctl password-schemes`; `cfg` marks the configured scheme.
fn password_schemes(cfg: Option<&Config>) -> anyhow::Result<Report> {
    let configured = cfg.map(|c| c.password.scheme.name());
    let v = password::schemes();
    let mut t = String::from("scheme        store  verify  form / note\n");
    for s in &v {
        t += &format!(
            "{:<13} {:<6} {:<7} {}{}\n              {:<6} {:<7} {}\n",
            s.name,
            if s.store { "yes" } else { "no" },
            if s.verify { "yes" } else { "no" },
            s.form,
            if configured == Some(s.name) {
                "  (configured)"
            } else {
                ""
            },
            "",
            "",
            s.note
        );
    }
    let json = json!({"configured": configured, "schemes": v});
    Report::new(t, json)
}

fn changed_text(verb: &str, what: &str, ch: &admin::Changed) -> String {
    let mut t = format!("{verb} {what}{}: {}", ch.name, ch.destinations.join(", "));
    warn(&ch.warnings, &mut t);
    t
}

fn alias(
    c: &mut postgres::Client,
    rules: &vdeliver::plan::Rules,
    cmd: AliasCmd,
) -> anyhow::Result<Report> {
    match cmd {
        AliasCmd::Add {
            address,
            destinations,
            force,
        } => {
            let ch = admin::alias_add(c, rules, &address, &destinations, force)?;
            Report::new(changed_text("alias", "", &ch).replacen(": ", " -> ", 1), ch)
        }
        AliasCmd::Delete {
            address,
            destinations,
            force,
        } => {
            let ch = admin::alias_delete(c, rules, &address, &destinations, force)?;
            Report::new(changed_text("removed from alias", "", &ch), ch)
        }
        AliasCmd::List { domain } => {
            let v = admin::alias_list(c, domain.as_deref())?;
            let t: String = v
                .iter()
                .map(|a| format!("{} -> {}\n", a.address, a.destinations.join(", ")))
                .collect();
            Report::new(t, v)
        }
        AliasCmd::Show { address } => {
            let a = admin::alias_show(c, &address)?;
            Report::new(format!("{} -> {}", a.address, a.destinations.join(", ")), a)
        }
    }
}

fn catchall(
    c: &mut postgres::Client,
    rules: &vdeliver::plan::Rules,
    cmd: CatchallCmd,
) -> anyhow::Result<Report> {
    match cmd {
        CatchallCmd::Add {
            domain,
            destinations,
            force,
        } => {
            let ch = admin::catchall_add(c, rules, &domain, &destinations, force)?;
            Report::new(
                changed_text("catch-all of", "", &ch).replacen(": ", " -> ", 1),
                ch,
            )
        }
        CatchallCmd::Delete {
            domain,
            destinations,
            force,
        } => {
            let ch = admin::catchall_delete(c, rules, &domain, &destinations, force)?;
            Report::new(changed_text("removed from the catch-all of", "", &ch), ch)
        }
        CatchallCmd::List { domain } => {
            let v = admin::catchall_list(c, domain.as_deref())?;
            let t: String = v
                .iter()
                .map(|a| format!("@{} -> {}\n", a.address, a.destinations.join(", ")))
                .collect();
            Report::new(t, v)
        }
        CatchallCmd::Show { domain } => {
            let a = admin::catchall_show(c, &domain)?;
            Report::new(
                format!("@{} -> {}", a.address, a.destinations.join(", ")),
                json!({"domain": a.address, "destinations": a.destinations}),
            )
        }
    }
}

fn relocated(
    c: &mut postgres::Client,
    rules: &vdeliver::plan::Rules,
    cmd: RelocatedCmd,
) -> anyhow::Result<Report> {
    match cmd {
        RelocatedCmd::Add {
            address,
            new_address,
            force,
        } => {
            let r = admin::relocated_add(c, rules, &address, &new_address, force)?;
            let mut text = format!("{} has moved to {}", r.address, r.new_address);
            warn(&r.warnings, &mut text);
            Report::new(text, r)
        }
        RelocatedCmd::Delete { address, force } => {
            let r = admin::relocated_delete(c, rules, &address, force)?;
            let mut text = format!("{} is no longer relocated", r.address);
            warn(&r.warnings, &mut text);
            Report::new(text, r)
        }
        RelocatedCmd::List { domain } => {
            let v = admin::relocated_list(c, domain.as_deref())?;
            let t: String = v
                .iter()
                .map(|r| format!("{} -> {}\n", r.address, r.new_address))
                .collect();
            Report::new(t, v)
        }
        RelocatedCmd::Show { address } => {
            let r = admin::relocated_show(c, &address)?;
            Report::new(format!("{} has moved to {}", r.address, r.new_address), r)
        }
    }
}

fn explain(cfg: &Config, address: &str) -> anyhow::Result<Report> {
    let e = admin::explain(cfg, address).map_err(AdminError::Failed)?;
    let mut t = format!("recipient:  {}\nstatement:  {}\n", e.recipient, e.statement);
    for (i, trip) in e.trips.iter().enumerate() {
        t += &format!("round trip {}: {}\n", i + 1, trip.pairs.join(", "));
        for l in &trip.plan {
            t += &format!("  {l}\n");
        }
        for n in &trip.inner {
            t += "  inside the function:\n";
            for l in n.lines() {
                t += &format!("    {l}\n");
            }
        }
    }
    if let Some(n) = &e.note {
        t += &format!("note: {n}\n");
    }
    Report::new(t.trim_end().to_string(), &e)
}

fn resolve(
    cfg: &Config,
    address: &str,
    sender: Option<&str>,
    fallback: Option<&str>,
    message: Option<&[u8]>,
) -> anyhow::Result<Report> {
    if !address.contains('@') {
        return Err(AdminError::Invalid(format!("bad address {address:?}: no '@'")).into());
    }
    let qmailqueue = std::env::var("QMAILQUEUE").ok();
    let r = admin::dry_run(cfg, address, sender, fallback, qmailqueue.as_deref());
    let mut t = format!(
        "recipient:  {}\nsender:     <{}>\n",
        if r.recipient.is_empty() {
            address
        } else {
            &r.recipient
        },
        r.sender
    );
    if !r.trace.is_empty() {
        t += "resolution:\n";
        for s in &r.trace {
            t += &format!("  {s}\n");
        }
    }
    for m in &r.mailboxes {
        t += &format!(
            "mailbox:    {} ({}{}){}\n            quota: {}\n",
            m.delivers_to,
            m.owner,
            m.folder
                .as_deref()
                .map_or(String::new(), |f| format!(", extension {f}")),
            if m.exists {
                ""
            } else {
                ", created on first delivery"
            },
            match &m.usage {
                Some(u) => usage_text(u),
                None => format!(
                    "{}, {}",
                    human_limit(m.quota_bytes),
                    messages_limit(m.quota_messages)
                ),
            }
        );
        t += &format!(
            "            junk:  {}\n",
            junk_text(m.junk, cfg.junk.enabled)
        );
    }
    for f in &r.forwards {
        t += &format!("forward:    {f}\n");
    }
    if let Some(d) = &r.discard {
        t += &format!("discard:    {d}\n");
    }
    let mut sieve = Vec::new();
    if let Some(msg) = message {
        let env = admin::sieve::dry_run_env(cfg, r.sender.clone(), r.recipient.clone());
        for m in &r.mailboxes {
            let run = admin::sieve::dry_run(cfg, &m.maildir, msg, &env, m.effective_junk)?;
            t += &format!("sieve:      {} ({}): {}\n", m.owner, m.maildir, run.status);
            if let Some(e) = &run.error {
                t += &format!("            {e}\n");
            }
            for a in &run.actions {
                t += &format!("            {a}\n");
            }
            sieve.push(json!({"owner": m.owner, "maildir": m.maildir, "run": run}));
        }
    }
    t += &format!("vdeliver would exit {}: {}", r.exit, r.line);
    for n in &r.notes {
        t += &format!("\nnote: {n}");
    }
    let code = if r.exit == 0 || r.exit == 99 { 0 } else { 1 };
    let mut v = serde_json::to_value(&r)?;
    if message.is_some() {
        v["sieve"] = json!(sieve);
    }
    let mut rep = Report::new(t, v)?;
    rep.code = code;
    Ok(rep)
}

/// `1.2 MiB of 2 GiB, 12 of 50000 messages (1%)`.
fn usage_text(u: &admin::Usage) -> String {
    let bytes = admin::human_size(u.bytes);
    let bytes = if u.limit_bytes == 0 {
        format!("{bytes} (no limit)")
    } else {
        format!("{bytes} of {}", admin::human_size(u.limit_bytes as i64))
    };
    let msgs = if u.limit_messages == 0 {
        format!("{} (no limit)", count_of(u.messages, "message", "messages"))
    } else {
        format!(
            "{} of {}",
            u.messages,
            count_of(u.limit_messages, "message", "messages")
        )
    };
    format!("{bytes}, {msgs} ({}%)", u.percent)
}

fn quota(
    c: &mut postgres::Client,
    cfg: &Config,
    address: &str,
    recalc: bool,
) -> anyhow::Result<Report> {
    let q = admin::quota(c, cfg, address, recalc)?;
    let mut t = format!(
        "account:  {}\nMaildir:  {}\nusage:    {}\nsource:   {}",
        q.address,
        q.maildir,
        usage_text(&q.usage),
        match q.usage.source {
            "maildirsize" => "maildirsize",
            "counted" => "counted (maildirsize not trusted)",
            "recalculated" => "recalculated, maildirsize rewritten",
            _ => "no Maildir yet",
        }
    );
    if let Some(n) = &q.usage.note {
        t += &format!("\nnote:     {n}");
    }
    Report::new(t, q)
}

fn check(path: &Path, user: Option<&str>) -> anyhow::Result<Report> {
    let checks = admin::check(path, user);
    let ok = checks.iter().all(|c| c.ok);
    let t: String = checks
        .iter()
        .map(|c| {
            format!(
                "{:<4} {}: {}\n",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.detail
            )
        })
        .collect();
    let mut rep = Report::new(t, json!({"ok": ok, "checks": checks}))?;
    rep.code = if ok { 0 } else { 1 };
    Ok(rep)
}

/// How an input file is named in messages: its path, or `-`.
fn shown_input(file: Option<&Path>) -> String {
    match file {
        None => "-".to_string(),
        Some(p) => p.display().to_string(),
    }
}

/// A script from FILE, or standard input for `-` or none; at most
/// [`vdeliver::sieve::MAX_SCRIPT_SIZE`] bytes.
fn read_input(file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let max = vdeliver::sieve::MAX_SCRIPT_SIZE;
    let shown = shown_input(file);
    let reader: Box<dyn std::io::Read> = match file {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(
            std::fs::File::open(p).map_err(|e| AdminError::Failed(format!("{shown}: {e}")))?,
        ),
    };
    let mut bytes = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AdminError::Failed(format!("{shown}: {e}")))?;
    if bytes.len() > max {
        return Err(AdminError::Failed(format!("{shown}: larger than {max} bytes")).into());
    }
    Ok(bytes)
}

fn sieve_check(file: &Path) -> anyhow::Result<Report> {
    let shown = file.display().to_string();
    let bytes = read_input(Some(file))?;
    let (t, v, code) = match vdeliver::sieve::compile(&bytes) {
        Ok(_) => (
            format!("{shown}: ok"),
            json!({"file": shown, "ok": true}),
            0,
        ),
        Err(e) => (
            format!("{shown}: {e}"),
            json!({"file": shown, "ok": false, "line": e.line(), "error": e.message()}),
            1,
        ),
    };
    let mut rep = Report::new(t, v)?;
    rep.code = code;
    Ok(rep)
}

/// The settings of `vacation on` (None for off and status), checked and
/// the body read; options given to off or status are refused.
fn vacation_settings(v: &VacationArgs) -> anyhow::Result<Option<admin::vacation::Settings>> {
    let verb = v.verb.unwrap_or(VacationVerb::Status);
    if verb != VacationVerb::On {
        let given = [
            ("--subject", v.subject.is_some()),
            ("--body-file", v.body_file.is_some()),
            ("--from", v.from.is_some()),
            ("--until", v.until.is_some()),
            ("--days", v.days.is_some()),
        ];
        if let Some((opt, _)) = given.iter().find(|(_, g)| *g) {
            return Err(
                AdminError::Invalid(format!("{opt} is an option of `vacation on` only")).into(),
            );
        }
        return Ok(None);
    }
    let file = v.body_file.as_deref().ok_or_else(|| {
        AdminError::Invalid("vacation on needs --body-file FILE (or - for standard input)".into())
    })?;
    let bytes = read_input(Some(file))?;
    let body = String::from_utf8(bytes).map_err(|_| {
        AdminError::Invalid(format!(
            "{}: the body is not UTF-8",
            shown_input(Some(file))
        ))
    })?;
    let set = admin::vacation::Settings {
        subject: v.subject.clone(),
        body,
        from: v.from.as_deref().map(admin::vacation::date).transpose()?,
        until: v.until.as_deref().map(admin::vacation::date).transpose()?,
        days: v.days,
    };
    set.check()?;
    Ok(Some(set))
}

fn vacation(
    c: &mut postgres::Client,
    cfg: &Config,
    args: &VacationArgs,
    set: Option<admin::vacation::Settings>,
) -> anyhow::Result<Report> {
    use admin::sieve::SieveHome;
    use admin::vacation::{self as v, Previous, State};
    let h = SieveHome::of_account(c, cfg, &args.address)?;
    let root = &cfg.mail.root;
    let previous_text = |p: &Option<Previous>| match p {
        Some(Previous::Script(n)) => format!("script {n:?}"),
        Some(Previous::Nothing) => "no script".to_string(),
        Some(Previous::Unrecorded) | None => "unknown (no record in the script)".to_string(),
    };
    match (args.verb.unwrap_or(VacationVerb::Status), set) {
        (VacationVerb::On, Some(set)) => {
            let on = v::on(root, &h, &set)?;
            let then = match &on.previous {
                Some(p) => format!("; then script {p:?} runs, as before"),
                None => String::new(),
            };
            Report::new(
                format!(
                    "vacation {} for {}: script {:?} is active{then}",
                    if on.replaced { "updated" } else { "on" },
                    h.address,
                    v::SCRIPT
                ),
                json!({"address": h.address, "state": State::On, "on": on, "settings": set}),
            )
        }
        (VacationVerb::On, None) => unreachable!("the settings are read before the database"),
        (VacationVerb::Off, _) => {
            let off = v::off(root, &h)?;
            let t = if !off.removed {
                format!("vacation was not on for {} (nothing changed)", h.address)
            } else if !off.was_active {
                format!(
                    "vacation script of {} deleted; it was not active, so the active script \
                     is left alone ({})",
                    h.address,
                    active_text(&off.active)
                )
            } else {
                let now = match (&off.previous, off.previous_missing) {
                    (Some(Previous::Script(p)), true) => format!(
                        "script {p:?}, active before, no longer exists: no script is active"
                    ),
                    (Some(Previous::Script(p)), false) => {
                        format!("script {p:?} is active again")
                    }
                    (Some(Previous::Unrecorded), _) => {
                        "the script did not record what was active before: no script is \
                         active (choose one with `vmailctl sieve activate`)"
                            .to_string()
                    }
                    _ => "no script is active, as before".to_string(),
                };
                format!("vacation off for {}: {now}", h.address)
            };
            Report::new(
                t,
                json!({"address": h.address, "state": State::Off, "off": off}),
            )
        }
        (VacationVerb::Status, _) => {
            let st = v::status(root, &h)?;
            let mut t = match st.state {
                State::Off => format!("vacation is off for {}", h.address),
                State::On => format!("vacation is on for {}", h.address),
                State::Inactive => format!(
                    "vacation script present but not active for {} ({}); \
                     `vacation off` deletes it",
                    h.address,
                    active_text(&st.active)
                ),
            };
            if st.state != State::Off {
                match &st.settings {
                    Some(set) => {
                        let day = |d: &Option<String>| d.clone().unwrap_or_else(|| "-".into());
                        t += &format!(
                            "\nfrom:       {}\nuntil:      {}\ndays:       {}\nsubject:    {}\n\
                             then runs:  {}\nbody:\n{}",
                            day(&set.from),
                            day(&set.until),
                            set.days
                                .map_or("the site's default".to_string(), |d| d.to_string()),
                            set.subject
                                .as_deref()
                                .map_or("Auto: <the original subject>".to_string(), |s| {
                                    format!("{s:?}")
                                }),
                            previous_text(&st.previous),
                            set.body.replace("\r\n", "\n").trim_end_matches('\n')
                        );
                    }
                    None => {
                        t += &format!(
                            "\nthe script {:?} is not in the form `vacation on` writes \
                             (edited by hand?)",
                            v::SCRIPT
                        )
                    }
                }
            }
            Report::new(t, json!({"address": h.address, "status": st}))
        }
    }
}

fn active_text(a: &admin::sieve::Active) -> String {
    use admin::sieve::Active;
    match a {
        Active::None => "no script is active".into(),
        Active::Script(n) => format!("active: {n}"),
        Active::File => format!(
            "active: {} is a regular file (not managed by ManageSieve or vmailctl)",
            vdeliver::sieve::store::SCRIPT_LINK
        ),
        Active::Other(w) => format!("active: {} is {w}", vdeliver::sieve::store::SCRIPT_LINK),
    }
}

fn sieve(
    c: &mut postgres::Client,
    cfg: &Config,
    cmd: SieveCmd,
    script: Option<Vec<u8>>,
) -> anyhow::Result<Report> {
    use admin::sieve::{self as s, Active, SieveHome};
    let mut home = |address: &str| SieveHome::of_account(c, cfg, address);
    let root = &cfg.mail.root;
    match cmd {
        SieveCmd::Check { .. } => unreachable!("handled before the database"),
        SieveCmd::List { address } => {
            let h = home(&address)?;
            let l = s::list(root, &h)?;
            let mut t: String = l
                .scripts
                .iter()
                .map(|x| {
                    format!(
                        "{} {}  ({})\n",
                        if x.active { "*" } else { " " },
                        x.name,
                        count_of(x.bytes, "byte", "bytes")
                    )
                })
                .collect();
            t += &active_text(&l.active);
            Report::new(
                t,
                json!({"address": h.address, "home": h.home, "scripts": l.scripts, "active": l.active}),
            )
        }
        SieveCmd::Get { address, name } => {
            let h = home(&address)?;
            let bytes = s::get(root, &h, &name)?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let mut rep = Report::new(
                String::new(),
                json!({"address": h.address, "name": name, "script": text}),
            )?;
            rep.raw = Some(bytes);
            Ok(rep)
        }
        SieveCmd::Put { address, name, .. } => {
            let h = home(&address)?;
            let bytes = script.context("no script was read")?;
            let p = s::put(root, &h, &name, &bytes)?;
            Report::new(
                format!(
                    "{} script {:?} of {} ({}){}",
                    if p.replaced { "replaced" } else { "stored" },
                    p.name,
                    h.address,
                    count_of(p.bytes, "byte", "bytes"),
                    if p.active {
                        "; it is the active script"
                    } else {
                        ""
                    }
                ),
                json!({"address": h.address, "home": h.home, "put": p}),
            )
        }
        SieveCmd::Activate { address, name } => {
            let h = home(&address)?;
            let before = s::activate(root, &h, &name)?;
            let was = match &before {
                Active::Script(n) if *n == name => " (it already was)".to_string(),
                Active::Script(n) => format!(" (was {n:?})"),
                _ => String::new(),
            };
            Report::new(
                format!("script {name:?} of {} is active{was}", h.address),
                json!({"address": h.address, "active": name, "before": before}),
            )
        }
        SieveCmd::Deactivate { address } => {
            let h = home(&address)?;
            let before = s::deactivate(root, &h)?;
            let t = match &before {
                Active::Script(n) => format!("deactivated script {n:?} of {}", h.address),
                _ => format!("no script of {} was active", h.address),
            };
            Report::new(t, json!({"address": h.address, "before": before}))
        }
        SieveCmd::Delete {
            address,
            name,
            force,
        } => {
            let h = home(&address)?;
            let d = s::delete(root, &h, &name, force)?;
            Report::new(
                format!(
                    "deleted script {:?} of {}{}",
                    d.name,
                    h.address,
                    if d.deactivated {
                        " (it was active: no script runs now)"
                    } else {
                        ""
                    }
                ),
                json!({"address": h.address, "deleted": d}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every command and group, those added later included: one-line
    /// purpose, help on every argument, an example of itself.
    #[test]
    fn every_command_has_help_on_every_argument_and_an_example() {
        Cli::command().debug_assert();
        let gaps = vdeliver::manual::help_gaps(&Cli::command());
        assert!(
            gaps.is_empty(),
            "--help is incomplete:\n{}",
            gaps.join("\n")
        );
    }

    fn text(command: Command) -> String {
        String::from_utf8(generated(&command).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn completions_know_the_commands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let script = text(Command::Completions { shell });
            for want in [
                "vmailctl",
                "alias-domain",
                "account",
                "relocated",
                "vacation",
                "completions",
                "quota-bytes",
                "password-stdin",
            ] {
                assert!(script.contains(want), "no {want:?} in\n{script}");
            }
        }
    }

    #[test]
    fn the_page_has_every_command_with_its_options_and_examples() {
        let page = text(Command::Man {
            page: ManPage::Vmailctl,
        });
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains(".TH VMAILCTL 8"), "{page}");
        // Every command path, walked from the definition.
        fn paths(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let path = format!("{prefix} {}", sub.get_name());
                out.push(path.clone());
                paths(sub, &path, out);
            }
        }
        let mut all = Vec::new();
        paths(&Cli::command(), "vmailctl", &mut all);
        assert!(all.len() > 40, "{all:?}");
        for path in all {
            let heading = format!(".SS \"{path}\"\n");
            assert!(page.contains(&heading), "no {heading:?} in\n{page}");
        }
        for want in [
            "\\fB\\-\\-config\\fR",
            "\\fB\\-\\-json\\fR",
            "\\fB\\-\\-quota\\-bytes\\fR",
            "\\fB\\-\\-password\\-stdin\\fR",
            "vmailctl alias add team@example.com alice@example.com bob@remote.org",
            "vdeliver(8)",
        ] {
            assert!(page.contains(want), "no {want:?} in\n{page}");
        }
        let page = text(Command::Man {
            page: ManPage::Vdeliver,
        });
        assert!(page.contains(".TH VDELIVER 8"), "{page}");
        assert!(page.contains("\\fB\\-\\-local\\fR"), "{page}");
    }
}
