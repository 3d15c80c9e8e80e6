//! One password check at a time per (user, password): concurrent logins with the same
//! credentials (an application's connection pool opening at once, each request with the same
//! HTTP Basic header) wait for the first one's verdict instead of each reserving a login
//! attempt and running argon2. Before, a pool of 32 to 48 connections opening on a fresh
//! gateway had some of its first requests refused `503` (more attempts in flight from the
//! address than failures allowed), though every one carried the right password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// Keys (salted hashes of the credentials, never the credentials) with a check in progress.
#[derive(Default)]
pub(crate) struct Flights {
    turns: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

/// Kept entries beyond which idle ones are dropped.
const KEEP: usize = 1024;

impl Flights {
    /// Waits until no other check of `key` is in progress; the check runs while the returned
    /// turn is held.
    pub async fn turn(&self, key: [u8; 32]) -> OwnedMutexGuard<()> {
        let slot = {
            let mut map = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            // Forget keys nobody holds or waits for (only the map has their mutex).
            if map.len() > KEEP {
                map.retain(|_, m| Arc::strong_count(m) > 1);
            }
            Arc::clone(map.entry(key).or_default())
        };
        slot.lock_owned().await
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.turns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_same_key_waits_other_keys_do_not() {
        let f = Arc::new(Flights::default());
        let first = f.turn([1; 32]).await;
        // Another key goes at once.
        drop(f.turn([2; 32]).await);
        // The same key waits for the first turn to end.
        let f2 = Arc::clone(&f);
        let second = tokio::spawn(async move { drop(f2.turn([1; 32]).await) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished());
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second turn follows the first")
            .expect("no panic");
    }

    #[tokio::test]
    async fn idle_keys_are_forgotten() {
        let f = Flights::default();
        let held = f.turn([0; 32]).await;
        for i in 0..=KEEP {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            drop(f.turn(k).await);
        }
        // With 1025 entries the last new key pruned every idle one: the held key and that one
        // are left.
        assert_eq!(f.len(), 2);
        drop(held);
    }
}
