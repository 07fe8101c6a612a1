//! [`ConfigError`]: what is wrong with which setting, and where it was set.

use std::path::PathBuf;

/// A setting is missing or invalid, or the file cannot be read or parsed.
///
/// The message always starts with the setting's name (e.g. `routes.domain:`),
/// ends with where the value was set when it was set (`(config file
/// /etc/tart-sync.toml line 6)` or `(from TART_SYNC_ROUTES_DOMAIN)`), and
/// never contains the API key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file cannot be read.
    #[error("config file {}: {reason}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why (the OS error).
        reason: String,
    },
    /// The configuration file is not valid TOML.
    #[error("{setting}: {message} ({location})")]
    Syntax {
        /// The setting defined on the offending line (e.g. `headscale.api_key`),
        /// else `config file`.
        setting: String,
        /// Where in the file (`config file line 3, column 1`).
        location: String,
        /// What is wrong (toml's message, which never quotes the line).
        message: String,
    },
    /// A setting is unknown, missing, of the wrong type or has an invalid
    /// value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting, e.g. `routes.domain`, or a section such as `headscale`.
        setting: String,
        /// What is wrong and what to do, then where the value was set.
        message: String,
    },
}

impl ConfigError {
    /// The setting the error is about, e.g. `routes.domain`,
    /// `headscale.api_key_file` or `headscale`; `config file` when the file
    /// as a whole cannot be read or parsed.
    pub fn setting(&self) -> &str {
        match self {
            ConfigError::ReadFile { .. } => "config file",
            ConfigError::Syntax { setting, .. } | ConfigError::Invalid { setting, .. } => setting,
        }
    }
}

/// An OS error without the ` (os error N)` suffix.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(pos) if text.ends_with(')') => text[..pos].to_owned(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_reason_strips_os_error() {
        let e = std::io::Error::from_raw_os_error(2);
        assert!(!io_reason(&e).contains("os error"));
    }
}
