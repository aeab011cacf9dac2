//! `/set_user_banding`: make the caller and each named user mutual contacts.
//!
//! By default (`binding.consent = "token"`) a bind needs proof that the caller has the other side
//! in hand: a bind token that the other side issued (`/get_bind_token`). The caller redeems it with
//! `bind_token`; the pair bound is (issuer, caller), or (device, caller) for a sharing token, and
//! `user_name_ls`, when sent, must name exactly that peer. A token that is unknown, expired, used,
//! voided or not for this pair gives 111; failed redemptions are counted per redeeming account
//! and, past `binding.max_failed_redemptions` in a window, refused with 100 (an 8-digit token is
//! then hopeless to guess). Without a token the bind is refused with 100, unless
//! `binding.consent = "none"`, which keeps the seed's open bind by name.
//!
//! Everything is validated before anything changes: the token is `user_name`'s, each peer exists
//! (104), may pair with the caller's type (100), is not yet bound (109) and neither side is at its
//! cap (100 with `reason`); the bind token is consumed last, atomically, so that of two
//! concurrent redemptions only one binds. Then each pair is written `binding`, bound on the XMPP
//! server and marked `bound`; a pair that fails is rolled back (or left for the reconciler) and
//! named in `failed_ls`.
//!
//! `bound` is set by compare-and-set from `binding`, and only then is the pair answered with 0; a
//! pair whose row a cancel or the reconciler claimed meanwhile is rolled back instead.

use std::sync::Arc;

use super::reply::{self, refusal, Reply};

use crate::app::{App, Call};
use crate::auth::{bind_token, crypto};
use crate::error::ApiError;
use crate::lifecycle::pair::{self, PairKey, MAX_PEERS};
use crate::store::{Account, AccountState};
use crate::types::{user_name_list, AccountType};

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let me = app.token_owner_named(call).await?;
    let peers = match call.get("bind_token").filter(|t| !t.is_empty()) {
        Some(token) => {
            let (peer, hash) = match redeemable(app, call, &me, token).await? {
                Ok(x) => x,
                Err(reply) => return Ok(reply),
            };
            if let Some(reply) = check_pair(app, &me, &peer, 1).await? {
                return Ok(reply);
            }
            // Consumed last and atomically: a concurrent redemption of the same token that got
            // here first leaves none.
            if app.store.take_bind_token(hash, app.now()).await?.is_none() {
                return Err(ApiError::BindToken);
            }
            vec![peer]
        }
        None if app.cfg.binding.consent == "none" => {
            let peers = pair::named_peers(app, call, &me).await?;
            for p in &peers {
                if let Some(reply) = check_pair(app, &me, p, peers.len()).await? {
                    return Ok(reply);
                }
            }
            peers
        }
        None => {
            return Err(ApiError::NotPermitted(
                "binding needs a bind_token from the other side".into(),
            ))
        }
    };
    let mut failed: Vec<(String, ApiError)> = Vec::new();
    for p in &peers {
        if let Err(e) = pair::bind(app, &me, p).await {
            tracing::warn!(peer = %p.user_name, error = %e, "bind failed");
            failed.push((p.user_name.clone(), e));
        }
    }
    Ok(reply::outcome(failed))
}

/// The peer a bind token binds the caller to, and the token's hash; 111 (counted as a failed
/// redemption) when it binds the caller to nobody, or the reply refusing a caller past its
/// failed-redemption limit.
async fn redeemable(
    app: &App,
    call: &Call,
    me: &Account,
    token: &str,
) -> Result<Result<(Arc<Account>, Vec<u8>), Reply>, ApiError> {
    let b = &app.cfg.binding;
    let now = app.now();
    let since = now - b.failed_redemption_window_secs as i64;
    // Counted as a failure in advance, in one atomic step, and forgotten only if the token proves
    // good: a concurrent burst cannot pass the limit together (a check before and a record after
    // let every request of a burst through).
    if app.store.record_bind_failure(me.id, now, since).await? > b.max_failed_redemptions {
        tracing::info!(user = %me.user_name, "bind token refused: too many failed redemptions");
        return Ok(Err(refusal("too many failed bind tokens; try again later")));
    }
    let hash = crypto::token_hash(token);
    match resolve(app, call, me, token, &hash).await? {
        Some(peer) => {
            app.store.forget_bind_failure(me.id, now).await?;
            Ok(Ok((peer, hash)))
        }
        None => Err(ApiError::BindToken),
    }
}

