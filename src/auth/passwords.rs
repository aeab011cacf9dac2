//! Argon2id password hashing, on threads of its own at the lowest CPU priority.
//!
//! A hash takes tens of milliseconds of CPU on purpose. Hashes run on a small pool of dedicated
//! threads (by default one fewer than the CPUs, at least one), so a login flood queues here
//! instead of taking every core. Those threads run at nice 19: when a core is contended, token
//! checks and every other request run first and hashing takes what is left, so a flood of logins
//! slows logins, not the IM backends' token checks (BENCHMARKS.md, benchmark 7). On an idle
//! machine they run at full speed. A request that is gone (its client left) before its turn
//! costs no hash.
//!
//! The queue is bounded (`security.hash_queue` jobs waiting or running): past that a request is
//! refused at once with [`ApiError::Busy`] (HTTP 503), so a flood from many addresses cannot
//! queue work without end. A caller that must know there is room before it changes anything
//! (login counts an attempt) takes a [`Permit`] first.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use std::cell::RefCell;

use argon2::password_hash::{
    self, Output, ParamsString, PasswordHash, PasswordHasher, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::ApiError;

/// OWASP's Argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// Hashes and verifies passwords on its own threads (see the module docs).
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    /// Jobs holding a [`Permit`]: waiting, running, or about to be queued.
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// A place in the hashing queue, held from before a job is queued until it has run (or was
/// skipped): dropping it frees the place.
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type Job = Box<dyn FnOnce() + Send>;

fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

thread_local! {
    /// A hashing thread's Argon2 memory (19 MiB), kept from one hash to the next. Allocated for
    /// each hash, it went back to the allocator after it, and jemalloc returns memory that large
    /// to the kernel within seconds: the next hash faulted all of it in again, which cost a third
    /// of the registrations per second (BENCHMARKS.md, "Session 10"). A hash writes every block
    /// before it reads it (Argon2's first pass overwrites), so what the last one left is never
    /// read.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// `password` hashed as `params` say with `salt`, as the PHC string's parts, in this thread's
/// kept memory ([`MEMORY`]) when it is no larger than the service's own parameters need (a
/// stored hash made with more is hashed in memory of its own, not kept).
fn phc<'a>(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: Salt<'a>,
) -> password_hash::Result<PasswordHash<'a>> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params.clone());
    let hash = Output::init_with(len, |out| {
        let mut into = |memory: &mut [Block]| {
            argon
                .hash_password_into_with_memory(password, salt_bytes, out, memory)
                .map_err(password_hash::Error::from)
        };
        if blocks > argon2().params().block_count() {
            return into(&mut vec![Block::default(); blocks]);
        }
        MEMORY.with_borrow_mut(|memory| {
            if memory.len() < blocks {
                memory.resize(blocks, Block::default());
            }
            into(memory)
        })
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(hash),
    })
}

/// Whether `password` matches `stored`, hashed with the stored hash's own algorithm, version,
/// parameters and salt ([`phc`]); the outputs compared in constant time (`Output`'s `==`).
fn password_matches(password: &[u8], stored: &PasswordHash<'_>) -> password_hash::Result<bool> {
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(stored.algorithm)?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(stored)?;
    let computed = phc(algorithm, version, params, password, salt)?;
    Ok(computed.hash == Some(expected))
}

/// The calling thread at the lowest priority (nice 19). On Linux, `setpriority` on a thread id
/// applies to that thread alone.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::warn!(error = %e, "could not lower the priority of a hashing thread");
    }
}

/// The calling thread's nice value.
#[cfg(all(test, target_os = "linux"))]
fn my_nice() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
}

fn worker(jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    lower_priority();
    loop {
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        match job {
            // A panic loses that job's answer (its caller gets an error), not the thread.
            Ok(job) => drop(std::panic::catch_unwind(AssertUnwindSafe(job))),
            Err(_) => return, // every Hasher is gone
        }
    }
}

impl Hasher {
    /// `concurrency` hashing threads; 0 means one fewer than the CPUs (at least one), so that a
    /// login flood always leaves a core for token checks and everything else. The threads end
    /// when the last clone of the `Hasher` is dropped.
    pub fn new(concurrency: usize) -> Hasher {
        Hasher::bounded(concurrency, usize::MAX)
    }

