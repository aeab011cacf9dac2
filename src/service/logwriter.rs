//! Log lines to stderr in batches.
//!
//! A busy service logs many lines (one per request at debug level). Written one by one, each line
//! cost a `write` system call on the request's path: 6 % of a cheap request's profile
//! (BENCHMARKS.md).
//! Here a line is appended to a shared buffer; a thread of its own writes the buffer out every
//! [`FLUSH_EVERY`], and a logger that finds the buffer over [`FLUSH_AT`] writes it out itself.
//! Lines keep their order, and none is dropped. An info or debug line reaches stderr at most
//! [`FLUSH_EVERY`] after it is logged, or when the [`Guard`] is dropped at exit; a process killed
//! outright may lose that much of them. A warning or an error is written out at once, with
//! everything buffered before it.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How often the buffer is written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A buffer this large is written out by the logger that filled it.
pub const FLUSH_AT: usize = 64 * 1024;

struct Shared<W> {
    buf: Mutex<Vec<u8>>,
    /// Held while writing, so that batches go out in the order they were taken.
    out: Mutex<W>,
    stop: Mutex<bool>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<W: Write> Shared<W> {
    /// Writes out what is buffered.
    fn flush(&self) {
        let mut out = lock(&self.out);
        let batch = std::mem::take(&mut *lock(&self.buf));
        if !batch.is_empty() {
            // Nowhere to report a failed write to stderr.
            let _ = out.write_all(&batch);
            let _ = out.flush();
        }
    }
}

/// The [`MakeWriter`] for `tracing_subscriber::fmt`.
pub struct Batched<W> {
    shared: Arc<Shared<W>>,
}

/// Stops the flushing thread and writes out what is left when dropped.
pub struct Guard<W: Write + Send + 'static> {
    shared: Arc<Shared<W>>,
    thread: Option<JoinHandle<()>>,
}

/// A batched writer to `out` and its guard.
pub fn batched<W: Write + Send + 'static>(out: W) -> (Batched<W>, Guard<W>) {
    let shared = Arc::new(Shared {
        buf: Mutex::new(Vec::new()),
        out: Mutex::new(out),
        stop: Mutex::new(false),
        wake: Condvar::new(),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("register-log".into())
        .spawn(move || loop {
            let stop = lock(&s.stop);
            let (stop, _) = s
                .wake
                .wait_timeout(stop, FLUSH_EVERY)
                .unwrap_or_else(|e| e.into_inner());
            let done = *stop;
            drop(stop);
            s.flush();
            if done {
                return;
            }
        })
        .ok();
    (
        Batched {
            shared: shared.clone(),
        },
        Guard { shared, thread },
    )
}

impl<W: Write + Send + 'static> Drop for Guard<W> {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.flush();
    }
}

/// One log line being written: kept whole until dropped, so that lines of different threads
/// never interleave, however many `write` calls a line takes.
pub struct Line<'a, W: Write> {
    shared: &'a Shared<W>,
    line: Vec<u8>,
    /// Write out at once (a warning or an error).
    urgent: bool,
}

impl<W: Write> Write for Line<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Line<'_, W> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let full = {
            let mut buf = lock(&self.shared.buf);
            buf.extend_from_slice(&self.line);
            buf.len() >= FLUSH_AT
        };
        if full || self.urgent {
            self.shared.flush();
        }
    }
}

impl<W: Write> Batched<W> {
    fn line(&self, urgent: bool) -> Line<'_, W> {
        Line {
            shared: &self.shared,
            line: Vec::new(),
            urgent,
        }
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Batched<W> {
    type Writer = Line<'a, W>;
    fn make_writer(&'a self) -> Line<'a, W> {
        self.line(false)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a, W> {
        // Levels compare by verbosity: WARN and ERROR are the ones at or below WARN.
        self.line(*meta.level() <= tracing::Level::WARN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_come_out_in_order_within_the_flush_period_and_at_drop() {
        let sink = Sink::default();
        let (w, guard) = batched(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = Batched {
                    shared: w.shared.clone(),
                };
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        writeln!(w.make_writer(), "{t} {i:05}").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        writeln!(w.make_writer(), "last").unwrap();
        std::thread::sleep(FLUSH_EVERY * 4);
        let text = String::from_utf8(lock(&sink.0).clone()).unwrap();
        assert!(text.ends_with("last\n"), "written within the period");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8001, "none lost");
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{t} ")))
                .copied()
                .collect();
            let want: Vec<String> = (0..2000).map(|i| format!("{t} {i:05}")).collect();
            assert_eq!(mine, want, "each thread's lines whole and in order");
        }
        // A warning goes out at once, with what was buffered before it.
        writeln!(w.make_writer(), "info").unwrap();
        writeln!(w.line(true), "warn").unwrap();
        assert!(String::from_utf8(lock(&sink.0).clone())
            .unwrap()
            .ends_with("last\ninfo\nwarn\n"));
        writeln!(w.make_writer(), "at exit").unwrap();
        drop(guard);
        assert!(String::from_utf8(lock(&sink.0).clone())
            .unwrap()
            .ends_with("warn\nat exit\n"));
    }
}
