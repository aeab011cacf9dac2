//! `/get_users` (HTTPS and TCP): `user_info` of each named user that exists, in request order.
//!
//! Over HTTPS a caller sees only itself and the accounts bound to it: any other name is left out
//! exactly as an unknown one, so a stranger's account cannot be told from a missing one. The TCP
//! API (IM backends admitted by `tcp.allow`) looks up any name, and never returns `jid_pwd`.

use std::sync::Arc;

use super::reply::Reply;

use crate::app::{App, Call};
use crate::error::ApiError;
use crate::lifecycle::pair;
use crate::store::{Account, AccountState, KeptReply};
use crate::types::{user_name_list, UserName};

/// Most names one request may ask for.
pub const MAX_NAMES: usize = 100;

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let (me, _) = app.token_owner(call).await?;
    let list = call.required("user_name_ls")?;
    // Over HTTPS, a request naming no nonce gets the same bytes as the last time it asked the
    // same list while nothing it showed changed (see `KeptReply`).
    let keeps = !call.via_tcp && call.signed.get().is_none();
    if keeps {
        if let Some(body) = me.memo.kept_reply(list) {
            return Ok(Reply::signed_already(body));
        }
    }
    let names = user_name_list(list, MAX_NAMES)?;
    // The caller's own account came with its token: only the other names are looked up.
    let asks_others = names.iter().any(|n| n.as_str() != me.user_name);
    // Over HTTPS only the caller and its peers are shown, so the caller's pairs come first (from
    // the cached account, see `Memo`): a caller bound to nobody has nobody else to look up, and
    // a caller whose peers are remembered looks nobody up, so for them the reply takes the same
    // time whether the other names exist or not. Until its peers are remembered (a request that
    // named them all, each cached), the names are looked up, and an unknown one costs a database
    // read that a cached one does not.
    let peers = if !call.via_tcp && asks_others {
        Some(pair::bound_ids(app, &me).await?)
    } else {
        None
    };
    // What the reply is made from besides the caller: nobody, or the remembered peers (a reply
    // made from them may be kept), or accounts looked up now (it may not).
    let (found, made_from): (Arc<[Arc<Account>]>, Option<Option<_>>) = match peers {
        _ if !asks_others => (Arc::new([]), Some(None)),
        Some([]) => (Arc::new([]), Some(None)),
        Some(ids) => match me.memo.kept_peers() {
            Some(remembered) => (remembered.clone(), Some(Some(remembered))),
            None => {
                let found = look_up_others(app, &names, &me).await?;
                // Once the peers are remembered, this reply is the one they would make (each
                // shown peer is the very copy remembered), so it may be kept as well.
                let remembered = remember_peers(&me, ids, &found);
                (found.into(), remembered.map(Some))
            }
        },
        None => (look_up_others(app, &names, &me).await?.into(), None),
    };
    let shown = |a: &Account| {
        a.state == AccountState::Active && peers.is_none_or(|p| a.id == me.id || p.contains(&a.id))
    };
    let mut out = Vec::with_capacity(64 + 160 * names.len());
    out.push(b'[');
    for name in &names {
        let account = if name.as_str() == me.user_name {
            Some(&*me)
        } else {
            found
                .iter()
                .map(|a| &**a)
                .find(|a| a.user_name == name.as_str())
        };
        if let Some(a) = account.filter(|a| shown(a)) {
            if out.len() > 1 {
                out.push(b',');
            }
            app.write_user_info(a, a.id == me.id && !call.via_tcp, &mut out)?;
        }
    }
    out.push(b']');
    let text = String::from_utf8(out).expect("JSON text is UTF-8");
    let reply = Reply::ok_text("user_info_ls", text);
    match made_from {
        Some(peers) if keeps => {
            let body = reply.signed(&app.secrets.sign_key, None);
            me.memo.keep_reply(KeptReply {
                list: list.into(),
                peers,
                body: body.clone(),
            });
            Ok(Reply::signed_already(body))
        }
        _ => Ok(reply),
    }
}

/// The accounts named in `names` but for the caller's own.
async fn look_up_others(
    app: &App,
    names: &[UserName],
    me: &Account,
) -> Result<Vec<Arc<Account>>, ApiError> {
    let others: Vec<String> = names
        .iter()
        .filter(|n| n.as_str() != me.user_name)
        .map(|n| n.to_string())
        .collect();
    Ok(app.store.accounts_by_names(&others).await?)
}

