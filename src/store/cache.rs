//! An in-memory cache of live access tokens and active accounts in front of any [`Store`].
//!
//! Token checks are the hot path of every IM backend (`/verify_access_token`) and of every
//! token-based HTTPS call; `/get_users` then looks accounts up by name. A hit answers from memory
//! without touching the database. Expiry is checked on every hit. Unknown tokens and names are not
//! cached (a flood of random ones costs database reads, not memory). Each of the two maps holds at
//! most `database.token_cache_entries` entries.
//!
//! The caller's pairs, which `/get_users` reads too, are kept in the cached account itself
//! ([`Memo`]), so that the request that found the account by its token needs no other lookup.
//!
//! **What it decorates.** Only the reads it answers, [`Lookups`]; every other store trait,
//! writes included, is forwarded untouched by [`Delegate`]. It learns of changes from the store's
//! [`ChangeFeed`] instead of intercepting writes: the database itself reports every committed
//! change to an account or its tokens (triggers, see [`super::changes`]), whichever store method
//! made it, so a method added later cannot bypass revocation. On SQLite the writer thread reports
//! a change before the caller of the write gets its answer, and even when the caller stopped
//! waiting; on PostgreSQL the same holds for this instance, and other instances hear of it within
//! a second (`LISTEN`/`NOTIFY`, with a catch-up read by sequence number after a lost connection).
//!
//! **The one rule.** On every change the account's entries (its tokens and its name, and so its
//! shared copy with what that copy remembers) are forgotten and an epoch is bumped, so a lookup
//! that raced the change does not fill the cache with what it read before. While the feed is not live (PostgreSQL's listener reconnecting) the
//! cache answers nothing from memory and fills nothing: every lookup goes to the database.
//!
//! A cached account is what the store holds but for what only login reads and the cache does not
//! keep: the password hash and the login counters (see [`Lookups::accounts_by_names`]); the
//! triggers ignore changes to the login counters for that reason.
//!
//! An index from account id to its cached tokens and name makes forgetting an account cost the
//! size of its own entries, not a scan of the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::store::delegate::Delegate;
use crate::store::striped::Striped;
use crate::store::*;

/// [`Store`] decorator caching `token_account` and `accounts_by_names`.
pub struct TokenCache {
    inner: Arc<dyn Store>,
    /// The inner store's changes; answers come from memory only while it is live.
    feed: Arc<ChangeFeed>,
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
    /// Token lookups answered from memory (counted by each thread apart: every token check adds
    /// one), and those that went to the store (for metrics).
    hits: Striped,
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
        (self.0.hits.get(), self.0.misses.load(Ordering::Relaxed))
    }
}

impl Shared {
    /// Called on every event of the feed.
    fn on(&self, change: Change) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut m = self.maps.write().unwrap_or_else(|e| e.into_inner());
        match change {
            // A pair row's change is a change of both its accounts: the copy that remembers the
            // pairs is forgotten with the account.
            Change::Account(id) => m.forget(id),
            Change::Reset => m.clear(),
            // While the feed is down nothing is answered from memory (see `TokenCache::live`);
            // what is cached stays, as the catch-up read on reconnection forgets what changed.
            Change::Live(_) => {}
        }
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
            c.account.memo.let_go();
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
        self.ids.entry(a.id).or_insert_with(|| {
            let account = Arc::new(Account {
                password_hash: String::new(),
                failed_logins: 0,
                locked_until: 0,
                ..a.clone()
            });
            account.memo.keep();
            Cached {
                account,
                tokens: Vec::new(),
                named: false,
            }
        })
    }

    fn clear(&mut self) {
        for c in self.ids.values() {
            c.account.memo.let_go();
        }
        *self = Maps::default();
    }

    /// Keeps the ids entries for which `keep` holds; the others' copies are no longer kept.
    fn retain_ids(&mut self, keep: impl Fn(&Cached) -> bool) {
        self.ids.retain(|_, c| {
            let kept = keep(c);
            if !kept {
                c.account.memo.let_go();
            }
            kept
        });
    }

    /// Drops the tokens expired at `now` (a full map first tries this before starting over).
    fn drop_expired(&mut self, now: i64) {
        self.tokens.retain(|_, e| e.expires_at > now);
        let tokens = &self.tokens;
        for c in self.ids.values_mut() {
            c.tokens.retain(|t| tokens.contains_key(t));
        }
        self.retain_ids(|c| !c.tokens.is_empty() || c.named);
    }

    /// Empties the name map only (it is full): the tokens stay.
    fn clear_names(&mut self) {
        self.names.clear();
        for c in self.ids.values_mut() {
            c.named = false;
        }
        self.retain_ids(|c| !c.tokens.is_empty());
    }
}

