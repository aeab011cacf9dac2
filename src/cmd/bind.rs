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

use serde_json::{json, Value};
use xmpp::XmppError;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;
use crate::store::{Account, AccountState, BindingState, PairCaps, StoreError};
use crate::types::{user_name_list, AccountType};

/// Most peers one request may name.
pub const MAX_PEERS: usize = 100;

pub async fn run(app: &App, call: &Call) -> Result<Value, ApiError> {
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
            let peers = super::unbind::peers(app, call, &me).await?;
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
        if let Err(e) = bind_pair(app, &me, p).await {
            tracing::warn!(peer = %p.user_name, error = %e, "bind failed");
            failed.push((p.user_name.clone(), e));
        }
    }
    Ok(super::unbind::outcome(failed))
}

/// The peer a bind token binds the caller to, and the token's hash; 111 (counted as a failed
/// redemption) when it binds the caller to nobody, or the reply refusing a caller past its
/// failed-redemption limit.
async fn redeemable(
    app: &App,
    call: &Call,
    me: &Account,
    token: &str,
) -> Result<Result<(Arc<Account>, Vec<u8>), Value>, ApiError> {
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
    if token.len() == super::get_bind_token::DIGITS && named.is_none() {
        return Err(ApiError::Params(
            "an 8-digit bind_token needs user_name_ls naming its issuer".into(),
        ));
    }
    if !super::get_bind_token::plausible(token) {
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
            let held = app
                .store
                .binding(t.issuer.min(d), t.issuer.max(d))
                .await?
                .is_some_and(|b| b.state == BindingState::Bound);
            if !held {
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
) -> Result<Option<Value>, ApiError> {
    if !me.kind.may_bind(p.kind) {
        return Err(ApiError::NotPermitted(format!(
            "type {} may not bind type {}",
            me.kind.code(),
            p.kind.code()
        )));
    }
    if app
        .store
        .binding(me.id.min(p.id), me.id.max(p.id))
        .await?
        .is_some()
    {
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

/// A 100 reply that says why.
fn refusal(reason: &str) -> Value {
    tracing::info!(reason, "bind refused");
    json!({"result": ApiError::NotPermitted(String::new()).code(), "reason": reason})
}

async fn bind_pair(app: &App, me: &Account, peer: &Account) -> Result<(), ApiError> {
    let (a, b) = (me.id.min(peer.id), me.id.max(peer.id));
    let (pa, pb) = (app.party(me)?, app.party(peer)?);
    // The record: the primary key lets one of two concurrent binds of a pair in (the other gets
    // 109), and the insert is refused when either account stopped being active (a cancel began).
    // The caps once more, atomically with the insert: of concurrent binds of one device, only
    // as many as its cap allows get in.
    let (device, phone) = if me.kind == AccountType::Device {
        (me, peer)
    } else {
        (peer, me)
    };
    let caps = PairCaps {
        device: device.id,
        max_phones: app.cfg.binding.max_phones_per_device,
        phone: phone.id,
        max_devices: app.cfg.binding.max_devices_per_phone,
    };
    match app.store.insert_binding_capped(a, b, app.now(), caps).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::NotPermitted(
                "a side reached its cap meanwhile".into(),
            ))
        }
        Err(StoreError::Exists) => return Err(ApiError::AlreadyInRoster),
        Err(StoreError::Changed) => return Err(interrupted(app, me, peer).await),
        Err(e) => return Err(e.into()),
    }
    let started = std::time::Instant::now();
    let r = app.xmpp.bind(&pa, &pb).await;
    app.metrics.xmpp_op("bind", started.elapsed(), r.is_ok());
    let err = match r {
        // Already mutual contacts on the server (e.g. through the users' own clients): the
        // database now agrees with it.
        Ok(()) | Err(XmppError::AlreadyBound) => {
            match app
                .store
                .transition_binding(a, b, BindingState::Binding, BindingState::Bound, app.now())
                .await
            {
                Ok(true) => return Ok(()),
                // A cancel of either side or the reconciler claimed the pair meanwhile: it is
                // being undone, so this bind did not happen.
                Ok(false) => interrupted(app, me, peer).await,
                // Bound on the server, not recorded: undo (the `binding` row stays for the
                // reconciler if this cannot finish).
                Err(e) => e.into(),
            }
        }
        // The reconciler or a cancel may have claimed the pair while the server was busy with it
        // (its unbind can cut the subscription handshake short): then that, not the error the
        // handshake met, is why this bind did not happen (107 or 104). The roll-back below runs
        // all the same: what this bind did after their unbind would otherwise stay.
        Err(e) => match app.store.binding(a, b).await {
            Ok(Some(row)) if row.state == BindingState::Binding => ApiError::from_roster(e),
            Ok(_) => interrupted(app, me, peer).await,
            Err(_) => ApiError::from_roster(e),
        },
    };
    roll_back(app, a, b, &pa, &pb).await;
    Err(err)
}

/// Why a pair was taken from this bind: 104 for a side that is being cancelled, else 107 (the
/// reconciler claimed it; the client may retry).
async fn interrupted(app: &App, me: &Account, peer: &Account) -> ApiError {
    for a in [me, peer] {
        match app.store.account_by_id(a.id).await {
            Ok(Some(x)) if x.state == AccountState::Active => {}
            _ => return ApiError::UserNotExist(a.user_name.clone()),
        }
    }
    ApiError::JidNotLogin("bind interrupted by the reconciler".into())
}

/// Remove a pair that did not become `bound` from both rosters and delete its `binding` row. If
/// the server cannot be reached the row stays, and the reconciler finishes the job.
async fn roll_back(app: &App, a: i64, b: i64, pa: &xmpp::Party, pb: &xmpp::Party) {
    match app.xmpp.unbind(pa, pb).await {
        Ok(()) | Err(XmppError::NotBound) => {
            if let Err(e) = app
                .store
                .delete_binding_in(a, b, BindingState::Binding)
                .await
            {
                tracing::warn!(error = %e, "failed pair left for the reconciler");
            }
        }
        Err(e) => tracing::warn!(error = %e, "half-bound pair left for the reconciler"),
    }
}

/// An active account with this name, or 104.
pub(super) fn active(found: &[Arc<Account>], name: &str) -> Result<Arc<Account>, ApiError> {
    found
        .iter()
        .find(|a| a.user_name == name && a.state == AccountState::Active)
        .cloned()
        .ok_or_else(|| ApiError::UserNotExist(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::NewAccount;

    /// An app on a fresh SQLite store with a manual clock (its XMPP link points at a closed
    /// loopback port: these tests never reach the XMPP step), and the directory to keep.
    async fn app(clock: &ManualClock) -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::service::config::Config {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        cfg.xmpp.component_addr = "127.0.0.1:1".into();
        cfg.xmpp.component_secret = "s".into();
        let built =
            crate::service::server::build_app(cfg, tokio_util::sync::CancellationToken::new())
                .await
                .unwrap();
        let mut app = Arc::try_unwrap(built).ok().unwrap();
        app.clock = Arc::new(clock.clone());
        (dir, app)
    }

    /// An active account and an access token of it.
    async fn account(app: &App, name: &str, kind: AccountType) -> (Account, String) {
        let id = app
            .store
            .insert_pending_account(
                NewAccount {
                    user_name: name.into(),
                    kind,
                    device_type: None,
                    des: String::new(),
                    password_hash: "x".into(),
                    jid_node: format!("n{name}"),
                    jid_pwd: vec![1],
                },
                app.now(),
            )
            .await
            .unwrap();
        app.store
            .set_account_state(id, AccountState::Active, app.now())
            .await
            .unwrap();
        let token = crypto::new_token();
        app.store
            .insert_token(
                crypto::token_hash(&token),
                id,
                app.now() + 86_400,
                app.now(),
            )
            .await
            .unwrap();
        let a = app.store.account_by_id(id).await.unwrap().unwrap();
        (a, token)
    }

    fn call(params: &[(&str, &str)]) -> Call {
        Call {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            captcha_id: None,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            via_tcp: false,
            route: Default::default(),
        }
    }

    async fn issue(app: &App, name: &str, access: &str, format: &str) -> String {
        let v = crate::cmd::get_bind_token::run(
            app,
            &call(&[
                ("access_token", access),
                ("user_name", name),
                ("format", format),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(v["expires_at"], app.now() + 600);
        v["bind_token"].as_str().unwrap().to_owned()
    }

    async fn resolves(app: &App, me: &Account, token: &str) -> Option<String> {
        let c = call(&[("user_name_ls", r#"["p"]"#)]);
        resolve(app, &c, me, token, &crypto::token_hash(token))
            .await
            .unwrap()
            .map(|a| a.user_name.clone())
    }

    #[tokio::test]
    async fn a_bind_token_lives_its_ttl_and_no_longer() {
        let clock = ManualClock::new(1_000_000);
        let (_dir, app) = app(&clock).await;
        let (_, tp) = account(&app, "p", AccountType::Phone).await;
        let (dev, _) = account(&app, "d", AccountType::Device).await;
        for format in ["", "digits"] {
            let t = issue(&app, "p", &tp, format).await;
            clock.advance(599);
            assert_eq!(resolves(&app, &dev, &t).await.as_deref(), Some("p"));
            clock.advance(1);
            assert_eq!(resolves(&app, &dev, &t).await, None, "expired at the TTL");
            assert!(app
                .store
                .take_bind_token(crypto::token_hash(&t), app.now())
                .await
                .unwrap()
                .is_none());
        }
    }

    #[tokio::test]
    async fn issuing_more_voids_the_oldest_and_a_token_is_taken_once() {
        let clock = ManualClock::new(1_000_000);
        let (_dir, app) = app(&clock).await;
        let (_, tp) = account(&app, "p", AccountType::Phone).await;
        let (dev, _) = account(&app, "d", AccountType::Device).await;
        let mut tokens = Vec::new();
        for _ in 0..4 {
            tokens.push(issue(&app, "p", &tp, "").await);
        }
        assert_eq!(resolves(&app, &dev, &tokens[0]).await, None, "voided");
        for t in &tokens[1..] {
            assert_eq!(resolves(&app, &dev, t).await.as_deref(), Some("p"));
        }
        // Its issuer cannot redeem it.
        let issuer = app.store.account_by_name("p").await.unwrap().unwrap();
        assert_eq!(resolves(&app, &issuer, &tokens[1]).await, None);
        // Taken concurrently: exactly one taker gets it.
        let h = crypto::token_hash(&tokens[1]);
        let (a, b) = tokio::join!(
            app.store.take_bind_token(h.clone(), app.now()),
            app.store.take_bind_token(h.clone(), app.now())
        );
        assert_eq!(
            [a.unwrap().is_some(), b.unwrap().is_some()]
                .iter()
                .filter(|x| **x)
                .count(),
            1
        );
        assert_eq!(resolves(&app, &dev, &tokens[1]).await, None, "used");
    }

    #[tokio::test]
    async fn failed_redemptions_are_limited_per_account() {
        let clock = ManualClock::new(1_000_000);
        let (_dir, app) = app(&clock).await;
        let (_, tp) = account(&app, "p", AccountType::Phone).await;
        let (_, td) = account(&app, "d", AccountType::Device).await;
        let good = issue(&app, "p", &tp, "digits").await;
        let redeem = |t: String| {
            let app = &app;
            let td = td.clone();
            async move {
                let c = call(&[
                    ("access_token", &td),
                    ("user_name", "d"),
                    ("bind_token", &t),
                    ("user_name_ls", r#"["p"]"#),
                ]);
                let me = app.store.account_by_name("d").await.unwrap().unwrap();
                match redeemable(app, &c, &me, &t).await {
                    Ok(Ok(_)) => 0,
                    Ok(Err(reply)) => reply["result"].as_i64().unwrap(),
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
        clock.advance(599);
        assert_eq!(redeem(good.clone()).await, 100);
        clock.advance(2);
        // (`good` has expired meanwhile: a new one.)
        let good = issue(&app, "p", &tp, "digits").await;
        assert_eq!(redeem(good).await, 0);
        // A concurrent burst of guesses gets no more verdicts than the limit: each attempt is
        // counted before its token is looked up.
        clock.advance(601);
        let guesses = (0..30).map(|i| redeem(format!("{:08}", 10_000_000 + i)));
        let codes = futures::future::join_all(guesses).await;
        let judged = codes.iter().filter(|c| **c == 111).count();
        let refused = codes.iter().filter(|c| **c == 100).count();
        assert_eq!((judged, refused), (5, 25), "{codes:?}");
    }
}
