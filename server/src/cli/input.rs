//! Files a command reads what it sends from: a path, or `-` for stdin.

use std::{io::Read, path::PathBuf};

/// Why a named input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file (or stdin) could not be read.
    #[error("cannot read the {what} from {path}: {source}")]
    Read {
        /// What the file holds, e.g. "payload".
        what: &'static str,
        /// The path given (`-` for stdin).
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file holds bytes that are not UTF-8 where text is needed.
    #[error("the {what} in {path} is not UTF-8 text")]
    NotText {
        /// What the file holds, e.g. "JSON Schema".
        what: &'static str,
        /// The path given (`-` for stdin).
        path: PathBuf,
    },
}

/// The bytes of `path`, or of stdin when it is `-`.
pub fn read_bytes(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, InputError> {
    let read = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    read.map_err(|source| InputError::Read {
        what,
        path: path.clone(),
        source,
    })
}

/// The text of `path`, or of stdin when it is `-`.
pub fn read_text(what: &'static str, path: &PathBuf) -> Result<String, InputError> {
    String::from_utf8(read_bytes(what, path)?).map_err(|_| InputError::NotText {
        what,
        path: path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_names_what_and_where() {
        let error = read_text("JSON Schema", &PathBuf::from("/no/such/schema.json")).unwrap_err();
        let said = error.to_string();
        assert!(
            said.starts_with("cannot read the JSON Schema from /no/such/schema.json: "),
            "{said}"
        );
    }
}
