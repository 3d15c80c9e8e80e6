//! Cross-reference and value checks on a parsed [`Config`], producing the [`ValidConfig`] the rest
//! of the program takes. Every problem is collected (not just the first) with the key path it is
//! about; `load` turns key paths into line numbers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::locate::KeyPath;
use super::{BackendConfig, BackendKind, Config, PermissionConfig, RateLimitConfig};
use crate::identity::pubkey::{self, PublicKey};
use crate::identity::{Protocol, Role, api_key, password};
use crate::policy::{Action, ActionSet, Rule};
use crate::route::{
    Aggregate, AuthScheme, CacheRule, HealthCheck, Quota, Route, RouteTable, Upstream, path_under,
};
use crate::secret::Secret;
use crate::vfs::VPath;

/// HTTP paths the gateway serves itself; routes may not take them.
pub const RESERVED_HTTP_PREFIXES: [&str; 4] = ["/v1", "/healthz", "/readyz", "/metrics"];

/// A storage backend, checked for its kind.
#[derive(Debug, Clone)]
pub enum ValidBackend {
    /// A local directory.
    Local {
        /// Directory holding the files.
        root: PathBuf,
    },
    /// S3 or S3-compatible.
    S3 {
        /// Bucket.
        bucket: String,
        /// Custom endpoint (S3-compatible servers).
        endpoint: Option<String>,
        /// Region.
        region: String,
        /// Static credentials, when given.
        access_key_id: Option<Secret<String>>,
        /// Static credentials, when given.
        secret_access_key: Option<Secret<String>>,
        /// Virtual-hosted-style requests instead of path style.
        virtual_hosted_style: bool,
        /// Multipart part size in bytes.
        part_size: usize,
    },
    /// Memory.
    Memory,
}

/// A mount: virtual path → backend + key prefix.
#[derive(Debug, Clone)]
pub struct ValidMount {
    /// Virtual path.
    pub path: VPath,
    /// Backend name.
    pub backend: String,
    /// Key prefix inside the backend, without leading or trailing `/`.
    pub prefix: String,
}

/// A permission rule as written in the config.
pub type ValidRule = Rule;

/// A group.
#[derive(Debug, Clone)]
pub struct ValidGroup {
    /// Name.
    pub name: String,
    /// Rules.
    pub rules: Vec<Rule>,
}

/// A user with everything parsed; `rules` already holds the group rules.
#[derive(Debug, Clone)]
pub struct ValidUser {
    /// Login name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    /// Authorized SSH keys.
    pub public_keys: Vec<PublicKey>,
    /// Home (virtual path).
    pub home: VPath,
    /// Own plus group rules.
    pub rules: Vec<Rule>,
    /// Allowed source networks (`None` = any).
    pub allowed_ips: Option<Vec<IpNet>>,
    /// Allowed protocols (`None` = all).
    pub protocols: Option<Vec<Protocol>>,
    /// Role.
    pub role: Role,
}

/// An API key.
#[derive(Debug, Clone)]
pub struct ValidApiKey {
    /// Name.
    pub name: String,
    /// User it acts as.
    pub user: String,
    /// sha256 of the key.
    pub hash: [u8; 32],
}

/// Listener addresses, parsed.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    /// SFTP.
    pub sftp: Option<SocketAddr>,
    /// FTP control.
    pub ftp: Option<SocketAddr>,
    /// HTTP.
    pub http: Option<SocketAddr>,
    /// Separate metrics listener.
    pub metrics: Option<SocketAddr>,
}

/// A config that passed every check.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// The document as parsed (for settings that need no further checking).
    pub config: Config,
    /// Listener addresses.
    pub listeners: Listeners,
    /// Backends by name.
    pub backends: BTreeMap<String, ValidBackend>,
    /// Mounts.
    pub mounts: Vec<ValidMount>,
    /// Users.
    pub users: Vec<ValidUser>,
    /// API keys.
    pub api_keys: Vec<ValidApiKey>,
    /// Proxy routes and aggregates.
    pub routes: RouteTable,
    /// Audit directory.
    pub audit_dir: PathBuf,
}

impl ValidConfig {
    /// How long shutdown waits for work in flight.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.config.gateway.shutdown_grace_secs)
    }
}

type Errors = Vec<(KeyPath, String)>;

