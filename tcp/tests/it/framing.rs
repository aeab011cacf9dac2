//! One request a line, one reply a line: every malformed case answered or closed, never a crash.

use std::time::Duration;

use serde_json::json;
use tcp_api::TcpConfig;

use crate::common::{config, malformed, start_connected};

#[tokio::test]
async fn requests_with_lf_crlf_and_path_only() {
    let (_srv, mut c) = start_connected(TcpConfig::default()).await;
    c.send(b"/echo {\"access_token\":\"t\"}\n/echo {\"a\":1}\r\n/echo\n")
        .await;
    assert_eq!(
        c.reply().await,
        json!({"result": 0, "body": {"access_token": "t"}})
    );
    assert_eq!(c.reply().await, json!({"result": 0, "body": {"a": 1}}));
    assert_eq!(c.reply().await, json!({"result": 0, "body": {}}));
}

#[tokio::test]
async fn unknown_paths_go_to_the_handler() {
    let (_srv, mut c) = start_connected(TcpConfig::default()).await;
    c.send(b"/no_such_thing {}\n").await;
    assert_eq!(
        c.reply().await,
        json!({"result": 2, "unknown": "/no_such_thing"})
    );
}

#[tokio::test]
async fn malformed_lines_are_answered_and_the_connection_goes_on() {
    let (_srv, mut c) = start_connected(TcpConfig::default()).await;
    let cases: [&[u8]; 7] = [
        b"/echo {\"a\":\n",                   // bad JSON
        b"/echo [1,2]\n",                     // not an object
        b"/echo \"s\"\n",                     // not an object
        b"{\"access_token\":\"t\"}\n",        // no path
        b"verify_access_token {}\n",          // path without /
        b"\x00\xff\xfe\x80garbage\x01\x02\n", // binary
        b"/echo {\"a\":\"\xc3\x28\"}\n",      // invalid UTF-8 inside JSON
    ];
    for case in cases {
        c.send(case).await;
        assert_eq!(c.reply().await, malformed(), "{case:?}");
    }
    c.send(b"/echo {}\n").await;
    assert_eq!(c.reply().await, json!({"result": 0, "body": {}}));
}

#[tokio::test]
async fn empty_lines_are_ignored() {
    let (_srv, mut c) = start_connected(TcpConfig::default()).await;
    c.send(b"\n\r\n   \n/echo {\"n\":1}\n\n").await;
    assert_eq!(c.reply().await, json!({"result": 0, "body": {"n": 1}}));
    // No reply for the blank lines: the next reply is the next request's.
    c.send(b"/echo {\"n\":2}\n").await;
    assert_eq!(c.reply().await, json!({"result": 0, "body": {"n": 2}}));
}

#[tokio::test]
async fn a_line_split_across_one_byte_writes() {
    let (_srv, mut c) = start_connected(TcpConfig::default()).await;
    c.wr.as_ref().set_nodelay(true).unwrap();
    for b in b"/echo {\"split\":\"one byte at a time\"}\r\n" {
        c.send(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        c.reply().await,
        json!({"result": 0, "body": {"split": "one byte at a time"}})
    );
}

#[tokio::test]
async fn an_over_long_line_is_answered_once_then_closed() {
    let (_srv, mut c) = start_connected(config(|cfg| cfg.max_line = 1024)).await;
    let mut input = b"/echo {\"first\":true}\n".to_vec();
    input.extend(format!("/echo {{\"a\":\"{}\"}}\n", "x".repeat(2000)).as_bytes());
    input.extend(b"/echo {\"after\":true}\n");
    c.send(&input).await;
    assert_eq!(
        c.reply().await,
        json!({"result": 0, "body": {"first": true}})
    );
    assert_eq!(c.reply().await, malformed());
    assert!(c.closed_within(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn an_endless_line_without_newline_is_cut() {
    let (_srv, mut c) = start_connected(config(|cfg| cfg.max_line = 4096)).await;
    // Keep writing; the server answers and closes after 4 KiB, so later writes may fail.
    for _ in 0..64 {
        if c.wr.try_write(&[b'a'; 1024]).is_err() {
            break;
        }
    }
    assert_eq!(c.reply().await, malformed());
    assert!(c.closed_within(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_panicking_handler_is_answered_with_result_1() {
    let (_srv, mut c) = start_connected(TcpConfig::default()).await;
    c.send(b"/panic {}\n/echo {}\n").await;
    assert_eq!(c.reply().await, json!({"result": 1}));
    assert_eq!(c.reply().await, json!({"result": 0, "body": {}}));
}
