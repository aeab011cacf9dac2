//! Issue 18, point 4, as the attacks on `param_sign` against the real service: a captured signed
//! request sent again, moved to another endpoint or method, and an old app's version 1 signature.

use register::auth::crypto;
use serde_json::{json, Value};
use sha2::Digest;

use crate::harness::{
    post_form, reply_sign, signed, signed_as, signed_v1, Env, Opts, APP_KEY, SIGN_KEY,
};

const PW: &str = "password1";

fn login_params(name: &str) -> Vec<(&str, &str)> {
    vec![("user_name", name), ("password", PW), ("type", "2")]
}

fn nonce_of(p: &[(String, String)]) -> String {
    p.iter().find(|(k, _)| k == "nonce").unwrap().1.clone()
}

#[tokio::test]
async fn a_replayed_v2_signature_is_refused_and_each_reply_names_its_request() {
    let env = Env::start(Opts::default()).await;
    env.account("replay-cam", 2).await;
    let captured = signed("/login", &login_params("replay-cam"));
    let first = post_form(&env.http, &env.base, "/login", &captured).await;
    assert_eq!(first["result"], 0, "{first}");
    // The reply carries the request's nonce inside what `sign` covers (post_form checked `sign`).
    assert_eq!(first["nonce"], nonce_of(&captured).as_str());
    // The same request again, well within the timestamp window: the nonce is spent.
    let again = post_form(&env.http, &env.base, "/login", &captured).await;
    assert_eq!(again["result"], 6, "{again}");
    // The replay did not spend the nonce (its first request did): its refusal does not name it.
    assert!(again.get("nonce").is_none(), "{again}");
    // A captured reply cannot stand for another request: a new request's reply names its own
    // nonce, so the old one fails the client's check.
    let fresh = signed("/login", &login_params("replay-cam"));
    let second = post_form(&env.http, &env.base, "/login", &fresh).await;
    assert_eq!(second["result"], 0);
    assert_ne!(second["nonce"], first["nonce"]);
    assert_eq!(second["nonce"], nonce_of(&fresh).as_str());
    // A replay whose nonce was changed no longer matches its signature.
    let mut forged = captured.clone();
    for (k, v) in forged.iter_mut() {
        if k == "nonce" {
            *v = "ffffffffffffffffffffffffffffffff".into();
        }
    }
    let v = post_form(&env.http, &env.base, "/login", &forged).await;
    assert_eq!(v["result"], 6, "{v}");
    // A v2 request without a nonce or a timestamp is refused, even correctly signed.
    for missing in ["nonce", "timestamp"] {
        let mut p: Vec<(String, String)> = login_params("replay-cam")
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        p.push(("sign_v".into(), "2".into()));
        if missing != "nonce" {
            p.push(("nonce".into(), register::auth::crypto::new_nonce()));
        }
        if missing != "timestamp" {
            p.push(("timestamp".into(), env.server().app.now().to_string()));
        }
        let s = register::auth::crypto::param_sign_v2(APP_KEY.as_bytes(), "POST", "/login", &p);
        p.push(("param_sign".into(), s));
        let v = post_form(&env.http, &env.base, "/login", &p).await;
        assert_eq!(v["result"], 6, "without {missing}: {v}");
    }
}

/// Whether `reply` carries neither `nonce` nor `request_sha256`.
fn names_no_request(reply: &Value) -> bool {
    reply.get("nonce").is_none() && reply.get("request_sha256").is_none()
}

/// The SHA-256 of a base string, lowercase hex, computed here as a client would.
fn sha256_hex(base: &str) -> String {
    hex::encode(sha2::Sha256::digest(base.as_bytes()))
}

