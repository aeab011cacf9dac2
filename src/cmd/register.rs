//! `/register`: reserve the name, create the JID, then make the account active (the steps are
//! the account lifecycle's, `lifecycle::account`).
//!
//! The row is written `pending` before the JID is created and `active` after, so a crash or a lost
//! link leaves a record the reconciler undoes (deleting the JID if it was made). A reply of 0 means
//! the JID exists and the activation is committed (it survives a process kill).
//!
//! Two requests for one name race on the `UNIQUE` user name: the second insert fails and gets 103.
//! The activation is a compare-and-set from `pending`, so a reconciler that claimed the row first
//! (it turns `pending` into `deleting`) makes this request undo its JID instead of answering 0.

use super::reply::Reply;

use crate::app::{App, Call};
use crate::auth::crypto;
use crate::error::ApiError;
use crate::lifecycle::account;
use crate::store::NewAccount;
use crate::types::{bounded_text, AccountType, Password, UserName};

pub async fn run(app: &App, call: &Call) -> Result<Reply, ApiError> {
    let name = UserName::parse(call.required("user_name")?)?;
    let password = Password::parse(call.required("password")?)?;
    let kind = AccountType::parse(call.required("type")?)?;
    let des = bounded_text("des", call.get("des").unwrap_or(""), 0, 256)?;
    let device_type = match kind {
        AccountType::Device => Some(bounded_text(
            "device_type",
            call.required("device_type")?,
            1,
            32,
        )?),
        _ => None,
    };
    app.check_human_or_device(call, kind == AccountType::Device, false)
        .await?;
    if app.store.account_by_name(name.as_str()).await?.is_some() {
        return Err(ApiError::UserExists);
    }
    account::link_up(app)?;
    let password_hash = app.hasher.hash(password.as_str().to_owned()).await?;
    // Again after the (slow) hash: a link lost meanwhile fails here, before anything is written.
    account::link_up(app)?;
    let node = account::new_jid_node();
    let jid_pwd = account::new_jid_password();
    let new = NewAccount {
        user_name: name.to_string(),
        kind,
        device_type,
        des,
        password_hash,
        jid_node: node.clone(),
        jid_pwd: crypto::seal(&app.secrets.encryption_key, &node, &jid_pwd),
    };
    let id = account::reserve(app, new).await?;
    let reserved = account::Reserved {
        id,
        name: &name,
        node: &node,
        jid_pwd: &jid_pwd,
    };
    account::create_jid(app, &reserved).await?;
    Ok(Reply::done())
}

#[cfg(test)]
mod tests {
    use xmpp::LinkState;

    use super::run;
    use crate::cmd::testkit::{code, Kit};
    use crate::lifecycle::fake_port::{Fault, Op};
    use crate::store::AccountState;

    const DEVICE: &[(&str, &str)] = &[
        ("user_name", "lamp-1"),
        ("password", "password1"),
        ("type", "2"),
        ("device_type", "lamp"),
    ];

    async fn register_device(k: &Kit) -> i64 {
        code(&run(&k.app, &k.signed(DEVICE)).await)
    }

    #[tokio::test]
    async fn a_device_is_registered_with_its_jid() {
        let k = Kit::new().await;
        assert_eq!(register_device(&k).await, 0);
        let a = k.named("lamp-1").await.unwrap();
        assert_eq!(a.state, AccountState::Active);
        assert_eq!(
            k.xmpp.password_of(&a.jid_node),
            Some(k.app.jid_pwd(&a).unwrap())
        );
    }

    #[tokio::test]
    async fn a_phone_answers_a_captcha_which_expires_and_is_spent() {
        let k = Kit::new().await;
        let p = [
            ("user_name", "13800000000"),
            ("password", "password1"),
            ("type", "1"),
        ];
        assert_eq!(code(&run(&k.app, &k.call(&p)).await), 5, "no captcha");
        let c = k.human(&p).await;
        k.clock.advance(k.app.cfg.captcha.ttl_secs as i64);
        assert_eq!(code(&run(&k.app, &c).await), 5, "expired");
        let c = k.human(&p).await;
        k.clock.advance(k.app.cfg.captcha.ttl_secs as i64 - 1);
        assert_eq!(code(&run(&k.app, &c).await), 0);
        let mut c2 = c.clone();
        c2.params[0].1 = "13800000001".into();
        assert_eq!(code(&run(&k.app, &c2).await), 5, "a captcha is used once");
    }

