//! Connection limits shared by the front doors: a cap on concurrent connections per listener,
//! released when the guard drops.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts a listener's open connections.
#[derive(Debug, Clone)]
pub struct ConnLimiter {
    max: usize,
    open: Arc<AtomicUsize>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnGuard {
    open: Arc<AtomicUsize>,
}

impl ConnLimiter {
    /// A limiter admitting at most `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Admits a connection if there is room.
    pub fn try_acquire(&self) -> Option<ConnGuard> {
        let mut cur = self.open.load(Ordering::Relaxed);
        loop {
            if cur >= self.max {
                return None;
            }
            match self
                .open
                .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(ConnGuard {
                        open: self.open.clone(),
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_releases() {
        let l = ConnLimiter::new(2);
        let a = l.try_acquire().unwrap();
        let _b = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        drop(a);
        assert!(l.try_acquire().is_some());
        assert_eq!(l.open(), 1);
    }
}