/// A nonce is sent back only when `check_param_sign` verified and spent it: an unsigned or badly
/// signed request carrying one (refused or served) gets a reply without it, so nobody obtains a
/// server-signed reply for a nonce of their choosing. A signed request's reply names it by its
/// nonce and by `request_sha256`, the SHA-256 of its base string, both covered by `sign`: the
/// reply verifies for that request and for no other (another path with the same nonce).
#[tokio::test]
async fn only_a_verified_nonce_is_echoed_and_the_reply_names_exactly_its_request() {
    let env = Env::start(Opts::default()).await;
    let (token, _, _) = env.account("echo-cam", 2).await;
    let nonce = crypto::new_nonce();
    let now = env.server().app.now().to_string();
    // Unsigned: a device's /login needs param_sign. Refused, and the chosen nonce is not signed.
    let mut unsigned = login_params("echo-cam");
    unsigned.extend([("sign_v", "2"), ("timestamp", &now), ("nonce", &nonce)]);
    let v = post_form(&env.http, &env.base, "/login", &unsigned).await;
    assert_eq!(v["result"], 6, "{v}");
    assert!(names_no_request(&v), "unsigned: {v}");
    // Signed with a key the service does not hold.
    let bad = signed_as("POST", "/login", &unsigned, b"not-an-app-key");
    let v = post_form(&env.http, &env.base, "/login", &bad).await;
    assert_eq!(v["result"], 6, "{v}");
    assert!(names_no_request(&v), "badly signed: {v}");
    // Served without a signature (a backend's token check over TCP): no nonce either.
    let v = crate::harness::tcp_line(
        env.server().addrs.tcp,
        "/verify_access_token",
        json!({"access_token": token, "nonce": nonce}),
    )
    .await;
    crate::harness::assert_signed(&v);
    assert_eq!(v["result"], 0, "{v}");
    assert!(names_no_request(&v), "unsigned over TCP: {v}");

    // Signed, with the very nonce the refusals above carried (they did not spend it).
    let good = signed("/login", &unsigned);
    let v = post_form(&env.http, &env.base, "/login", &good).await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(v["nonce"], nonce.as_str());
    let base = crypto::param_sign_v2_base("POST", "/login", &good);
    assert_eq!(v["request_sha256"], sha256_hex(&base).as_str(), "{v}");
    let mut members = v.as_object().unwrap().clone();
    let sign = members.remove("sign").unwrap();
    assert_eq!(
        sign,
        reply_sign(&members, SIGN_KEY.as_bytes()).as_str(),
        "{v}"
    );
    // The same nonce and parameters for another path: another base, which this sign does not
    // cover, so the reply cannot stand for that request.
    let other = crypto::param_sign_v2_base("POST", "/cancel", &good);
    members.insert("request_sha256".into(), sha256_hex(&other).into());
    assert_ne!(
        sign,
        reply_sign(&members, SIGN_KEY.as_bytes()).as_str(),
        "names one request only"
    );
}

#[tokio::test]
async fn a_v2_signature_moved_to_another_path_or_method_is_refused() {
    let env = Env::start(Opts::default()).await;
    env.account("moved-cam", 2).await;
    // A device's /login signature carries exactly the parameters /cancel needs.
    let login = signed("/login", &login_params("moved-cam"));
    let v = post_form(&env.http, &env.base, "/cancel", &login).await;
    assert_eq!(v["result"], 6, "a /login signature used on /cancel: {v}");
    // The same signature by GET instead of POST.
    let v = env.get("/login", &login).await;
    assert_eq!(v["result"], 6, "a POST signature used by GET: {v}");
    // The account is untouched: the request signed for what it does works.
    let get = signed_as(
        "GET",
        "/login",
        &login_params("moved-cam"),
        APP_KEY.as_bytes(),
    );
    let v = env.get("/login", &get).await;
    assert_eq!(v["result"], 0, "{v}");
    let v = post_form(&env.http, &env.base, "/login", &login).await;
    assert_eq!(v["result"], 0, "{v}");
}

#[tokio::test]
async fn a_v1_signature_is_refused_unless_the_operator_accepts_it() {
    let env = Env::start(Opts::default()).await;
    env.account("old-app-cam", 2).await;
    let now = env.server().app.now().to_string();
    let mut p = login_params("old-app-cam");
    p.push(("timestamp", &now));
    let v = post_form(&env.http, &env.base, "/login", &signed_v1(&p)).await;
    assert_eq!(v["result"], 6, "version 1 by default: {v}");
    // An unknown version is refused too.
    let mut v3 = login_params("old-app-cam");
    v3.push(("sign_v", "3"));
    let v = post_form(&env.http, &env.base, "/login", &signed_v1(&v3)).await;
    assert_eq!(v["result"], 6, "sign_v=3: {v}");
    drop(env);

    let env = Env::start_tuned(Opts::default(), |c| c.security.accept_v1_signatures = true).await;
    env.account("old-app-cam", 2).await;
    let v = post_form(&env.http, &env.base, "/login", &signed_v1(&p)).await;
    assert_eq!(v["result"], 0, "version 1 accepted when configured: {v}");
    // Version 2 keeps its rules beside it: a replay is still refused.
    let v2 = signed("/login", &login_params("old-app-cam"));
    assert_eq!(
        post_form(&env.http, &env.base, "/login", &v2).await["result"],
        0
    );
    assert_eq!(
        post_form(&env.http, &env.base, "/login", &v2).await["result"],
        6
    );
}

/// `security.accept_v1_signatures = true` is warned about at every start of the binary.
#[tokio::test]
async fn accepting_v1_signatures_is_warned_about_at_every_start() {
    let prosody = xmpp::testkit::Prosody::start(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let extra = "[security]\naccept_v1_signatures = true\n";
    let (cfg, c) = crate::harness::binary_config(&prosody, dir.path(), extra).await;
    let warnings = |log: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("accept_v1_signatures = true"))
            .count()
    };
    for start in 1..=2 {
        let log = dir.path().join(format!("register-{start}.log"));
        let secret = &c.xmpp.component_secret;
        let mut child = crate::harness::ready_binary(&cfg, secret, c.admin.listen, &log).await;
        crate::harness::sigterm_exits_0(&mut child).await;
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(warnings(&text), 1, "start {start}:\n{text}");
    }
}
