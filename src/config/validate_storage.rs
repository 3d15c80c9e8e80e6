//! Checks of `[backends.*]` and `[[mounts]]`: each backend's keys for its kind, and mounts that
//! name a backend, sit at distinct virtual paths and never reach the same keys twice.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::locate::KeyPath;
use super::validate::{Errors, ValidMount, parse_vpath};
use super::{BackendConfig, BackendKind, Config};
use crate::route::path_under;
use crate::secret::Secret;

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
    /// Azure Blob Storage.
    Azure {
        /// Storage account.
        account: String,
        /// Container.
        container: String,
        /// Shared key, when given.
        access_key: Option<Secret<String>>,
        /// Custom endpoint (`http://127.0.0.1:10000/devstoreaccount1` for Azurite).
        endpoint: Option<String>,
        /// Block size in bytes.
        part_size: usize,
    },
    /// Google Cloud Storage.
    Gcs {
        /// Bucket.
        bucket: String,
        /// Service account JSON file, when given.
        service_account_file: Option<PathBuf>,
        /// Custom endpoint (emulators).
        endpoint: Option<String>,
        /// Part size in bytes.
        part_size: usize,
    },
    /// An upstream SFTP server.
    Sftp {
        /// `host:port`.
        address: String,
        /// Login name.
        user: String,
        /// Key file, when logging in by key.
        private_key: Option<PathBuf>,
        /// Password, when logging in by password.
        password: Option<Secret<String>>,
        /// Pinned host key (`ssh-ed25519 AAAA...`).
        host_key: String,
        /// Directory on the upstream.
        root: String,
        /// Pooled connections.
        max_sessions: usize,
    },
    /// A WebDAV share.
    WebDav {
        /// Collection URL.
        url: String,
        /// Basic user.
        user: Option<String>,
        /// Basic password.
        password: Option<Secret<String>>,
    },
    /// Memory.
    Memory,
}

pub(super) fn check_backends(config: &Config, errs: &mut Errors) -> BTreeMap<String, ValidBackend> {
    let mut out = BTreeMap::new();
    for (name, b) in &config.backends {
        let p = KeyPath::root().key("backends").key(name);
        if let Some(v) = check_backend(b, &p, errs) {
            out.insert(name.clone(), v);
        }
    }
    out
}

fn kind_word(k: BackendKind) -> &'static str {
    match k {
        BackendKind::Local => "local",
        BackendKind::S3 => "s3",
        BackendKind::Azure => "azure",
        BackendKind::Gcs => "gcs",
        BackendKind::Webdav => "webdav",
        BackendKind::Sftp => "sftp",
        BackendKind::Memory => "memory",
    }
}

