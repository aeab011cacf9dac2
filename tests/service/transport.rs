//! HTTP-level answers: 404, 405, 413, signed error bodies, security headers, admin endpoints.

use serde_json::Value;

use crate::harness::{assert_signed, Env, Opts};

#[tokio::test]
async fn transport_errors_and_admin() {
    let env = Env::start(Opts::default()).await;
    let r = crate::harness::fetch(&env.http, &env.base, "/nope").await;
    assert_eq!(r.status(), 404);
    assert_signed(&r.json::<Value>().await.unwrap());
    let login = format!("{}/login", env.base);
    let r = env.http.put(&login).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let form = "application/x-www-form-urlencoded";
    let big = env.http.post(&login).header("content-type", form);
    let r = big.body(vec![b'a'; 200_000]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let r = env
        .http
        .get(&login)
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
    let m = env.metrics_text().await;
    assert!(m.contains("register_xmpp_link_up 1"), "{m}");
    assert!(
        m.contains("register_requests_total{endpoint=\"/login\",result=\"6\"} 1"),
        "{m}"
    );
}

/// A client that sends its whole body before reading (Python's urllib) gets the 413 and its JSON
/// body for an 8 MiB and a 32 MiB upload, not a connection error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_from_urllib_gets_its_413() {
    let env = crate::harness::Env::start(crate::harness::Opts::default()).await;
    let cert = env.server().app.cfg.data_dir.join("cert.pem");
    let script = r#"
import json, ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile=sys.argv[2])
for mib in (8, 32):
    req = urllib.request.Request(sys.argv[1], data=b"a=" + b"x" * (mib << 20),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        urllib.request.urlopen(req, context=ctx, timeout=60)
        print(mib, "no error")
    except urllib.error.HTTPError as e:
        print(mib, e.code, json.loads(e.read())["result"])
"#;
    let url = format!("{}/login", env.base);
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&url)
        .arg(&cert)
        .output()
        .await
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["8 413 2", "32 413 2"],
        "stdout: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