/// The account a live bind token binds `me` to, or `None` when the token is unknown, expired
/// (used and voided tokens are gone), issued by `me`, for a sharing that no longer holds, or
/// for another peer than the one `user_name_ls` names (which an 8-digit token requires: 2).
async fn resolve(
    app: &App,
    call: &Call,
    me: &Account,
    token: &str,
    hash: &[u8],
) -> Result<Option<Arc<Account>>, ApiError> {
    // Parsed before the token is looked up, so a malformed list cannot tell a live token (2)
    // from a dead one (111).
    let named = match call.get("user_name_ls").filter(|l| !l.is_empty()) {
        Some(l) => Some(user_name_list(l, MAX_PEERS)?),
        None => None,
    };
    // An 8-digit token must come with the name of its issuer: a guess then has to hit one
    // account's codes, not any of the codes outstanding in the whole service.
    if token.len() == bind_token::DIGITS && named.is_none() {
        return Err(ApiError::Params(
            "an 8-digit bind_token needs user_name_ls naming its issuer".into(),
        ));
    }
    if !bind_token::plausible(token) {
        return Ok(None);
    }
    let Some(t) = app.store.bind_token(hash.to_vec(), app.now()).await? else {
        return Ok(None);
    };
    if t.issuer == me.id || t.device == Some(me.id) {
        return Ok(None);
    }
    let peer_id = match t.device {
        // Sharing: the issuer must still be bound to the device it shares.
        Some(d) => {
            if !pair::is_bound(app, t.issuer, d).await? {
                return Ok(None);
            }
            d
        }
        None => t.issuer,
    };
    let peer = match app.store.account_by_id(peer_id).await? {
        Some(p) if p.state == AccountState::Active => Arc::new(p),
        _ => return Ok(None),
    };
    if let Some(names) = named {
        if names.len() != 1 || names[0].as_str() != peer.user_name {
            return Ok(None);
        }
    }
    Ok(Some(peer))
}

