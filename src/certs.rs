//! The TLS certificates the front doors serve (`[http.tls]`, `[ftp.tls]`), re-read from their
//! files on every config reload: a certificate renewed in place (certbot, an ACME client, a
//! secret store) is served to new handshakes after `systemctl reload`, with no restart and no
//! dropped session. A chain or key that does not load, or a key that does not match the
//! certificate, refuses the reload and the served one stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// One listener's certificate and key, served to every handshake.
pub struct CertStore {
    /// The config table it comes from (`http.tls`), for logs and the reload's record.
    name: String,
    cert: PathBuf,
    key: PathBuf,
    current: arc_swap::ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("name", &self.name)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM chain and its key; the key must belong to the first certificate.
fn read(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| {
        format!(
            "{} does not belong to {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Arc::new(ck))
}

/// The sha256 of the leaf certificate (hex, first 16 digits), to name it in records.
fn fingerprint(ck: &CertifiedKey) -> String {
    ck.cert
        .first()
        .map(|c| hex::encode(&Sha256::digest(c.as_ref())[..8]))
        .unwrap_or_default()
}

impl CertStore {
    /// Loads `cert` and `key` for the table `name`.
    pub fn load(name: &str, cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            name: name.to_string(),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: arc_swap::ArcSwap::new(read(cert, key)?),
        }))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Every listener's certificate, for reloads.
#[derive(Debug, Default)]
pub struct Certs(Mutex<Vec<Arc<CertStore>>>);

/// Certificates read for a reload, not served yet.
pub struct Prepared(Vec<(Arc<CertStore>, Arc<CertifiedKey>)>);

impl Certs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<CertStore>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a listener's certificate to those a reload re-reads.
    pub fn register(&self, store: Arc<CertStore>) {
        self.lock().push(store);
    }

    /// Reads every certificate again from its files; the first that fails names itself.
    pub fn prepare(&self) -> Result<Prepared, String> {
        let stores = self.lock().clone();
        let mut out = Vec::new();
        for s in stores {
            let ck = read(&s.cert, &s.key).map_err(|e| format!("{}: {e}", s.name))?;
            out.push((s, ck));
        }
        Ok(Prepared(out))
    }
}

impl Prepared {
    /// Serves the certificates read; returns the tables whose certificate changed, with the
    /// new fingerprint.
    pub fn install(self) -> Vec<String> {
        let mut changed = Vec::new();
        for (store, ck) in self.0 {
            let before = store.current.load();
            let same = before.cert == ck.cert;
            drop(before);
            if !same {
                changed.push(format!("{} {}", store.name, fingerprint(&ck)));
                store.current.store(ck);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/tls")
            .join(name)
    }

    #[test]
    fn loads_the_fixture_and_refuses_a_missing_key() {
        let s = CertStore::load("http.tls", &fixture("cert.pem"), &fixture("key.pem")).unwrap();
        assert_eq!(fingerprint(&s.current.load()).len(), 16);
        let e =
            CertStore::load("http.tls", &fixture("cert.pem"), &fixture("nope.pem")).unwrap_err();
        assert!(e.contains("nope.pem"), "{e}");
    }
}
