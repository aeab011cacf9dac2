//! An in-memory cache of live access tokens in front of any [`Store`].
//!
//! Token checks are the hot path of every IM backend (`/verify_access_token`) and of every
//! token-based HTTPS call. A hit answers from memory without touching SQLite or the blocking pool.
//! The cache is a decorator: it forwards everything to the inner store and drops an account's
//! entries whenever that account stops being active (cancel, delete, state change), so revocation
//! is immediate. Expiry is checked on every hit. Unknown tokens are not cached (a flood of random
//! tokens costs database reads, not memory). A cached account carries no password hash (nothing
//! that holds a token needs it); its size is `database.token_cache_entries`. For several instances
//! on one database the cache must stay off (each instance would miss the others' revocations).
//!
//! Each entry also keeps the bytes the service's `/verify_access_token` reply is made of (built on
//! the first check from memory, see [`Store::token_reply_cached`]): a repeated token check then
//! costs a hash lookup and a copy, without building, signing or serializing a reply. They go with
//! the entry, so a revocation drops them too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::store::*;

/// [`Store`] decorator caching `token_account`.
pub struct TokenCache {
    inner: Arc<dyn Store>,
    map: RwLock<HashMap<[u8; 32], Entry, DigestHash>>,
    /// Most entries (`database.token_cache_entries`); past this the cache starts over (cheap, and
    /// it refills from the store). Size it to the live tokens: a smaller cache thrashes.
    capacity: usize,
    /// Bumped by every revocation: a lookup that raced one does not fill the cache.
    epoch: AtomicU64,
}

/// A live token: its expiry, the reply bytes made for it on the first check from memory, and its
/// account (without the password hash). The account is boxed so that a slot of the table stays
/// small: a token check from memory reads the key, the expiry and the reply, not the account.
struct Entry {
    expires_at: i64,
    reply: OnceLock<Box<[u8]>>,
    account: Box<Account>,
}

