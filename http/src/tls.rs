//! rustls server configuration from PEM: TLS 1.2 and 1.3 only, the `ring` provider passed
//! explicitly (no process-wide default provider needed, so it cannot clash with another crate's
//! choice), ALPN `http/1.1`.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM text could not be read.
    #[error("cannot read PEM: {0}")]
    Pem(#[from] std::io::Error),
    /// The certificate PEM holds no `CERTIFICATE` block.
    #[error("no certificate found in the certificate PEM")]
    NoCertificate,
    /// The key PEM holds no PKCS#8, PKCS#1 or SEC1 private key.
    #[error("no private key found in the key PEM")]
    NoPrivateKey,
    /// rustls refused the certificate or key (e.g. a key that does not match the certificate).
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds a rustls `ServerConfig` (TLS 1.2 and 1.3 only, ring provider, ALPN `http/1.1`) from a
/// PEM certificate chain (leaf first) and a PEM private key.
pub fn tls_config_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut &key_pem[..])?.ok_or(TlsError::NoPrivateKey)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_a_self_signed_pair() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cfg = tls_config_from_pem(
            ck.cert.pem().as_bytes(),
            ck.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn rejects_missing_parts() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = ck.key_pair.serialize_pem();
        assert!(matches!(
            tls_config_from_pem(b"", key.as_bytes()),
            Err(TlsError::NoCertificate)
        ));
        assert!(matches!(
            tls_config_from_pem(ck.cert.pem().as_bytes(), b"garbage"),
            Err(TlsError::NoPrivateKey)
        ));
    }

    #[test]
    fn rejects_a_key_of_another_certificate() {
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let r = tls_config_from_pem(
            a.cert.pem().as_bytes(),
            b.key_pair.serialize_pem().as_bytes(),
        );
        assert!(matches!(r, Err(TlsError::Rustls(_))), "{r:?}");
    }
}