fn check_backend(b: &BackendConfig, p: &KeyPath, errs: &mut Errors) -> Option<ValidBackend> {
    use BackendKind::{Azure, Gcs, Local, S3, Sftp, Webdav};
    // Which kinds each key applies to.
    let keys: [(&str, bool, &[BackendKind]); 19] = [
        ("url", b.url.is_some(), &[Webdav]),
        ("user", b.user.is_some(), &[Webdav, Sftp]),
        ("password", b.password.is_some(), &[Webdav, Sftp]),
        ("address", b.address.is_some(), &[Sftp]),
        ("private_key", b.private_key.is_some(), &[Sftp]),
        ("host_key", b.host_key.is_some(), &[Sftp]),
        ("max_sessions", b.max_sessions.is_some(), &[Sftp]),
        ("root", b.root.is_some(), &[Local, Sftp]),
        ("bucket", b.bucket.is_some(), &[S3, Gcs]),
        ("endpoint", b.endpoint.is_some(), &[S3, Azure, Gcs]),
        ("region", b.region.is_some(), &[S3]),
        ("access_key_id", b.access_key_id.is_some(), &[S3]),
        ("secret_access_key", b.secret_access_key.is_some(), &[S3]),
        ("virtual_hosted_style", b.virtual_hosted_style, &[S3]),
        (
            "part_size_mib",
            b.part_size_mib.is_some(),
            &[S3, Azure, Gcs],
        ),
        ("account", b.account.is_some(), &[Azure]),
        ("container", b.container.is_some(), &[Azure]),
        ("access_key", b.access_key.is_some(), &[Azure]),
        (
            "service_account_file",
            b.service_account_file.is_some(),
            &[Gcs],
        ),
    ];
    for (key, set, kinds) in keys {
        if set && !kinds.contains(&b.kind) {
            errs.push((
                p.key(key),
                format!("`{key}` does not apply to kind = \"{}\"", kind_word(b.kind)),
            ));
        }
    }
    let required = |key: &str, v: &Option<String>, errs: &mut Errors| {
        let v = v.clone().filter(|s| !s.is_empty());
        if v.is_none() {
            errs.push((
                p.key(key),
                format!("kind = \"{}\" needs `{key}`", kind_word(b.kind)),
            ));
        }
        v
    };
    if let Some(e) = &b.endpoint
        && !(e.starts_with("http://") || e.starts_with("https://"))
    {
        errs.push((
            p.key("endpoint"),
            format!("{e:?} must be an http:// or https:// URL"),
        ));
    }
    let part_mib = b.part_size_mib.unwrap_or(8);
    let min_part = if b.kind == Azure { 1 } else { 5 };
    if !(min_part..=5120).contains(&part_mib) {
        errs.push((
            p.key("part_size_mib"),
            format!("parts are {min_part} to 5120 MiB"),
        ));
    }
    let part_size =
        usize::try_from(part_mib.clamp(min_part, 5120) * 1024 * 1024).unwrap_or(8 << 20);
    match b.kind {
        BackendKind::Memory => Some(ValidBackend::Memory),
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
            let bucket = required("bucket", &b.bucket, errs)?;
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
            Some(ValidBackend::S3 {
                bucket,
                endpoint: b.endpoint.clone(),
                region: b.region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key_id: b.access_key_id.clone().map(Secret::new),
                secret_access_key: b.secret_access_key.clone().map(Secret::new),
                virtual_hosted_style: b.virtual_hosted_style,
                part_size,
            })
        }
        BackendKind::Azure => {
            let account = required("account", &b.account, errs);
            let container = required("container", &b.container, errs);
            Some(ValidBackend::Azure {
                account: account?,
                container: container?,
                access_key: b.access_key.clone().map(Secret::new),
                endpoint: b.endpoint.clone(),
                part_size,
            })
        }
        BackendKind::Sftp => check_sftp(b, p, errs),
        BackendKind::Webdav => {
            let url = required("url", &b.url, errs)?;
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => errs.push((
                    p.key("url"),
                    format!("{url:?} must be an http:// or https:// URL"),
                )),
            }
            if b.password.is_some() && b.user.is_none() {
                errs.push((p.key("user"), "`password` needs `user`".into()));
            }
            Some(ValidBackend::WebDav {
                url,
                user: b.user.clone(),
                password: b.password.clone().map(Secret::new),
            })
        }
        BackendKind::Gcs => {
            let bucket = required("bucket", &b.bucket, errs)?;
            if let Some(f) = &b.service_account_file
                && !f.is_file()
            {
                errs.push((
                    p.key("service_account_file"),
                    format!("{} is not a readable file", f.display()),
                ));
            }
            Some(ValidBackend::Gcs {
                bucket,
                service_account_file: b.service_account_file.clone(),
                endpoint: b.endpoint.clone(),
                part_size,
            })
        }
    }
}

fn check_sftp(b: &BackendConfig, p: &KeyPath, errs: &mut Errors) -> Option<ValidBackend> {
    let need = |key: &str, v: &Option<String>, errs: &mut Errors| {
        let v = v.clone().filter(|s| !s.is_empty());
        if v.is_none() {
            errs.push((p.key(key), format!("kind = \"sftp\" needs `{key}`")));
        }
        v
    };
    let address = need("address", &b.address, errs);
    if let Some(a) = &address
        && a.rsplit_once(':')
            .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
    {
        errs.push((p.key("address"), format!("{a:?} must be host:port")));
    }
    let user = need("user", &b.user, errs);
    let host_key = b.host_key.clone().filter(|s| !s.is_empty());
    match &host_key {
        None => errs.push((
            p.key("host_key"),
            "kind = \"sftp\" needs `host_key`, the upstream's public host key (`ssh-ed25519 AAAA...`, as in its /etc/ssh/ssh_host_*_key.pub): there is no trust on first use".into(),
        )),
        Some(k) => {
            if let Err(e) = crate::identity::pubkey::parse(k) {
                errs.push((p.key("host_key"), format!("not an SSH public key: {e}")));
            }
        }
    }
    match (&b.private_key, &b.password) {
        (Some(_), Some(_)) => errs.push((
            p.key("password"),
            "give private_key or password, not both".into(),
        )),
        (None, None) => errs.push((
            p.clone(),
            "kind = \"sftp\" needs `private_key` or `password`".into(),
        )),
        (Some(k), None) if !k.is_file() => errs.push((
            p.key("private_key"),
            format!("{} is not a readable file", k.display()),
        )),
        _ => {}
    }
    let max_sessions = b.max_sessions.unwrap_or(4);
    if !(1..=64).contains(&max_sessions) {
        errs.push((p.key("max_sessions"), "must be 1 to 64".into()));
    }
    Some(ValidBackend::Sftp {
        address: address?,
        user: user?,
        private_key: b.private_key.clone(),
        password: b.password.clone().map(Secret::new),
        host_key: host_key?,
        root: b
            .root
            .as_ref()
            .map_or_else(|| ".".to_string(), |r| r.display().to_string()),
        max_sessions,
    })
}

fn clean_prefix(s: &str) -> String {
    s.split('/')
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

pub(super) fn check_mounts(config: &Config, errs: &mut Errors) -> Vec<ValidMount> {
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
