//! Who is asking: credentials in, a [`Principal`] out. Every protocol logs in through
//! [`Identity::login`], so bans, `allowed_ips`, `protocols` and the cost of a refusal are the same
//! over SFTP, FTP and HTTP. Refusals carry a detail for the audit log; adapters send clients a
//! generic refusal.

pub mod api_key;
pub mod ban;
mod ban_table;
mod flight;
pub mod jwt;
pub mod password;
pub mod pubkey;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::ValidConfig;
use crate::policy::Rule;
use crate::secret::Secret;
use crate::vfs::VPath;
use ban::{BanList, BanStarted, Refused};
use password::Verifier;
use pubkey::PublicKey;

/// A front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// SSH File Transfer Protocol.
    Sftp,
    /// FTP and FTPS.
    Ftp,
    /// HTTP and HTTPS.
    Http,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 3] = [Protocol::Sftp, Protocol::Ftp, Protocol::Http];

    /// Lower-case name, as in the config and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sftp => "sftp",
            Protocol::Ftp => "ftp",
            Protocol::Http => "http",
        }
    }

    /// Parses a config word.
    pub fn parse(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user may administer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Files only.
    User,
    /// May also read `/v1/audit` and admin endpoints.
    Operator,
}

/// An authenticated user, cheap to clone.
#[derive(Clone)]
pub struct Principal(Arc<PrincipalInner>);

/// The fields of a [`Principal`].
#[derive(Debug)]
pub struct PrincipalInner {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The user's "/" in the virtual tree.
    pub home: VPath,
    /// Groups the user belongs to.
    pub groups: Vec<String>,
    /// Own rules and group rules (user-view paths).
    pub rules: Vec<Rule>,
}

impl Principal {
    /// Builds a principal (config loading and tests).
    pub fn new(inner: PrincipalInner) -> Self {
        Self(Arc::new(inner))
    }

    /// Login name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Role.
    pub fn role(&self) -> Role {
        self.0.role
    }

    /// Home directory (virtual path).
    pub fn home(&self) -> &VPath {
        &self.0.home
    }

    /// Permission rules.
    pub fn rules(&self) -> &[Rule] {
        &self.0.rules
    }

    /// Group names.
    pub fn groups(&self) -> &[String] {
        &self.0.groups
    }

    /// True for operators.
    pub fn is_operator(&self) -> bool {
        self.0.role == Role::Operator
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.0.name)
    }
}

/// What a client presented.
#[derive(Debug)]
pub enum Credentials<'a> {
    /// Name and password (SFTP, FTP, HTTP Basic).
    Password {
        /// Name tried.
        user: &'a str,
        /// Password tried.
        password: Secret<&'a str>,
    },
    /// A public key whose signature the SSH layer has already verified.
    PublicKey {
        /// Name tried.
        user: &'a str,
        /// SSH wire encoding of the key.
        blob: &'a [u8],
    },
    /// An API key (HTTP).
    ApiKey(Secret<&'a str>),
    /// A bearer JWT (proxy routes with `auth = ["jwt"]`).
    Jwt(Secret<&'a str>),
}

impl Credentials<'_> {
    /// The user name tried, for audit records (API keys name no user until matched).
    pub fn user_tried(&self) -> Option<&str> {
        match self {
            Credentials::Password { user, .. } | Credentials::PublicKey { user, .. } => Some(user),
            Credentials::ApiKey(_) | Credentials::Jwt(_) => None,
        }
    }
}

/// Why a login was refused. The detail goes to the audit log, never to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The source address is banned for too many failures.
    #[error("source address banned after repeated failures")]
    Banned,
    /// The account's password logins are locked after repeated failures.
    #[error("account locked after repeated failures")]
    AccountLocked,
    /// The address already has as many attempts in flight as it has failures left.
    #[error("too many login attempts in progress from this address")]
    TooManyAttempts,
    /// No password verification slot was free in time; the client should try again later.
    #[error("server busy verifying passwords")]
    Busy,
    /// The cluster's shared store is down and `on_store_error = "closed"`.
    #[error("shared limits store unavailable")]
    StoreUnavailable,
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// Wrong password, or the user has none.
    #[error("bad password")]
    BadPassword,
    /// The key is not one of the user's.
    #[error("public key not authorized")]
    BadKey,
    /// No API key matched.
    #[error("unknown api key")]
    BadApiKey,
    /// The user may not log in from this address.
    #[error("source address not allowed for user")]
    IpNotAllowed,
    /// The user may not use this protocol.
    #[error("protocol not allowed for user")]
    ProtocolNotAllowed,
    /// The user already has `max_sessions_per_user` sessions open.
    #[error("too many sessions open for this user")]
    TooManySessions,
    /// A JWT was refused (the reason is for the audit log).
    #[error("bad token: {0}")]
    BadToken(&'static str),
}

