//! `/config/[path]` and `/id/<id>[/path]`: read and change the config by path or by `@id`.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{RawBody, RawRequest};
use crate::{Client, Error};

/// Characters escaped in one path segment: everything a URL path treats specially.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// An entity tag Caddy gives for a config path: `"<expanded /config/ path> <hash>"`,
/// quotes included. Send it back with [`ConfigRequest::if_match`] to make a
/// change conditional on nobody having changed that path since.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Etag(String);

impl Etag {
    /// Wraps a raw header value (with its quotes).
    pub fn new(raw: impl Into<String>) -> Etag {
        Etag(raw.into())
    }

    /// The raw header value, quotes included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The config path the tag is for, e.g. `/config/apps/http`.
    pub fn path(&self) -> &str {
        let inner = self.0.trim_matches('"');
        inner.rsplit_once(' ').map(|(p, _)| p).unwrap_or(inner)
    }
}

impl std::fmt::Display for Etag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a [`ConfigRequest`] points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(Vec<String>),
    Id(String, Vec<String>),
}

/// A request on one place in the config, by path ([`Client::config`]) or by
/// `@id` ([`Client::id`]). Finish it with one of `get`, `get_with_etag`,
/// `post`, `put`, `patch`, `delete`.
///
/// Caddy's verbs, briefly: `post` sets an object key or appends to an array;
/// `put` creates a key that must not exist, or inserts into an array before
/// the index; `patch` replaces a key or element that must exist; `delete`
/// removes it. Every successful change reloads Caddy.
#[derive(Debug, Clone)]
pub struct ConfigRequest<'c> {
    client: &'c Client,
    target: Target,
    if_match: Option<Etag>,
    force_reload: bool,
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Client {
    /// The config at `path` (`apps/http/servers/srv0/routes/0`; `""` is the root).
    /// Segments are percent-encoded by the client; a key containing `/` cannot be addressed.
    pub fn config(&self, path: &str) -> ConfigRequest<'_> {
        ConfigRequest {
            client: self,
            target: Target::Path(segments(path)),
            if_match: None,
            force_reload: false,
        }
    }

    /// The object whose `@id` is `id`.
    pub fn id(&self, id: &str) -> ConfigRequest<'_> {
        ConfigRequest {
            client: self,
            target: Target::Id(id.to_string(), Vec::new()),
            if_match: None,
            force_reload: false,
        }
    }
}

impl<'c> ConfigRequest<'c> {
    /// A path below the current target: `client.id("x").at("handle/0")`.
    pub fn at(mut self, sub: &str) -> Self {
        match &mut self.target {
            Target::Path(p) | Target::Id(_, p) => p.extend(segments(sub)),
        }
        self
    }

    /// Makes the change conditional: Caddy answers 412
    /// ([`Error::PreconditionFailed`]) if the config changed since `etag` was read.
    pub fn if_match(mut self, etag: &Etag) -> Self {
        self.if_match = Some(etag.clone());
        self
    }

    /// Reloads even when the resulting config is identical (`Cache-Control: must-revalidate`).
    pub fn force_reload(mut self) -> Self {
        self.force_reload = true;
        self
    }

    /// The URL path this request goes to, percent-encoded. The root is `/config/`
    /// (with the slash: `/config` redirects, and a redirect loses a POST body).
    pub fn url_path(&self) -> String {
        let enc = |s: &String| utf8_percent_encode(s, SEGMENT).to_string();
        match &self.target {
            Target::Path(p) => {
                let mut out = String::from("/config/");
                out.push_str(&p.iter().map(enc).collect::<Vec<_>>().join("/"));
                out
            }
            Target::Id(id, p) => {
                let mut out = format!("/id/{}", enc(id));
                for s in p {
                    out.push('/');
                    out.push_str(&enc(s));
                }
                out
            }
        }
    }

