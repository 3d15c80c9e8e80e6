//! Checks of `[backends.*]` and `[[mounts]]`: each backend's keys for its kind, and mounts that
//! name a backend, sit at distinct virtual paths and never reach the same keys twice.

use std::collections::BTreeMap;

use super::locate::KeyPath;
use super::validate::{Errors, ValidBackend, ValidMount, parse_vpath};
use super::{BackendConfig, BackendKind, Config};
use crate::route::path_under;
use crate::secret::Secret;

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
