//! One integration test binary: drives the real `gatehouse` binary (and, for backend
//! conformance and audit-chain tests, the library) with real clients and servers.

// Test helpers outside #[test] functions: a failed unwrap is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod audit_ship;
mod backend;
mod backend_local;
mod cli;
mod cloud;
mod cluster;
mod console;
mod emulators;
mod events;
mod faults;
mod ftp;
mod harness;
mod hostile;
mod http_conformance;
mod http_files;
mod openapi;
mod proxy;
mod proxy_protocol;
mod rclone;
mod reload;
mod scanners;
mod security;
mod security_fs;
mod security_proxy;
mod sftp;
mod sftp_conformance;
