//! `gatehouse audit verify --remote BACKEND`: checks every node's shipped chain. For each node
//! under the prefix: checkpoints numbered 1..N without gaps, each signed by the key, each naming
//! the previous one's signature and continuing its chain hash; every file a checkpoint names is
//! there, has the sha256 it names, and its records chain (hashes recomputed, prev links, seq
//! order). For this node, the local state and unshipped files must continue the last shipped
//! checkpoint: a cut tail (checkpoints deleted from the end) shows there. Each problem names
//! the node, checkpoint or file, and seq.

use std::collections::BTreeSet;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use futures::StreamExt;

use super::checkpoint::Signed;
use super::scan::Chain;
use super::{Layout, ShipState};
use crate::audit::record;
use crate::vfs::backend::{Backend, Key, StorageError, StorageErrorKind};

/// What was found for one node.
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Files checked.
    pub files: u64,
    /// Records whose chain checked out.
    pub records: u64,
    /// The last shipped seq.
    pub last_seq: u64,
    /// Tampering or loss, each naming where.
    pub problems: Vec<String>,
    /// Worth knowing, not tampering.
    pub notes: Vec<String>,
}

/// This node's side, to check the shipped chain against.
#[derive(Debug)]
pub struct LocalSide<'a> {
    /// The node name.
    pub node: &'a str,
    /// Its audit directory.
    pub audit_dir: &'a Path,
    /// Its shipping state.
    pub state: ShipState,
}

