//! The client type, its builder, and the transport every endpoint group uses.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use reqwest::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, HOST, IF_MATCH};
use reqwest::Method;

use crate::api::config::Etag;
use crate::error::{excerpt, BoxError, Error};

/// Default timeout for reads (GET) and other cheap requests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout for requests that change the config: each one reloads
/// Caddy, which takes about 0.5 s at 5,000 routes and more on a busy machine.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit on the size of one answer's body (64 MiB): a config of
/// 10,000 routes is well under 10 MB, and an endpoint that sends more is not
/// answered in memory.
pub const DEFAULT_MAX_BODY_SIZE: usize = 64 * 1024 * 1024;

/// Where Caddy's admin endpoint listens, parsed from Caddy's own address forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAddress {
    /// A TCP endpoint: `localhost:2019`, `http://host:port` or `https://host:port`.
    Tcp {
        /// `http` or `https`.
        scheme: String,
        /// Host name or IP literal (IPv6 in brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix socket: `unix//run/caddy/admin.sock` (an optional `|0660` mode suffix is ignored).
    Unix(PathBuf),
}

impl AdminAddress {
    /// Parses Caddy's admin address forms.
    pub fn parse(address: &str) -> Result<AdminAddress, Error> {
        let invalid = |reason: &str| Error::InvalidAddress {
            address: address.to_string(),
            reason: reason.to_string(),
        };
        let a = address.trim();
        if a.is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(rest) = a.strip_prefix("unix/") {
            // Caddy writes unix//abs/path; strip an optional |mode suffix.
            let path = rest.split('|').next().unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid("missing socket path after unix/"));
            }
            return Ok(AdminAddress::Unix(PathBuf::from(path)));
        }
        let (scheme, rest) = if let Some(r) = a.strip_prefix("http://") {
            ("http", r)
        } else if let Some(r) = a.strip_prefix("https://") {
            ("https", r)
        } else if a.contains("://") {
            return Err(invalid("unsupported scheme"));
        } else if let Some(r) = a.strip_prefix("tcp/") {
            ("http", r)
        } else {
            ("http", a)
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(invalid("an admin address has no path"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| invalid("expected host:port"))?;
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| invalid("port is not a number from 1 to 65535"))?,
            None if scheme == "https" => 443,
            None if a.starts_with("http://") => 80,
            None => return Err(invalid("missing port")),
        };
        if port == 0 {
            return Err(invalid("port 0 is not an address to connect to"));
        }
        if !is_valid_host(host) {
            return Err(invalid(
                "the host must be a DNS name, an IPv4 address or an [IPv6] literal \
                 (no '#', '?', '/', '@', spaces or control characters)",
            ));
        }
        let host = if host.is_empty() {
            "localhost".to_string()
        } else {
            host.to_string()
        };
        Ok(AdminAddress::Tcp {
            scheme: scheme.to_string(),
            host,
            port,
        })
    }
}

impl std::fmt::Display for AdminAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAddress::Tcp { scheme, host, port } => write!(f, "{scheme}://{host}:{port}"),
            AdminAddress::Unix(p) => write!(f, "unix/{}", p.display()),
        }
    }
}

/// A host Caddy's admin address may name: empty (localhost), a DNS name or
/// IPv4 address (letters, digits, `-`, `.`, `_`), or a bracketed IPv6
/// literal. Anything else (`localhost#`, `a?b`, `user@host`, spaces, control
/// characters) would change what URL the request goes to.
fn is_valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &s[..end + 2];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None, // a bare IPv6 literal needs brackets
        None => Some((s, None)),
    }
}

