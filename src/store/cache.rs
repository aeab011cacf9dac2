//! An in-memory cache of live access tokens and active accounts in front of any [`Store`].
//!
//! Token checks are the hot path of every IM backend (`/verify_access_token`) and of every
//! token-based HTTPS call; `/get_users` then looks accounts up by name. A hit answers from memory
//! without touching SQLite or the blocking pool. The cache is a decorator: it forwards everything
//! to the inner store and drops an account's entries (its tokens and its name) after every change
//! to that account (state, cancel, delete), even when the caller stopped waiting, so revocation is
//! immediate and a cached account is always what the store holds, but for what only login reads
//! and the cache does not keep: the password hash and the login counters (see
//! [`Store::accounts_by_names`]). Expiry is checked on every hit.
//! Unknown tokens and names are not cached (a flood of random ones costs database reads, not
//! memory).
//! Each of the two maps holds at most `database.token_cache_entries` entries. For several
//! instances on one database the cache must stay off (each instance would miss the others'
//! changes).
//!
//! Each token entry also keeps the bytes the service's `/verify_access_token` reply is made of
//! (built on the first check from memory, see [`Store::token_reply_cached`]): a repeated token
//! check then costs a hash lookup and a copy, without building, signing or serializing a reply.
//! They go with the entry, so a revocation drops them too.
//!
//! An index from account id to its cached tokens and name makes forgetting an account cost the
//! size of its own entries, not a scan of the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::store::*;

/// [`Store`] decorator caching `token_account` and `accounts_by_names`.
pub struct TokenCache {
    inner: Arc<dyn Store>,
    /// The maps and the epoch, shared with the tasks that run account changes.
    shared: Arc<Shared>,
    /// Most entries in each map (`database.token_cache_entries`); past this the map starts over
    /// (cheap, and it refills from the store). Size it to the live tokens: a smaller cache
    /// thrashes.
    capacity: usize,
}

struct Shared {
    maps: RwLock<Maps>,
    /// Bumped by every change to an account: a lookup that raced one does not fill the cache.
    epoch: AtomicU64,
    /// Token lookups answered from memory, and those that went to the store (for metrics).
    hits: AtomicU64,
    misses: AtomicU64,
}

/// The cache as the metrics read it: its size and its token lookups.
#[derive(Clone)]
pub struct CacheProbe(Arc<Shared>);

impl CacheProbe {
    /// Tokens held.
    pub fn entries(&self) -> usize {
        self.0
            .maps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .tokens
            .len()
    }
    /// Token lookups so far: (answered from memory, sent to the store).
    pub fn lookups(&self) -> (u64, u64) {
        (
            self.0.hits.load(Ordering::Relaxed),
            self.0.misses.load(Ordering::Relaxed),
        )
    }
}

impl Shared {
    /// Called after every change to account `id`.
    fn forget(&self, id: i64) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.maps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .forget(id);
    }
}

#[derive(Default)]
struct Maps {
    tokens: HashMap<[u8; 32], Entry, DigestHash>,
    /// Active accounts by user name, as the store holds them but for the password hash.
    names: HashMap<String, Arc<Account>>,
    /// What is cached for an account id, to forget it without a scan; its account is the one
    /// its tokens and its name entry share.
    ids: HashMap<i64, Cached>,
}

struct Cached {
    account: Arc<Account>,
    tokens: Vec<[u8; 32]>,
    named: bool,
}

impl Maps {
    fn forget(&mut self, id: i64) {
        if let Some(c) = self.ids.remove(&id) {
            for t in &c.tokens {
                self.tokens.remove(t);
            }
            if c.named {
                self.names.remove(&c.account.user_name);
            }
        }
    }

    /// The cached copy of `a`, made once per account and shared by its tokens and its name. It
    /// keeps neither the password hash nor the login counters (`failed_logins`, `locked_until`):
    /// only login needs them, and it reads the store (`account_by_name`). So a login, failed or
    /// not, changes nothing cached; any other change to the account forgets it.
    fn shared(&mut self, a: &Account) -> &mut Cached {
        self.ids.entry(a.id).or_insert_with(|| Cached {
            account: Arc::new(Account {
                password_hash: String::new(),
                failed_logins: 0,
                locked_until: 0,
                ..a.clone()
            }),
            tokens: Vec::new(),
            named: false,
        })
    }

