//! Storage backends behind the core's `Backend` trait: local disk and object stores (S3,
//! S3-compatible, memory).

mod local;
mod local_staged;
mod multipart;
mod object;

use std::sync::Arc;
use std::time::Duration;

use object_store::RetryConfig;
use object_store::aws::AmazonS3Builder;

use crate::config::ValidBackend;
use crate::vfs::backend::{Backend, StorageError, StorageErrorKind};
pub use local::LocalBackend;
pub use object::ObjectBackend;

/// Builds the backend a config entry describes. `state_dir` keeps what must survive a crash
/// (the journal of open multipart uploads, under `multipart/<name>`); `None` keeps nothing.
pub fn build(
    name: &str,
    backend: &ValidBackend,
    state_dir: Option<&std::path::Path>,
) -> Result<Arc<dyn Backend>, StorageError> {
    Ok(match backend {
        ValidBackend::Local { root } => Arc::new(LocalBackend::new(root)?),
        ValidBackend::Memory => Arc::new(ObjectBackend::memory()),
        ValidBackend::S3 {
            bucket,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            virtual_hosted_style,
            part_size,
        } => {
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_virtual_hosted_style_request(*virtual_hosted_style)
                // A dead endpoint should fail requests in seconds, not retry for minutes.
                .with_retry(RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(20),
                    ..Default::default()
                });
            if let Some(e) = endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            if let (Some(k), Some(s)) = (access_key_id, secret_access_key) {
                b = b
                    .with_access_key_id(k.expose())
                    .with_secret_access_key(s.expose());
            }
            let s3 = b
                .build()
                .map_err(|e| StorageError::new(StorageErrorKind::Permanent, e))?;
            let journal = state_dir
                .map(|d| multipart::Journal::open(d.join("multipart").join(name)))
                .transpose()?;
            Arc::new(ObjectBackend::s3(s3, *part_size, journal))
        }
    })
}
