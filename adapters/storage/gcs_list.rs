//! GCS listings: `objects.list` pages (JSON API), as object_store's list results.

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::Method;
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta, Result};
use serde::Deserialize;

use super::gcs::{Gcs, Inner, Object, enc, generic, key_path, status_err};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl Inner {
    async fn list_page(
        &self,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        start: Option<&str>,
        max: Option<usize>,
        token: Option<&str>,
    ) -> Result<ObjectList> {
        let url = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            if let Some(p) = prefix.filter(|p| !p.is_empty()) {
                q.append_pair("prefix", p);
            }
            if let Some(d) = delimiter {
                q.append_pair("delimiter", d);
            }
            if let Some(s) = start {
                q.append_pair("startOffset", s);
            }
            if let Some(m) = max {
                q.append_pair("maxResults", &m.to_string());
            }
            if let Some(t) = token {
                q.append_pair("pageToken", t);
            }
            format!(
                "{}/storage/v1/b/{}/o?{}",
                self.base,
                enc(&self.bucket),
                q.finish()
            )
        };
        let (status, body) = self.idempotent(Method::GET, &url).await?;
        if !status.is_success() {
            return Err(status_err(status, &body, prefix.unwrap_or(""), false));
        }
        serde_json::from_slice(&body).map_err(|e| generic(format!("objects.list answer: {e}")))
    }
}

impl Gcs {
    /// Pages of `objects.list` (without a delimiter: every key under `prefix/`).
    pub(super) fn list_all(
        &self,
        prefix: Option<&Path>,
        offset: Option<String>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let prefix = prefix.map(|p| format!("{p}/"));
        let state = (Some(None::<String>), prefix, offset);
        futures::stream::unfold(state, move |(token, prefix, offset)| {
            let inner = inner.clone();
            async move {
                let token = token?;
                let r = inner
                    .list_page(
                        prefix.as_deref(),
                        None,
                        offset.as_deref(),
                        None,
                        token.as_deref(),
                    )
                    .await;
                match r {
                    Ok(page) => {
                        let next = page.next_page_token.clone().map(Some);
                        let metas: Vec<Result<ObjectMeta>> = page
                            .items
                            .iter()
                            .filter(|o| offset.as_deref() != Some(o.name.as_str()))
                            .map(Object::meta)
                            .collect();
                        Some((metas, (next, prefix, offset)))
                    }
                    Err(e) => Some((vec![Err(e)], (None, prefix, offset))),
                }
            }
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }

    /// Every page of one directory level (`delimiter=/`), collected.
    pub(super) async fn list_delimited(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let prefix = prefix.map(|p| format!("{p}/"));
        let mut all = ListResult {
            extensions: Default::default(),
            common_prefixes: vec![],
            objects: vec![],
        };
        let mut token: Option<String> = None;
        loop {
            let page = self
                .inner
                .list_page(prefix.as_deref(), Some("/"), None, None, token.as_deref())
                .await?;
            token = page.next_page_token.clone();
            let r = page_result(page, None)?;
            all.common_prefixes.extend(r.common_prefixes);
            all.objects.extend(r.objects);
            if token.is_none() {
                return Ok(all);
            }
        }
    }
}

fn page_result(page: ObjectList, offset: Option<&str>) -> Result<ListResult> {
    Ok(ListResult {
        extensions: Default::default(),
        common_prefixes: page
            .prefixes
            .iter()
            .map(|p| key_path(p.trim_end_matches('/')))
            .collect(),
        objects: page
            .items
            .iter()
            .filter(|o| offset != Some(o.name.as_str()))
            .map(Object::meta)
            .collect::<Result<_>>()?,
    })
}

#[async_trait]
impl PaginatedListStore for Gcs {
    async fn list_paginated(
        &self,
        prefix: Option<&str>,
        opts: PaginatedListOptions,
    ) -> Result<PaginatedListResult> {
        let page = self
            .inner
            .list_page(
                prefix,
                opts.delimiter.as_deref(),
                opts.offset.as_deref(),
                opts.max_keys,
                opts.page_token.as_deref(),
            )
            .await?;
        let page_token = page.next_page_token.clone();
        Ok(PaginatedListResult {
            result: page_result(page, opts.offset.as_deref())?,
            page_token,
        })
    }
}
