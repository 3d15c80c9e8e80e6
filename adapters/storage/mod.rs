//! Storage backends behind the core's `Backend` trait: local disk and object stores (S3,
//! S3-compatible, Azure Blob Storage, Google Cloud Storage, memory).

mod gcs;
mod gcs_list;
mod gcs_upload;
mod local;
mod local_entry;
mod local_open;
mod local_staged;
mod multipart;
mod object;
mod sftp;
mod sftp_pool;
mod sftp_resume;
mod sftp_staged;
mod webdav;
mod webdav_staged;
mod webdav_xml;

use std::sync::Arc;
use std::time::Duration;

use object_store::RetryConfig;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::list::PaginatedListStore;
use object_store::multipart::MultipartStore;

use crate::config::ValidBackend;
use crate::vfs::backend::{Backend, StorageError, StorageErrorKind};
pub use local::LocalBackend;
pub use object::ObjectBackend;
pub use sftp::SftpBackend;
pub use webdav::WebDavBackend;

/// Characters escaped in a URL path segment: RFC 3986's unreserved ones stay, everything else
/// (`/` included) is escaped.
const URL_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Google Cloud Storage's public endpoint (JSON API).
const GCS_BASE: &str = "https://storage.googleapis.com";

/// A dead endpoint should fail requests in seconds, not retry for minutes.
fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

fn permanent(e: object_store::Error) -> StorageError {
    StorageError::new(StorageErrorKind::Permanent, e)
}

/// A cloud store as a backend, journalling its multipart uploads under the state dir.
fn cloud<T>(
    store: T,
    name: &str,
    part_size: usize,
    state_dir: Option<&std::path::Path>,
) -> Result<Arc<dyn Backend>, StorageError>
where
    T: object_store::ObjectStore + MultipartStore + PaginatedListStore,
{
    let journal = state_dir
        .map(|d| multipart::Journal::open(d.join("multipart").join(name)))
        .transpose()?;
    Ok(Arc::new(ObjectBackend::cloud(store, part_size, journal)))
}

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
        ValidBackend::Sftp {
            address,
            user,
            private_key,
            password,
            host_key,
            root,
            max_sessions,
        } => Arc::new(SftpBackend::new(
            sftp_pool::Upstream {
                address: address.clone(),
                user: user.clone(),
                private_key: private_key.clone(),
                password: password.clone(),
                host_key: host_key.clone(),
                max_sessions: *max_sessions,
            },
            root,
        )),
        ValidBackend::WebDav {
            url,
            user,
            password,
        } => Arc::new(WebDavBackend::new(
            url,
            user.as_deref(),
            password.as_ref().map(|p| p.expose().as_str()),
        )?),
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
                .with_retry(retry());
            if let Some(e) = endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            if let (Some(k), Some(s)) = (access_key_id, secret_access_key) {
                b = b
                    .with_access_key_id(k.expose())
                    .with_secret_access_key(s.expose());
            }
            let s3 = b.build().map_err(permanent)?;
            cloud(s3, name, *part_size, state_dir)?
        }
        ValidBackend::Azure {
            account,
            container,
            access_key,
            endpoint,
            part_size,
        } => {
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_account(account)
                .with_container_name(container)
                .with_retry(retry());
            if let Some(k) = access_key {
                b = b.with_access_key(k.expose());
            }
            if let Some(e) = endpoint {
                b = b
                    .with_endpoint(e.clone())
                    .with_allow_http(e.starts_with("http://"));
            }
            cloud(b.build().map_err(permanent)?, name, *part_size, state_dir)?
        }
        ValidBackend::Gcs {
            bucket,
            service_account_file,
            endpoint,
            part_size,
        } => {
            // object_store's GCS client only for its credential providers (service account
            // file, application default credentials, the metadata server); requests go
            // through our JSON API client (gcs.rs says why).
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry());
            if let Some(f) = service_account_file {
                b = b.with_service_account_path(f.display().to_string());
            }
            let credentials = b.build().map_err(permanent)?.credentials().clone();
            let base = endpoint.as_deref().unwrap_or(GCS_BASE);
            let gcs = gcs::Gcs::new(base, bucket, credentials)
                .map_err(|e| StorageError::new(StorageErrorKind::Permanent, e))?;
            cloud(gcs, name, *part_size, state_dir)?
        }
    })
}
