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

#[async_trait::async_trait]
impl<T: Delegate> AccountStore for T {
    async fn insert_pending_account(&self, new: NewAccount, now: i64) -> StoreResult<i64> {
        self.inner().insert_pending_account(new, now).await
    }
    async fn set_account_state(&self, id: i64, state: AccountState, now: i64) -> StoreResult<()> {
        self.inner().set_account_state(id, state, now).await
    }
    async fn transition_account(
        &self,
        id: i64,
        from: AccountState,
        to: AccountState,
        now: i64,
    ) -> StoreResult<bool> {
        self.inner().transition_account(id, from, to, now).await
    }
    async fn delete_account(&self, id: i64) -> StoreResult<()> {
        self.inner().delete_account(id).await
    }
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        self.inner().account_by_name(name).await
    }
    async fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>> {
        self.inner().account_by_id(id).await
    }
    async fn accounts_by_nodes(&self, nodes: &[String]) -> StoreResult<Vec<Account>> {
        self.inner().accounts_by_nodes(nodes).await
    }
    async fn list_accounts(&self, after_id: i64, limit: u32) -> StoreResult<Vec<Account>> {
        self.inner().list_accounts(after_id, limit).await
    }
    async fn begin_cancel(&self, id: i64, now: i64) -> StoreResult<bool> {
        self.inner().begin_cancel(id, now).await
    }
    async fn set_password(&self, id: i64, password_hash: String, now: i64) -> StoreResult<bool> {
        self.inner().set_password(id, password_hash, now).await
    }
}

#[async_trait::async_trait]
impl<T: Delegate> LoginStore for T {
    async fn claim_login_attempt(
        &self,
        id: i64,
        network: String,
        now: i64,
        policy: LockPolicy,
    ) -> StoreResult<bool> {
        self.inner()
            .claim_login_attempt(id, network, now, policy)
            .await
    }
    async fn locked_networks(&self, id: i64, now: i64) -> StoreResult<Vec<(String, i64)>> {
        self.inner().locked_networks(id, now).await
    }
    async fn reset_login_failures(&self, id: i64, network: String) -> StoreResult<()> {
        self.inner().reset_login_failures(id, network).await
    }
}

#[async_trait::async_trait]
impl<T: Delegate> TokenStore for T {
    async fn revoke_token(&self, id: i64, hash: Vec<u8>) -> StoreResult<bool> {
        self.inner().revoke_token(id, hash).await
    }
    async fn revoke_tokens(&self, id: i64) -> StoreResult<u64> {
        self.inner().revoke_tokens(id).await
    }
    async fn trim_tokens(&self, id: i64, newest: Vec<u8>, keep: u32) -> StoreResult<u64> {
        self.inner().trim_tokens(id, newest, keep).await
    }
    async fn insert_token(
        &self,
        hash: Vec<u8>,
        account_id: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.inner()
            .insert_token(hash, account_id, expires_at, now)
            .await
    }
}

#[async_trait::async_trait]
impl<T: Delegate> PairStore for T {
    async fn insert_binding(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()> {
        self.inner().insert_binding(a, b, state, now).await
    }
    async fn insert_binding_capped(
        &self,
        a: i64,
        b: i64,
        now: i64,
        caps: PairCaps,
    ) -> StoreResult<bool> {
        self.inner().insert_binding_capped(a, b, now, caps).await
    }
    async fn set_binding_state(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()> {
        self.inner().set_binding_state(a, b, state, now).await
    }
    async fn delete_binding(&self, a: i64, b: i64) -> StoreResult<()> {
        self.inner().delete_binding(a, b).await
    }
    async fn transition_binding(
        &self,
        a: i64,
        b: i64,
        from: BindingState,
        to: BindingState,
        now: i64,
    ) -> StoreResult<bool> {
        self.inner().transition_binding(a, b, from, to, now).await
    }
    async fn delete_binding_in(&self, a: i64, b: i64, state: BindingState) -> StoreResult<bool> {
        self.inner().delete_binding_in(a, b, state).await
    }
    async fn binding(&self, a: i64, b: i64) -> StoreResult<Option<Binding>> {
        self.inner().binding(a, b).await
    }
}

#[async_trait::async_trait]
impl<T: Delegate> BindTokenStore for T {
    async fn insert_bind_token(
        &self,
        hash: Vec<u8>,
        issuer: i64,
        device: Option<i64>,
        expires_at: i64,
        now: i64,
        keep: u32,
    ) -> StoreResult<()> {
        self.inner()
            .insert_bind_token(hash, issuer, device, expires_at, now, keep)
            .await
    }
    async fn bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>> {
        self.inner().bind_token(hash, now).await
    }
    async fn take_bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>> {
        self.inner().take_bind_token(hash, now).await
    }
    async fn bind_failures(&self, account: i64, since: i64) -> StoreResult<u32> {
        self.inner().bind_failures(account, since).await
    }
    async fn record_bind_failure(&self, account: i64, now: i64, since: i64) -> StoreResult<u32> {
        self.inner().record_bind_failure(account, now, since).await
    }
    async fn void_bind_tokens(&self, account: i64) -> StoreResult<u64> {
        self.inner().void_bind_tokens(account).await
    }
    async fn forget_bind_failure(&self, account: i64, at: i64) -> StoreResult<()> {
        self.inner().forget_bind_failure(account, at).await
    }
}

#[async_trait::async_trait]
impl<T: Delegate> CaptchaStore for T {
    async fn insert_captcha(&self, id: String, answer: String, expires_at: i64) -> StoreResult<()> {
        self.inner().insert_captcha(id, answer, expires_at).await
    }
    async fn take_captcha(&self, id: String) -> StoreResult<Option<(String, i64)>> {
        self.inner().take_captcha(id).await
    }
}

#[async_trait::async_trait]
impl<T: Delegate> ReconcileStore for T {
    async fn unfinished(&self, before: i64) -> StoreResult<(Vec<Account>, Vec<Binding>)> {
        self.inner().unfinished(before).await
    }
    async fn try_lock_reconciler(&self) -> StoreResult<bool> {
        self.inner().try_lock_reconciler().await
    }
    async fn unlock_reconciler(&self) -> StoreResult<()> {
        self.inner().unlock_reconciler().await
    }
}
