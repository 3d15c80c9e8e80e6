//! One backend conformance suite, the same assertions for local disk, memory and S3 (a real
//! moto server the harness starts). Backend differences that are part of the contract (resume
//! only where `capabilities().resume`) are asserted through the capabilities, not skipped.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use gatehouse::adapters::storage;
use gatehouse::config::ValidBackend;
use gatehouse::secret::Secret;
use gatehouse::vfs::backend::{Backend, CommitMode, Key, StageMode, StorageErrorKind};
use sha2::Digest;

use crate::harness::{make_bucket, moto, unique};

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn k(s: &str) -> Key {
    Key::new("", s)
}

pub(crate) async fn read_all(
    b: &dyn Backend,
    key: &str,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let mut s = b.read(&k(key), range).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

async fn put(b: &dyn Backend, key: &str, data: &[u8]) {
    let mut w = b.stage(&k(key), StageMode::Create).await.unwrap();
    for chunk in data.chunks(100_000) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    w.commit(sha2::Sha256::digest(data).into(), CommitMode::Replace)
        .await
        .unwrap();
}

async fn names(b: &dyn Backend, dir: &str) -> Vec<(String, bool)> {
    let mut s = b.list(&k(dir)).await.unwrap();
    let mut v = Vec::new();
    while let Some(e) = s.next().await {
        let e = e.unwrap();
        let d = e.is_dir();
        v.push((e.name, d));
    }
    v.sort();
    v
}

/// The suite.
async fn conformance(b: Arc<dyn Backend>) {
    let b = b.as_ref();
    b.check().await.unwrap();
    // The root is a directory; missing keys are None.
    assert!(b.stat(&k("")).await.unwrap().unwrap().is_dir());
    assert!(b.stat(&k("nope.txt")).await.unwrap().is_none());

    // A staged write is invisible until commit.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = b.stage(&k("a.bin"), StageMode::Create).await.unwrap();
    w.write(Bytes::copy_from_slice(&data[..150_000]))
        .await
        .unwrap();
    assert!(
        b.stat(&k("a.bin")).await.unwrap().is_none(),
        "visible before commit"
    );
    w.write(Bytes::copy_from_slice(&data[150_000..]))
        .await
        .unwrap();
    let sha: [u8; 32] = sha2::Sha256::digest(&data).into();
    w.commit(sha, CommitMode::NoReplace).await.unwrap();
    let e = b.stat(&k("a.bin")).await.unwrap().unwrap();
    assert_eq!(e.size, 300_000);
    assert!(!e.is_dir());
    assert!(e.modified.is_some());
    assert!(e.etag.is_some());
    assert_eq!(
        b.digest(&k("a.bin"), &e).await,
        Some(sha),
        "sha256 kept with the file"
    );

    // Whole and ranged reads.
    assert_eq!(read_all(b, "a.bin", None).await, data);
    assert_eq!(
        read_all(b, "a.bin", Some(1000..2000)).await,
        data[1000..2000]
    );
    assert_eq!(
        read_all(b, "a.bin", Some(299_990..300_000)).await,
        data[299_990..]
    );
    assert!(read_all(b, "a.bin", Some(5..5)).await.is_empty());

    // An aborted write leaves nothing.
    let mut w = b.stage(&k("aborted.bin"), StageMode::Create).await.unwrap();
    w.write(Bytes::from_static(b"partial")).await.unwrap();
    w.abort().await;
    assert!(b.stat(&k("aborted.bin")).await.unwrap().is_none());
    // So does a dropped one (client vanished).
    let mut w = b.stage(&k("dropped.bin"), StageMode::Create).await.unwrap();
    w.write(Bytes::from_static(b"partial")).await.unwrap();
    drop(w);
    assert!(b.stat(&k("dropped.bin")).await.unwrap().is_none());

    // Replacing keeps the old content until commit.
    let mut w = b.stage(&k("a.bin"), StageMode::Create).await.unwrap();
    w.write(Bytes::from_static(b"new")).await.unwrap();
    assert_eq!(b.stat(&k("a.bin")).await.unwrap().unwrap().size, 300_000);
    w.commit(sha2::Sha256::digest(b"new").into(), CommitMode::Replace)
        .await
        .unwrap();
    assert_eq!(read_all(b, "a.bin", None).await, b"new");

    // A no-replace commit loses to a file that appeared while it was staged, small (one PUT)
    // or large (multipart), and leaves the winner's content and no staged leftovers.
    for size in [10usize, 6 * 1024 * 1024] {
        let key = format!("race-{size}.bin");
        let mut w = b.stage(&k(&key), StageMode::Create).await.unwrap();
        let mine = vec![b'm'; size];
        for c in mine.chunks(1 << 20) {
            w.write(Bytes::copy_from_slice(c)).await.unwrap();
        }
        put(b, &key, b"the peer's file").await;
        let e = w
            .commit(sha2::Sha256::digest(&mine).into(), CommitMode::NoReplace)
            .await
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::AlreadyExists, "{size}: {e}");
        assert_eq!(read_all(b, &key, None).await, b"the peer's file", "{size}");
        b.delete(&k(&key)).await.unwrap();
    }

    // Directories: mkdir, nested content, listing, prefix-only directories.
    b.mkdir(&k("inbox")).await.unwrap();
    assert!(b.stat(&k("inbox")).await.unwrap().unwrap().is_dir());
    assert!(
        names(b, "inbox").await.is_empty(),
        "an empty dir lists empty (no marker shows)"
    );
    put(b, "inbox/m.csv", b"id,qty\n1,2\n").await;
    if !b.capabilities().real_dirs {
        // Object stores: a prefix with objects is a directory without any marker.
        put(b, "implied/deep/x.txt", b"x").await;
        assert!(b.stat(&k("implied")).await.unwrap().unwrap().is_dir());
        assert!(b.stat(&k("implied/deep")).await.unwrap().unwrap().is_dir());
        assert_eq!(names(b, "implied").await, vec![("deep".into(), true)]);
    } else {
        b.mkdir(&k("implied")).await.unwrap();
        b.mkdir(&k("implied/deep")).await.unwrap();
        put(b, "implied/deep/x.txt", b"x").await;
        // Disk: a file needs its directory.
        let err = match b.stage(&k("nodir/x.txt"), StageMode::Create).await {
            Err(e) => e,
            Ok(_) => panic!("stage into a missing directory must fail"),
        };
        assert_eq!(err.kind, StorageErrorKind::NotFound);
    }
    let root = names(b, "").await;
    assert!(root.contains(&("a.bin".into(), false)), "{root:?}");
    assert!(root.contains(&("inbox".into(), true)), "{root:?}");
    assert!(root.contains(&("implied".into(), true)), "{root:?}");
    assert!(
        !root.iter().any(|(n, _)| n.starts_with(".gatehouse")),
        "reserved names hidden: {root:?}"
    );
    assert_eq!(names(b, "inbox").await, vec![("m.csv".into(), false)]);

    // rmdir refuses a non-empty directory, then works.
    let err = b.rmdir(&k("inbox")).await.unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::NotEmpty);
    b.delete(&k("inbox/m.csv")).await.unwrap();
    assert!(b.stat(&k("inbox/m.csv")).await.unwrap().is_none());
    b.rmdir(&k("inbox")).await.unwrap();
    assert!(b.stat(&k("inbox")).await.unwrap().is_none());

    // Rename: moves content and digest; no_overwrite refuses an existing target.
    put(b, "r1.txt", b"one").await;
    put(b, "r2.txt", b"two").await;
    let err = b
        .rename(&k("r1.txt"), &k("r2.txt"), true)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::AlreadyExists);
    assert_eq!(read_all(b, "r2.txt", None).await, b"two");
    b.rename(&k("r1.txt"), &k("r3.txt"), true).await.unwrap();
    assert!(b.stat(&k("r1.txt")).await.unwrap().is_none());
    let e3 = b.stat(&k("r3.txt")).await.unwrap().unwrap();
    assert_eq!(read_all(b, "r3.txt", None).await, b"one");
    assert_eq!(
        b.digest(&k("r3.txt"), &e3).await,
        Some(sha2::Sha256::digest(b"one").into())
    );
    b.rename(&k("r3.txt"), &k("r2.txt"), false).await.unwrap();
    assert_eq!(read_all(b, "r2.txt", None).await, b"one");
    // Directories rename with their content.
    b.rename(&k("implied"), &k("moved"), true).await.unwrap();
    assert_eq!(read_all(b, "moved/deep/x.txt", None).await, b"x");
    assert!(b.stat(&k("implied")).await.unwrap().is_none());

    // Resume: where supported, keep a prefix and continue; elsewhere a clear Unsupported.
    put(b, "log.txt", b"hello ").await;
    match b.stage(&k("log.txt"), StageMode::KeepPrefix(6)).await {
        Ok(mut w) => {
            assert!(b.capabilities().resume);
            w.write(Bytes::from_static(b"world")).await.unwrap();
            w.commit(
                sha2::Sha256::digest(b"hello world").into(),
                CommitMode::Replace,
            )
            .await
            .unwrap();
            assert_eq!(read_all(b, "log.txt", None).await, b"hello world");
        }
        Err(e) => {
            assert!(!b.capabilities().resume);
            assert_eq!(e.kind, StorageErrorKind::Unsupported);
        }
    }

    // Random writes and reads back (read-write opens), where supported.
    put(b, "rw.txt", b"0123456789").await;
    match b.stage(&k("rw.txt"), StageMode::KeepPrefix(10)).await {
        Err(e) => {
            assert!(!b.capabilities().resume);
            assert_eq!(e.kind, StorageErrorKind::Unsupported);
        }
        Ok(mut w) => {
            let r = w.write_at(2, Bytes::from_static(b"ab")).await;
            if b.capabilities().random_write {
                r.unwrap();
                // Past the end, then an overlapping write: the later one wins. (After a
                // write_at every write is one, as the core's upload makes them.)
                w.write_at(10, Bytes::from_static(b"XY")).await.unwrap();
                w.write_at(11, Bytes::from_static(b"Z")).await.unwrap();
                assert_eq!(&w.read_at(0, 64).await.unwrap()[..], b"01ab456789XZ");
                assert_eq!(&w.read_at(3, 2).await.unwrap()[..], b"b4");
                let sha: [u8; 32] = sha2::Sha256::digest(b"01ab456789XZ").into();
                assert_eq!(w.content_sha256().await.unwrap(), sha);
                w.commit(sha, CommitMode::Replace).await.unwrap();
                assert_eq!(read_all(b, "rw.txt", None).await, b"01ab456789XZ");
            } else {
                assert_eq!(r.unwrap_err().kind, StorageErrorKind::Unsupported);
                w.abort().await;
            }
        }
    }

    // Reserved names are not reachable.
    assert!(b.stat(&k(".gatehouse")).await.unwrap().is_none());
    assert!(
        b.stage(&k(".gatehouse/x"), StageMode::Create)
            .await
            .is_err()
    );

    // Names with spaces, unicode and percent signs round-trip through listings.
    put(b, "odd name ü %41.txt", b"odd").await;
    assert!(
        names(b, "")
            .await
            .contains(&("odd name ü %41.txt".into(), false))
    );
    assert_eq!(read_all(b, "odd name ü %41.txt", None).await, b"odd");

    // A file large enough for several S3 parts streams through in pieces.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    put(b, "big.bin", &big).await;
    let e = b.stat(&k("big.bin")).await.unwrap().unwrap();
    assert_eq!(e.size, big.len() as u64);
    assert_eq!(
        b.digest(&k("big.bin"), &e).await,
        Some(sha2::Sha256::digest(&big).into())
    );
    assert_eq!(
        read_all(b, "big.bin", Some(6_000_000..6_100_000)).await,
        big[6_000_000..6_100_000]
    );
    assert_eq!(read_all(b, "big.bin", None).await.len(), big.len());
}

