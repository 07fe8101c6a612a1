//! tart-sync against Caddy's remote admin endpoint (`admin.remote`): HTTPS
//! with mutual TLS, on Caddy 2.6.2 and 2.11.x.
//!
//! Caddy's side, from its admin.go (the same in 2.6.2 and 2.11): the remote
//! endpoint needs `admin.identity`, whose issuers give the endpoint its
//! certificate (here the `internal` issuer, i.e. Caddy's local CA, whose
//! root `/pki/ca/local` returns); `admin.remote.access_control[].public_keys`
//! are base64 DER client certificates, which are also the only CAs the
//! endpoint verifies client certificates against
//! (`tls.RequireAndVerifyClientCert`). So a client without a certificate, or
//! with one not listed, fails in the TLS handshake.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::sync::{once, Rig};
use e2e::{eventually, for_each_version, temp_dir, Version};
use serde_json::{json, Value};
use tart_sync::config::Settings;
use tart_sync::context::Context;
use tart_sync::controller;
use tart_sync::headscale::HeadscaleClient;

const WAIT: Duration = Duration::from_secs(10);

/// A self-signed client certificate for TLS client authentication: PEM of
/// the certificate, PEM of the key, base64 DER of the certificate (what
/// `access_control` lists).
fn client_cert(name: &str) -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    let der: String = cert
        .pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    (cert.pem(), key.serialize_pem(), der)
}

/// Writes `text` to `dir/name` (mode 0600, as a key file should be).
fn write_private(dir: &Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// One `once` pass with `settings`; the error tart-sync reports for the Caddy.
async fn failing_once(settings: Settings) -> String {
    let hs = HeadscaleClient::from_settings(&settings.headscale).unwrap();
    let ctx = Context::new(settings);
    assert!(
        !controller::once(&ctx, &hs, false).await.unwrap(),
        "once claimed success"
    );
    let state = ctx.snapshot();
    let caddy = &state.caddies[0];
    assert!(!caddy.reachable, "{caddy:?}");
    caddy.last_error.clone().unwrap_or_default()
}

async fn remote_admin(v: Version) {
    let (cert, key, der) = client_cert("tart-sync");
    let (stranger_cert, stranger_key, _) = client_cert("stranger");
    let remote_port = e2e::free_port();
    let remote = format!("127.0.0.1:{remote_port}");
    let rig = Rig::start_json(v, &["rhodes", "karoo"], |config| {
        config["admin"]["identity"] = json!({
            "identifiers": ["127.0.0.1"],
            "issuers": [{"module": "internal"}],
        });
        config["admin"]["remote"] = json!({
            "listen": remote,
            "access_control": [{"public_keys": [der]}],
        });
        // The internal issuer's CA; never touch the machine's trust store.
        config["apps"]["pki"] = json!({
            "certificate_authorities": {"local": {"install_trust": false}}
        });
    })
    .await
    .unwrap();

    // The CA that signed the remote endpoint's certificate, from the local endpoint.
    let ca = rig.caddy.client().pki_ca("local").await.unwrap();
    let dir = temp_dir("remote-admin");
    let ca_file = write_private(dir.path(), "ca.pem", &ca.root_certificate);
    let cert_file = write_private(dir.path(), "cert.pem", &cert);
    let key_file = write_private(dir.path(), "key.pem", &key);
    let stranger_cert_file = write_private(dir.path(), "stranger.pem", &stranger_cert);
    let stranger_key_file = write_private(dir.path(), "stranger-key.pem", &stranger_key);

    let admin = format!("https://{remote}");
    let env = |cert: Option<(&str, &str)>, ca: bool| {
        let mut e = vec![("TART_SYNC_CADDY_ADMIN", admin.as_str())];
        if ca {
            e.push(("TART_SYNC_CADDY_TLS_CA_FILE", ca_file.as_str()));
        }
        if let Some((cert, key)) = cert {
            e.push(("TART_SYNC_CADDY_TLS_CERT_FILE", cert));
            e.push(("TART_SYNC_CADDY_TLS_KEY_FILE", key));
        }
        rig.settings(&e)
    };
    let with_cert = || env(Some((&cert_file, &key_file)), true);

    // The identity certificate is issued asynchronously after the start.
    let ready = eventually(WAIT, || async {
        let client = with_cert().caddy.client(&admin).unwrap();
        client.config("admin").get::<Value>().await.ok()
    })
    .await;
    assert!(
        ready.is_some(),
        "{v:?}: remote admin never answered; log:\n{}",
        rig.caddy.log()
    );

    // With the CA and the listed client certificate: the route is installed
    // through the remote endpoint and serves the TART.
    let nodes = rig.nodes();
    rig.hs.set_nodes(&nodes[..1]).await;
    let writes_before = remote_writes(&rig, remote_port);
    assert!(
        once(with_cert()).await,
        "{v:?}: once over mutual TLS failed"
    );
    assert!(
        rig.wait_for("/rhodes/", "rhodes", WAIT).await,
        "{v:?}: {}",
        rig.who("/rhodes/").await
    );
    assert!(
        remote_writes(&rig, remote_port) > writes_before,
        "{v:?}: the route was not written through the remote endpoint"
    );

    // A second TART appears; the failing settings below must not publish it.
    rig.hs.set_nodes(&nodes).await;

    // Without a client certificate: refused in the TLS handshake.
    let err = failing_once(env(None, true)).await;
    println!("{v:?} without a client certificate: {err}");
    assert!(
        err.contains(&admin) || err.contains("cannot reach"),
        "{err}"
    );
    // Caddy 2.6.2 (Go 1.19) sends BadCertificate, 2.11 CertificateRequired.
    assert!(
        err.contains("alert: CertificateRequired") || err.contains("alert: BadCertificate"),
        "{err}"
    );
    assert!(err.contains("refused the client certificate"), "{err}");

    // With a client certificate that access_control does not list.
    let err = failing_once(env(Some((&stranger_cert_file, &stranger_key_file)), true)).await;
    println!("{v:?} with an unlisted client certificate: {err}");
    assert!(err.contains("received fatal alert"), "{err}");
    assert!(err.contains("refused the client certificate"), "{err}");

    // Without the CA: Caddy's internal CA is not among the system's roots.
    let err = failing_once(env(Some((&cert_file, &key_file)), false)).await;
    println!("{v:?} without caddy.tls_ca_file: {err}");
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    assert!(err.contains("root CA"), "{err}");

    assert_eq!(
        rig.who("/karoo/").await,
        "404",
        "{v:?}: a refused client changed the route"
    );
    // And with the right settings again, karoo follows.
    assert!(once(with_cert()).await, "{v:?}");
    assert!(rig.wait_for("/karoo/", "karoo", WAIT).await, "{v:?}");
}

/// Config writes Caddy logged as received on the remote endpoint.
fn remote_writes(rig: &Rig, port: u16) -> usize {
    let host = format!("127.0.0.1:{port}");
    rig.caddy
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["logger"] == "admin.api" && l["msg"] == "received request")
        .filter(|l| l["host"] == host.as_str())
        .filter(|l| {
            matches!(
                l["method"].as_str(),
                Some("POST" | "PUT" | "PATCH" | "DELETE")
            )
        })
        .count()
}

#[tokio::test]
async fn tart_sync_drives_caddy_through_admin_remote_with_mutual_tls() {
    for_each_version(remote_admin).await;
}
