//! The conformance suite on the in-memory store.

use connective::store::MemoryStore;
use connective::test_kit;

#[test]
fn memory_store_passes_the_conformance_suite() {
    test_kit::run_all(&MemoryStore::new());
}

#[test]
fn memory_store_two_handles_race_on_one_key() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let (a, b) = (store.clone(), store.clone());
    test_kit::concurrent_writers(&[&a, &b], 3, 20);
    test_kit::racing_creators(&[&a, &b], 3);
    test_kit::follower_sees_every_revision(&[&a, &b], &*store, 2, 15);
}

#[test]
fn memory_store_reopen_is_a_fresh_store() {
    test_kit::reopen_keeps_everything(MemoryStore::new, false);
}

// --- The suite must fail on broken stores ------------------------------------

mod broken {
    use std::time::Duration;

    use connective::model::{Record, RecordKey, Revision, Version};
    use connective::store::{
        Batch, Change, CommitToken, Committed, Expect, MemoryStore, Snapshot, Store, StoreError,
    };

    /// What a broken store gets wrong.
    #[derive(Clone, Copy, Debug)]
    pub enum Flaw {
        /// Ignores expected versions (last writer wins: lost updates).
        IgnoresExpectations,
        /// Applies a batch write by write, keeping the writes before a conflict.
        NotAtomic,
        /// Counts `limit` in changes instead of batches, splitting batches.
        SplitsBatches,
        /// Does not keep batches' tokens: every look-up says "not applied".
        ForgetsTokens,
    }

    pub struct Broken {
        pub inner: MemoryStore,
        pub flaw: Flaw,
    }

    impl Store for Broken {
        fn backend(&self) -> &'static str {
            "broken"
        }
        fn load(&self) -> Result<Snapshot, StoreError> {
            self.inner.load()
        }
        fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
            match self.flaw {
                Flaw::IgnoresExpectations => {
                    let mut fixed = batch.clone();
                    for w in &mut fixed.writes {
                        w.expect = match self.inner.get(&w.key)? {
                            Some((v, _)) => Expect::Version(v),
                            None => Expect::Absent,
                        };
                    }
                    self.inner.commit(&fixed)
                }
                Flaw::NotAtomic => {
                    batch.validate()?;
                    let mut last = None;
                    let mut versions = Vec::new();
                    for w in &batch.writes {
                        let one = Batch {
                            writes: vec![w.clone()],
                            token: batch.token,
                            audit: None,
                        };
                        let c = self.inner.commit(&one)?;
                        versions.extend(c.versions);
                        last = Some(c.revision);
                    }
                    Ok(Committed {
                        revision: last.unwrap_or_default(),
                        versions,
                    })
                }
                Flaw::SplitsBatches | Flaw::ForgetsTokens => self.inner.commit(batch),
            }
        }
        fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
            match self.flaw {
                Flaw::ForgetsTokens => Ok(None),
                _ => self.inner.find_commit(token, after),
            }
        }
        fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
            let mut all = self.inner.changes_since(after, limit)?;
            if let Flaw::SplitsBatches = self.flaw {
                all.truncate(limit);
            }
            Ok(all)
        }
        fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
            self.inner.get(key)
        }
        fn revision(&self) -> Result<Revision, StoreError> {
            self.inner.revision()
        }
        fn wait_for_change(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
            self.inner.wait_for_change(after, timeout)
        }
    }
}

fn fails(flaw: broken::Flaw, check: fn(&dyn connective::store::Store)) {
    let store = broken::Broken {
        inner: MemoryStore::new(),
        flaw,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&store)));
    assert!(
        outcome.is_err(),
        "the conformance check passed a store that {flaw:?}"
    );
}

#[test]
fn the_suite_catches_broken_stores() {
    use broken::Flaw;
    fails(Flaw::IgnoresExpectations, test_kit::versions_and_conflicts);
    fails(Flaw::IgnoresExpectations, test_kit::delete_and_recreate);
    fails(Flaw::NotAtomic, test_kit::batches_are_atomic);
    fails(Flaw::SplitsBatches, test_kit::change_feed_order_and_limits);
    fails(Flaw::ForgetsTokens, test_kit::commits_are_found_by_token);
}
