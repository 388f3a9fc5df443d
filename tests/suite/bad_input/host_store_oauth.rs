//! The OAuth runtime's refresh lease on a host's own store that commits a
//! write without answering its version: the lease is taken to be at the
//! next version, and a token set at the last version has none, so the
//! refresh fails with a typed error naming the token set, never goes on at
//! a version past `Version::MAX`. Against the real authorization server.

use std::sync::Arc;
use std::time::Duration;

use crate::support::oauth_server::{OAuthServer, REDIRECT, crm_spec};
use connective::model::{
    AuditEntry, AuditQuery, CredentialKey, ReadNote, Record, RecordKey, Revision, Version,
};
use connective::oauth::runtime::OAuthError;
use connective::prelude::*;
use connective::store::{
    Batch, Change, CommitToken, Committed, Expect, MemoryStore, Op, Snapshot, Store, StoreError, Write,
};

/// The memory store, except for token sets: it reads them at
/// [`Version::MAX`], writes a batch of one whatever version the writer
/// expected, and answers the authorization's write at `Version::MAX` and a
/// lease's without its version.
struct Mute {
    inner: MemoryStore,
}

impl Store for Mute {
    fn backend(&self) -> &'static str {
        "mute"
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }

    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        let [w] = &batch.writes[..] else {
            return self.inner.commit(batch);
        };
        let Op::Put(record @ Record::TokenSet(set)) = &w.op else {
            return self.inner.commit(batch);
        };
        let found = self.inner.get(&w.key)?.map(|(v, _)| v);
        let mut honest = Batch::new();
        honest.push(Write::put(
            record.clone(),
            found.map_or(Expect::Absent, Expect::Version),
        ));
        let mut committed = self.inner.commit(&honest)?;
        committed.versions = if set.lease().is_some() {
            Vec::new()
        } else {
            vec![Version::MAX]
        };
        Ok(committed)
    }

    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        self.inner.find_commit(token, after)
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.inner.changes_since(after, limit)
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        let got = self.inner.get(key)?;
        Ok(match key {
            RecordKey::TokenSet(_) => got.map(|(_, record)| (Version::MAX, record)),
            _ => got,
        })
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision()
    }

    fn keeps_audit(&self) -> bool {
        self.inner.keeps_audit()
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(query)
    }

    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        self.inner.append_reads(reads)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_answered_without_its_version_at_the_last_version_is_a_typed_error() {
    let Some(server) = OAuthServer::start(4) else {
        return;
    };
    let registry = Arc::new(
        Registry::builder()
            .store(Mute {
                inner: MemoryStore::new(),
            })
            .build()
            .unwrap(),
    );
    let (id, _) = registry.create_connection(crm_spec(&server)).unwrap();
    let runtime = registry
        .oauth_runtime()
        .http_timeout(Duration::from_secs(2))
        // Every token is due for a refresh as soon as it is stored.
        .refresh_lead(Duration::from_secs(3600))
        .refresh_share(100)
        .build()
        .unwrap();
    let key = CredentialKey::new(
        "acme".parse().unwrap(),
        id,
        "production".parse().unwrap(),
        Some("globex".parse().unwrap()),
    );
    let started = runtime.start_authorization(&key, REDIRECT, None).await.unwrap();
    let callback = server.consent(started.url(), false).await;
    runtime
        .complete_authorization(&callback.state, &callback.code.unwrap())
        .await
        .unwrap();
    let err = runtime.access_token(&key).await.unwrap_err();
    assert!(matches!(&err, OAuthError::Store { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "{} is at the last version v72057594037927935 and cannot be written again",
            RecordKey::TokenSet(key.clone())
        )),
        "{message}"
    );
}
