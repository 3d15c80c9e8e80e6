//! The HAProxy PROXY protocol (v1 text and v2 binary, parsed by the `ppp` crate) at the start
//! of an accepted connection: the load balancer's header names the real client. Which peers
//! must or may send one is the core's rule (`forwarded::is_trusted` over the listener's list);
//! this module only reads it. The bytes read past the header are handed back in front of the
//! stream ([`Prefixed`]), so the protocol after it sees every byte.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// A v2 header with TLVs fits; anything longer is refused.
const MAX_HEADER: usize = 4096;
/// The v2 signature.
const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// How long a trusted peer may take to send its header.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    /// A header was required and the connection started with something else.
    #[error("no PROXY protocol header from a peer that must send one")]
    Missing,
    /// The header did not parse.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// It did not arrive in time (or was longer than any real one).
    #[error("PROXY protocol header incomplete after {0:?}")]
    Incomplete(Duration),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// `inner` with `prefix` read first: the bytes that came after the PROXY header (or the bytes
/// read while looking for one).
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner` with nothing in front.
    pub fn plain(inner: S) -> Self {
        Self {
            prefix: Vec::new(),
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the start of `buf` is.
enum Start {
    /// Could still become a header.
    Maybe,
    /// Cannot be one.
    Not,
}

fn start_of(buf: &[u8]) -> Start {
    let n = buf.len();
    let v1 = b"PROXY ";
    if buf[..n.min(v1.len())] == v1[..n.min(v1.len())]
        || buf[..n.min(V2_SIG.len())] == V2_SIG[..n.min(V2_SIG.len())]
    {
        Start::Maybe
    } else {
        Start::Not
    }
}

/// The client a parsed header names (`None`: a LOCAL/UNKNOWN header, the proxy's own
/// connection such as a health check: the peer stands for itself).
fn client_of(h: &HeaderResult<'_>) -> Result<(Option<SocketAddr>, usize), String> {
    match h {
        HeaderResult::V1(Ok(h)) => {
            let addr = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            Ok((addr, h.header.len()))
        }
        HeaderResult::V2(Ok(h)) => {
            let addr = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (_, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Ok((addr, h.len()))
        }
        HeaderResult::V1(Err(e)) => Err(format!("{e:?}")),
        HeaderResult::V2(Err(e)) => Err(format!("{e:?}")),
    }
}

/// Reads a PROXY header from the start of `stream` if one is there (`required`: it must be).
/// Returns the client it names (`None`: no header, or the proxy's own connection) and the
/// stream with whatever was read past the header in front.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    mut stream: S,
    required: bool,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, Prefixed<S>), ProxyHeaderError> {
    let work = async {
        let mut buf: Vec<u8> = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ProxyHeaderError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Start::Not = start_of(&buf) {
                return if required {
                    Err(ProxyHeaderError::Missing)
                } else {
                    Ok((None, buf))
                };
            }
            if buf.len() < 6 {
                continue;
            }
            let parsed = HeaderResult::parse(&buf);
            if parsed.is_incomplete() {
                if buf.len() >= MAX_HEADER {
                    return Err(ProxyHeaderError::Malformed("longer than 4096 bytes".into()));
                }
                continue;
            }
            let (client, len) = client_of(&parsed).map_err(ProxyHeaderError::Malformed)?;
            let rest = buf.split_off(len.min(buf.len()));
            return Ok((client, rest));
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok((client, rest))) => Ok((
            client,
            Prefixed {
                prefix: rest,
                at: 0,
                inner: stream,
            },
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProxyHeaderError::Incomplete(timeout)),
    }
}

/// Reads a required PROXY header from `stream` without reading a byte past it (for libraries
/// that take the socket itself, such as libunftp): v1 a byte at a time up to its CRLF, v2 its
/// fixed 16 bytes and then the length they give. Returns the client it names (`None`: the
/// proxy's own connection).
pub(crate) async fn read_header_exact(
    stream: &mut tokio::net::TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let work = async {
        let mut buf = vec![0u8; 6];
        stream.read_exact(&mut buf).await?;
        if buf == b"PROXY " {
            // v1: at most 107 bytes, ending in CRLF.
            let mut byte = [0u8; 1];
            while !buf.ends_with(b"\r\n") {
                if buf.len() >= 107 {
                    return Err(ProxyHeaderError::Malformed("v1 header without CRLF".into()));
                }
                stream.read_exact(&mut byte).await?;
                buf.push(byte[0]);
            }
        } else if buf[..] == V2_SIG[..6] {
            buf.resize(16, 0);
            stream.read_exact(&mut buf[6..]).await?;
            if buf[..12] != *V2_SIG {
                return Err(ProxyHeaderError::Malformed("bad v2 signature".into()));
            }
            let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            if 16 + len > MAX_HEADER {
                return Err(ProxyHeaderError::Malformed("longer than 4096 bytes".into()));
            }
            buf.resize(16 + len, 0);
            stream.read_exact(&mut buf[16..]).await?;
        } else {
            return Err(ProxyHeaderError::Missing);
        }
        let parsed = HeaderResult::parse(&buf);
        client_of(&parsed)
            .map(|(client, _)| client)
            .map_err(ProxyHeaderError::Malformed)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ProxyHeaderError::Incomplete(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn run(input: &[u8], required: bool) -> Result<(Option<SocketAddr>, Vec<u8>), String> {
        let (mut a, b) = tokio::io::duplex(8192);
        let data = input.to_vec();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // Two writes: a header split across reads is put together.
            let mid = data.len() / 2;
            let _ = a.write_all(&data[..mid]).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = a.write_all(&data[mid..]).await;
        });
        match read_header(b, required, Duration::from_secs(2)).await {
            Ok((client, mut s)) => {
                let mut rest = vec![0u8; input.len()];
                let mut got = Vec::new();
                while got.len() < 3 {
                    let n = s.read(&mut rest).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&rest[..n]);
                }
                Ok((client, got))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes `input` to a fresh loopback socket and reads the header exactly.
    async fn exact(input: &'static [u8]) -> Result<(Option<SocketAddr>, Vec<u8>), String> {
        use tokio::io::AsyncWriteExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = c.write_all(input).await;
            let _ = c.shutdown().await;
        });
        let (mut s, _) = l.accept().await.unwrap();
        let client = read_header_exact(&mut s, Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.map_err(|e| e.to_string())?;
        Ok((client, rest))
    }

    #[tokio::test]
    async fn exact_reads_stop_at_the_end_of_the_header() {
        let (c, rest) = exact(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 21\r\nUSER a\r\n")
            .await
            .unwrap();
        assert_eq!(c, Some("203.0.113.7:40000".parse().unwrap()));
        assert_eq!(rest, b"USER a\r\n");
        let (c, rest) = exact(
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc6\x33\x64\x09\x7f\x00\x00\x01\x9c\x40\x00\x15USER",
        )
        .await
        .unwrap();
        assert_eq!(c, Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(rest, b"USER");
        assert!(exact(b"USER a\r\n").await.unwrap_err().contains("no PROXY"));
        assert!(exact(b"PROXY TCP4 1.2.3.4").await.is_err());
    }

    #[tokio::test]
    async fn reads_v1_and_v2_and_hands_back_what_follows() {
        let (c, rest) = run(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 22\r\nSSH", true)
            .await
            .unwrap();
        assert_eq!(c, Some("203.0.113.7:40000".parse().unwrap()));
        assert_eq!(rest, b"SSH");
        let mut v2 = V2_SIG.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 127, 0, 0, 1, 0x9c, 0x40, 0, 22,
        ]);
        v2.extend_from_slice(b"GET");
        let (c, rest) = run(&v2, true).await.unwrap();
        assert_eq!(c, Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn refuses_a_missing_or_bad_header_where_one_is_required() {
        assert!(
            run(b"SSH-2.0-OpenSSH_9.2\r\n", true)
                .await
                .unwrap_err()
                .contains("no PROXY")
        );
        assert!(
            run(b"PROXY TCP4 not-an-ip 1.2.3.4 1 2\r\nSSH", true)
                .await
                .is_err()
        );
        // Optional: other bytes are passed through untouched.
        let (c, rest) = run(b"GET / HTTP/1.1\r\n", false).await.unwrap();
        assert_eq!(c, None);
        assert_eq!(&rest[..3], b"GET");
    }
}
