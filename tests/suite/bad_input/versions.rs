//! Versions at their limit on a real store: a connection at the last
//! version cannot be written again (a typed error naming it, nothing
//! written), and a stored version that is no version (0, negative, past
//! the last one) refuses the registry's load naming the row, whichever
//! registry reads it.

use std::path::Path;
use std::sync::Arc;

use connective::model::{RecordKey, Scope, Version};
use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{SqliteStore, Store, StoreError};

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[1; 32]).expect("a valid key"))
}

fn spec(name: &str, url: &str) -> ConnectionSpec {
    ConnectionSpec::project("acme", name)
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default(url))
        .param(Param::secret("ApiKey").default("k-123"))
        .build()
        .unwrap()
}

fn key(name: &str) -> RecordKey {
    RecordKey::Connection("acme".parse().unwrap(), Scope::Project, name.parse().unwrap())
}

/// Sets the stored version of `name`'s row (live or deleted) with SQL.
fn set_version(path: &Path, name: &str, version: i64) {
    let raw = rusqlite::Connection::open(path).expect("raw open");
    let key = serde_json::to_string(&key(name)).unwrap();
    let n = raw
        .execute(
            "UPDATE records SET version = ?1 WHERE key = ?2",
            rusqlite::params![version, key],
        )
        .expect("set a version");
    assert_eq!(n, 1, "no row for {key}");
}

fn open(path: &Path) -> Result<(Registry, Arc<dyn Store>), RegistryError> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path, ring()).expect("open"));
    Ok((Registry::builder().store(store.clone()).build()?, store))
}

const LAST: i64 = (1 << 56) - 1;

#[test]
fn a_connection_at_the_last_version_is_refused_by_name_and_nothing_is_written() {
    assert_eq!(Version::MAX, Version(LAST as u64));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let (registry, _) = open(&path).unwrap();
    let (id, _) = registry.create_connection(spec("svc00", "https://a")).unwrap();
    let (gone, _) = registry.create_connection(spec("svc01", "https://b")).unwrap();
    let project: ProjectId = "acme".parse().unwrap();
    registry
        .delete_connection(&project, gone, Version(1), DeleteMode::Refuse)
        .unwrap();
    drop(registry);
    set_version(&path, "svc00", LAST);
    set_version(&path, "svc01", LAST);

    let (registry, store) = open(&path).unwrap();
    let found = registry
        .snapshot(&project)
        .unwrap()
        .connection(id)
        .map(|c| c.version);
    assert_eq!(found, Some(Version::MAX));
    let revision = store.revision().unwrap();
    let message = "connection svc00 (project scope) of project acme is at the last version v72057594037927935 \
                   and cannot be written again";
    // Refused by the registry before the commit: the catalog knows the version.
    let err = registry
        .update_connection(id, Version::MAX, spec("svc00", "https://c"))
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::LastVersion { key: k, version } if *k == key("svc00") && *version == Version::MAX),
        "{err:?}"
    );
    assert_eq!(err.to_string(), message);
    assert!(!err.is_retryable());
    let err = registry
        .delete_connection(&project, id, Version::MAX, DeleteMode::Force)
        .unwrap_err();
    assert_eq!(err.to_string(), message);
    // Refused by the store: the catalog does not know deleted versions.
    let err = registry
        .create_connection(spec("svc01", "https://d"))
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::LastVersion { key: k, .. } if *k == key("svc01")),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "connection svc01 (project scope) of project acme is at the last version v72057594037927935 \
         and cannot be written again"
    );
    assert_eq!(store.revision().unwrap(), revision, "a refused write committed");
    let snapshot = registry.snapshot(&project).unwrap();
    assert_eq!(snapshot.connection_count(), 1);
    let kept = snapshot.connection(id).unwrap();
    assert_eq!(kept.version, Version::MAX);
    // Another connection of the project is still written as usual.
    registry.create_connection(spec("svc02", "https://e")).unwrap();
}

#[test]
fn a_stored_version_that_is_no_version_refuses_the_load_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let (registry, _) = open(&path).unwrap();
    registry.create_connection(spec("svc00", "https://a")).unwrap();
    drop(registry);
    for bad in [0, -1, LAST + 1, i64::MAX] {
        set_version(&path, "svc00", bad);
        let err = open(&path).map(drop).unwrap_err();
        assert!(
            matches!(&err, RegistryError::Store(StoreError::Unreadable { what, .. }) if *what == key("svc00").to_string()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "sqlite store cannot read connection svc00 (project scope) of project acme: its stored version {bad} \
                 is not a version (versions run from 1 to 72057594037927935)"
            )
        );
    }
    set_version(&path, "svc00", 1);
    let (registry, _) = open(&path).unwrap();
    assert_eq!(
        registry
            .snapshot(&"acme".parse().unwrap())
            .unwrap()
            .connection_count(),
        1
    );
}

/// Two registries on one SQLite file race the write that takes a connection
/// to its last version: exactly one commits it, the other gets a conflict;
/// after that every write of it, from either registry, is refused by name
/// and commits nothing.
#[test]
fn two_registries_racing_to_the_last_version_commit_it_once_and_then_neither_writes() {
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let (registry, _) = open(&path).unwrap();
    for round in 0..ROUNDS {
        registry
            .create_connection(spec(&format!("svc{round:02}"), "https://a"))
            .unwrap();
    }
    drop(registry);
    for round in 0..ROUNDS {
        set_version(&path, &format!("svc{round:02}"), LAST - 1);
    }
    let (a, store) = open(&path).unwrap();
    let (b, _) = open(&path).unwrap();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let project: ProjectId = "acme".parse().unwrap();
    let before_last = Version(LAST as u64 - 1);
    for round in 0..ROUNDS {
        let name = format!("svc{round:02}");
        let id = a
            .snapshot(&project)
            .unwrap()
            .by_name(None, &name.parse().unwrap())
            .unwrap()
            .value
            .id();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let outcomes: Vec<_> = [&a, &b]
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let (r, barrier, name) = (Arc::clone(r), Arc::clone(&barrier), name.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    r.update_connection(id, before_last, spec(&name, &format!("https://{i}")))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Err(RegistryError::Conflict { .. }))),
            "round {round}: {outcomes:?}"
        );
        let revision = store.revision().unwrap();
        for r in [&a, &b] {
            r.sync().unwrap();
            let err = r
                .update_connection(id, Version::MAX, spec(&name, "https://z"))
                .unwrap_err();
            assert!(
                matches!(&err, RegistryError::LastVersion { key: k, version } if *k == key(&name) && *version == Version::MAX),
                "round {round}: {err:?}"
            );
        }
        assert_eq!(
            store.revision().unwrap(),
            revision,
            "round {round}: a refused write committed"
        );
    }
}
