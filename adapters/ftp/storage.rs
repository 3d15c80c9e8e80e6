//! libunftp's `StorageBackend` over the core's virtual filesystem. One instance per control
//! connection: after login it holds the session;
//! when the connection ends it is dropped and the logout is recorded. libunftp hands paths over
//! un-normalised (`cwd.join(arg)`): `VPath` resolves them inside the user's home.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use unftp_core::storage::{
    Error, ErrorKind, FEATURE_RESTART, Fileinfo, Metadata, Result, StorageBackend,
};

use super::auth::FtpUser;
use super::reply::to_ftp;
use crate::core::Core;
use crate::session::Session;
use crate::vfs::{self, Entry, VPath, WriteMode};

/// Bytes gathered before each write to the backend.
const CHUNK: usize = 256 * 1024;

/// File metadata for libunftp.
#[derive(Debug, Clone)]
pub struct FtpMeta(Entry);

impl Metadata for FtpMeta {
    fn len(&self) -> u64 {
        self.0.size
    }

    fn is_dir(&self) -> bool {
        self.0.is_dir()
    }

    fn is_file(&self) -> bool {
        !self.0.is_dir()
    }

    fn is_symlink(&self) -> bool {
        false
    }

    fn modified(&self) -> Result<SystemTime> {
        self.0
            .modified
            .ok_or_else(|| Error::from(ErrorKind::PermanentFileNotAvailable))
    }

    fn gid(&self) -> u32 {
        0
    }

    fn uid(&self) -> u32 {
        0
    }

    fn permissions(&self) -> unftp_core::storage::Permissions {
        unftp_core::storage::Permissions(if self.0.is_dir() { 0o755 } else { 0o644 })
    }
}

/// A transfer checked before its `150` and kept for the data connection that follows.
enum Prepared {
    Put(VPath, vfs::Upload),
    Get(VPath, vfs::Download),
}

/// The storage of one control connection.
pub struct FtpStorage {
    core: Arc<Core>,
    session: Option<Session>,
    /// STOR/APPE/RETR opened (policy, existence, backend limits) when the command arrived, so a
    /// refusal is the command's reply; the data transfer takes it over.
    prepared: std::sync::Mutex<Option<Prepared>>,
}

impl FtpStorage {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            session: None,
            prepared: std::sync::Mutex::new(None),
        }
    }

    fn prepared(&self) -> std::sync::MutexGuard<'_, Option<Prepared>> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The prepared upload for `p`, if the command's check opened one.
    fn take_upload(&self, p: &VPath) -> Option<vfs::Upload> {
        let mut slot = self.prepared();
        match slot.take() {
            Some(Prepared::Put(q, u)) if q == *p => Some(u),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// The prepared download for `p`, if the command's check opened one.
    fn take_download(&self, p: &VPath) -> Option<vfs::Download> {
        let mut slot = self.prepared();
        match slot.take() {
            Some(Prepared::Get(q, d)) if q == *p => Some(d),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Keeps a prepared transfer; one still waiting from an earlier command is dropped (an
    /// upload's guard records it as interrupted, a download's as abandoned).
    fn keep(&self, p: Prepared) {
        let old = self.prepared().replace(p);
        drop(old);
    }

    async fn open_upload(&self, user: &FtpUser, p: &VPath, start_pos: u64) -> Result<vfs::Upload> {
        let mode = if start_pos == 0 {
            WriteMode::Replace
        } else {
            WriteMode::KeepExisting(Some(start_pos))
        };
        self.core
            .vfs
            .create(&user.session, p, mode)
            .await
            .map_err(to_ftp)
    }
}

impl fmt::Debug for FtpStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FtpStorage")
    }
}

impl Drop for FtpStorage {
    fn drop(&mut self) {
        if let (Some(s), Ok(_)) = (self.session.take(), tokio::runtime::Handle::try_current()) {
            let core = self.core.clone();
            // Tracked, so a shutdown writes the logout before the audit log closes.
            self.core
                .shutdown
                .tasks
                .spawn(async move { core.logout(&s, None).await });
        }
    }
}

fn vpath(p: &Path) -> Result<VPath> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::from(ErrorKind::FileNameNotAllowedError))?;
    VPath::parse(s).map_err(|e| to_ftp(vfs::Error::InvalidPath(e)))
}

fn io_err(e: vfs::backend::StorageError) -> io::Error {
    io::Error::other(e.detail)
}

impl FtpStorage {
    /// Opens a download from `start_pos` (REST) to the end (the one its command prepared, if any).
    async fn open_stream(
        &self,
        user: &FtpUser,
        path: &Path,
        start_pos: u64,
    ) -> Result<vfs::DownloadStream> {
        let p = vpath(path)?;
        let dl = match self.take_download(&p) {
            Some(d) => d,
            None => self.open_download(user, &p, start_pos).await?,
        };
        let size = dl.entry().size;
        let range = (start_pos > 0).then_some(start_pos..size);
        dl.into_stream(range).await.map_err(to_ftp)
    }

