//! The SFTP v3 protocol over one channel: russh-sftp's packet types, and each request mapped
//! onto the core's virtual filesystem (the request loop is in `pump.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};

use super::attrs::{attrs_of, file_of};
use super::conn::Live;
use super::status::{Reply, bad, status_of};
use crate::audit::Outcome;
use crate::core::Core;
use crate::session::Session;
use crate::vfs::{self, Download, Entry, EntryStream, Upload, VPath, WriteMode};

/// Largest request accepted (OpenSSH sends at most 256 KiB).
pub(super) const MAX_PACKET: u32 = 256 * 1024 + 1024;
/// Largest read answered at once.
pub(super) const MAX_READ: u32 = 255 * 1024;
/// Directory entries per READDIR reply.
const READDIR_BATCH: usize = 128;
/// Handles one session may hold open.
pub(super) const MAX_HANDLES: usize = 256;

pub(super) enum Open {
    Read(Download),
    Write {
        upload: Upload,
        /// APPEND: every write goes to the end, whatever offset the client names.
        append: bool,
        /// A modification time set on the handle, applied after commit.
        mtime: Option<SystemTime>,
        /// Set when a write failed: the file is then never committed.
        failed: Option<String>,
    },
    Dir {
        entries: Option<EntryStream>,
    },
}

pub(super) struct SftpSession {
    pub(super) core: Arc<Core>,
    pub(super) session: Session,
    pub(super) handles: HashMap<String, Open>,
    pub(super) next_handle: u64,
    pub(super) live: Arc<Live>,
}

pub(super) fn status(id: u32, code: StatusCode, detail: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: super::status::wording(code, detail),
        language_tag: "en-US".to_string(),
    })
}

/// A size change by SETSTAT/FSETSTAT: uploads stream, files are not truncated in place.
fn no_truncate() -> Reply {
    bad(
        StatusCode::OpUnsupported,
        "truncating files is not supported",
    )
}

pub(super) fn ok(id: u32) -> Packet {
    status(id, StatusCode::Ok, "")
}

fn from_reply(id: u32, r: Reply) -> Packet {
    Packet::Status(Status {
        id,
        status_code: r.code,
        error_message: r.message,
        language_tag: "en-US".to_string(),
    })
}

impl SftpSession {
    /// A client path as a user-view path (SFTP paths are relative to the user's "/").
    pub(super) fn path(&self, p: &str) -> Result<VPath, Reply> {
        let p = p
            .strip_prefix("~")
            .map_or(p, |rest| if rest.is_empty() { "/" } else { rest });
        VPath::parse(p).map_err(|e| status_of(&vfs::Error::InvalidPath(e)))
    }

