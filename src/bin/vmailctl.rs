//! vmailctl: administration of the vdeliver database.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vdeliver::admin::{self, AdminError, NewAccount};
use vdeliver::{config, db, password};

#[derive(Parser)]
#[command(
    name = "vmailctl",
    version,
    about = "Administer vdeliver's virtual domains and accounts"
)]
struct Cli {
    /// Configuration file [default: $VDELIVER_CONFIG, else /etc/vdeliver/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or upgrade the database schema (idempotent)
    Migrate,
    /// Domains
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Accounts (mailboxes)
    #[command(subcommand)]
    Account(AccountCmd),
}

#[derive(Subcommand)]
enum DomainCmd {
    /// Add a domain, e.g. `vmailctl domain add example.com`
    Add { domain: String },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Add an account, e.g. `vmailctl account add alice@example.com`
    Add {
        address: String,
        /// Maildir path relative to mail.root [default: DOMAIN/LOCAL/Maildir/]
        #[arg(long)]
        maildir: Option<String>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Stop delivering to an account (mail to it bounces with #5.2.1)
    Disable { address: String },
    /// Deliver to a disabled account again
    Enable { address: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vmailctl: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<String, AdminError> {
    let env_config = std::env::var("VDELIVER_CONFIG").ok();
    let path = config::choose_path(cli.config.as_deref(), env_config.as_deref());
    let cfg =
        config::load(&path).map_err(|e| AdminError::Invalid(format!("configuration: {e}")))?;
    // Validate the input before touching the database.
    let password_hash = match &cli.command {
        Command::Account(AccountCmd::Add {
            password_stdin: true,
            ..
        }) => {
            let pw =
                password::read_line(&mut std::io::stdin().lock()).map_err(AdminError::Invalid)?;
            Some(password::hash(pw.as_bytes()).map_err(AdminError::Invalid)?)
        }
        _ => None,
    };
    let mut client = db::connect(&cfg.database, "vmailctl")
        .map_err(|e| AdminError::NotFound(format!("cannot reach the database: {e}")))?;
    match cli.command {
        Command::Migrate => {
            let (before, after) = admin::migrate(&mut client)?;
            Ok(if before == after {
                format!("schema is at version {after}, nothing to do")
            } else {
                format!("schema migrated from version {before} to {after}")
            })
        }
        Command::Domain(DomainCmd::Add { domain }) => {
            let name = admin::domain_add(&mut client, &domain)?;
            Ok(format!("added domain {name}"))
        }
        Command::Account(AccountCmd::Add {
            address, maildir, ..
        }) => {
            let new = NewAccount {
                maildir,
                password_hash,
            };
            let (addr, md) = admin::account_add(&mut client, &address, &new)?;
            Ok(format!("added account {addr} with Maildir {md}"))
        }
        Command::Account(AccountCmd::Disable { address }) => Ok(format!(
            "disabled {}",
            admin::account_set_active(&mut client, &address, false)?
        )),
        Command::Account(AccountCmd::Enable { address }) => Ok(format!(
            "enabled {}",
            admin::account_set_active(&mut client, &address, true)?
        )),
    }
}
