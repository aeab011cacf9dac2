//! An IM backend checking access tokens over register's TCP JSON line API.
//!
//! ```sh
//! cargo run --example backend_client -- 127.0.0.1:8444 TOKEN [TOKEN...]
//! ```
//!
//! One connection; every request is written first (pipelined), then the replies are read in order —
//! one JSON object per line, the same order as the requests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8444".into());
    let tokens: Vec<String> = args.collect();
    if tokens.is_empty() {
        eprintln!("usage: backend_client ADDR TOKEN [TOKEN...]");
        std::process::exit(2);
    }
    let mut conn = TcpStream::connect(&addr)?;
    for t in &tokens {
        let body = serde_json::json!({ "access_token": t });
        writeln!(conn, "/verify_access_token {body}")?;
    }
    let mut replies = BufReader::new(conn.try_clone()?);
    for t in &tokens {
        let mut line = String::new();
        replies.read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        if v["validate"] == true {
            println!(
                "{t:.8}…: valid: user {} jid {} type {} until {}",
                v["user_name"], v["jid"], v["type"], v["expires_at"]
            );
        } else {
            println!("{t:.8}…: invalid (result {})", v["result"]);
        }
    }
    Ok(())
}