/// When `found` holds a kept, active copy of every peer in `ids`, `me` remembers them, so that
/// its next `/get_users` looks nobody up (until one of them changes); the copies remembered.
fn remember_peers(
    me: &Account,
    ids: &[i64],
    found: &[Arc<Account>],
) -> Option<Arc<[Arc<Account>]>> {
    let peers: Option<Vec<Arc<Account>>> = ids
        .iter()
        .map(|id| {
            found
                .iter()
                .find(|a| a.id == *id && a.state == AccountState::Active && a.memo.kept())
                .cloned()
        })
        .collect();
    let peers: Arc<[Arc<Account>]> = peers?.into();
    me.memo.remember_peers(peers.clone()).then_some(peers)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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

    /// The text of a `user_info` (worked out once, `jid_pwd` put in for the account itself) is
    /// the canonical text of the struct, also when `des` holds what the text is split at.
    #[tokio::test]
    async fn a_user_info_is_written_as_its_canonical_text() {
        let (k, (mut p, _), _) = Kit::with_phone_and_device().await;
        p.des = r#"x,"type":1,\"#.into();
        p.device_type = Some("cam\u{e9}".into());
        // The service's own `jid_pwd` (letters and digits), and one an operator set that needs escaping.
        let mut odd = p.clone();
        let key = &k.app.secrets.encryption_key;
        odd.jid_pwd = crate::auth::crypto::seal(key, &odd.jid_node, "p\"w\\é");
        for a in [p.clone(), odd] {
            for own in [false, true, false, true] {
                let mut out = Vec::new();
                k.app.write_user_info(&a, own, &mut out).unwrap();
                let info = k.app.user_info(&a, own).unwrap();
                let text = crate::auth::crypto::canonical_text(&info);
                assert_eq!(String::from_utf8(out).unwrap(), text, "own: {own}");
            }
            assert!(a.memo.info.get().is_some());
        }
    }

    #[tokio::test]
    async fn the_callers_pairs_are_remembered_until_a_pair_changes() {
        let (k, (p, tp), (d, _)) = Kit::with_phone_and_device().await;
        let c = k.call(&[("access_token", &tp), ("user_name_ls", r#"["d","p"]"#)]);
        let shown = || async {
            let v = run(&k.app, &c).await.unwrap().into_json();
            v["user_info_ls"].as_array().unwrap().len()
        };
        // The copy of the caller's account that the token cache hands out.
        let remembered = || async {
            let hash = crate::auth::crypto::token_hash(&tp);
            let found = k.app.store.token_account(hash, k.app.now()).await;
            let (me, _) = found.unwrap().unwrap();
            me.memo.bound.get().map(|ids| ids.to_vec())
        };
        assert_eq!(shown().await, 1, "not bound yet");
        assert_eq!(remembered().await, Some(vec![]));
        k.bind(&p, &d).await;
        assert_eq!(remembered().await, None, "forgotten with the pair's change");
        assert_eq!(shown().await, 2);
        assert_eq!(remembered().await, Some(vec![d.id]));
        crate::lifecycle::pair::unbind(&k.app, &p, &d)
            .await
            .unwrap();
        assert_eq!(shown().await, 1, "the unbind is seen at once");
    }

    #[tokio::test]
    async fn the_callers_peers_are_remembered_while_each_is_unchanged() {
        let (k, (p, tp), (d, _)) = Kit::with_phone_and_device().await;
        k.bind(&p, &d).await;
        let c = k.call(&[("access_token", &tp), ("user_name_ls", r#"["d","p"]"#)]);
        let shown = || async {
            let v = run(&k.app, &c).await.unwrap().into_json();
            let infos = v["user_info_ls"].as_array().unwrap().clone();
            infos
                .iter()
                .map(|i| i["user_name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        let holder = |token: String| {
            let app = &k.app;
            async move {
                let hash = crate::auth::crypto::token_hash(&token);
                let found = app.store.token_account(hash, app.now()).await;
                found.unwrap().unwrap().0
            }
        };
        assert_eq!(shown().await, ["d", "p"], "looked up, then remembered");
        let me = holder(tp.clone()).await;
        let first = me.memo.kept_peers().expect("remembered");
        assert_eq!(first.iter().map(|a| a.id).collect::<Vec<_>>(), [d.id]);
        assert!(first[0].memo.kept());
        assert_eq!(shown().await, ["d", "p"], "from memory");

        // A change to the peer alone (its tokens revoked) leaves the caller's copy as it was,
        // but the remembered peer is no longer kept: it is looked up again.
        k.app.store.revoke_tokens(d.id).await.unwrap();
        assert!(!first[0].memo.kept(), "forgotten by the cache");
        assert!(me.memo.kept_peers().is_none());
        assert_eq!(shown().await, ["d", "p"]);
        let again = me.memo.kept_peers().expect("remembered again");
        assert!(!Arc::ptr_eq(&first[0], &again[0]), "a fresh copy");

        // A peer whose cancel has begun is not shown, though its pair is still there.
        assert!(k.app.store.begin_cancel(d.id, k.app.now()).await.unwrap());
        assert_eq!(shown().await, ["p"]);
    }

    #[tokio::test]
    async fn a_phone_and_its_device_that_remember_each_other_are_freed_once_let_go() {
        let (k, (p, tp), (d, td)) = Kit::with_phone_and_device().await;
        k.bind(&p, &d).await;
        let phone_asks = k.call(&[("access_token", &tp), ("user_name_ls", r#"["d"]"#)]);
        let device_asks = k.signed(&[("access_token", &td), ("user_name_ls", r#"["p"]"#)]);
        for c in [&phone_asks, &device_asks] {
            let v = run(&k.app, c).await.unwrap().into_json();
            assert_eq!(v["user_info_ls"].as_array().unwrap().len(), 1);
        }
        let holder = |token: &str| {
            let hash = crate::auth::crypto::token_hash(token);
            let app = &k.app;
            async move {
                app.store
                    .token_account(hash, app.now())
                    .await
                    .unwrap()
                    .unwrap()
                    .0
            }
        };
        let (phone, device) = (holder(&tp).await, holder(&td).await);
        assert!(Arc::ptr_eq(&phone.memo.kept_peers().unwrap()[0], &device));
        assert!(Arc::ptr_eq(&device.memo.kept_peers().unwrap()[0], &phone));
        let (phone_copy, device_copy) = (Arc::downgrade(&phone), Arc::downgrade(&device));
        drop((phone, device));
        k.app.store.revoke_tokens(p.id).await.unwrap();
        k.app.store.revoke_tokens(d.id).await.unwrap();
        assert!(phone_copy.upgrade().is_none(), "the phone's copy is freed");
        assert!(
            device_copy.upgrade().is_none(),
            "the device's copy is freed"
        );
    }

    /// An app asking the same list again gets the bytes it was given the last time, until
    /// something the reply showed changes: a peer, a pair, or the caller's own account.
    #[tokio::test]
    async fn the_same_question_gets_the_kept_reply_until_what_it_showed_changes() {
        let (k, (p, tp), (d, _)) = Kit::with_bound_pair().await;
        let list = r#"["d","p","nobody"]"#;
        let c = k.call(&[("access_token", &tp), ("user_name_ls", list)]);
        let (app, key) = (&k.app, &k.app.secrets.sign_key);
        let ask = |c: crate::app::Call| async move {
            let reply = run(app, &c).await.unwrap();
            let v = reply.clone().into_json();
            let names: Vec<String> = v["user_info_ls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["user_name"].as_str().unwrap().to_owned())
                .collect();
            (reply.signed(key, c.signed.get()), names, v)
        };
        let me = || async {
            let hash = crate::auth::crypto::token_hash(&tp);
            let found = k.app.store.token_account(hash, k.app.now()).await;
            found.unwrap().unwrap().0
        };

        let (made, names, _) = ask(c.clone()).await;
        assert_eq!(names, ["d", "p"]);
        assert_eq!(
            me().await.memo.kept_reply(list),
            Some(made.clone()),
            "made from a lookup that remembered the peer"
        );
        let (kept, _, _) = ask(c.clone()).await;
        assert_eq!(kept.as_ptr(), made.as_ptr(), "the kept bytes themselves");

        // Another list, a signed request (its reply names its nonce) and a TCP lookup (no
        // `jid_pwd`) are each answered anew.
        let other = k.call(&[("access_token", &tp), ("user_name_ls", r#"["p"]"#)]);
        let (alone, names, _) = ask(other).await;
        assert_eq!(names, ["p"]);
        assert_eq!(me().await.memo.kept_reply(list), None, "one reply is kept");
        assert_ne!(alone, made);
        ask(c.clone()).await;
        let signed = k.signed(&[("access_token", &tp), ("user_name_ls", list)]);
        let (named, _, v) = ask(signed.clone()).await;
        assert!(v.get("nonce").is_none(), "unsigned JSON");
        let nonce = signed.get("nonce").unwrap();
        assert!(String::from_utf8_lossy(&named).contains(&format!(r#""nonce":"{nonce}""#)));
        let mut by_tcp = c.clone();
        by_tcp.via_tcp = true;
        let (_, _, v) = ask(by_tcp).await;
        assert!(v["user_info_ls"][1].get("jid_pwd").is_none());
        assert_eq!(me().await.memo.kept_reply(list), Some(made.clone()));

        // The peer changes (its tokens revoked): the reply is made again.
        k.app.store.revoke_tokens(d.id).await.unwrap();
        assert_eq!(me().await.memo.kept_reply(list), None);
        let (again, names, _) = ask(c.clone()).await;
        assert_eq!(names, ["d", "p"]);
        assert_eq!(again, made, "nothing it shows changed");
        assert_eq!(
            me().await.memo.kept_reply(list),
            Some(again),
            "kept again at once"
        );

        // The caller's own `jid_pwd` is renewed: the reply shows the new one.
        let renew = k.signed(&[("access_token", &tp), ("user_name", "p")]);
        let renewed = crate::cmd::renew_jid_pwd::run(&k.app, &renew).await;
        let new_pwd = renewed.unwrap().into_json()["jid_pwd"].clone();
        let (_, _, v) = ask(c.clone()).await;
        assert_eq!(v["user_info_ls"][1]["jid_pwd"], new_pwd);
        ask(c.clone()).await;
        assert!(me().await.memo.kept_reply(list).is_some());

        // The pair is unbound: the peer is no longer shown.
        let (p, d) = (k.named(&p.user_name).await, k.named(&d.user_name).await);
        crate::lifecycle::pair::unbind(&k.app, &p.unwrap(), &d.unwrap())
            .await
            .unwrap();
        assert_eq!(ask(c.clone()).await.1, ["p"]);
        assert_eq!(ask(c).await.1, ["p"]);
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
