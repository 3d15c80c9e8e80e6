//! Audit search (filters, newest first, keyset pages by seq, each record expandable), its
//! streamed CSV and JSON Lines exports, and the per-user history.

use std::fmt::Write;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use serde::Deserialize;

use super::super::AppState;
use super::super::audit_api::{jsonl_body, lines_body};
use super::ConsoleOp;
use super::html::{esc, human_bytes, page, page_with, qv, secure};
use crate::audit::Record;
use crate::audit::query::{Filter, normalise_time};

const PAGE: usize = 50;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/audit", get(search))
        .route("/console/audit/shipped", get(super::shipped::search))
        .route("/console/audit/export.csv", get(export_csv))
        .route("/console/audit/export.jsonl", get(export_jsonl))
        .route("/console/users", get(users))
        .route("/console/users/{name}", get(user))
}

/// The search form's fields (all optional; empty means any).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(super) struct Params {
    user: String,
    protocol: String,
    action: String,
    outcome: String,
    path_prefix: String,
    since: String,
    until: String,
    session: String,
    remote: String,
    text: String,
    before_seq: Option<u64>,
    after_seq: Option<u64>,
}

fn some(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl Params {
    /// The page's start: records older than this seq.
    pub(super) fn before(&self) -> Option<u64> {
        self.before_seq
    }

    pub(super) fn filter(&self) -> Result<Filter, String> {
        let time = |s: &str, name: &str| {
            some(s)
                .map(|t| normalise_time(&t).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        Ok(Filter {
            user: some(&self.user),
            protocol: some(&self.protocol),
            action: some(&self.action),
            outcome: some(&self.outcome),
            path_prefix: some(&self.path_prefix),
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            session: some(&self.session),
            remote: some(&self.remote),
            text: some(&self.text),
            ..Default::default()
        })
    }

    /// The filters as a query string (no pagination).
    pub(super) fn query(&self) -> String {
        let fields = [
            ("user", &self.user),
            ("protocol", &self.protocol),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("path_prefix", &self.path_prefix),
            ("since", &self.since),
            ("until", &self.until),
            ("session", &self.session),
            ("remote", &self.remote),
            ("text", &self.text),
        ];
        fields
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", qv(v.trim())))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn select(name: &str, label: &str, current: &str, options: &[&str]) -> String {
    let mut s = format!("<label>{label} <select name=\"{name}\"><option value=\"\">any</option>");
    for o in options {
        let sel = if *o == current { " selected" } else { "" };
        let _ = write!(s, "<option{sel}>{o}</option>");
    }
    s.push_str("</select></label>");
    s
}

fn input(name: &str, label: &str, value: &str, placeholder: &str) -> String {
    format!(
        "<label>{label} <input name=\"{name}\" value=\"{}\" placeholder=\"{}\"></label>",
        esc(value),
        esc(placeholder)
    )
}

fn form(p: &Params) -> String {
    form_to(p, "/console/audit", "")
}

/// The search form, sent to `action` with `hidden` (inputs) in it.
pub(super) fn form_to(p: &Params, action: &str, hidden: &str) -> String {
    let mut s = format!("<form class=\"filters\" method=\"get\" action=\"{action}\">{hidden}");
    s.push_str(&input("user", "User", &p.user, ""));
    s.push_str(&select(
        "protocol",
        "Door",
        &p.protocol,
        &["sftp", "ftp", "http"],
    ));
    s.push_str(&select(
        "action",
        "Action",
        &p.action,
        &[
            "login", "logout", "upload", "download", "delete", "mkdir", "rmdir", "rename", "link",
            "list", "proxy", "config", "event",
        ],
    ));
    s.push_str(&select(
        "outcome",
        "Outcome",
        &p.outcome,
        &["ok", "denied", "error"],
    ));
    s.push_str(&input(
        "path_prefix",
        "Path under",
        &p.path_prefix,
        "/partners/acme",
    ));
    s.push_str(&input("since", "Since", &p.since, "2026-12-01T00:00:00Z"));
    s.push_str(&input("until", "Until", &p.until, "RFC 3339"));
    s.push_str(&input("session", "Session", &p.session, ""));
    s.push_str(&input("remote", "Address", &p.remote, "203.0.113.7"));
    s.push_str(&input("text", "Detail words", &p.text, "validation"));
    s.push_str("<button type=\"submit\">Search</button></form>");
    s
}

/// One record as an expandable row.
pub(super) fn record_row(r: &Record) -> String {
    let what = match (&r.path, &r.to) {
        (Some(p), Some(t)) => format!("{p} → {t}"),
        (Some(p), None) => p.clone(),
        _ => String::new(),
    };
    let bytes = r.bytes.map(human_bytes).unwrap_or_default();
    let full = serde_json::to_string_pretty(r).unwrap_or_default();
    format!(
        "<details class=\"rec {outcome}\" data-seq=\"{seq}\"><summary>\
         <span class=\"seq\">{seq}</span><span class=\"ts\">{ts}</span>\
         <span class=\"proto\">{proto}</span><span class=\"user\">{user}</span>\
         <span class=\"action\">{action}</span><span class=\"outcome\">{outcome}</span>\
         <span class=\"bytes\">{bytes}</span><span class=\"what\">{what}</span></summary>\
         <pre>{full}</pre></details>",
        seq = r.seq,
        ts = esc(&r.ts),
        proto = esc(r.protocol.as_deref().unwrap_or("-")),
        user = esc(r.user.as_deref().unwrap_or("-")),
        action = esc(&r.action),
        outcome = esc(&r.outcome),
        bytes = esc(&bytes),
        what = esc(&what),
        full = esc(&full),
    )
}

pub(super) const HEAD_ROW: &str = "<div class=\"rec head\" aria-hidden=\"true\"><span class=\"seq\">seq</span>\
    <span class=\"ts\">time</span><span class=\"proto\">door</span><span class=\"user\">user</span>\
    <span class=\"action\">action</span><span class=\"outcome\">outcome</span>\
    <span class=\"bytes\">size</span><span class=\"what\">path</span></div>";

/// Records as the list of expandable rows under a header row.
pub(super) fn records_section(rows: &[Record]) -> String {
    let mut s = String::from("<section class=\"records\" aria-label=\"Records\">");
    s.push_str(HEAD_ROW);
    for r in rows {
        s.push_str(&record_row(r));
    }
    s.push_str("</section>");
    s
}

/// A page of records and its count, from the index (a blocking query).
async fn run_page(
    state: &AppState,
    mut f: Filter,
    p: &Params,
) -> Result<(Vec<Record>, u64, bool), String> {
    let Some(ix) = state.core.current_index().await else {
        return Err("the audit index is unavailable (see the gateway's log); use `gatehouse audit query` meanwhile".into());
    };
    let db = ix.path().to_path_buf();
    // Newer page: oldest first after the seq, then shown newest first.
    let newer = p.after_seq.is_some() && p.before_seq.is_none();
    f.after_seq = p.after_seq;
    f.before_seq = p.before_seq;
    f.newest_first = !newer;
    f.limit = Some(PAGE + 1);
    tokio::task::spawn_blocking(move || {
        let conn = crate::audit::index::open_ro(&db).map_err(|e| e.to_string())?;
        let mut rows = crate::audit::index_query::page(&conn, &f).map_err(|e| e.to_string())?;
        let more = rows.len() > PAGE;
        rows.truncate(PAGE);
        if newer {
            rows.reverse();
        }
        let n = crate::audit::index_query::count(&conn, &f).map_err(|e| e.to_string())?;
        Ok((rows, n, more))
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn search(
    State(state): State<AppState>,
    op: ConsoleOp,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = params.map(|Query(p)| p).unwrap_or_default();
    let mut body = form(&p);
    if state.core.shipped.is_some() {
        body.push_str("<p><a href=\"/console/audit/shipped\">Shipped log (every node)</a></p>");
    }
    let f = match p.filter() {
        Ok(f) => f,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(&e));
            return page("Audit", "audit", op.header(), &body);
        }
    };
    match run_page(&state, f, &p).await {
        Err(e) => {
            let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(&e));
        }
        Ok((rows, count, more)) => {
            let q = p.query();
            let amp = if q.is_empty() { "" } else { "&" };
            let _ = write!(
                body,
                "<p class=\"summary\"><span id=\"count\">{count}</span> matching records. \
                 Export: <a href=\"/console/audit/export.csv?{q}\" download>CSV</a> · \
                 <a href=\"/console/audit/export.jsonl?{q}\" download>JSON Lines</a></p>"
            );
            let mut pager = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
            let newer_exists = p.before_seq.is_some() || (p.after_seq.is_some() && more);
            if let (true, Some(first)) = (newer_exists, rows.first()) {
                let _ = write!(
                    pager,
                    "<a rel=\"prev\" href=\"/console/audit?{q}{amp}after_seq={}\">← Newer</a>",
                    first.seq
                );
            }
            let older_exists = if p.after_seq.is_some() && p.before_seq.is_none() {
                rows.last().is_some_and(|r| r.seq > 1)
            } else {
                more
            };
            if let (true, Some(last)) = (older_exists, rows.last()) {
                let _ = write!(
                    pager,
                    "<a rel=\"next\" href=\"/console/audit?{q}{amp}before_seq={}\">Older →</a>",
                    last.seq
                );
            }
            pager.push_str("</nav>");
            body.push_str(&pager);
            body.push_str(&records_section(&rows));
            body.push_str(&pager);
        }
    }
    page("Audit", "audit", op.header(), &body)
}

fn bad_export(e: &str) -> Response {
    page_with(
        StatusCode::BAD_REQUEST,
        "Export",
        &format!("<p>{}</p>", esc(e)),
    )
}

fn attachment(resp: Response, ctype: &'static str, name: &str) -> Response {
    let mut r = resp;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
    if let Ok(v) = http::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    secure(r)
}

async fn export_jsonl(
    State(state): State<AppState>,
    _op: ConsoleOp,
    Query(p): Query<Params>,
) -> Response {
    let f = match p.filter() {
        Ok(f) => f,
        Err(e) => return bad_export(&e),
    };
    let body = jsonl_body(&state.core, f).await;
    attachment(body.into_response(), "application/x-ndjson", "audit.jsonl")
}

/// One CSV field, quoted when it needs to be; a leading `=`, `+`, `-` or `@` is prefixed with
/// `'` so a spreadsheet does not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

const CSV_HEAD: &str = "seq,ts,node,protocol,session,user,remote,action,path,to,bytes,sha256,status,outcome,detail,prev,hash\n";

fn csv_row(r: &Record) -> String {
    let o = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
        r.seq,
        csv_field(&r.ts),
        csv_field(&r.node),
        o(&r.protocol),
        o(&r.session),
        o(&r.user),
        o(&r.remote),
        csv_field(&r.action),
        o(&r.path),
        o(&r.to),
        r.bytes.map(|b| b.to_string()).unwrap_or_default(),
        o(&r.sha256),
        r.status.map(|b| b.to_string()).unwrap_or_default(),
        csv_field(&r.outcome),
        o(&r.detail),
        csv_field(&r.prev),
        o(&r.hash),
    )
}

async fn export_csv(
    State(state): State<AppState>,
    _op: ConsoleOp,
    Query(p): Query<Params>,
) -> Response {
    let f = match p.filter() {
        Ok(f) => f,
        Err(e) => return bad_export(&e),
    };
    let first = std::sync::atomic::AtomicBool::new(true);
    let body = lines_body(&state.core, f, move |r, _| {
        let row = csv_row(r);
        if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
            format!("{CSV_HEAD}{row}")
        } else {
            row
        }
    })
    .await;
    attachment(body.into_response(), "text/csv; charset=utf-8", "audit.csv")
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserQuery {
    name: String,
}

async fn users(op: ConsoleOp, Query(q): Query<UserQuery>) -> Response {
    if let Some(n) = some(&q.name) {
        return super::html::see_other(&format!("/console/users/{}", qv(&n)));
    }
    let body = "<form class=\"filters\" method=\"get\" action=\"/console/users\">\
        <label>User <input name=\"name\" required></label><button type=\"submit\">Show history</button></form>";
    page("Users", "users", op.header(), body)
}

async fn user(State(state): State<AppState>, op: ConsoleOp, Path(name): Path<String>) -> Response {
    let Some(ix) = state.core.current_index().await else {
        return page(
            "User",
            "users",
            op.header(),
            "<p class=\"error\">The audit index is unavailable.</p>",
        );
    };
    let db = ix.path().to_path_buf();
    let who = name.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let conn = crate::audit::index::open_ro(&db).map_err(|e| e.to_string())?;
        let count = |action: Option<&str>, outcome: Option<&str>| {
            crate::audit::index_query::count(
                &conn,
                &Filter {
                    user: Some(who.clone()),
                    action: action.map(str::to_string),
                    outcome: outcome.map(str::to_string),
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())
        };
        let totals = [
            ("logins", count(Some("login"), Some("ok"))?),
            ("refused logins", count(Some("login"), Some("denied"))?),
            ("uploads", count(Some("upload"), Some("ok"))?),
            ("downloads", count(Some("download"), Some("ok"))?),
            ("refusals", count(None, Some("denied"))?),
        ];
        let mut rows = Vec::new();
        crate::audit::index_query::for_each(
            &conn,
            &Filter {
                user: Some(who.clone()),
                newest_first: true,
                ..Default::default()
            },
            |r| {
                let wanted = matches!(
                    r.action.as_str(),
                    "login" | "logout" | "upload" | "download"
                ) || r.outcome == "denied";
                if wanted {
                    rows.push(r);
                }
                rows.len() < 200
            },
        )
        .map_err(|e| e.to_string())?;
        Ok((totals, rows))
    })
    .await;
    let (totals, rows) = match found {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            return page(
                "User",
                "users",
                op.header(),
                &format!("<p class=\"error\">{}</p>", esc(&e)),
            );
        }
        Err(e) => {
            return page(
                "User",
                "users",
                op.header(),
                &format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
            );
        }
    };
    let mut body = String::from("<dl class=\"totals\">");
    for (k, v) in totals {
        let _ = write!(body, "<div><dt>{k}</dt><dd>{v}</dd></div>");
    }
    body.push_str("</dl><table class=\"history\"><thead><tr><th>Time</th><th>Door</th><th>Action</th><th>Outcome</th><th>Path</th><th>Size</th><th>sha256</th><th>From</th></tr></thead><tbody>");
    for r in &rows {
        let _ = write!(
            body,
            "<tr class=\"{o}\"><td>{}</td><td>{}</td><td>{}</td><td>{o}</td><td>{}</td><td>{}</td><td class=\"hash\">{}</td><td>{}</td></tr>",
            esc(&r.ts),
            esc(r.protocol.as_deref().unwrap_or("-")),
            esc(&r.action),
            esc(r.path.as_deref().or(r.detail.as_deref()).unwrap_or("")),
            r.bytes.map(human_bytes).unwrap_or_default(),
            esc(r.sha256.as_deref().unwrap_or("")),
            esc(r.remote.as_deref().unwrap_or("")),
            o = esc(&r.outcome),
        );
    }
    body.push_str("</tbody></table>");
    let _ = write!(
        body,
        "<p><a href=\"/console/audit?user={}\">All of this user's records</a></p>",
        qv(&name)
    );
    page(&format!("User {name}"), "users", op.header(), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }
}
