//! A stand-in for headscale's API (wiremock), following its documented shapes.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The API key the stand-in accepts.
pub const API_KEY: &str = "hskey-api-TESTPREFIX-s3cr3tS3CR3Ts3cr3t";

/// One simulated node, rendered as headscale 0.28 protojson.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub id: u64,
    pub given_name: String,
    pub ip: String,
    pub online: bool,
    pub last_seen: OffsetDateTime,
    pub tags: Vec<String>,
    pub user: String,
    pub expiry: Option<OffsetDateTime>,
}

impl SimNode {
    pub fn new(id: u64, given_name: &str, ip: impl ToString) -> SimNode {
        SimNode {
            id,
            given_name: given_name.to_string(),
            ip: ip.to_string(),
            online: true,
            last_seen: OffsetDateTime::now_utc(),
            tags: vec!["tag:tart".into()],
            user: "tagged-devices".into(),
            expiry: None,
        }
    }

    pub fn json(&self) -> Value {
        let ts = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        json!({
            "id": self.id.to_string(),
            "machineKey": format!("mkey:{:064x}", self.id),
            "nodeKey": format!("nodekey:{:064x}", self.id),
            "discoKey": format!("discokey:{:064x}", self.id),
            "ipAddresses": [self.ip, format!("fd7a:115c:a1e0::{:x}", self.id)],
            "name": format!("host-{}", self.given_name),
            "user": {"id": "2147455555", "name": self.user, "createdAt": "0001-01-01T00:00:00Z"},
            "lastSeen": ts(self.last_seen),
            "expiry": self.expiry.map(ts),
            "preAuthKey": null,
            "createdAt": "2026-07-01T09:00:00Z",
            "registerMethod": "REGISTER_METHOD_AUTH_KEY",
            "givenName": self.given_name,
            "online": self.online,
            "approvedRoutes": [], "availableRoutes": [], "subnetRoutes": [],
            "tags": self.tags,
        })
    }
}

/// The stand-in server.
pub struct Headscale {
    pub server: MockServer,
}

impl Headscale {
    pub async fn start() -> Headscale {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Headscale {
            server: MockServer::builder().listener(listener).start().await,
        }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Serves these nodes on `/api/v1/node` (0.23+), replacing whatever was served.
    pub async fn set_nodes(&self, nodes: &[SimNode]) {
        let body = json!({"nodes": nodes.iter().map(SimNode::json).collect::<Vec<_>>()});
        self.set_body(body).await;
    }

    /// Serves a raw JSON body on `/api/v1/node`.
    pub async fn set_body(&self, body: Value) {
        self.server.reset().await;
        Mock::given(method("GET"))
            .and(path("/api/v1/node"))
            .and(wiremock::matchers::header(
                "authorization",
                format!("Bearer {API_KEY}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.server)
            .await;
        self.unauthorized_otherwise().await;
    }

    /// Serves a fixture generation: 0.22 bodies on `/api/v1/machine` with 404 on `/node`.
    pub async fn set_fixture(&self, body: Value) {
        self.server.reset().await;
        let p = if body.get("machines").is_some() {
            "/api/v1/machine"
        } else {
            "/api/v1/node"
        };
        Mock::given(method("GET"))
            .and(path(p))
            .and(wiremock::matchers::header(
                "authorization",
                format!("Bearer {API_KEY}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.server)
            .await;
        if p == "/api/v1/machine" {
            // headscale 0.22 has no /api/v1/node.
            Mock::given(path("/api/v1/node"))
                .respond_with(ResponseTemplate::new(404).set_body_string("404 page not found"))
                .mount(&self.server)
                .await;
        }
        self.unauthorized_otherwise().await;
    }

    async fn unauthorized_otherwise(&self) {
        Mock::given(method("GET"))
            .and(path("/api/v1/node"))
            .respond_with(ResponseTemplate::new(401).set_body_string("Unauthorized"))
            .with_priority(10)
            .mount(&self.server)
            .await;
    }

    /// Answers every request with this template (500, 401, garbage, delays).
    pub async fn fail_with(&self, t: ResponseTemplate) {
        self.server.reset().await;
        Mock::given(method("GET"))
            .respond_with(t)
            .mount(&self.server)
            .await;
    }
}

/// Loads a fixture from tests/fixtures/headscale and points every IPv4 address
/// of its nodes at the given loopback addresses (in order).
pub fn fixture(name: &str, ips: &[std::net::Ipv4Addr]) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/headscale")
        .join(name);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let key = if v.get("machines").is_some() {
        "machines"
    } else {
        "nodes"
    };
    for (i, n) in v[key].as_array_mut().unwrap().iter_mut().enumerate() {
        if let Some(ip) = ips.get(i) {
            n["ipAddresses"][0] = json!(ip.to_string());
        }
    }
    v
}

/// The pre-auth key the stand-in hands out (not a real key).
pub const DEMO_PREAUTH_KEY: &str =
    "hskey-auth-DemoStandIn1-0000000000000000000000000000000000000000000000000000000000000000";

impl Headscale {
    /// Also answers what `tart-sync enrol` asks, as headscale 0.28 does:
    /// `GET /version`, `GET /api/v1/user` and `POST /api/v1/preauthkey`
    /// (always [`DEMO_PREAUTH_KEY`], tagged, no user). [`Headscale::set_nodes`]
    /// removes these answers again.
    pub async fn serve_enrolment(&self) {
        Mock::given(method("GET"))
            .and(path("/version"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"version": "v0.28.0", "commit": "stand-in"})),
            )
            .mount(&self.server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/v1/user"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"users": []})))
            .mount(&self.server)
            .await;
        let expiration = OffsetDateTime::now_utc() + time::Duration::hours(24);
        Mock::given(method("POST"))
            .and(path("/api/v1/preauthkey"))
            .and(wiremock::matchers::header(
                "authorization",
                format!("Bearer {API_KEY}").as_str(),
            ))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"preAuthKey": {
                    "user": null,
                    "id": "1",
                    "key": DEMO_PREAUTH_KEY,
                    "reusable": false,
                    "ephemeral": false,
                    "used": false,
                    "expiration": expiration.format(&Rfc3339).unwrap_or_default(),
                    "createdAt": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
                    "aclTags": ["tag:tart"],
                }})),
            )
            .mount(&self.server)
            .await;
    }
}
