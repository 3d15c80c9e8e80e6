//! JSON documents checked against a JSON Schema (draft 2020-12, the `jsonschema` crate), and
//! schema files compiled with errors that name their line.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

/// A compiled schema.
pub type Schema = Arc<jsonschema::Validator>;

/// Reads and compiles a schema file; the error names the file and line.
pub fn compile(path: &Path) -> Result<Schema, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read JSON Schema {}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} line {} column {}: not valid JSON: {}",
            path.display(),
            e.line(),
            e.column(),
            strip_position(&e.to_string())
        )
    })?;
    // No network or file resolution: a schema is self-contained, so `check` proves it whole.
    jsonschema::draft202012::options()
        .build(&doc)
        .map(Arc::new)
        .map_err(|e| {
            let pointer = e.instance_path().to_string();
            let line =
                line_of_pointer(&text, &pointer).map_or_else(String::new, |l| format!(" line {l}"));
            let at = if pointer.is_empty() { "/" } else { &pointer };
            format!(
                "{}{line}: invalid JSON Schema at {at}: {}",
                path.display(),
                e.masked()
            )
        })
}

/// serde_json appends " at line L column C"; the position is given separately.
fn strip_position(msg: &str) -> &str {
    msg.rsplit_once(" at line ").map_or(msg, |(m, _)| m)
}

/// Checks one document; at most `max` errors, each with its JSON pointer.
pub(super) fn check(schema: &jsonschema::Validator, bytes: &[u8], max: usize) -> Vec<String> {
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return vec![format!(
                "line {} column {}: not valid JSON: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            )];
        }
    };
    schema
        .iter_errors(&doc)
        .take(max)
        .map(|e| {
            let p = e.instance_path().to_string();
            let at = if p.is_empty() { "/".to_string() } else { p };
            // Masked: the detail goes to the client and the audit log, not the file's values.
            format!("{at}: {}", e.masked())
        })
        .collect()
}

/// The 1-based line where the value at a JSON pointer starts in `text` (a valid JSON
/// document), found by walking the document's structure.
fn line_of_pointer(text: &str, pointer: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0);
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match b.get(pos)? {
            b'{' => {
                pos = skip_ws(b, pos + 1);
                loop {
                    if b.get(pos)? == &b'}' {
                        return None;
                    }
                    let (key, after) = read_string(b, pos)?;
                    pos = skip_ws(b, after);
                    pos = skip_ws(b, pos + 1); // the ':'
                    if key == token {
                        break;
                    }
                    pos = skip_ws(b, skip_value(b, pos)?);
                    if b.get(pos)? == &b',' {
                        pos = skip_ws(b, pos + 1);
                    }
                }
            }
            b'[' => {
                let index: usize = token.parse().ok()?;
                pos = skip_ws(b, pos + 1);
                for _ in 0..index {
                    pos = skip_ws(b, skip_value(b, pos)?);
                    if b.get(pos)? != &b',' {
                        return None;
                    }
                    pos = skip_ws(b, pos + 1);
                }
            }
            _ => return None,
        }
    }
    Some(b[..pos].iter().filter(|&&c| c == b'\n').count() + 1)
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while b.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

/// A string starting at `pos` (its opening quote): its JSON-decoded text and the position after it.
fn read_string(b: &[u8], pos: usize) -> Option<(String, usize)> {
    if b.get(pos)? != &b'"' {
        return None;
    }
    let mut i = pos + 1;
    while *b.get(i)? != b'"' {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    let s: String = serde_json::from_slice(&b[pos..=i]).ok()?;
    Some((s, i + 1))
}

/// The position just after the value starting at `pos`.
fn skip_value(b: &[u8], pos: usize) -> Option<usize> {
    match b.get(pos)? {
        b'"' => read_string(b, pos).map(|(_, end)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = read_string(b, i)?.1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = pos;
            while b
                .get(i)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
            {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_find_their_line() {
        let text = "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"a\": {\"type\": \"x\"},\n    \"b/c\": [1,\n {\"q\": 2}]\n  }\n}\n";
        assert_eq!(line_of_pointer(text, ""), Some(1));
        assert_eq!(line_of_pointer(text, "/properties"), Some(3));
        assert_eq!(line_of_pointer(text, "/properties/a/type"), Some(4));
        assert_eq!(line_of_pointer(text, "/properties/b~1c/1/q"), Some(6));
        assert_eq!(line_of_pointer(text, "/nope"), None);
    }

    #[test]
    fn a_bad_schema_is_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"qty\": {\"type\": \"strin\"}\n  }\n}\n",
        )
        .unwrap();
        let e = compile(&bad).unwrap_err();
        assert!(e.contains("bad.json line 4"), "{e}");
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{\n  \"type\": \"object\",,\n}\n").unwrap();
        let e = compile(&broken).unwrap_err();
        assert!(e.contains("broken.json line 2 column"), "{e}");
    }

    #[test]
    fn documents_get_pointers_not_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(
            &p,
            r#"{"type":"object","required":["id"],"properties":{"qty":{"type":"integer"}}}"#,
        )
        .unwrap();
        let s = compile(&p).unwrap();
        assert!(check(&s, br#"{"id":1,"qty":3}"#, 10).is_empty());
        let errs = check(&s, br#"{"qty":"secret-value"}"#, 10);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("/qty: ")), "{errs:?}");
        assert!(errs.iter().all(|e| !e.contains("secret-value")), "{errs:?}");
        let e = check(&s, b"{\n\"id\": 1,\n", 10);
        assert!(e[0].starts_with("line 3 column 0: not valid JSON"), "{e:?}");
    }
}
