//! How the client commands reach a running Herald: address, API key and,
//! for a TLS listener, the certificate authority to trust.

use std::path::PathBuf;

use clap::Args;
use herald_client::Client;

/// Where the server is and how to call it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Herald's gRPC address: `http://host:port`, `https://host:port` for
    /// a TLS listener, or `host:port` (plain http).
    #[arg(
        long,
        env = "HERALD_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// API key, sent as `authorization: Bearer <key>` (not needed while the
    /// server runs open).
    #[arg(long, env = "HERALD_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// PEM certificate of the authority that issued the server's TLS
    /// certificate (for `https://` addresses).
    #[arg(long, env = "HERALD_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
}

/// Why the client commands could not reach the server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The CA certificate file could not be read.
    #[error("cannot read the CA certificate {path}: {source}")]
    CaFile {
        /// The file named by `--tls-ca`.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The connection or the API key failed.
    #[error(transparent)]
    Client(#[from] herald_client::Error),
}

impl ServerArgs {
    /// The server's URL: as given, or `host:port` as `http://host:port`.
    fn url(&self) -> String {
        with_scheme(&self.server)
    }

    /// A connected client carrying the API key, if one was given.
    pub async fn client(&self) -> Result<Client, ConnectError> {
        let client = match &self.tls_ca {
            Some(path) => {
                let ca = tokio::fs::read(path)
                    .await
                    .map_err(|source| ConnectError::CaFile {
                        path: path.clone(),
                        source,
                    })?;
                Client::connect_tls(self.url(), &ca).await?
            }
            None => Client::connect(self.url()).await?,
        };
        Ok(match &self.api_key {
            Some(key) => client.with_api_key(key)?,
            None => client,
        })
    }
}

/// `server` with `http://` in front when it names no scheme, as gRPC tools
/// (grpcurl, the Python example) take a bare `host:port`.
fn with_scheme(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_plain_http() {
        assert_eq!(with_scheme("localhost:50051"), "http://localhost:50051");
        assert_eq!(with_scheme("[::1]:50051"), "http://[::1]:50051");
        assert_eq!(
            with_scheme("https://herald.internal:50051"),
            "https://herald.internal:50051"
        );
    }
}
