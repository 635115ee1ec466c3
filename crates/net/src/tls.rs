//! TLS for taskhost's clients: one crypto provider (rustls on `ring`) for
//! every client and server of the process, and the HTTPS client the CLI uses.
//!
//! rustls's default provider, aws-lc-rs, builds C and assembly with cmake,
//! which these machines lack; ring builds with the C compiler alone and is
//! what the MongoDB driver already uses. The client ([`http_client`])
//! verifies servers with the system's roots plus, optionally, the CA
//! certificates of a PEM file (`--ca-cert`); [`explain`] turns a refused
//! certificate into words that say what to do.

use rustls::crypto::CryptoProvider;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no {what} in PEM form")]
    Pem { path: PathBuf, what: &'static str },
    #[error("the certificate and key do not make a TLS server: {0}")]
    Server(#[from] rustls::Error),
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The crypto provider all of taskhost's TLS uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes [`provider`] the process default (which reqwest looks up); a no-op
/// when a default is already installed.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP(S) client that trusts the system's roots and, if given, the CA
/// certificates in `ca_cert` (PEM).
pub fn http_client(ca_cert: Option<&Path>) -> Result<reqwest::Client, TlsError> {
    install_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_cert {
        let pem = read(path)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
        })?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                path: path.to_owned(),
                what: "certificate",
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder.build()?)
}

/// If `error` is a refused server certificate, what went wrong and what to do.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let why = refused_certificate(error)?;
    Some(format!(
        "the server's TLS certificate could not be verified ({why:?}); if a private CA \
         signed it, pass that CA's certificate with --ca-cert FILE (or TASKHOST_CA_CERT)"
    ))
}

/// The certificate error somewhere in `error`'s chain of causes.
fn refused_certificate<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::CertificateError> {
    if let Some(rustls::Error::InvalidCertificate(why)) = error.downcast_ref::<rustls::Error>() {
        return Some(why);
    }
    // io::Error's `source` skips the error it wraps, so look inside it too.
    if let Some(inner) = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(why) = refused_certificate(inner)
    {
        return Some(why);
    }
    refused_certificate(error.source()?)
}

pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}
