//! Secrets at rest: every secret Herald stores (tenants' signing secrets
//! today) is sealed with authenticated encryption under a key from the
//! configuration, and opened with it when needed. A stored value names
//! the ids of the keys that sealed it, so keys can be rotated while
//! replicas run (`herald secrets rotate-key`). Any column holding a
//! secret stores a [`Sealed`] made by a [`Sealer`], with a context that
//! names the column's owner (the tenant, the endpoint).

mod key;
mod sealer;
mod settings;

pub use key::{InvalidKey, SecretKey};
pub use sealer::{OpenError, Sealed, Sealer};
pub use settings::{KeyError, SecretKeySettings, local_key_file};
