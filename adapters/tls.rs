//! rustls server configurations shared by the front doors that speak TLS (HTTPS, FTPS). The
//! certificate comes from a [`CertStore`] registered with the core, so a reload re-reads it.

use std::path::Path;
use std::sync::Arc;

use crate::certs::CertStore;
use crate::core::Core;

/// A TLS 1.2 + 1.3 server configuration serving the PEM chain and key of the config table
/// `name` (re-read on every reload).
pub fn server_config(
    core: &Core,
    name: &str,
    cert: &Path,
    key: &Path,
) -> Result<rustls::ServerConfig, String> {
    let store = CertStore::load(name, cert, key)?;
    core.certs.register(store.clone());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(store))
}
