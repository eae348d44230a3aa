//! TLS beyond the built-in roots: a pinned server certificate, and certificate failures
//! explained in words an operator can act on.
//!
//! With a private CA the operator names its PEM file (`ca_file`); with a server whose
//! certificate no CA vouches for (self-signed, or a CA certificate used as the server's own)
//! the operator pins that certificate's sha256 fingerprint instead: the connection is then
//! accepted exactly when the server presents that certificate, whatever its chain or names,
//! and its handshake signature is still checked.

use riposte_domain::Sha256Digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// Parses a sha256 fingerprint as `openssl x509 -fingerprint -sha256` prints it
/// (`AB:CD:...`) or as 64 hex digits.
pub fn parse_fingerprint(text: &str) -> Option<Sha256Digest> {
    let hex: String = text
        .trim()
        .trim_start_matches("sha256 Fingerprint=")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    Sha256Digest::from_hex(&hex)
}

/// `AB:CD:...`: how a fingerprint is shown to an operator.
pub fn show_fingerprint(digest: &Sha256Digest) -> String {
    digest
        .0
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A rustls configuration that accepts exactly the certificate with fingerprint `pin`.
pub(crate) fn pinned_config(pin: Sha256Digest) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedVerifier {
        pin,
        algorithms: provider.signature_verification_algorithms,
    };
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth()
}

/// Accepts the server's certificate when its sha256 is the pin.
#[derive(Debug)]
struct PinnedVerifier {
    pin: Sha256Digest,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The start of the error a pin mismatch gives, recognised by [`certificate_problem`].
const PIN_MISMATCH: &str = "pinned certificate mismatch";

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Sha256Digest::of(end_entity.as_ref());
        if got == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::General(format!(
            "{PIN_MISMATCH}: the server presents {} but {} is pinned",
            show_fingerprint(&got),
            show_fingerprint(&self.pin)
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What is wrong with the server's certificate and how to fix it, when `error` (or an error
/// in its chain) is a certificate failure; `None` for any other error.
pub(crate) fn certificate_problem(
    error: &(dyn std::error::Error + 'static),
    host: &str,
) -> Option<(String, String)> {
    let rustls_error = chain(error).find_map(|e| e.downcast_ref::<rustls::Error>())?;
    let pin_hint = "or pin this server's certificate with `pinned_certificate_sha256` \
        (its fingerprint: `openssl s_client -connect HOST:PORT </dev/null | openssl x509 -noout -fingerprint -sha256`)";
    Some(match rustls_error {
        rustls::Error::General(text) if text.starts_with(PIN_MISMATCH) => (
            text.clone(),
            "check that this is the right server; if its certificate was renewed, pin the new fingerprint in `[service.server] pinned_certificate_sha256`".into(),
        ),
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => (
                "the server's certificate is signed by a CA this host does not trust".into(),
                format!("set `[service.server] ca_file` to your CA's PEM file, {pin_hint}"),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
                format!("the server's certificate is not valid for the name `{host}`"),
                "use a base_url with a host name the certificate holds".into(),
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
                "the server's certificate has expired".into(),
                "renew the server's certificate".into(),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                "the server's certificate is not valid yet (is this host's clock right?)".into(),
                "check the clocks of this host and the server".into(),
            ),
            CertificateError::Revoked => (
                "the server's certificate is revoked".into(),
                "give the server a new certificate".into(),
            ),
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => (
                "the server presents a CA certificate as its own certificate, which TLS refuses even when that CA is trusted".into(),
                format!("give the server a certificate signed by that CA, {pin_hint}"),
            ),
            other => (
                format!("the server's certificate was refused: {other:?}"),
                format!("check the server's certificate chain, set `ca_file` for a private CA, {pin_hint}"),
            ),
        },
        other => (
            format!("the TLS handshake failed: {other}"),
            "check that the server speaks TLS 1.2 or 1.3 on this port".into(),
        ),
    })
}

/// `error` and its sources, looking inside `io::Error`s (whose `source` skips the error they
/// wrap).
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static))
                .or_else(|| current.source()),
            None => current.source(),
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_openssl_and_plain_form() {
        let hex = "ab".repeat(32);
        let digest = parse_fingerprint(&hex).expect("plain hex");
        let shown = show_fingerprint(&digest);
        assert!(shown.starts_with("AB:AB:") && shown.len() == 95, "{shown}");
        assert_eq!(parse_fingerprint(&shown), Some(digest));
        assert_eq!(
            parse_fingerprint(&format!("sha256 Fingerprint={shown}")),
            Some(digest)
        );
        assert_eq!(parse_fingerprint("AB:CD"), None);
    }

    #[test]
    fn a_certificate_error_inside_io_errors_is_found_and_explained() {
        let inner = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        let (problem, fix) = certificate_problem(&wrapped, "edr.corp").expect("found");
        assert!(problem.contains("CA this host does not trust"), "{problem}");
        assert!(fix.contains("ca_file"), "{fix}");
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(certificate_problem(&other, "edr.corp").is_none());
    }
}
