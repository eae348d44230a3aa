//! rustls configurations built from PEM files (ring provider, TLS 1.2 and 1.3).

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS material could not be used. Never includes key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{what} {}: {reason}", path.display())]
    Pem {
        /// What the file should hold (`certificate chain`, `private key`, `CA certificates`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material (a key that does not match, an unusable CA, ...).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being built.
        context: &'static str,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// A client verifier could not be built from the CA file.
    #[error("client CA {}: {reason}", path.display())]
    ClientVerifier {
        /// The CA file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The name to verify the server certificate against is not a DNS name or IP address.
    #[error("server_name `{0}` is not a DNS name or an IP address")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(what, path, "no CERTIFICATE item in the file"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error of the PEM reader names the item kind, never key bytes.
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("private key", path, e))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates("CA certificates", path)? {
        store.add(cert).map_err(|source| TlsError::Rustls {
            context: "adding a CA certificate",
            source,
        })?;
    }
    Ok(store)
}

/// The listener's TLS configuration; with `client_ca`, clients must present a certificate
/// that chains to it.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let chain = certificates("certificate chain", cert)?;
    let key = private_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            context: "TLS protocol versions",
            source,
        })?;
    let builder = match client_ca {
        Some(path) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(path)?), provider())
                    .build()
                    .map_err(|e| TlsError::ClientVerifier {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            context: "the server certificate and key",
            source,
        })
}

/// A sender's TLS configuration: the server verified against `ca_file` only.
pub(crate) fn client_config(
    ca_file: &Path,
    client_auth: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            context: "TLS protocol versions",
            source,
        })?
        .with_root_certificates(roots(ca_file)?);
    match client_auth {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certificates("client certificate chain", cert)?,
                private_key(key)?,
            )
            .map_err(|source| TlsError::Rustls {
                context: "the client certificate and key",
                source,
            }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The name a server certificate must carry.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName(name.to_owned()))
}
