//! Checks that keep the gateway's own files out of reach of its users, and one piece of data
//! reachable under one virtual path only: a local backend's root may not contain the state
//! directory, the audit log, host keys or TLS keys; two backends may not share a directory or a
//! bucket (two mounts of one backend may not overlap in key prefix either: `check_mounts`).
//! Also the `[sftp]` algorithm lists, which must name algorithms the SSH layer implements.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::locate::KeyPath;
use super::validate::{Errors, ValidBackend};
use super::{Config, SSH_SUPPORTED_CIPHERS, SSH_SUPPORTED_KEX, SSH_SUPPORTED_MACS};

/// An absolute, lexically normalised form of `p` (symlinks resolved where the path exists), for
/// containment tests. Relative paths are taken against the working directory, as `serve` does.
fn absolute(p: &Path) -> PathBuf {
    if let Ok(real) = p.canonicalize() {
        return real;
    }
    let joined = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    // The longest existing ancestor may be a symlink: resolve it and keep the rest.
    let mut existing = out.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(n) => rest.push(n.to_os_string()),
            None => return out,
        }
        if !existing.pop() {
            return out;
        }
    }
    let mut real = existing.canonicalize().unwrap_or(existing);
    for n in rest.into_iter().rev() {
        real.push(n);
    }
    real
}

/// Refuses configs where users could reach the gateway's own files, or the same data under two
/// virtual paths.
pub(super) fn check_isolation(
    config: &Config,
    backends: &BTreeMap<String, ValidBackend>,
    audit_dir: &Path,
    errs: &mut Errors,
) {
    let root = KeyPath::root();
    // The gateway's own files: (resolved path, as configured, what it is).
    let mut own: Vec<(PathBuf, &Path, &str)> = vec![
        (
            absolute(&config.gateway.state_dir),
            &config.gateway.state_dir,
            "the state directory",
        ),
        (absolute(audit_dir), audit_dir, "the audit log"),
    ];
    if let Some(s) = &config.sftp {
        for k in &s.host_keys {
            own.push((absolute(k), k, "an SSH host key"));
        }
    }
    if let Some(t) = config.http.as_ref().and_then(|h| h.tls.as_ref()) {
        own.push((absolute(&t.key), &t.key, "a TLS key"));
    }
    if let Some(t) = config.ftp.as_ref().and_then(|f| f.tls.as_ref()) {
        own.push((absolute(&t.key), &t.key, "a TLS key"));
    }

    let mut roots: Vec<(&str, PathBuf)> = Vec::new();
    let mut buckets: Vec<(&str, String)> = Vec::new();
    for (name, b) in backends {
        let p = root.key("backends").key(name);
        match b {
            ValidBackend::Local { root: dir } => {
                let dir_abs = absolute(dir);
                for (path, configured, what) in &own {
                    if path.starts_with(&dir_abs) {
                        errs.push((
                            p.key("root"),
                            format!(
                                "{} contains {what} ({}): users could read or replace it; keep the gateway's files outside every backend root",
                                dir.display(),
                                configured.display()
                            ),
                        ));
                    }
                }
                for (other, other_dir) in &roots {
                    if dir_abs.starts_with(other_dir) || other_dir.starts_with(&dir_abs) {
                        errs.push((
                            p.key("root"),
                            format!(
                                "{} overlaps backend {other:?}'s root: the same files would be reachable under two mounts with different rules",
                                dir.display()
                            ),
                        ));
                    }
                }
                roots.push((name, dir_abs));
            }
            ValidBackend::S3 {
                bucket, endpoint, ..
            }
            | ValidBackend::Gcs {
                bucket, endpoint, ..
            } => {
                let id = format!("{}/{bucket}", endpoint.as_deref().unwrap_or("cloud"));
                if let Some((other, _)) = buckets.iter().find(|(_, b)| *b == id) {
                    errs.push((
                        p.key("bucket"),
                        format!(
                            "bucket {bucket:?} is also backend {other:?}: use one backend and mount it with different prefixes"
                        ),
                    ));
                }
                buckets.push((name, id));
            }
            ValidBackend::Azure {
                account,
                container,
                endpoint,
                ..
            } => {
                let id = format!(
                    "{}/{account}/{container}",
                    endpoint.as_deref().unwrap_or("azure")
                );
                if let Some((other, _)) = buckets.iter().find(|(_, b)| *b == id) {
                    errs.push((
                        p.key("container"),
                        format!(
                            "container {container:?} is also backend {other:?}: use one backend and mount it with different prefixes"
                        ),
                    ));
                }
                buckets.push((name, id));
            }
            ValidBackend::Sftp { address, root, .. } => {
                let id = format!("sftp://{address}/{}", root.trim_matches('/'));
                if let Some((other, _)) = buckets.iter().find(|(_, b)| *b == id) {
                    errs.push((
                        p.key("root"),
                        format!("{id} is also backend {other:?}: use one backend and mount it with different prefixes"),
                    ));
                }
                buckets.push((name, id));
            }
            ValidBackend::WebDav { url, .. } => {
                let id = url.trim_end_matches('/').to_string();
                if let Some((other, _)) = buckets.iter().find(|(_, b)| {
                    let b = b.as_str();
                    b == id || b.starts_with(&format!("{id}/")) || id.starts_with(&format!("{b}/"))
                }) {
                    errs.push((
                        p.key("url"),
                        format!(
                            "{url:?} overlaps backend {other:?}: the same files would be reachable under two mounts with different rules"
                        ),
                    ));
                }
                buckets.push((name, id));
            }
            ValidBackend::Memory => {}
        }
    }
}

/// `[sftp] kex`, `ciphers`, `macs`: non-empty lists of algorithms the SSH layer implements.
pub(super) fn check_ssh_algorithms(config: &Config, errs: &mut Errors) {
    let Some(s) = &config.sftp else { return };
    let p = KeyPath::root().key("sftp");
    type Named<'a> = (&'a str, &'a Option<Vec<String>>, &'a [&'a str]);
    let lists: [Named<'_>; 3] = [
        ("kex", &s.kex, SSH_SUPPORTED_KEX),
        ("ciphers", &s.ciphers, SSH_SUPPORTED_CIPHERS),
        ("macs", &s.macs, SSH_SUPPORTED_MACS),
    ];
    for (key, list, supported) in lists {
        let Some(list) = list else { continue };
        if list.is_empty() {
            errs.push((p.key(key), "name at least one algorithm".into()));
        }
        for (i, name) in list.iter().enumerate() {
            if !supported.contains(&name.as_str()) {
                errs.push((
                    p.key(key).index(i),
                    format!(
                        "{name:?} is not supported (supported: {})",
                        supported.join(", ")
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_resolves_dots_without_the_path_existing() {
        let a = absolute(Path::new("/nonexistent-gatehouse/x/../y/./z"));
        assert_eq!(a, PathBuf::from("/nonexistent-gatehouse/y/z"));
    }
}