    /// Refuses paths that would leave the addressed place: `.` and `..`
    /// segments (URL resolution would send them to another endpoint, such as
    /// `/stop`) and an `@id` containing `/` (Caddy would split it into a path).
    fn check(&self) -> Result<(), Error> {
        let (id, segs) = match &self.target {
            Target::Path(p) => (None, p),
            Target::Id(id, p) => (Some(id), p),
        };
        let bad = |reason: &str| Error::InvalidPath {
            path: self.url_path(),
            reason: reason.to_string(),
        };
        if let Some(id) = id {
            if id.is_empty() || id.contains('/') || id == "." || id == ".." {
                return Err(bad(
                    "an @id must be non-empty, must not contain '/' and must not be '.' or '..'",
                ));
            }
        }
        if segs.iter().any(|s| s == "." || s == "..") {
            return Err(bad("'.' and '..' segments are not allowed"));
        }
        Ok(())
    }

    fn raw(&self, method: Method) -> Result<RawRequest<'_>, Error> {
        self.check()?;
        let mut r = RawRequest::new(method, self.url_path());
        r.if_match = self.if_match.as_ref();
        r.force_reload = self.force_reload;
        Ok(r)
    }

    /// Reads the value. A missing final key reads as `null` (Caddy answers 200 `null`):
    /// ask for `Option<T>` to tell that apart.
    pub async fn get<T: DeserializeOwned>(&self) -> Result<T, Error> {
        self.client.send_ok(self.raw(Method::GET)?).await?.json()
    }

    /// Reads the value and its ETag (header on Caddy 2.8+, HTTP trailer on 2.6/2.7).
    pub async fn get_with_etag<T: DeserializeOwned>(&self) -> Result<(T, Etag), Error> {
        let resp = self.client.send_ok(self.raw(Method::GET)?).await?;
        let value = resp.json()?;
        let etag = resp.etag.clone().ok_or_else(|| Error::Decode {
            request: resp.request.clone(),
            detail: "no ETag in the headers or trailers (Caddy older than 2.5.2?)".into(),
            body: String::new(),
        })?;
        Ok((value, etag))
    }

    async fn mutate<B: Serialize + ?Sized>(
        &self,
        method: Method,
        body: Option<&B>,
    ) -> Result<(), Error> {
        let mut req = self.raw(method)?;
        if let Some(b) = body {
            req.body = Some(RawBody::json(b)?);
        }
        self.client.send_ok(req).await.map(|_| ())
    }

    /// Sets an object key (creating or replacing it) or appends to an array.
    pub async fn post<B: Serialize + ?Sized>(&self, body: &B) -> Result<(), Error> {
        self.mutate(Method::POST, Some(body)).await
    }

    /// Creates a key that must not exist yet ([`Error::Conflict`] if it does), or inserts
    /// into an array before the index given.
    pub async fn put<B: Serialize + ?Sized>(&self, body: &B) -> Result<(), Error> {
        self.mutate(Method::PUT, Some(body)).await
    }

    /// Replaces a key or array element that must exist ([`Error::NotFound`] if not).
    pub async fn patch<B: Serialize + ?Sized>(&self, body: &B) -> Result<(), Error> {
        self.mutate(Method::PATCH, Some(body)).await
    }

    /// Deletes the value. Deleting a missing key is [`Error::NotFound`] on Caddy 2.7.5+,
    /// and a no-op on 2.6.
    pub async fn delete(&self) -> Result<(), Error> {
        self.mutate::<()>(Method::DELETE, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_and_encoded() {
        let c = Client::new("localhost:2019").unwrap();
        assert_eq!(c.config("").url_path(), "/config/");
        assert_eq!(c.config("/apps/http/").url_path(), "/config/apps/http");
        assert_eq!(
            c.config("apps/http/servers/my srv?").url_path(),
            "/config/apps/http/servers/my%20srv%3F"
        );
        assert_eq!(c.id("tart sync").url_path(), "/id/tart%20sync");
        assert_eq!(c.id("x").at("handle/0").url_path(), "/id/x/handle/0");
    }

    #[test]
    fn etag_exposes_its_path() {
        let e = Etag::new("\"/config/apps/http 1a2b3c4d\"");
        assert_eq!(e.path(), "/config/apps/http");
    }
}