#[test]
fn local_disk_conforms() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    rt().block_on(async {
        let b = storage::build("disk", &ValidBackend::Local { root: root.clone() }, None).unwrap();
        conformance(b).await;
    });
    // No staging leftovers.
    let staging = crate::harness::staged_files(&root);
    assert!(staging.is_empty(), "{staging:?}");
}

#[test]
fn local_disk_never_follows_symlinks_out_of_its_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(d.path().join("secret.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink(d.path().join("secret.txt"), root.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(d.path(), root.join("up")).unwrap();
    rt().block_on(async {
        let b = storage::build("disk", &ValidBackend::Local { root: root.clone() }, None).unwrap();
        assert!(b.stat(&k("link.txt")).await.unwrap().is_none());
        assert!(b.read(&k("link.txt"), None).await.is_err());
        assert!(b.read(&k("up/secret.txt"), None).await.is_err());
        assert!(b.stage(&k("up/new.txt"), StageMode::Create).await.is_err());
        assert!(b.list(&k("up")).await.is_err());
    });
    assert!(!d.path().join("new.txt").exists());
}

#[test]
fn memory_conforms() {
    rt().block_on(async {
        conformance(storage::build("mem", &ValidBackend::Memory, None).unwrap()).await;
    });
}

fn s3_backend(bucket: &str, part_mib: usize) -> Arc<dyn Backend> {
    storage::build(
        "lake",
        &ValidBackend::S3 {
            bucket: bucket.into(),
            endpoint: Some(moto().endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some(Secret::new("test".into())),
            secret_access_key: Some(Secret::new("test".into())),
            virtual_hosted_style: false,
            part_size: part_mib * 1024 * 1024,
        },
        None,
    )
    .unwrap()
}

#[test]
fn s3_conforms() {
    let bucket = unique("conform");
    make_bucket(&bucket);
    rt().block_on(async {
        conformance(s3_backend(&bucket, 5)).await;
    });
}

/// 1050 files in one directory: every one listed, across pages (1000 keys per request).
async fn lists_page_by_page(b: Arc<dyn Backend>) {
    let tasks: Vec<_> = (0..1050)
        .map(|i| {
            let b = b.clone();
            async move { put(b.as_ref(), &format!("many/f{i:05}"), b"x").await }
        })
        .collect();
    futures::stream::iter(tasks)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let listed = names(b.as_ref(), "many").await;
    assert_eq!(listed.len(), 1050, "every key across pages");
    assert_eq!(listed[0].0, "f00000");
    assert_eq!(listed[1049].0, "f01049");
}

#[test]
fn s3_lists_large_directories_page_by_page() {
    let bucket = unique("pages");
    make_bucket(&bucket);
    rt().block_on(lists_page_by_page(s3_backend(&bucket, 5)));
}

/// A store nobody answers for: a transient error within a minute, not a hang.
fn down_is_transient(b: Arc<dyn Backend>) {
    rt().block_on(async {
        let start = std::time::Instant::now();
        let err = b.check().await.unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Transient, "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
    });
}

#[test]
fn s3_down_is_a_transient_error_not_a_hang() {
    let port = crate::harness::free_port();
    let b = storage::build(
        "down",
        &ValidBackend::S3 {
            bucket: "x".into(),
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            region: "us-east-1".into(),
            access_key_id: Some(Secret::new("a".into())),
            secret_access_key: Some(Secret::new("b".into())),
            virtual_hosted_style: false,
            part_size: 5 << 20,
        },
        None,
    )
    .unwrap();
    down_is_transient(b);
}

fn azure_backend(container: &str) -> Arc<dyn Backend> {
    crate::emulators::azure(&["create", container]);
    storage::build(
        "blob",
        &ValidBackend::Azure {
            account: crate::emulators::AZURE_ACCOUNT.into(),
            container: container.into(),
            access_key: Some(Secret::new(crate::emulators::AZURE_KEY.into())),
            endpoint: Some(crate::emulators::azurite().endpoint.clone()),
            part_size: 5 * 1024 * 1024,
        },
        None,
    )
    .unwrap()
}

#[test]
fn azure_conforms() {
    let b = azure_backend(&unique("conform"));
    rt().block_on(conformance(b));
}

#[test]
fn azure_lists_large_directories_page_by_page() {
    rt().block_on(lists_page_by_page(azure_backend(&unique("pages"))));
}

fn gcs_backend(bucket: &str, dir: &std::path::Path) -> Arc<dyn Backend> {
    crate::emulators::gcs_bucket(&crate::emulators::fake_gcs().endpoint, bucket);
    storage::build(
        "gcs",
        &ValidBackend::Gcs {
            bucket: bucket.into(),
            service_account_file: Some(crate::emulators::gcs_credentials(dir)),
            endpoint: Some(crate::emulators::fake_gcs().endpoint.clone()),
            part_size: 5 * 1024 * 1024,
        },
        None,
    )
    .unwrap()
}

#[test]
fn gcs_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let b = gcs_backend(&unique("conform"), dir.path());
    rt().block_on(conformance(b));
}

#[test]
fn gcs_lists_large_directories_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(lists_page_by_page(gcs_backend(
        &unique("pages"),
        dir.path(),
    )));
}

