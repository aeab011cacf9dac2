//! Parameter and cookie extraction: the query string, `application/x-www-form-urlencoded` and
//! `application/json` bodies, and `Cookie` headers.
//!
//! Parsing is strict where leniency would let two readers disagree about what was sent: a name
//! given twice is an error (the service's `param_sign` check and its handlers must see the same
//! single value), and bytes that are not UTF-8 after percent-decoding are an error rather than
//! being replaced. A malformed percent escape (`%zz`) is kept literally, as browsers do.
//! JSON bodies are read in document order with duplicate keys detected (serde_json's `Map` would
//! silently keep the last one).

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// Why parameters could not be extracted; every variant is answered 400 (or 415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParamError {
    #[error("parameter {0:?} given more than once")]
    Duplicate(String),
    #[error("parameters are not valid UTF-8")]
    NotUtf8,
    #[error("body is not valid JSON: {0}")]
    BadJson(String),
    #[error("JSON body is not an object")]
    NotObject,
    #[error("unsupported content type {0:?}")]
    UnsupportedType(String),
}

/// The body formats a POST may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Form,
    Json,
}

/// Reads a `Content-Type` value: form or JSON, with no charset or a UTF-8 one.
pub(crate) fn body_kind(content_type: Option<&[u8]>) -> Result<BodyKind, ParamError> {
    let raw = content_type.unwrap_or_default();
    let text = String::from_utf8_lossy(raw);
    let unsupported = || ParamError::UnsupportedType(text.chars().take(100).collect());
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let kind = match essence.as_str() {
        "application/x-www-form-urlencoded" => BodyKind::Form,
        "application/json" => BodyKind::Json,
        _ => return Err(unsupported()),
    };
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("charset") {
                let value = value.trim().trim_matches('"');
                if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                    return Err(unsupported());
                }
            }
        }
    }
    Ok(kind)
}

/// Parses `a=1&b=x+y&c=%E4%B8%AD` (query string or form body). Empty pieces are skipped; a piece
/// without `=` is a name with an empty value.
pub(crate) fn parse_urlencoded(input: &[u8]) -> Result<Vec<(String, String)>, ParamError> {
    input
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, &b""[..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(raw: &[u8]) -> Result<String, ParamError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| ParamError::NotUtf8)
}

/// Parses a JSON object body into parameters in document order: a string value as is, any other
/// value as its compact JSON text (so `"user_name_ls": ["a","b"]` becomes `["a","b"]`).
pub(crate) fn parse_json_object(body: &[u8]) -> Result<Vec<(String, String)>, ParamError> {
    let Pairs(pairs) = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ParamError::NotObject,
        _ => ParamError::BadJson(e.to_string()),
    })?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(s) => (name, s),
            other => (name, other.to_string()),
        })
        .collect())
}

/// A JSON object's members in document order, duplicates included.
struct Pairs(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    pairs.push(entry);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}

/// Fails on the first name that occurs twice.
pub(crate) fn check_unique(params: &[(String, String)]) -> Result<(), ParamError> {
    let mut seen = HashSet::with_capacity(params.len());
    for (name, _) in params {
        if !seen.insert(name.as_str()) {
            return Err(ParamError::Duplicate(name.clone()));
        }
    }
    Ok(())
}

