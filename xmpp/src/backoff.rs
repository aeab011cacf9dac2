//! Exponential backoff with jitter for reconnecting the component link.

use std::time::Duration;

/// Doubles from `base` up to `max`; each delay is jittered by ±25 %.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            next: base,
        }
    }

    /// Back to the base delay (after a successful connection).
    pub(crate) fn reset(&mut self) {
        self.next = self.base;
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        let factor = 0.75 + rand::random::<f64>() * 0.5;
        nominal.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let d: Vec<_> = (0..12).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(75) && d[0] <= Duration::from_millis(125));
        assert!(d[1] >= Duration::from_millis(150) && d[1] <= Duration::from_millis(250));
        assert!(d[11] >= Duration::from_millis(7500) && d[11] <= Duration::from_millis(12500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
