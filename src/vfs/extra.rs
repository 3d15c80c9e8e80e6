//! The less common file operations, through the same normalise → decide → mount → backend →
//! audit steps as the rest of the [`Vfs`]: space information (SFTP `statvfs@openssh.com`) and
//! hard links (SFTP `hardlink@openssh.com`). Backends that cannot do them say `Unsupported`.

use std::sync::Arc;

use super::backend::Space;
use super::{Error, VPath, Vfs};
use crate::audit::AuditAction;
use crate::policy::Action;
use crate::session::Session;

impl Vfs {
    /// Space on the storage holding `user` (any permission on the path, or listing its parent,
    /// makes it visible, as for `stat`).
    pub async fn space(&self, s: &Session, user: &VPath) -> Result<Space, Error> {
        self.stat(s, user).await?;
        let t = self.target(s, user);
        let (m, key) = self.mounts.resolve(&t.full).ok_or(Error::NotFound)?;
        Ok(m.backend.space(&key).await?)
    }

    /// Makes `to` another name of the file `from`. Needs `read` on `from` and `write` on `to`
    /// (it creates a file there); never replaces anything.
    pub async fn hard_link(&self, s: &Session, from: &VPath, to: &VPath) -> Result<(), Error> {
        let tf = self.target(s, from);
        let tt = self.target(s, to);
        let check = if !Self::allowed(s, from, Action::Read) {
            Err(Error::Denied {
                action: Action::Read,
                path: from.to_string(),
            })
        } else if !Self::allowed(s, to, Action::Write) {
            Err(Error::Denied {
                action: Action::Write,
                path: to.to_string(),
            })
        } else {
            Ok(())
        };
        if check.is_err() {
            return self
                .finish(s, AuditAction::Link, &tf, Some(&tt.full), check)
                .await;
        }
        let _room = self.audit.reserve().await?;
        let r = async {
            let (mf, kf) = self.mounts.resolve(&tf.full).ok_or(Error::NotFound)?;
            let (mt, kt) = self.mounts.resolve(&tt.full).ok_or(Error::NotFound)?;
            if !Arc::ptr_eq(&mf.backend, &mt.backend) || mf.path != mt.path {
                return Err(Error::Unsupported("a hard link cannot cross mounts"));
            }
            let source = mf.backend.stat(&kf).await?.ok_or(Error::NotFound)?;
            self.check_moved(&mf.backend, &kf, &source, &tf.full, &tt.full)
                .await?;
            Ok(mf.backend.hard_link(&kf, &kt).await?)
        }
        .await;
        self.finish(s, AuditAction::Link, &tf, Some(&tt.full), r)
            .await
    }
}
