//! argon2id password hashes: creating them (`hash-password`), validating PHC strings from the
//! config, and checking them on the [`Verifier`]: a few dedicated threads, never tokio's blocking
//! pool (which local-disk I/O uses), bounded globally and per source address so a burst of
//! logins costs at most `threads` × ~19 MiB and cannot starve file transfers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::secret::Secret;

/// Hashes a password with argon2id and the crate's default parameters (m=19456, t=2, p=1).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that a config string is an argon2id PHC hash.
pub fn validate(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC password hash ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "password hashes must be argon2id (this one is {}); make one with `gatehouse hash-password`",
            parsed.algorithm
        ));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("PHC string has no salt or hash".into());
    }
    Ok(())
}

/// Verifies `password` against `phc`. CPU-heavy (tens of ms): call from `spawn_blocking`.
pub fn verify(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Verifications one source address (as counted by the ban list) may run at once.
const PER_ADDR: usize = 2;
/// How long an attempt may wait for a verification slot before it is told to try later.
const WAIT: Duration = Duration::from_secs(2);

/// The verifier had no free slot within [`WAIT`]: the client should try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress; try again later")]
pub struct Busy;

struct Job {
    phc: Secret<String>,
    password: Secret<Vec<u8>>,
    done: oneshot::Sender<bool>,
}

/// Runs argon2 verifications on its own threads, bounded.
pub struct Verifier {
    jobs: std::sync::mpsc::Sender<Job>,
    global: Arc<Semaphore>,
    per_addr: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    wait: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("free", &self.global.available_permits())
            .finish()
    }
}

impl Verifier {
    /// Starts `threads` verifier threads (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("gatehouse-argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
                            guard.recv()
                        };
                        let Ok(job) = job else { return };
                        let ok = verify(job.phc.expose(), job.password.expose());
                        let _ = job.done.send(ok);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password verifier thread");
            }
        }
        Self {
            jobs: tx,
            global: Arc::new(Semaphore::new(threads)),
            per_addr: Mutex::new(HashMap::new()),
            wait: WAIT,
        }
    }

    /// A verifier sized for this machine: one thread per core, at most four.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::new(cores.min(4))
    }

    fn addr_slot(&self, addr: IpAddr) -> Arc<Semaphore> {
        let mut map = self.per_addr.lock().unwrap_or_else(|e| e.into_inner());
        // Forget addresses with nothing in flight (only the map holds their semaphore).
        if map.len() > 1024 {
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Arc::clone(
            map.entry(addr)
                .or_insert_with(|| Arc::new(Semaphore::new(PER_ADDR))),
        )
    }

    async fn permit(
        sem: Arc<Semaphore>,
        until: tokio::time::Instant,
    ) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout_at(until, sem.acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Checks `password` against `phc` for a client at `addr` (an address key from the ban
    /// list). Waits at most [`WAIT`] for a slot.
    pub async fn check(&self, addr: IpAddr, phc: &str, password: &[u8]) -> Result<bool, Busy> {
        let until = tokio::time::Instant::now() + self.wait;
        let _mine = Self::permit(self.addr_slot(addr), until)
            .await
            .ok_or(Busy)?;
        let _global = Self::permit(Arc::clone(&self.global), until)
            .await
            .ok_or(Busy)?;
        let (done, result) = oneshot::channel();
        let job = Job {
            phc: Secret::new(phc.to_string()),
            password: Secret::new(password.to_vec()),
            done,
        };
        self.jobs.send(job).map_err(|_| Busy)?;
        result.await.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = hash("demo").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        validate(&h).unwrap();
        assert!(verify(&h, b"demo"));
        assert!(!verify(&h, b"Demo"));
        assert!(!verify("garbage", b"demo"));
    }

    #[tokio::test]
    async fn the_verifier_bounds_each_address() {
        let h = hash("pw").unwrap();
        let mut v = Verifier::new(1);
        v.wait = Duration::from_millis(50);
        assert_eq!(
            v.check("10.0.0.1".parse().unwrap(), &h, b"pw").await,
            Ok(true)
        );
        assert_eq!(
            v.check("10.0.0.1".parse().unwrap(), &h, b"no").await,
            Ok(false)
        );
        // Hold both of one address's slots: its next check waits, then is told to try later.
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        let slot = v.addr_slot(addr);
        let _a = slot.clone().try_acquire_owned().unwrap();
        let _b = slot.try_acquire_owned().unwrap();
        let r = v.check(addr, &h, b"pw").await;
        assert_eq!(r, Err(Busy));
    }

    #[test]
    fn refuses_other_formats() {
        assert!(validate("plain").is_err());
        assert!(validate("$2b$12$abcdefghijklmnopqrstuv").is_err());
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$2S9YmqoxDXrQ9mOYrq0NmQ";
        assert!(validate(argon2i).unwrap_err().contains("argon2id"));
    }
}
