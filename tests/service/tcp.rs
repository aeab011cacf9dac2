//! The TCP JSON line API over a real socket.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{assert_signed, Env, Opts};

async fn ask(conn: &mut BufReader<TcpStream>, line: &str) -> Value {
    let reply = ask_raw(conn, line).await;
    let v: Value = serde_json::from_str(&reply).unwrap();
    assert_signed(&v);
    v
}

/// The reply line as received.
async fn ask_raw(conn: &mut BufReader<TcpStream>, line: &str) -> String {
    conn.get_mut().write_all(line.as_bytes()).await.unwrap();
    conn.get_mut().write_all(b"\n").await.unwrap();
    let mut reply = String::new();
    conn.read_line(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn verify_tokens_and_get_users() {
    let env = Env::start(Opts::default()).await;
    let (token, jid, _) = env.account("tcp-dev", 2).await;
    let mut c = BufReader::new(TcpStream::connect(env.server().addrs.tcp).await.unwrap());
    let v = ask(
        &mut c,
        &format!("/verify_access_token {}", json!({"access_token": token})),
    )
    .await;
    assert_eq!(v["result"], 0);
    assert_eq!(v["validate"], true);
    assert_eq!(v["user_name"], "tcp-dev");
    assert_eq!(v["jid"], jid.as_str());
    assert_eq!(v["type"], 2);
    assert!(v["expires_at"].as_i64().unwrap() > 0);
    // The first check read the token from the database; later ones are answered from memory
    // (the reply kept with the cached token). Both paths give the same bytes, whatever the
    // request's spelling: extra members, an escaped character, a duplicate member (which the
    // memory path leaves to the other: the last one counts, as in any parsed object).
    let first = serde_json::to_string(&v).unwrap() + "\n";
    let req = format!("/verify_access_token {}", json!({"access_token": token}));
    assert_eq!(ask_raw(&mut c, &req).await, first, "answered from memory");
    let escaped = format!(
        r#"/verify_access_token {{"x":[1],"access_token":"\u{:04x}{}"}}"#,
        token.as_bytes()[0],
        &token[1..]
    );
    assert_eq!(
        ask_raw(&mut c, &escaped).await,
        first,
        "escaped, extra member"
    );
    let dup = format!(r#"/verify_access_token {{"access_token":"nope","access_token":"{token}"}}"#);
    assert_eq!(ask_raw(&mut c, &dup).await, first, "duplicate member");
    let dup = format!(r#"/verify_access_token {{"access_token":"{token}","access_token":"nope"}}"#);
    assert_eq!(ask(&mut c, &dup).await["result"], 4, "duplicate member");
    // What the parsed path refuses as malformed stays refused for a cached token.
    for bad in [
        format!(r#"/verify_access_token ["{token}"]"#),
        format!(r#"/verify_access_token {{"access_token":"{token}","x":1e400}}"#),
        format!(r#"/verify_access_token {{"access_token":"{token}","x":"\ud800"}}"#),
        format!(r#"/verify_access_token {{"access_token":"{token}"}} trailing"#),
    ] {
        assert_eq!(ask(&mut c, &bad).await["result"], 2, "{bad}");
    }
    let v = ask(&mut c, r#"/verify_access_token {"access_token":"nope"}"#).await;
    assert_eq!(
        (v["result"].clone(), v["validate"].clone()),
        (json!(4), json!(false))
    );
    // get_users: backends are admitted by network, so a device's token needs no param_sign here.
    let v = ask(
        &mut c,
        &format!(
            "/get_users {}",
            json!({"access_token": token, "user_name_ls": ["tcp-dev", "ghost"]})
        ),
    )
    .await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(v["user_info_ls"].as_array().unwrap().len(), 1);
    assert_eq!(v["user_info_ls"][0]["user_name"], "tcp-dev");
    // …but a signature that is sent must be right.
    let v = ask(
        &mut c,
        &format!(
            "/get_users {}",
            json!({"access_token": token, "user_name_ls": ["tcp-dev"], "param_sign": "00"})
        ),
    )
    .await;
    assert_eq!(v["result"], 6);
    // A version 2 signature over TCP covers the method `TCP` and the path; its nonce comes back
    // and is spent: the same line again is a replay.
    let p = crate::harness::signed_as(
        "TCP",
        "/get_users",
        &[("access_token", &token), ("user_name_ls", r#"["tcp-dev"]"#)],
        crate::harness::APP_KEY.as_bytes(),
    );
    let body: serde_json::Map<String, serde_json::Value> =
        p.iter().map(|(a, b)| (a.clone(), json!(b))).collect();
    let line = format!("/get_users {}", serde_json::Value::Object(body));
    let v = ask(&mut c, &line).await;
    assert_eq!(v["result"], 0, "{v}");
    assert_eq!(v["nonce"], p.iter().find(|(k, _)| k == "nonce").unwrap().1);
    assert_eq!(ask(&mut c, &line).await["result"], 6, "a replayed line");
    // Malformed lines.
    assert_eq!(ask(&mut c, "/nope {}").await["result"], 2);
    assert_eq!(
        ask(&mut c, "/verify_access_token {not json").await["result"],
        2
    );
    // A token revoked by /cancel fails at once.
    let cancel = [
        ("user_name", "tcp-dev"),
        ("password", "password1"),
        ("type", "2"),
    ];
    assert_eq!(env.post_signed("/cancel", &cancel).await["result"], 0);
    let v = ask(
        &mut c,
        &format!("/verify_access_token {}", json!({"access_token": token})),
    )
    .await;
    assert_eq!(v["validate"], false);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let env = Env::start(Opts::default()).await;
    let (a, _, _) = env.account("pipe-a", 2).await;
    let (b, _, _) = env.account("pipe-b", 2).await;
    let mut c = BufReader::new(TcpStream::connect(env.server().addrs.tcp).await.unwrap());
    // 80 requests written at once: a, b, invalid, get_users, a, b, … Token checks of a and b are
    // answered from memory after their first time, the others by a command that waits on the
    // database; the replies still come in request order.
    let mut batch = String::new();
    for i in 0..80 {
        let line = match i % 4 {
            0 => format!("/verify_access_token {}", json!({"access_token": a})),
            1 => format!("/verify_access_token {}", json!({"access_token": b})),
            2 => r#"/verify_access_token {"access_token":"invalid"}"#.to_owned(),
            _ => format!(
                "/get_users {}",
                json!({"access_token": a, "user_name_ls": ["pipe-b"]})
            ),
        };
        batch.push_str(&line);
        batch.push('\n');
    }
    c.get_mut().write_all(batch.as_bytes()).await.unwrap();
    for i in 0..80 {
        let mut line = String::new();
        c.read_line(&mut line).await.unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_signed(&v);
        match i % 4 {
            0 => assert_eq!(v["user_name"], "pipe-a", "reply {i}"),
            1 => assert_eq!(v["user_name"], "pipe-b", "reply {i}"),
            2 => assert_eq!(v["validate"], false, "reply {i}"),
            _ => assert_eq!(v["user_info_ls"][0]["user_name"], "pipe-b", "reply {i}"),
        }
    }
}
