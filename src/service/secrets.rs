//! Secrets that the configuration did not give: generated on first start into the data directory
//! with owner-only permissions, and read back on later starts.
//!
//! | file | what |
//! |---|---|
//! | `sign_key` | key of the reply `sign` HMAC |
//! | `app_key` | one app key accepted for `param_sign` |
//! | `encryption_key` | 32-byte key (hex) encrypting `jid_pwd` at rest |
//! | `component_secret` | only read, never generated: it must match the XMPP server |
//! | `cert.pem`, `key.pem` | self-signed certificate for HTTPS when none is configured |

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::service::config::Config;

/// The secrets in force, whatever their source.
pub struct Secrets {
    /// The key of the replies' `sign`.
    pub sign_key: crate::auth::crypto::ReplyKey,
    pub app_keys: Vec<Vec<u8>>,
    pub encryption_key: [u8; 32],
    /// Files that this start generated (reported once, without their content).
    pub generated: Vec<PathBuf>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(…)")
    }
}

impl Secrets {
    /// Take secrets from the configuration, else from the data directory, else generate them there.
    pub fn load_or_generate(cfg: &Config) -> std::io::Result<Secrets> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        restrict_dir(&cfg.data_dir)?;
        let mut generated = Vec::new();
        let sign_key = crate::auth::crypto::ReplyKey::new(&if cfg.security.sign_key.is_empty() {
            file_or_generate(&cfg.data_dir.join("sign_key"), &mut generated)?.into_bytes()
        } else {
            cfg.security.sign_key.clone().into_bytes()
        });
        let app_keys = if cfg.security.app_keys.is_empty() {
            vec![file_or_generate(&cfg.data_dir.join("app_key"), &mut generated)?.into_bytes()]
        } else {
            cfg.security
                .app_keys
                .iter()
                .map(|k| k.clone().into_bytes())
                .collect()
        };
        let key_hex = if cfg.security.encryption_key.is_empty() {
            file_or_generate(&cfg.data_dir.join("encryption_key"), &mut generated)?
        } else {
            cfg.security.encryption_key.clone()
        };
        let mut encryption_key = [0u8; 32];
        hex::decode_to_slice(key_hex.trim(), &mut encryption_key).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "security.encryption_key must be 64 hex characters",
            )
        })?;
        Ok(Secrets {
            sign_key,
            app_keys,
            encryption_key,
            generated,
        })
    }
}

/// The component secret: configured, or `data_dir/component_secret` (written by the quick start).
pub fn component_secret(cfg: &Config) -> std::io::Result<String> {
    if !cfg.xmpp.component_secret.is_empty() {
        return Ok(cfg.xmpp.component_secret.clone());
    }
    match std::fs::read_to_string(cfg.data_dir.join("component_secret")) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(std::io::Error::new(
            e.kind(),
            "xmpp.component_secret is not configured (nor data_dir/component_secret)",
        )),
        Err(e) => Err(e),
    }
}

/// Read a secret file, or create it with 32 random bytes in hex, mode 0600.
fn file_or_generate(path: &Path, generated: &mut Vec<PathBuf>) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let value = hex::encode(bytes);
    write_private(path, value.as_bytes())?;
    generated.push(path.to_owned());
    Ok(value)
}

/// Write a file readable by its owner only.
pub fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

fn restrict_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let _ = dir;
    Ok(())
}

/// The HTTPS certificate and key in PEM: configured files, or a self-signed pair generated into
/// the data directory (for `localhost`, `127.0.0.1` and `::1`).
pub fn tls_pem(cfg: &Config) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    if !cfg.http.cert_file.is_empty() {
        return Ok((
            std::fs::read(&cfg.http.cert_file)?,
            std::fs::read(&cfg.http.key_file)?,
        ));
    }
    let cert = cfg.data_dir.join("cert.pem");
    let key = cfg.data_dir.join("key.pem");
    if let (Ok(c), Ok(k)) = (std::fs::read(&cert), std::fs::read(&key)) {
        return Ok((c, k));
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| std::io::Error::other(format!("generating a certificate: {e}")))?;
    let (c, k) = (ck.cert.pem(), ck.key_pair.serialize_pem());
    std::fs::write(&cert, &c)?;
    write_private(&key, k.as_bytes())?;
    tracing::warn!(cert = %cert.display(), "no http.cert_file configured: generated a self-signed certificate");
    Ok((c.into_bytes(), k.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().join("d"),
            ..Config::default()
        };
        let a = Secrets::load_or_generate(&cfg).unwrap();
        assert_eq!(a.generated.len(), 3);
        let b = Secrets::load_or_generate(&cfg).unwrap();
        assert!(b.generated.is_empty());
        let reply = || serde_json::json!({"result": 0});
        assert_eq!(a.sign_key.sign(reply()), b.sign_key.sign(reply()));
        assert_eq!(a.encryption_key, b.encryption_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(cfg.data_dir.join("sign_key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_secrets_win() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::in_dir(dir.path());
        cfg.security.sign_key = "sk".into();
        cfg.security.app_keys = vec!["a1".into()];
        cfg.security.encryption_key = "11".repeat(32);
        let s = Secrets::load_or_generate(&cfg).unwrap();
        assert!(s.generated.is_empty());
        let reply = || serde_json::json!({"result": 0});
        let by_sk = crate::auth::crypto::sign_reply(b"sk", reply());
        assert_eq!(s.sign_key.sign(reply()), by_sk);
        assert_eq!(s.encryption_key, [0x11; 32]);
    }
}
