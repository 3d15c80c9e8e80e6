//! The mount table: which backend serves which part of the virtual tree (longest prefix wins),
//! and the directories that exist only because something is mounted beneath them.

use std::sync::Arc;

use super::backend::{Backend, Key};
use super::path::VPath;

/// One mount.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Virtual path.
    pub path: VPath,
    /// Backend name (logs, readiness).
    pub backend_name: String,
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// Key prefix inside the backend.
    pub prefix: String,
}

/// All mounts, deepest first.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    mounts: Vec<Mount>,
}

impl MountTable {
    /// Builds the table.
    pub fn new(mut mounts: Vec<Mount>) -> Self {
        mounts.sort_by_key(|m| std::cmp::Reverse(m.path.depth()));
        Self { mounts }
    }

    /// Every mount.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount serving `path` and the key inside it.
    pub fn resolve(&self, path: &VPath) -> Option<(&Mount, Key)> {
        self.mounts
            .iter()
            .find(|m| path.starts_with(&m.path))
            .map(|m| {
                let rel = path.strip_prefix(&m.path).unwrap_or_else(VPath::root);
                (m, Key::new(&m.prefix, rel.relative()))
            })
    }

    /// Names of mount points (or their ancestors) directly under `dir` that are not served by
    /// `dir`'s own mount: they appear as directories in its listing.
    pub fn virtual_children(&self, dir: &VPath) -> Vec<String> {
        let mut names: Vec<String> = self
            .mounts
            .iter()
            .filter(|m| m.path != *dir && m.path.starts_with(dir))
            .filter_map(|m| {
                m.path
                    .strip_prefix(dir)
                    .and_then(|rel| rel.segments().next().map(str::to_string))
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// True if `path` is a mount point or an ancestor of one (it is a directory whatever the
    /// backends hold).
    pub fn is_virtual_dir(&self, path: &VPath) -> bool {
        self.mounts.iter().any(|m| m.path.starts_with(path))
    }
}
