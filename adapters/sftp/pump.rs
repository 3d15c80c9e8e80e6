//! The request loop of one SFTP channel.
//!
//! Why our own loop instead of `russh_sftp::server::run`: that loop retries forever on a non-EOF
//! stream error and flushes after every reply; ours stops on any stream error, writes replies
//! into a buffer that is flushed only when no further request is already waiting (so pipelined
//! reads from OpenSSH leave in large writes), and, when the stream ends, aborts uploads still open
//! (nothing at the final path, an `upload error "interrupted"` record) before it returns.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use russh::ChannelStream;
use russh::server::Msg;
use russh_sftp::protocol::{Packet, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};

use super::conn::Live;
use super::session::{MAX_PACKET, SftpSession, status};
use crate::core::Core;
use crate::session::Session;

/// Request bytes that may wait unprocessed before the connection is judged abusive.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Serves SFTP on `stream` until the client closes it or the connection drops.
pub(super) async fn run(
    core: Arc<Core>,
    session: Session,
    stream: ChannelStream<Msg>,
    live: Arc<Live>,
) {
    let (r, w) = tokio::io::split(stream);
    let mut writer = BufWriter::with_capacity(64 * 1024, w);
    let mut s = SftpSession {
        core,
        session,
        handles: HashMap::new(),
        next_handle: 1,
        live,
    };
    // russh stops its whole connection loop while a channel's inbound queue is full, so the
    // channel must always be drained: a reader task moves requests into our own queue, capped
    // in bytes; a client that outruns the cap is disconnected rather than deadlocked.
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let reader = tokio::spawn(read_requests(r, tx, queued.clone(), s.session.id.clone()));
    while let Some(mut bytes) = rx.recv().await {
        queued.fetch_sub(bytes.len(), std::sync::atomic::Ordering::AcqRel);
        // A malformed request still names its id (after the type byte): answer that id, or the
        // client waits for a reply that never comes.
        let id = bytes
            .get(1..5)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_be_bytes);
        let reply = match Packet::try_from(&mut bytes) {
            Ok(p) => s.handle(p).await,
            Err(_) => status(id, StatusCode::BadMessage, "malformed request"),
        };
        let Ok(out) = Bytes::try_from(reply) else {
            break;
        };
        if writer.write_all(&out).await.is_err() {
            break;
        }
        // Replies to pipelined requests leave together; flush once nothing more is waiting.
        if rx.is_empty() && writer.flush().await.is_err() {
            break;
        }
    }
    reader.abort();
    let _ = writer.shutdown().await;
    s.close_all().await;
}

async fn read_requests<R: tokio::io::AsyncRead + Unpin>(
    r: R,
    tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    session: String,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, r);
    while let Ok(len) = reader.read_u32().await {
        if len == 0 || len > MAX_PACKET {
            tracing::debug!(%session, len, "sftp packet length out of range; closing");
            break;
        }
        let mut buf = vec![0u8; len as usize];
        if reader.read_exact(&mut buf).await.is_err() {
            break;
        }
        let total = queued.fetch_add(buf.len(), std::sync::atomic::Ordering::AcqRel) + buf.len();
        if total > MAX_QUEUED_BYTES {
            tracing::warn!(%session, "sftp client sent more than {MAX_QUEUED_BYTES} bytes of requests ahead of the server; closing");
            break;
        }
        if tx.send(Bytes::from(buf)).is_err() {
            break;
        }
    }
}
