//! Configuration reload on SIGHUP. The file is read and validated in full; what a reload may
//! change is who can log in and with what (`[[users]]`, `[[groups]]`, `[[api_keys]]`,
//! `[jwt]`) and the API gateway's routes (`[[routes]]`, `[[aggregates]]`). The new identity
//! store is swapped in at once (new logins see it; sessions already logged in keep the
//! principal they logged in with), carrying over bans, failure counts and the password-check
//! pool; so is the new route table (requests in flight finish on the route they matched; an
//! unchanged route keeps its upstream health and rate-limit buckets). Any other difference
//! (listeners, TLS settings, backends, mounts, limits, audit, ...) refuses the whole reload,
//! naming the sections, and the running config stays; so does an invalid file. The TLS
//! certificates are read again from their files every time, so one renewed in place is served
//! to new handshakes; one that does not load refuses the reload too. Every attempt is an audit
//! record with the file's sha256, which `/healthz` shows once it is in effect.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::audit::{AuditAction, AuditEvent, Outcome};
use crate::config::{Config, ConfigSource, EnvLookup};
use crate::core::Core;
use crate::identity::Identity;

/// The sections a reload may change.
pub const RELOADABLE: [&str; 6] = ["users", "groups", "api_keys", "jwt", "routes", "aggregates"];

/// The sha256 (hex) of the config's text as it is now.
pub fn digest(source: &ConfigSource) -> String {
    let text = match source {
        ConfigSource::File(p) => std::fs::read(p).unwrap_or_default(),
        ConfigSource::Demo => crate::config::DEMO_CONFIG.as_bytes().to_vec(),
    };
    hex::encode(Sha256::digest(&text))
}

/// The top-level sections of `new` that differ from `old`, other than the reloadable ones.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["(the config could not be compared)".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !RELOADABLE.contains(&k.as_str()))
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.to_string())
        .collect()
}

async fn record(core: &Core, outcome: Outcome, detail: String) {
    let ev = AuditEvent::new(AuditAction::Config, outcome).detail(detail);
    if let Err(e) = core.audit.record(ev).await {
        tracing::error!(error = %e, "could not record the config reload");
    }
}

/// Reloads the config from `source`; returns what happened (also logged and audited).
pub async fn reload(
    core: &Core,
    source: &ConfigSource,
    env: EnvLookup<'_>,
) -> Result<String, String> {
    let sha = digest(source);
    let new = match source.load(env) {
        Ok(c) => c,
        Err(errors) => {
            let first: Vec<String> = errors
                .errors
                .iter()
                .take(5)
                .map(|e| e.to_string())
                .collect();
            let msg = format!(
                "reload refused (config {source}, sha256 {sha}): {} error(s), the running config stays: {}",
                errors.errors.len(),
                first.join("; ")
            );
            tracing::error!("{msg}");
            record(core, Outcome::Error, msg.clone()).await;
            return Err(msg);
        }
    };
    let differs = needs_restart(&core.config.config, &new.config);
    if !differs.is_empty() {
        let msg = format!(
            "reload refused (config {source}, sha256 {sha}): changes to {} need a restart (a reload applies {}); the running config stays",
            differs.join(", "),
            RELOADABLE.join(", ")
        );
        tracing::error!("{msg}");
        record(core, Outcome::Error, msg.clone()).await;
        return Err(msg);
    }
    // The certificates are read again from their files (renewed in place): one that does not
    // load refuses the whole reload.
    let certs = match core.certs.prepare() {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "reload refused (config {source}, sha256 {sha}): a TLS certificate does not load, the running config and certificates stay: {e}"
            );
            tracing::error!("{msg}");
            record(core, Outcome::Error, msg.clone()).await;
            return Err(msg);
        }
    };
    let routes_changed = **core.routes.load() != new.routes;
    let identity = Identity::reloaded(&new, &core.identity.load());
    core.identity.store(Arc::new(identity));
    if routes_changed {
        core.routes.store(Arc::new(new.routes.clone()));
    }
    for u in &new.users {
        if let Err(e) = core.vfs.ensure_dir_all(&u.home).await {
            tracing::warn!(user = %u.name, home = %u.home, error = %e, "cannot create the user's home directory");
        }
    }
    let certs_changed = certs.install();
    *core.config_sha256.lock().unwrap_or_else(|p| p.into_inner()) = sha.clone();
    for w in &new.warnings {
        tracing::warn!(config = %source, "{w}");
    }
    let msg = format!(
        "reloaded (config {source}, sha256 {sha}): {} users, {} api keys, {} routes{}{}",
        new.users.len(),
        new.api_keys.len(),
        new.routes.routes().len(),
        if routes_changed {
            " (routes replaced)"
        } else {
            ""
        },
        if certs_changed.is_empty() {
            String::new()
        } else {
            format!("; new TLS certificate: {}", certs_changed.join(", "))
        }
    );
    tracing::info!("{msg}");
    record(core, Outcome::Ok, msg.clone()).await;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Config {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn only_identity_sections_may_change() {
        let a = parse(
            "[gateway]\nstate_dir = \"./var\"\n[[users]]\nname = \"a\"\npassword_hash = \"x\"\n",
        );
        let b = parse(
            "[gateway]\nstate_dir = \"./var\"\n[[users]]\nname = \"b\"\npassword_hash = \"y\"\n",
        );
        assert!(needs_restart(&a, &b).is_empty());
        let c = parse("[gateway]\nstate_dir = \"./other\"\n");
        assert_eq!(needs_restart(&a, &c), vec!["gateway".to_string()]);
    }
}