    async fn open_download(
        &self,
        user: &FtpUser,
        p: &VPath,
        start_pos: u64,
    ) -> Result<vfs::Download> {
        let dl = self
            .core
            .vfs
            .open_read(&user.session, p)
            .await
            .map_err(to_ftp)?;
        if start_pos > dl.entry().size {
            dl.discard();
            return Err(Error::from(ErrorKind::PermanentFileNotAvailable));
        }
        Ok(dl)
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for FtpStorage {
    type Metadata = FtpMeta;

    fn enter(&mut self, user: &FtpUser) -> io::Result<()> {
        self.session = Some(user.session.clone());
        Ok(())
    }

    fn name(&self) -> &str {
        "gatehouse"
    }

    fn supported_features(&self) -> u32 {
        // REST: resumed downloads on every backend (ranged reads); resumed uploads where the
        // backend can append (local disk), refused with 502 elsewhere.
        FEATURE_RESTART
    }

    /// Before the `150`: policy, existence, and what the backend can do (no APPE/REST on object
    /// stores) are checked by opening the upload now; the data transfer then writes into it.
    async fn check_put<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        append: bool,
    ) -> Result<()> {
        let p = vpath(path.as_ref())?;
        let start = if append {
            match self.core.vfs.stat(&user.session, &p).await {
                Ok(e) => e.size,
                Err(_) => 0,
            }
        } else {
            start_pos
        };
        let upload = self.open_upload(user, &p, start).await?;
        self.keep(Prepared::Put(p, upload));
        Ok(())
    }

    /// Before the `150` of a RETR: the file must exist and be readable (and REST within it).
    async fn check_get<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> Result<()> {
        let p = vpath(path.as_ref())?;
        let dl = self.open_download(user, &p, start_pos).await?;
        self.keep(Prepared::Get(p, dl));
        Ok(())
    }

    async fn metadata<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<FtpMeta> {
        let p = vpath(path.as_ref())?;
        self.core
            .vfs
            .stat(&user.session, &p)
            .await
            .map(FtpMeta)
            .map_err(to_ftp)
    }

    async fn list<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, FtpMeta>>> {
        let p = vpath(path.as_ref())?;
        // LIST, NLST and STAT of a file describe that file (RFC 959: "information on a file").
        if let Ok(e) = self.core.vfs.stat(&user.session, &p).await
            && !e.is_dir()
        {
            return Ok(vec![Fileinfo {
                path: PathBuf::from(&e.name),
                metadata: FtpMeta(e),
            }]);
        }
        let entries = self
            .core
            .vfs
            .list(&user.session, &p)
            .await
            .map_err(to_ftp)?;
        entries
            .map(|e| {
                e.map(|e| Fileinfo {
                    path: PathBuf::from(&e.name),
                    metadata: FtpMeta(e),
                })
            })
            .try_collect()
            .await
            .map_err(|e| to_ftp(vfs::Error::from(e)))
    }

    /// RETR: the backend's chunks (up to 256 KiB) go to the data connection as they are, instead
    /// of through the default `tokio::io::copy`, whose 8 KiB buffer costs a syscall (and on FTPS a
    /// TLS record) per 8 KiB.
    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> Result<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + fmt::Debug,
    {
        use tokio::io::AsyncWriteExt;
        let _tracked = self.core.shutdown.tasks.token();
        let stop = self.core.shutdown.stop.clone();
        let mut stream = self.open_stream(user, path.as_ref(), start_pos).await?;
        let mut sent = 0u64;
        loop {
            // Past the grace period the download ends here (its record says how far it got).
            let next = tokio::select! {
                c = stream.next() => c,
                _ = stop.cancelled() => return Err(Error::from(ErrorKind::ConnectionClosed)),
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| Error::new(ErrorKind::LocalError, io_err(e)))?;
            output
                .write_all(&chunk)
                .await
                .map_err(|e| Error::new(ErrorKind::ConnectionClosed, e))?;
            sent += chunk.len() as u64;
        }
        output
            .flush()
            .await
            .map_err(|e| Error::new(ErrorKind::ConnectionClosed, e))?;
        Ok(sent)
    }

    async fn get<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let stream = self.open_stream(user, path.as_ref(), start_pos).await?;
        // libunftp wants a Sync reader; the backend stream is only Send.
        let sync = sync_wrapper::SyncStream::new(stream.map_err(io_err));
        Ok(Box::new(tokio_util::io::StreamReader::new(sync)))
    }

