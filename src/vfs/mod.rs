//! The virtual filesystem every front door uses. Each operation runs the same steps:
//! normalise (the adapter's [`VPath`]) → decide (policy, in the user's view) → mount (longest
//! prefix) → backend → audit. Nothing here knows a protocol, so the same user with the same rules
//! gets the same answer over SFTP, FTP and HTTP.

pub mod backend;
mod download;
mod error;
mod extra;
pub mod mount;
mod moved;
pub mod path;
mod upload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;

use crate::audit::{AuditAction, AuditEvent, AuditLog, Outcome};
use crate::policy::{self, Action};
use crate::session::Session;
pub use backend::{
    Backend, ByteStream, Capabilities, CommitMode, Entry, EntryKind, EntryStream, Key, Space,
};
pub use download::{Download, DownloadStream};
pub use error::Error;
pub use mount::{Mount, MountTable};
pub use path::{PathError, VPath};
pub use upload::{Committed, Upload, WriteMode};

/// The virtual filesystem.
#[derive(Debug, Clone)]
pub struct Vfs {
    mounts: Arc<MountTable>,
    audit: AuditLog,
    /// Where work that outlives its caller runs (an interrupted upload's abort and record), so
    /// shutdown waits for it.
    tasks: tokio_util::task::TaskTracker,
    /// Checks uploads must pass before they become visible.
    validation: crate::validation::Rules,
}

/// A resolved target: the user-view path, the full path, and where it lives.
struct Target<'a> {
    user: &'a VPath,
    full: VPath,
}

impl Vfs {
    /// A filesystem over these mounts, recording into `audit`; clean-up work runs on `tasks`.
    pub fn new(mounts: MountTable, audit: AuditLog, tasks: tokio_util::task::TaskTracker) -> Self {
        Self {
            mounts: Arc::new(mounts),
            audit,
            tasks,
            validation: crate::validation::Rules::default(),
        }
    }

    /// The same filesystem, checking uploads against `rules` before they become visible.
    pub fn with_validation(mut self, rules: crate::validation::Rules) -> Self {
        self.validation = rules;
        self
    }

    /// The mount table.
    pub fn mounts(&self) -> &MountTable {
        &self.mounts
    }