#[test]
fn gcs_down_is_a_transient_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let b = storage::build(
        "down",
        &ValidBackend::Gcs {
            bucket: "x".into(),
            service_account_file: Some(crate::emulators::gcs_credentials(dir.path())),
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            part_size: 5 << 20,
        },
        None,
    )
    .unwrap();
    down_is_transient(b);
}

fn webdav_backend(url: &str) -> Arc<dyn Backend> {
    storage::build(
        "share",
        &ValidBackend::WebDav {
            url: url.into(),
            user: Some("gw".into()),
            password: Some(Secret::new("secret".into())),
        },
        None,
    )
    .unwrap()
}

#[test]
fn webdav_conforms() {
    let share = crate::emulators::WebDav::start();
    rt().block_on(conformance(webdav_backend(&share.url)));
}

#[test]
fn webdav_refuses_wrong_credentials_and_a_dead_server_is_transient() {
    let share = crate::emulators::WebDav::start();
    let wrong = storage::build(
        "share",
        &ValidBackend::WebDav {
            url: share.url.clone(),
            user: Some("gw".into()),
            password: Some(Secret::new("wrong".into())),
        },
        None,
    )
    .unwrap();
    let dead = webdav_backend(&format!(
        "http://127.0.0.1:{}/",
        crate::harness::free_port()
    ));
    rt().block_on(async {
        assert_eq!(
            wrong.check().await.unwrap_err().kind,
            StorageErrorKind::Permanent
        );
        assert_eq!(
            dead.check().await.unwrap_err().kind,
            StorageErrorKind::Transient
        );
    });
}

