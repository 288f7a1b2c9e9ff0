//! TLS client settings shared by the network backends (PostgreSQL, Redis).
//!
//! The server certificate is always verified: against the CA certificates
//! in `ca_file` when one is given, otherwise against the system's trust
//! store. There is deliberately no switch to skip verification.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::StoreError;

/// TLS towards a store server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Use TLS at all.
    pub enabled: bool,
    /// PEM file with the CA certificate(s) the server's certificate must
    /// chain to; `None` uses the system's trust store.
    pub ca_file: Option<PathBuf>,
}

/// The trust anchors: `ca_file`'s certificates, or the system's.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| StoreError::Invalid(format!("cannot read CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(StoreError::Invalid(format!("no certificate in CA file {}", path.display())));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| StoreError::Invalid(format!("bad CA certificate in {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(StoreError::Invalid("no CA certificates in the system trust store; set tls_ca".into()));
            }
        }
    }
    Ok(roots)
}

/// A rustls client configuration verifying against `ca_file` (or the
/// system's roots), with the ring provider greygate uses everywhere.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Invalid(format!("TLS: {e}")))?
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    Ok(config)
}