/// Refuse a pair that may not be bound: an error for the type pair (100) or a pair already bound
/// (109); a reply with `reason` for a side that would pass its cap once the caller's `adding`
/// pairs of this request are bound.
async fn check_pair(
    app: &App,
    me: &Account,
    p: &Account,
    adding: usize,
) -> Result<Option<Reply>, ApiError> {
    if !me.kind.may_bind(p.kind) {
        return Err(ApiError::NotPermitted(format!(
            "type {} may not bind type {}",
            me.kind.code(),
            p.kind.code()
        )));
    }
    if pair::row(app, PairKey::of(me.id, p.id)).await?.is_some() {
        return Err(ApiError::AlreadyInRoster);
    }
    let (device, phone) = if me.kind == AccountType::Device {
        (me, p)
    } else {
        (p, me)
    };
    let b = &app.cfg.binding;
    // The caller's side gains `adding` pairs, the peer's one.
    let (dev_adds, phone_adds) = if me.kind == AccountType::Device {
        (adding, 1)
    } else {
        (1, adding)
    };
    if app.store.bindings_of(device.id).await?.len() + dev_adds > b.max_phones_per_device as usize {
        return Ok(Some(refusal(&format!(
            "device {} would have more than {} phones bound (binding.max_phones_per_device)",
            device.user_name, b.max_phones_per_device
        ))));
    }
    if app.store.bindings_of(phone.id).await?.len() + phone_adds > b.max_devices_per_phone as usize
    {
        return Ok(Some(refusal(&format!(
            "{} would have more than {} devices bound (binding.max_devices_per_phone)",
            phone.user_name, b.max_devices_per_phone
        ))));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testkit::{code, Kit};
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::store::BindingState;

    async fn resolves(k: &Kit, me: &Account, token: &str) -> Option<String> {
        let c = k.call(&[("user_name_ls", r#"["p"]"#)]);
        resolve(&k.app, &c, me, token, &crypto::token_hash(token))
            .await
            .unwrap()
            .map(|a| a.user_name.clone())
    }

    /// `/set_user_banding` by `d` (a device holding `td`) with these extra parameters.
    async fn bind_as_d(k: &Kit, td: &str, extra: &[(&str, &str)]) -> Result<Reply, ApiError> {
        run(&k.app, &k.signed_as(td, "d", extra)).await
    }

    #[tokio::test]
    async fn a_bind_token_binds_its_issuer_and_the_redeemer() {
        let (k, (p, tp), (d, td)) = Kit::with_phone_and_device().await;
        let t = k.bind_token("p", &tp, "").await;
        assert_eq!(code(&bind_as_d(&k, &td, &[("bind_token", &t)]).await), 0);
        assert!(k.xmpp.is_bound(&p.jid_node, &d.jid_node));
        let row = pair::row(&k.app, PairKey::of(p.id, d.id)).await.unwrap();
        assert_eq!(row.unwrap().state, BindingState::Bound);
        // Used: a second redemption gets 111, a bind by name 100.
        assert_eq!(code(&bind_as_d(&k, &td, &[("bind_token", &t)]).await), 111);
        assert_eq!(
            code(&bind_as_d(&k, &td, &[("user_name_ls", r#"["p"]"#)]).await),
            100
        );
    }

    #[tokio::test]
    async fn tokens_are_checked_before_anything_changes() {
        let (k, (_, tp), (_, td)) = Kit::with_phone_and_device().await;
        let t = k.bind_token("p", &tp, "digits").await;
        assert_eq!(code(&bind_as_d(&k, &td, &[("bind_token", &t)]).await), 2);
        let other = [("bind_token", t.as_str()), ("user_name_ls", r#"["d2"]"#)];
        assert_eq!(code(&bind_as_d(&k, &td, &other).await), 111);
        assert_eq!(code(&bind_as_d(&k, "nope", &[("bind_token", &t)]).await), 4);
        let c = k.signed_as(&tp, "d", &[("bind_token", &t)]);
        assert_eq!(code(&run(&k.app, &c).await), 100, "another user's token");
        assert_eq!(k.xmpp.calls(Op::Bind), 0);
    }

    #[tokio::test]
    async fn binding_by_name_checks_names_types_pairs_and_caps() {
        let k = Kit::with(|c| {
            c.binding.consent = "none".into();
            c.binding.max_phones_per_device = 1;
        })
        .await;
        let (_, tp) = k.account("p", AccountType::Phone).await;
        k.account("p2", AccountType::Phone).await;
        let (_, td) = k.account("d", AccountType::Device).await;
        let names = |l: &'static str| [("user_name_ls", l)];
        assert_eq!(code(&bind_as_d(&k, &td, &names(r#"["x"]"#)).await), 104);
        assert_eq!(code(&bind_as_d(&k, &td, &names(r#"["d"]"#)).await), 2);
        let c = k.call(&[
            ("access_token", &tp),
            ("user_name", "p"),
            ("user_name_ls", r#"["p2"]"#),
        ]);
        assert_eq!(code(&run(&k.app, &c).await), 100, "phone with phone");
        let both = bind_as_d(&k, &td, &names(r#"["p","p2"]"#))
            .await
            .unwrap()
            .into_json();
        assert_eq!(both["result"], 100, "over the cap");
        assert!(both["reason"]
            .as_str()
            .unwrap()
            .contains("max_phones_per_device"));
        assert_eq!(code(&bind_as_d(&k, &td, &names(r#"["p"]"#)).await), 0);
        assert_eq!(code(&bind_as_d(&k, &td, &names(r#"["p"]"#)).await), 109);
    }

    #[tokio::test]
    async fn a_failed_server_bind_is_rolled_back_and_named() {
        let k = Kit::with(|c| c.binding.consent = "none".into()).await;
        let ((p, _), (d, td)) = k.phone_and_device().await;
        let names = [("user_name_ls", r#"["p"]"#)];
        k.xmpp.fail_once(Op::Bind, Fault::Timeout);
        let v = bind_as_d(&k, &td, &names).await.unwrap().into_json();
        assert_eq!(v["result"], 9);
        assert_eq!(v["failed_ls"], serde_json::json!(["p"]));
        assert!(pair::row(&k.app, PairKey::of(p.id, d.id))
            .await
            .unwrap()
            .is_none());
        k.xmpp.fail_once(Op::Bind, Fault::AuthFailed);
        assert_eq!(code(&bind_as_d(&k, &td, &names).await), 105);
        // Already mutual on the server: the database agrees.
        k.xmpp.fail_once(Op::Bind, Fault::Exists);
        assert_eq!(code(&bind_as_d(&k, &td, &names).await), 0);
        assert!(pair::is_bound(&k.app, p.id, d.id).await.unwrap());
    }

    #[tokio::test]
    async fn a_bind_claimed_meanwhile_is_rolled_back() {
        let k = Kit::with(|c| c.binding.consent = "none".into()).await;
        let ((p, _), (d, td)) = k.phone_and_device().await;
        k.xmpp.fail_once(Op::Bind, Fault::Hang);
        let call = k.signed_as(&td, "d", &[("user_name_ls", r#"["p"]"#)]);
        let claim = async {
            k.xmpp.hung(1).await;
            let key = PairKey::of(p.id, d.id);
            let (from, to) = (BindingState::Binding, BindingState::Unbinding);
            let now = k.app.now();
            let moved = k.app.store.transition_binding(key.a, key.b, from, to, now);
            assert!(moved.await.unwrap());
            k.xmpp.release();
        };
        let (r, ()) = tokio::join!(run(&k.app, &call), claim);
        assert_eq!(code(&r), 107, "interrupted by the reconciler");
        assert!(!k.xmpp.is_bound(&p.jid_node, &d.jid_node), "rolled back");
    }

    #[tokio::test]
    async fn a_bind_token_lives_its_ttl_and_no_longer() {
        let (k, (_, tp), (dev, _)) = Kit::with_phone_and_device().await;
        for format in ["", "digits"] {
            let t = k.bind_token("p", &tp, format).await;
            k.clock.advance(599);
            assert_eq!(resolves(&k, &dev, &t).await.as_deref(), Some("p"));
            k.clock.advance(1);
            assert_eq!(resolves(&k, &dev, &t).await, None, "expired at the TTL");
            assert!(k
                .app
                .store
                .take_bind_token(crypto::token_hash(&t), k.app.now())
                .await
                .unwrap()
                .is_none());
        }
    }

    #[tokio::test]
    async fn issuing_more_voids_the_oldest_and_a_token_is_taken_once() {
        let (k, (_, tp), (dev, _)) = Kit::with_phone_and_device().await;
        let mut tokens = Vec::new();
        for _ in 0..4 {
            tokens.push(k.bind_token("p", &tp, "").await);
        }
        assert_eq!(resolves(&k, &dev, &tokens[0]).await, None, "voided");
        for t in &tokens[1..] {
            assert_eq!(resolves(&k, &dev, t).await.as_deref(), Some("p"));
        }
        // Its issuer cannot redeem it.
        let issuer = k.named("p").await.unwrap();
        assert_eq!(resolves(&k, &issuer, &tokens[1]).await, None);
        // Taken concurrently: exactly one taker gets it.
        let h = crypto::token_hash(&tokens[1]);
        let (a, b) = tokio::join!(
            k.app.store.take_bind_token(h.clone(), k.app.now()),
            k.app.store.take_bind_token(h.clone(), k.app.now())
        );
        assert_eq!(
            [a.unwrap().is_some(), b.unwrap().is_some()]
                .iter()
                .filter(|x| **x)
                .count(),
            1
        );
        assert_eq!(resolves(&k, &dev, &tokens[1]).await, None, "used");
    }

    #[tokio::test]
    async fn failed_redemptions_are_limited_per_account() {
        let (k, (_, tp), (_, td)) = Kit::with_phone_and_device().await;
        let good = k.bind_token("p", &tp, "digits").await;
        let redeem = |t: String| {
            let k = &k;
            let td = td.clone();
            async move {
                let c = k.call(&[
                    ("access_token", &td),
                    ("user_name", "d"),
                    ("bind_token", &t),
                    ("user_name_ls", r#"["p"]"#),
                ]);
                let me = k.named("d").await.unwrap();
                match redeemable(&k.app, &c, &me, &t).await {
                    Ok(Ok(_)) => 0,
                    Ok(Err(reply)) => reply.code(),
                    Err(e) => e.code(),
                }
            }
        };
        let wrong = if good == "00000000" {
            "00000001"
        } else {
            "00000000"
        };
        for _ in 0..5 {
            assert_eq!(redeem(wrong.into()).await, 111);
        }
        // Now even the right code is refused, until the window has passed.
        assert_eq!(redeem(good.clone()).await, 100);
        k.clock.advance(599);
        assert_eq!(redeem(good.clone()).await, 100);
        k.clock.advance(2);
        // (`good` has expired meanwhile: a new one.)
        let good = k.bind_token("p", &tp, "digits").await;
        assert_eq!(redeem(good).await, 0);
        // A concurrent burst of guesses gets no more verdicts than the limit: each attempt is
        // counted before its token is looked up.
        k.clock.advance(601);
        let guesses = (0..30).map(|i| redeem(format!("{:08}", 10_000_000 + i)));
        let codes = futures::future::join_all(guesses).await;
        let judged = codes.iter().filter(|c| **c == 111).count();
        let refused = codes.iter().filter(|c| **c == 100).count();
        assert_eq!((judged, refused), (5, 25), "{codes:?}");
    }
}
