//! Signatures, token hashing and `jid_pwd` encryption.
//!
//! - `sign` (SPEC §4): HMAC-SHA256 over the reply without `sign`, as compact JSON with keys sorted
//!   at every level. We canonicalize explicitly instead of relying on serde_json's map order.
//! - `param_sign`: HMAC-SHA256 over `name=value` pairs (all but `param_sign`) sorted by name,
//!   joined with `&`, values as sent; checked in constant time against every app key.
//! - Access tokens are stored as SHA-256 hashes; `jid_pwd` is sealed with ChaCha20-Poly1305,
//!   the JID node as associated data so a ciphertext cannot be moved to another row.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Serialize a JSON value compactly with object keys sorted at every level.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    hex::encode(m.finalize().into_bytes())
}

/// Add `sign` to a reply object (replacing any), keyed with the server's signing key.
pub fn sign_reply(key: &[u8], mut reply: Value) -> Value {
    if let Value::Object(m) = &mut reply {
        m.remove("sign");
        // Canonicalize in place: the reply is on every request's path, so no copy of it is made.
        let mut text = String::with_capacity(256);
        write_canonical(&reply, &mut text);
        let s = hmac_hex(key, text.as_bytes());
        if let Value::Object(m) = &mut reply {
            m.insert("sign".into(), Value::String(s));
        }
    }
    reply
}

/// The string that `param_sign` covers.
pub fn param_sign_base(params: &[(String, String)]) -> String {
    let mut ps: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "param_sign").collect();
    ps.sort_by(|a, b| a.0.cmp(&b.0));
    ps.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Compute `param_sign` for a request (what a client does).
pub fn param_sign(key: &[u8], params: &[(String, String)]) -> String {
    hmac_hex(key, param_sign_base(params).as_bytes())
}

/// Whether `sent` is a valid `param_sign` under any of `keys`, compared in constant time.
pub fn verify_param_sign(keys: &[Vec<u8>], params: &[(String, String)], sent: &str) -> bool {
    let Ok(sent) = hex::decode(sent.trim()) else {
        return false;
    };
    let base = param_sign_base(params);
    let mut ok = false;
    for k in keys {
        let mut m = <HmacSha256 as Mac>::new_from_slice(k).expect("HMAC takes any key length");
        m.update(base.as_bytes());
        // verify_slice compares in constant time; check every key so timing does not say which.
        ok |= m.verify_slice(&sent).is_ok();
    }
    ok
}

/// SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    token_digest(token).to_vec()
}

/// [`token_hash`] as an array (no allocation).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new access token: 256 random bits, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Seal `jid_pwd` for storage: nonce ‖ ciphertext, bound to the JID node.
pub fn seal(key: &[u8; 32], node: &str, plain: &str) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain.as_bytes(),
                aad: node.as_bytes(),
            },
        )
        .expect("encryption of a short text cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

/// Open a sealed `jid_pwd`; `None` if the key is wrong or the data was tampered with.
pub fn open(key: &[u8; 32], node: &str, sealed: &[u8]) -> Option<String> {
    if sealed.len() < 12 {
        return None;
    }
    let cipher = ChaCha20Poly1305::new(key.into());
    let (nonce, ct) = sealed.split_at(12);
    let pt = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: node.as_bytes(),
            },
        )
        .ok()?;
    String::from_utf8(pt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The vectors published in docs/API.md (section "Signatures").
    #[test]
    fn documented_vectors() {
        let reply = json!({"result": 0, "user_info": {"user_name": "alice", "type": 1, "des": ""}});
        assert_eq!(
            canonical_json(&reply),
            r#"{"result":0,"user_info":{"des":"","type":1,"user_name":"alice"}}"#
        );
        let signed = sign_reply(b"server-sign-key", reply);
        assert_eq!(signed["sign"], SIGN_VECTOR);
        let params = p(&[
            ("user_name", "dev-001"),
            ("password", "secret123"),
            ("type", "2"),
            ("timestamp", "1700000000"),
        ]);
        assert_eq!(
            param_sign_base(&params),
            "password=secret123&timestamp=1700000000&type=2&user_name=dev-001"
        );
        assert_eq!(param_sign(b"app-key-1", &params), PARAM_SIGN_VECTOR);
        // The same vectors are what docs/API.md publishes.
        let doc = include_str!("../../docs/API.md");
        assert!(doc.contains(&format!("sign:      {SIGN_VECTOR}")));
        assert!(doc.contains(&format!("param_sign: {PARAM_SIGN_VECTOR}")));
    }

    const SIGN_VECTOR: &str = "d0c3f7652e428a5234e4831407f6b3416eb03ed83d520bf6701b1e34fbb5a756";
    const PARAM_SIGN_VECTOR: &str =
        "b71c8348c40403bc36ae1403bdba6f53ebf82b8b732d17b5a01e5f128980d44f";

    #[test]
    fn param_sign_checks() {
        let mut params = p(&[("b", "2"), ("a", "1")]);
        let s = param_sign(b"k2", &params);
        params.push(("param_sign".into(), s.clone()));
        assert!(verify_param_sign(
            &[b"k1".to_vec(), b"k2".to_vec()],
            &params,
            &s
        ));
        assert!(!verify_param_sign(&[b"k1".to_vec()], &params, &s));
        assert!(!verify_param_sign(&[b"k2".to_vec()], &params, "zz"));
        params[0].1 = "3".into();
        assert!(!verify_param_sign(&[b"k2".to_vec()], &params, &s));
    }

    #[test]
    fn sealing() {
        let k = [7u8; 32];
        let s = seal(&k, "n1", "pw");
        assert_eq!(open(&k, "n1", &s).as_deref(), Some("pw"));
        assert_eq!(open(&k, "n2", &s), None);
        assert_eq!(open(&[8u8; 32], "n1", &s), None);
        assert!(!s.windows(2).any(|w| w == b"pw"));
    }

    #[test]
    fn tokens() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t).len(), 32);
    }
}
