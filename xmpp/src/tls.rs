//! The rustls client configuration for c2s STARTTLS: trust either the system roots or only the
//! certificates of a PEM file (a private CA, or a self-signed server certificate). Always the ring
//! provider, chosen explicitly so a second provider elsewhere in the build cannot make
//! `ClientConfig::builder()` panic.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use crate::{XmppConfig, XmppError};

/// Installs ring as the process-wide default provider unless one is installed already.
pub(crate) fn ensure_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the client configuration from `cfg.tls_ca_file` (or the system roots).
pub(crate) fn client_config(cfg: &XmppConfig) -> Result<Arc<ClientConfig>, XmppError> {
    let fail = |what: String| XmppError::SessionFailed(what);
    let mut roots = RootCertStore::empty();
    match &cfg.tls_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| fail(format!("reading {}: {e}", path.display())))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| fail(format!("parsing {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("certificate in {}: {e}", path.display())))?;
                added += 1;
            }
            if added == 0 {
                return Err(fail(format!("no certificate in {}", path.display())));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "while loading system root certificates");
            }
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(fail("no usable system root certificates".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