/// A client for one Caddy admin endpoint. Cheap to clone; clones share connections.
///
/// Build one with [`Client::new`] or [`Client::builder`]; the endpoint groups
/// are methods: [`config`](Client::config), [`id`](Client::id),
/// [`load`](Client::load), [`adapt`](Client::adapt), [`stop`](Client::stop),
/// [`upstreams`](Client::upstreams), [`pki_ca`](Client::pki_ca),
/// [`capabilities`](Client::capabilities).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    address: AdminAddress,
    /// `scheme://authority` every request path is appended to.
    base: String,
    /// The Host header to send: `Some("")` over a unix socket.
    host: Option<HeaderValue>,
    timeout: Duration,
    write_timeout: Duration,
    max_body_size: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.inner.address)
            .field("timeout", &self.inner.timeout)
            .field("write_timeout", &self.inner.write_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the admin endpoint at `admin`, in any of Caddy's forms:
    /// `localhost:2019`, `http://host:port`, `https://host:port`,
    /// `unix//run/caddy/admin.sock`.
    pub fn new(admin: &str) -> Result<Client, Error> {
        Client::builder().address(admin).build()
    }

    /// A builder for timeouts, Host, TLS (root CA, client certificate) or a prebuilt HTTP client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The admin address this client talks to.
    pub fn address(&self) -> &AdminAddress {
        &self.inner.address
    }

    /// Sends one request and returns status, headers, body and the ETag (from
    /// the header on Caddy 2.8+, from the HTTP trailer on 2.6/2.7).
    ///
    /// A request that fails on a connection Caddy closed (every reload closes
    /// pooled admin connections) is retried once when it is safe to repeat:
    /// GET, DELETE, `/adapt` (which changes nothing), and any request guarded by `If-Match`.
    pub(crate) async fn send(&self, req: RawRequest<'_>) -> Result<RawResponse, Error> {
        let label = format!("{} {}", req.method, req.path);
        let timeout = if req.method == Method::GET {
            self.inner.timeout
        } else {
            self.inner.write_timeout
        };
        if let Some(etag) = req.if_match {
            if HeaderValue::from_str(etag.as_str()).is_err() {
                return Err(Error::Builder {
                    reason: format!(
                        "ETag {:?} cannot be sent as an If-Match header",
                        etag.as_str()
                    ),
                });
            }
        }
        let repeatable = req.method == Method::GET
            || req.method == Method::DELETE
            || req.if_match.is_some()
            || req.path == "/adapt"; // adapting changes nothing
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(&req, timeout).await {
                Ok(resp) => return Ok(resp),
                Err(SendError::Timeout) => {
                    return Err(Error::Timeout {
                        request: label,
                        after: timeout,
                    })
                }
                Err(SendError::TooLarge) => {
                    return Err(Error::TooLarge {
                        request: label,
                        limit: self.inner.max_body_size,
                    })
                }
                Err(SendError::Cut(status, e)) => {
                    if repeatable && attempt == 1 {
                        tracing::debug!(request = %label, error = %e, "retrying once after an answer cut short");
                        continue;
                    }
                    return Err(Error::Truncated {
                        request: label,
                        status,
                        source: e,
                    });
                }
                Err(SendError::Transport(e)) => {
                    if repeatable && attempt == 1 {
                        tracing::debug!(request = %label, error = %e, "retrying once after a closed connection");
                        continue;
                    }
                    return Err(Error::Transport {
                        request: label,
                        source: e,
                    });
                }
            }
        }
    }

    async fn send_once(
        &self,
        req: &RawRequest<'_>,
        timeout: Duration,
    ) -> Result<RawResponse, SendError> {
        let url = format!("{}{}", self.inner.base, req.path);
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), url)
            .timeout(timeout);
        let mut headers = HeaderMap::new();
        if let Some(host) = &self.inner.host {
            headers.insert(HOST, host.clone());
        }
        if let Some(body) = &req.body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(body.content_type));
        }
        if let Some(etag) = req.if_match {
            let v = HeaderValue::from_str(etag.as_str())
                .map_err(|e| SendError::Transport(Box::new(e)))?;
            headers.insert(IF_MATCH, v);
        }
        if req.force_reload {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("must-revalidate"));
        }
        builder = builder.headers(headers);
        if let Some(body) = &req.body {
            builder = builder.body(body.bytes.clone());
        }
        let resp = builder.send().await.map_err(SendError::from)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let header_etag = headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|s| Etag::new(s.to_string()));
        let http_resp: http::Response<reqwest::Body> = resp.into();
        // Read in chunks as they arrive, and give up past the limit.
        let collected = Limited::new(http_resp.into_body(), self.inner.max_body_size)
            .collect()
            .await
            .map_err(|e| SendError::from_body(status, e))?;
        let trailer_etag = collected
            .trailers()
            .and_then(|t| t.get(ETAG))
            .and_then(|v| v.to_str().ok())
            .map(|s| Etag::new(s.to_string()));
        let body = collected.to_bytes();
        Ok(RawResponse {
            status,
            headers,
            body: body.to_vec(),
            etag: header_etag.or(trailer_etag),
            request: String::new(),
        })
        .map(|mut r| {
            r.request = format!("{} {}", req.method, req.path);
            r
        })
    }

    /// Sends and turns any non-2xx answer into a typed error.
    pub(crate) async fn send_ok(&self, req: RawRequest<'_>) -> Result<RawResponse, Error> {
        let resp = self.send(req).await?;
        if (200..300).contains(&resp.status) {
            Ok(resp)
        } else {
            Err(Error::from_response(
                resp.status,
                &resp.body,
                resp.request.clone(),
            ))
        }
    }
}

enum SendError {
    Timeout,
    TooLarge,
    /// The answer's head arrived (with this status) but its body was cut.
    Cut(u16, BoxError),
    Transport(BoxError),
}

impl SendError {
    /// An error while reading the body (through [`Limited`]) of an answer
    /// whose head said `status`: too large, a timeout, or cut short.
    fn from_body(status: u16, e: BoxError) -> SendError {
        if e.is::<LengthLimitError>() {
            return SendError::TooLarge;
        }
        match e.downcast::<reqwest::Error>() {
            Ok(e) if e.is_timeout() => SendError::Timeout,
            Ok(e) => SendError::Cut(status, e),
            Err(e) => SendError::Cut(status, e),
        }
    }
}

impl From<reqwest::Error> for SendError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            SendError::Timeout
        } else {
            SendError::Transport(Box::new(e))
        }
    }
}

/// A request body with its content type.
pub(crate) struct RawBody {
    pub(crate) bytes: Vec<u8>,
    pub(crate) content_type: &'static str,
}