/// A live token: its expiry and its account (without the password hash, shared), and the bytes
/// made from them once ([`Lookups::token_bytes_in_memory`]), forgotten with the entry.
struct Entry {
    expires_at: i64,
    account: Arc<Account>,
    kept: std::sync::OnceLock<Box<[u8]>>,
}

/// The token map's hasher. Its keys are SHA-256 digests of tokens, already uniform, so folding
/// their bytes is the hash; and only tokens this service issued get in (unknown tokens are never
/// cached), so nobody can choose keys that collide.
#[derive(Clone, Copy, Default)]
pub struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

pub struct DigestHasher(u64);

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
    /// A cache in front of `inner`, subscribed to its change feed.
    pub fn new(inner: Arc<dyn Store>, capacity: usize) -> TokenCache {
        let shared = Arc::new(Shared {
            maps: RwLock::new(Maps::default()),
            epoch: AtomicU64::new(0),
            hits: Striped::default(),
            misses: AtomicU64::new(0),
        });
        let feed = inner.change_feed();
        let subscriber = Arc::downgrade(&shared);
        feed.subscribe(move |c| {
            if let Some(s) = subscriber.upgrade() {
                s.on(c);
            }
        });
        TokenCache {
            inner,
            feed,
            shared,
            capacity,
        }
    }

    /// A handle for the metrics.
    pub fn probe(&self) -> CacheProbe {
        CacheProbe(self.shared.clone())
    }

    /// Whether memory may answer: every change is being reported.
    fn live(&self) -> bool {
        self.feed.is_live()
    }

    /// `f` of the entry of token `hash`, under the read lock, when it is answered from memory
    /// (the feed is live, the token cached and live at `now`); counted as a hit.
    fn with_live_entry<R>(
        &self,
        hash: &[u8; 32],
        now: i64,
        f: impl FnOnce(&Entry) -> R,
    ) -> Option<R> {
        if !self.live() {
            return None;
        }
        match self.read().tokens.get(hash) {
            Some(e) if e.expires_at > now => {
                self.shared.hits.add(1);
                Some(f(e))
            }
            _ => None,
        }
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
        (self.epoch() == epoch && self.live()).then_some(m)
    }
}

impl Delegate for TokenCache {
    fn inner(&self) -> &dyn Store {
        &*self.inner
    }
}

#[async_trait::async_trait]
impl Lookups for TokenCache {
    async fn accounts_by_names(&self, names: &[String]) -> StoreResult<Vec<Arc<Account>>> {
        if !self.live() {
            return self.inner.accounts_by_names(names).await;
        }
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
        let mut more = self.inner.accounts_by_names(&missing).await?;
        if let Some(mut m) = self.fill(epoch) {
            for a in more.iter_mut().filter(|a| a.state == AccountState::Active) {
                if m.names.len() >= self.capacity {
                    m.clear_names();
                }
                let cached = m.shared(a);
                cached.named = true;
                let account = cached.account.clone();
                m.names.insert(a.user_name.clone(), account.clone());
                // The caller gets the copy that is kept, so that what it works out is remembered.
                *a = account;
            }
        }
        found.extend(more);
        Ok(found)
    }

