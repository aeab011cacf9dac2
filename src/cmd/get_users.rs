//! `/get_users` (HTTPS and TCP): `user_info` of each named user that exists, in request order.
//!
//! Over HTTPS a caller sees only itself and the accounts bound to it: any other name is left out
//! exactly as an unknown one, so a stranger's account cannot be told from a missing one. The TCP
//! API (IM backends admitted by `tcp.allow`) looks up any name, and never returns `jid_pwd`.

use serde::Serialize;

use super::reply::Reply;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::lifecycle::pair;
use crate::store::AccountState;
use crate::types::user_name_list;

/// Most names one request may ask for.
pub const MAX_NAMES: usize = 100;

#[derive(Serialize)]
struct Users {
    user_info_ls: Vec<crate::app::UserInfo>,
}

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let (me, _) = app.token_owner(call).await?;
    let names = user_name_list(call.required("user_name_ls")?, MAX_NAMES)?;
    let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    // The caller's own account came with its token: only the other names are looked up.
    let others: Vec<String> = wanted
        .iter()
        .filter(|n| **n != me.user_name)
        .cloned()
        .collect();
    let mut found = if others.is_empty() {
        Vec::new()
    } else {
        app.store.accounts_by_names(&others).await?
    };
    if others.len() < wanted.len() {
        found.push(me.clone());
    }
    // The pair rows are read whenever another name was asked for, found or not: the time taken
    // does not tell a stranger's account from a missing one either.
    if !call.via_tcp && !others.is_empty() {
        let mine = pair::bound_ids(app, &me).await?;
        found.retain(|a| a.id == me.id || mine.contains(&a.id));
    }
    let mut out = Vec::with_capacity(found.len());
    for name in &wanted {
        if let Some(a) = found
            .iter()
            .find(|a| &a.user_name == name && a.state == AccountState::Active)
        {
            out.push(app.user_info(a, a.id == me.id && !call.via_tcp)?);
        }
    }
    Ok(Reply::ok(Users { user_info_ls: out }))
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::cmd::testkit::{code, Kit};
    use crate::types::AccountType;

    #[tokio::test]
    async fn over_https_a_caller_sees_itself_and_its_peers_only() {
        let (k, (p, tp), (d, _)) = Kit::with_phone_and_device().await;
        k.account("stranger", AccountType::Device).await;
        k.bind(&p, &d).await;
        let list = r#"["stranger","d","p","nobody"]"#;
        let c = k.call(&[("access_token", &tp), ("user_name_ls", list)]);
        let v = run(&k.app, &c).await.unwrap().into_json();
        let infos = v["user_info_ls"].as_array().unwrap();
        let names: Vec<&str> = infos
            .iter()
            .map(|i| i["user_name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["d", "p"]);
        assert!(infos[0].get("jid_pwd").is_none());
        assert_eq!(infos[1]["jid_pwd"], k.app.jid_pwd(&p).unwrap());
        assert_eq!(infos[0]["jid"], format!("{}@kit.test", d.jid_node));
    }

    #[tokio::test]
    async fn over_tcp_any_name_is_looked_up_without_jid_pwd() {
        let (k, _, tp) = Kit::with_account("p", AccountType::Phone).await;
        k.account("stranger", AccountType::Device).await;
        let mut c = k.call(&[
            ("access_token", &tp),
            ("user_name_ls", r#"["stranger","p"]"#),
        ]);
        c.via_tcp = true;
        let v = run(&k.app, &c).await.unwrap().into_json();
        let infos = v["user_info_ls"].as_array().unwrap();
        assert_eq!(infos.len(), 2);
        assert!(infos.iter().all(|i| i.get("jid_pwd").is_none()));
    }

    #[tokio::test]
    async fn a_tokens_requests_are_limited_per_account_over_https_only() {
        let k = Kit::with(|c| c.security.account_rate_per_minute = 2).await;
        let (_, tp) = k.account("p", AccountType::Phone).await;
        let mut c = k.call(&[("access_token", &tp), ("user_name_ls", r#"["p"]"#)]);
        assert_eq!(code(&run(&k.app, &c).await), 0);
        assert_eq!(code(&run(&k.app, &c).await), 0);
        assert_eq!(code(&run(&k.app, &c).await), 112);
        c.via_tcp = true;
        assert_eq!(code(&run(&k.app, &c).await), 0, "backends serve every user");
        c.via_tcp = false;
        k.clock.advance(60);
        assert_eq!(code(&run(&k.app, &c).await), 0, "a new window");
    }

    #[tokio::test]
    async fn the_list_and_the_token_are_checked() {
        let (k, _, tp) = Kit::with_account("p", AccountType::Phone).await;
        assert_eq!(
            code(&run(&k.app, &k.call(&[("access_token", &tp)])).await),
            2
        );
        let c = k.call(&[("access_token", &tp), ("user_name_ls", "not json")]);
        assert_eq!(code(&run(&k.app, &c).await), 2);
        let c = k.call(&[("access_token", "nope"), ("user_name_ls", r#"["p"]"#)]);
        assert_eq!(code(&run(&k.app, &c).await), 4);
        let c = k.call(&[("access_token", &tp), ("user_name_ls", r#"["p"]"#)]);
        k.clock.advance(k.app.cfg.security.token_ttl_secs as i64);
        assert_eq!(code(&run(&k.app, &c).await), 4, "expired");
    }
}
