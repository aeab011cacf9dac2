//! Storage behind a trait, so that the handlers do not know the backend: SQLite ([`sqlite`], the
//! embedded default, one instance) or PostgreSQL ([`postgres`], shared by several instances).
//!
//! Rows carry the state of multi-step operations (`pending`/`deleting` accounts,
//! `binding`/`unbinding` pairs): they are written before the first remote step and cleared after
//! the last, and the reconciler finishes whatever a crash left behind.

pub mod audit;
pub mod cache;
pub mod changes;
#[cfg(test)]
mod contract;
pub mod delegate;
pub mod jid_pwd;
pub mod nonces;
pub mod postgres;
mod rows;
pub mod sqlite;
pub mod striped;
#[doc(hidden)]
pub mod test_db;

pub use changes::{Change, ChangeFeed};

use std::sync::Arc;

use crate::types::AccountType;

/// Lifecycle of an account row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Pending,
    Active,
    Deleting,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Pending => "pending",
            AccountState::Active => "active",
            AccountState::Deleting => "deleting",
        }
    }
    pub fn parse(s: &str) -> Option<AccountState> {
        match s {
            "pending" => Some(AccountState::Pending),
            "active" => Some(AccountState::Active),
            "deleting" => Some(AccountState::Deleting),
            _ => None,
        }
    }
}

/// Lifecycle of a bound pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    Binding,
    Bound,
    Unbinding,
}

impl BindingState {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingState::Binding => "binding",
            BindingState::Bound => "bound",
            BindingState::Unbinding => "unbinding",
        }
    }
    pub fn parse(s: &str) -> Option<BindingState> {
        match s {
            "binding" => Some(BindingState::Binding),
            "bound" => Some(BindingState::Bound),
            "unbinding" => Some(BindingState::Unbinding),
            _ => None,
        }
    }
}

/// An account as stored.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    pub user_name: String,
    pub kind: AccountType,
    pub device_type: Option<String>,
    pub des: String,
    pub password_hash: String,
    pub jid_node: String,
    /// `jid_pwd` sealed (see `crypto::seal`).
    pub jid_pwd: Vec<u8>,
    pub state: AccountState,
    pub failed_logins: u32,
    pub locked_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// What the service works out from this copy of the row; never stored.
    pub memo: Memo,
}

/// What the service works out from an account row on its hot paths, worked out at most once per
/// copy of the row: the opened `jid_pwd`, the JID, the ids of the accounts bound to it, the
/// copies of those accounts, and its last `/get_users` reply.
///
/// A copy read from the database starts empty, and so does a clone. The token cache shares one
/// copy of an account among its entries (the account's tokens and its name), marks it
/// [kept](Memo::kept) while it holds it, and forgets it on any change to the account or to one of
/// its pair rows (see [`cache`]); so what a copy remembers is as fresh as the copy itself, and a
/// request that raced a change sees the account and its pairs as they were before it, as it would
/// without the memo. The copies of the peers are used only while each of them is still kept.
#[derive(Default)]
pub struct Memo {
    pub jid_pwd: std::sync::OnceLock<String>,
    pub jid: std::sync::OnceLock<String>,
    /// The account's `user_info` without `jid_pwd` (as others see it), as canonical JSON text,
    /// and where in it `jid_pwd` goes for the account itself.
    pub info: std::sync::OnceLock<(Box<str>, usize)>,
    /// The ids of the accounts bound to this one (pair rows in state `bound`).
    pub bound: std::sync::OnceLock<Box<[i64]>>,
    /// The cache's copies of the accounts in `bound`, replaced when one of them is forgotten.
    peers: std::sync::Mutex<Option<Arc<[Arc<Account>]>>>,
    /// The account's last `/get_users` reply over HTTPS, signed (see [`KeptReply`]).
    reply: std::sync::Mutex<Option<KeptReply>>,
    kept: std::sync::atomic::AtomicBool,
}

/// A signed `/get_users` reply an account was given, kept to answer the same question again
/// (an app polling its devices asks the same list over and over): it holds while the account's
/// copy is kept and, if it showed peers, while each of their copies is kept, so it is exactly the
/// reply the request would be made again.
pub struct KeptReply {
    /// The `user_name_ls` parameter it answered, byte for byte.
    pub list: Box<str>,
    /// The peers' copies it was made from, if it showed any other account.
    pub peers: Option<Arc<[Arc<Account>]>>,
    /// The signed reply.
    pub body: bytes::Bytes,
}

