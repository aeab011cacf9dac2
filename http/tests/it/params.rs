//! Parameter, cookie and header extraction, as the handler sees them.

use http_api::HttpConfig;
use serde_json::{json, Value};

use crate::common::{body, client, config, header, raw, start, status, TEXT};

async fn echo(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Sends `req`, checks it was answered 200, and returns what the handler echoed.
async fn echoed(req: reqwest::RequestBuilder) -> Value {
    let (status, v) = echo(req.send().await.unwrap()).await;
    assert_eq!(status, 200);
    v
}

#[tokio::test]
async fn get_query_string_in_order() {
    let srv = start(HttpConfig::default()).await;
    let v = echoed(
        client().get(srv.url("/echo?b=2&a=x+y&c=%E4%B8%AD&user_name_ls=%5B%22a%22%2C%22b%22%5D")),
    )
    .await;
    assert_eq!(v["method"], "Get");
    let want = [
        ("b", "2"),
        ("a", "x y"),
        ("c", "中"),
        ("user_name_ls", r#"["a","b"]"#),
    ];
    assert_eq!(v["params"], json!(want));
}

#[tokio::test]
async fn post_form_with_query_merged_first() {
    let srv = start(HttpConfig::default()).await;
    let v = echoed(
        client()
            .post(srv.url("/echo?q=1"))
            .form(&[("user_name", "138 0000"), ("user_name_ls", "[\"a\"]")]),
    )
    .await;
    assert_eq!(v["method"], "Post");
    let want = [
        ("q", "1"),
        ("user_name", "138 0000"),
        ("user_name_ls", r#"["a"]"#),
    ];
    assert_eq!(v["params"], json!(want));
}

#[tokio::test]
async fn post_json_list_as_array_and_other_values_as_json_text() {
    let srv = start(HttpConfig::default()).await;
    let v = echoed(client().post(srv.url("/echo")).json(
        &json!({"user_name": "u", "user_name_ls": ["a", "b"], "type": 2, "ok": true, "n": null}),
    ))
    .await;
    let params: Vec<(String, String)> = serde_json::from_value(v["params"].clone()).unwrap();
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("user_name"), Some("u"));
    assert_eq!(get("user_name_ls"), Some(r#"["a","b"]"#));
    assert_eq!(get("type"), Some("2"));
    assert_eq!(get("ok"), Some("true"));
    assert_eq!(get("n"), Some("null"));
}

#[tokio::test]
async fn duplicated_names_are_400() {
    let srv = start(HttpConfig::default()).await;
    let c = client();
    let cases = [
        c.get(srv.url("/echo?a=1&a=1")),
        c.post(srv.url("/echo?a=1")).form(&[("a", "2")]),
        c.post(srv.url("/echo"))
            .header("content-type", "application/json")
            .body(r#"{"a":"1","a":"2"}"#),
    ];
    for req in cases {
        let (status, v) = echo(req.send().await.unwrap()).await;
        assert_eq!(status, 400);
        assert_eq!(v, json!({"result": 2, "status": 400}));
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_and_other_types_415() {
    let srv = start(HttpConfig::default()).await;
    let c = client();
    let post = |ct: &'static str, b: &'static [u8]| {
        c.post(srv.url("/echo")).header("content-type", ct).body(b)
    };
    for (req, want) in [
        (post("application/json", b"{\"a\":"), 400),
        (post("application/json", b"[\"a\"]"), 400),
        (post("application/json", b"\"a\""), 400),
        (post("application/json", b"{\"a\":\"\xff\"}"), 400),
        (post("application/x-www-form-urlencoded", b"a=%FF%FE"), 400),
        (post("application/x-www-form-urlencoded", b"a=\xff"), 400),
        (post("text/plain", b"a=1"), 415),
        (post("multipart/form-data; boundary=x", b"--x--"), 415),
        (post("application/json; charset=latin1", b"{}"), 415),
    ] {
        let (status, v) = echo(req.send().await.unwrap()).await;
        assert_eq!(status, want);
        assert_eq!(v, json!({"result": 2, "status": want}));
    }
    let bad_query = c.get(srv.url("/echo?a=%FF")).send().await.unwrap();
    assert_eq!(bad_query.status(), 400);
}

#[tokio::test]
async fn empty_post_body_is_no_parameters() {
    let srv = start(HttpConfig::default()).await;
    let resp = raw(
        srv.addr,
        b"POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(body(&resp)["params"], json!([["x", "1"]]));
}

#[tokio::test]
async fn cookies_headers_request_id_and_security_headers() {
    let srv = start(HttpConfig::default()).await;
    let resp = client()
        .get(srv.url("/echo"))
        .header("cookie", "verify_code_id=abc; other=\"q\"")
        .header("x-test", "hello")
        .send()
        .await
        .unwrap();
    let h = resp.headers().clone();
    let (status, v) = echo(resp).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["cookies"],
        json!([["verify_code_id", "abc"], ["other", "q"]])
    );
    assert_eq!(v["x_test"], "hello");
    assert_eq!(v["client_ip"], "127.0.0.1");
    let id = v["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(h["x-request-id"], id);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
}

#[tokio::test]
async fn body_replies_keep_their_own_headers() {
    let srv = start(HttpConfig::default()).await;
    let resp = client().get(srv.url("/png")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["cache-control"], "max-age=5");
    assert_eq!(h["x-verify-code-id"], "abc");
    assert_eq!(&resp.bytes().await.unwrap()[..], b"\x89PNG");
}

/// A reply the handler wrote itself is sent byte for byte, as JSON, with the usual headers.
#[tokio::test]
async fn json_text_replies_are_sent_as_written() {
    let srv = start(HttpConfig::default()).await;
    let resp = client().get(srv.url("/text")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h.get("x-request-id").is_some());
    assert_eq!(&resp.bytes().await.unwrap()[..], TEXT);
}

#[tokio::test]
async fn security_headers_can_be_turned_off() {
    let srv = start(config(|cfg| cfg.security_headers = false)).await;
    let resp = raw(
        srv.addr,
        b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), 200);
    assert!(header(&resp, "x-content-type-options").is_none());
    assert!(header(&resp, "cache-control").is_none());
    assert!(header(&resp, "x-request-id").is_some());
}

#[tokio::test]
async fn a_panicking_handler_gives_500_and_the_server_goes_on() {
    let srv = start(HttpConfig::default()).await;
    let c = client();
    let (status, v) = echo(c.get(srv.url("/panic")).send().await.unwrap()).await;
    assert_eq!(status, 500);
    assert_eq!(v, json!({"result": 2, "status": 500}));
    let (status, _) = echo(c.get(srv.url("/echo")).send().await.unwrap()).await;
    assert_eq!(status, 200);
}
