//! A registry shared across threads: readers resolve while writers write, and
//! racing writers never lose an update.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use connective::model::{Layer, NameStripe, Record, RecordKey, Revision};
use connective::prelude::*;
use connective::registry::WriteReport;
use connective::store::{Batch, Change, CommitToken, Committed, MemoryStore, Snapshot, Store, StoreError};

use crate::support::acme;

/// Two parameters that every write sets to the same generation, so a reader
/// that saw them differ would have seen half a write.
fn twilio(generation: u64) -> ConnectionSpec {
    ConnectionSpec::project("acme", "twilio")
        .target(Target::external("twilio"))
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default(format!("https://api.twilio.com/{generation}")))
        .param(Param::secret("ApiKey").default(format!("key-{generation}")))
        .build()
        .unwrap()
}

fn generation(env: &ResolvedEnv) -> u64 {
    let url = env.get("SMS_URL").unwrap().value().expose();
    let key = env.get("SMS_KEY").unwrap().value().expose();
    let from_url: u64 = url.rsplit('/').next().unwrap().parse().unwrap();
    let from_key: u64 = key.strip_prefix("key-").unwrap().parse().unwrap();
    assert_eq!(from_url, from_key, "a torn read: {url} with {key}");
    from_url
}

fn setup(registry: &Registry) -> ConnectionId {
    let (id, _) = registry.create_connection(twilio(0)).unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ServiceURL", "SMS_URL"), ("ApiKey", "SMS_KEY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    id
}

#[test]
fn readers_resolve_whole_snapshots_while_a_writer_writes() {
    const WRITES: u64 = 200;
    let registry = Arc::new(Registry::in_memory());
    let id = setup(&registry);
    let request = ResolveRequest::parse("acme", "orders", "production").unwrap();
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (registry, request, done) = (registry.clone(), request.clone(), done.clone());
            thread::spawn(move || {
                let (mut last_generation, mut last_revision, mut reads) = (0, Revision(0), 0u64);
                // A view taken now keeps answering from its snapshot.
                let frozen = registry.view(&acme());
                let frozen_generation = generation(&frozen.resolve(&request).unwrap());
                while !done.load(Ordering::Acquire) || reads == 0 {
                    let env = registry.resolve(&request).unwrap();
                    let g = generation(&env);
                    assert!(g >= last_generation, "went back from {last_generation} to {g}");
                    assert!(env.revision() >= last_revision, "revision went back");
                    (last_generation, last_revision) = (g, env.revision());
                    reads += 1;
                }
                assert_eq!(generation(&frozen.resolve(&request).unwrap()), frozen_generation);
                reads
            })
        })
        .collect();

    for g in 1..=WRITES {
        registry.update_connection(id, Version(g), twilio(g)).unwrap();
    }
    done.store(true, Ordering::Release);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads >= 3);
    assert_eq!(generation(&registry.resolve(&request).unwrap()), WRITES);
}

/// Runs `rounds` races of two writers updating the same connection from the
/// same version; each must end with exactly one winner.
fn race(writers: [Arc<Registry>; 2], id: ConnectionId, rounds: u64) {
    for round in 0..rounds {
        writers[0].sync().unwrap();
        let read = writers[0].connection(&acme(), id).unwrap().version;
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<Result<WriteReport, RegistryError>> = writers
            .iter()
            .enumerate()
            .map(|(w, registry)| {
                let (registry, barrier) = (registry.clone(), barrier.clone());
                let generation = 1000 * round + 1 + w as u64;
                thread::spawn(move || {
                    barrier.wait();
                    registry.update_connection(id, read, twilio(generation))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let winners: Vec<usize> = (0..2).filter(|w| results[*w].is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = &results[1 - winners[0]];
        assert!(
            matches!(loser, Err(RegistryError::Conflict { found: Some(v), .. }) if v.0 == read.0 + 1),
            "round {round}: {loser:?}"
        );
        for registry in &writers {
            registry.sync().unwrap();
            let env = registry
                .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
                .unwrap();
            assert_eq!(
                generation(&env),
                1000 * round + 1 + winners[0] as u64,
                "round {round}"
            );
            assert_eq!(registry.connection(&acme(), id).unwrap().version.0, read.0 + 1);
        }
    }
}

#[test]
fn two_writers_racing_on_one_version_one_wins_and_the_other_conflicts() {
    let registry = Arc::new(Registry::in_memory());
    let id = setup(&registry);
    race([registry.clone(), registry], id, 50);
}

/// The memory store with a little latency on commit, as a database over a
/// network would have: it widens the window between validation and commit.
struct Remote(MemoryStore);

impl Store for Remote {
    fn backend(&self) -> &'static str {
        "remote"
    }
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.0.load()
    }
    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        thread::sleep(Duration::from_millis(2));
        self.0.commit(batch)
    }
    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        self.0.find_commit(token, after)
    }
    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.0.changes_since(after, limit)
    }
    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        self.0.get(key)
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        self.0.revision()
    }
}