impl AuthError {
    /// True for refusals made before the credentials were looked at (ban, lock, throttle):
    /// the client should be told to go away or retry later, not that the password was wrong.
    pub fn is_throttle(self) -> bool {
        matches!(
            self,
            AuthError::Banned
                | AuthError::AccountLocked
                | AuthError::TooManyAttempts
                | AuthError::Busy
                | AuthError::StoreUnavailable
        )
    }
}

/// A refused login: why, and any ban or account lock this refusal started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub error: AuthError,
    /// Bans started by this failure (each is recorded once, when it starts).
    pub started: Vec<BanStarted>,
}

impl From<AuthError> for Refusal {
    fn from(error: AuthError) -> Self {
        Self {
            error,
            started: Vec::new(),
        }
    }
}

/// Credential data for one user.
#[derive(Debug)]
struct Account {
    principal: Principal,
    password_hash: Option<Secret<String>>,
    public_keys: Vec<PublicKey>,
    allowed_ips: Option<Vec<IpNet>>,
    protocols: Option<Vec<Protocol>>,
}

/// The account's `allowed_ips` and `protocols`, once its credentials checked out.
fn admit(
    account: &Account,
    key_name: Option<String>,
    ip: IpAddr,
    protocol: Protocol,
) -> Result<(Principal, Option<String>), AuthError> {
    if let Some(nets) = &account.allowed_ips
        && !nets.iter().any(|n| n.contains(&ip))
    {
        return Err(AuthError::IpNotAllowed);
    }
    if let Some(protos) = &account.protocols
        && !protos.contains(&protocol)
    {
        return Err(AuthError::ProtocolNotAllowed);
    }
    Ok((account.principal.clone(), key_name))
}

/// Why the ban list refused to start an attempt, as the login's error.
fn refused(r: Refused) -> AuthError {
    match r {
        Refused::AddressBanned => AuthError::Banned,
        Refused::AccountLocked => AuthError::AccountLocked,
        Refused::TooManyInFlight => AuthError::TooManyAttempts,
        Refused::StoreUnavailable => AuthError::StoreUnavailable,
    }
}

/// How long a verified password is remembered. HTTP Basic sends the password with every
/// request, and argon2 is deliberately slow: without this, each request would cost tens of ms.
const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(120);

