//! Reading a config document: TOML syntax, `${NAME}` expansion inside strings, typed
//! deserialisation, then validation. Every error carries the key path and line it is about.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::locate::{KeyPath, line_of, span_of};
use super::{Config, ValidConfig};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path, e.g. `users[2].groups[0]`.
    pub key: String,
    /// 1-based line in the file, when the key is in the file.
    pub line: Option<usize>,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.msg),
            None => write!(f, "{}: {}", self.key, self.msg),
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    /// Where the config came from (a path, or "built-in demo config").
    pub source_name: String,
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.source_name)?;
        }
        Ok(())
    }
}

/// Looks up environment variables for `${NAME}`; injected so tests need not touch the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads, expands, parses and validates a config file. Relative paths in it are kept as written
/// (relative to the working directory), as operators expect from `./data`-style examples.
pub fn load_file(path: &Path, env: EnvLookup<'_>) -> Result<ValidConfig, ConfigErrors> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source_name: source_name.clone(),
        errors: vec![ConfigError {
            key: "(file)".into(),
            line: None,
            msg: format!("cannot read: {e}"),
        }],
    })?;
    load_str(&text, &source_name, env)
}

/// As [`load_file`], from text.
pub fn load_str(
    text: &str,
    source_name: &str,
    env: EnvLookup<'_>,
) -> Result<ValidConfig, ConfigErrors> {
    let fail = |mut errors: Vec<ConfigError>| {
        // File order reads best; errors without a line (missing keys) go last.
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        ConfigErrors {
            source_name: source_name.to_string(),
            errors,
        }
    };
    let original = DeTable::parse(text).map_err(|e| {
        fail(vec![ConfigError {
            key: "(syntax)".into(),
            line: e.span().map(|s| line_of(text, s.start)),
            msg: first_line(e.message()),
        }])
    })?;
    let locate = |path: &KeyPath| span_of(&original, path).map(|s| line_of(text, s.start));

    let mut expanded = original.clone();
    let mut errors = Vec::new();
    expand_table(expanded.get_mut(), &KeyPath::root(), env, &mut errors);
    if !errors.is_empty() {
        return Err(fail(
            errors
                .into_iter()
                .map(|(path, msg)| ConfigError {
                    key: path.to_string(),
                    line: locate(&path),
                    msg,
                })
                .collect(),
        ));
    }

    let de = toml::de::Deserializer::from(expanded);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path = KeyPath::from_serde(e.path());
        let msg = first_line(e.inner().message());
        // For an unknown field the path names its table; point at the field itself.
        if let Some(field) = unknown_field(&msg)
            && path.0.last() != Some(&super::locate::Seg::Key(field.clone()))
        {
            path = path.key(&field);
        }
        let line = locate(&path).or_else(|| e.inner().span().map(|s| line_of(text, s.start)));
        fail(vec![ConfigError {
            key: path.to_string(),
            line,
            msg,
        }])
    })?;

    let to_errors = |errs: Vec<(KeyPath, String)>| -> Vec<ConfigError> {
        errs.into_iter()
            .map(|(path, msg)| ConfigError {
                key: path.to_string(),
                line: locate(&path),
                msg,
            })
            .collect()
    };
    let (mut valid, warnings) =
        super::validate::validate(config).map_err(|errs| fail(to_errors(errs)))?;
    valid.warnings = to_errors(warnings);
    valid.warnings.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    Ok(valid)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

fn expand_table(
    table: &mut DeTable<'_>,
    path: &KeyPath,
    env: EnvLookup<'_>,
    errors: &mut Vec<(KeyPath, String)>,
) {
    for (key, value) in table.iter_mut() {
        let p = path.key(key.get_ref());
        expand_value(value, &p, env, errors);
    }
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &KeyPath,
    env: EnvLookup<'_>,
    errors: &mut Vec<(KeyPath, String)>,
) {
    match value.get_mut() {
        DeValue::String(s) if s.contains("${") => match expand_str(s, env) {
            Ok(v) => *s = Cow::Owned(v),
            Err(msg) => errors.push((path.clone(), msg)),
        },
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &path.index(i), env, errors);
            }
        }
        DeValue::Table(t) => expand_table(t, path, env, errors),
        _ => {}
    }
}

/// Replaces `${NAME}` with the variable's value; `$${` is a literal `${`.
pub fn expand_str(s: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated ${ in string".to_string())?;
            let name = &after[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("invalid environment variable name ${{{name}}}"));
            }
            let value =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cr\"et".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables() {
        assert_eq!(expand_str("a${KEY}b", &env).unwrap(), "as3cr\"etb");
        assert_eq!(
            expand_str("$argon2id$v=19", &env).unwrap(),
            "$argon2id$v=19"
        );
        assert_eq!(expand_str("$${KEY}", &env).unwrap(), "${KEY}");
        assert!(
            expand_str("${NOPE}", &env)
                .unwrap_err()
                .contains("NOPE is not set")
        );
        assert!(expand_str("${KEY", &env).is_err());
        assert!(expand_str("${1A}", &env).is_err());
    }
}
