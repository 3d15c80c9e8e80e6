//! The command line (CONTRACT.md): `serve`, `check`, `demo-config`, `hash-password`,
//! `gen-api-key`, `audit verify`, `audit query`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// gatehouse: one gateway for SFTP, FTP/FTPS and HTTP over one virtual filesystem, one identity
/// and policy core, and one tamper-evident audit log.
///
/// Quick start: `gatehouse serve` in an empty directory runs the built-in demo (loopback only:
/// SFTP :2222, FTP :2121, HTTP :8080, user demo/demo, files under ./data).
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// Flattened argument groups carry their docs on their own types; clap would show field docs.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at startup
pub enum Command {
    /// Run every listener the config enables, until SIGINT/SIGTERM.
    ///
    /// Without --config: ./gatehouse.toml if it exists, else the built-in demo config
    /// (see `gatehouse demo-config`). On SIGINT/SIGTERM it stops accepting, lets transfers in
    /// flight finish (up to gateway.shutdown_grace_secs), flushes the audit log and exits 0.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
        log_format: LogFormatArg,
        /// Log level (trace, debug, info, warn, error); RUST_LOG overrides it.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Validate a config: syntax, types, unknown keys, references, overlapping mounts, port
    /// clashes, certificate files. Prints `ok`, or every error with its key path and line (exit 1).
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the built-in demo config (a starting point for your own).
    DemoConfig,
    /// Read one password from stdin and print its argon2id hash for `password_hash`.
    ///
    /// Example: `printf '%s' 's3cret' | gatehouse hash-password`
    HashPassword,
    /// Print a new random API key and, on the second line, its `sha256:<hex>` for `key_hash`.
    ///
    /// Give the key to the client; put only the hash in the config.
    GenApiKey,
    /// Inspect the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Webhook deliveries of `[[events]]`: what is waiting, and the dead letters.
    #[command(subcommand)]
    Events(EventsCommand),
}

/// `events` subcommands. `retry` and `purge` are requests the running gateway applies within a
/// second (or at its next start); the command waits up to 5 s for the outcome.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List undelivered events (waiting or being retried) and dead letters (given up), per sink.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// JSON Lines output.
        #[arg(long)]
        json: bool,
    },
    /// Deliver dead letters again (all of the sink's, or the given event ids), with a fresh
    /// max_age_secs.
    Retry {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this sink (default: every sink).
        #[arg(long)]
        sink: Option<String>,
        /// Event ids (`webhook-id`) to retry; none: every dead letter.
        ids: Vec<String>,
    },
    /// Drop dead letters (--dead, the default) or every undelivered event (--pending).
    Purge {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this sink (default: every sink).
        #[arg(long)]
        sink: Option<String>,
        /// Drop the events not yet delivered instead of the dead letters.
        #[arg(long)]
        pending: bool,
    },
}

/// `audit` subcommands.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at startup
pub enum AuditCommand {
    /// Re-compute the hash chain of every audit file. Prints `ok: N records` (exit 0), or the
    /// first bad file and sequence number (exit 1).
    Verify {
        #[command(flatten)]
        source: AuditSource,
        /// Verify the chains shipped to this backend of [backends] instead (every node under
        /// [audit.ship] prefix: checkpoints, signatures, files, and this node's unshipped tail).
        #[arg(long, value_name = "BACKEND")]
        remote: Option<String>,
        /// With --remote: the signing public key (`ed25519:BASE64`, as `audit pubkey` prints);
        /// default: the key of [audit.ship] signing_key.
        #[arg(long, value_name = "KEY", requires = "remote")]
        pubkey: Option<String>,
        /// With --remote: only this node (nodes signing with keys of their own are verified
        /// one at a time, each with its --pubkey).
        #[arg(long, value_name = "NODE", requires = "remote")]
        node: Option<String>,
    },
    /// Print the public key that verifies this node's shipped checkpoints ([audit.ship]).
    Pubkey {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print matching records: a table by default, JSON Lines with --json.
    Query {
        #[command(flatten)]
        source: AuditSource,
        #[command(flatten)]
        filter: QueryArgs,
        /// JSON Lines output (the stored records, verbatim).
        #[arg(long)]
        json: bool,
        /// Read the log shipped to this backend of [backends] ([audit.ship] prefix) instead of
        /// the local files: every node's, or --node's. (`--remote` filters by client address.)
        #[arg(long, value_name = "BACKEND")]
        shipped: Option<String>,
        /// With --shipped: only this node's shipped log.
        #[arg(long, value_name = "NODE", requires = "shipped")]
        node: Option<String>,
    },
    /// Rebuild the audit index (in the state directory) from the audit files, then swap it in.
    Reindex {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// `--config FILE`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Config file (TOML). Default: ./gatehouse.toml if present, else the built-in demo config.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where the audit files are.
#[derive(Debug, Clone, Args)]
pub struct AuditSource {
    /// Config file whose [audit] dir to read (default as for `serve`).
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "dir")]
    pub config: Option<PathBuf>,
    /// Audit directory to read directly.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Record filters, shared with `GET /v1/audit`.
#[derive(Debug, Clone, Default, Args)]
pub struct QueryArgs {
    /// Only this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this protocol.
    #[arg(long, value_parser = ["sftp", "ftp", "http"])]
    pub protocol: Option<String>,
    /// Only this action (login, logout, upload, download, delete, mkdir, rmdir, rename, link, list, proxy, config, event).
    #[arg(long, value_parser = ["login", "logout", "upload", "download", "delete", "mkdir", "rmdir", "rename", "link", "list", "proxy", "config", "event"])]
    pub action: Option<String>,
    /// Only this outcome.
    #[arg(long, value_parser = ["ok", "denied", "error"])]
    pub outcome: Option<String>,
    /// Only paths equal to or under this one.
    #[arg(long, value_name = "P")]
    pub path_prefix: Option<String>,
    /// Records at or after this time (RFC 3339, e.g. 2026-11-22T10:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub since: Option<String>,
    /// Records before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub until: Option<String>,
    /// Only this session id.
    #[arg(long)]
    pub session: Option<String>,
    /// Only this client address (IP).
    #[arg(long, value_name = "IP")]
    pub remote: Option<String>,
    /// Only records whose detail has these words (the last may be a prefix).
    #[arg(long, value_name = "WORDS")]
    pub text: Option<String>,
    /// At most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable.
    Text,
    /// JSON lines.
    Json,
}