/// Checks everything that serde cannot.
pub fn validate(config: Config) -> Result<ValidConfig, Errors> {
    let mut errs = Errors::new();
    let root = KeyPath::root();

    let listeners = check_listeners(&config, &mut errs);
    check_tls(&config, &mut errs);
    if config.limits.max_connections == 0 {
        errs.push((
            root.key("limits").key("max_connections"),
            "must be at least 1".into(),
        ));
    }
    if let Some(r) = config.audit.rotate_bytes
        && r < 4096
    {
        errs.push((
            root.key("audit").key("rotate_bytes"),
            "must be at least 4096".into(),
        ));
    }

    let backends = check_backends(&config, &mut errs);
    let mounts = check_mounts(&config, &mut errs);

    let mut groups: HashMap<&str, ValidGroup> = HashMap::new();
    for (i, g) in config.groups.iter().enumerate() {
        let p = root.key("groups").index(i);
        let rules = parse_rules(&g.permissions, false, &p.key("permissions"), &mut errs);
        if groups
            .insert(
                g.name.as_str(),
                ValidGroup {
                    name: g.name.clone(),
                    rules,
                },
            )
            .is_some()
        {
            errs.push((p.key("name"), format!("duplicate group name {:?}", g.name)));
        }
    }

    let mut users = Vec::new();
    let mut user_names = HashSet::new();
    for (i, u) in config.users.iter().enumerate() {
        let p = root.key("users").index(i);
        if u.name.is_empty()
            || u.name
                .chars()
                .any(|c| c.is_control() || c == ':' || c == '/')
        {
            errs.push((
                p.key("name"),
                "user names must be non-empty, without ':', '/' or control characters".into(),
            ));
        }
        if !user_names.insert(u.name.as_str()) {
            errs.push((p.key("name"), format!("duplicate user name {:?}", u.name)));
        }
        if let Some(h) = &u.password_hash
            && let Err(e) = password::validate(h)
        {
            errs.push((p.key("password_hash"), e));
        }
        let public_keys = u
            .public_keys
            .iter()
            .enumerate()
            .filter_map(|(k, line)| match pubkey::parse(line) {
                Ok(key) => Some(key),
                Err(e) => {
                    errs.push((p.key("public_keys").index(k), e));
                    None
                }
            })
            .collect();
        let home = parse_vpath(&u.home, &p.key("home"), &mut errs).unwrap_or_else(VPath::root);
        let mut rules = parse_rules(&u.permissions, true, &p.key("permissions"), &mut errs);
        for (k, gname) in u.groups.iter().enumerate() {
            match groups.get(gname.as_str()) {
                Some(g) => rules.extend(g.rules.iter().cloned()),
                None => errs.push((
                    p.key("groups").index(k),
                    format!("no group named {gname:?} (groups are defined in [[groups]])"),
                )),
            }
        }
        let allowed_ips = u.allowed_ips.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(k, s)| match parse_net(s) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        errs.push((p.key("allowed_ips").index(k), e));
                        None
                    }
                })
                .collect()
        });
        let protocols = u.protocols.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(k, s)| {
                    let found = Protocol::parse(s);
                    if found.is_none() {
                        errs.push((
                            p.key("protocols").index(k),
                            format!("unknown protocol {s:?} (expected sftp, ftp or http)"),
                        ));
                    }
                    found
                })
                .collect()
        });
        let role = match u.role.as_str() {
            "user" => Role::User,
            "operator" => Role::Operator,
            other => {
                errs.push((
                    p.key("role"),
                    format!("unknown role {other:?} (expected \"user\" or \"operator\")"),
                ));
                Role::User
            }
        };
        users.push(ValidUser {
            name: u.name.clone(),
            password_hash: u.password_hash.clone(),
            public_keys,
            home,
            rules,
            allowed_ips,
            protocols,
            role,
        });
    }

    let mut api_keys = Vec::new();
    let mut key_names = HashSet::new();
    let mut key_hashes = HashSet::new();
    for (i, k) in config.api_keys.iter().enumerate() {
        let p = root.key("api_keys").index(i);
        if !key_names.insert(k.name.as_str()) {
            errs.push((
                p.key("name"),
                format!("duplicate api key name {:?}", k.name),
            ));
        }
        if !user_names.contains(k.user.as_str()) {
            errs.push((p.key("user"), format!("no user named {:?}", k.user)));
        }
        match api_key::parse_hash(&k.key_hash) {
            Ok(hash) => {
                if !key_hashes.insert(hash) {
                    errs.push((p.key("key_hash"), "the same key is configured twice".into()));
                }
                api_keys.push(ValidApiKey {
                    name: k.name.clone(),
                    user: k.user.clone(),
                    hash,
                });
            }
            Err(e) => errs.push((p.key("key_hash"), e)),
        }
    }

    check_jwt(&config, &mut errs);
    let routes = check_routes(&config, &mut errs);

    let audit_dir = config
        .audit
        .dir
        .clone()
        .unwrap_or_else(|| config.gateway.state_dir.join("audit"));

    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(ValidConfig {
        config,
        listeners,
        backends,
        mounts,
        users,
        api_keys,
        routes,
        audit_dir,
    })
}

