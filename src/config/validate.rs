//! Cross-reference and value checks on a parsed [`Config`], producing the [`ValidConfig`] the rest
//! of the program takes. Every problem is collected (not just the first) with the key path it is
//! about; `load` turns key paths into line numbers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::locate::KeyPath;
use super::validate_routes::{check_jwt, check_routes};
use super::validate_storage::{check_backends, check_mounts};
use super::{Config, PermissionConfig};
use crate::identity::pubkey::{self, PublicKey};
use crate::identity::{Protocol, Role, api_key, password};
use crate::policy::{Action, ActionSet, Rule};
use crate::route::RouteTable;
use crate::vfs::VPath;

/// HTTP paths the gateway serves itself; routes may not take them.
pub const RESERVED_HTTP_PREFIXES: [&str; 5] =
    ["/v1", "/healthz", "/readyz", "/metrics", "/console"];

pub use super::validate_storage::ValidBackend;

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
    /// Group names.
    pub groups: Vec<String>,
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
    /// Peers whose `X-Forwarded-For` (and PROXY protocol header, if they send one) is believed
    /// (`[http] trusted_proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// Peers that must send a PROXY protocol header on the SFTP listener (`[sftp] proxy_protocol`).
    pub sftp_proxy_protocol: Vec<IpNet>,
    /// Peers that must send a PROXY protocol header on the FTP listener (`[ftp] proxy_protocol`
    /// as a list).
    pub ftp_proxy_protocol: Vec<IpNet>,
    /// `[[validate]]` rules.
    pub validation: crate::validation::Rules,
    /// `[[events]]` receivers.
    pub events: Vec<crate::events::Sink>,
    /// Settings that work but are likely not what was meant (`check` prints them, `serve` logs
    /// them).
    pub warnings: Vec<super::ConfigError>,
}

impl ValidConfig {
    /// How long shutdown waits for work in flight.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.config.gateway.shutdown_grace_secs)
    }
}

pub(super) type Errors = Vec<(KeyPath, String)>;

/// Checks everything that serde cannot. Alongside the valid config come warnings: settings that
/// work but are likely not what was meant.
pub fn validate(config: Config) -> Result<(ValidConfig, Errors), Errors> {
    let mut errs = Errors::new();
    let mut warnings = Errors::new();
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
    let validation = super::hooks::check_validations(&config.validate, &mut errs);
    let events = super::hooks::check_events(&config.events, &mut errs);

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
            groups: u.groups.clone(),
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
    let routes = check_routes(&config, &mut errs, &mut warnings);

    let audit_dir = config
        .audit
        .dir
        .clone()
        .unwrap_or_else(|| config.gateway.state_dir.join("audit"));

    let nets = |list: &[String], key: KeyPath, errs: &mut Errors| -> Vec<IpNet> {
        list.iter()
            .enumerate()
            .filter_map(|(i, n)| match parse_net(n) {
                Ok(net) => Some(net),
                Err(e) => {
                    errs.push((key.index(i), e));
                    None
                }
            })
            .collect()
    };
    let trusted_proxies = config
        .http
        .as_ref()
        .map(|h| {
            nets(
                &h.trusted_proxies,
                root.key("http").key("trusted_proxies"),
                &mut errs,
            )
        })
        .unwrap_or_default();
    let sftp_proxy_protocol = config
        .sftp
        .as_ref()
        .map(|s| {
            nets(
                &s.proxy_protocol,
                root.key("sftp").key("proxy_protocol"),
                &mut errs,
            )
        })
        .unwrap_or_default();
    let ftp_proxy_protocol = match config.ftp.as_ref().map(|f| &f.proxy_protocol) {
        Some(super::FtpProxyProtocol::Peers(list)) => {
            nets(list, root.key("ftp").key("proxy_protocol"), &mut errs)
        }
        _ => Vec::new(),
    };
    if let Some(c) = &config.cluster {
        super::cluster::check(c, &root.key("cluster"), &mut errs);
    }
    if let Some(ship) = &config.audit.ship {
        let names: Vec<&str> = config.backends.keys().map(String::as_str).collect();
        super::cluster::check_ship(ship, &names, &root.key("audit").key("ship"), &mut errs);
    }
    super::validate_isolation::check_isolation(&config, &backends, &audit_dir, &mut errs);
    super::validate_isolation::check_ssh_algorithms(&config, &mut errs);

    if !errs.is_empty() {
        return Err(errs);
    }
    Ok((
        ValidConfig {
            config,
            listeners,
            backends,
            mounts,
            users,
            api_keys,
            routes,
            audit_dir,
            trusted_proxies,
            sftp_proxy_protocol,
            ftp_proxy_protocol,
            validation,
            events,
            warnings: Vec::new(),
        },
        warnings,
    ))
}

pub(super) fn parse_vpath(s: &str, key: &KeyPath, errs: &mut Errors) -> Option<VPath> {
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

pub(super) fn check_file(path: &Path, key: KeyPath, errs: &mut Errors) {
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
