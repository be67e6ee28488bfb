//! How long to wait before trying again: the one exponential backoff of scorch (a node's
//! retries in the engine, an endpoint's requests in the model).

use std::time::Duration;

/// Exponential backoff: `first` before the second try, doubling each time, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Backoff {
    /// The wait after failure number `failures` (from 1): `first · 2^(failures − 1)`, at
    /// most `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_doubles_from_the_first_wait_up_to_the_longest() {
        let b = Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(16),
        };
        let waits: Vec<u64> = (1..=8).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 16000, 16000]);
        assert_eq!(b.delay(0), Duration::from_millis(500));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(16));
    }
}
