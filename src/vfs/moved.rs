//! The `[[validate]]` check of a file that arrives at a checked path by rename or hard link
//! rather than by upload.

use std::sync::Arc;

use futures::StreamExt;

use super::backend::{self, Entry};
use super::{Error, VPath, Vfs};

impl Vfs {
    /// A file moved to where a `[[validate]]` rule applies must pass it, as if it were uploaded
    /// there (WinSCP uploads to `name.filepart` and renames); one already under the same rule
    /// passed it on upload. A directory cannot bring unchecked files along.
    pub(super) async fn check_moved(
        &self,
        backend: &Arc<dyn backend::Backend>,
        key: &backend::Key,
        source: &Entry,
        from: &VPath,
        to: &VPath,
    ) -> Result<(), Error> {
        use crate::validation::Refusal;
        if self.validation.is_empty() {
            return Ok(());
        }
        if source.is_dir() {
            if self.validation.may_apply_below(to.as_str()) {
                return Err(Error::Invalid(Refusal {
                    too_large: false,
                    details: vec![
                        "a directory cannot be moved where [[validate]] rules apply; move its files one by one".into(),
                    ],
                }));
            }
            return Ok(());
        }
        let Some(rule) = self.validation.for_path(to.as_str()) else {
            return Ok(());
        };
        if self
            .validation
            .for_path(from.as_str())
            .is_some_and(|r| std::ptr::eq(r, rule))
        {
            return Ok(());
        }
        let mut check = self.validation.check(to.as_str()).ok_or(Error::NotFound)?;
        let mut content = backend.read(key, None).await?;
        while let Some(chunk) = content.next().await {
            check.feed(&chunk?).map_err(Error::Invalid)?;
        }
        check.finish().map_err(Error::Invalid)
    }
}
