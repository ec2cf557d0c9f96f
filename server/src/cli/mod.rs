//! The `herald` command line: `serve` runs the server, `migrate` applies
//! the schema and exits, `watch` prints outcomes as they happen, `tenant`
//! and `key` manage who may call, `secrets` makes and rotates the key
//! that seals signing secrets, `deliveries`, `dead-letters`,
//! `destinations`, `endpoints` and `events` act on a running server,
//! `audit` lists what operators did, `config print` shows the effective
//! configuration.
//! `main.rs` only calls [`main`], so tests can build the very same entry
//! point.
//!
//! A `--config FILE` (or `HERALD_CONFIG`) TOML file supplies the defaults
//! of `serve`'s settings, and of the same settings of every other command
//! (`database_url` for `tenant`, `key` and `migrate`); `HERALD_*` variables
//! override it, flags override both.

use std::{ffi::OsString, io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::{EnvFilter, fmt::writer::BoxMakeWriter};

mod audit;
mod destination_render;
mod destinations;
mod endpoint_args;
mod endpoint_render;
mod endpoints;
mod event_render;
mod event_types;
mod events;
mod exit;
mod input;
mod operate;
mod paging;
mod render;
mod secrets;
mod server_args;
mod tenant;
mod watch;
mod when;

use crate::{
    Config,
    config::FileSettings,
    store::{Store, StoreOptions},
};

/// Durable HTTP/webhook delivery over gRPC.
#[derive(Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    /// TOML file whose settings every command starts from (`serve`'s
    /// settings; `tenant`, `key` and `migrate` take its `database_url`).
    #[arg(long, env = "HERALD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server and the delivery scheduler.
    Serve(Box<Config>),
    /// Apply pending database migrations and exit.
    Migrate {
        /// Database URL: `sqlite://FILE` or `postgres://...`.
        #[arg(
            long,
            env = "HERALD_DATABASE_URL",
            default_value = "sqlite://herald.db"
        )]
        database_url: String,
        /// Longest a migration statement waits for a lock on PostgreSQL.
        #[arg(long, env = "HERALD_MIGRATION_LOCK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
        migration_lock_timeout: Duration,
    },
    /// Print outcomes as they happen, with a summary every few seconds.
    Watch(watch::WatchArgs),
    /// Show the configuration `serve` would run with.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create and list tenants, rotate their signing secrets.
    Tenant {
        #[command(subcommand)]
        command: tenant::TenantCommand,
        #[command(flatten)]
        database: tenant::DatabaseArgs,
    },
    /// Look at, list and cancel deliveries on a running server.
    Deliveries {
        #[command(subcommand)]
        command: operate::DeliveriesCommand,
        #[command(flatten)]
        common: operate::Common,
    },
    /// List and redrive dead letters on a running server.
    DeadLetters {
        #[command(subcommand)]
        command: operate::DeadLettersCommand,
        #[command(flatten)]
        common: operate::Common,
    },
    /// Look at destinations, set their policy, pause, resume and enable
    /// them on a running server.
    Destinations {
        #[command(subcommand)]
        command: destinations::DestinationsCommand,
        #[command(flatten)]
        common: operate::Common,
    },
    /// Register endpoints, change, delete and recover them, rotate their
    /// signing secrets, on a running server.
    Endpoints {
        #[command(subcommand)]
        command: endpoints::EndpointsCommand,
        #[command(flatten)]
        common: operate::Common,
    },
    /// Publish events, look at them, replay them, and keep the event type
    /// catalogue, on a running server.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
        #[command(flatten)]
        common: operate::Common,
    },
    /// Create, list and revoke API keys.
    Key {
        #[command(subcommand)]
        command: tenant::KeyCommand,
        #[command(flatten)]
        database: tenant::DatabaseArgs,
    },
    /// List the audit trail of operator actions on a running server.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
        #[command(flatten)]
        common: operate::Common,
    },
    /// Make a secret key, and re-seal stored signing secrets under new keys.
    Secrets {
        #[command(subcommand)]
        command: secrets::SecretsCommand,
        #[command(flatten)]
        database: tenant::DatabaseArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (file, then environment, then
    /// flags) as TOML, with the database password hidden.
    Print(Box<Config>),
}

/// Parses the process's arguments, with the configuration file's settings
/// (if one is named) as the defaults of every command that takes them.
fn parse() -> Result<Cli, Box<dyn std::error::Error>> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    if let Some(path) = config_path(&args) {
        let settings = FileSettings::load(&path)?;
        if let Some(serve) = command.find_subcommand("serve") {
            settings.check_known(serve)?;
        }
        command = settings.apply(command);
    }
    let matches = command.get_matches_from(args);
    Ok(Cli::from_arg_matches(&matches)?)
}

/// The configuration file named by `--config FILE`, `--config=FILE` or
/// `HERALD_CONFIG` (found before parsing, as it shapes the parser).
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("HERALD_CONFIG").map(PathBuf::from)
}

/// Runs the `herald` command with the process's arguments; exits 0 on
/// success (for `serve`, a clean shutdown on SIGTERM or Ctrl-C), otherwise
/// with the code of its kind of failure (2 bad input, 3 server
/// unreachable, 4 refused by the server, 1 anything else), the reason on
/// stderr.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(error) => return exit::report(error.as_ref()),
    };
    // The server narrates on stdout; the one-shot commands print their
    // result on stdout and only log what went wrong, on stderr, so a
    // warning cannot corrupt `--json` output.
    let narrates = matches!(cli.command, Command::Serve(_) | Command::Migrate { .. });
    let default_filter = if narrates { "info,sqlx=warn" } else { "warn" };
    let filter =
        EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour only for a person at a terminal: piped output stays plain.
    let (writer, terminal) = if narrates {
        (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        )
    } else {
        (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        )
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(writer);
    // One JSON object per line, with the current span's fields, for log
    // shippers; human-readable lines otherwise.
    if std::env::var("HERALD_LOG_FORMAT").is_ok_and(|format| format == "json") {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => serve(*config).await,
            Command::Migrate {
                database_url,
                migration_lock_timeout,
            } => migrate(&database_url, migration_lock_timeout).await,
            Command::Watch(args) => watch::run(args).await,
            Command::Config {
                command: ConfigCommand::Print(config),
            } => print_config(&config),
            Command::Deliveries { command, common } => operate::deliveries(command, common).await,
            Command::DeadLetters { command, common } => {
                operate::dead_letters(command, common).await
            }
            Command::Destinations { command, common } => {
                destinations::destinations(command, common).await
            }
            Command::Endpoints { command, common } => endpoints::endpoints(command, common).await,
            Command::Events { command, common } => events::events(command, common).await,
            Command::Tenant { command, database } => tenant::tenant(command, database).await,
            Command::Key { command, database } => tenant::key(command, database).await,
            Command::Secrets { command, database } => secrets::secrets(command, database).await,
            Command::Audit { command, common } => audit::audit(command, common).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => exit::report(error.as_ref()),
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let server = crate::start(config).await?;
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight attempts");
        shutdown.cancel();
    });
    server.wait().await?;
    Ok(())
}

fn print_config(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    config.validate()?;
    print!("{}", config.to_redacted_toml()?);
    Ok(())
}

async fn migrate(
    database_url: &str,
    migration_lock_timeout: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let options = StoreOptions {
        migration_lock_timeout,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(database_url, options).await?;
    store.migrate().await?;
    store.close().await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