    #[tokio::test]
    async fn bad_parameters_signature_and_taken_names_are_refused() {
        let k = Kit::new().await;
        assert_eq!(code(&run(&k.app, &k.signed(&DEVICE[..3])).await), 2);
        assert_eq!(code(&run(&k.app, &k.call(DEVICE)).await), 6, "unsigned");
        let mut bad = k.signed(DEVICE);
        bad.params.last_mut().unwrap().1 = "0".repeat(64);
        assert_eq!(code(&run(&k.app, &bad).await), 6, "wrong signature");
        assert_eq!(register_device(&k).await, 0);
        assert_eq!(register_device(&k).await, 103);
        assert_eq!(k.xmpp.calls(Op::Create), 1);
    }

    #[tokio::test]
    async fn a_refused_jid_leaves_nothing() {
        let k = Kit::new().await;
        // "Already exists" on the server is a refusal too.
        for fault in [Fault::Refused, Fault::Exists] {
            k.xmpp.fail_once(Op::Create, fault);
            assert_eq!(register_device(&k).await, 101);
            assert!(k.named("lamp-1").await.is_none());
        }
        assert_eq!(register_device(&k).await, 0);
    }

    #[tokio::test]
    async fn a_timeout_answers_9_and_deletes_the_jid_it_may_have_made() {
        let k = Kit::new().await;
        k.xmpp.fail_once(Op::Create, Fault::Timeout);
        assert_eq!(register_device(&k).await, 9);
        assert!(k.named("lamp-1").await.is_none());
        assert_eq!(k.xmpp.calls(Op::Delete), 1);
        // When the JID cannot be deleted either, the pending row stays for the reconciler.
        k.xmpp.fail_once(Op::Create, Fault::Timeout);
        k.xmpp.fail_once(Op::Delete, Fault::Timeout);
        assert_eq!(register_device(&k).await, 9);
        assert_eq!(
            k.named("lamp-1").await.unwrap().state,
            AccountState::Pending
        );
    }

    #[tokio::test]
    async fn a_full_hashing_queue_answers_112_and_writes_nothing() {
        let k = Kit::with(|c| c.security.hash_queue = 1).await;
        let held = k.app.hasher.permit().unwrap();
        assert_eq!(register_device(&k).await, 112);
        assert!(k.named("lamp-1").await.is_none());
        drop(held);
        assert_eq!(register_device(&k).await, 0);
    }

    #[tokio::test]
    async fn a_link_down_fails_fast_with_101_and_writes_nothing() {
        let k = Kit::new().await;
        k.xmpp.set_link(LinkState::Down);
        assert_eq!(register_device(&k).await, 101);
        assert!(k.named("lamp-1").await.is_none());
        assert_eq!(k.xmpp.calls(Op::Create), 0);
    }

    #[tokio::test]
    async fn a_registration_the_reconciler_claimed_is_undone() {
        let k = Kit::new().await;
        k.xmpp.fail_once(Op::Create, Fault::Hang);
        let app = &k.app;
        let call = k.signed(DEVICE);
        let reg = run(app, &call);
        let rec = async {
            k.xmpp.hung(1).await;
            let a = k.named("lamp-1").await.unwrap();
            assert!(crate::lifecycle::account::claim_pending(app, a.id)
                .await
                .unwrap());
            k.xmpp.release();
        };
        let (r, ()) = tokio::join!(reg, rec);
        assert_eq!(code(&r), 101);
        let a = k.named("lamp-1").await.unwrap();
        assert_eq!(a.state, AccountState::Deleting, "left to the reconciler");
        assert!(
            !k.xmpp.has_account(&a.jid_node),
            "its JID was deleted again"
        );
    }
}
