//! SFTP extended requests (OpenSSH's extensions): posix-rename, expand-path, fsync, limits,
//! statvfs / fstatvfs and hardlink. Anything else is `SSH_FX_OP_UNSUPPORTED`.

use russh_sftp::protocol::{ExtendedReply, Packet, StatusCode};

use super::session::{MAX_HANDLES, MAX_PACKET, MAX_READ, Open, SftpSession, ok};
use super::status::{Reply, bad, status_of};
use crate::vfs::VPath;

/// SSH string from an extended request's data.
fn ssh_string(data: &[u8], at: &mut usize) -> Option<String> {
    let len = u32::from_be_bytes(data.get(*at..*at + 4)?.try_into().ok()?) as usize;
    let s = data.get(*at + 4..*at + 4 + len)?;
    *at += 4 + len;
    String::from_utf8(s.to_vec()).ok()
}

impl SftpSession {
    pub(super) async fn extended(
        &mut self,
        id: u32,
        request: &str,
        data: &[u8],
    ) -> Result<Packet, Reply> {
        let mut at = 0;
        match request {
            "posix-rename@openssh.com" => {
                let (Some(from), Some(to)) = (ssh_string(data, &mut at), ssh_string(data, &mut at))
                else {
                    return Err(bad(StatusCode::BadMessage, "malformed posix-rename"));
                };
                self.rename(id, &from, &to, false).await
            }
            "expand-path@openssh.com" => {
                let p = ssh_string(data, &mut at)
                    .ok_or_else(|| bad(StatusCode::BadMessage, "malformed expand-path"))?;
                self.realpath(id, &p)
            }
            "fsync@openssh.com" => {
                // Uploads are fsynced when they are committed at close.
                let h = ssh_string(data, &mut at).unwrap_or_default();
                if self.handles.contains_key(&h) {
                    Ok(ok(id))
                } else {
                    Err(bad(StatusCode::Failure, "invalid handle"))
                }
            }
            "statvfs@openssh.com" => {
                let p = ssh_string(data, &mut at)
                    .ok_or_else(|| bad(StatusCode::BadMessage, "malformed statvfs"))?;
                let p = self.path(&p)?;
                self.statvfs(id, &p).await
            }
            "fstatvfs@openssh.com" => {
                let h = ssh_string(data, &mut at)
                    .ok_or_else(|| bad(StatusCode::BadMessage, "malformed fstatvfs"))?;
                let p = match self.handles.get(&h) {
                    Some(Open::Read(dl)) => dl.path().strip_prefix(self.session.principal.home()),
                    Some(Open::Write { upload, .. }) => {
                        upload.path().strip_prefix(self.session.principal.home())
                    }
                    Some(Open::Dir { .. }) | None => None,
                }
                .ok_or_else(|| bad(StatusCode::Failure, "invalid handle"))?;
                self.statvfs(id, &p).await
            }
            "hardlink@openssh.com" => {
                let (Some(from), Some(to)) = (ssh_string(data, &mut at), ssh_string(data, &mut at))
                else {
                    return Err(bad(StatusCode::BadMessage, "malformed hardlink"));
                };
                let (f, t) = (self.path(&from)?, self.path(&to)?);
                self.core
                    .vfs
                    .hard_link(&self.session, &f, &t)
                    .await
                    .map_err(|e| status_of(&e))?;
                Ok(ok(id))
            }
            "limits@openssh.com" => {
                let mut out = Vec::with_capacity(32);
                for v in [
                    u64::from(MAX_PACKET),
                    u64::from(MAX_READ),
                    u64::from(MAX_READ),
                    MAX_HANDLES as u64,
                ] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                Ok(Packet::ExtendedReply(ExtendedReply { id, data: out }))
            }
            _ => Err(bad(StatusCode::OpUnsupported, "extension not supported")),
        }
    }

    /// `statvfs@openssh.com`: eleven uint64s, as OpenSSH's sftp-server sends them.
    async fn statvfs(&mut self, id: u32, p: &VPath) -> Result<Packet, Reply> {
        let sp = self
            .core
            .vfs
            .space(&self.session, p)
            .await
            .map_err(|e| status_of(&e))?;
        let mut out = Vec::with_capacity(88);
        for v in [
            sp.block_size,
            sp.fragment_size,
            sp.blocks,
            sp.blocks_free,
            sp.blocks_avail,
            sp.files,
            sp.files_free,
            sp.files_avail,
            sp.fsid,
            0, // f_flag: neither read-only nor nosuid as far as the client can tell
            sp.name_max,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        Ok(Packet::ExtendedReply(ExtendedReply { id, data: out }))
    }
}
