//! The packaging files say what the docs promise: `docker-compose.example.yml`
//! (parsed as YAML), `packaging/tart-sync.service` and the `Dockerfile`.
//! Nothing is built or started here.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

const ADMIN_SOCKET: &str = "unix//run/caddy/admin.sock";
const SECRET_PATH: &str = "/run/secrets/headscale-api-key";
const CONFIG_PATH: &str = "/etc/tart-sync/tart-sync.toml";

fn repo_file(rel: &str) -> (PathBuf, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(rel);
    let text =
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    (p, text)
}

// ---------------------------------------------------------------------------
// docker-compose.example.yml

fn compose() -> Value {
    let (p, text) = repo_file("docker-compose.example.yml");
    serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", p.display()))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name:?}"))
}

/// A list of strings (`[]` when absent).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .unwrap_or_else(|| panic!("not a string: {i:?}"))
                    .to_string()
            })
            .collect(),
        other => panic!("expected a list, found {other:?}"),
    }
}

/// A service's environment, in either of compose's forms (map or `KEY=value` list).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
                };
                (k.as_str().unwrap().to_string(), v)
            })
            .collect(),
        Value::Sequence(_) => strings(&service["environment"])
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect(),
        other => panic!("environment: unexpected {other:?}"),
    }
}