    fn clear(&mut self) {
        *self = Maps::default();
    }

    /// Empties the name map only (it is full): the tokens stay.
    fn clear_names(&mut self) {
        self.names.clear();
        for c in self.ids.values_mut() {
            c.named = false;
        }
        self.ids.retain(|_, c| !c.tokens.is_empty());
    }
}

/// A live token: its expiry, the reply bytes made for it on the first check from memory, and its
/// account (without the password hash, shared). A slot of the table stays small: a token check
/// from memory reads the key, the expiry and the reply, not the account.
struct Entry {
    expires_at: i64,
    reply: OnceLock<Box<[u8]>>,
    account: Arc<Account>,
}

/// The token map's hasher. Its keys are SHA-256 digests of tokens, already uniform, so folding
/// their bytes is the hash; and only tokens this service issued get in (unknown tokens are never
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
            shared: Arc::new(Shared {
                maps: RwLock::new(Maps::default()),
                epoch: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
            capacity,
        }
    }

    /// A handle for the metrics.
    pub fn probe(&self) -> CacheProbe {
        CacheProbe(self.shared.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.shared.maps.read().unwrap_or_else(|e| e.into_inner())
    }

    fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::SeqCst)
    }

    /// The maps for a fill, unless a change ran since `epoch` was read (the value read from the
    /// store may predate it, so it must not be cached).
    fn fill(&self, epoch: u64) -> Option<std::sync::RwLockWriteGuard<'_, Maps>> {
        let m = self.shared.maps.write().unwrap_or_else(|e| e.into_inner());
        (self.epoch() == epoch).then_some(m)
    }

    /// Runs `change`, a change to account `id` on the inner store, then forgets the account, in a
    /// task of its own: a caller that stops waiting (a client that hung up) cannot leave a change
    /// committed and the account still cached. The forget comes after the change, so a lookup
    /// that read the old row meanwhile does not fill the cache (the epoch moved).
    async fn change<T, F, Fut>(&self, id: i64, change: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>> + Send + 'static,
    {
        let shared = self.shared.clone();
        let fut = change(self.inner.clone());
        tokio::spawn(async move {
            let r = fut.await;
            shared.forget(id);
            r
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task: {e}")))?
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
        self.change(id, move |s| async move {
            s.set_account_state(id, state, now).await
        })
        .await
    }
    async fn transition_account(
        &self,
        id: i64,
        from: AccountState,
        to: AccountState,
        now: i64,
    ) -> StoreResult<bool> {
        self.change(id, move |s| async move {
            s.transition_account(id, from, to, now).await
        })
        .await
    }
    async fn delete_account(&self, id: i64) -> StoreResult<()> {
        self.change(id, move |s| async move { s.delete_account(id).await })
            .await
    }
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>> {
        self.inner.account_by_name(name).await
    }
    async fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>> {
        self.inner.account_by_id(id).await
    }
    async fn accounts_by_names(&self, names: &[String]) -> StoreResult<Vec<Arc<Account>>> {
        let (mut found, missing) = {
            let m = self.read();
            let mut found = Vec::with_capacity(names.len());
            let mut missing = Vec::new();
            for n in names {
                match m.names.get(n) {
                    Some(a) => found.push(a.clone()),
                    None => missing.push(n.clone()),
                }
            }
            (found, missing)
        };
        if missing.is_empty() {
            return Ok(found);
        }
        let epoch = self.epoch();
        let more = self.inner.accounts_by_names(&missing).await?;
        if let Some(mut m) = self.fill(epoch) {
            for a in more.iter().filter(|a| a.state == AccountState::Active) {
                if m.names.len() >= self.capacity {
                    m.clear_names();
                }
                let cached = m.shared(a);
                cached.named = true;
                let account = cached.account.clone();
                m.names.insert(a.user_name.clone(), account);
            }
        }
        found.extend(more);
        Ok(found)
    }
    async fn accounts_by_nodes(&self, nodes: &[String]) -> StoreResult<Vec<Account>> {
        self.inner.accounts_by_nodes(nodes).await
    }
    async fn list_accounts(&self, after_id: i64, limit: u32) -> StoreResult<Vec<Account>> {
        self.inner.list_accounts(after_id, limit).await
    }
    async fn claim_login_attempt(
        &self,
        id: i64,
        network: String,
        now: i64,
        policy: LockPolicy,
    ) -> StoreResult<bool> {
        // The cached account keeps no login counters (see `Maps::shared`): nothing to forget.
        self.inner
            .claim_login_attempt(id, network, now, policy)
            .await
    }
    async fn locked_networks(&self, id: i64, now: i64) -> StoreResult<Vec<(String, i64)>> {
        self.inner.locked_networks(id, now).await
    }
    async fn reset_login_failures(&self, id: i64, network: String) -> StoreResult<()> {
        self.inner.reset_login_failures(id, network).await
    }
    async fn begin_cancel(&self, id: i64, now: i64) -> StoreResult<bool> {
        self.change(id, move |s| async move { s.begin_cancel(id, now).await })
            .await
    }
    async fn revoke_token(&self, id: i64, hash: Vec<u8>) -> StoreResult<bool> {
        self.change(id, move |s| async move { s.revoke_token(id, hash).await })
            .await
    }
    async fn revoke_tokens(&self, id: i64) -> StoreResult<u64> {
        self.change(id, move |s| async move { s.revoke_tokens(id).await })
            .await
    }
    async fn set_password(&self, id: i64, password_hash: String, now: i64) -> StoreResult<bool> {
        self.change(id, move |s| async move {
            s.set_password(id, password_hash, now).await
        })
        .await
    }
    async fn trim_tokens(&self, id: i64, newest: Vec<u8>, keep: u32) -> StoreResult<u64> {
        // Forgets the account only when a token was revoked (or the outcome is unknown), so an
        // ordinary login leaves the cache alone; in a task of its own, as `change` does.
        let (shared, inner) = (self.shared.clone(), self.inner.clone());
        tokio::spawn(async move {
            let r = inner.trim_tokens(id, newest, keep).await;
            if !matches!(r, Ok(0)) {
                shared.forget(id);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Db(format!("store task: {e}")))?
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
    async fn token_account(
        &self,
        hash: Vec<u8>,
        now: i64,
    ) -> StoreResult<Option<(Arc<Account>, i64)>> {
        if let Some(e) = self.read().tokens.get(hash.as_slice()) {
            if e.expires_at > now {
                self.shared.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some((e.account.clone(), e.expires_at)));
            }
        }
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        let epoch = self.epoch();
        let found = self.inner.token_account(hash.clone(), now).await?;
        if let (Some((a, exp)), Ok(key)) = (&found, <[u8; 32]>::try_from(hash.as_slice())) {
            if let Some(mut m) = self.fill(epoch) {
                if m.tokens.len() >= self.capacity {
                    m.clear();
                }
                // Token holders never need the password hash: it is not kept in memory.
                let account = m.shared(a).account.clone();
                let entry = Entry {
                    expires_at: *exp,
                    reply: OnceLock::new(),
                    account,
                };
                if m.tokens.insert(key, entry).is_none() {
                    m.shared(a).tokens.push(key);
                }
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
        match self.read().tokens.get(hash) {
            Some(e) if e.expires_at > now => {
                self.shared.hits.fetch_add(1, Ordering::Relaxed);
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
        {
            let mut guard = self.shared.maps.write().unwrap_or_else(|e| e.into_inner());
            let m = &mut *guard;
            m.tokens.retain(|_, e| e.expires_at > now);
            let tokens = &m.tokens;
            for c in m.ids.values_mut() {
                c.tokens.retain(|t| tokens.contains_key(t));
            }
            m.ids.retain(|_, c| !c.tokens.is_empty() || c.named);
        }
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
    async fn insert_bind_token(
        &self,
        hash: Vec<u8>,
        issuer: i64,
        device: Option<i64>,
        expires_at: i64,
        now: i64,
        keep: u32,
    ) -> StoreResult<()> {
        self.inner
            .insert_bind_token(hash, issuer, device, expires_at, now, keep)
            .await
    }
    async fn insert_binding_capped(
        &self,
        a: i64,
        b: i64,
        now: i64,
        caps: PairCaps,
    ) -> StoreResult<bool> {
        self.inner.insert_binding_capped(a, b, now, caps).await
    }
    async fn bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>> {
        self.inner.bind_token(hash, now).await
    }
    async fn take_bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>> {
        self.inner.take_bind_token(hash, now).await
    }
    async fn bind_failures(&self, account: i64, since: i64) -> StoreResult<u32> {
        self.inner.bind_failures(account, since).await
    }
    async fn record_bind_failure(&self, account: i64, now: i64, since: i64) -> StoreResult<u32> {
        self.inner.record_bind_failure(account, now, since).await
    }
    async fn void_bind_tokens(&self, account: i64) -> StoreResult<u64> {
        self.inner.void_bind_tokens(account).await
    }
    async fn forget_bind_failure(&self, account: i64, at: i64) -> StoreResult<()> {
        self.inner.forget_bind_failure(account, at).await
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

    /// A cache of `capacity` entries in front of a fresh SQLite store (keep the directory).
    fn cache(capacity: usize) -> (tempfile::TempDir, TokenCache) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        (dir, TokenCache::new(Arc::new(store), capacity))
    }

    /// A phone account `name` (JID node `n-{name}`), as registration first writes it.
    fn phone(name: &str) -> NewAccount {
        NewAccount {
            user_name: name.into(),
            kind: AccountType::Phone,
            device_type: None,
            des: String::new(),
            password_hash: "h".into(),
            jid_node: format!("n-{name}"),
            jid_pwd: vec![1],
        }
    }

    /// An active phone account `name`: its id.
    async fn active(c: &TokenCache, name: &str) -> i64 {
        let id = c.insert_pending_account(phone(name), 1).await.unwrap();
        c.set_account_state(id, AccountState::Active, 1)
            .await
            .unwrap();
        id
    }

    #[tokio::test]
    async fn hits_expire_and_revocation_is_immediate() {
        let (_dir, c) = cache(10);
        let id = active(&c, "a").await;
        c.insert_token(vec![7; 32], id, 100, 1).await.unwrap();
        assert!(c.token_account(vec![7; 32], 10).await.unwrap().is_some());
        assert_eq!(c.shared.maps.read().unwrap().tokens.len(), 1, "cached");
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
            c.shared.maps.read().unwrap().tokens.is_empty(),
            "unknown tokens are not cached"
        );
    }

    #[tokio::test]
    async fn logout_password_change_and_revoke_drop_cached_tokens_at_once() {
        let (_dir, c) = cache(10);
        let id = active(&c, "a").await;
        let make = |a: &Account, exp: i64| format!("{}:{exp}", a.user_name).into_bytes();
        let cached = |t: u8| {
            let mut out = Vec::new();
            c.token_reply_cached(&[t; 32], 10, &make, &mut out)
        };
        for t in [1u8, 2, 3] {
            c.insert_token(vec![t; 32], id, 100, 1).await.unwrap();
            assert!(c.token_account(vec![t; 32], 10).await.unwrap().is_some());
            assert!(cached(t), "cached");
        }
        // Logout: the token used goes, from memory too; the others stay valid.
        assert!(c.revoke_token(id, vec![1; 32]).await.unwrap());
        assert!(!c.revoke_token(id, vec![1; 32]).await.unwrap(), "gone");
        assert!(!cached(1));
        assert!(c.token_account(vec![1; 32], 10).await.unwrap().is_none());
        assert!(c.token_account(vec![2; 32], 10).await.unwrap().is_some());
        assert!(cached(2));
        // A password change: the new hash is stored and every token goes.
        assert!(c.set_password(id, "new-hash".into(), 11).await.unwrap());
        assert!(!cached(2) && !cached(3));
        assert!(c.token_account(vec![2; 32], 12).await.unwrap().is_none());
        assert!(c.token_account(vec![3; 32], 12).await.unwrap().is_none());
        let a = c.account_by_id(id).await.unwrap().unwrap();
        assert_eq!(a.password_hash, "new-hash");
        // The operator's revoke.
        c.insert_token(vec![4; 32], id, 100, 12).await.unwrap();
        assert!(c.token_account(vec![4; 32], 12).await.unwrap().is_some());
        assert_eq!(c.revoke_tokens(id).await.unwrap(), 1);
        assert!(c.token_account(vec![4; 32], 12).await.unwrap().is_none());
        // No password change for an account that is not active.
        assert!(c.begin_cancel(id, 13).await.unwrap());
        assert!(!c.set_password(id, "other".into(), 14).await.unwrap());
        let a = c.account_by_id(id).await.unwrap().unwrap();
        assert_eq!(a.password_hash, "new-hash");
    }

    #[tokio::test]
    async fn active_accounts_by_name_stay_what_the_store_holds() {
        let (_dir, c) = cache(10);
        let a = active(&c, "a").await;
        let b = c.insert_pending_account(phone("b"), 1).await.unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got = c.accounts_by_names(&names(&["a", "b", "x"])).await.unwrap();
        assert_eq!(got.len(), 2, "a (active) and b (pending)");
        let cached = |n: &str| c.shared.maps.read().unwrap().names.contains_key(n);
        assert!(
            cached("a") && !cached("b") && !cached("x"),
            "only active ones"
        );
        // Logins change only what the cache does not keep (the counters, the hash).
        let policy = LockPolicy {
            per_network: 5,
            per_account: 50,
            lock_secs: 60,
        };
        assert!(c
            .claim_login_attempt(a, "192.0.2.1".into(), 2, policy)
            .await
            .unwrap());
        assert!(cached("a"), "a failed login leaves the cache alone");
        let again = c.accounts_by_names(&names(&["a"])).await.unwrap();
        assert_eq!(again[0].failed_logins, 0, "counters not kept in memory");
        assert_eq!(again[0].password_hash, "", "not kept in memory");
        assert_eq!(
            c.account_by_name("a").await.unwrap().unwrap().failed_logins,
            1,
            "login reads the store"
        );
        // Any other change drops the account; the next read sees the store's value.
        c.set_account_state(a, AccountState::Active, 2)
            .await
            .unwrap();
        assert!(!cached("a"));
        c.accounts_by_names(&names(&["a"])).await.unwrap();
        assert!(cached("a"));
        c.insert_token(vec![7; 32], a, 100, 1).await.unwrap();
        assert!(c.token_account(vec![7; 32], 10).await.unwrap().is_some());
        c.set_account_state(b, AccountState::Active, 3)
            .await
            .unwrap();
        assert!(cached("a"), "another account's change leaves a alone");
        c.delete_account(a).await.unwrap();
        assert!(!cached("a"));
        assert!(c.shared.maps.read().unwrap().tokens.is_empty());
        assert!(
            c.shared.maps.read().unwrap().ids.is_empty(),
            "index emptied with them"
        );
        assert!(c
            .accounts_by_names(&names(&["a"]))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_change_whose_caller_gives_up_still_drops_the_account() {
        let (_dir, c) = cache(10);
        let id = active(&c, "a").await;
        c.insert_token(vec![7; 32], id, 100, 1).await.unwrap();
        assert!(c.token_account(vec![7; 32], 10).await.unwrap().is_some());
        // The caller stops waiting at once (a client that hung up): the cancel still happens, and
        // the token is no longer answered from memory.
        use futures::FutureExt;
        let answer = c.begin_cancel(id, 11).now_or_never(); // polled once, then dropped
        assert!(answer.is_none(), "the caller gave up before the answer");
        for _ in 0..100 {
            if c.shared.maps.read().unwrap().tokens.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(c.shared.maps.read().unwrap().tokens.is_empty());
        assert!(c.token_account(vec![7; 32], 12).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_full_name_map_starts_over_without_dropping_tokens() {
        let (_dir, c) = cache(2);
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let id = active(&c, name).await;
            if i == 0 {
                c.insert_token(vec![7; 32], id, 100, 1).await.unwrap();
                c.token_account(vec![7; 32], 10).await.unwrap().unwrap();
            }
        }
        c.accounts_by_names(&["a".into(), "b".into()])
            .await
            .unwrap();
        c.accounts_by_names(&["c".into()]).await.unwrap();
        let m = c.shared.maps.read().unwrap();
        assert_eq!(m.names.len(), 1, "the name map started over");
        assert!(m.names.contains_key("c"));
        assert_eq!(m.tokens.len(), 1, "the token stayed");
        assert_eq!(m.ids.len(), 2, "index: a (its token) and c (its name)");
    }
}