#[test]
fn two_replicas_on_one_store_racing_on_one_version_one_wins() {
    let store: Arc<dyn Store> = Arc::new(Remote(MemoryStore::new()));
    let a = Arc::new(Registry::builder().shared_store(store.clone()).build().unwrap());
    let b = Arc::new(Registry::builder().shared_store(store).build().unwrap());
    let id = setup(&a);
    b.sync().unwrap();
    race([a, b], id, 20);
}

#[test]
fn concurrent_creations_are_all_kept_each_in_its_own_revision() {
    let registry = Arc::new(Registry::in_memory());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let registry = registry.clone();
            thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let (id, report) = registry
                            .create_connection(
                                ConnectionSpec::integration("acme", format!("i{t}"), format!("c{i}"))
                                    .param(Param::plain("Url").default(format!("{t}/{i}")))
                                    .build()
                                    .unwrap(),
                            )
                            .unwrap();
                        (id, report.revision)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut revisions = Vec::new();
    for h in handles {
        for (id, revision) in h.join().unwrap() {
            ids.push(id);
            revisions.push(revision.0);
        }
    }
    revisions.sort();
    assert_eq!(
        revisions,
        (1..=100).collect::<Vec<u64>>(),
        "one revision per write, none lost"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100);
    assert_eq!(registry.snapshot(&acme()).unwrap().connection_count(), 100);
    let stored = registry.store().load().unwrap().records;
    let connections = stored
        .iter()
        .filter(|(_, r)| matches!(r, Record::Connection(_)))
        .count();
    assert_eq!(connections, 100);
    // Beside them, the project's reference fences: at most one per stripe.
    assert!(stored.len() - connections <= usize::from(NameStripe::COUNT));
}

/// Rule 2 says names are unique per scope. Two replicas validating against
/// their own catalogs must not both create `twilio` at project scope: the
/// connection's store key is its stable key (scope, name), so the second
/// create conflicts in the store.
#[test]
fn two_replicas_cannot_both_create_the_same_name_in_one_scope() {
    for _ in 0..5 {
        let store: Arc<dyn Store> = Arc::new(Remote(MemoryStore::new()));
        let replicas: Vec<Arc<Registry>> = (0..2)
            .map(|_| Arc::new(Registry::builder().shared_store(store.clone()).build().unwrap()))
            .collect();
        let barrier = Arc::new(Barrier::new(2));
        let created: usize = replicas
            .iter()
            .map(|r| {
                let (r, barrier) = (r.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    r.create_connection(twilio(1)).is_ok()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| usize::from(h.join().unwrap()))
            .sum();
        replicas[0].sync().unwrap();
        assert_eq!(created, 1);
        assert_eq!(replicas[0].snapshot(&acme()).unwrap().connection_count(), 1);
    }
}

/// A shared store seen through a replica that has fallen behind: while
/// `blind` is set, the change feed shows it nothing new, as if another
/// replica's commit landed between its catch-up and its own commit.
struct Lagging {
    store: Arc<MemoryStore>,
    blind: AtomicBool,
}

impl Store for Lagging {
    fn backend(&self) -> &'static str {
        "lagging"
    }
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.store.load()
    }
    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        self.store.commit(batch)
    }
    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        self.store.find_commit(token, after)
    }
    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        if self.blind.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        self.store.changes_since(after, limit)
    }
    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        self.store.get(key)
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        self.store.revision()
    }
}

