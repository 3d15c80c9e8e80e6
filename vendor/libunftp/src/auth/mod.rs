//! Authentication helpers and built-in implementations.
//!
//! Core authentication traits and types live in `unftp-core`.
pub mod anonymous;
pub use anonymous::AnonymousAuthenticator;

pub(crate) use unftp_core::auth::UserDetail;

mod pipeline;
pub(crate) use pipeline::AuthenticationPipeline;

/// gatehouse patch: an authenticator that fails with `AuthenticationError::new(TRY_LATER)` gets
/// the client a `421` (service not available, try later) and a closed connection instead of a
/// `530`, and the attempt is not counted as a failed login.
pub const TRY_LATER: &str = "try later";
