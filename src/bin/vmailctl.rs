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
    /// Alias domains (another name for a domain)
    #[command(subcommand, name = "alias-domain")]
    AliasDomain(AliasDomainCmd),
    /// Aliases: an address delivered to other addresses
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Catch-all destinations of a domain
    #[command(subcommand)]
    Catchall(CatchallCmd),
    /// Addresses that have moved (mail to them bounces naming the new one)
    #[command(subcommand)]
    Relocated(RelocatedCmd),
}

#[derive(Subcommand)]
enum AliasDomainCmd {
    /// e.g. `vmailctl alias-domain add example.net example.com`
    Add { alias: String, domain: String },
}

#[derive(Subcommand)]
enum AliasCmd {
    /// e.g. `vmailctl alias add team@example.com alice@example.com bob@remote.org`;
    /// `%n`, `%d` and `%=` stand for the local part, the domain and `local=domain` as addressed
    Add {
        address: String,
        #[arg(required = true)]
        destinations: Vec<String>,
    },
}

#[derive(Subcommand)]
enum CatchallCmd {
    /// e.g. `vmailctl catchall add example.com postmaster@example.com`
    Add {
        domain: String,
        #[arg(required = true)]
        destinations: Vec<String>,
    },
}

#[derive(Subcommand)]
enum RelocatedCmd {
    /// e.g. `vmailctl relocated add old@example.com new@example.org`
    Add {
        address: String,
        new_address: String,
    },
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
            Some(password::hash(cfg.password.scheme, pw.as_bytes()).map_err(AdminError::Invalid)?)
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
        Command::AliasDomain(AliasDomainCmd::Add { alias, domain }) => {
            let a = admin::alias_domain_add(&mut client, &alias, &domain)?;
            Ok(format!("added alias domain {a}"))
        }
        Command::Alias(AliasCmd::Add {
            address,
            destinations,
        }) => {
            let a = admin::alias_add(&mut client, &address, &destinations)?;
            Ok(format!("alias {a} -> {}", destinations.join(", ")))
        }
        Command::Catchall(CatchallCmd::Add {
            domain,
            destinations,
        }) => {
            let d = admin::catchall_add(&mut client, &domain, &destinations)?;
            Ok(format!("catch-all of {d} -> {}", destinations.join(", ")))
        }
        Command::Relocated(RelocatedCmd::Add {
            address,
            new_address,
        }) => {
            let a = admin::relocated_add(&mut client, &address, &new_address)?;
            Ok(format!("{a} has moved to {}", new_address.trim()))
        }
    }
}
