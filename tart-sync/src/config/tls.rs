//! `caddy.tls_*`: the root CA and the client certificate for `https://`
//! admin addresses (Caddy's `admin.remote`), read and checked at load time,
//! and the one place that builds a [`caddy_client::Client`] from the settings.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use caddy_client::{Client, ClientBuilder};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::io_reason;
use super::{CaddySettings, MAX_CADDY_CONNECT_TIMEOUT};

/// `caddy.tls_ca_file`: root certificates (PEM) that `https://` admin
/// addresses are verified with, besides the system's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// The file.
    pub path: PathBuf,
    /// Its content as read at load time (one or more PEM certificates).
    pem: Vec<u8>,
}

/// `caddy.tls_cert_file` and `caddy.tls_key_file`: the client certificate
/// tart-sync presents to `https://` admin addresses (mutual TLS). Its `Debug`
/// shows the paths, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate file (PEM; the client certificate first, then any
    /// intermediates).
    pub cert_file: PathBuf,
    /// The private key file (PEM: PKCS#8, RSA or EC).
    pub key_file: PathBuf,
    /// Certificate and key as read at load time, concatenated.
    pem: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl CaddySettings {
    /// A client builder for the admin endpoint at `address` with these
    /// settings: `caddy.timeout` for reads (connecting limited to it, at most
    /// [`MAX_CADDY_CONNECT_TIMEOUT`]), `caddy.write_timeout` for writes, and
    /// the `caddy.tls_*` files (they take effect on `https://` addresses).
    /// Every admin API client of tart-sync starts here: the reconcile
    /// ([`crate::reconcile::Instance::new`]), `plan`, `check` and the status
    /// page (which shortens its reads).
    pub fn client_builder(&self, address: &str) -> ClientBuilder {
        let mut builder = Client::builder()
            .address(address)
            .timeout(self.timeout)
            .write_timeout(self.write_timeout)
            .connect_timeout(self.timeout.min(MAX_CADDY_CONNECT_TIMEOUT));
        if let Some(ca) = &self.tls_ca {
            builder = builder.root_ca_pem(ca.pem.clone());
        }
        if let Some(identity) = &self.tls_identity {
            builder = builder.client_identity_pem(identity.pem.clone());
        }
        builder
    }

    /// [`CaddySettings::client_builder`], built: a client for the admin API
    /// at `address`. Fails only when the address cannot be used.
    pub fn client(&self, address: &str) -> Result<Client, caddy_client::Error> {
        self.client_builder(address).build()
    }
}

/// Reads `path` (as bytes; a problem names the file, never its content).
fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))
}

/// The certificates of a PEM file: at least one, all well-formed PEM.
fn certificates(path: &Path, bytes: &[u8]) -> Result<usize, String> {
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, pem::Error>>()
        .map_err(|e| format!("{} is not a valid PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs.len())
}

/// Reads and checks `caddy.tls_ca_file`; the problem names the file.
pub(super) fn ca_file(path: PathBuf) -> Result<CaFile, String> {
    let pem = read(&path)?;
    certificates(&path, &pem)?;
    // The client takes it as it will at every start (a certificate that is
    // not a usable trust anchor fails here, not at the first request).
    Client::builder()
        .root_ca_pem(pem.clone())
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(CaFile { path, pem })
}

/// Which of the two identity files a problem is about.
pub(super) enum IdentityProblem {
    /// `caddy.tls_cert_file`.
    Cert(String),
    /// `caddy.tls_key_file` (the message never holds the key).
    Key(String),
}

/// Reads and checks `caddy.tls_cert_file` and `caddy.tls_key_file`: a
/// certificate, a private key, and the key belongs to the certificate.
pub(super) fn client_identity(
    cert_file: PathBuf,
    key_file: PathBuf,
) -> Result<ClientIdentity, IdentityProblem> {
    let cert = read(&cert_file).map_err(IdentityProblem::Cert)?;
    certificates(&cert_file, &cert).map_err(IdentityProblem::Cert)?;
    let key = read(&key_file).map_err(IdentityProblem::Key)?;
    // Not pem's message: it may quote a line of the file.
    PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        IdentityProblem::Key(match e {
            pem::Error::NoItemsFound => format!(
                "{} holds no PEM private key (PKCS#8, RSA or EC: -----BEGIN PRIVATE KEY-----)",
                key_file.display()
            ),
            _ => format!("{} is not a valid PEM file", key_file.display()),
        })
    })?;
    let mut pem = cert;
    pem.push(b'\n');
    pem.extend_from_slice(&key);
    Client::builder()
        .client_identity_pem(pem.clone())
        .build()
        .map_err(|e| {
            IdentityProblem::Key(format!(
                "{} is not the private key of the certificate in {}: {e}",
                key_file.display(),
                cert_file.display()
            ))
        })?;
    Ok(ClientIdentity {
        cert_file,
        key_file,
        pem,
    })
}
