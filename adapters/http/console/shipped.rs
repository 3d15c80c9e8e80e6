//! The shipped audit log in the console (`[audit.ship]`): every node that shipped, and one
//! node's records with the same filters as the local search, newest first, paged back by seq.
//! Read from the bucket, so it shows what `audit verify --remote` checks, including the
//! records of nodes that are gone.

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::super::AppState;
use super::ConsoleOp;
use super::audit::{Params, form_to, records_section};
use super::html::{esc, page, qv};

const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NodeParam {
    node: String,
}

pub(super) async fn search(
    State(state): State<AppState>,
    op: ConsoleOp,
    node: Query<NodeParam>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = params.map(|Query(p)| p).unwrap_or_default();
    let title = "Shipped audit log";
    let Some(log) = state.core.shipped.as_ref() else {
        let body = "<p>Audit shipping is not configured (<code>[audit.ship]</code>).</p>";
        return page(title, "audit", op.header(), body);
    };
    let mut body = String::new();
    let nodes = match log.nodes().await {
        Ok(n) => n,
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\" role=\"alert\">cannot list {}: {}</p>",
                esc(&log.backend_name),
                esc(&e.to_string())
            );
            return page(title, "audit", op.header(), &body);
        }
    };
    let chosen = if node.node.is_empty() {
        nodes.first().cloned().unwrap_or_default()
    } else {
        node.node.clone()
    };
    let _ = write!(
        body,
        "<p>Shipped to <code>{}</code>. Nodes:",
        esc(&log.backend_name)
    );
    for n in &nodes {
        let cur = if *n == chosen {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            body,
            " <a class=\"node\"{cur} href=\"/console/audit/shipped?node={}\">{}</a>",
            qv(n),
            esc(n)
        );
    }
    body.push_str("</p>");
    if nodes.is_empty() {
        body.push_str("<p>Nothing has been shipped yet.</p>");
        return page(title, "audit", op.header(), &body);
    }
    // Only a node the bucket lists: the name becomes part of an object key.
    if !nodes.contains(&chosen) {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">no node {} has shipped to {}</p>",
            esc(&chosen),
            esc(&log.backend_name)
        );
        return page(title, "audit", op.header(), &body);
    }
    let hidden = format!(
        "<input type=\"hidden\" name=\"node\" value=\"{}\">",
        esc(&chosen)
    );
    body.push_str(&form_to(&p, "/console/audit/shipped", &hidden));
    let mut f = match p.filter() {
        Ok(f) => f,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(&e));
            return page(title, "audit", op.header(), &body);
        }
    };
    f.before_seq = p.before();
    match log.page(&chosen, &f, PAGE + 1).await {
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\" role=\"alert\">cannot read {}'s shipped log: {}</p>",
                esc(&chosen),
                esc(&e.to_string())
            );
        }
        Ok(mut rows) => {
            let more = rows.len() > PAGE;
            rows.truncate(PAGE);
            let _ = write!(
                body,
                "<p class=\"summary\">Node <strong id=\"node\">{}</strong>: <span id=\"count\">{}</span> records on this page.</p>",
                esc(&chosen),
                rows.len()
            );
            let q = p.query();
            let mut pager = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
            if let (true, Some(last)) = (more, rows.last()) {
                let _ = write!(
                    pager,
                    "<a rel=\"next\" href=\"/console/audit/shipped?node={}&{q}&before_seq={}\">Older →</a>",
                    qv(&chosen),
                    last.seq
                );
            }
            pager.push_str("</nav>");
            body.push_str(&records_section(&rows));
            body.push_str(&pager);
        }
    }
    page(title, "audit", op.header(), &body)
}