    async fn put<
        P: AsRef<Path> + Send + fmt::Debug,
        R: AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &FtpUser,
        mut input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        let p = vpath(path.as_ref())?;
        // libunftp runs transfers on tasks of its own: count this one for shutdown, and stop it
        // (aborted, recorded) once the grace period is over.
        let _tracked = self.core.shutdown.tasks.token();
        let stop = self.core.shutdown.stop.clone();
        let mut upload = match self.take_upload(&p) {
            Some(u) => u,
            None => self.open_upload(user, &p, start_pos).await?,
        };
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            let mut eof = false;
            while buf.len() < CHUNK {
                let read = tokio::select! {
                    r = input.read_buf(&mut buf) => r,
                    _ = stop.cancelled() => {
                        let _ = upload.abort("interrupted: the gateway shut down").await;
                        return Err(Error::from(ErrorKind::ConnectionClosed));
                    }
                };
                match read {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        // A TLS data channel closed without close_notify. FTP marks the end of
                        // an upload by closing the connection, and common clients skip the
                        // alert; accept it as vsftpd does by default, and say so in the record.
                        upload.note("TLS data channel closed without close_notify");
                        eof = true;
                        break;
                    }
                    Err(e) => {
                        let _ = upload
                            .abort(&format!("interrupted: data connection failed ({e})"))
                            .await;
                        return Err(Error::new(ErrorKind::ConnectionClosed, e));
                    }
                }
            }
            if !buf.is_empty()
                && let Err(e) = upload.write(buf.freeze()).await
            {
                let _ = upload.abort(&format!("write failed: {e}")).await;
                return Err(to_ftp(e));
            }
            if eof {
                break;
            }
        }
        let received = upload.received();
        upload.commit().await.map_err(to_ftp)?;
        Ok(received)
    }

    async fn del<P: AsRef<Path> + Send + fmt::Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let p = vpath(path.as_ref())?;
        self.core
            .vfs
            .delete(&user.session, &p)
            .await
            .map_err(to_ftp)
    }

    async fn set_modified<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
        time: std::time::SystemTime,
    ) -> Result<()> {
        let p = vpath(path.as_ref())?;
        self.core
            .vfs
            .set_modified(&user.session, &p, time)
            .await
            .map_err(to_ftp)
    }

    async fn mkd<P: AsRef<Path> + Send + fmt::Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let p = vpath(path.as_ref())?;
        self.core.vfs.mkdir(&user.session, &p).await.map_err(to_ftp)
    }

    async fn rename<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> Result<()> {
        let (f, t) = (vpath(from.as_ref())?, vpath(to.as_ref())?);
        // RNTO replaces an existing file (as vsftpd and proftpd do) when `overwrite` allows it.
        self.core
            .vfs
            .rename(&user.session, &f, &t, false)
            .await
            .map_err(to_ftp)
    }

    async fn rmd<P: AsRef<Path> + Send + fmt::Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let p = vpath(path.as_ref())?;
        self.core.vfs.rmdir(&user.session, &p).await.map_err(to_ftp)
    }

    async fn cwd<P: AsRef<Path> + Send + fmt::Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let p = vpath(path.as_ref())?;
        let e = self
            .core
            .vfs
            .stat(&user.session, &p)
            .await
            .map_err(to_ftp)?;
        if !e.is_dir() {
            return Err(Error::from(ErrorKind::PermanentDirectoryNotAvailable));
        }
        Ok(())
    }
}

/// `SITE SHA256 <path>` (also `SITE HASH <path>`): the file's SHA-256, from the digest stored at
/// upload when there is one, else computed by reading the file. libunftp offers no way to add the
/// top-level HASH/XSHA256 commands; SITE is its extension point. Paths are relative to the
/// user's home (SITE handlers do not see the working directory).
#[derive(Debug)]
pub(super) struct Sha256Site;

#[async_trait]
impl libunftp::options::SiteCommandHandler<FtpStorage, FtpUser> for Sha256Site {
    async fn handle(
        &self,
        ctx: &libunftp::options::SiteCommandContext<FtpStorage, FtpUser>,
    ) -> libunftp::options::Reply {
        use libunftp::options::{Reply, ReplyCode};
        let (Some(user), core) = (ctx.user.as_ref().as_ref(), &ctx.storage.core) else {
            return Reply::new(ReplyCode::NotLoggedIn, "Log in first");
        };
        let arg = ctx.arguments.trim();
        if arg.is_empty() {
            return Reply::new(ReplyCode::ParameterSyntaxError, "Usage: SITE SHA256 <path>");
        }
        let p = match VPath::parse(arg) {
            Ok(p) => p,
            Err(_) => return Reply::new(ReplyCode::BadFileName, "File name not allowed"),
        };
        let result = async {
            let mut dl = core.vfs.open_read(&user.session, &p).await?;
            if let Some(d) = dl.digest().await {
                dl.discard();
                return Ok(d);
            }
            let mut stream = dl.into_stream(None).await?;
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            while let Some(chunk) = stream.next().await {
                h.update(&chunk.map_err(vfs::Error::from)?);
            }
            Ok::<[u8; 32], vfs::Error>(h.finalize().into())
        }
        .await;
        match result {
            Ok(d) => Reply::new_with_string(
                ReplyCode::FileStatus,
                format!("SHA-256 {} {}", hex::encode(d), p),
            ),
            Err(e) => {
                let code = match e {
                    vfs::Error::InvalidPath(_) => ReplyCode::BadFileName,
                    vfs::Error::Backend(_) | vfs::Error::Audit(_) => ReplyCode::LocalError,
                    _ => ReplyCode::FileError,
                };
                Reply::new_with_string(code, e.client_message())
            }
        }
    }
}