/// Rule 9 across replicas: replica A maps `twilio` for `orders` while replica
/// B, which has not seen that yet, deletes `twilio`. B's delete must conflict
/// (both writes rewrite the reference fence of `twilio`) rather than leave
/// `orders` with a dangling reference; once B catches up, the delete is
/// refused with `orders` listed as a dependent.
#[test]
fn a_stale_replica_cannot_delete_a_connection_another_replica_just_mapped() {
    let shared = Arc::new(MemoryStore::new());
    let a = Registry::builder().shared_store(shared.clone()).build().unwrap();
    let lagging = Arc::new(Lagging {
        store: shared,
        blind: AtomicBool::new(false),
    });
    let b = Registry::builder().shared_store(lagging.clone()).build().unwrap();
    let (id, _) = a.create_connection(twilio(0)).unwrap();
    b.sync().unwrap();
    let version = b.connection(&acme(), id).unwrap().version;

    lagging.blind.store(true, Ordering::Release);
    a.set_mappings(
        Mappings::of("acme", "orders")
            .by_name("twilio", [("ApiKey", "SMS_KEY")])
            .build()
            .unwrap(),
        None,
    )
    .unwrap();
    let err = b
        .delete_connection(&acme(), id, version, DeleteMode::Refuse)
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Conflict { key: RecordKey::ReferenceFence(p, stripe), .. }
            if p == &acme() && *stripe == NameStripe::of(&"twilio".parse().unwrap())),
        "{err}"
    );

    lagging.blind.store(false, Ordering::Release);
    let err = b
        .delete_connection(&acme(), id, version, DeleteMode::Refuse)
        .unwrap_err();
    match err {
        RegistryError::StillUsed { dependents, .. } => {
            assert_eq!(dependents, vec!["orders".parse::<IntegrationId>().unwrap()])
        }
        other => panic!("expected StillUsed, got {other}"),
    }
    let env = a
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert_eq!(env.expose("SMS_KEY"), Some("key-0"));
}

/// Two registries on one store, the second blind to the feed (a stale
/// replica), with `twilio` created and seen by both.
fn stale_pair() -> (Registry, Registry, Arc<Lagging>, ConnectionId) {
    let shared = Arc::new(MemoryStore::new());
    let a = Registry::builder().shared_store(shared.clone()).build().unwrap();
    let lagging = Arc::new(Lagging {
        store: shared,
        blind: AtomicBool::new(false),
    });
    let b = Registry::builder().shared_store(lagging.clone()).build().unwrap();
    let (id, _) = a.create_connection(twilio(0)).unwrap();
    b.sync().unwrap();
    lagging.blind.store(true, Ordering::Release);
    (a, b, lagging, id)
}

fn map_api_key(registry: &Registry) {
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ApiKey", "SMS_KEY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
}

fn without_api_key() -> ConnectionSpec {
    ConnectionSpec::project("acme", "twilio")
        .target(Target::external("twilio"))
        .param(Param::plain("ServiceURL").default("https://api.twilio.com/0"))
        .build()
        .unwrap()
}

fn fence_conflict(err: &RegistryError, name: &str) -> bool {
    matches!(err, RegistryError::Conflict { key: RecordKey::ReferenceFence(p, stripe), .. }
        if p == &acme() && *stripe == NameStripe::of(&name.parse().unwrap()))
}

/// An update that drops a parameter another replica just mapped conflicts on
/// the name's fence; caught up, it is refused because it would break
/// `orders`' mapping, which keeps resolving.
#[test]
fn a_stale_replica_cannot_drop_a_parameter_another_replica_just_mapped() {
    let (a, b, lagging, id) = stale_pair();
    map_api_key(&a);
    let err = b
        .update_connection(id, Version(1), without_api_key())
        .unwrap_err();
    assert!(fence_conflict(&err, "twilio"), "{err}");
    lagging.blind.store(false, Ordering::Release);
    let err = b
        .update_connection(id, Version(1), without_api_key())
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidMappings { .. }), "{err}");
    let env = a
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert_eq!(env.expose("SMS_KEY"), Some("key-0"));
}

