//! HTTP-level answers: 404, 405, 413, signed error bodies, security headers, admin endpoints.

use serde_json::Value;

use crate::harness::{assert_signed, Env, Opts};

#[tokio::test]
async fn transport_errors_and_admin() {
    let env = Env::start(Opts::default()).await;
    let r = env
        .http
        .get(format!("{}/nope", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_signed(&r.json::<Value>().await.unwrap());
    let r = env
        .http
        .put(format!("{}/login", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = env
        .http
        .post(format!("{}/login", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = env
        .http
        .get(format!("{}/login", env.base))
        .query(&[
            ("user_name", "someone"),
            ("password", "password1"),
            ("type", "2"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("strict-transport-security"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"], 6, "login without param_sign");

    let admin = format!("http://{}", env.server().addrs.admin);
    let r = reqwest::get(format!("{admin}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let m = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("register_xmpp_link_up 1"), "{m}");
    assert!(
        m.contains("register_requests_total{endpoint=\"/login\",result=\"6\"} 1"),
        "{m}"
    );
}
