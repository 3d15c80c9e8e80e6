//! Reading the shipped log back, for the console: which nodes shipped, and a page of one node's
//! records (newest first, filtered, keyset by seq) read from its shipped files, newest file
//! first, so a page near the end of the log reads only the last files.

use std::sync::Arc;

use super::Layout;
use super::verify::{names, read_all};
use crate::audit::Record;
use crate::audit::query::Filter;
use crate::audit::record;
use crate::vfs::backend::{Backend, StorageError};

/// The shipped log on one backend.
pub struct ShippedLog {
    backend: Arc<dyn Backend>,
    /// The backend's name in `[backends]`.
    pub backend_name: String,
    layout: Layout,
}

impl std::fmt::Debug for ShippedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShippedLog")
            .field("backend", &self.backend_name)
            .finish_non_exhaustive()
    }
}

impl ShippedLog {
    /// The log under `layout` on `backend`.
    pub fn new(backend: Arc<dyn Backend>, backend_name: String, layout: Layout) -> Self {
        Self {
            backend,
            backend_name,
            layout,
        }
    }

    /// The backend it reads (the shipper writes there too).
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// The nodes that shipped.
    pub async fn nodes(&self) -> Result<Vec<String>, StorageError> {
        super::verify::shipped_nodes(self.backend.as_ref(), &self.layout).await
    }

    /// Up to `limit` of `node`'s records matching `filter` (its `before_seq` pages back),
    /// newest first. Lines that do not parse are skipped (`audit verify --remote` reports them).
    pub async fn page(
        &self,
        node: &str,
        filter: &Filter,
        limit: usize,
    ) -> Result<Vec<Record>, StorageError> {
        let mut files: Vec<(u64, String)> =
            names(self.backend.as_ref(), &self.layout.key(node, ""))
                .await?
                .into_iter()
                .filter(|(_, dir)| !dir)
                .filter_map(|(n, _)| record::parse_file_name(&n).map(|i| (i, n)))
                .collect();
        files.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        let mut out = Vec::new();
        for (_, name) in files {
            let bytes = read_all(self.backend.as_ref(), &self.layout.key(node, &name)).await?;
            let text = String::from_utf8_lossy(&bytes);
            let mut here: Vec<Record> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Record>(l).ok())
                .filter(|r| filter.matches(r))
                .collect();
            here.reverse();
            out.extend(here);
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }
}
