//! Rules 9 and 10 across replicas: two registries on one durable store (two
//! handles on one SQLite file, two connections to one PostgreSQL database)
//! race a mapping write against writes that change what the mapping resolves
//! to. At most one of them commits; the other, once it has caught up, is
//! refused with a typed error; no mapping is ever left dangling.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "test-kit"))]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{PostgresStore, SqliteStore, Store};
use connective::test_kit;

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[7; 32]).expect("key"))
}

/// A small deterministic generator (xorshift64*), seeded per run and printed,
/// so a failing run can be replayed with `CONNECTIVE_RACE_SEED`.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("CONNECTIVE_RACE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        eprintln!("race seed: CONNECTIVE_RACE_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `crm` at project scope with `ServiceURL` and `Key` (or without `Key`).
fn crm(project: &ProjectId, with_key: bool) -> ConnectionSpec {
    let mut spec = ConnectionSpec::project(project.clone(), "crm")
        .param(Param::plain("ServiceURL").default("https://crm.example.com"));
    if with_key {
        spec = spec.param(Param::secret("Key").default("crm-key"));
    }
    spec.build().expect("spec")
}

/// `orders` maps `crm`'s `Key`.
fn orders(project: &ProjectId) -> Mappings {
    Mappings::of(project.clone(), "orders")
        .by_name("crm", [("Key", "CRM_KEY")])
        .build()
        .expect("mappings")
}

/// What the second registry does while the first maps `crm.Key` for `orders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rival {
    /// Updates `crm` to drop `Key`.
    DropKey,
    /// Creates an integration-scope `crm` for `orders` without `Key`, which
    /// would shadow the project's.
    Shadow,
    /// Deletes `crm` (refusing if it is used).
    Delete,
    /// Renames `crm` to `crm-old`.
    Rename,
}

const RIVALS: [Rival; 4] = [Rival::DropKey, Rival::Shadow, Rival::Delete, Rival::Rename];

fn rival(
    registry: &Registry,
    project: &ProjectId,
    id: ConnectionId,
    what: Rival,
) -> Result<(), RegistryError> {
    let version = registry.connection(project, id).map_or(Version(1), |c| c.version);
    match what {
        Rival::DropKey => registry
            .update_connection(id, version, crm(project, false))
            .map(drop),
        Rival::Shadow => registry
            .create_connection(
                ConnectionSpec::integration(project.clone(), "orders", "crm")
                    .param(Param::plain("ServiceURL").default("https://own.example.com"))
                    .build()
                    .expect("spec"),
            )
            .map(drop),
        Rival::Delete => registry
            .delete_connection(project, id, version, DeleteMode::Refuse)
            .map(drop),
        Rival::Rename => {
            let spec = ConnectionSpec::project(project.clone(), "crm-old")
                .param(Param::plain("ServiceURL").default("https://crm.example.com"))
                .param(Param::secret("Key").default("crm-key"))
                .build()
                .expect("spec");
            registry.update_connection(id, version, spec).map(drop)
        }
    }
}

/// The refusal a rival write must get once it sees the mapping.
fn rival_refused(what: Rival, e: &RegistryError) -> bool {
    match what {
        Rival::Delete => matches!(e, RegistryError::StillUsed { .. }),
        Rival::Rename => matches!(
            e,
            RegistryError::StillUsed { .. } | RegistryError::InvalidMappings { .. }
        ),
        Rival::DropKey | Rival::Shadow => matches!(e, RegistryError::InvalidMappings { .. }),
    }
}

#[derive(Debug, Default)]
struct Tally {
    rounds: usize,
    mapping_won: usize,
    rival_won: usize,
    both: usize,
    /// Rounds whose loser had validated before the winner committed (it got
    /// a conflict): the races that mattered.
    raced: usize,
}

