//! A counter and a histogram for `prometheus-client` families whose updates share no lock and no
//! cache line between threads: each thread adds to a slot of its own (`store::striped`), and a
//! scrape sums the slots.
//!
//! For the request metrics every answer updates. `prometheus-client`'s own `Histogram` takes a
//! mutex for each observation and its `Counter` is one atomic, both shared by every worker: with
//! two workers answering HTTPS `/get_users`, a build that skipped the two updates answered 3–8%
//! more of the constant-reply ceiling (BENCHMARKS.md, "Session 12"). The registry, the families
//! and the text format stay the library's; only where the numbers live is ours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::store::striped::{slot, Striped, SLOTS};

/// A monotonic counter (a `_total` series).
#[derive(Clone, Default)]
pub struct StripedCounter(Arc<Striped>);

impl StripedCounter {
    pub fn inc(&self) {
        self.0.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl std::fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StripedCounter").field(&self.get()).finish()
    }
}

impl TypedMetric for StripedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for StripedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Most upper bounds a [`StripedHistogram`] takes (the `+Inf` bucket comes on top).
pub const MAX_BOUNDS: usize = 16;

/// One thread's observations, on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct HistSlot {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    /// The sum of the observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// A histogram of durations, in seconds, with fixed upper bounds.
#[derive(Clone)]
pub struct StripedHistogram(Arc<HistInner>);

struct HistInner {
    /// Upper bounds in seconds, ascending, at most [`MAX_BOUNDS`].
    bounds: &'static [f64],
    slots: [HistSlot; SLOTS],
}

impl StripedHistogram {
    /// A histogram with these upper bounds (ascending, at most [`MAX_BOUNDS`]).
    pub fn new(bounds: &'static [f64]) -> StripedHistogram {
        assert!(bounds.len() <= MAX_BOUNDS && bounds.is_sorted());
        StripedHistogram(Arc::new(HistInner {
            bounds,
            slots: std::array::from_fn(|_| HistSlot::default()),
        }))
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let h = &*self.0;
        let at = h.bounds.partition_point(|b| *b < secs);
        let s = &h.slots[slot()];
        s.buckets[at].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        s.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts with their upper bounds), summed over slots.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let h = &*self.0;
        let mut buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .map(|b| (b, 0))
            .collect();
        let mut nanos = 0u64;
        for s in &h.slots {
            for (i, b) in buckets.iter_mut().enumerate() {
                b.1 += s.buckets[i].load(Ordering::Relaxed);
            }
            nanos = nanos.wrapping_add(s.sum_nanos.load(Ordering::Relaxed));
        }
        let count = buckets.iter().map(|b| b.1).sum();
        (nanos as f64 / 1e9, count, buckets)
    }
}

impl std::fmt::Debug for StripedHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sum, count, _) = self.snapshot();
        f.debug_struct("StripedHistogram")
            .field("sum", &sum)
            .field("count", &count)
            .finish()
    }
}

impl TypedMetric for StripedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for StripedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(h: &StripedHistogram) -> String {
        let mut r = prometheus_client::registry::Registry::default();
        r.register("t_seconds", "test", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    /// Observations from many threads all land, each in the first bucket whose bound holds it
    /// (a value equal to a bound counts in that bucket), and the text is the library's
    /// histogram's: cumulative buckets, `+Inf`, sum and count.
    #[test]
    fn observations_from_many_threads_land_in_their_buckets() {
        static BOUNDS: [f64; 3] = [0.001, 0.01, 0.1];
        let h = StripedHistogram::new(&BOUNDS);
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        h.observe(Duration::from_micros(500)); // 0.001
                        h.observe(Duration::from_millis(10)); // 0.01, on the bound
                        h.observe(Duration::from_secs(2)); // +Inf
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = text(&h);
        for needle in [
            "t_seconds_bucket{le=\"0.001\"} 2000\n",
            "t_seconds_bucket{le=\"0.01\"} 4000\n",
            "t_seconds_bucket{le=\"0.1\"} 4000\n",
            "t_seconds_bucket{le=\"+Inf\"} 6000\n",
            "t_seconds_count 6000\n",
            "t_seconds_sum 4021.0\n",
            "# TYPE t_seconds histogram\n",
        ] {
            assert!(t.contains(needle), "{needle:?} missing in\n{t}");
        }
    }

    #[test]
    fn a_counter_sums_its_threads() {
        let c = StripedCounter::default();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.inc()))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut r = prometheus_client::registry::Registry::default();
        r.register("t", "test", c.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(out.contains("# TYPE t counter\nt_total 8000\n"), "{out}");
    }
}