    fn add_handle(&mut self, h: Open) -> Result<String, Reply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(bad(StatusCode::Failure, "too many open handles"));
        }
        let name = format!("h{}", self.next_handle);
        self.next_handle += 1;
        if !matches!(h, Open::Dir { .. }) {
            self.live.opened();
        }
        self.handles.insert(name.clone(), h);
        Ok(name)
    }

    pub(super) async fn handle(&mut self, p: Packet) -> Packet {
        let id = p.get_request_id();
        let r = match p {
            Packet::Init(_) => return Packet::Version(self.version()),
            Packet::Open(o) => self.open(o.id, &o.filename, o.pflags, &o.attrs).await,
            Packet::Close(c) => self.close(c.id, &c.handle).await,
            Packet::Read(r) => self.read(r.id, &r.handle, r.offset, r.len).await,
            Packet::Write(w) => self.write(w.id, &w.handle, w.offset, w.data).await,
            Packet::Lstat(l) => self.stat(l.id, &l.path).await,
            Packet::Stat(st) => self.stat(st.id, &st.path).await,
            Packet::Fstat(f) => self.fstat(f.id, &f.handle),
            Packet::SetStat(st) => self.setstat(st.id, &st.path, &st.attrs).await,
            Packet::FSetStat(st) => self.fsetstat(st.id, &st.handle, &st.attrs),
            Packet::OpenDir(o) => self.opendir(o.id, &o.path).await,
            Packet::ReadDir(r) => self.readdir(r.id, &r.handle).await,
            Packet::Remove(r) => self.simple(r.id, &r.filename, Op::Remove).await,
            Packet::MkDir(m) => self.simple(m.id, &m.path, Op::Mkdir).await,
            Packet::RmDir(r) => self.simple(r.id, &r.path, Op::Rmdir).await,
            Packet::RealPath(r) => self.realpath(r.id, &r.path),
            Packet::Rename(r) => self.rename(r.id, &r.oldpath, &r.newpath, true).await,
            Packet::ReadLink(_) | Packet::Symlink(_) => Err(bad(
                StatusCode::OpUnsupported,
                "symbolic links are not supported",
            )),
            Packet::Extended(e) => self.extended(e.id, &e.request, &e.data).await,
            _ => Err(bad(StatusCode::BadMessage, "unexpected packet")),
        };
        r.unwrap_or_else(|e| from_reply(id, e))
    }

    fn version(&self) -> Version {
        let mut v = Version::new();
        for (k, val) in [
            ("posix-rename@openssh.com", "1"),
            ("fsync@openssh.com", "1"),
            ("limits@openssh.com", "1"),
            ("expand-path@openssh.com", "1"),
            ("statvfs@openssh.com", "2"),
            ("fstatvfs@openssh.com", "2"),
            ("hardlink@openssh.com", "1"),
        ] {
            v.extensions.insert(k.to_string(), val.to_string());
        }
        v
    }

    async fn open(
        &mut self,
        id: u32,
        name: &str,
        flags: OpenFlags,
        attrs: &FileAttributes,
    ) -> Result<Packet, Reply> {
        let path = self.path(name)?;
        let vfs = &self.core.vfs;
        let write = flags.contains(OpenFlags::WRITE) || flags.contains(OpenFlags::APPEND);
        let open = if !write {
            Open::Read(
                vfs.open_read(&self.session, &path)
                    .await
                    .map_err(|e| status_of(&e))?,
            )
        } else {
            let random = vfs
                .capabilities(&self.session, &path)
                .is_some_and(|c| c.random_write);
            if flags.contains(OpenFlags::READ) {
                // Read-write opens (sshfs, WinSCP, rsync-style tools) edit a staged copy on
                // storages with random access; the result appears at close, as any upload.
                if !random {
                    return Err(bad(
                        StatusCode::OpUnsupported,
                        "read-write open is not supported on this storage; upload the whole file",
                    ));
                }
                if let Err(e) = vfs.require_read(&self.session, &path).await {
                    return Err(status_of(&e));
                }
            }
            let exists = match vfs.stat(&self.session, &path).await {
                Ok(e) if e.is_dir() => return Err(bad(StatusCode::Failure, "is a directory")),
                Ok(_) => true,
                Err(vfs::Error::NotFound) => false,
                // Not visible to this user: let create() decide (and audit) the refusal.
                Err(vfs::Error::Denied { .. }) => false,
                Err(e) => return Err(status_of(&e)),
            };
            if !exists && !flags.contains(OpenFlags::CREATE) {
                return Err(bad(StatusCode::NoSuchFile, "no such file"));
            }
            let append = flags.contains(OpenFlags::APPEND);
            let mode = if flags.contains(OpenFlags::CREATE) && flags.contains(OpenFlags::EXCLUDE) {
                WriteMode::CreateNew
            } else if flags.contains(OpenFlags::TRUNCATE) || !exists {
                WriteMode::Replace
            } else if append {
                let size = vfs
                    .stat(&self.session, &path)
                    .await
                    .map(|e| e.size)
                    .unwrap_or(0);
                WriteMode::KeepExisting(Some(size))
            } else {
                // Without TRUNC the first write's offset says what to keep (resume at the size).
                WriteMode::KeepExisting(None)
            };
            let upload = vfs
                .create(&self.session, &path, mode)
                .await
                .map_err(|e| status_of(&e))?;
            Open::Write {
                upload,
                append,
                mtime: attrs
                    .mtime
                    .map(|t| UNIX_EPOCH + Duration::from_secs(u64::from(t))),
                failed: None,
            }
        };
        let handle = self.add_handle(open)?;
        Ok(Packet::Handle(Handle { id, handle }))
    }

    async fn close(&mut self, id: u32, handle: &str) -> Result<Packet, Reply> {
        let h = self
            .handles
            .remove(handle)
            .ok_or_else(|| bad(StatusCode::Failure, "invalid handle"))?;
        match h {
            Open::Dir { .. } => Ok(ok(id)),
            Open::Read(dl) => {
                self.live.closed();
                dl.finish(Outcome::Ok, None)
                    .await
                    .map_err(|e| status_of(&e))?;
                Ok(ok(id))
            }
            Open::Write {
                upload,
                failed: Some(why),
                ..
            } => {
                self.live.closed();
                upload.abort(&why).await.map_err(|e| status_of(&e))?;
                Err(bad(
                    StatusCode::Failure,
                    &format!("upload not stored: {why}"),
                ))
            }
            Open::Write { upload, mtime, .. } => {
                self.live.closed();
                let path = upload.path().strip_prefix(self.session.principal.home());
                upload.commit().await.map_err(|e| status_of(&e))?;
                if let (Some(t), Some(p)) = (mtime, path) {
                    // Best effort: the upload itself succeeded.
                    let _ = self.core.vfs.set_modified(&self.session, &p, t).await;
                }
                Ok(ok(id))
            }
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: &str,
        offset: u64,
        len: u32,
    ) -> Result<Packet, Reply> {
        let dl = match self.handles.get_mut(handle) {
            Some(Open::Read(dl)) => dl,
            // A read-write handle reads what is staged (its own writes included).
            Some(Open::Write { upload, .. }) => {
                let data = upload
                    .read_at(offset, len.min(MAX_READ) as usize)
                    .await
                    .map_err(|e| status_of(&e))?;
                if data.is_empty() {
                    return Err(bad(StatusCode::Eof, ""));
                }
                return Ok(Packet::Data(Data {
                    id,
                    data: Vec::from(data),
                }));
            }
            _ => return Err(bad(StatusCode::Failure, "invalid handle")),
        };
        match dl.read_at(offset, len.min(MAX_READ) as usize).await {
            Ok(Some(data)) => Ok(Packet::Data(Data {
                id,
                data: Vec::from(data),
            })),
            Ok(None) => Err(bad(StatusCode::Eof, "end of file")),
            Err(e) => Err(status_of(&e)),
        }
    }

    async fn write(
        &mut self,
        id: u32,
        handle: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Packet, Reply> {
        let Some(Open::Write {
            upload,
            append,
            failed,
            ..
        }) = self.handles.get_mut(handle)
        else {
            return Err(bad(StatusCode::Failure, "invalid handle"));
        };
        if let Some(why) = failed {
            return Err(bad(
                StatusCode::Failure,
                &format!("upload already failed: {why}"),
            ));
        }
        let at = if *append {
            upload.next_offset()
        } else {
            offset
        };
        match upload.write_at(at, Bytes::from(data)).await {
            Ok(()) => Ok(ok(id)),
            Err(e) => {
                // Atomic uploads: after a failed write, closing throws the file away.
                *failed = Some(e.client_message());
                Err(status_of(&e))
            }
        }
    }

    async fn stat(&mut self, id: u32, path: &str) -> Result<Packet, Reply> {
        let p = self.path(path)?;
        let e = self
            .core
            .vfs
            .stat(&self.session, &p)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Packet::Attrs(Attrs {
            id,
            attrs: attrs_of(&e),
        }))
    }

    fn fstat(&mut self, id: u32, handle: &str) -> Result<Packet, Reply> {
        let attrs = match self.handles.get(handle) {
            Some(Open::Read(dl)) => attrs_of(dl.entry()),
            Some(Open::Write { upload, .. }) => {
                let mut a = FileAttributes::empty();
                a.size = Some(upload.size());
                a.permissions = Some(0o100_644);
                a
            }
            Some(Open::Dir { .. }) => attrs_of(&Entry::dir("")),
            None => return Err(bad(StatusCode::Failure, "invalid handle")),
        };
        Ok(Packet::Attrs(Attrs { id, attrs }))
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: &str,
        attrs: &FileAttributes,
    ) -> Result<Packet, Reply> {
        let p = self.path(path)?;
        let e = self
            .core
            .vfs
            .stat(&self.session, &p)
            .await
            .map_err(|e| status_of(&e))?;
        if let Some(size) = attrs.size
            && size != e.size
        {
            return Err(no_truncate());
        }
        // Ownership and permission bits have no meaning on the gateway's storage: accepted and
        // ignored, as clients (WinSCP, `put -p`) send them after every upload.
        if let Some(t) = attrs.mtime
            && !e.is_dir()
        {
            let when = UNIX_EPOCH + Duration::from_secs(u64::from(t));
            self.core
                .vfs
                .set_modified(&self.session, &p, when)
                .await
                .map_err(|e| status_of(&e))?;
        }
        Ok(ok(id))
    }

    fn fsetstat(&mut self, id: u32, handle: &str, attrs: &FileAttributes) -> Result<Packet, Reply> {
        // A size change (ftruncate) is refused as by path: answering OK and keeping the bytes
        // told the client a truncation happened that did not.
        let current = match self.handles.get(handle) {
            Some(Open::Write { upload, .. }) => Some(upload.size()),
            Some(Open::Read(dl)) => Some(dl.entry().size),
            _ => None,
        };
        if let (Some(size), Some(current)) = (attrs.size, current)
            && size != current
        {
            return Err(no_truncate());
        }
        match self.handles.get_mut(handle) {
            Some(Open::Write { mtime, .. }) => {
                if let Some(t) = attrs.mtime {
                    *mtime = Some(UNIX_EPOCH + Duration::from_secs(u64::from(t)));
                }
                Ok(ok(id))
            }
            Some(_) => Ok(ok(id)),
            None => Err(bad(StatusCode::Failure, "invalid handle")),
        }
    }

    async fn opendir(&mut self, id: u32, path: &str) -> Result<Packet, Reply> {
        let p = self.path(path)?;
        let entries = self
            .core
            .vfs
            .list(&self.session, &p)
            .await
            .map_err(|e| status_of(&e))?;
        let handle = self.add_handle(Open::Dir {
            entries: Some(entries),
        })?;
        Ok(Packet::Handle(Handle { id, handle }))
    }

    async fn readdir(&mut self, id: u32, handle: &str) -> Result<Packet, Reply> {
        let Some(Open::Dir { entries }) = self.handles.get_mut(handle) else {
            return Err(bad(StatusCode::Failure, "invalid handle"));
        };
        let Some(stream) = entries.as_mut() else {
            return Err(bad(StatusCode::Eof, "end of directory"));
        };
        let mut files = Vec::new();
        while files.len() < READDIR_BATCH {
            match stream.next().await {
                Some(Ok(e)) => files.push(file_of(&e)),
                Some(Err(e)) => {
                    *entries = None;
                    return Err(status_of(&vfs::Error::from(e)));
                }
                None => {
                    *entries = None;
                    break;
                }
            }
        }
        if files.is_empty() {
            return Err(bad(StatusCode::Eof, "end of directory"));
        }
        Ok(Packet::Name(Name { id, files }))
    }

    async fn simple(&mut self, id: u32, path: &str, op: Op) -> Result<Packet, Reply> {
        let p = self.path(path)?;
        let vfs = &self.core.vfs;
        let r = match op {
            Op::Remove => vfs.delete(&self.session, &p).await,
            Op::Mkdir => vfs.mkdir(&self.session, &p).await,
            Op::Rmdir => vfs.rmdir(&self.session, &p).await,
        };
        r.map_err(|e| status_of(&e))?;
        Ok(ok(id))
    }

    pub(super) fn realpath(&mut self, id: u32, path: &str) -> Result<Packet, Reply> {
        let p = self.path(if path.is_empty() { "." } else { path })?;
        let mut f = File::dummy(p.as_str());
        f.longname = p.to_string();
        Ok(Packet::Name(Name { id, files: vec![f] }))
    }

    pub(super) async fn rename(
        &mut self,
        id: u32,
        from: &str,
        to: &str,
        no_overwrite: bool,
    ) -> Result<Packet, Reply> {
        let (f, t) = (self.path(from)?, self.path(to)?);
        self.core
            .vfs
            .rename(&self.session, &f, &t, no_overwrite)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(ok(id))
    }

    /// The stream ended: finish downloads, abort uploads that were never closed.
    pub(super) async fn close_all(&mut self) {
        for (_, h) in self.handles.drain() {
            match h {
                Open::Read(dl) => {
                    self.live.closed();
                    let _ = dl.end().await;
                }
                Open::Write { upload, .. } => {
                    self.live.closed();
                    if let Err(e) = upload
                        .abort("interrupted: connection closed before the file was closed")
                        .await
                    {
                        tracing::error!(error = %e, "could not record an interrupted upload");
                    }
                }
                Open::Dir { .. } => {}
            }
        }
    }
}

enum Op {
    Remove,
    Mkdir,
    Rmdir,
}
