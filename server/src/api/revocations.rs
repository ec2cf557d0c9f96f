//! Prompt revocation: when an API key is created or revoked or a signing
//! secret rotated, every replica drops its cached credentials (an open
//! server closes at its first key), instead of trusting them for the rest
//! of the credential cache's time.
//!
//! On PostgreSQL the change's transaction sends `NOTIFY` and every
//! replica listens ([`Channel::Credentials`]); a listener that lost its
//! connection drops everything once it listens again, since it may have
//! missed a notification. On SQLite (one server, with the `herald`
//! commands as other processes) the server looks at a fingerprint of the
//! keys and secrets every [`LOOK_EVERY`] and drops everything when it
//! changed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Authenticator;
use crate::{
    signal::Signal,
    store::{Channel, Store},
    tenants::Keyring,
};

/// How often a SQLite server looks for changed credentials.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Drops `auth`'s and `keyring`'s cached credentials whenever they change
/// in `store`, until `shutdown`. Returns once it is listening, so a
/// change committed after this returns is not missed.
pub async fn follow(
    store: Store,
    auth: Authenticator,
    keyring: Keyring,
    shutdown: CancellationToken,
) {
    let forget = move || {
        auth.forget_all();
        keyring.forget_all();
    };
    if store.announces() {
        let changed = Signal::start(&store, Channel::Credentials, &shutdown).await;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = changed.raised() => forget(),
                }
            }
        });
        return;
    }
    let mut seen = store.credentials_fingerprint().await.ok();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match store.credentials_fingerprint().await {
                Ok(now) if Some(now) != seen => {
                    seen = Some(now);
                    forget();
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot look for revoked keys; cached credentials are dropped");
                    seen = None;
                    forget();
                }
            }
        }
    });
}
