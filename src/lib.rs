//! gatehouse: a multi-protocol file and API gateway. SFTP, FTP/FTPS and HTTP front doors
//! (`adapters/`) over one core: configuration, identity, policy, virtual filesystem and a
//! hash-chained audit log (`src/`).

#[path = "../adapters/mod.rs"]
pub mod adapters;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod core;
pub mod events;
pub mod forwarded;
pub mod identity;
pub mod limits;
pub mod live;
pub mod pathglob;
pub mod policy;
pub mod ratelimit;
pub mod refusals;
pub mod reload;
pub mod route;
pub mod secret;
pub mod serve;
pub mod session;
pub mod ship;
pub mod shutdown;
pub mod telemetry;
pub mod validation;
pub mod vfs;