/// The map's hasher. Its keys are SHA-256 digests of tokens, already uniform, so their first eight
/// bytes are the hash; and only tokens this service issued get in (unknown tokens are never
/// cached), so nobody can choose keys that collide.
#[derive(Clone, Copy, Default)]
struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 32]` key writes its length, then its 32 bytes: all of them are folded in.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

impl TokenCache {
    pub fn new(inner: Arc<dyn Store>, capacity: usize) -> TokenCache {
        TokenCache {
            inner,
            map: RwLock::new(HashMap::default()),
            capacity,
            epoch: AtomicU64::new(0),
        }
    }

    fn forget_account(&self, id: i64) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| e.account.id != id);
    }
}

#[async_trait::async_trait]
impl Store for TokenCache {
    // Everything but token lookups and the account changes that revoke tokens is forwarded.
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn insert_pending_account(&self, new: NewAccount, now: i64) -> StoreResult<i64> {
        self.inner.insert_pending_account(new, now).await
    }
    async fn set_account_state(&self, id: i64, state: AccountState, now: i64) -> StoreResult<()> {
        let r = self.inner.set_account_state(id, state, now).await;
        self.forget_account(id);
        r
    }
    async fn transition_account(
        &self,
        id: i64,
        from: AccountState,
        to: AccountState,
        now: i64,
    ) -> StoreResult<bool> {
        let r = self.inner.transition_account(id, from, to, now).await;
        self.forget_account(id);
        r
    }
    async fn delete_account(&self, id: i64) -> StoreResult<()> {
        let r = self.inner.delete_account(id).await;
        self.forget_account(id);
        r
    }
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        self.inner.account_by_name(name).await
    }
    async fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>> {
        self.inner.account_by_id(id).await
    }
    async fn accounts_by_names(&self, names: &[String]) -> StoreResult<Vec<Account>> {
        self.inner.accounts_by_names(names).await
    }
    async fn accounts_by_nodes(&self, nodes: &[String]) -> StoreResult<Vec<Account>> {
        self.inner.accounts_by_nodes(nodes).await
    }
    async fn list_accounts(&self, after_id: i64, limit: u32) -> StoreResult<Vec<Account>> {
        self.inner.list_accounts(after_id, limit).await
    }
    async fn record_login_failure(
        &self,
        id: i64,
        now: i64,
        threshold: u32,
        lock_secs: i64,
    ) -> StoreResult<()> {
        self.inner
            .record_login_failure(id, now, threshold, lock_secs)
            .await
    }
    async fn reset_login_failures(&self, id: i64) -> StoreResult<()> {
        self.inner.reset_login_failures(id).await
    }
    async fn begin_cancel(&self, id: i64, now: i64) -> StoreResult<bool> {
        let r = self.inner.begin_cancel(id, now).await;
        self.forget_account(id);
        r
    }
    async fn insert_token(
        &self,
        hash: Vec<u8>,
        account_id: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        self.inner
            .insert_token(hash, account_id, expires_at, now)
            .await
    }
    async fn token_account(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<(Account, i64)>> {
        if let Some(e) = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash.as_slice())
        {
            if e.expires_at > now {
                return Ok(Some((Account::clone(&e.account), e.expires_at)));
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let found = self.inner.token_account(hash.clone(), now).await?;
        if let Some((a, exp)) = &found {
            let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
            if self.epoch.load(Ordering::SeqCst) != epoch {
                return Ok(found); // a revocation ran meanwhile: do not cache what it may have undone
            }
            if m.len() >= self.capacity {
                m.clear();
            }
            if let Ok(key) = <[u8; 32]>::try_from(hash.as_slice()) {
                // Token holders never need the password hash: it is not kept in memory.
                let account = Box::new(Account {
                    password_hash: String::new(),
                    ..a.clone()
                });
                m.insert(
                    key,
                    Entry {
                        account,
                        expires_at: *exp,
                        reply: OnceLock::new(),
                    },
                );
            }
        }
        Ok(found)
    }
    fn token_reply_cached(
        &self,
        hash: &[u8; 32],
        now: i64,
        make: &dyn Fn(&Account, i64) -> Vec<u8>,
        out: &mut Vec<u8>,
    ) -> bool {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(hash) {
            Some(e) if e.expires_at > now => {
                let reply = e
                    .reply
                    .get_or_init(|| make(&e.account, e.expires_at).into_boxed_slice());
                out.extend_from_slice(reply);
                true
            }
            _ => false,
        }
    }
    async fn insert_captcha(&self, id: String, answer: String, expires_at: i64) -> StoreResult<()> {
        self.inner.insert_captcha(id, answer, expires_at).await
    }
    async fn take_captcha(&self, id: String) -> StoreResult<Option<(String, i64)>> {
        self.inner.take_captcha(id).await
    }
    async fn prune(&self, now: i64) -> StoreResult<()> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| e.expires_at > now);
        self.inner.prune(now).await
    }
    async fn insert_binding(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()> {
        self.inner.insert_binding(a, b, state, now).await
    }
    async fn set_binding_state(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()> {
        self.inner.set_binding_state(a, b, state, now).await
    }
    async fn delete_binding(&self, a: i64, b: i64) -> StoreResult<()> {
        self.inner.delete_binding(a, b).await
    }
    async fn transition_binding(
        &self,
        a: i64,
        b: i64,
        from: BindingState,
        to: BindingState,
        now: i64,
    ) -> StoreResult<bool> {
        self.inner.transition_binding(a, b, from, to, now).await
    }
    async fn delete_binding_in(&self, a: i64, b: i64, state: BindingState) -> StoreResult<bool> {
        self.inner.delete_binding_in(a, b, state).await
    }
    async fn binding(&self, a: i64, b: i64) -> StoreResult<Option<Binding>> {
        self.inner.binding(a, b).await
    }
    async fn bindings_of(&self, id: i64) -> StoreResult<Vec<Binding>> {
        self.inner.bindings_of(id).await
    }
    async fn unfinished(&self, before: i64) -> StoreResult<(Vec<Account>, Vec<Binding>)> {
        self.inner.unfinished(before).await
    }
    async fn try_lock_reconciler(&self) -> StoreResult<bool> {
        self.inner.try_lock_reconciler().await
    }
    async fn unlock_reconciler(&self) -> StoreResult<()> {
        self.inner.unlock_reconciler().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::types::AccountType;

    #[tokio::test]
    async fn hits_expire_and_revocation_is_immediate() {
        let dir = tempfile::tempdir().unwrap();
        let c = TokenCache::new(
            Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap()),
            10,
        );
        let new = NewAccount {
            user_name: "a".into(),
            kind: AccountType::Phone,
            device_type: None,
            des: String::new(),
            password_hash: "h".into(),
            jid_node: "n".into(),
            jid_pwd: vec![1],
        };
        let id = c.insert_pending_account(new, 1).await.unwrap();
        c.set_account_state(id, AccountState::Active, 1)
            .await
            .unwrap();
        c.insert_token(vec![7; 32], id, 100, 1).await.unwrap();
        assert!(c.token_account(vec![7; 32], 10).await.unwrap().is_some());
        assert_eq!(c.map.read().unwrap().len(), 1, "cached");
        assert!(
            c.token_account(vec![7; 32], 100).await.unwrap().is_none(),
            "expired"
        );
        assert!(c.token_account(vec![7; 32], 10).await.unwrap().is_some());
        // The reply kept with the token: made once, then copied; none for an expired token.
        let made = std::sync::atomic::AtomicUsize::new(0);
        let make = |a: &Account, exp: i64| {
            made.fetch_add(1, Ordering::SeqCst);
            format!("{}:{exp}", a.user_name).into_bytes()
        };
        let mut out = b">".to_vec();
        assert!(c.token_reply_cached(&[7; 32], 10, &make, &mut out));
        assert!(c.token_reply_cached(&[7; 32], 10, &make, &mut out));
        assert_eq!(out, b">a:100a:100");
        assert_eq!(made.load(Ordering::SeqCst), 1, "made once");
        assert!(
            !c.token_reply_cached(&[7; 32], 100, &make, &mut out),
            "expired"
        );
        assert!(
            !c.token_reply_cached(&[8; 32], 10, &make, &mut out),
            "unknown"
        );
        assert_eq!(out, b">a:100a:100", "untouched when not answered");
        assert!(c.begin_cancel(id, 11).await.unwrap());
        assert!(
            !c.token_reply_cached(&[7; 32], 12, &make, &mut out),
            "revoked with its entry"
        );
        assert!(
            c.token_account(vec![7; 32], 12).await.unwrap().is_none(),
            "revoked at once"
        );
        assert!(c.token_account(vec![8; 32], 12).await.unwrap().is_none());
        assert!(
            c.map.read().unwrap().is_empty(),
            "unknown tokens are not cached"
        );
    }
}