fn sftp_backend(
    sshd: &crate::emulators::Sshd,
    host_key: &str,
    key: &std::path::Path,
) -> Arc<dyn Backend> {
    storage::build(
        "legacy",
        &ValidBackend::Sftp {
            address: format!("127.0.0.1:{}", sshd.port),
            user: sshd.user.clone(),
            private_key: Some(key.to_path_buf()),
            password: None,
            host_key: host_key.into(),
            root: sshd.root().display().to_string(),
            max_sessions: 4,
        },
        None,
    )
    .unwrap()
}

#[test]
fn sftp_upstream_conforms() {
    let sshd = crate::emulators::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let key = crate::sftp::key(dir.path(), "client_ed25519");
    rt().block_on(conformance(sftp_backend(&sshd, &sshd.host_key, &key)));
    // Nothing of the gateway's own is left beside the files but its digest sidecars.
    let left: Vec<_> = std::fs::read_dir(sshd.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".gatehouse-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn sftp_upstream_with_the_wrong_host_key_is_refused_and_says_so() {
    let mut sshd = crate::emulators::Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let key = crate::sftp::key(dir.path(), "client_ed25519");
    let wrong =
        std::fs::read_to_string(crate::harness::root().join("fixtures/ssh/other_ed25519.pub"))
            .unwrap();
    let b = sftp_backend(&sshd, wrong.trim(), &key);
    rt().block_on(async {
        let e = b.check().await.unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Permanent, "{e}");
        assert!(e.detail.contains("host key mismatch"), "{e}");
        // The right key works; then the upstream goes away: transient, and back again.
        let good = sftp_backend(&sshd, &sshd.host_key, &key);
        good.check().await.unwrap();
        sshd.stop();
        let e = good.stat(&k("x")).await.unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::Transient, "{e}");
        sshd.restart();
        good.check().await.unwrap();
        put(good.as_ref(), "back.txt", b"again").await;
        assert_eq!(read_all(good.as_ref(), "back.txt", None).await, b"again");
    });
}
