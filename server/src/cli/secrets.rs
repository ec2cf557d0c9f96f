//! `herald secrets`: make a new sealing key, and re-seal every stored
//! signing secret under the configured keys. Like `herald tenant`, this
//! acts on the database directly.
//!
//! A key rotation: `generate-key`; give every replica the new key as
//! `HERALD_SECRET_KEY` and the old one in `HERALD_PREVIOUS_SECRET_KEYS`,
//! and run `rotate-key` with the same settings (each secret is then
//! sealed under both, so replicas still on the old key keep signing);
//! once no replica uses the old key, drop it from the settings and run
//! `rotate-key` again, which leaves only the new key's sealings.

use clap::Subcommand;

use super::tenant::{DatabaseArgs, open};
use crate::{
    secrets::SecretKey,
    tenants::{self, Scope},
};

/// `herald secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Print a new random secret key (for HERALD_SECRET_KEY) and its id.
    GenerateKey,
    /// Re-seal every stored signing secret under exactly the configured
    /// keys: HERALD_SECRET_KEY (or its file) and HERALD_PREVIOUS_SECRET_KEYS.
    RotateKey,
}

/// Runs a `herald secrets` command.
pub async fn secrets(
    command: SecretsCommand,
    database: DatabaseArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        SecretsCommand::GenerateKey => {
            let key = SecretKey::generate();
            println!("secret key: {}  (key id {})", key.expose(), key.id());
        }
        SecretsCommand::RotateKey => {
            let sealer = database
                .secret_keys
                .require_sealer(&database.database_url, false)?;
            let store = open(&database).await?;
            let rewritten = tenants::reseal(&store, &sealer, Scope::NotUpToDate).await?;
            store.close().await?;
            println!(
                "re-sealed {rewritten} signing secrets; every one is now sealed under key id(s) {}",
                sealer.held_ids()
            );
        }
    }
    Ok(())
}
