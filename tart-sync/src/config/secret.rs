//! [`ApiKey`]: the headscale API key, which never shows in logs or errors.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::error::{io_reason, ConfigError};

/// headscale API key. Its `Debug` prints `ApiKey(***)` and its `Display`
/// prints `***`; only [`ApiKey::expose`] reveals it.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (surrounding whitespace is removed).
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        let trimmed = key.trim();
        if trimmed.len() == key.len() {
            ApiKey(key)
        } else {
            ApiKey(trimmed.to_owned())
        }
    }

    /// The key itself, for the `Authorization` header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a key from a file (content trimmed) and checks it, as
    /// `headscale.api_key_file` does; useful to re-read a renewed key.
    pub fn from_file(path: &Path) -> Result<ApiKey, ConfigError> {
        ApiKey::read(path).map_err(|message| ConfigError::Invalid {
            setting: "headscale.api_key_file".to_owned(),
            message,
        })
    }

    /// [`ApiKey::from_file`] with the problem alone, for the caller to say
    /// where the path was set.
    pub(crate) fn read(path: &Path) -> Result<ApiKey, String> {
        let text = fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))?;
        let key = ApiKey::new(text);
        key.check()
            .map_err(|problem| format!("{}: {problem}", path.display()))?;
        Ok(key)
    }

    /// Checks the key could be sent in an HTTP header; the message never
    /// contains the key.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            return Err("the API key is empty");
        }
        if !self.0.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the API key contains whitespace or non-printable characters");
        }
        Ok(())
    }
}

/// From a string (trimmed). A value of another type is refused without
/// quoting it (the message comes from the deserializer's error type, which
/// for the settings never quotes a value of the wrong type).
impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ApiKey::new)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A file that holds a secret (`headscale.api_key_file`, or the config file
/// when it has an inline `api_key`), and why it must be private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The file.
    pub path: PathBuf,
    /// The setting whose secret it holds.
    pub setting: &'static str,
}

impl SecretFile {
    /// Why this file is not private enough, with what to do; `None` when
    /// only its owner may read it (or it cannot be inspected).
    pub fn exposure(&self) -> Option<String> {
        let mode = file_mode(&self.path)?;
        (mode & 0o077 != 0).then(|| {
            format!(
                "{} holds {} and group or others may access it (mode {:04o}); run chmod 600 {}",
                self.path.display(),
                self.setting,
                mode & 0o7777,
                self.path.display()
            )
        })
    }
}

#[cfg(unix)]
fn file_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).ok().map(|m| m.permissions().mode())
}

#[cfg(not(unix))]
fn file_mode(_: &Path) -> Option<u32> {
    None
}
