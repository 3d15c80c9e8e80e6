//! Chain status (the index's incremental check, and a whole-chain verification an operator can
//! start) and the overview: transfers and bytes per door per hour, top users, refused logins and
//! bans, as server-drawn SVG bar charts.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};

use super::super::AppState;
use super::html::{esc, human_bytes, page, see_other};
use super::{ConsoleOp, CsrfForm};
use crate::audit::index_query::{self, Bucket};
use crate::console::FullVerify;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/chain", get(chain))
        .route("/console/chain/verify", post(verify_now))
        .route("/console/overview", get(overview))
}

async fn chain(State(state): State<AppState>, op: ConsoleOp) -> Response {
    let mut body = String::new();
    match &state.core.index {
        None => body.push_str("<p class=\"error\">The audit index is unavailable, so there is no background check; run <code>gatehouse audit verify</code>.</p>"),
        Some(ix) => {
            let st = ix.chain_status();
            match &st.broken {
                None => {
                    let _ = write!(
                        body,
                        "<p class=\"ok\" id=\"chain-state\">Intact: every record up to seq <strong id=\"verified-seq\">{}</strong> was checked as it was indexed (its hash recomputed, its link to the one before).</p>\
                         <p>Last verified hash: <code class=\"hash\">{}</code></p>",
                        st.verified_seq,
                        esc(&st.verified_hash)
                    );
                }
                Some(b) => {
                    let _ = write!(
                        body,
                        "<p class=\"error\" id=\"chain-state\" role=\"alert\">BROKEN at seq <strong>{}</strong> in <code>{}</code>: {}. Records before it (up to seq {}) verified.</p>",
                        b.seq,
                        esc(&b.file),
                        esc(&b.reason),
                        st.verified_seq
                    );
                }
            }
        }
    }
    let running = state.core.console.verifying.load(Ordering::Relaxed);
    let last = state
        .core
        .console
        .full_verify
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    body.push_str("<h2>Whole chain</h2>");
    match (running, last) {
        (true, _) => body.push_str("<p id=\"full-verify\">A verification of every file is running; reload for its result.</p>"),
        (false, None) => body.push_str("<p id=\"full-verify\">Not run since the gateway started. The check above covers records as they arrive; this one re-reads every file (edits to old records show here).</p>"),
        (false, Some(v)) => {
            let (class, text) = match &v.result {
                Ok(t) => ("ok", t.clone()),
                Err(t) => ("error", format!("FAILED: {t}")),
            };
            let _ = write!(
                body,
                "<p id=\"full-verify\" class=\"{class}\">{} (finished {})</p>",
                esc(&text),
                esc(&v.finished)
            );
        }
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/console/chain/verify\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Verify every file now</button></form>",
        esc(&op.csrf)
    );
    page("Chain", "chain", op.header(), &body)
}

async fn verify_now(
    State(state): State<AppState>,
    op: ConsoleOp,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(r) = op.csrf_refusal(&f.csrf) {
        return r;
    }
    let core = state.core.clone();
    if !core.console.verifying.swap(true, Ordering::AcqRel) {
        let dir = core.audit.dir().to_path_buf();
        tokio::spawn(async move {
            let r = tokio::task::spawn_blocking(move || crate::audit::verify::verify(&dir)).await;
            let result = match r {
                Ok(Ok(report)) => Ok(format!("ok: {} records", report.records)),
                Ok(Err(failure)) => Err(failure.to_string()),
                Err(e) => Err(e.to_string()),
            };
            *core
                .console
                .full_verify
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(FullVerify {
                finished: crate::audit::record::now_ts(),
                result,
            });
            core.console.verifying.store(false, Ordering::Release);
        });
    }
    see_other("/console/chain")
}

/// A bar chart: one bar per label, heights scaled to the largest value.
fn bars(title: &str, rows: &[(String, u64)], fmt: fn(u64) -> String) -> String {
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let (w, h, pad) = (720u64, 180u64, 24u64);
    let n = rows.len().max(1) as u64;
    let bw = ((w - 2 * pad) / n).max(2);
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w} {}\" class=\"chart\">",
        esc(title),
        esc(title),
        h + 40
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let bh = v * (h - pad) / max;
        let x = pad + i as u64 * bw;
        let _ = write!(
            s,
            "<g><title>{}: {}</title><rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{bh}\" class=\"bar\"></rect></g>",
            esc(label),
            esc(&fmt(*v)),
            h - bh,
            bw.saturating_sub(2).max(1)
        );
        if i % 3 == 0 {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" class=\"label\">{}</text>",
                x,
                h + 16,
                esc(label.rsplit('T').next().unwrap_or(label))
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"{pad}\" y=\"12\" class=\"label\">max {}</text></svg></figure>",
        esc(&fmt(max))
    );
    s
}