impl KeptReply {
    /// Most bytes of a kept reply and of its list: a few names, the common case, are kept; a
    /// long list is answered each time, so an account holds at most this much.
    pub const MAX_BODY: usize = 4096;
    pub const MAX_LIST: usize = 512;
}

impl Memo {
    /// Whether the token cache holds this copy: no change to the account has been heard of since
    /// the copy was read.
    pub fn kept(&self) -> bool {
        self.kept.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The token cache holds this copy from now on.
    pub(crate) fn keep(&self) {
        self.kept.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The token cache no longer holds this copy: it is no longer kept, and lets its peers go,
    /// so that two copies that remember each other (a phone and its device) do not keep each
    /// other alive once the cache let them go.
    pub(crate) fn let_go(&self) {
        let mut peers = self.peers();
        let mut reply = self.reply();
        self.kept.store(false, std::sync::atomic::Ordering::Release);
        peers.take();
        reply.take();
    }

    fn reply(&self) -> std::sync::MutexGuard<'_, Option<KeptReply>> {
        self.reply.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept reply to `list`, if there is one and it still holds (this copy and the peers'
    /// copies it was made from are all kept).
    pub fn kept_reply(&self, list: &str) -> Option<bytes::Bytes> {
        let reply = self.reply();
        let r = reply.as_ref().filter(|r| &*r.list == list)?;
        let holds = self.kept() && r.peers.iter().flat_map(|p| p.iter()).all(|p| p.memo.kept());
        holds.then(|| r.body.clone())
    }

    /// Keep `reply` (in place of the last one) if this copy is still kept and it is within the
    /// sizes of [`KeptReply`] (checked under the lock that [`let_go`](Self::let_go) takes).
    pub fn keep_reply(&self, reply: KeptReply) {
        if reply.list.len() > KeptReply::MAX_LIST || reply.body.len() > KeptReply::MAX_BODY {
            return;
        }
        let mut kept = self.reply();
        if self.kept() {
            *kept = Some(reply);
        }
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Option<Arc<[Arc<Account>]>>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remembered copies of the peers, if every one of them is still kept.
    pub fn kept_peers(&self) -> Option<Arc<[Arc<Account>]>> {
        let peers = self.peers().clone()?;
        peers.iter().all(|p| p.memo.kept()).then_some(peers)
    }

    /// Remember `peers` (kept copies of every account in `bound`), if this copy is still kept
    /// (checked under the lock that [`let_go`](Self::let_go) takes them under); whether it did.
    pub fn remember_peers(&self, peers: Arc<[Arc<Account>]>) -> bool {
        let mut remembered = self.peers();
        let kept = self.kept();
        if kept {
            *remembered = Some(peers);
        }
        kept
    }
}

impl Clone for Memo {
    /// Empty: a copy works everything out again (a clone is made to be changed).
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

impl std::fmt::Debug for Memo {
    /// Never the opened `jid_pwd`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("jid_pwd", &self.jid_pwd.get().map(|_| "(opened)"))
            .field("jid", &self.jid.get())
            .field("bound", &self.bound.get())
            .field("kept", &self.kept())
            .finish_non_exhaustive()
    }
}

/// What `insert_pending_account` needs.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub user_name: String,
    pub kind: AccountType,
    pub device_type: Option<String>,
    pub des: String,
    pub password_hash: String,
    pub jid_node: String,
    pub jid_pwd: Vec<u8>,
}

/// A pair row; `a < b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub a: i64,
    pub b: i64,
    pub state: BindingState,
    pub updated_at: i64,
}

/// A live bind token as stored (the token itself is kept only as its SHA-256 hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindToken {
    /// The account that issued it: the other side of the pair it binds.
    pub issuer: i64,
    /// For a sharing token, the device (bound to the issuer) that the redeemer is bound to.
    pub device: Option<i64>,
    pub expires_at: i64,
}

/// The caps a new pair must stay within: `device` at most `max_phones` pairs, `phone` at most
/// `max_devices`, counted with the new pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairCaps {
    pub device: i64,
    pub max_phones: u32,
    pub phone: i64,
    pub max_devices: u32,
}