fn parse_vpath(s: &str, key: &KeyPath, errs: &mut Errors) -> Option<VPath> {
    if !s.starts_with('/') {
        errs.push((
            key.clone(),
            format!("{s:?} must be an absolute path (start with /)"),
        ));
        return None;
    }
    match VPath::parse(s) {
        Ok(v) if v.as_str() == s.trim_end_matches('/') || (v.is_root() && s == "/") => Some(v),
        Ok(v) => {
            errs.push((
                key.clone(),
                format!("{s:?} is not in normal form (write {:?})", v.as_str()),
            ));
            None
        }
        Err(e) => {
            errs.push((key.clone(), format!("{s:?}: {e}")));
            None
        }
    }
}

fn parse_rules(
    rules: &[PermissionConfig],
    own: bool,
    key: &KeyPath,
    errs: &mut Errors,
) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let p = key.index(i);
        let path = parse_vpath(&r.path, &p.key("path"), errs);
        let mut allow = ActionSet::default();
        for (k, word) in r.allow.iter().enumerate() {
            match Action::parse(word) {
                Some(a) => allow.insert(a),
                None => errs.push((
                    p.key("allow").index(k),
                    format!(
                        "unknown permission {word:?} (expected list, read, write, overwrite, delete, mkdir or rename)"
                    ),
                )),
            }
        }
        if let Some(path) = path {
            out.push(Rule { path, allow, own });
        }
    }
    out
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a CIDR network or IP address"))
}

fn parse_addr(s: &str, key: KeyPath, errs: &mut Errors) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push((
                key,
                format!(
                    "{s:?} is not an ip:port address (e.g. \"127.0.0.1:2222\" or \"[::1]:2222\")"
                ),
            ));
            None
        }
    }
}

fn check_listeners(config: &Config, errs: &mut Errors) -> Listeners {
    let root = KeyPath::root();
    let mut l = Listeners::default();
    let mut taken: Vec<(SocketAddr, KeyPath)> = Vec::new();
    let mut claim = |addr: Option<SocketAddr>, key: KeyPath, errs: &mut Errors| {
        if let Some(a) = addr {
            if a.port() != 0
                && let Some((_, other)) = taken.iter().find(|(b, _)| {
                    b.port() == a.port()
                        && (b.ip() == a.ip() || b.ip().is_unspecified() || a.ip().is_unspecified())
                })
            {
                errs.push((
                    key.clone(),
                    format!("port {} is also used by {other}", a.port()),
                ));
            }
            taken.push((a, key));
        }
        addr
    };
    if let Some(s) = &config.sftp {
        let k = root.key("sftp").key("listen");
        l.sftp = claim(parse_addr(&s.listen, k.clone(), errs), k, errs);
        if s.max_auth_attempts == 0 {
            errs.push((
                root.key("sftp").key("max_auth_attempts"),
                "must be at least 1".into(),
            ));
        }
    }
    if let Some(h) = &config.http {
        let k = root.key("http").key("listen");
        l.http = claim(parse_addr(&h.listen, k.clone(), errs), k, errs);
        if let Some(m) = &h.metrics_listen {
            let k = root.key("http").key("metrics_listen");
            l.metrics = claim(parse_addr(m, k.clone(), errs), k, errs);
        }
    }
    if let Some(f) = &config.ftp {
        let k = root.key("ftp").key("listen");
        l.ftp = claim(parse_addr(&f.listen, k.clone(), errs), k, errs);
        let [lo, hi] = f.passive_ports;
        let pk = root.key("ftp").key("passive_ports");
        if lo == 0 || lo > hi {
            errs.push((
                pk,
                format!("[{lo}, {hi}] is not a port range (first ≤ last, both > 0)"),
            ));
        } else if let Some((a, other)) = taken.iter().find(|(a, _)| (lo..=hi).contains(&a.port())) {
            errs.push((
                pk,
                format!(
                    "range [{lo}, {hi}] contains port {} used by {other}",
                    a.port()
                ),
            ));
        }
        if let Some(h) = &f.passive_host
            && h.parse::<std::net::Ipv4Addr>().is_err()
            && (h.is_empty()
                || h.parse::<IpAddr>().is_ok()
                || h.contains(|c: char| c.is_whitespace() || c == '/'))
        {
            errs.push((
                root.key("ftp").key("passive_host"),
                format!(
                    "{h:?} must be an IPv4 address or a DNS name (PASV replies carry IPv4 only)"
                ),
            ));
        }
    }
    l
}

