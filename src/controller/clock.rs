//! The time a controller reads. Production code reads the system clock; tests use a
//! [`ManualClock`] and move it forward, so schedules and retention over a month run in
//! seconds without sleeping.

use jiff::{SignedDuration, Timestamp};
use std::sync::{Arc, Mutex};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;

    /// For a clock that jumps (tests), a channel that changes when it does, so the
    /// controllers look at everything again at the new time. The system clock has none.
    fn jumps(&self) -> Option<tokio::sync::watch::Receiver<Timestamp>> {
        None
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>, Arc<tokio::sync::watch::Sender<Timestamp>>);

impl ManualClock {
    pub fn at(t: Timestamp) -> Self {
        ManualClock(Arc::new(Mutex::new(t)), Arc::new(tokio::sync::watch::Sender::new(t)))
    }

    /// Moves the time forward (or back, for a negative duration).
    pub fn advance(&self, by: SignedDuration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = t.checked_add(by).unwrap_or(*t);
        self.1.send_replace(*t);
    }

    pub fn set(&self, to: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
        self.1.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn jumps(&self) -> Option<tokio::sync::watch::Receiver<Timestamp>> {
        Some(self.1.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let c = ManualClock::at(t0);
        let shared = c.clone();
        assert_eq!(c.now(), t0);
        c.advance(SignedDuration::from_hours(24 * 31));
        assert_eq!(shared.now().to_string(), "2026-02-01T00:00:00Z");
    }
}