/// Storage failures, kept apart from the domain errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken (user name, JID node, or pair).
    #[error("already exists")]
    Exists,
    /// The row is not in the state the change requires (another operation took it, or the
    /// accounts of a pair are no longer active).
    #[error("record changed by another operation")]
    Changed,
    #[error("{0}")]
    Db(String),
}

impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists => crate::error::ApiError::Db("unexpected duplicate".into()),
            StoreError::Changed => {
                crate::error::ApiError::Db("record changed by another operation".into())
            }
            StoreError::Db(s) => crate::error::ApiError::Db(s),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How failed logins lock (from `security.lockout_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    /// Failures from one client network before that network is locked out of the account.
    pub per_network: u32,
    /// Failures from every network together before the whole account is locked: the last line,
    /// for guesses spread over many networks.
    pub per_account: u32,
    pub lock_secs: i64,
}

/// Everything the service stores, by concern: one narrow trait each, and [`Store`], all of them
/// together (implemented for whatever implements them all), which is what [`crate::app::App`]
/// holds. All times are Unix seconds.
///
/// A backend implements every trait. A decorator (the token cache, [`cache`]) implements only the
/// traits it changes — the cache: [`Lookups`] — and gets the rest from [`delegate::Delegate`],
/// which forwards them to the store it wraps.
pub trait Store:
    Maintenance
    + AccountStore
    + LoginStore
    + TokenStore
    + Lookups
    + PairStore
    + BindTokenStore
    + CaptchaStore
    + ReconcileStore
{
}

impl<T> Store for T where
    T: Maintenance
        + AccountStore
        + LoginStore
        + TokenStore
        + Lookups
        + PairStore
        + BindTokenStore
        + CaptchaStore
        + ReconcileStore
{
}

/// The store as a whole: health, housekeeping, and the feed of account changes.
#[async_trait::async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// Check that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Drop expired captchas and tokens, and login failures of networks whose last failure is a
    /// day old and whose lock has ended.
    async fn prune(&self, now: i64) -> StoreResult<()>;
    /// The committed changes to accounts and their tokens, as the database saw them (see
    /// [`changes`]): what a cache in front of this store subscribes to.
    fn change_feed(&self) -> Arc<ChangeFeed>;
}

/// Account rows and their lifecycle.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn insert_pending_account(&self, new: NewAccount, now: i64) -> StoreResult<i64>;
    async fn set_account_state(&self, id: i64, state: AccountState, now: i64) -> StoreResult<()>;
    /// Move an account from `from` to `to` (compare-and-set); false when it was not in `from`,
    /// i.e. another operation (a cancel, the reconciler) took it first.
    async fn transition_account(
        &self,
        id: i64,
        from: AccountState,
        to: AccountState,
        now: i64,
    ) -> StoreResult<bool>;
    /// Delete an account with its tokens and bindings.
    async fn delete_account(&self, id: i64) -> StoreResult<()>;
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<Account>>;
    async fn account_by_id(&self, id: i64) -> StoreResult<Option<Account>>;
    /// Accounts with these JID nodes.
    async fn accounts_by_nodes(&self, nodes: &[String]) -> StoreResult<Vec<Account>>;
    async fn list_accounts(&self, after_id: i64, limit: u32) -> StoreResult<Vec<Account>>;
    /// Mark an account `deleting` and revoke its tokens, atomically. False when it was already
    /// `deleting` (or is gone): another cancel owns it.
    async fn begin_cancel(&self, id: i64, now: i64) -> StoreResult<bool>;
    /// Store a new password hash for an active account and revoke all its tokens, atomically.
    /// False, and nothing changed, when the account is gone or not `active`.
    async fn set_password(&self, id: i64, password_hash: String, now: i64) -> StoreResult<bool>;
}

/// Failed logins and lock-out.
#[async_trait::async_trait]
pub trait LoginStore: Send + Sync + 'static {
    /// Claim one login attempt from client network `network` before its password is verified:
    /// count it as a failure in advance, both for that network and for the account as a whole,
    /// and lock what reaches its threshold (see [`LockPolicy`]) until `now + lock_secs`, its count
    /// starting again. False, and nothing changed, when the account or that network's attempts on
    /// it are locked at `now` (or the account is gone): the attempt must fail. Atomic, so a
    /// concurrent burst gets at most a threshold of claims before the lock.
    async fn claim_login_attempt(
        &self,
        id: i64,
        network: String,
        now: i64,
        policy: LockPolicy,
    ) -> StoreResult<bool>;
    /// The client networks locked out of account `id` at `now`, with the end of each lock.
    async fn locked_networks(&self, id: i64, now: i64) -> StoreResult<Vec<(String, i64)>>;
    /// A login from `network` succeeded: its claimed attempt and that network's failures and lock
    /// are forgotten, and `network` is remembered as the account's last: the account-wide lock
    /// does not apply to it (its own lock still does), so guesses spread over many networks cannot
    /// lock the owner out where the owner logs in. Of the account-wide count only the success's own
    /// claim is taken back (it starts again when it locks), so an owner's logins give a
    /// distributed guesser no new budget.
    async fn reset_login_failures(&self, id: i64, network: String) -> StoreResult<()>;
}

/// Access tokens: issuing and revoking (looking them up is [`Lookups::token_account`]).
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Revoke one token of account `id` (a logout). False when it was not there.
    async fn revoke_token(&self, id: i64, hash: Vec<u8>) -> StoreResult<bool>;
    /// Revoke every token of account `id`; how many there were.
    async fn revoke_tokens(&self, id: i64) -> StoreResult<u64>;
    /// Revoke the oldest of account `id`'s tokens so that at most `keep` remain, never the token
    /// `newest` (just issued). Returns how many were revoked.
    async fn trim_tokens(&self, id: i64, newest: Vec<u8>, keep: u32) -> StoreResult<u64>;
    async fn insert_token(
        &self,
        hash: Vec<u8>,
        account_id: i64,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;
}

/// The reads of the hot paths (token checks, `/get_users`): what a cache may answer from memory.
#[async_trait::async_trait]
pub trait Lookups: Send + Sync + 'static {
    /// The active account a live token belongs to, with the token's expiry. Its `password_hash`
    /// and login counters may be empty, as in `accounts_by_names`.
    async fn token_account(
        &self,
        hash: Vec<u8>,
        now: i64,
    ) -> StoreResult<Option<(Arc<Account>, i64)>>;
    /// Accounts with these names, in no particular order. Their `password_hash` may be empty and
    /// their `failed_logins` and `locked_until` zero (the token cache keeps none of them): a caller
    /// that needs them (login) uses `account_by_name`.
    async fn accounts_by_names(&self, names: &[String]) -> StoreResult<Vec<Arc<Account>>>;
    /// [`token_account`](Self::token_account) from memory only: `Some` when this store holds
    /// the token `hash` in memory, live at `now`, and may answer from memory; never waits on the
    /// database. `None` means "ask `token_account`". Default: `None`.
    fn token_in_memory(&self, hash: &[u8; 32], now: i64) -> Option<(Arc<Account>, i64)> {
        let _ = (hash, now);
        None
    }

    /// Appends to `out` the bytes kept in memory with the token `hash` (held in memory, live at
    /// `now`, as for [`token_in_memory`](Self::token_in_memory)), made by `make` from its account
    /// and expiry the first time they are asked for, and returns `true`; `false`, with `out`
    /// untouched, when the token is not answered from memory. What is kept goes with the token:
    /// whatever makes the store forget the token (a change to its account or its tokens, its
    /// expiry) forgets the bytes too. One lookup, for the TCP API's token checks (their signed
    /// replies). Default: `false`.
    fn token_bytes_in_memory(
        &self,
        hash: &[u8; 32],
        now: i64,
        make: &mut dyn FnMut(&Account, i64) -> Vec<u8>,
        out: &mut Vec<u8>,
    ) -> bool {
        let _ = (hash, now, make, out);
        false
    }
}

/// Bound pairs.
#[async_trait::async_trait]
pub trait PairStore: Send + Sync + 'static {
    /// The pair rows of account `id`, in any state.
    async fn bindings_of(&self, id: i64) -> StoreResult<Vec<Binding>>;
    /// Insert a pair row (ordered by the caller so that `a < b`); `Exists` when the pair has one,
    /// `Changed` when either account is not `active` at that moment (checked in the same
    /// statement, so a cancel that has begun never gains a new pair).
    async fn insert_binding(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()>;
    /// As [`insert_binding`](Self::insert_binding), and checked against `caps` in the same
    /// transaction (concurrent binds of one device or phone are serialized, so the caps hold):
    /// `Ok(false)`, nothing written, when either side is at its cap.
    async fn insert_binding_capped(
        &self,
        a: i64,
        b: i64,
        now: i64,
        caps: PairCaps,
    ) -> StoreResult<bool>;
    async fn set_binding_state(
        &self,
        a: i64,
        b: i64,
        state: BindingState,
        now: i64,
    ) -> StoreResult<()>;
    async fn delete_binding(&self, a: i64, b: i64) -> StoreResult<()>;
    /// Move a pair from `from` to `to` (compare-and-set); false when it was not in `from`.
    async fn transition_binding(
        &self,
        a: i64,
        b: i64,
        from: BindingState,
        to: BindingState,
        now: i64,
    ) -> StoreResult<bool>;
    /// Delete a pair row only while it is in `state`; false when it was not (gone, or a newer
    /// operation owns the pair).
    async fn delete_binding_in(&self, a: i64, b: i64, state: BindingState) -> StoreResult<bool>;
    async fn binding(&self, a: i64, b: i64) -> StoreResult<Option<Binding>>;
}

/// Bind tokens and failed redemptions.
#[async_trait::async_trait]
pub trait BindTokenStore: Send + Sync + 'static {
    /// Store a bind token issued by `issuer` (for `device` when it is a sharing token). Of the
    /// issuer's tokens at most `keep` stay outstanding: the oldest are deleted in the same
    /// transaction. `Exists` when the hash is taken (the caller draws another token).
    async fn insert_bind_token(
        &self,
        hash: Vec<u8>,
        issuer: i64,
        device: Option<i64>,
        expires_at: i64,
        now: i64,
        keep: u32,
    ) -> StoreResult<()>;
    /// The live bind token with this hash (not consumed).
    async fn bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>>;
    /// Consume a live bind token, atomically: of concurrent takes of one token exactly one gets
    /// it, the others `None`.
    async fn take_bind_token(&self, hash: Vec<u8>, now: i64) -> StoreResult<Option<BindToken>>;
    /// Failed bind-token redemptions of an account since `since`.
    async fn bind_failures(&self, account: i64, since: i64) -> StoreResult<u32>;
    /// Count a failed bind-token redemption of an account; returns the count since `since`
    /// (older failures are dropped).
    async fn record_bind_failure(&self, account: i64, now: i64, since: i64) -> StoreResult<u32>;
    /// Void every bind token `account` issued or that shares it (a device's factory reset).
    async fn void_bind_tokens(&self, account: i64) -> StoreResult<u64>;
    /// Forget one failure recorded at `at` (a redemption counted in advance that succeeded).
    async fn forget_bind_failure(&self, account: i64, at: i64) -> StoreResult<()>;
}

/// Captcha challenges.
#[async_trait::async_trait]
pub trait CaptchaStore: Send + Sync + 'static {
    async fn insert_captcha(&self, id: String, answer: String, expires_at: i64) -> StoreResult<()>;
    /// Remove a challenge and return its answer and expiry (single use: gone after this call).
    async fn take_captcha(&self, id: String) -> StoreResult<Option<(String, i64)>>;
}

/// What the reconciler reads, and its lease.
#[async_trait::async_trait]
pub trait ReconcileStore: Send + Sync + 'static {
    /// Records of unfinished work not updated since `before`.
    async fn unfinished(&self, before: i64) -> StoreResult<(Vec<Account>, Vec<Binding>)>;

    /// Take the reconciler lease: true when this instance may reconcile now, false when another
    /// instance (or this one) holds it. Release it with
    /// [`unlock_reconciler`](Self::unlock_reconciler). A store used by one instance only
    /// (SQLite) always grants it; PostgreSQL holds an advisory lock on a dedicated connection,
    /// which the server releases by itself if the instance dies.
    async fn try_lock_reconciler(&self) -> StoreResult<bool> {
        Ok(true)
    }

    /// Give the reconciler lease back (nothing when it is not held).
    async fn unlock_reconciler(&self) -> StoreResult<()> {
        Ok(())
    }
}