/// The last 24 hour labels (`YYYY-MM-DDTHH`, UTC), oldest first.
fn last_hours() -> Vec<String> {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]");
    (0..24i64)
        .rev()
        .map(|h| {
            (now - time::Duration::hours(h))
                .format(f)
                .unwrap_or_default()
        })
        .collect()
}

/// One value per hour of `hours` (zero where nothing happened).
fn per_hour(
    buckets: &[Bucket],
    hours: &[String],
    door: Option<&str>,
    bytes: bool,
) -> Vec<(String, u64)> {
    hours
        .iter()
        .map(|h| {
            let v = buckets
                .iter()
                .filter(|b| &b.hour == h && door.is_none_or(|d| b.key == d))
                .map(|b| if bytes { b.bytes } else { b.count })
                .sum();
            (h.clone(), v)
        })
        .collect()
}

async fn overview(State(state): State<AppState>, op: ConsoleOp) -> Response {
    let Some(ix) = state.core.current_index().await else {
        return page(
            "Overview",
            "overview",
            op.header(),
            "<p class=\"error\">The audit index is unavailable.</p>",
        );
    };
    let db = ix.path().to_path_buf();
    let since = {
        let t = time::OffsetDateTime::now_utc() - time::Duration::hours(24);
        let f = time::macros::format_description!("[year]-[month]-[day]T[hour]");
        t.format(f).unwrap_or_default()
    };
    let found = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let conn = crate::audit::index::open_ro(&db).map_err(|e| e.to_string())?;
        let e = |x: crate::audit::index::IndexError| x.to_string();
        Ok((
            index_query::transfers_per_hour(&conn, &since).map_err(e)?,
            index_query::top_users(&conn, &since).map_err(e)?,
            index_query::refused_logins_per_hour(&conn, &since).map_err(e)?,
        ))
    })
    .await;
    let (transfers, top, refused) = match found {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            return page(
                "Overview",
                "overview",
                op.header(),
                &format!("<p class=\"error\">{}</p>", esc(&e)),
            );
        }
        Err(e) => {
            return page(
                "Overview",
                "overview",
                op.header(),
                &format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
            );
        }
    };
    let count = |n: u64| n.to_string();
    let hours = last_hours();
    let mut body = String::from(
        "<p class=\"summary\">The last 24 hours, per hour (UTC).</p><div class=\"charts\">",
    );
    body.push_str(&bars(
        "Transfers per hour, all doors",
        &per_hour(&transfers, &hours, None, false),
        count,
    ));
    for door in ["sftp", "ftp", "http"] {
        let rows = per_hour(&transfers, &hours, Some(door), true);
        if rows.iter().any(|(_, v)| *v > 0) {
            body.push_str(&bars(
                &format!("Bytes per hour over {door}"),
                &rows,
                human_bytes,
            ));
        }
    }
    let refused_rows: Vec<(String, u64)> =
        refused.iter().map(|b| (b.hour.clone(), b.count)).collect();
    body.push_str(&bars("Refused logins per hour", &refused_rows, count));
    let bans: u64 = refused.iter().map(|b| b.bytes).sum();
    let _ = write!(
        body,
        "</div><p class=\"summary\">Bans started in the last 24 hours: <strong id=\"bans\">{bans}</strong>.</p>"
    );
    body.push_str("<h2>Top users</h2><table class=\"top\"><thead><tr><th>User</th><th>Transfers</th><th>Bytes</th></tr></thead><tbody>");
    for b in &top {
        let _ = write!(
            body,
            "<tr><td><a href=\"/console/users/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            super::html::qv(&b.key),
            esc(&b.key),
            b.count,
            human_bytes(b.bytes)
        );
    }
    body.push_str("</tbody></table>");
    page("Overview", "overview", op.header(), &body)
}
