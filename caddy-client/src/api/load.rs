//! `/load`, `/adapt` and `/stop`: whole-config operations.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{RawBody, RawRequest};
use crate::error::{classify, error_message};
use crate::model::Config;
use crate::{Client, Error};

/// One warning from Caddy's config adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AdaptWarning {
    /// The file the warning is about.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// The line in that file.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub line: u64,
    /// The directive concerned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub directive: String,
    /// The warning itself.
    #[serde(default)]
    pub message: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What `/adapt` answers: the JSON config and the adapter's warnings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adapted<T = Config> {
    /// The adapted config.
    pub result: T,
    /// The adapter's warnings (e.g. "Caddyfile input is not formatted").
    #[serde(default)]
    pub warnings: Vec<AdaptWarning>,
}

impl Client {
    /// Replaces the whole config (`POST /load`). The config should keep an `admin`
    /// block: without one, Caddy moves its admin endpoint back to `localhost:2019`.
    pub async fn load<C: Serialize + ?Sized>(&self, config: &C) -> Result<(), Error> {
        self.load_body(RawBody::json(config)?, false).await
    }

    /// Like [`load`](Client::load), but reloads even if the config is unchanged.
    pub async fn load_forced<C: Serialize + ?Sized>(&self, config: &C) -> Result<(), Error> {
        self.load_body(RawBody::json(config)?, true).await
    }

    /// Adapts a Caddyfile (`POST /adapt`) and loads the result (`POST /load`), returning
    /// the adapter's warnings. Two steps because a `/load` with an adapter can answer
    /// 200 with an embedded error (Caddy up to 2.11.4).
    pub async fn load_caddyfile(&self, caddyfile: &str) -> Result<Vec<AdaptWarning>, Error> {
        let adapted: Adapted<serde_json::Value> = self.adapt_as(caddyfile).await?;
        self.load(&adapted.result).await?;
        Ok(adapted.warnings)
    }

    /// Adapts a Caddyfile to JSON without loading it (`POST /adapt`). Changes nothing.
    pub async fn adapt(&self, caddyfile: &str) -> Result<Adapted, Error> {
        self.adapt_as(caddyfile).await
    }

    /// Like [`adapt`](Client::adapt), decoding the result into any type (e.g. `serde_json::Value`).
    pub async fn adapt_as<T: serde::de::DeserializeOwned>(
        &self,
        caddyfile: &str,
    ) -> Result<Adapted<T>, Error> {
        let mut req = RawRequest::new(Method::POST, "/adapt");
        req.body = Some(RawBody {
            bytes: caddyfile.as_bytes().to_vec(),
            content_type: "text/caddyfile",
        });
        let resp = self.send_ok(req).await?;
        resp.json()
    }

    /// Stops Caddy (`POST /stop`): it answers, then the process exits.
    pub async fn stop(&self) -> Result<(), Error> {
        self.send_ok(RawRequest::new(Method::POST, "/stop"))
            .await
            .map(|_| ())
    }

    async fn load_body(&self, body: RawBody, force: bool) -> Result<(), Error> {
        let mut req = RawRequest::new(Method::POST, "/load");
        req.body = Some(body);
        req.force_reload = force;
        let resp = self.send_ok(req).await?;
        // A 200 may still carry an error after the adapter's warnings.
        if let Some(msg) = error_message(&resp.body) {
            if resp.text().contains("\"error\"") {
                return Err(classify(resp.status, msg, resp.request.clone()));
            }
        }
        Ok(())
    }
}