pub(super) async fn read_all(b: &dyn Backend, key: &Key) -> Result<Vec<u8>, StorageError> {
    let mut s = b.read(key, None).await?;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

pub(super) async fn names(b: &dyn Backend, dir: &Key) -> Result<Vec<(String, bool)>, StorageError> {
    let mut s = match b.list(dir).await {
        Ok(s) => s,
        Err(e) if e.kind == StorageErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    while let Some(e) = s.next().await {
        let e = e?;
        out.push((e.name.clone(), e.is_dir()));
    }
    Ok(out)
}

/// The highest-numbered checkpoint of `node` on the backend, if any (parsed, not verified).
pub async fn latest_checkpoint(
    backend: &dyn Backend,
    layout: &Layout,
    node: &str,
) -> Result<Option<(u64, Signed)>, StorageError> {
    let newest = names(backend, &layout.key(node, "checkpoints"))
        .await?
        .into_iter()
        .filter_map(|(n, _)| n.strip_suffix(".json")?.parse::<u64>().ok())
        .max();
    let Some(n) = newest else { return Ok(None) };
    let key = layout.key(node, &format!("checkpoints/{}", Layout::checkpoint_name(n)));
    let bytes = read_all(backend, &key).await?;
    Ok(serde_json::from_slice(&bytes).ok().map(|s| (n, s)))
}

/// The nodes that shipped under `layout`.
pub async fn shipped_nodes(
    backend: &dyn Backend,
    layout: &Layout,
) -> Result<Vec<String>, StorageError> {
    Ok(names(backend, &layout.root())
        .await?
        .into_iter()
        .filter(|(_, dir)| *dir)
        .map(|(n, _)| n)
        .collect())
}

/// Copies `node`'s shipped audit files into `into` (for `audit query --remote`); returns how
/// many.
pub async fn fetch_node(
    backend: &dyn Backend,
    layout: &Layout,
    node: &str,
    into: &Path,
) -> Result<usize, StorageError> {
    let mut n = 0;
    for (name, dir) in names(backend, &layout.key(node, "")).await? {
        if dir || record::parse_file_name(&name).is_none() {
            continue;
        }
        let bytes = read_all(backend, &layout.key(node, &name)).await?;
        std::fs::write(into.join(&name), bytes)
            .map_err(|e| StorageError::from_io(&e, into.join(&name).display()))?;
        n += 1;
    }
    Ok(n)
}

/// Verifies every node under `layout` on `backend` with `key`.
pub async fn verify_remote(
    backend: &dyn Backend,
    layout: &Layout,
    key: &VerifyingKey,
    local: Option<LocalSide<'_>>,
) -> Result<Vec<NodeReport>, StorageError> {
    let mut nodes: BTreeSet<String> = names(backend, &layout.root())
        .await?
        .into_iter()
        .filter(|(_, dir)| *dir)
        .map(|(n, _)| n)
        .collect();
    if let Some(l) = &local
        && l.state.checkpoint > 0
    {
        nodes.insert(l.node.to_string());
    }
    let mut out = Vec::new();
    for node in nodes {
        let side = local.as_ref().filter(|l| l.node == node);
        out.push(verify_node(backend, layout, key, &node, side).await?);
    }
    Ok(out)
}

async fn verify_node(
    backend: &dyn Backend,
    layout: &Layout,
    key: &VerifyingKey,
    node: &str,
    local: Option<&LocalSide<'_>>,
) -> Result<NodeReport, StorageError> {
    let mut r = NodeReport {
        node: node.to_string(),
        ..Default::default()
    };
    let mut numbers: Vec<u64> = names(backend, &layout.key(node, "checkpoints"))
        .await?
        .into_iter()
        .filter_map(|(n, _)| n.strip_suffix(".json")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let mut referenced = BTreeSet::new();
    let mut chain = Chain::default();
    let mut prev_sig: Option<String> = None;
    let mut expected = 1u64;
    let mut last_signature = None;
    for n in numbers {
        if n != expected {
            r.problems.push(format!(
                "checkpoint {expected}{} missing (deleted)",
                if n > expected + 1 {
                    format!("..{}", n - 1)
                } else {
                    String::new()
                }
            ));
            chain = Chain::default();
            prev_sig = None;
        }
        expected = n + 1;
        r.checkpoints += 1;
        let ck_key = layout.key(node, &format!("checkpoints/{}", Layout::checkpoint_name(n)));
        let signed: Signed = match serde_json::from_slice(&read_all(backend, &ck_key).await?) {
            Ok(s) => s,
            Err(e) => {
                r.problems
                    .push(format!("checkpoint {n}: not a checkpoint ({e})"));
                chain = Chain::default();
                prev_sig = None;
                continue;
            }
        };
        last_signature = Some(signed.signature.clone());
        if !signed.verify(key) {
            referenced.extend(signed.body.files.iter().map(|f| f.name.clone()));
            r.problems.push(format!(
                "checkpoint {n}: signature does not verify with the signing key (forged or edited)"
            ));
            chain = Chain::default();
            prev_sig = Some(signed.signature.clone());
            continue;
        }
        let body = &signed.body;
        if body.number != n || body.node != node {
            r.problems.push(format!(
                "checkpoint {n}: says it is checkpoint {} of node {:?} (moved)",
                body.number, body.node
            ));
        }
        let linked = if n == 1 {
            body.previous_signature.is_none()
        } else {
            prev_sig.is_none() || body.previous_signature == prev_sig
        };
        if !linked {
            r.problems.push(format!(
                "checkpoint {n}: does not name checkpoint {}'s signature (replaced or reordered)",
                n - 1
            ));
        }
        if let Some(want) = &chain.prev
            && &body.first_prev != want
        {
            r.problems.push(format!(
                "checkpoint {n}: does not continue the chain where checkpoint {} ended",
                n - 1
            ));
        }
        if chain.prev.is_none() && n == 1 {
            chain.prev = Some(body.first_prev.clone());
        }
        for f in &body.files {
            referenced.insert(f.name.clone());
            r.files += 1;
            let bytes = match read_all(backend, &layout.key(node, &f.name)).await {
                Ok(b) => b,
                Err(e) if e.kind == StorageErrorKind::NotFound => {
                    r.problems.push(format!(
                        "{} (checkpoint {n}, seq {}..{}): missing (deleted)",
                        f.name, f.first_seq, f.last_seq
                    ));
                    chain.prev = None;
                    chain.seq = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if sha != f.sha256 {
                let at = match chain.clone().check(&f.name, &bytes) {
                    Err(why) => format!(": {why}"),
                    Ok(_) => String::new(),
                };
                r.problems.push(format!(
                    "{} (checkpoint {n}): content differs from the sha256 its checkpoint names (edited){at}",
                    f.name
                ));
                chain.prev = None;
                chain.seq = None;
                continue;
            }
            let before = chain.records;
            match chain.check(&f.name, &bytes) {
                Ok(_) => r.records += chain.records - before,
                Err(why) => {
                    r.problems
                        .push(format!("{} (checkpoint {n}): {why}", f.name));
                    chain.prev = None;
                    chain.seq = None;
                }
            }
        }
        // The signed checkpoint says where the chain ends, whatever happened inside.
        chain.prev = Some(body.last_hash.clone());
        if let Some(f) = body.files.last() {
            chain.seq = Some(f.last_seq + 1);
            r.last_seq = f.last_seq;
        }
        prev_sig = Some(signed.signature.clone());
    }
    for (name, dir) in names(backend, &layout.key(node, "")).await? {
        if !dir && !referenced.contains(&name) {
            r.notes.push(format!(
                "{name} is on the backend but in no checkpoint (an interrupted shipment, or added)"
            ));
        }
    }
    if let Some(l) = local {
        check_local(
            &mut r,
            l,
            expected - 1,
            last_signature.as_deref(),
            chain.prev.as_deref(),
        );
    }
    Ok(r)
}

/// The node's own side: its state names the last checkpoint it shipped, and its unshipped
/// files continue the shipped chain.
fn check_local(
    r: &mut NodeReport,
    l: &LocalSide<'_>,
    remote_last: u64,
    remote_sig: Option<&str>,
    remote_hash: Option<&str>,
) {
    if l.state.checkpoint > remote_last {
        r.problems.push(format!(
            "the shipped chain ends at checkpoint {remote_last}, but this node shipped checkpoint {} (seq {}): the tail was cut",
            l.state.checkpoint, l.state.last_seq
        ));
        return;
    }
    if l.state.checkpoint == remote_last
        && remote_last > 0
        && l.state.signature.as_deref() != remote_sig
    {
        r.problems.push(format!(
            "checkpoint {remote_last} on the backend is not the one this node wrote (replaced)"
        ));
    }
    let Ok(files) = record::list_files(l.audit_dir) else {
        r.notes
            .push(format!("cannot list {}", l.audit_dir.display()));
        return;
    };
    let Some(want) = remote_hash else { return };
    for (n, path) in files.into_iter().filter(|(n, _)| *n >= l.state.next_file) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Some(line) = bytes
            .split(|b| *b == b'\n')
            .next()
            .filter(|l| !l.is_empty())
        else {
            continue;
        };
        match serde_json::from_slice::<record::Record>(line) {
            Ok(rec) if rec.prev == want => {
                r.notes.push(format!(
                    "local unshipped tail from {} (seq {}) continues the shipped chain",
                    record::file_name(n),
                    rec.seq
                ));
            }
            Ok(rec) => r.problems.push(format!(
                "local {} (seq {}) does not continue the last shipped record (the shipped tail was cut or the local log edited)",
                record::file_name(n),
                rec.seq
            )),
            Err(e) => r
                .problems
                .push(format!("local {}: not an audit record ({e})", record::file_name(n))),
        }
        return;
    }
}