/// Races `rounds` rounds between `a` and `b` (each round in a project of its
/// own, so a round cannot be disturbed by an earlier one), then checks every
/// round's project with `fresh`, a registry that loads the store anew.
fn race(a: &Arc<Registry>, b: &Arc<Registry>, fresh: impl Fn() -> Registry, rounds: usize) -> Tally {
    let mut rng = Rng::seeded();
    let mut tally = Tally::default();
    let mut projects = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let project = test_kit::unique_project("race");
        let what = RIVALS[rng.below(RIVALS.len() as u64) as usize];
        // Which side gets a head start, and by how much (µs): the
        // interleavings vary from round to round.
        let (delay_a, delay_b) = match rng.below(3) {
            0 => (0, 0),
            1 => (rng.below(300), 0),
            _ => (0, rng.below(300)),
        };
        let (id, _) = a.create_connection(crm(&project, true)).expect("setup");
        b.sync().expect("b syncs");
        assert!(b.connection(&project, id).is_some(), "b sees the setup");

        let barrier = Barrier::new(2);
        let (mapped, rivalled) = std::thread::scope(|s| {
            let ta = s.spawn(|| {
                barrier.wait();
                std::thread::sleep(Duration::from_micros(delay_a));
                a.set_mappings(orders(&project), None).map(drop)
            });
            let tb = s.spawn(|| {
                barrier.wait();
                std::thread::sleep(Duration::from_micros(delay_b));
                rival(b, &project, id, what)
            });
            (ta.join().expect("a"), tb.join().expect("b"))
        });
        tally.rounds += 1;
        match (&mapped, &rivalled) {
            (Ok(()), Ok(())) => tally.both += 1,
            (Ok(()), Err(e)) => {
                tally.mapping_won += 1;
                // The rival lost or was refused outright; retried after
                // catching up, it is refused with the typed error.
                if e.is_retryable() {
                    tally.raced += 1;
                    let again = rival(b, &project, id, what).expect_err("the rival must be refused on retry");
                    assert!(rival_refused(what, &again), "round {round} ({what:?}): {again}");
                } else {
                    assert!(rival_refused(what, e), "round {round} ({what:?}): {e}");
                }
            }
            (Err(e), Ok(())) => {
                tally.rival_won += 1;
                if e.is_retryable() {
                    tally.raced += 1;
                    let again = a
                        .set_mappings(orders(&project), None)
                        .expect_err("the mapping must be refused on retry");
                    assert!(
                        matches!(again, RegistryError::InvalidMappings { .. }),
                        "round {round} ({what:?}): {again}"
                    );
                } else {
                    assert!(
                        matches!(e, RegistryError::InvalidMappings { .. }),
                        "round {round} ({what:?}): {e}"
                    );
                }
            }
            (Err(ea), Err(eb)) => panic!("round {round} ({what:?}): neither committed: {ea} / {eb}"),
        }
        projects.push((project, what));
    }
    // Every round's outcome, seen by a registry that loads the store anew.
    let fresh = fresh();
    let mut dangling = Vec::new();
    for (project, what) in &projects {
        let request = ResolveRequest::new(
            project.clone(),
            "orders".parse().expect("integration"),
            "production".parse().expect("environment"),
        );
        if let Err(e) = fresh.resolve(&request) {
            dangling.push(format!("{project} ({what:?}): {e}"));
        }
    }
    assert!(
        dangling.is_empty() && tally.both == 0,
        "{tally:?}; {} dangling of {} rounds, e.g. {:?}",
        dangling.len(),
        projects.len(),
        dangling.first()
    );
    tally
}

fn rounds() -> usize {
    std::env::var("CONNECTIVE_RACE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn two_registries_on_one_sqlite_file_never_leave_a_mapping_dangling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("replicas.db");
    let open = || -> Arc<dyn Store> { Arc::new(SqliteStore::open(&path, ring()).expect("open")) };
    let a = Arc::new(Registry::builder().shared_store(open()).build().expect("a"));
    let b = Arc::new(Registry::builder().shared_store(open()).build().expect("b"));
    let start = Instant::now();
    let tally = race(
        &a,
        &b,
        || Registry::builder().shared_store(open()).build().expect("fresh"),
        rounds(),
    );
    eprintln!("sqlite: {tally:?} in {:?}", start.elapsed());
}

#[test]
fn two_registries_on_one_postgres_database_never_leave_a_mapping_dangling() {
    let Some(db) = test_kit::postgres::database("replicas_race") else {
        return;
    };
    let url = db.connection_string();
    let open = || -> Arc<dyn Store> { Arc::new(PostgresStore::connect(&url, ring()).expect("connect")) };
    let a = Arc::new(Registry::builder().shared_store(open()).build().expect("a"));
    let b = Arc::new(Registry::builder().shared_store(open()).build().expect("b"));
    let start = Instant::now();
    let tally = race(
        &a,
        &b,
        || Registry::builder().shared_store(open()).build().expect("fresh"),
        rounds(),
    );
    eprintln!("postgres: {tally:?} in {:?}", start.elapsed());
}