    async fn token_account(
        &self,
        hash: Vec<u8>,
        now: i64,
    ) -> StoreResult<Option<(Arc<Account>, i64)>> {
        if let Ok(key) = <[u8; 32]>::try_from(hash.as_slice()) {
            if let Some(hit) = self.token_in_memory(&key, now) {
                return Ok(Some(hit));
            }
        }
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        let epoch = self.epoch();
        let mut found = self.inner.token_account(hash.clone(), now).await?;
        if let (Some((a, exp)), Ok(key)) = (&mut found, <[u8; 32]>::try_from(hash.as_slice())) {
            if let Some(mut m) = self.fill(epoch) {
                if m.tokens.len() >= self.capacity {
                    m.drop_expired(now);
                    if m.tokens.len() >= self.capacity {
                        m.clear();
                    }
                }
                // Token holders never need the password hash: it is not kept in memory.
                let account = m.shared(a).account.clone();
                let entry = Entry {
                    expires_at: *exp,
                    account,
                    kept: Default::default(),
                };
                if m.tokens.insert(key, entry).is_none() {
                    m.shared(a).tokens.push(key);
                }
                // The caller gets the copy that is kept, so that what it works out is remembered.
                *a = m.shared(a).account.clone();
            }
        }
        Ok(found)
    }

    fn token_in_memory(&self, hash: &[u8; 32], now: i64) -> Option<(Arc<Account>, i64)> {
        self.with_live_entry(hash, now, |e| (e.account.clone(), e.expires_at))
    }

    fn token_bytes_in_memory(
        &self,
        hash: &[u8; 32],
        now: i64,
        make: &mut dyn FnMut(&Account, i64) -> Vec<u8>,
        out: &mut Vec<u8>,
    ) -> bool {
        // Made under the read lock, once per entry: a change waits for it, and then forgets
        // the entry and its bytes together.
        self.with_live_entry(hash, now, |e| {
            let kept = e
                .kept
                .get_or_init(|| make(&e.account, e.expires_at).into_boxed_slice());
            out.extend_from_slice(kept);
        })
        .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::LENIENT;
    use crate::store::sqlite::SqliteStore;
    use crate::store::test_db::phone_account;

    /// A cache of `capacity` entries in front of a fresh SQLite store (keep the directory).
    fn cache(capacity: usize) -> (tempfile::TempDir, TokenCache) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        (dir, TokenCache::new(Arc::new(store), capacity))
    }

    /// A phone account `name` (JID node `n-{name}`), as registration first writes it.
    fn phone(name: &str) -> NewAccount {
        phone_account(name, &format!("n-{name}"))
    }

    /// An active phone account `name`: its id.
    async fn active(c: &TokenCache, name: &str) -> i64 {
        let id = c.insert_pending_account(phone(name), 1).await.unwrap();
        c.set_account_state(id, AccountState::Active, 1)
            .await
            .unwrap();
        id
    }

    /// A cache with an active account "a" whose token `[7; 32]` (expiring at 100) was looked up
    /// once at 10, so that it is in memory: the cache and the account id.
    async fn token_answered_from_memory() -> (tempfile::TempDir, TokenCache, i64) {
        let (dir, c) = cache(10);
        let id = active(&c, "a").await;
        c.insert_token(vec![7; 32], id, 100, 1).await.unwrap();
        assert!(c.token_account(vec![7; 32], 10).await.unwrap().is_some());
        (dir, c, id)
    }