    fn target<'a>(&self, s: &Session, user: &'a VPath) -> Target<'a> {
        Target {
            user,
            full: s.principal.home().join(user),
        }
    }

    fn allowed(s: &Session, user: &VPath, action: Action) -> bool {
        policy::decide(s.principal.rules(), user, action).is_allow()
    }

    /// Policy check; a refusal is recorded (when `audit_as` is given) and returned.
    async fn require(
        &self,
        s: &Session,
        t: &Target<'_>,
        action: Action,
        audit_as: Option<AuditAction>,
    ) -> Result<(), Error> {
        if Self::allowed(s, t.user, action) {
            return Ok(());
        }
        if let Some(a) = audit_as {
            let ev = AuditEvent::for_session(s, a, Outcome::Denied)
                .path(t.full.as_str())
                .detail(format!("no {action} permission"));
            self.audit.record(ev).await?;
        }
        Err(Error::Denied {
            action,
            path: t.user.to_string(),
        })
    }

    /// Records the outcome of a one-shot operation and passes its result on.
    async fn finish<T>(
        &self,
        s: &Session,
        action: AuditAction,
        t: &Target<'_>,
        to: Option<&VPath>,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        let (outcome, detail) = match &result {
            Ok(_) => (Outcome::Ok, None),
            Err(e) if e.is_denial() => (Outcome::Denied, Some(e.to_string())),
            Err(e) => (Outcome::Error, Some(e.to_string())),
        };
        let mut ev = AuditEvent::for_session(s, action, outcome).path(t.full.as_str());
        ev.to = to.map(|p| p.to_string());
        ev.detail = detail;
        self.audit.record(ev).await?;
        result
    }

    /// Looks a full path up without any policy check.
    async fn lookup(&self, full: &VPath) -> Result<Option<Entry>, Error> {
        match self.mounts.resolve(full) {
            Some((m, key)) => match m.backend.stat(&key).await? {
                Some(mut e) => {
                    if key.is_root() || m.path == *full {
                        e.kind = EntryKind::Dir;
                    }
                    e.name = full.file_name().unwrap_or("").to_string();
                    Ok(Some(e))
                }
                None if self.mounts.is_virtual_dir(full) => {
                    Ok(Some(Entry::dir(full.file_name().unwrap_or(""))))
                }
                None => Ok(None),
            },
            None if self.mounts.is_virtual_dir(full) => {
                Ok(Some(Entry::dir(full.file_name().unwrap_or(""))))
            }
            None => Ok(None),
        }
    }

    /// Checks `read` on a path (recording a refusal as a download), for opens that read and write.
    pub async fn require_read(&self, s: &Session, user: &VPath) -> Result<(), Error> {
        let t = self.target(s, user);
        self.require(s, &t, Action::Read, Some(AuditAction::Download))
            .await
    }

    /// Metadata of a path. Allowed when the user has any permission on it, or may list its
    /// parent (so `cd` into a write-only drop box works, and listings can be stat'ed).
    pub async fn stat(&self, s: &Session, user: &VPath) -> Result<Entry, Error> {
        let t = self.target(s, user);
        let visible = Action::ALL.iter().any(|a| Self::allowed(s, user, *a))
            || user
                .parent()
                .is_some_and(|p| Self::allowed(s, &p, Action::List));
        if !visible {
            return Err(Error::Denied {
                action: Action::List,
                path: user.to_string(),
            });
        }
        self.lookup(&t.full).await?.ok_or(Error::NotFound)
    }

    /// Lists a directory: its backend entries plus mount points beneath it, sorted by name.
    pub async fn list(&self, s: &Session, user: &VPath) -> Result<EntryStream, Error> {
        let t = self.target(s, user);
        self.require(s, &t, Action::List, Some(AuditAction::List))
            .await?;
        let result = self.list_full(&t.full).await;
        let result = self.finish(s, AuditAction::List, &t, None, result).await?;
        Ok(result)
    }

    async fn list_full(&self, full: &VPath) -> Result<EntryStream, Error> {
        let listed = self.list_backend(full).await?;
        // A name no client could send back (a backslash, a control character, over-long, made
        // outside the gateway) is not listed: nothing is visible that cannot be reached.
        Ok(listed
            .filter(|e| {
                let reachable = match e {
                    Ok(e) => VPath::root().child(&e.name).is_ok(),
                    Err(_) => true,
                };
                futures::future::ready(reachable)
            })
            .boxed())
    }

    async fn list_backend(&self, full: &VPath) -> Result<EntryStream, Error> {
        let virtual_names = self.mounts.virtual_children(full);
        let backend_stream = match self.mounts.resolve(full) {
            Some((m, key)) => match m.backend.stat(&key).await? {
                Some(e) if e.is_dir() || key.is_root() || m.path == *full => {
                    Some(m.backend.list(&key).await?)
                }
                Some(_) => return Err(Error::WrongKind("not a directory")),
                None if !virtual_names.is_empty() || self.mounts.is_virtual_dir(full) => None,
                None => return Err(Error::NotFound),
            },
            None if self.mounts.is_virtual_dir(full) => None,
            None => return Err(Error::NotFound),
        };
        if virtual_names.is_empty() {
            return Ok(backend_stream.unwrap_or_else(|| futures::stream::empty().boxed()));
        }
        // Mount points shadow same-named backend entries.
        let mut extra: BTreeMap<String, Entry> = virtual_names
            .into_iter()
            .map(|n| (n.clone(), Entry::dir(n)))
            .collect();
        let names: Vec<String> = extra.keys().cloned().collect();
        let base = backend_stream
            .unwrap_or_else(|| futures::stream::empty().boxed())
            .filter(move |e| {
                let keep = match e {
                    Ok(e) => !names.contains(&e.name),
                    Err(_) => true,
                };
                futures::future::ready(keep)
            });
        let virtual_entries =
            futures::stream::iter(std::mem::take(&mut extra).into_values().map(Ok));
        Ok(virtual_entries.chain(base).boxed())
    }

    /// Opens a file for reading.
    pub async fn open_read(&self, s: &Session, user: &VPath) -> Result<Download, Error> {
        let t = self.target(s, user);
        self.require(s, &t, Action::Read, Some(AuditAction::Download))
            .await?;
        // A download is recorded when it ends: refuse it now if that record could not be.
        self.audit.ready().await?;
        let resolved = self.open_read_full(&t.full).await;
        let (backend, key, entry, prefetched) = match resolved {
            Ok(x) => x,
            Err(e) => {
                return self
                    .finish(s, AuditAction::Download, &t, None, Err(e))
                    .await;
            }
        };
        Ok(Download::new(
            self.audit.clone(),
            s.clone(),
            t.full,
            backend,
            key,
            entry,
            prefetched,
        ))
    }

    async fn open_read_full(
        &self,
        full: &VPath,
    ) -> Result<(Arc<dyn Backend>, Key, Entry, Option<backend::ByteStream>), Error> {
        let (m, key) = self.mounts.resolve(full).ok_or(Error::NotFound)?;
        let (entry, prefetched) = m
            .backend
            .stat_and_read(&key)
            .await?
            .ok_or(Error::NotFound)?;
        if entry.is_dir() || key.is_root() {
            return Err(Error::WrongKind("is a directory"));
        }
        Ok((m.backend.clone(), key, entry, prefetched))
    }

    /// Starts an upload. Needs `write` for a new file, `overwrite` for an existing one.
    pub async fn create(
        &self,
        s: &Session,
        user: &VPath,
        mode: WriteMode,
    ) -> Result<Upload, Error> {
        let t = self.target(s, user);
        if user.is_root() {
            return Err(Error::WrongKind("is a directory"));
        }
        // Refuse before the client streams a file whose record could not be written.
        self.audit.ready().await?;
        let existing = match self.lookup(&t.full).await {
            Ok(e) => e,
            Err(e) => return self.finish(s, AuditAction::Upload, &t, None, Err(e)).await,
        };
        if existing.as_ref().is_some_and(Entry::is_dir) {
            return Err(Error::WrongKind("is a directory"));
        }
        let action = if existing.is_some() {
            Action::Overwrite
        } else {
            Action::Write
        };
        self.require(s, &t, action, Some(AuditAction::Upload))
            .await?;
        if mode == WriteMode::CreateNew && existing.is_some() {
            return self
                .finish(s, AuditAction::Upload, &t, None, Err(Error::AlreadyExists))
                .await;
        }
        let started = match self.mounts.resolve(&t.full) {
            Some((m, key)) => {
                // A new file is committed without replacing anything unless the user could
                // have replaced it anyway: a peer's file that appears meanwhile (shared inbox)
                // must not be overwritten by someone with only `write`.
                let no_replace = mode == WriteMode::CreateNew
                    || (existing.is_none() && !Self::allowed(s, user, Action::Overwrite));
                let commit_mode = if no_replace {
                    CommitMode::NoReplace
                } else {
                    CommitMode::Replace
                };
                Upload::start(
                    upload::Context {
                        audit: self.audit.clone(),
                        tasks: self.tasks.clone(),
                        session: s.clone(),
                        check: self.validation.check(t.full.as_str()),
                    },
                    t.full.clone(),
                    m.backend.clone(),
                    key,
                    mode,
                    existing.map(|e| e.size),
                    commit_mode,
                )
                .await
            }
            None => Err(Error::Denied {
                action,
                path: user.to_string(),
            }),
        };
        match started {
            Ok(u) => Ok(u),
            Err(e) => self.finish(s, AuditAction::Upload, &t, None, Err(e)).await,
        }
    }

    /// Deletes a file.
    pub async fn delete(&self, s: &Session, user: &VPath) -> Result<(), Error> {
        let t = self.target(s, user);
        self.require(s, &t, Action::Delete, Some(AuditAction::Delete))
            .await?;
        // Room for the record before the effect: nothing is deleted unrecorded.
        let _room = self.audit.reserve().await?;
        let r = async {
            let (m, key) = self.mounts.resolve(&t.full).ok_or(Error::NotFound)?;
            match m.backend.stat(&key).await? {
                None => Err(Error::NotFound),
                Some(e) if e.is_dir() || key.is_root() => Err(Error::WrongKind("is a directory")),
                Some(_) => Ok(m.backend.delete(&key).await?),
            }
        }
        .await;
        self.finish(s, AuditAction::Delete, &t, None, r).await
    }

    /// Creates a directory.
    pub async fn mkdir(&self, s: &Session, user: &VPath) -> Result<(), Error> {
        let t = self.target(s, user);
        self.require(s, &t, Action::Mkdir, Some(AuditAction::Mkdir))
            .await?;
        let _room = self.audit.reserve().await?;
        let r = async {
            if self.lookup(&t.full).await?.is_some() {
                return Err(Error::AlreadyExists);
            }
            let (m, key) = self.mounts.resolve(&t.full).ok_or(Error::NotFound)?;
            Ok(m.backend.mkdir(&key).await?)
        }
        .await;
        self.finish(s, AuditAction::Mkdir, &t, None, r).await
    }

    /// Removes an empty directory (`delete` permission).
    pub async fn rmdir(&self, s: &Session, user: &VPath) -> Result<(), Error> {
        let t = self.target(s, user);
        self.require(s, &t, Action::Delete, Some(AuditAction::Rmdir))
            .await?;
        let _room = self.audit.reserve().await?;
        let r = async {
            // The user's home (or a mount's root) is not theirs to remove: an empty home
            // would otherwise go, and every later operation of the user fail.
            if user.is_root() {
                return Err(Error::Denied {
                    action: Action::Delete,
                    path: user.to_string(),
                });
            }
            if self.mounts.is_virtual_dir(&t.full) {
                return Err(Error::Unsupported("a mount point cannot be removed"));
            }
            let (m, key) = self.mounts.resolve(&t.full).ok_or(Error::NotFound)?;
            if key.is_root() {
                return Err(Error::Denied {
                    action: Action::Delete,
                    path: user.to_string(),
                });
            }
            match m.backend.stat(&key).await? {
                None => Err(Error::NotFound),
                Some(e) if !e.is_dir() => Err(Error::WrongKind("not a directory")),
                Some(_) => Ok(m.backend.rmdir(&key).await?),
            }
        }
        .await;
        self.finish(s, AuditAction::Rmdir, &t, None, r).await
    }

    /// Renames within one mount. Needs `rename` on both paths, and `overwrite` on the target
    /// when it exists and `no_overwrite` is off.
    pub async fn rename(
        &self,
        s: &Session,
        from: &VPath,
        to: &VPath,
        no_overwrite: bool,
    ) -> Result<(), Error> {
        let tf = self.target(s, from);
        let tt = self.target(s, to);
        let denied = |action, path: &VPath| Error::Denied {
            action,
            path: path.to_string(),
        };
        let check = if !Self::allowed(s, from, Action::Rename) {
            Err(denied(Action::Rename, from))
        } else if !Self::allowed(s, to, Action::Rename) {
            Err(denied(Action::Rename, to))
        } else {
            Ok(())
        };
        if check.is_err() {
            return self
                .finish(s, AuditAction::Rename, &tf, Some(&tt.full), check)
                .await;
        }
        let _room = self.audit.reserve().await?;
        let r = async {
            if from.is_root() || to.is_root() || self.mounts.is_virtual_dir(&tf.full) {
                return Err(Error::Unsupported("a mount point cannot be renamed"));
            }
            if to.starts_with(from) {
                return Err(Error::Unsupported("cannot move a directory into itself"));
            }
            let (mf, kf) = self.mounts.resolve(&tf.full).ok_or(Error::NotFound)?;
            let (mt, kt) = self.mounts.resolve(&tt.full).ok_or(Error::NotFound)?;
            if !Arc::ptr_eq(&mf.backend, &mt.backend) || mf.path != mt.path {
                return Err(Error::Unsupported(
                    "rename across mounts; copy and delete instead",
                ));
            }
            let Some(source) = mf.backend.stat(&kf).await? else {
                return Err(Error::NotFound);
            };
            // A directory moves everything under it at once: refuse when a rule inside either
            // subtree is stricter than at its top, or those files would escape it.
            if source.is_dir() {
                let rules = s.principal.rules();
                if !policy::subtree_is_uniform(rules, from) {
                    return Err(denied(Action::Rename, from));
                }
                if !policy::subtree_is_uniform(rules, to) {
                    return Err(denied(Action::Rename, to));
                }
            }
            if let Some(target) = mt.backend.stat(&kt).await? {
                if no_overwrite {
                    return Err(Error::AlreadyExists);
                }
                if target.is_dir() {
                    return Err(Error::AlreadyExists);
                }
                if !Self::allowed(s, to, Action::Overwrite) {
                    return Err(denied(Action::Overwrite, to));
                }
            }
            self.check_moved(&mf.backend, &kf, &source, &tf.full, &tt.full)
                .await?;
            Ok(mf.backend.rename(&kf, &kt, no_overwrite).await?)
        }
        .await;
        self.finish(s, AuditAction::Rename, &tf, Some(&tt.full), r)
            .await
    }

    /// Sets a file's modification time (needs `overwrite`, or `write` for a file the user may
    /// create). Not audited: it changes no content. Storage that keeps its own times (object
    /// stores: the time of the upload) accepts and ignores it, as it does ownership and mode
    /// bits: rclone, WinSCP and FileZilla set the time after every upload and fail the whole
    /// transfer if refused (SFTPGo's `setstat_mode = 2`).
    pub async fn set_modified(
        &self,
        s: &Session,
        user: &VPath,
        time: SystemTime,
    ) -> Result<(), Error> {
        let t = self.target(s, user);
        if !Self::allowed(s, user, Action::Overwrite) && !Self::allowed(s, user, Action::Write) {
            return Err(Error::Denied {
                action: Action::Overwrite,
                path: user.to_string(),
            });
        }
        let (m, key) = self.mounts.resolve(&t.full).ok_or(Error::NotFound)?;
        if !m.backend.capabilities().set_times {
            // Still only for something that exists.
            return match m.backend.stat(&key).await? {
                Some(_) => Ok(()),
                None if key.is_root() => Ok(()),
                None => Err(Error::NotFound),
            };
        }
        Ok(m.backend.set_modified(&key, time).await?)
    }

    /// What the storage under a path can do.
    pub fn capabilities(&self, s: &Session, user: &VPath) -> Option<Capabilities> {
        let full = s.principal.home().join(user);
        self.mounts
            .resolve(&full)
            .map(|(m, _)| m.backend.capabilities())
    }

    /// Creates a directory and its missing parents without any policy check (user homes at
    /// start-up). Object stores need nothing: a prefix exists once something is under it.
    pub async fn ensure_dir_all(&self, full: &VPath) -> Result<(), Error> {
        let mut cur = VPath::root();
        for seg in full.segments() {
            cur = cur.child(seg)?;
            if self.lookup(&cur).await?.is_some() {
                continue;
            }
            let Some((m, key)) = self.mounts.resolve(&cur) else {
                return Err(Error::NotFound);
            };
            if !m.backend.capabilities().real_dirs {
                return Ok(());
            }
            match m.backend.mkdir(&key).await {
                Ok(())
                | Err(backend::StorageError {
                    kind: backend::StorageErrorKind::AlreadyExists,
                    ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Readiness: every backend answers. Returns the names of those that do not.
    pub async fn unready_backends(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for m in self.mounts.mounts() {
            if let Err(e) = m.backend.check().await {
                tracing::warn!(backend = %m.backend_name, error = %e, "backend not ready");
                bad.push(m.backend_name.clone());
            }
        }
        bad.sort();
        bad.dedup();
        bad
    }
}
