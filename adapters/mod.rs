//! The outside edges: protocol front doors and storage backends. Each translates between a wire
//! (or a storage API) and the core; none decides policy.

pub mod ftp;
pub mod http;
pub(crate) mod http_client;
pub(crate) mod proxy_protocol;
pub mod sftp;
pub mod storage;
pub mod tls;
pub mod webhook;