    #[tokio::test]
    async fn hits_expire_and_revocation_is_immediate() {
        let (_dir, c, id) = token_answered_from_memory().await;
        assert_eq!(c.shared.maps.read().unwrap().tokens.len(), 1, "cached");
        assert!(
            c.token_account(vec![7; 32], 100).await.unwrap().is_none(),
            "expired"
        );
        assert!(c.token_account(vec![7; 32], 10).await.unwrap().is_some());
        // From memory only: the live token; neither an expired nor an unknown one.
        assert_eq!(
            c.token_in_memory(&[7; 32], 10).map(|(a, e)| (a.id, e)),
            Some((id, 100))
        );
        assert!(c.token_in_memory(&[7; 32], 100).is_none(), "expired");
        assert!(c.token_in_memory(&[8; 32], 10).is_none(), "unknown");
        assert!(c.begin_cancel(id, 11).await.unwrap());
        assert!(
            c.token_in_memory(&[7; 32], 12).is_none(),
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

    /// The bytes kept with a token are made once, handed out while the token is live, and
    /// forgotten with it: after a change to its account they are made again from the new state.
    #[tokio::test]
    async fn bytes_kept_with_a_token_are_made_once_and_go_with_it() {
        let (_dir, c, id) = token_answered_from_memory().await;
        let made = std::cell::Cell::new(0);
        let ask = |now: i64| {
            let mut out = b"<".to_vec();
            let mut make = |a: &Account, exp: i64| {
                made.set(made.get() + 1);
                format!("{}:{exp}", a.id).into_bytes()
            };
            c.token_bytes_in_memory(&[7; 32], now, &mut make, &mut out)
                .then_some(String::from_utf8(out).unwrap())
        };
        assert_eq!(ask(10), Some(format!("<{id}:100")));
        assert_eq!(ask(11), Some(format!("<{id}:100")));
        assert_eq!(made.get(), 1, "made once");
        assert_eq!(ask(100), None, "expired");
        let mut unknown = |_: &Account, _: i64| -> Vec<u8> { panic!("unknown token") };
        assert!(!c.token_bytes_in_memory(&[8; 32], 10, &mut unknown, &mut Vec::new()));
        // Any change to the account (here a write of its state) forgets its entries.
        c.set_account_state(id, AccountState::Active, 12)
            .await
            .unwrap();
        assert_eq!(ask(12), None, "forgotten with the change");
        assert!(c.token_account(vec![7; 32], 13).await.unwrap().is_some());
        assert_eq!(ask(13), Some(format!("<{id}:100")));
        assert_eq!(made.get(), 2, "made again after the change");
        assert!(c.begin_cancel(id, 14).await.unwrap());
        assert_eq!(ask(15), None, "revoked with its entry");
    }

    #[tokio::test]
    async fn logout_password_change_and_revoke_drop_cached_tokens_at_once() {
        let (_dir, c) = cache(10);
        let id = active(&c, "a").await;
        let cached = |t: u8| c.token_in_memory(&[t; 32], 10).is_some();
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
        assert!(c
            .claim_login_attempt(a, "192.0.2.1".into(), 2, LENIENT)
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
        let (_dir, c, id) = token_answered_from_memory().await;
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
        let ab = c
            .accounts_by_names(&["a".into(), "b".into()])
            .await
            .unwrap();
        assert!(
            ab.iter().all(|x| x.memo.kept()),
            "the copies handed out are the kept ones"
        );
        c.accounts_by_names(&["c".into()]).await.unwrap();
        let m = c.shared.maps.read().unwrap();
        assert_eq!(m.names.len(), 1, "the name map started over");
        assert!(m.names.contains_key("c"));
        assert_eq!(m.tokens.len(), 1, "the token stayed");
        assert_eq!(m.ids.len(), 2, "index: a (its token) and c (its name)");
        let kept: Vec<bool> = ab.iter().map(|x| x.memo.kept()).collect();
        assert_eq!(
            kept,
            [true, false],
            "a is still held (its token), b no longer"
        );
    }

    #[tokio::test]
    async fn a_copy_is_kept_until_the_cache_lets_it_go() {
        let (_dir, c, id) = token_answered_from_memory().await;
        let (a, _) = c.token_account(vec![7; 32], 10).await.unwrap().unwrap();
        assert!(a.memo.kept());
        let uncached = c.inner.account_by_id(id).await.unwrap().unwrap();
        assert!(
            !uncached.memo.kept(),
            "a copy read from the store is nobody's"
        );
        c.revoke_tokens(id).await.unwrap();
        assert!(!a.memo.kept(), "forgotten with the change");
        let (b, _) = {
            c.insert_token(vec![8; 32], id, 100, 11).await.unwrap();
            c.token_account(vec![8; 32], 12).await.unwrap().unwrap()
        };
        assert!(b.memo.kept() && !Arc::ptr_eq(&a, &b), "a new copy");
        c.shared.on(Change::Reset);
        assert!(!b.memo.kept(), "a reset lets every copy go");
    }
}
