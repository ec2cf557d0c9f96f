//! How the client commands reach a running Herald: address, API key and,
//! for a TLS listener, the certificate authority to trust.

use std::path::PathBuf;

use clap::Args;
use herald_client::Client;
use tonic::{
    Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

/// A channel whose every call carries the API key, if one was given.
pub type AuthorizedChannel = InterceptedService<Channel, ApiKey>;

/// The `authorization` header a call carries, if an API key was given.
#[derive(Debug, Clone)]
pub struct ApiKey(Option<MetadataValue<Ascii>>);

impl ApiKey {
    /// Puts the header on `request`.
    fn stamp<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
    }
}

impl Interceptor for ApiKey {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        self.stamp(&mut request);
        Ok(request)
    }
}

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
    /// The server address is not a URL a channel can take.
    #[error("invalid server address {url:?}: {source}")]
    Address {
        /// The address given.
        url: String,
        /// Why not.
        source: tonic::transport::Error,
    },
    /// Nothing answered at the server address.
    #[error("cannot reach Herald at {url}: {source}")]
    Unreachable {
        /// The address given.
        url: String,
        /// What the attempt met.
        source: tonic::transport::Error,
    },
    /// The API key cannot be sent in a header.
    #[error("the API key is not valid header text")]
    ApiKey,
}

impl ServerArgs {
    /// The server's URL: as given, or `host:port` as `http://host:port`.
    fn url(&self) -> String {
        with_scheme(&self.server)
    }

    /// A channel to the server, for the services the client crate does
    /// not wrap, and `request` carrying the API key, if one was given.
    pub async fn channel<T>(
        &self,
        request: T,
    ) -> Result<(Channel, tonic::Request<T>), ConnectError> {
        let channel = self.connect().await?;
        let mut request = tonic::Request::new(request);
        self.api_key()?.stamp(&mut request);
        Ok((channel, request))
    }

    /// A channel to the server that sends the API key, if one was given,
    /// with every call: for commands that make several calls.
    pub async fn authorized(&self) -> Result<AuthorizedChannel, ConnectError> {
        let api_key = self.api_key()?;
        Ok(InterceptedService::new(self.connect().await?, api_key))
    }

    /// The API key as the `authorization` header's value.
    fn api_key(&self) -> Result<ApiKey, ConnectError> {
        self.api_key
            .as_ref()
            .map(|key| {
                format!("Bearer {key}")
                    .parse()
                    .map_err(|_| ConnectError::ApiKey)
            })
            .transpose()
            .map(ApiKey)
    }

    /// A connected channel, over TLS when a CA is given.
    async fn connect(&self) -> Result<Channel, ConnectError> {
        let address = |source| ConnectError::Address {
            url: self.url(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(self.url()).map_err(address)?;
        if let Some(path) = &self.tls_ca {
            let ca = tokio::fs::read(path)
                .await
                .map_err(|source| ConnectError::CaFile {
                    path: path.clone(),
                    source,
                })?;
            let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            endpoint = endpoint.tls_config(tls).map_err(address)?;
        }
        endpoint
            .connect()
            .await
            .map_err(|source| ConnectError::Unreachable {
                url: self.url(),
                source,
            })
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