impl RawBody {
    pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<RawBody, Error> {
        Ok(RawBody {
            bytes: serde_json::to_vec(value).map_err(Error::Encode)?,
            content_type: "application/json",
        })
    }
}

/// One request to the admin API.
pub(crate) struct RawRequest<'a> {
    pub(crate) method: Method,
    /// Path and query, starting with `/`.
    pub(crate) path: String,
    pub(crate) body: Option<RawBody>,
    pub(crate) if_match: Option<&'a Etag>,
    pub(crate) force_reload: bool,
}

impl<'a> RawRequest<'a> {
    pub(crate) fn new(method: Method, path: impl Into<String>) -> Self {
        RawRequest {
            method,
            path: path.into(),
            body: None,
            if_match: None,
            force_reload: false,
        }
    }
}

/// One answer from the admin API.
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    #[allow(dead_code)]
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) etag: Option<Etag>,
    /// `METHOD /path`, for error messages.
    pub(crate) request: String,
}

impl RawResponse {
    /// Decodes the body as JSON; an empty body decodes as `null`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        let body: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| Error::Decode {
            request: self.request.clone(),
            detail: e.to_string(),
            body: excerpt(&String::from_utf8_lossy(&self.body), 200),
        })
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Builds a [`Client`]: address, timeouts, Host, TLS, or a prebuilt HTTP client.
#[derive(Default)]
pub struct ClientBuilder {
    address: Option<String>,
    timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    host: Option<String>,
    root_ca_pem: Option<Vec<u8>>,
    identity_pem: Option<Vec<u8>>,
    http: Option<reqwest::Client>,
    max_body_size: Option<usize>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .field("write_timeout", &self.write_timeout)
            .field("host", &self.host)
            .field("root_ca", &self.root_ca_pem.is_some())
            .field(
                "client_identity",
                &self.identity_pem.as_ref().map(|_| "***"),
            )
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The admin address (default `localhost:2019`), in any of Caddy's forms.
    pub fn address(mut self, admin: &str) -> Self {
        self.address = Some(admin.to_string());
        self
    }

    /// Timeout for reads and other cheap requests (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Timeout for requests that change the config and so reload Caddy (default 60 s).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// The largest answer body read, in bytes (default
    /// [`DEFAULT_MAX_BODY_SIZE`]); a larger one fails with
    /// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) without being kept in memory.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = Some(bytes);
        self
    }

    /// Connect timeout (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The Host header to send, for an admin endpoint whose `admin.origins`
    /// lists a name other than the address dialled. Over a unix socket the
    /// default is an empty Host, which Caddy 2.6 through 2.11 all accept.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// Trusts this root CA (PEM), e.g. Caddy's own for `admin.remote`.
    pub fn root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_ca_pem = Some(pem.into());
        self
    }

    /// Presents this client certificate and private key (PEM, concatenated) for mutual TLS (`admin.remote`).
    pub fn client_identity_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.identity_pem = Some(pem.into());
        self
    }

    /// Uses a prebuilt `reqwest::Client` (its own TLS, proxy or socket settings).
    /// Timeouts set on this builder still apply per request.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let raw = self.address.as_deref().unwrap_or("localhost:2019");
        let address = AdminAddress::parse(raw)?;
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let builder_err = |what: &str, e: reqwest::Error| Error::Builder {
            reason: format!("{what}: {}", crate::error::chain(&e)),
        };
        let (base, mut host) = match &address {
            AdminAddress::Tcp { scheme, host, port } => (format!("{scheme}://{host}:{port}"), None),
            // The authority is not dialled over a socket; Caddy 2.6 requires an empty Host.
            AdminAddress::Unix(_) => (
                "http://localhost".to_string(),
                Some(HeaderValue::from_static("")),
            ),
        };
        if let Some(h) = &self.host {
            host = Some(HeaderValue::from_str(h).map_err(|e| Error::Builder {
                reason: format!("host {h:?}: {e}"),
            })?);
        }
        let http = match self.http {
            Some(c) => c,
            None => {
                let mut b = reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .http1_only()
                    .user_agent(concat!("caddy-client/", env!("CARGO_PKG_VERSION")));
                if let AdminAddress::Unix(path) = &address {
                    b = b.unix_socket(path.clone());
                }
                if let Some(pem) = &self.root_ca_pem {
                    let cert = reqwest::Certificate::from_pem(pem)
                        .map_err(|e| builder_err("root CA", e))?;
                    b = b.add_root_certificate(cert);
                }
                if let Some(pem) = &self.identity_pem {
                    let id = reqwest::Identity::from_pem(pem)
                        .map_err(|e| builder_err("client certificate", e))?;
                    b = b.identity(id);
                }
                b.build().map_err(|e| builder_err("HTTP client", e))?
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                address,
                base,
                host,
                timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                write_timeout: self.write_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT),
                max_body_size: self.max_body_size.unwrap_or(DEFAULT_MAX_BODY_SIZE),
            }),
        })
    }
}

#[cfg(test)]
mod tests;