/// Cookies of every `Cookie` header value, in order: `a=1; b=2`. Values are not decoded (cookie
/// values are opaque); surrounding double quotes are removed. Non-UTF-8 headers and pieces
/// without `=` are skipped.
pub(crate) fn parse_cookies<'a>(
    headers: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<(String, String)> {
    let mut cookies = Vec::new();
    for header in headers {
        let Ok(text) = std::str::from_utf8(header) else {
            continue;
        };
        for piece in text.split(';') {
            if let Some((name, value)) = piece.split_once('=') {
                let name = name.trim();
                if name.is_empty() {
                    continue;
                }
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    cookies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn urlencoded_decodes_plus_percent_and_utf8() {
        let got = parse_urlencoded(b"a=1&b=x+y&c=%E4%B8%AD&&flag&e=&l=%5B%22a%22%5D").unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("a", "1"),
                ("b", "x y"),
                ("c", "中"),
                ("flag", ""),
                ("e", ""),
                ("l", "[\"a\"]"),
            ])
        );
    }

    #[test]
    fn urlencoded_keeps_bad_escapes_and_rejects_non_utf8() {
        assert_eq!(
            parse_urlencoded(b"a=%zz%4").unwrap(),
            pairs(&[("a", "%zz%4")])
        );
        assert_eq!(parse_urlencoded(b"a=%FF"), Err(ParamError::NotUtf8));
        assert_eq!(parse_urlencoded(b"a=\xff"), Err(ParamError::NotUtf8));
        assert_eq!(parse_urlencoded(b"%C3=1"), Err(ParamError::NotUtf8));
        assert_eq!(parse_urlencoded(b"").unwrap(), vec![]);
    }

    #[test]
    fn json_object_in_order_with_non_strings_as_compact_json() {
        let body = br#"{"z":"s","user_name_ls":["a", "b"],"n":12,"t":true,"nul":null,"o":{"k":[1, 2]},"f":1.5}"#;
        assert_eq!(
            parse_json_object(body).unwrap(),
            pairs(&[
                ("z", "s"),
                ("user_name_ls", r#"["a","b"]"#),
                ("n", "12"),
                ("t", "true"),
                ("nul", "null"),
                ("o", r#"{"k":[1,2]}"#),
                ("f", "1.5"),
            ])
        );
    }

    #[test]
    fn json_rejections() {
        assert_eq!(parse_json_object(b"[1,2]"), Err(ParamError::NotObject));
        assert_eq!(parse_json_object(b"\"s\""), Err(ParamError::NotObject));
        assert_eq!(parse_json_object(b"12"), Err(ParamError::NotObject));
        assert!(matches!(
            parse_json_object(b"{\"a\":"),
            Err(ParamError::BadJson(_))
        ));
        assert!(matches!(
            parse_json_object(b"{\"a\":\"\xff\"}"),
            Err(ParamError::BadJson(_))
        ));
        assert!(matches!(
            parse_json_object(b"{} x"),
            Err(ParamError::BadJson(_))
        ));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            parse_json_object(deep.as_bytes()),
            Err(ParamError::BadJson(_))
        ));
    }

    #[test]
    fn json_duplicates_survive_for_the_uniqueness_check() {
        let got = parse_json_object(br#"{"a":"1","a":"2"}"#).unwrap();
        assert_eq!(check_unique(&got), Err(ParamError::Duplicate("a".into())));
        assert_eq!(check_unique(&pairs(&[("a", "1"), ("b", "1")])), Ok(()));
    }

    #[test]
    fn content_types() {
        assert_eq!(body_kind(Some(b"application/json")), Ok(BodyKind::Json));
        assert_eq!(
            body_kind(Some(b"Application/JSON; charset=UTF-8")),
            Ok(BodyKind::Json)
        );
        assert_eq!(
            body_kind(Some(b"application/x-www-form-urlencoded;charset=\"utf-8\"")),
            Ok(BodyKind::Form)
        );
        assert!(body_kind(Some(b"application/json; charset=latin1")).is_err());
        assert!(body_kind(Some(b"text/plain")).is_err());
        assert!(body_kind(Some(b"multipart/form-data; boundary=x")).is_err());
        assert!(body_kind(None).is_err());
    }

    #[test]
    fn cookies_from_several_headers() {
        let got = parse_cookies([
            &b"a=1; b=\"two\"; junk; =x"[..],
            &b"\xff=bad"[..],
            &b"c=3=4"[..],
        ]);
        assert_eq!(got, pairs(&[("a", "1"), ("b", "two"), ("c", "3=4")]));
    }
}
