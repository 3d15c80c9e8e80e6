//! The operator console's sessions: after a login form, a random token (the cookie's value,
//! never logged) names the operator and the CSRF token every state change must carry; a
//! session expires after `IDLE` without a request. Operators who use HTTP Basic instead get a
//! CSRF token derived from their name with a per-process key, so a cross-site form cannot
//! borrow the browser's remembered credentials either.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A console session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(15 * 60);

/// A logged-in operator.
#[derive(Debug, Clone)]
pub struct ConsoleLogin {
    /// The operator's name.
    pub operator: String,
    /// The token forms must echo.
    pub csrf: String,
}

/// The last whole-chain verification an operator started from the console.
#[derive(Debug, Clone)]
pub struct FullVerify {
    /// When it finished (RFC 3339).
    pub finished: String,
    /// `ok: N records` or the failure (file, seq, reason).
    pub result: Result<String, String>,
}

/// Console sessions.
pub struct ConsoleSessions {
    cache: moka::sync::Cache<String, ConsoleLogin>,
    key: [u8; 32],
    /// The last whole-chain verification (None: none run since start; `running` while one is).
    pub full_verify: std::sync::Mutex<Option<FullVerify>>,
    /// A whole-chain verification is running.
    pub verifying: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ConsoleSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConsoleSessions({})", self.cache.entry_count())
    }
}

impl Default for ConsoleSessions {
    fn default() -> Self {
        Self::new(IDLE)
    }
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl ConsoleSessions {
    /// A store whose sessions expire after `idle`.
    pub fn new(idle: Duration) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(idle)
                .build(),
            key: rand::random(),
            full_verify: std::sync::Mutex::new(None),
            verifying: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Starts a session for `operator`; returns its token (the cookie value).
    pub fn start(&self, operator: &str) -> (String, ConsoleLogin) {
        let token = random_token();
        let login = ConsoleLogin {
            operator: operator.to_string(),
            csrf: random_token(),
        };
        self.cache.insert(token.clone(), login.clone());
        (token, login)
    }

    /// The session a token names (and keeps it alive), if it has not expired.
    pub fn get(&self, token: &str) -> Option<ConsoleLogin> {
        if token.len() != 64 {
            return None;
        }
        self.cache.get(token)
    }

    /// Whether a token's session is still live, without keeping it alive (a live tail that
    /// streams on its own does not count as the operator's activity).
    pub fn is_live(&self, token: &str) -> bool {
        self.cache.contains_key(token)
    }

    /// Ends a session.
    pub fn end(&self, token: &str) {
        self.cache.invalidate(token);
    }

    /// The CSRF token of an operator who authenticates with HTTP Basic.
    pub fn basic_csrf(&self, operator: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"console-basic-csrf\0");
        mac.update(operator.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Whether a presented CSRF token is the expected one (constant time).
pub fn csrf_ok(expected: &str, presented: &str) -> bool {
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_csrf_is_checked() {
        let s = ConsoleSessions::new(Duration::from_millis(200));
        let (t, login) = s.start("root");
        assert_eq!(s.get(&t).map(|l| l.operator).as_deref(), Some("root"));
        assert!(csrf_ok(&login.csrf, &login.csrf));
        assert!(!csrf_ok(&login.csrf, "x"));
        std::thread::sleep(Duration::from_millis(400));
        s.cache.run_pending_tasks();
        assert!(s.get(&t).is_none());
        assert_ne!(s.basic_csrf("a"), s.basic_csrf("b"));
        assert!(s.get("short").is_none());
    }
}