fn check_file(path: &Path, key: KeyPath, errs: &mut Errors) {
    match std::fs::read(path) {
        Ok(bytes) if bytes.windows(11).any(|w| w == b"-----BEGIN ") => {}
        Ok(_) => errs.push((key, format!("{} is not a PEM file", path.display()))),
        Err(e) => errs.push((key, format!("cannot read {}: {e}", path.display()))),
    }
}

fn check_tls(config: &Config, errs: &mut Errors) {
    let root = KeyPath::root();
    if let Some(t) = config.ftp.as_ref().and_then(|f| f.tls.as_ref()) {
        let k = root.key("ftp").key("tls");
        check_file(&t.cert, k.key("cert"), errs);
        check_file(&t.key, k.key("key"), errs);
    }
    if let Some(t) = config.http.as_ref().and_then(|h| h.tls.as_ref()) {
        let k = root.key("http").key("tls");
        check_file(&t.cert, k.key("cert"), errs);
        check_file(&t.key, k.key("key"), errs);
    }
}

fn check_backends(config: &Config, errs: &mut Errors) -> BTreeMap<String, ValidBackend> {
    let mut out = BTreeMap::new();
    for (name, b) in &config.backends {
        let p = KeyPath::root().key("backends").key(name);
        if let Some(v) = check_backend(b, &p, errs) {
            out.insert(name.clone(), v);
        }
    }
    out
}

fn check_backend(b: &BackendConfig, p: &KeyPath, errs: &mut Errors) -> Option<ValidBackend> {
    let kind_word = match b.kind {
        BackendKind::Local => "local",
        BackendKind::S3 => "s3",
        BackendKind::Memory => "memory",
    };
    let s3_only = [
        ("bucket", b.bucket.is_some()),
        ("endpoint", b.endpoint.is_some()),
        ("region", b.region.is_some()),
        ("access_key_id", b.access_key_id.is_some()),
        ("secret_access_key", b.secret_access_key.is_some()),
        ("virtual_hosted_style", b.virtual_hosted_style),
        ("part_size_mib", b.part_size_mib.is_some()),
    ];
    let mut misplaced = |key: &str| {
        errs.push((
            p.key(key),
            format!("`{key}` does not apply to kind = \"{kind_word}\""),
        ));
    };
    match b.kind {
        BackendKind::Local | BackendKind::Memory => {
            for (key, set) in s3_only {
                if set {
                    misplaced(key);
                }
            }
        }
        BackendKind::S3 => {
            if b.root.is_some() {
                misplaced("root");
            }
        }
    }
    match b.kind {
        BackendKind::Memory => {
            if b.root.is_some() {
                misplaced("root");
            }
            Some(ValidBackend::Memory)
        }
        BackendKind::Local => {
            let Some(root) = &b.root else {
                errs.push((
                    p.key("root"),
                    "kind = \"local\" needs `root` (a directory)".into(),
                ));
                return None;
            };
            if root.exists() && !root.is_dir() {
                errs.push((
                    p.key("root"),
                    format!("{} exists and is not a directory", root.display()),
                ));
            }
            Some(ValidBackend::Local { root: root.clone() })
        }
        BackendKind::S3 => {
            let Some(bucket) = b.bucket.clone().filter(|s| !s.is_empty()) else {
                errs.push((p.key("bucket"), "kind = \"s3\" needs `bucket`".into()));
                return None;
            };
            if let Some(e) = &b.endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                errs.push((
                    p.key("endpoint"),
                    format!("{e:?} must be an http:// or https:// URL"),
                ));
            }
            if b.access_key_id.is_some() != b.secret_access_key.is_some() {
                errs.push((
                    p.key(if b.access_key_id.is_some() {
                        "secret_access_key"
                    } else {
                        "access_key_id"
                    }),
                    "access_key_id and secret_access_key go together".into(),
                ));
            }
            let part_mib = b.part_size_mib.unwrap_or(8);
            if !(5..=5120).contains(&part_mib) {
                errs.push((p.key("part_size_mib"), "S3 parts are 5 to 5120 MiB".into()));
            }
            Some(ValidBackend::S3 {
                bucket,
                endpoint: b.endpoint.clone(),
                region: b.region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key_id: b.access_key_id.clone().map(Secret::new),
                secret_access_key: b.secret_access_key.clone().map(Secret::new),
                virtual_hosted_style: b.virtual_hosted_style,
                part_size: usize::try_from(part_mib.clamp(5, 5120) * 1024 * 1024)
                    .unwrap_or(8 << 20),
            })
        }
    }
}

