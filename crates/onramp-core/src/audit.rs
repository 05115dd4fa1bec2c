//! The hash-chained audit log (SPEC §9).
//!
//! Each onboarding has its own chain. An entry's hash is
//! `sha256(prev_hash || canonical JSON of the entry)`, where the canonical JSON holds the
//! fields `action, actor, at, detail, from, seq, to` (`at` in milliseconds since the epoch) with
//! keys sorted and no whitespace, and
//! the first entry's `prev_hash` is [`GENESIS`]. Changing, removing or reordering any entry
//! breaks every later link, which [`verify_chain`] reports.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry to append, before it is chained.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// When it happened.
    pub at: Millis,
    /// Who did it: `system`, `worker`, or `token:<name>`.
    pub actor: String,
    /// What happened, e.g. `step.succeeded`, `onboarding.cancelled`.
    pub action: String,
    /// The state before, if a state changed.
    pub from: Option<String>,
    /// The state after.
    pub to: Option<String>,
    /// Anything else worth keeping.
    pub detail: Value,
}

/// The end of a chain: the last entry's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The last entry's `seq` (0 for an empty chain).
    pub seq: u64,
    /// The last entry's hash ([`GENESIS`] for an empty chain).
    pub hash: String,
}

impl AuditHead {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// A chained entry as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the onboarding's chain, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: Millis,
    /// Who did it.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// The state before.
    pub from: Option<String>,
    /// The state after.
    pub to: Option<String>,
    /// Details.
    pub detail: Value,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

fn entry_hash(prev_hash: &str, seq: u64, r: &AuditRecord) -> String {
    /// The hashed form of an entry. Fields are declared in alphabetical order and
    /// serde_json's maps keep keys sorted, which makes the serialization canonical.
    #[derive(Serialize)]
    struct Canonical<'a> {
        action: &'a str,
        actor: &'a str,
        at: i64,
        detail: &'a Value,
        from: Option<&'a str>,
        seq: u64,
        to: Option<&'a str>,
    }
    let canonical = Canonical {
        action: &r.action,
        actor: &r.actor,
        at: r.at.0,
        detail: &r.detail,
        from: r.from.as_deref(),
        seq,
        to: r.to.as_deref(),
    };
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    // Serializing plain strings, integers and JSON values cannot fail.
    hasher.update(serde_json::to_vec(&canonical).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// Appends `record` after `head`, advancing `head`.
pub fn chain(head: &mut AuditHead, record: AuditRecord) -> AuditEntry {
    let seq = head.seq + 1;
    let hash = entry_hash(&head.hash, seq, &record);
    let entry = AuditEntry {
        seq,
        at: record.at,
        actor: record.actor,
        action: record.action,
        from: record.from,
        to: record.to,
        detail: record.detail,
        prev_hash: std::mem::replace(&mut head.hash, hash.clone()),
        hash,
    };
    head.seq = seq;
    entry
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {seq}: {reason}")]
pub struct BrokenLink {
    /// The first entry that does not verify.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks a whole chain, given in `seq` order.
pub fn verify_chain(entries: &[AuditEntry]) -> Result<(), BrokenLink> {
    let mut expected_prev = GENESIS.to_owned();
    for (i, e) in entries.iter().enumerate() {
        let want_seq = i as u64 + 1;
        if e.seq != want_seq {
            return Err(BrokenLink {
                seq: e.seq,
                reason: format!("expected seq {want_seq} (an entry is missing)"),
            });
        }
        if e.prev_hash != expected_prev {
            return Err(BrokenLink {
                seq: e.seq,
                reason: "prev_hash does not match the previous entry".into(),
            });
        }
        let record = AuditRecord {
            at: e.at,
            actor: e.actor.clone(),
            action: e.action.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            detail: e.detail.clone(),
        };
        if entry_hash(&e.prev_hash, e.seq, &record) != e.hash {
            return Err(BrokenLink {
                seq: e.seq,
                reason: "hash does not match the entry's content".into(),
            });
        }
        expected_prev = e.hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            at: Millis(1_000),
            actor: "system".into(),
            action: action.into(),
            from: Some("pending".into()),
            to: Some("running".into()),
            detail: json!({"seq": 1}),
        }
    }

    fn sample_chain() -> Vec<AuditEntry> {
        let mut head = AuditHead::genesis();
        ["onboarding.created", "step.running", "step.succeeded"]
            .into_iter()
            .map(|a| chain(&mut head, record(a)))
            .collect()
    }

    #[test]
    fn a_fresh_chain_verifies_and_links_each_entry_to_the_last() {
        let entries = sample_chain();
        assert_eq!(entries[0].prev_hash, GENESIS);
        assert_eq!(entries[1].prev_hash, entries[0].hash);
        assert_eq!(verify_chain(&entries), Ok(()));
    }

    #[test]
    fn tampering_with_content_is_found() {
        let mut entries = sample_chain();
        entries[1].actor = "mallory".into();
        assert_eq!(verify_chain(&entries).unwrap_err().seq, 2);
    }

    #[test]
    fn a_removed_entry_is_found() {
        let mut entries = sample_chain();
        entries.remove(1);
        assert_eq!(verify_chain(&entries).unwrap_err().seq, 3);
    }
}
