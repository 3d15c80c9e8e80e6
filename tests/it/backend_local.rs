//! The local backend's staging: small uploads held in memory until their commit (one trip to
//! the blocking pool), larger ones in a temp file once they outgrow it.

use bytes::Bytes;
use gatehouse::adapters::storage;
use gatehouse::config::ValidBackend;
use gatehouse::vfs::backend::{CommitMode, StageMode, StorageErrorKind};
use sha2::Digest;

use crate::backend::{k, read_all, rt};

/// A small upload reaches the disk only at its commit (one trip to the blocking pool); a larger
/// one gets its temp file when it outgrows the 64 KiB held in memory. Either way the content,
/// the commit modes and abort behave as before.
#[test]
fn local_disk_holds_small_uploads_in_memory_until_commit() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let staged = || crate::harness::staged_files(&root);
    rt().block_on(async {
        let b = storage::build("disk", &ValidBackend::Local { root: root.clone() }, None).unwrap();
        let small = vec![7u8; 4096];
        let mut w = b.stage(&k("small.bin"), StageMode::Create).await.unwrap();
        w.write(Bytes::from(small.clone())).await.unwrap();
        assert!(staged().is_empty(), "a small upload made a temp file");
        w.commit(sha2::Sha256::digest(&small).into(), CommitMode::NoReplace)
            .await
            .unwrap();
        assert_eq!(read_all(&*b, "small.bin", None).await, small);
        // No-replace still refuses an existing file, and leaves nothing behind.
        let mut w = b.stage(&k("small.bin"), StageMode::Create).await.unwrap();
        w.write(Bytes::from_static(b"other")).await.unwrap();
        let e = w
            .commit(sha2::Sha256::digest(b"other").into(), CommitMode::NoReplace)
            .await
            .unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::AlreadyExists, "{e}");
        assert_eq!(read_all(&*b, "small.bin", None).await, small);
        // An empty upload is a file too.
        let w = b.stage(&k("empty.bin"), StageMode::Create).await.unwrap();
        w.commit(sha2::Sha256::digest(b"").into(), CommitMode::Replace)
            .await
            .unwrap();
        assert_eq!(read_all(&*b, "empty.bin", None).await, b"");
        // Past 64 KiB the temp file exists; an abort removes it.
        let mut w = b.stage(&k("large.bin"), StageMode::Create).await.unwrap();
        for _ in 0..3 {
            w.write(Bytes::from(vec![1u8; 30_000])).await.unwrap();
        }
        assert_eq!(
            staged().len(),
            1,
            "the upload outgrew memory: {:?}",
            staged()
        );
        w.abort().await;
        assert!(b.stat(&k("large.bin")).await.unwrap().is_none());
        // Aborting a small one leaves nothing either.
        let mut w = b.stage(&k("gone.bin"), StageMode::Create).await.unwrap();
        w.write(Bytes::from_static(b"x")).await.unwrap();
        w.abort().await;
        assert!(b.stat(&k("gone.bin")).await.unwrap().is_none());
    });
    assert!(staged().is_empty(), "{:?}", staged());
}