    /// [`new`](Self::new) with at most `queue` jobs waiting or running.
    pub fn bounded(concurrency: usize, queue: usize) -> Hasher {
        let n = if concurrency == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .saturating_sub(1)
                .max(1)
        } else {
            concurrency
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("register-hash-{i}"))
                .spawn(move || worker(rx))
                .expect("spawn a hashing thread");
        }
        Hasher {
            jobs: tx,
            queued: Arc::new(AtomicUsize::new(0)),
            limit: queue,
        }
    }

    /// A place in the queue, or [`ApiError::Busy`] when it is full.
    pub fn permit(&self) -> Result<Permit, ApiError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::Busy);
        }
        Ok(Permit(self.queued.clone()))
    }

    /// Jobs waiting or running now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Runs `f` on a hashing thread, unless the caller has gone by its turn.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self.permit()?;
        self.run_with(permit, f).await
    }

    async fn run_with<T: Send + 'static>(
        &self,
        permit: Permit,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The place is freed before the answer goes out, so a caller that got its answer
            // never finds its own job still counted.
            let r = (!tx.is_closed()).then(f);
            drop(permit);
            if let Some(r) = r {
                let _ = tx.send(r);
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| ApiError::Unknown("hashing threads gone".into()))?;
        rx.await
            .map_err(|_| ApiError::Unknown("hash job failed".into()))?
    }

    /// PHC string of a new Argon2id hash.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let params = argon2().params().clone();
            let salt = Salt::from(&salt);
            phc(
                Algorithm::Argon2id,
                Version::V0x13,
                params,
                password.as_bytes(),
                salt,
            )
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Unknown(format!("hashing: {e}")))
        })
        .await
    }

    /// Whether `password` matches the stored PHC string (constant-time inside argon2).
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, ApiError> {
        let permit = self.permit()?;
        self.verify_with(permit, password, phc).await
    }

    /// [`verify`](Self::verify) in a place taken beforehand.
    pub async fn verify_with(
        &self,
        permit: Permit,
        password: String,
        phc: String,
    ) -> Result<bool, ApiError> {
        self.run_with(permit, move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| ApiError::Unknown(format!("stored hash: {e}")))?;
            Ok(password_matches(password.as_bytes(), &parsed).unwrap_or(false))
        })
        .await
    }

    /// A hash to verify against when the user does not exist, so that unknown names take as long
    /// as wrong passwords.
    pub fn dummy_hash() -> &'static str {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        DUMMY.get_or_init(|| {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon2()
                .hash_password(b"not a password", &salt)
                .expect("hash")
                .to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new(2);
        let phc = h.hash("secret123".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("secret123".into(), phc.clone()).await.unwrap());
        assert!(!h.verify("secret124".into(), phc).await.unwrap());
        assert!(matches!(
            h.verify("x".into(), "not a PHC string".into()).await,
            Err(ApiError::Unknown(_))
        ));
    }

    /// Hashes made in the thread's kept memory, one after another, are those the argon2 crate
    /// makes in fresh zeroed memory; stored hashes with other parameters verify too, and one
    /// needing more memory than the service's own does not grow what the thread keeps.
    #[test]
    fn hashes_in_kept_memory_are_those_of_fresh_memory() {
        let ours = argon2().params().clone();
        let salts = ["c2FsdHNhbHRzYWx0", "b3RoZXJzYWx0c2FsdA", "dGhpcmRzYWx0eHg"];
        for (i, salt) in salts.into_iter().enumerate() {
            let salt = SaltString::from_b64(salt).unwrap();
            let password = format!("password {i}");
            let kept = phc(
                Algorithm::Argon2id,
                Version::V0x13,
                ours.clone(),
                password.as_bytes(),
                Salt::from(&salt),
            )
            .unwrap()
            .to_string();
            let fresh = argon2().hash_password(password.as_bytes(), &salt).unwrap();
            assert_eq!(kept, fresh.to_string());
            let stored = PasswordHash::new(&kept).unwrap();
            assert!(password_matches(password.as_bytes(), &stored).unwrap());
            assert!(!password_matches(b"password x", &stored).unwrap());
        }
        assert_eq!(MEMORY.with_borrow(|m| m.len()), ours.block_count());

        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        for (m, t, v) in [
            (8 * 1024, 1, Version::V0x10),
            (24 * 1024, 1, Version::V0x13),
        ] {
            let params = Params::new(m, t, 1, None).unwrap();
            let argon = Argon2::new(Algorithm::Argon2i, v, params);
            let stored = argon.hash_password(b"older", &salt).unwrap();
            assert!(password_matches(b"older", &stored).unwrap(), "m={m}");
            assert!(!password_matches(b"newer", &stored).unwrap(), "m={m}");
        }
        assert_eq!(MEMORY.with_borrow(|m| m.len()), ours.block_count());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_places() {
        let h = Hasher::bounded(1, 2);
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        // One job holds the only thread until told to go; a second waits behind it.
        let first = {
            let h = h.clone();
            tokio::spawn(async move {
                h.run(move || {
                    go_rx.recv().unwrap();
                    Ok(())
                })
                .await
            })
        };
        let second = {
            let h = h.clone();
            tokio::spawn(async move { h.hash("secret123".into()).await })
        };
        while h.queued() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            h.verify("x".into(), "y".into()).await,
            Err(ApiError::Busy)
        ));
        assert!(matches!(h.permit(), Err(ApiError::Busy)));
        go_tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(h.queued(), 0, "every place freed");
        let p = h.permit().unwrap();
        assert_eq!(h.queued(), 1);
        drop(p);
        assert_eq!(h.queued(), 0, "a permit never used frees its place");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_nice_19_and_survive_a_panic() {
        let mine = my_nice();
        let h = Hasher::new(1);
        let nice = h.run(|| Ok(my_nice())).await.unwrap();
        assert_eq!(nice, 19);
        let lost = h.run::<()>(|| panic!("a job panics on purpose")).await;
        assert!(matches!(lost, Err(ApiError::Unknown(_))));
        assert!(
            h.hash("secret123".into()).await.is_ok(),
            "the thread goes on"
        );
        assert_eq!(my_nice(), mine, "the test's own thread kept its priority");
    }
}
