//! The configuration file: serde types that mirror CONTRACT.md key for key, loading with `${ENV}`
//! expansion and line-accurate errors (`load`), and cross-reference validation into a [`ValidConfig`]
//! (`validate`). Unknown keys are errors everywhere (`deny_unknown_fields`).

mod cluster;
mod hooks;
mod load;
mod locate;
mod routes;
mod validate;
mod validate_isolation;
mod validate_routes;
mod validate_storage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cluster::{ClusterConfig, ShipConfig, StoreErrorMode};
pub use hooks::{CsvConfig, EventConfig, ValidateConfig};
pub use load::{ConfigError, ConfigErrors, EnvLookup, load_file, load_str};
pub use routes::{
    AggregateConfig, AggregatePartConfig, CacheConfig, HealthCheckConfig, RateLimitConfig,
    RouteConfig,
};
pub use validate::{
    ValidApiKey, ValidBackend, ValidConfig, ValidGroup, ValidMount, ValidRule, ValidUser,
};

/// The built-in demo config (`gatehouse demo-config`, and `serve` without a config file).
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// Where the configuration comes from when none is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file.
    File(PathBuf),
    /// The built-in demo config.
    Demo,
}

impl ConfigSource {
    /// `explicit` if given, else `./gatehouse.toml` if it exists, else the demo config.
    pub fn find(explicit: Option<&Path>) -> Self {
        match explicit {
            Some(p) => Self::File(p.to_path_buf()),
            None if Path::new("gatehouse.toml").exists() => Self::File("gatehouse.toml".into()),
            None => Self::Demo,
        }
    }

    /// Loads and validates it.
    pub fn load(&self, env: EnvLookup<'_>) -> Result<ValidConfig, ConfigErrors> {
        match self {
            Self::File(p) => load_file(p, env),
            Self::Demo => load_str(DEMO_CONFIG, "built-in demo config", env),
        }
    }
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Demo => f.write_str("built-in demo config"),
        }
    }
}

/// Loads the config `serve`, `check` and `audit` use: see [`ConfigSource::find`].
pub fn load_default(
    explicit: Option<&Path>,
    env: EnvLookup<'_>,
) -> Result<ValidConfig, ConfigErrors> {
    ConfigSource::find(explicit).load(env)
}

/// The whole configuration file, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Audit log settings.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Connection and login limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The multi-node mode (shared limits and bans); absent = a single node.
    pub cluster: Option<ClusterConfig>,
    /// SFTP listener; absent = off.
    pub sftp: Option<SftpConfig>,
    /// FTP/FTPS listener; absent = off.
    pub ftp: Option<FtpConfig>,
    /// HTTP listener; absent = off.
    pub http: Option<HttpConfig>,
    /// JWT verification for routes with `auth = ["jwt"]`.
    pub jwt: Option<JwtConfig>,
    /// Named storage backends.
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    /// Where each backend appears in the virtual tree.
    #[serde(default)]
    pub mounts: Vec<MountConfig>,
    /// Permission groups.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// Users.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// API keys, each acting as a user.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Proxied upstream routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Fan-out aggregate endpoints.
    #[serde(default)]
    pub aggregates: Vec<AggregateConfig>,
    /// Checks an upload must pass before it becomes visible.
    #[serde(default)]
    pub validate: Vec<ValidateConfig>,
    /// Webhook receivers of upload (and other) events.
    #[serde(default)]
    pub events: Vec<EventConfig>,
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Host keys, staging and the default audit directory live here.
    pub state_dir: PathBuf,
    /// How long transfers in flight may run on after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Node name written into every audit record (default: the host name).
    pub node: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("./var"),
            shutdown_grace_secs: 30,
            node: None,
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Directory of the audit files (default `<state_dir>/audit`).
    pub dir: Option<PathBuf>,
    /// When records reach the disk.
    pub fsync: FsyncMode,
    /// Start a new file once the current one reaches this size (default 64 MiB).
    pub rotate_bytes: Option<u64>,
    /// Disk space kept allocated ahead of the records (default 8 MiB). Uploads, deletes and
    /// renames reserve room for their record before they take effect, downloads check there is
    /// room before they start; when the space cannot be kept (disk full, log failing), they are
    /// refused instead of happening unrecorded.
    pub reserve_bytes: Option<u64>,
    /// Ship rotated files, with signed checkpoints, to an object store (`[audit.ship]`).
    pub ship: Option<ShipConfig>,
}

/// `audit.fsync`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Every record is fsynced before the operation it records reports success.
    #[default]
    Always,
    /// fsync at most every 100 ms.
    Batch,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Concurrent connections per listener.
    pub max_connections: usize,
    /// Idle sessions are closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// Failed logins per source IP (all protocols together) before a ban.
    pub login_failures: LoginFailuresConfig,
    /// Concurrent connections from one source address (IPv6: one /64) per listener, counted
    /// from accept, before login.
    pub max_connections_per_ip: usize,
    /// Concurrent SFTP and FTP sessions of one user, over all listeners.
    pub max_sessions_per_user: usize,
    /// A connection must complete its login within this many seconds (SFTP, FTP).
    pub login_timeout_secs: u64,
    /// Refused logins recorded one by one per second, over all addresses; beyond it (and for
    /// attempts from banned addresses) they are counted in one summary record per minute.
    pub refused_login_records_per_sec: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            idle_timeout_secs: 300,
            login_failures: LoginFailuresConfig::default(),
            max_connections_per_ip: 64,
            max_sessions_per_user: 64,
            login_timeout_secs: 60,
            refused_login_records_per_sec: 20,
        }
    }
}

