//! `[[validate]]` and `[[events]]`: what happens to a file as it lands. Serde types, and their
//! checks into the core's [`validation::Rules`] and [`events::Sink`]s (schemas compiled here, so
//! `gatehouse check` reports a bad one with its file and line).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::locate::KeyPath;
use super::validate::Errors;
use crate::events::{self, Trigger};
use crate::pathglob::PathGlob;
use crate::secret::Secret;
use crate::validation::{self, Columns, CsvSpec, Format};

/// `[[validate]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Glob over the full virtual path.
    pub path: String,
    /// A JSON Schema file (draft 2020-12) the document must satisfy.
    pub json_schema: Option<PathBuf>,
    /// A CSV layout the file must have.
    pub csv: Option<CsvConfig>,
    /// Largest file accepted (JSON default 16: it is parsed in memory).
    pub max_size_mib: Option<u64>,
}

/// `validate[].csv`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Column names of the header row.
    pub header: Vec<String>,
    /// One ASCII character (default ",").
    #[serde(default = "comma")]
    pub delimiter: String,
    /// "exact" (these names in this order) or "subset" (at least these, any order).
    #[serde(default = "exact")]
    pub columns: String,
}

fn comma() -> String {
    ",".into()
}

fn exact() -> String {
    "exact".into()
}

/// `[[events]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// Name of the receiver.
    pub name: String,
    /// Actions: upload | download | delete | rename | mkdir | login_denied | ban.
    pub on: Vec<String>,
    /// Glob over the virtual path (absent: every path).
    pub path: Option<String>,
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    /// Standard Webhooks secret: "whsec_" + base64.
    pub secret: String,
    /// Per delivery attempt.
    #[serde(default = "ten")]
    pub timeout_secs: u64,
    /// Given up (and audited) after this long.
    #[serde(default = "day")]
    pub max_age_secs: u64,
}

fn ten() -> u64 {
    10
}

fn day() -> u64 {
    86_400
}

fn glob(text: &str, key: KeyPath, errs: &mut Errors) -> Option<PathGlob> {
    PathGlob::new(text).map_err(|e| errs.push((key, e))).ok()
}

/// Checks `[[validate]]` into rules (config order: the first match applies).
pub(super) fn check_validations(list: &[ValidateConfig], errs: &mut Errors) -> validation::Rules {
    let root = KeyPath::root().key("validate");
    let mut rules = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let p = root.index(i);
        let g = glob(&v.path, p.key("path"), errs);
        if v.max_size_mib == Some(0) {
            errs.push((p.key("max_size_mib"), "must be at least 1".into()));
        }
        let format = match (&v.json_schema, &v.csv) {
            (Some(_), Some(_)) => {
                errs.push((p.key("csv"), "give json_schema or csv, not both".into()));
                None
            }
            (Some(file), None) => match validation::json::compile(file) {
                Ok(s) => Some(Format::Json(s)),
                Err(e) => {
                    errs.push((p.key("json_schema"), e));
                    None
                }
            },
            (None, Some(c)) => csv_spec(c, &p.key("csv"), errs).map(Format::Csv),
            (None, None) if v.max_size_mib.is_some() => Some(Format::Any),
            (None, None) => {
                errs.push((
                    p.clone(),
                    "give json_schema, csv or max_size_mib: this rule checks nothing".into(),
                ));
                None
            }
        };
        let max_mib = match (&format, v.max_size_mib) {
            (_, Some(m)) => Some(m),
            (Some(Format::Json(_)), None) => Some(validation::DEFAULT_JSON_MAX_MIB),
            _ => None,
        };
        if let (Some(glob), Some(format)) = (g, format) {
            rules.push(validation::Rule {
                glob,
                max_size: max_mib.map(|m| m.saturating_mul(1024 * 1024)),
                format,
            });
        }
    }
    validation::Rules::new(rules)
}

fn csv_spec(c: &CsvConfig, p: &KeyPath, errs: &mut Errors) -> Option<CsvSpec> {
    let delimiter = match c.delimiter.as_bytes() {
        [d] if d.is_ascii() && !matches!(d, b'"' | b'\r' | b'\n') => Some(*d),
        _ => {
            errs.push((
                p.key("delimiter"),
                "must be one ASCII character other than a quote or line break".into(),
            ));
            None
        }
    };
    let columns = match c.columns.as_str() {
        "exact" => Some(Columns::Exact),
        "subset" => Some(Columns::Subset),
        other => {
            errs.push((
                p.key("columns"),
                format!("unknown value {other:?}: expected \"exact\" or \"subset\""),
            ));
            None
        }
    };
    if c.header.is_empty() {
        errs.push((p.key("header"), "must name at least one column".into()));
    }
    Some(CsvSpec {
        header: c.header.clone(),
        delimiter: delimiter?,
        columns: columns?,
    })
}

/// Checks `[[events]]` into sinks.
pub(super) fn check_events(list: &[EventConfig], errs: &mut Errors) -> Vec<events::Sink> {
    let root = KeyPath::root().key("events");
    let mut sinks: Vec<events::Sink> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let p = root.index(i);
        let name_ok = !e.name.is_empty()
            && e.name.len() <= 64
            && e.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            errs.push((
                p.key("name"),
                "must be 1 to 64 letters, digits, '-' or '_' (it names files in the state dir)"
                    .into(),
            ));
        } else if sinks.iter().any(|s| s.name == e.name) {
            errs.push((p.key("name"), format!("duplicate events name {:?}", e.name)));
        }
        let mut on = Vec::new();
        for (j, t) in e.on.iter().enumerate() {
            match Trigger::parse(t) {
                Some(t) => on.push(t),
                None => errs.push((
                    p.key("on").index(j),
                    format!(
                        "unknown action {t:?}: expected one of {}",
                        Trigger::ALL.map(Trigger::as_str).join(", ")
                    ),
                )),
            }
        }
        if e.on.is_empty() {
            errs.push((p.key("on"), "must name at least one action".into()));
        }
        let path = e.path.as_deref().and_then(|g| glob(g, p.key("path"), errs));
        match url::Url::parse(&e.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => errs.push((p.key("url"), "must be an http:// or https:// URL".into())),
        }
        let secret = events::message::decode_secret(&e.secret)
            .map_err(|m| errs.push((p.key("secret"), m)))
            .ok();
        for (key, v) in [
            ("timeout_secs", e.timeout_secs),
            ("max_age_secs", e.max_age_secs),
        ] {
            if v == 0 {
                errs.push((p.key(key), "must be at least 1".into()));
            }
        }
        if let Some(secret) = secret {
            sinks.push(events::Sink {
                name: e.name.clone(),
                on,
                path,
                url: e.url.clone(),
                secret: Secret::new(secret),
                timeout: Duration::from_secs(e.timeout_secs),
                max_age: Duration::from_secs(e.max_age_secs),
            });
        }
    }
    sinks
}
