//! The live tail (Server-Sent Events of new audit records, read from the files as the writer
//! reports each batch) and the live sessions (who is connected, transfers with progress, an
//! "end session" button).

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::super::AppState;
use super::audit::{HEAD_ROW, record_row};
use super::html::{esc, human_bytes, page, secure, see_other};
use super::{ConsoleOp, CsrfForm};
use crate::audit::tail::Tail;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/tail", get(tail_page))
        .route("/console/tail/events", get(tail_events))
        .route("/console/sessions", get(sessions))
        .route("/console/sessions/{id}/end", post(end_session))
}

async fn tail_page(op: ConsoleOp) -> Response {
    let body = format!(
        "<p class=\"summary\" id=\"tail-status\" aria-live=\"polite\">Connecting…</p>\
         <section class=\"records\" id=\"tail\" aria-label=\"New records\" data-src=\"/console/tail/events\">{HEAD_ROW}</section>"
    );
    page("Live tail", "tail", op.header(), &body)
}

/// New records, newest last, as SSE `record` events whose data is the rendered row; starts at
/// the end of the log (or after `Last-Event-ID`, the seq the browser saw last, on reconnect).
async fn tail_events(
    State(state): State<AppState>,
    _op: ConsoleOp,
    parts: http::request::Parts,
) -> Response {
    // Logged in by cookie: the stream ends when that session ends (logout, idle expiry).
    let session = super::cookie_token(&parts);
    let headers = parts.headers;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut written = state.core.audit.written();
    let start = resume.unwrap_or(*written.borrow());
    let dir = state.core.audit.dir().to_path_buf();
    let stop = state.core.shutdown.token.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(256);
    let core = state.core.clone();
    tokio::spawn(async move {
        let mut tail = Some(Tail::all(&dir, start));
        let mut check = tokio::time::interval(Duration::from_secs(15));
        loop {
            if session.as_deref().is_some_and(|t| !core.console.is_live(t)) {
                return;
            }
            let Some(mut t) = tail.take() else { return };
            let read = tokio::task::spawn_blocking(move || {
                let r = t.read(500);
                (t, r)
            })
            .await;
            let Ok((t, batch)) = read else { return };
            tail = Some(t);
            let Ok(batch) = batch else { return };
            for r in &batch.records {
                let ev = Event::default()
                    .event("record")
                    .id(r.seq.to_string())
                    .data(record_row(r));
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            if batch.more {
                continue;
            }
            tokio::select! {
                r = written.changed() => if r.is_err() { return },
                _ = check.tick() => {}
                _ = tx.closed() => return,
                _ = stop.cancelled() => return,
            }
        }
    });
    let events = EventStream(rx);
    secure(
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    )
}

struct EventStream(tokio::sync::mpsc::Receiver<Event>);

impl futures::Stream for EventStream {
    type Item = Result<Event, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SessionsQuery {
    fragment: bool,
}

fn sessions_table(state: &AppState, csrf: &str) -> String {
    let list = state.core.live.list();
    if list.is_empty() {
        return "<p class=\"summary\" id=\"no-sessions\">No SFTP or FTP session is open.</p>"
            .to_string();
    }
    let mut s = format!(
        "<p class=\"summary\">{} open sessions.</p><table class=\"sessions\"><thead><tr><th>User</th><th>Door</th>\
         <th>From</th><th>Connected for</th><th>Received</th><th>Sent</th><th>Transfers in flight</th><th></th></tr></thead><tbody>",
        list.len()
    );
    for e in list {
        let mut transfers = String::new();
        for t in e.transfers() {
            let done = t.done.load(Ordering::Relaxed);
            let progress = match t.size {
                Some(size) if size > 0 => format!(
                    "<progress max=\"{size}\" value=\"{}\"></progress> {} of {}",
                    done.min(size),
                    human_bytes(done),
                    human_bytes(size)
                ),
                _ => human_bytes(done),
            };
            let _ = write!(
                transfers,
                "<div class=\"transfer\">{} <span class=\"path\">{}</span> {progress}</div>",
                t.direction.as_str(),
                esc(&t.path)
            );
        }
        let _ = write!(
            s,
            "<tr data-session=\"{id}\"><td><a href=\"/console/users/{uq}\">{user}</a></td><td>{door}</td><td>{remote}</td>\
             <td>{since}</td><td>{rx}</td><td>{tx}</td><td>{transfers}</td><td>\
             <form method=\"post\" action=\"/console/sessions/{id}/end\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"danger\">End session</button></form></td></tr>",
            id = esc(&e.id),
            uq = super::html::qv(&e.user),
            user = esc(&e.user),
            door = e.protocol.as_str(),
            remote = esc(&e.remote),
            since = ago(e.since),
            rx = human_bytes(e.bytes_in.load(Ordering::Relaxed)),
            tx = human_bytes(e.bytes_out.load(Ordering::Relaxed)),
            csrf = esc(csrf),
        );
    }
    s.push_str("</tbody></table>");
    s
}

async fn sessions(
    State(state): State<AppState>,
    op: ConsoleOp,
    Query(q): Query<SessionsQuery>,
) -> Response {
    let table = sessions_table(&state, &op.csrf);
    if q.fragment {
        return secure(
            (
                [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
                table,
            )
                .into_response(),
        );
    }
    let body = format!(
        "<div id=\"sessions\" data-refresh=\"/console/sessions?fragment=true\" aria-live=\"polite\">{table}</div>"
    );
    page("Sessions", "sessions", op.header(), &body)
}

async fn end_session(
    State(state): State<AppState>,
    op: ConsoleOp,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(r) = op.csrf_refusal(&f.csrf) {
        return r;
    }
    if state.core.live.end(&id, &op.name) {
        tracing::info!(session = %id, operator = %op.name, "session ended from the console");
    }
    see_other("/console/sessions")
}
