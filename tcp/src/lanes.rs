//! Threads of the listener's own ([`TcpConfig::threads`](crate::TcpConfig::threads)).
//!
//! Each lane is one OS thread running a single-threaded tokio runtime. The accept loop hands every
//! admitted connection to the lane with the fewest open connections, and the connection stays
//! there: its reads, its answers from memory and its writes never wake or wait for another
//! thread, and no other thread steals it. Whatever a request needs beyond memory (the handler's
//! [`handle`](crate::LineHandler::handle)) runs on the runtime that called
//! [`serve`](crate::serve), through [`Homed`], so database connections and timers the handler
//! makes belong to that runtime and outlive the lanes.
//!
//! The lanes stop when [`Lanes`] is dropped (at the end of `serve`, after the drain, or when its
//! future is dropped): each thread leaves its runtime, which drops the tasks still in it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::LineHandler;

/// The listener's own threads, each with a single-threaded runtime.
pub(crate) struct Lanes {
    lanes: Vec<Lane>,
}

struct Lane {
    handle: Handle,
    /// Connections this lane serves now.
    open: Arc<AtomicUsize>,
    /// Dropped (or sent) to stop the lane's thread.
    _stop: oneshot::Sender<()>,
}

/// A connection's place on a lane: counted from [`Lanes::pick`] until dropped.
pub(crate) struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lanes {
    /// Starts `n` lanes, threads named `{name}-0`, `{name}-1`, …
    pub(crate) fn start(n: usize, name: &str) -> io::Result<Lanes> {
        let mut lanes = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    // Runs the lane's tasks until told to stop; the runtime (and any task still
                    // in it) is dropped here, on its own thread, outside any async context.
                    let _ = rt.block_on(stopped);
                })?;
            lanes.push(Lane {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
                _stop: stop,
            });
        }
        Ok(Lanes { lanes })
    }

    /// The lane with the fewest open connections, and a seat on it for one more.
    pub(crate) fn pick(&self) -> (&Handle, Seat) {
        let lane = self
            .lanes
            .iter()
            .min_by_key(|l| l.open.load(Ordering::Relaxed))
            .expect("at least one lane");
        lane.open.fetch_add(1, Ordering::Relaxed);
        (&lane.handle, Seat(lane.open.clone()))
    }

    /// Connections open on each lane.
    #[cfg(test)]
    fn load(&self) -> Vec<usize> {
        self.lanes
            .iter()
            .map(|l| l.open.load(Ordering::Relaxed))
            .collect()
    }
}

/// A handler whose [`handle`](LineHandler::handle) runs on `home`, the runtime that called
/// `serve`, while the connection that asked waits on its lane. Everything else is answered where
/// it is asked.
pub(crate) struct Homed<H> {
    pub(crate) inner: Arc<H>,
    pub(crate) home: Handle,
}

impl<H: LineHandler> LineHandler for Homed<H> {
    async fn handle(&self, path: &str, body: Value, peer: SocketAddr) -> Value {
        let (inner, path) = (self.inner.clone(), path.to_owned());
        match self
            .home
            .spawn(async move { inner.handle(&path, body, peer).await })
            .await
        {
            Ok(v) => v,
            // The connection answers a panic with `internal_error`, and logs it.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the home runtime is shutting down.
            Err(_) => self.inner.internal_error(),
        }
    }

    fn answer_now(&self, path: &str, json: &str, peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        self.inner.answer_now(path, json, peer, out)
    }

    fn connection(&self, open: bool) {
        self.inner.connection(open)
    }

    fn malformed(&self) -> Value {
        self.inner.malformed()
    }

    fn auth_refused(&self) -> Value {
        self.inner.auth_refused()
    }

    fn auth_accepted(&self) -> Value {
        self.inner.auth_accepted()
    }

    fn internal_error(&self) -> Value {
        self.inner.internal_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_least_loaded_lane_and_leaves_it_when_dropped() {
        let lanes = Lanes::start(3, "test-lane").unwrap();
        let seats: Vec<Seat> = (0..3).map(|_| lanes.pick().1).collect();
        assert_eq!(lanes.load(), vec![1, 1, 1], "spread over all lanes");
        let mut seats = seats.into_iter();
        let first = seats.next().unwrap();
        drop(first);
        assert_eq!(lanes.load(), vec![0, 1, 1]);
        let again = lanes.pick().1;
        assert_eq!(lanes.load(), vec![1, 1, 1], "the freed lane is picked");
        drop((again, seats));
        assert_eq!(lanes.load(), vec![0, 0, 0]);
    }

    #[test]
    fn lanes_run_tasks_on_threads_of_their_own_and_stop_when_dropped() {
        let lanes = Lanes::start(2, "test-lane").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut seats = Vec::new();
        for _ in 0..2 {
            let (handle, seat) = lanes.pick();
            seats.push(seat);
            let tx = tx.clone();
            handle.spawn(async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
        }
        let mut names: Vec<_> = (0..2).map(|_| rx.recv().unwrap().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["test-lane-0", "test-lane-1"]);
        // A task that never ends is dropped with its lane.
        let (handle, _seat) = lanes.pick();
        let (gone_tx, gone_rx) = std::sync::mpsc::channel::<()>();
        handle.spawn(async move {
            let _keep = gone_tx;
            std::future::pending::<()>().await
        });
        drop(lanes);
        let waited = gone_rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(
            waited,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "the lane's task was dropped"
        );
    }
}