/// Users, API keys and the ban list.
pub struct Identity {
    accounts: HashMap<String, Account>,
    /// Salted sha256 of (user, password) pairs that verified recently; successes only.
    verified: moka::sync::Cache<[u8; 32], ()>,
    verified_salt: [u8; 32],
    api_key_hashes: Vec<[u8; 32]>,
    api_key_users: Vec<(String, String)>,
    /// Shared with the store a reload replaces: bans and counts survive a reload.
    bans: Arc<BanList>,
    /// Shared likewise (one bounded pool of password checks).
    verifier: Arc<Verifier>,
    /// One check at a time per (user, password); the others then find it cached.
    flights: flight::Flights,
    jwt: Option<jwt::JwtVerifier>,
    /// Verified instead of a real hash for unknown users, so they cost the same time.
    dummy_hash: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("users", &self.accounts.len())
            .field("api_keys", &self.api_key_users.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Builds the identity store from a validated config; bans and failure counts are kept in
    /// `shared` when the cluster has one.
    pub fn new(cfg: &ValidConfig, shared: Option<Arc<crate::cluster::SharedStore>>) -> Self {
        Self::build(
            cfg,
            Arc::new(BanList::with_store(
                cfg.config.limits.login_failures,
                shared,
            )),
            Arc::new(Verifier::for_this_machine()),
        )
    }

    /// The store for a reloaded config: users, groups, keys and JWT settings from `cfg`; the
    /// bans, failure counts and password-check pool of `previous` carried over. Cached password
    /// verifications are not (a password may have changed).
    pub fn reloaded(cfg: &ValidConfig, previous: &Identity) -> Self {
        Self::build(cfg, previous.bans.clone(), previous.verifier.clone())
    }

    fn build(cfg: &ValidConfig, bans: Arc<BanList>, verifier: Arc<Verifier>) -> Self {
        let accounts = cfg
            .users
            .iter()
            .map(|u| {
                let principal = Principal::new(PrincipalInner {
                    name: u.name.clone(),
                    role: u.role,
                    home: u.home.clone(),
                    groups: u.groups.clone(),
                    rules: u.rules.clone(),
                });
                let account = Account {
                    principal,
                    password_hash: u.password_hash.clone().map(Secret::new),
                    public_keys: u.public_keys.clone(),
                    allowed_ips: u.allowed_ips.clone(),
                    protocols: u.protocols.clone(),
                };
                (u.name.clone(), account)
            })
            .collect();
        let dummy_hash = password::hash(&uuid::Uuid::new_v4().to_string()).unwrap_or_default();
        let mut verified_salt = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut verified_salt);
        Self {
            accounts,
            verified: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
            verified_salt,
            api_key_hashes: cfg.api_keys.iter().map(|k| k.hash).collect(),
            api_key_users: cfg
                .api_keys
                .iter()
                .map(|k| (k.name.clone(), k.user.clone()))
                .collect(),
            bans,
            verifier,
            flights: flight::Flights::default(),
            // Validation already built it once, so this cannot fail here.
            jwt: cfg
                .config
                .jwt
                .as_ref()
                .and_then(|j| jwt::JwtVerifier::new(j).ok()),
            dummy_hash,
        }
    }

    /// Remaining ban for an address (adapters may refuse before asking for credentials).
    pub async fn banned(&self, ip: IpAddr) -> bool {
        self.bans.banned(ip).await.is_some()
    }

    /// Whether `blob` is one of `user`'s keys, before the client proves it holds it.
    /// Not a login attempt: clients offer several keys, so misses are not counted.
    pub fn key_acceptable(&self, user: &str, blob: &[u8]) -> bool {
        self.accounts
            .get(user)
            .is_some_and(|a| pubkey::matches(&a.public_keys, blob))
    }

    /// Whether the user exists and has a password (to tell SSH clients which methods to try).
    pub fn has_password(&self, user: &str) -> bool {
        self.accounts
            .get(user)
            .is_some_and(|a| a.password_hash.is_some())
    }

    /// The one login path: reserves the attempt with the ban list (refused at once when the
    /// address is banned, the account locked, or as many attempts are in flight as failures are
    /// left), checks the credentials (argon2 on the bounded verifier, the same cost for unknown
    /// users), then `allowed_ips` and `protocols`. Returns the principal and, for API keys, the
    /// key's name; a refusal says which bans it started.
    pub async fn login(
        &self,
        creds: &Credentials<'_>,
        protocol: Protocol,
        ip: IpAddr,
    ) -> Result<(Principal, Option<String>), Refusal> {
        // Account locks cover password guessing only: a public key cannot be guessed, and
        // locking key logins would let anyone shut a partner out.
        let account = match creds {
            Credentials::Password { user, .. } if self.accounts.contains_key(*user) => Some(*user),
            _ => None,
        };
        // A password that verified moments ago is no guess: nothing to reserve or count, only a
        // ban or lock stops it (one store call instead of two on every HTTP Basic request). If
        // it is refused for another reason, it goes the counted way below.
        if let Some(ok) = self.cached_login(creds, protocol, ip, account).await? {
            return Ok(ok);
        }
        // Not cached: the same credentials being checked right now (a connection pool opening
        // at once) are waited for, then found cached; only one attempt is reserved and run.
        let _turn = match creds {
            Credentials::Password { user, password } => {
                let turn = self
                    .flights
                    .turn(self.verified_key(user, password.expose()))
                    .await;
                if let Some(ok) = self.cached_login(creds, protocol, ip, account).await? {
                    return Ok(ok);
                }
                Some(turn)
            }
            _ => None,
        };
        let attempt = self.bans.reserve(ip, account).await.map_err(refused)?;
        let result = self
            .check(creds, ip)
            .await
            .and_then(|(a, k)| admit(a, k, ip, protocol));
        match result {
            Ok(ok) => {
                attempt.succeeded().await;
                Ok(ok)
            }
            // Not a verdict on the credentials: the reservation is released uncounted.
            Err(AuthError::Busy) => Err(AuthError::Busy.into()),
            Err(error) => {
                let started = attempt.failed().await;
                for b in &started {
                    match b {
                        BanStarted::Address(a, d) => {
                            tracing::warn!(address = %ban::addr_label(*a), secs = d.as_secs(), "source address banned after repeated login failures")
                        }
                        BanStarted::Account(u, d) => {
                            tracing::warn!(user = %u, secs = d.as_secs(), "account's password logins locked after repeated failures")
                        }
                    }
                }
                Err(Refusal { error, started })
            }
        }
    }