/// `limits.login_failures`
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginFailuresConfig {
    /// Failures allowed within the window.
    pub max: u32,
    /// Window over which failures are counted.
    pub window_secs: u64,
    /// How long a source IP stays banned (and an account's password logins locked).
    pub ban_secs: u64,
    /// Failed password logins to one account, from any address, within the window before its
    /// password logins are locked for `ban_secs` (default: twice `max`; 0 turns it off).
    pub account_max: Option<u32>,
}

impl Default for LoginFailuresConfig {
    fn default() -> Self {
        Self {
            max: 5,
            window_secs: 300,
            ban_secs: 900,
            account_max: None,
        }
    }
}

/// `[sftp]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    /// Listen address, `ip:port`.
    pub listen: String,
    /// Host key files (OpenSSH format); an ed25519 key is created where one is missing.
    #[serde(default)]
    pub host_keys: Vec<PathBuf>,
    /// Authentication attempts allowed per connection.
    #[serde(default = "default_max_auth_attempts")]
    pub max_auth_attempts: usize,
    /// Key exchange algorithms offered, in order (default: [`SSH_DEFAULT_KEX`]).
    pub kex: Option<Vec<String>>,
    /// Ciphers offered, in order (default: [`SSH_DEFAULT_CIPHERS`]).
    pub ciphers: Option<Vec<String>>,
    /// MACs offered, in order (default: [`SSH_DEFAULT_MACS`]).
    pub macs: Option<Vec<String>>,
    /// Peers (CIDRs) that must start every connection with a PROXY protocol v1/v2 header (a
    /// load balancer); the client it names is the one bans, limits and audit see. Others send
    /// none.
    #[serde(default)]
    pub proxy_protocol: Vec<String>,
}

/// Key exchanges offered by default: what Mozilla's "modern" OpenSSH guideline and ssh-audit's
/// default policy accept (post-quantum hybrids and curve25519; no NIST curves, no SHA-1, no
/// 2048-bit groups).
pub const SSH_DEFAULT_KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group-exchange-sha256",
];
/// Every key exchange `[sftp] kex` may name (legacy partners may need the NIST curves).
pub const SSH_SUPPORTED_KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group14-sha256",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
];
/// Ciphers offered by default (AEADs first; CTR only with encrypt-then-MAC).
pub const SSH_DEFAULT_CIPHERS: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
];
/// Every cipher `[sftp] ciphers` may name.
pub const SSH_SUPPORTED_CIPHERS: &[&str] = SSH_DEFAULT_CIPHERS;
/// MACs offered by default: encrypt-then-MAC first; then plain HMAC-SHA2, which Mozilla's modern
/// guideline keeps and ssh-audit only warns about, because libssh2 before 1.11 (curl and many
/// partner tools on current LTS distributions) has no ETM MAC and would not connect at all.
/// Remove them with `[sftp] macs` where no such client remains.
pub const SSH_DEFAULT_MACS: &[&str] = &[
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512",
    "hmac-sha2-256",
];
/// Every MAC `[sftp] macs` may name (the encrypt-and-MAC ones for legacy partners).
pub const SSH_SUPPORTED_MACS: &[&str] = &[
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512",
    "hmac-sha2-256",
];

fn default_max_auth_attempts() -> usize {
    6
}

/// `[ftp]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FtpConfig {
    /// Control connection listen address, `ip:port`.
    pub listen: String,
    /// Inclusive passive data port range.
    #[serde(default = "default_passive_ports")]
    pub passive_ports: [u16; 2],
    /// IPv4 address announced in PASV replies (default: the address the client connected to).
    pub passive_host: Option<String>,
    /// Explicit FTPS (AUTH TLS).
    pub tls: Option<FtpTlsConfig>,
    /// Load balancers that send a PROXY protocol header (v1 or v2) on control and passive data
    /// connections, and must: `["10.0.0.0/24"]`. The older `true` means libunftp's own proxy
    /// mode (v1, every connection through the control port); `false` is off.
    #[serde(default)]
    pub proxy_protocol: FtpProxyProtocol,
}

/// `ftp.proxy_protocol`: the peers' list, or the older switch.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum FtpProxyProtocol {
    /// `true` / `false` (the older form).
    Switch(bool),
    /// Peers (CIDRs) that send the header.
    Peers(Vec<String>),
}

impl Default for FtpProxyProtocol {
    fn default() -> Self {
        Self::Switch(false)
    }
}

fn default_passive_ports() -> [u16; 2] {
    [50000, 50099]
}

