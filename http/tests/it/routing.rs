//! 404 for unknown paths, 405 for other methods.

use http_api::HttpConfig;
use serde_json::json;

use crate::common::{body, header, raw, start, status};

#[tokio::test]
async fn unknown_path_is_404_with_error_body() {
    let srv = start(HttpConfig::default()).await;
    for req in [
        &b"GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET /echo/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"PUT /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        let resp = raw(srv.addr, req).await;
        assert_eq!(status(&resp), 404, "{resp}");
        assert_eq!(body(&resp), json!({"result": 2, "status": 404}));
        assert_eq!(header(&resp, "content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let srv = start(HttpConfig::default()).await;
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"] {
        let req = format!(
            "{method} /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let resp = raw(srv.addr, req.as_bytes()).await;
        assert_eq!(status(&resp), 405, "{method}: {resp}");
        assert_eq!(header(&resp, "allow"), Some("GET, POST"), "{method}");
        if method != "HEAD" {
            assert_eq!(body(&resp), json!({"result": 2, "status": 405}), "{method}");
        }
    }
}