/// A new integration-scope `twilio` without `ApiKey` would shadow the mapped
/// project one for `orders`: from a stale replica it conflicts, then is
/// refused.
#[test]
fn a_stale_replica_cannot_shadow_a_connection_another_replica_just_mapped() {
    let (a, b, lagging, _) = stale_pair();
    map_api_key(&a);
    let shadow = || {
        ConnectionSpec::integration("acme", "orders", "twilio")
            .param(Param::plain("ServiceURL").default("https://own"))
            .build()
            .unwrap()
    };
    let err = b.create_connection(shadow()).unwrap_err();
    assert!(fence_conflict(&err, "twilio"), "{err}");
    lagging.blind.store(false, Ordering::Release);
    let err = b.create_connection(shadow()).unwrap_err();
    assert!(matches!(err, RegistryError::InvalidMappings { .. }), "{err}");
}

/// The reverse order: a mapping validated against a connection another
/// replica has just changed conflicts, and is refused once caught up.
#[test]
fn a_stale_replica_cannot_map_a_parameter_another_replica_just_dropped() {
    let (a, b, lagging, id) = stale_pair();
    a.update_connection(id, Version(1), without_api_key()).unwrap();
    let mapping = || {
        Mappings::of("acme", "orders")
            .by_name("twilio", [("ApiKey", "SMS_KEY")])
            .build()
            .unwrap()
    };
    let err = b.set_mappings(mapping(), None).unwrap_err();
    assert!(fence_conflict(&err, "twilio"), "{err}");
    lagging.blind.store(false, Ordering::Release);
    let err = b.set_mappings(mapping(), None).unwrap_err();
    assert!(matches!(err, RegistryError::InvalidMappings { .. }), "{err}");
}

/// What does not change what a mapping resolves to does not contend with
/// one: a stale replica's value edits of the mapped connection, and its
/// writes about a name of another stripe, commit.
#[test]
fn value_edits_and_writes_about_other_names_do_not_conflict_with_a_mapping() {
    let (a, b, _lagging, id) = stale_pair();
    // A name whose fence is not `twilio`'s.
    let other = (0..)
        .map(|i| format!("crm{i}"))
        .find(|n| NameStripe::of(&n.parse().unwrap()) != NameStripe::of(&"twilio".parse().unwrap()))
        .unwrap();
    map_api_key(&a);
    b.set_value(
        &acme(),
        id,
        Version(1),
        &"ApiKey".parse().unwrap(),
        Layer::Environment("production".parse().unwrap()),
        "key-prod",
    )
    .unwrap();
    b.create_connection(
        ConnectionSpec::project("acme", other.as_str())
            .param(Param::plain("Url").default("https://crm"))
            .build()
            .unwrap(),
    )
    .unwrap();
    a.sync().unwrap();
    let env = a
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert_eq!(env.expose("SMS_KEY"), Some("key-prod"));
}

/// A name's stripe is part of the stored format: replicas of every version
/// must agree on it (FNV-1a, 32 bits, of the name's bytes, modulo 64).
#[test]
fn name_stripes_are_fixed_forever() {
    for (name, stripe) in [("crm", 55), ("twilio", 45), ("a", 44), ("orders-db", 21)] {
        assert_eq!(NameStripe::of(&name.parse().unwrap()).index(), stripe, "{name}");
    }
    let json = serde_json::to_string(&RecordKey::ReferenceFence(
        acme(),
        NameStripe::of(&"crm".parse().unwrap()),
    ))
    .unwrap();
    assert_eq!(json, r#"{"references":["acme",55]}"#);
    assert!(serde_json::from_str::<RecordKey>(r#"{"references":["acme",64]}"#).is_err());
}
