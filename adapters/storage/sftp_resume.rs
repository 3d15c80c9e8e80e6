//! Resume through an upstream SFTP server: a staged upload that keeps the first `n` bytes of
//! the file already there. The prefix is copied into the hidden temporary file on the upstream
//! itself with OpenSSH's `copy-data` extension when the server offers it (no byte crosses the
//! gateway), and otherwise read and written back through the session, pipelined. Either way the
//! temporary file must then hold exactly `n` bytes, or the resume fails (the file shrank).

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

use super::sftp::map;
use super::sftp_pool::Conn;
use crate::vfs::backend::{StorageError, StorageErrorKind};

/// The name of OpenSSH's server-side copy extension.
pub(super) const COPY_DATA: &str = "copy-data";

/// Bytes per read/write when the prefix goes through the gateway.
const CHUNK: u64 = 255 * 1024;
/// Reads and writes in flight then.
const IN_FLIGHT: usize = 16;

fn put_string(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

/// Copies the first `n` bytes of `source` (a path on the upstream) to offset 0 of the open
/// handle `to`.
pub(super) async fn copy_prefix(
    conn: &Conn,
    source: &str,
    to: &str,
    n: u64,
) -> Result<(), StorageError> {
    let from = conn
        .sftp
        .open(source, OpenFlags::READ, FileAttributes::default())
        .await
        .map_err(|e| map(e, "open for resume"))?
        .handle;
    let copied = if conn.copy_data {
        server_side(conn, &from, to, n).await
    } else {
        through(conn, &from, to, n).await
    };
    let _ = conn.sftp.close(from).await;
    copied?;
    let size = conn
        .sftp
        .fstat(to)
        .await
        .map_err(|e| map(e, "fstat"))?
        .attrs
        .size
        .unwrap_or(0);
    if size != n {
        return Err(StorageError::new(
            StorageErrorKind::Permanent,
            format!("file shrank during resume: {size} of {n} bytes kept"),
        ));
    }
    Ok(())
}

/// `copy-data`: read-from-handle, read-from-offset, read-data-length, write-to-handle,
/// write-to-offset.
async fn server_side(conn: &Conn, from: &str, to: &str, n: u64) -> Result<(), StorageError> {
    let mut b = BytesMut::new();
    put_string(&mut b, from);
    b.put_u64(0);
    b.put_u64(n);
    put_string(&mut b, to);
    b.put_u64(0);
    match conn.sftp.extended(COPY_DATA, b.to_vec()).await {
        Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
        Ok(Packet::Status(s)) => Err(map(
            russh_sftp::client::error::Error::Status(s),
            "copy-data",
        )),
        Ok(_) => Err(StorageError::new(
            StorageErrorKind::Permanent,
            "copy-data: unexpected answer from the upstream",
        )),
        Err(e) => Err(map(e, "copy-data")),
    }
}

/// Reads the prefix and writes it back, `IN_FLIGHT` chunks at a time.
async fn through(conn: &Conn, from: &str, to: &str, n: u64) -> Result<(), StorageError> {
    let offsets = (0..n).step_by(CHUNK as usize);
    let mut copies = futures::stream::iter(offsets)
        .map(|off| {
            let len = CHUNK.min(n - off) as u32;
            let sftp = conn.sftp.clone();
            async move {
                let data = match sftp.read(from, off, len).await {
                    Ok(d) => d.data,
                    Err(russh_sftp::client::error::Error::Status(s))
                        if s.status_code == StatusCode::Eof =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(map(e, "read for resume")),
                };
                // A short read leaves a hole the size check then reports.
                sftp.write(to, off, data)
                    .await
                    .map(|_| ())
                    .map_err(|e| map(e, "write for resume"))
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(r) = copies.next().await {
        r?;
    }
    Ok(())
}