/// `[ftp.tls]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FtpTlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Refuse USER/PASS and data transfers before AUTH TLS / PROT P.
    #[serde(default)]
    pub required: bool,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address, `ip:port`.
    pub listen: String,
    /// Serve HTTPS with these files.
    pub tls: Option<TlsConfig>,
    /// Separate unauthenticated listener for `/metrics`.
    pub metrics_listen: Option<String>,
    /// Deadline for receiving a request's headers.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Peers (CIDRs) whose `X-Forwarded-For` / `-Host` / `-Proto` are believed; from anyone
    /// else those headers are replaced with what the gateway sees.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

fn default_header_timeout() -> u64 {
    30
}

/// `[http.tls]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[jwt]`: how bearer JWTs on `auth = ["jwt"]` routes are verified.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms: "HS256", "RS256", "ES256".
    pub algorithms: Vec<String>,
    /// Shared secret for HS256.
    pub secret: Option<String>,
    /// PEM public key for RS256/ES256.
    pub public_key: Option<PathBuf>,
    /// JWKS file for RS256/ES256 (keys chosen by `kid`).
    pub jwks: Option<PathBuf>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Claim naming the user (default `sub`).
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Clock skew allowed on `exp`/`nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_user_claim() -> String {
    "sub".into()
}

fn default_leeway() -> u64 {
    30
}

/// `[backends.NAME]`: one flat table for every kind, so that each key keeps its own line in errors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// "local" | "s3" | "azure" | "gcs" | "webdav" | "sftp" | "memory".
    pub kind: BackendKind,
    /// local: directory holding the files; sftp: directory on the upstream server.
    pub root: Option<PathBuf>,
    /// s3: bucket name.
    pub bucket: Option<String>,
    /// s3: endpoint URL for S3-compatible servers (absent = AWS).
    pub endpoint: Option<String>,
    /// s3: region.
    pub region: Option<String>,
    /// s3: access key id (absent: the AWS environment/instance credentials).
    pub access_key_id: Option<String>,
    /// s3: secret access key.
    pub secret_access_key: Option<String>,
    /// s3: virtual-hosted-style requests (default false: path style, what S3-compatible servers expect).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// s3, azure, gcs: multipart (block) part size in MiB (default 8; S3 and GCS parts are at
    /// least 5 MiB).
    pub part_size_mib: Option<u64>,
    /// azure: storage account.
    pub account: Option<String>,
    /// azure: container.
    pub container: Option<String>,
    /// azure: shared access key (absent: the Azure environment's credentials).
    pub access_key: Option<String>,
    /// gcs: service account JSON file (absent: the Google environment's credentials).
    pub service_account_file: Option<PathBuf>,
    /// webdav: the share's URL (a collection).
    pub url: Option<String>,
    /// webdav, sftp: user name.
    pub user: Option<String>,
    /// webdav, sftp: password.
    pub password: Option<String>,
    /// sftp: the upstream server, `host:port`.
    pub address: Option<String>,
    /// sftp: private key file for public-key login.
    pub private_key: Option<PathBuf>,
    /// sftp: the upstream's host key, pinned (`ssh-ed25519 AAAA...`); required.
    pub host_key: Option<String>,
    /// sftp: pooled SSH connections to the upstream (default 4).
    pub max_sessions: Option<usize>,
}

/// `backends.*.kind`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Local directory.
    Local,
    /// S3 or S3-compatible object store.
    S3,
    /// Azure Blob Storage (or Azurite).
    Azure,
    /// Google Cloud Storage (or an emulator).
    Gcs,
    /// A WebDAV share (RFC 4918).
    Webdav,
    /// An upstream SFTP server.
    Sftp,
    /// In-process memory (tests, scratch).
    Memory,
}

/// `[[mounts]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// Virtual path.
    pub path: String,
    /// Backend name.
    pub backend: String,
    /// Key prefix inside the backend.
    #[serde(default)]
    pub prefix: String,
}

/// One `{ path, allow }` permission rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    /// Path in the user's view (inside `home`).
    pub path: String,
    /// Permission words.
    pub allow: Vec<String>,
}

/// `[[groups]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Group name.
    pub name: String,
    /// Rules every member gets.
    #[serde(default)]
    pub permissions: Vec<PermissionConfig>,
}

/// `[[users]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    /// OpenSSH public keys for SFTP.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// The user's "/" (virtual path).
    #[serde(default = "default_home")]
    pub home: String,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The user's own rules.
    #[serde(default)]
    pub permissions: Vec<PermissionConfig>,
    /// CIDRs allowed to log in (absent = any).
    pub allowed_ips: Option<Vec<String>>,
    /// Protocols allowed (absent = all).
    pub protocols: Option<Vec<String>>,
    /// "user" | "operator".
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_home() -> String {
    "/".into()
}

fn default_role() -> String {
    "user".into()
}

/// `[[api_keys]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Key name (shown in audit details, never the key).
    pub name: String,
    /// The user the key acts as.
    pub user: String,
    /// `sha256:<hex>` of the key.
    pub key_hash: String,
}