/// Short-syntax volume entries as (source, target).
fn volumes(service: &Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .into_iter()
        .map(|v| {
            let mut parts = v.split(':');
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn compose_caddy_shares_the_tailscale_network_namespace() {
    let c = compose();
    let ts = service(&c, "tailscale");
    let caddy = service(&c, "caddy");

    assert_eq!(caddy["network_mode"].as_str(), Some("service:tailscale"));
    // A service in another's namespace cannot publish ports; the namespace owner does.
    assert!(
        caddy.get("ports").is_none(),
        "caddy cannot publish ports with network_mode: service:"
    );
    let ports = strings(&ts["ports"]);
    for p in ["80:80", "443:443"] {
        assert!(
            ports.iter().any(|x| x == p),
            "tailscale publishes {p}: {ports:?}"
        );
    }
    assert!(strings(&caddy["depends_on"]).contains(&"tailscale".to_string()));

    // The tailscale container can reach the tailnet with kernel networking.
    assert!(strings(&ts["devices"])
        .iter()
        .any(|d| d.starts_with("/dev/net/tun")));
    assert!(strings(&ts["cap_add"]).contains(&"NET_ADMIN".to_string()));
    let env = environment(ts);
    assert!(
        env["TS_AUTHKEY"].starts_with("${TS_AUTHKEY"),
        "the auth key comes from the environment: {:?}",
        env["TS_AUTHKEY"]
    );
    assert!(
        env["TS_EXTRA_ARGS"].contains("--login-server="),
        "tailscale logs in to headscale"
    );
    assert_eq!(env.get("TS_USERSPACE").map(String::as_str), Some("false"));
    assert!(
        volumes(ts).iter().any(|(_, t)| t == "/var/lib/tailscale"),
        "tailscale state is kept"
    );
    assert!(c["volumes"].get("tailscale-state").is_some());
}

#[test]
fn compose_admin_socket_is_shared_through_a_volume() {
    let c = compose();
    let caddy = service(&c, "caddy");
    let ts = service(&c, "tart-sync");

    let admin_mount = ("caddy-admin".to_string(), "/run/caddy".to_string());
    assert!(
        volumes(caddy).contains(&admin_mount),
        "{:?}",
        volumes(caddy)
    );
    assert!(volumes(ts).contains(&admin_mount), "{:?}", volumes(ts));
    assert!(
        c["volumes"].get("caddy-admin").is_some(),
        "caddy-admin is a named volume"
    );
    assert!(
        volumes(service(&c, "tailscale"))
            .iter()
            .all(|(s, _)| s != "caddy-admin"),
        "only caddy and tart-sync see the socket"
    );

    let caddy_admin = &environment(caddy)["CADDY_ADMIN"];
    assert!(
        caddy_admin.starts_with(ADMIN_SOCKET),
        "Caddy listens on the socket: {caddy_admin}"
    );
    assert!(
        volumes(caddy)
            .iter()
            .any(|(_, t)| t == "/etc/caddy/Caddyfile"),
        "the Caddyfile is mounted"
    );
    assert_eq!(environment(ts)["TART_SYNC_CADDY_ADMIN"], ADMIN_SOCKET);
}

#[test]
fn compose_tart_sync_gets_the_api_key_as_a_secret() {
    let c = compose();
    let ts = service(&c, "tart-sync");
    assert_eq!(ts["build"].as_str(), Some("."));
    assert!(strings(&ts["secrets"]).contains(&"headscale-api-key".to_string()));
    let file = c["secrets"]["headscale-api-key"]["file"]
        .as_str()
        .expect("the secret comes from a file");
    assert!(!file.is_empty());
    let env = environment(ts);
    assert_eq!(env["TART_SYNC_HEADSCALE_API_KEY_FILE"], SECRET_PATH);
    assert!(
        volumes(ts).iter().any(|(_, t)| t == CONFIG_PATH),
        "the config file is mounted where the image's CMD reads it"
    );
    assert!(
        strings(&ts["ports"])
            .iter()
            .all(|p| p.starts_with("127.0.0.1:")),
        "the status page is published on loopback only"
    );
    assert_eq!(
        env.get("TART_SYNC_STATUS_LISTEN").map(String::as_str),
        Some("0.0.0.0:9180")
    );
}

#[test]
fn compose_holds_no_secret() {
    let (_, text) = repo_file("docker-compose.example.yml");
    for literal in ["hskey-", "tskey-"] {
        assert!(
            !text.contains(literal),
            "a key literal ({literal}…) in docker-compose.example.yml"
        );
    }
    let c = compose();
    for (name, svc) in c["services"].as_mapping().unwrap() {
        for (k, v) in environment(svc) {
            // An inline API key is not allowed; a file path or an ${ENV} reference is.
            assert!(
                !(k.ends_with("API_KEY") || k == "TS_AUTHKEY") || v.starts_with("${"),
                "{name:?}: {k} must not hold a literal key"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// packaging/tart-sync.service

/// `Section.Key` → every value of the key (systemd keys may repeat).
fn unit() -> BTreeMap<String, Vec<String>> {
    let (_, text) = repo_file("packaging/tart-sync.service");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        assert!(!section.is_empty(), "{line} outside a section");
        out.entry(format!("{section}.{}", k.trim()))
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

fn one<'a>(u: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match u.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected one value, found {other:?}"),
    }
}

#[test]
fn systemd_unit_has_the_key_lines() {
    let u = unit();
    assert!(one(&u, "Unit.After")
        .split_whitespace()
        .any(|x| x == "caddy.service"));
    let exec = one(&u, "Service.ExecStart");
    assert!(
        exec.starts_with('/') && exec.ends_with(&format!("--config {CONFIG_PATH} run")),
        "{exec}"
    );
    assert!(
        one(&u, "Service.DynamicUser") == "yes" || u.contains_key("Service.User"),
        "never root"
    );
    assert_eq!(one(&u, "Service.SupplementaryGroups"), "caddy");
    assert_eq!(
        one(&u, "Service.LoadCredential"),
        "headscale-api-key:/etc/tart-sync/headscale-api-key"
    );
    assert!(u["Service.Environment"]
        .iter()
        .any(|e| e == "TART_SYNC_HEADSCALE_API_KEY_FILE=%d/headscale-api-key"));
    assert!(
        !u["Service.Environment"]
            .iter()
            .any(|e| e.starts_with("TART_SYNC_HEADSCALE_API_KEY=")),
        "no inline key"
    );
    assert_eq!(one(&u, "Service.Restart"), "on-failure");
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(one(&u, &format!("Service.{k}")), v, "{k}");
    }
    assert_eq!(one(&u, "Install.WantedBy"), "multi-user.target");
}

// ---------------------------------------------------------------------------
// Dockerfile

/// The Dockerfile's instructions (continuation lines joined, comments dropped)
/// as (INSTRUCTION, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let (_, text) = repo_file("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            current.push_str(cont);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (instr, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((current.as_str(), ""));
        out.push((instr.to_ascii_uppercase(), args.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_builds_in_rust_and_runs_as_non_root() {
    let d = dockerfile();
    let froms: Vec<usize> = d
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {d:?}");
    let builder = &d[froms[0]].1;
    assert!(
        builder.starts_with("rust:") && builder.contains("bookworm"),
        "{builder}"
    );
    assert!(
        d.iter().any(|(i, a)| i == "RUN"
            && a.contains("cargo build --release")
            && a.contains("-p tart-sync")),
        "builds tart-sync in release mode"
    );

    // The final stage: a small runtime, a non-root USER, the entrypoint.
    let last = *froms.last().unwrap();
    let runtime = &d[last].1;
    assert!(
        runtime.contains("distroless/cc") || runtime.contains("debian:bookworm-slim"),
        "{runtime}"
    );
    let final_stage = &d[last..];
    let user = final_stage
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, a)| a.as_str())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        !["root", "0", ""].contains(&uid),
        "runs as non-root, not {user:?}"
    );
    let get = |instr: &str| {
        final_stage
            .iter()
            .rev()
            .find(|(i, _)| i == instr)
            .map(|(_, a)| a.as_str())
    };
    assert_eq!(get("ENTRYPOINT"), Some("[\"tart-sync\"]"));
    assert_eq!(
        get("CMD"),
        Some(format!("[\"--config\", \"{CONFIG_PATH}\", \"run\"]").as_str())
    );
    assert_eq!(get("EXPOSE"), Some("9180"));
}

#[test]
fn dockerfile_copies_every_workspace_member() {
    let (_, cargo) = repo_file("Cargo.toml");
    let members_line = cargo
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    let list = members_line
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(l, _)| l)
        .expect("members = [...] on one line");
    let members: Vec<&str> = list
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.contains(&"tart-sync"));
    let copied: Vec<String> = dockerfile()
        .into_iter()
        .filter(|(i, _)| i == "COPY")
        .map(|(_, a)| a)
        .collect();
    let copies = |src: &str| {
        copied.iter().any(|a| {
            !a.starts_with("--from") && a.split_whitespace().any(|w| w.trim_end_matches('/') == src)
        })
    };
    for m in members.iter().copied().chain(["Cargo.toml", "Cargo.lock"]) {
        assert!(
            copies(m),
            "the Dockerfile does not COPY {m} (cargo needs every workspace member): {copied:?}"
        );
    }
}
