//! `herald tenant` and `herald key`: create tenants, hand out and revoke
//! API keys, rotate signing secrets. These act on the database directly
//! (`HERALD_DATABASE_URL`), not through a running server; they neither
//! create nor migrate it, and name it on stderr. Keys and secrets are
//! printed once, to stdout, and never logged. Signing secrets are stored
//! sealed under the secret key `herald serve` uses (the same settings).

use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand};

use crate::{
    config::redact_url,
    secrets::SecretKeySettings,
    store::{Revoked, Store},
    tenants::{Signer, SigningSecret, api_key::NewApiKey, tenant_name},
};

/// Where the tenants live.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://FILE` or `postgres://...`.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "sqlite://herald.db",
        global = true
    )]
    pub(super) database_url: String,
    /// The key that seals signing secrets.
    #[command(flatten)]
    pub(super) secret_keys: SecretKeySettings,
}

/// `herald tenant ...`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its first API key and its signing secret once.
    Create {
        /// Lower-case letters, digits, '-' and '_'.
        name: String,
    },
    /// List tenants and how many active API keys each has.
    List,
    /// Give a tenant a new signing secret (printed once); the old one keeps
    /// signing too until the grace period ends.
    RotateSecret {
        /// The tenant.
        name: String,
        /// How long the previous secret keeps signing alongside the new one.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
}

/// `herald key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create another API key for a tenant; prints it once.
    Create {
        /// The tenant.
        tenant: String,
    },
    /// List a tenant's API keys (ids only; keys are never shown again).
    List {
        /// The tenant.
        tenant: String,
    },
    /// Revoke an API key by its id (the part after `hk_`, before the next `_`).
    Revoke {
        /// The key's id, as `herald key list` shows it.
        id: String,
    },
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Runs a `herald tenant` command.
pub async fn tenant(command: TenantCommand, database: DatabaseArgs) -> CliResult {
    let store = open(&database).await?;
    match command {
        TenantCommand::Create { name } => {
            let name = tenant_name(&name)?;
            // The first tenant of a SQLite database may bring its local key
            // into being, as an open `serve` would have.
            let first = !store.has_api_keys().await?;
            let sealer = database
                .secret_keys
                .require_sealer(&database.database_url, first)?;
            let key = NewApiKey::generate();
            let secret = SigningSecret::generate();
            store
                .create_tenant(
                    name,
                    &key,
                    &secret.seal(&sealer, &Signer::Tenant(name.to_owned())),
                )
                .await?;
            println!("tenant:         {name}");
            println!(
                "api key:        {}  (shown once: Herald keeps only its hash)",
                key.key
            );
            println!("key id:         {}  (for `herald key revoke`)", key.id);
            println!(
                "signing secret: {}  (receivers verify webhook-signature with it)",
                secret.expose()
            );
        }
        TenantCommand::List => {
            println!("{:<24} {:>11}  CREATED", "TENANT", "ACTIVE KEYS");
            for tenant in store.list_tenants().await? {
                // The default tenant comes with the schema, not from a command.
                let created = if tenant.created_at_ms == 0 {
                    "built in".to_owned()
                } else {
                    time(tenant.created_at_ms)
                };
                println!("{:<24} {:>11}  {created}", tenant.id, tenant.active_keys);
            }
        }
        TenantCommand::RotateSecret { name, grace } => {
            let sealer = database
                .secret_keys
                .require_sealer(&database.database_url, false)?;
            let secret = SigningSecret::generate();
            store
                .rotate_signing_secret(
                    &name,
                    &secret.seal(&sealer, &Signer::Tenant(name.clone())),
                    grace,
                )
                .await?;
            println!("signing secret: {}  (signs from now on)", secret.expose());
            println!(
                "the previous secret keeps signing alongside it for {}",
                humantime::format_duration(grace)
            );
        }
    }
    store.close().await?;
    Ok(())
}

/// Runs a `herald key` command.
pub async fn key(command: KeyCommand, database: DatabaseArgs) -> CliResult {
    let store = open(&database).await?;
    match command {
        KeyCommand::Create { tenant } => {
            let key = NewApiKey::generate();
            store.create_api_key(&tenant, &key).await?;
            println!("key id:  {}", key.id);
            println!(
                "api key: {}  (shown once: Herald keeps only its hash)",
                key.key
            );
        }
        KeyCommand::List { tenant } => {
            println!("{:<14} {:<22} REVOKED", "KEY ID", "CREATED");
            for key in store.list_api_keys(&tenant).await? {
                let revoked = key.revoked_at_ms.map_or_else(|| "-".to_owned(), time);
                println!("{:<14} {:<22} {revoked}", key.id, time(key.created_at_ms));
            }
        }
        KeyCommand::Revoke { id } => match store.revoke_api_key(&id).await? {
            Revoked::Now => {
                println!("revoked key {id}; running servers refuse it within about a second")
            }
            Revoked::Already => println!("key {id} was already revoked"),
            Revoked::Unknown => {
                return Err(format!(
                    "no API key has id {id:?}; `herald key list TENANT` shows them"
                )
                .into());
            }
        },
    }
    store.close().await?;
    Ok(())
}

/// Opens the database, saying which one on stderr (a command run from
/// the wrong directory or with the wrong URL shows it at once). It must
/// exist and be migrated: creating or upgrading it is for `herald migrate`
/// and `herald serve`.
pub(super) async fn open(database: &DatabaseArgs) -> Result<Store, Box<dyn std::error::Error>> {
    eprintln!("database: {}", redact_url(&database.database_url));
    Ok(Store::open_existing(&database.database_url).await?)
}

/// Unix ms as an RFC 3339 UTC time, to the second.
fn time(ms: i64) -> String {
    let since = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(UNIX_EPOCH + since).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }
}
