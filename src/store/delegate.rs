//! Forwarding for store decorators: a type that implements [`Delegate`] gets every narrow store
//! trait but [`Lookups`] by forwarding to the store it wraps, and implements [`Lookups`] itself.
//! So a decorator is written for what it changes only (the token cache: the lookups it answers
//! from memory), and a method added to a store trait is forwarded without anyone writing it again.
//! Writes in particular pass through untouched: a cache learns of them from the store's
//! [`ChangeFeed`], not by intercepting them.

use super::*;

/// A store decorator: the store it wraps.
pub trait Delegate: Send + Sync + 'static {
    fn inner(&self) -> &dyn Store;
}

/// `forward! { Trait { fn name(arg: Type, …) -> Ret; … } }`: implement `Trait` for every
/// [`Delegate`] by awaiting the same method of the wrapped store. A method is listed once, on
/// one line.
macro_rules! forward {
    ($($trait:ident { $(async fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* })*) => {
        $(
            #[async_trait::async_trait]
            impl<T: Delegate> $trait for T {
                $(
                    async fn $name(&self, $($arg: $ty),*) -> $ret {
                        self.inner().$name($($arg),*).await
                    }
                )*
            }
        )*
    };
}

#[async_trait::async_trait]
impl<T: Delegate> Maintenance for T {
    async fn ping(&self) -> StoreResult<()> {
        self.inner().ping().await
    }
    async fn prune(&self, now: i64) -> StoreResult<()> {
        self.inner().prune(now).await
    }
    fn change_feed(&self) -> Arc<ChangeFeed> {
        self.inner().change_feed()
    }
}

#[rustfmt::skip]
forward! {
    AccountStore {
        async fn insert_pending_account(new: NewAccount, now: i64) -> StoreResult<i64>;
        async fn set_account_state(id: i64, state: AccountState, now: i64) -> StoreResult<()>;
        async fn transition_account(id: i64, from: AccountState, to: AccountState, now: i64) -> StoreResult<bool>;
        async fn delete_account(id: i64) -> StoreResult<()>;
        async fn account_by_name(name: &str) -> StoreResult<Option<Account>>;
        async fn account_by_id(id: i64) -> StoreResult<Option<Account>>;
        async fn accounts_by_nodes(nodes: &[String]) -> StoreResult<Vec<Account>>;
        async fn list_accounts(after_id: i64, limit: u32) -> StoreResult<Vec<Account>>;
        async fn begin_cancel(id: i64, now: i64) -> StoreResult<bool>;
        async fn set_password(id: i64, password_hash: String, now: i64) -> StoreResult<bool>;
    }
    LoginStore {
        async fn claim_login_attempt(id: i64, network: String, now: i64, policy: LockPolicy) -> StoreResult<bool>;
        async fn locked_networks(id: i64, now: i64) -> StoreResult<Vec<(String, i64)>>;
        async fn reset_login_failures(id: i64, network: String) -> StoreResult<()>;
    }
    TokenStore {
        async fn revoke_token(id: i64, hash: Vec<u8>) -> StoreResult<bool>;
        async fn revoke_tokens(id: i64) -> StoreResult<u64>;
        async fn trim_tokens(id: i64, newest: Vec<u8>, keep: u32) -> StoreResult<u64>;
        async fn insert_token(hash: Vec<u8>, account_id: i64, expires_at: i64, now: i64) -> StoreResult<()>;
    }
    PairStore {
        async fn bindings_of(id: i64) -> StoreResult<Vec<Binding>>;
        async fn insert_binding(a: i64, b: i64, state: BindingState, now: i64) -> StoreResult<()>;
        async fn insert_binding_capped(a: i64, b: i64, now: i64, caps: PairCaps) -> StoreResult<bool>;
        async fn set_binding_state(a: i64, b: i64, state: BindingState, now: i64) -> StoreResult<()>;
        async fn delete_binding(a: i64, b: i64) -> StoreResult<()>;
        async fn transition_binding(a: i64, b: i64, from: BindingState, to: BindingState, now: i64) -> StoreResult<bool>;
        async fn delete_binding_in(a: i64, b: i64, state: BindingState) -> StoreResult<bool>;
        async fn binding(a: i64, b: i64) -> StoreResult<Option<Binding>>;
    }
    BindTokenStore {
        async fn insert_bind_token(hash: Vec<u8>, issuer: i64, device: Option<i64>, expires_at: i64, now: i64, keep: u32) -> StoreResult<()>;
        async fn bind_token(hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>>;
        async fn take_bind_token(hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>>;
        async fn bind_failures(account: i64, since: i64) -> StoreResult<u32>;
        async fn record_bind_failure(account: i64, now: i64, since: i64) -> StoreResult<u32>;
        async fn void_bind_tokens(account: i64) -> StoreResult<u64>;
        async fn forget_bind_failure(account: i64, at: i64) -> StoreResult<()>;
    }
    CaptchaStore {
        async fn insert_captcha(id: String, answer: String, expires_at: i64) -> StoreResult<()>;
        async fn take_captcha(id: String) -> StoreResult<Option<(String, i64)>>;
    }
    ReconcileStore {
        async fn unfinished(before: i64) -> StoreResult<(Vec<Account>, Vec<Binding>)>;
        async fn try_lock_reconciler() -> StoreResult<bool>;
        async fn unlock_reconciler() -> StoreResult<()>;
    }
}