    /// The login of a password that verified recently (None: not cached, or refused for
    /// another reason than a ban or lock).
    async fn cached_login(
        &self,
        creds: &Credentials<'_>,
        protocol: Protocol,
        ip: IpAddr,
        account: Option<&str>,
    ) -> Result<Option<(Principal, Option<String>)>, Refusal> {
        if !self.password_cached(creds) {
            return Ok(None);
        }
        self.bans.standing(ip, account).await.map_err(refused)?;
        Ok(self
            .check(creds, ip)
            .await
            .and_then(|(a, k)| admit(a, k, ip, protocol))
            .ok())
    }

    /// Whether `creds` are a password of an existing account that verified recently.
    fn password_cached(&self, creds: &Credentials<'_>) -> bool {
        match creds {
            Credentials::Password { user, password } => {
                self.accounts
                    .get(*user)
                    .is_some_and(|a| a.password_hash.is_some())
                    && self
                        .verified
                        .contains_key(&self.verified_key(user, password.expose()))
            }
            _ => false,
        }
    }

    fn verified_key(&self, user: &str, password: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.verified_salt);
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    async fn check(
        &self,
        creds: &Credentials<'_>,
        ip: IpAddr,
    ) -> Result<(&Account, Option<String>), AuthError> {
        match creds {
            Credentials::Password { user, password } => {
                let account = self.accounts.get(*user);
                let key = self.verified_key(user, password.expose());
                if let Some(a) = account
                    && a.password_hash.is_some()
                    && self.verified.contains_key(&key)
                {
                    return Ok((a, None));
                }
                let phc = account
                    .and_then(|a| a.password_hash.as_ref())
                    .map_or(self.dummy_hash.as_str(), |h| h.expose().as_str());
                let ok = self
                    .verifier
                    .check(ban::addr_key(ip), phc, password.expose().as_bytes())
                    .await
                    .map_err(|_| AuthError::Busy)?;
                match account {
                    None => Err(AuthError::UnknownUser),
                    Some(a) if ok && a.password_hash.is_some() => {
                        self.verified.insert(key, ());
                        Ok((a, None))
                    }
                    Some(_) => Err(AuthError::BadPassword),
                }
            }
            Credentials::PublicKey { user, blob } => match self.accounts.get(*user) {
                None => Err(AuthError::UnknownUser),
                Some(a) if pubkey::matches(&a.public_keys, blob) => Ok((a, None)),
                Some(_) => Err(AuthError::BadKey),
            },
            Credentials::ApiKey(key) => {
                let idx = api_key::find(&self.api_key_hashes, key.expose())
                    .ok_or(AuthError::BadApiKey)?;
                let (name, user) = &self.api_key_users[idx];
                let account = self.accounts.get(user).ok_or(AuthError::UnknownUser)?;
                Ok((account, Some(name.clone())))
            }
            Credentials::Jwt(token) => {
                let verifier = self
                    .jwt
                    .as_ref()
                    .ok_or(AuthError::BadToken("no [jwt] section"))?;
                let user = verifier
                    .verify(token.expose())
                    .map_err(AuthError::BadToken)?;
                self.accounts
                    .get(&user)
                    .map(|a| (a, None))
                    .ok_or(AuthError::UnknownUser)
            }
        }
    }
}