fn clean_prefix(s: &str) -> String {
    s.split('/')
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn check_mounts(config: &Config, errs: &mut Errors) -> Vec<ValidMount> {
    let mut out: Vec<ValidMount> = Vec::new();
    for (i, m) in config.mounts.iter().enumerate() {
        let p = KeyPath::root().key("mounts").index(i);
        let path = parse_vpath(&m.path, &p.key("path"), errs);
        if !config.backends.contains_key(&m.backend) {
            errs.push((
                p.key("backend"),
                format!(
                    "no backend named {:?} (backends are defined as [backends.NAME])",
                    m.backend
                ),
            ));
        }
        if m.prefix.split('/').any(|s| s == ".." || s == ".") || m.prefix.contains(['\\', '\0']) {
            errs.push((
                p.key("prefix"),
                "a key prefix may not contain '.', '..', '\\' or NUL".into(),
            ));
        }
        let Some(path) = path else { continue };
        let prefix = clean_prefix(&m.prefix);
        for (j, other) in out.iter().enumerate() {
            if other.path == path {
                errs.push((
                    p.key("path"),
                    format!("{path} is already mounted by mounts[{j}]"),
                ));
            } else if other.backend == m.backend
                && (path_under(&prefix, &other.prefix) || path_under(&other.prefix, &prefix))
            {
                // The same objects reachable under two virtual paths would let one mount's rules
                // bypass the other's.
                errs.push((
                    p.key("prefix"),
                    format!(
                        "backend {:?} prefix {:?} overlaps mounts[{j}] (prefix {:?}): the same files would appear at two paths",
                        m.backend, prefix, other.prefix
                    ),
                ));
            }
        }
        out.push(ValidMount {
            path,
            backend: m.backend.clone(),
            prefix,
        });
    }
    out
}

fn check_jwt(config: &Config, errs: &mut Errors) {
    let Some(j) = &config.jwt else { return };
    let p = KeyPath::root().key("jwt");
    if j.algorithms.is_empty() {
        errs.push((p.key("algorithms"), "name at least one algorithm".into()));
    }
    for (i, a) in j.algorithms.iter().enumerate() {
        match a.as_str() {
            "HS256" => {
                if j.secret.as_deref().is_none_or(|s| s.len() < 32) {
                    errs.push((
                        p.key("secret"),
                        "HS256 needs `secret` of at least 32 bytes".into(),
                    ));
                }
            }
            "RS256" | "ES256" => {
                if j.public_key.is_none() && j.jwks.is_none() {
                    errs.push((
                        p.key("public_key"),
                        format!("{a} needs `public_key` or `jwks`"),
                    ));
                }
            }
            other => errs.push((
                p.key("algorithms").index(i),
                format!("unsupported algorithm {other:?} (expected HS256, RS256 or ES256)"),
            )),
        }
    }
    if let Some(f) = &j.public_key {
        check_file(f, p.key("public_key"), errs);
    }
    if let Some(f) = &j.jwks
        && let Err(e) = std::fs::read(f)
    {
        errs.push((p.key("jwks"), format!("cannot read {}: {e}", f.display())));
    }
    if let Err((key, msg)) = crate::identity::jwt::JwtVerifier::new(j)
        && !errs
            .iter()
            .any(|(k, _)| k.0.first() == Some(&super::locate::Seg::Key("jwt".into())))
    {
        errs.push((p.key(key), msg));
    }
    if j.user_claim.is_empty() {
        errs.push((p.key("user_claim"), "must not be empty".into()));
    }
}

fn quota(r: &RateLimitConfig, key: KeyPath, errs: &mut Errors) -> Option<Quota> {
    if r.per_second == 0 {
        errs.push((key.key("per_second"), "must be at least 1".into()));
        return None;
    }
    let burst = r.burst.unwrap_or(r.per_second);
    if burst == 0 {
        errs.push((key.key("burst"), "must be at least 1".into()));
        return None;
    }
    Some(Quota {
        per_second: r.per_second,
        burst,
    })
}

fn auth_schemes(
    list: &Option<Vec<String>>,
    key: KeyPath,
    jwt: bool,
    errs: &mut Errors,
) -> Vec<AuthScheme> {
    let Some(list) = list else {
        return vec![AuthScheme::ApiKey, AuthScheme::Basic];
    };
    if list.is_empty() {
        errs.push((
            key.clone(),
            "name at least one scheme (use [\"none\"] for a public route)".into(),
        ));
    }
    let mut out = Vec::new();
    for (i, w) in list.iter().enumerate() {
        match AuthScheme::parse(w) {
            Some(AuthScheme::Jwt) if !jwt => {
                errs.push((key.index(i), "\"jwt\" needs a [jwt] section".into()));
            }
            Some(s) => out.push(s),
            None => errs.push((
                key.index(i),
                format!("unknown auth scheme {w:?} (expected api_key, basic, jwt or none)"),
            )),
        }
    }
    if out.contains(&AuthScheme::None) && out.len() > 1 {
        errs.push((key, "\"none\" cannot be combined with other schemes".into()));
    }
    out
}

fn check_http_path(s: &str, key: KeyPath, errs: &mut Errors) -> String {
    let norm = s.trim_end_matches('/');
    let norm = if norm.is_empty() { "/" } else { norm };
    if !s.starts_with('/')
        || s.contains(['?', '#', ' ', '\\'])
        || s.split('/').any(|x| x == ".." || x == ".")
    {
        errs.push((
            key,
            format!("{s:?} must be an absolute URL path without '.', '..', query or spaces"),
        ));
    } else if RESERVED_HTTP_PREFIXES
        .iter()
        .any(|r| path_under(r, norm) || path_under(norm, r))
    {
        errs.push((
            key,
            format!(
                "{s:?} overlaps a path the gateway serves itself ({})",
                RESERVED_HTTP_PREFIXES.join(", ")
            ),
        ));
    }
    norm.to_string()
}

fn check_routes(config: &Config, errs: &mut Errors) -> RouteTable {
    let root = KeyPath::root();
    let jwt = config.jwt.is_some();
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    let mut prefixes: HashMap<String, usize> = HashMap::new();
    for (i, r) in config.routes.iter().enumerate() {
        let p = root.key("routes").index(i);
        if !names.insert(r.name.as_str()) {
            errs.push((p.key("name"), format!("duplicate route name {:?}", r.name)));
        }
        let path_prefix = check_http_path(&r.path_prefix, p.key("path_prefix"), errs);
        if let Some(j) = prefixes.insert(path_prefix.clone(), i) {
            errs.push((
                p.key("path_prefix"),
                format!("routes[{j}] has the same prefix"),
            ));
        }
        let methods = r.methods.as_ref().map(|m| {
            m.iter()
                .enumerate()
                .map(|(k, x)| {
                    let up = x.to_ascii_uppercase();
                    if up.is_empty() || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                        errs.push((
                            p.key("methods").index(k),
                            format!("{x:?} is not an HTTP method"),
                        ));
                    }
                    up
                })
                .collect::<Vec<_>>()
        });
        if r.upstreams.is_empty() {
            errs.push((p.key("upstreams"), "name at least one upstream".into()));
        }
        let upstreams = r
            .upstreams
            .iter()
            .enumerate()
            .filter_map(|(k, u)| match Upstream::parse(u) {
                Ok(x) => Some(x),
                Err(e) => {
                    errs.push((p.key("upstreams").index(k), format!("{u:?}: {e}")));
                    None
                }
            })
            .collect();
        if r.timeout_secs == 0 {
            errs.push((p.key("timeout_secs"), "must be at least 1".into()));
        }
        let health_check = r.health_check.as_ref().map(|h| {
            if !h.path.starts_with('/') {
                errs.push((
                    p.key("health_check").key("path"),
                    "must start with /".into(),
                ));
            }
            if h.interval_secs == 0 {
                errs.push((
                    p.key("health_check").key("interval_secs"),
                    "must be at least 1".into(),
                ));
            }
            HealthCheck {
                path: h.path.clone(),
                interval: Duration::from_secs(h.interval_secs.max(1)),
            }
        });
        let headers = |m: &BTreeMap<String, String>, key: &str, errs: &mut Errors| {
            m.iter()
                .map(|(k, v)| {
                    if !valid_header_name(k) || v.contains(['\r', '\n']) {
                        errs.push((p.key(key).key(k), "not a valid header name/value".into()));
                    }
                    (k.to_ascii_lowercase(), v.clone())
                })
                .collect::<Vec<_>>()
        };
        let names_lower = |v: &[String], key: &str, errs: &mut Errors| {
            v.iter()
                .enumerate()
                .map(|(k, h)| {
                    if !valid_header_name(h) {
                        errs.push((p.key(key).index(k), format!("{h:?} is not a header name")));
                    }
                    h.to_ascii_lowercase()
                })
                .collect::<Vec<_>>()
        };
        routes.push(Route {
            name: r.name.clone(),
            path_prefix,
            methods,
            upstreams,
            strip_prefix: r.strip_prefix,
            auth: auth_schemes(&r.auth, p.key("auth"), jwt, errs),
            timeout: Duration::from_secs(r.timeout_secs),
            rate_limit: r
                .rate_limit
                .as_ref()
                .and_then(|q| quota(q, p.key("rate_limit"), errs)),
            global_rate_limit: r
                .global_rate_limit
                .as_ref()
                .and_then(|q| quota(q, p.key("global_rate_limit"), errs)),
            cache: r.cache.map(|c| CacheRule {
                ttl: Duration::from_secs(c.ttl_secs),
                max_body_bytes: c.max_body_bytes.unwrap_or(1 << 20),
            }),
            add_request_headers: headers(&r.add_request_headers, "add_request_headers", errs),
            remove_request_headers: names_lower(
                &r.remove_request_headers,
                "remove_request_headers",
                errs,
            ),
            add_response_headers: headers(&r.add_response_headers, "add_response_headers", errs),
            remove_response_headers: names_lower(
                &r.remove_response_headers,
                "remove_response_headers",
                errs,
            ),
            health_check,
            retries: r.retries,
        });
    }
    let mut aggregates = Vec::new();
    for (i, a) in config.aggregates.iter().enumerate() {
        let p = root.key("aggregates").index(i);
        if !names.insert(a.name.as_str()) {
            errs.push((
                p.key("name"),
                format!("duplicate route/aggregate name {:?}", a.name),
            ));
        }
        let path = check_http_path(&a.path, p.key("path"), errs);
        if a.parts.is_empty() {
            errs.push((p.key("parts"), "name at least one part".into()));
        }
        let mut keys = HashSet::new();
        for (k, part) in a.parts.iter().enumerate() {
            if !keys.insert(part.key.as_str()) {
                errs.push((
                    p.key("parts").index(k).key("key"),
                    format!("duplicate key {:?}", part.key),
                ));
            }
            if let Err(e) = url::Url::parse(&part.url)
                .map_err(|e| e.to_string())
                .and_then(|u| match u.scheme() {
                    "http" | "https" => Ok(()),
                    _ => Err("must be http:// or https://".into()),
                })
            {
                errs.push((
                    p.key("parts").index(k).key("url"),
                    format!("{:?}: {e}", part.url),
                ));
            }
        }
        if a.timeout_secs == 0 {
            errs.push((p.key("timeout_secs"), "must be at least 1".into()));
        }
        aggregates.push(Aggregate {
            name: a.name.clone(),
            path,
            auth: auth_schemes(&a.auth, p.key("auth"), jwt, errs),
            timeout: Duration::from_secs(a.timeout_secs.max(1)),
            parts: a
                .parts
                .iter()
                .map(|x| (x.key.clone(), x.url.clone()))
                .collect(),
        });
    }
    RouteTable::new(routes, aggregates)
}

fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
