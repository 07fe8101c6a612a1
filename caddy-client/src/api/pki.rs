//! `/pki/ca/<id>`: Caddy's certificate authorities (the `pki` app; `local` by default).

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::RawRequest;
use crate::{Client, Error};

/// A certificate authority as Caddy describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PkiCa {
    /// The CA's id (e.g. `local`).
    pub id: String,
    /// Its display name.
    #[serde(default)]
    pub name: String,
    /// Common name of the root certificate.
    #[serde(default)]
    pub root_common_name: String,
    /// Common name of the intermediate certificate.
    #[serde(default)]
    pub intermediate_common_name: String,
    /// The root certificate, PEM.
    #[serde(default)]
    pub root_certificate: String,
    /// The intermediate certificate, PEM.
    #[serde(default)]
    pub intermediate_certificate: String,
    /// Fields added by newer Caddy versions.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Client {
    /// The CA with this id (`GET /pki/ca/<id>`). Caddy creates `local` when first used.
    pub async fn pki_ca(&self, id: &str) -> Result<PkiCa, Error> {
        let path = format!("/pki/ca/{}", utf8_percent_encode(id, NON_ALPHANUMERIC));
        self.send_ok(RawRequest::new(Method::GET, path))
            .await?
            .json()
    }

    /// The CA's certificate chain, PEM (`GET /pki/ca/<id>/certificates`).
    pub async fn pki_certificates(&self, id: &str) -> Result<String, Error> {
        let path = format!(
            "/pki/ca/{}/certificates",
            utf8_percent_encode(id, NON_ALPHANUMERIC)
        );
        Ok(self
            .send_ok(RawRequest::new(Method::GET, path))
            .await?
            .text())
    }
}
