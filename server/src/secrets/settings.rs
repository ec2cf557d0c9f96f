//! Where the sealing keys come from: `HERALD_SECRET_KEY` or
//! `HERALD_SECRET_KEY_FILE` (the current key), `HERALD_PREVIOUS_SECRET_KEYS`
//! (keys that still open secrets during a rotation), or, for a SQLite
//! database with none of these, a local key file beside it, which
//! `serve` creates while Herald runs open on loopback.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Serialize, Serializer};

use super::{Sealer, SecretKey, key::InvalidKey};

/// Settings of the keys that seal secrets at rest. Printed as `***`.
#[derive(Debug, Clone, Args, Serialize, Default)]
pub struct SecretKeySettings {
    /// The key that seals signing secrets in the database (base64 of 32
    /// bytes; `herald secrets generate-key` prints one).
    #[arg(long, env = "HERALD_SECRET_KEY", hide_env_values = true, global = true)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hidden_one")]
    pub secret_key: Option<SecretKey>,

    /// A file holding the key instead (its first line).
    #[arg(long, env = "HERALD_SECRET_KEY_FILE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_file: Option<PathBuf>,

    /// Keys that no longer seal but still open secrets, comma-separated,
    /// for the time of a key rotation.
    #[arg(
        long,
        env = "HERALD_PREVIOUS_SECRET_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "hidden")]
    pub previous_secret_keys: Vec<SecretKey>,
}

/// Why no sealer could be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Both ways of giving the key were used.
    #[error("HERALD_SECRET_KEY and HERALD_SECRET_KEY_FILE are both set: give the key one way only")]
    Both,
    /// The key file could not be read or written.
    #[error("secret key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error("secret key file {path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: InvalidKey,
    },
    /// No key is configured where one is needed.
    #[error(
        "no secret key is configured, and signing secrets are stored sealed under one: set HERALD_SECRET_KEY (or HERALD_SECRET_KEY_FILE) to a key from `herald secrets generate-key`, the same on every replica and for the `herald tenant` commands{local}"
    )]
    Missing {
        /// Where a SQLite database's local key would be, when it has one.
        local: String,
    },
}

impl SecretKeySettings {
    /// The sealer these settings give for `database_url`: the configured
    /// key, else a SQLite database's local key file if it exists, else
    /// (when `create_local` allows, for a SQLite file) a new local key
    /// file, said in the log. `None` when there is no key and none may be
    /// made.
    pub fn sealer(
        &self,
        database_url: &str,
        create_local: bool,
    ) -> Result<Option<Sealer>, KeyError> {
        let current = match (&self.secret_key, &self.secret_key_file) {
            (Some(_), Some(_)) => return Err(KeyError::Both),
            (Some(key), None) => Some(key.clone()),
            (None, Some(path)) => Some(read_key(path)?),
            (None, None) => match local_key_file(database_url) {
                Some(path) if path.exists() => Some(read_key(&path)?),
                Some(path) if create_local => Some(create_key_file(&path)?),
                _ => None,
            },
        };
        Ok(current.map(|key| Sealer::new(key, self.previous_secret_keys.clone())))
    }

    /// Like [`SecretKeySettings::sealer`], but a missing key is an error
    /// that says what to set.
    pub fn require_sealer(
        &self,
        database_url: &str,
        create_local: bool,
    ) -> Result<Sealer, KeyError> {
        self.sealer(database_url, create_local)?
            .ok_or_else(|| KeyError::Missing {
                local: local_key_file(database_url)
                    .map(|path| {
                        format!(
                            " (or keep the key in {}, beside the database)",
                            path.display()
                        )
                    })
                    .unwrap_or_default(),
            })
    }
}

/// The local key file of a SQLite database file: `FILE.secret-key`;
/// `None` for PostgreSQL and in-memory databases.
pub fn local_key_file(database_url: &str) -> Option<PathBuf> {
    let in_memory = database_url.contains(":memory:") || database_url.contains("mode=memory");
    if !database_url.starts_with("sqlite:") || in_memory {
        return None;
    }
    let options = database_url
        .parse::<sea_orm::sqlx::sqlite::SqliteConnectOptions>()
        .ok()?;
    let file = options.get_filename();
    if file.as_os_str().is_empty() {
        return None;
    }
    let mut name = file.as_os_str().to_owned();
    name.push(".secret-key");
    Some(PathBuf::from(name))
}

fn read_key(path: &Path) -> Result<SecretKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::File {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|source| KeyError::Invalid {
            path: path.to_owned(),
            source,
        })
}

/// Writes a new key to `path`, readable by its owner only.
fn create_key_file(path: &Path) -> Result<SecretKey, KeyError> {
    use std::io::Write;
    let key = SecretKey::generate();
    let file_error = |source| KeyError::File {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(file_error)?;
    writeln!(file, "{}", key.expose()).map_err(file_error)?;
    file.sync_all().map_err(file_error)?;
    tracing::warn!(
        file = %path.display(),
        key_id = key.id(),
        "created a local secret key beside the SQLite database; signing secrets are sealed under it. \
    Back it up with the database; in production set HERALD_SECRET_KEY or HERALD_SECRET_KEY_FILE instead"
    );
    Ok(key)
}

fn hidden_one<S: Serializer>(_: &Option<SecretKey>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("***")
}

fn hidden<S: Serializer>(keys: &[SecretKey], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(keys.iter().map(|_| "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_file_has_a_local_key_file_beside_it() {
        assert_eq!(
            local_key_file("sqlite://data/herald.db?mode=rwc"),
            Some(PathBuf::from("data/herald.db.secret-key"))
        );
        assert_eq!(local_key_file("sqlite::memory:"), None);
        assert_eq!(local_key_file("postgres://db/herald"), None);
    }

    #[test]
    fn the_local_key_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("h.db").display());
        let settings = SecretKeySettings::default();
        assert!(settings.sealer(&url, false).unwrap().is_none());
        let missing = settings.require_sealer(&url, false).unwrap_err();
        assert!(
            missing.to_string().contains("HERALD_SECRET_KEY"),
            "{missing}"
        );
        let created = settings.sealer(&url, true).unwrap().unwrap();
        let read = settings.sealer(&url, false).unwrap().unwrap();
        assert_eq!(created.current_id(), read.current_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = local_key_file(&url).unwrap();
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "only its owner reads it");
        }
    }

    #[test]
    fn a_configured_key_wins_and_is_never_printed() {
        let key = SecretKey::generate();
        let settings = SecretKeySettings {
            secret_key: Some(key.clone()),
            previous_secret_keys: vec![SecretKey::generate()],
            ..SecretKeySettings::default()
        };
        let sealer = settings.sealer("postgres://db/h", false).unwrap().unwrap();
        assert_eq!(sealer.current_id(), key.id());
        let printed = toml::to_string(&settings).unwrap();
        assert!(!printed.contains(key.expose()), "{printed}");
        assert!(printed.contains("secret_key = \"***\""), "{printed}");
        assert!(!format!("{settings:?}").contains(key.expose()));
    }
}
