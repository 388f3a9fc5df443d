//! Rules 9 and 10 across replicas: two registries on one durable store (two
//! handles on one SQLite file, two connections to one PostgreSQL database)
//! race a mapping write against writes that change what the mapping resolves
//! to. At most one of them commits; the other, once it has caught up, is
//! refused with a typed error; no mapping is ever left dangling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use connective::model::{OAuthApp, Revision, SecretValue};
use connective::oauth::{OAuthCredentials, OAuthProvisioner, ProvisionError, ProvisionRequest};
use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{PostgresStore, SqliteStore, Store};
use connective::test_kit;

use crate::support::pg_wire::upstream_and_proxied;

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

/// Two registries, each on its own handle from `open`, race; a third one
/// checks the outcome.
fn race_on(backend: &str, open: impl Fn() -> Arc<dyn Store>) {
    let registry = || {
        Registry::builder()
            .shared_store(open())
            .build()
            .expect("registry")
    };
    let (a, b) = (Arc::new(registry()), Arc::new(registry()));
    let start = Instant::now();
    let tally = race(&a, &b, registry, rounds());
    eprintln!("{backend}: {tally:?} in {:?}", start.elapsed());
}

#[test]
fn two_registries_on_one_sqlite_file_never_leave_a_mapping_dangling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("replicas.db");
    race_on("sqlite", || {
        Arc::new(SqliteStore::open(&path, ring()).expect("open"))
    });
}

#[test]
fn two_registries_on_one_postgres_database_never_leave_a_mapping_dangling() {
    let Some(db) = test_kit::postgres::database("replicas_race") else {
        return;
    };
    let url = db.connection_string();
    race_on("postgres", || {
        Arc::new(PostgresStore::connect(&url, ring()).expect("connect"))
    });
}

// ---------------------------------------------------------------------------
// A commit whose answer is lost, on a real PostgreSQL server
// ---------------------------------------------------------------------------

mod proxy {
    //! A TCP proxy between a store and PostgreSQL that, once armed, breaks
    //! the connection of the first transaction carrying a marker: either
    //! after passing its `COMMIT` on (the server commits, the answer is lost)
    //! or instead of passing it on (the server rolls back).

    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use crate::support::pg_wire::{Stream, Upstream};

    /// What the proxy does to the marked transaction's `COMMIT`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// Passes it on, then drops the connection before the answer.
        LoseAnswer,
        /// Drops the connection instead of passing it on.
        LoseCommit,
    }

    /// The simple-protocol `COMMIT` the `postgres` client sends.
    const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    struct Armed {
        fault: Option<Fault>,
        marker: Vec<u8>,
    }

    pub struct Proxy {
        port: u16,
        armed: Arc<Mutex<Armed>>,
        fired: Arc<AtomicUsize>,
    }

    impl Proxy {
        pub fn start(upstream: Upstream) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let armed = Arc::new(Mutex::new(Armed {
                fault: None,
                marker: Vec::new(),
            }));
            let fired = Arc::new(AtomicUsize::new(0));
            let (a, f) = (armed.clone(), fired.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    let Ok(server) = Stream::connect(&upstream) else {
                        continue;
                    };
                    let (a, f) = (a.clone(), f.clone());
                    std::thread::spawn(move || pump(client, server, a, f));
                }
            });
            Proxy { port, armed, fired }
        }

        pub fn port(&self) -> u16 {
            self.port
        }

        /// Breaks the first transaction whose traffic contains `marker`.
        pub fn arm(&self, fault: Fault, marker: &str) {
            let mut armed = self.armed.lock().expect("lock");
            armed.fault = Some(fault);
            armed.marker = marker.as_bytes().to_vec();
        }

        /// How many transactions it broke.
        pub fn fired(&self) -> usize {
            self.fired.load(Ordering::SeqCst)
        }
    }

    fn pump(client: TcpStream, server: Stream, armed: Arc<Mutex<Armed>>, fired: Arc<AtomicUsize>) {
        let (Ok(mut client_in), Ok(mut server_in)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        let (client_out, mut server_out) = (client, server);
        // Server to client, until the answer is to be lost.
        let mute = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicBool::new(false));
        let (m, ans) = (mute.clone(), answered.clone());
        let Ok(mut to_client) = client_out.try_clone() else {
            return;
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match server_in.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if m.load(Ordering::SeqCst) => {
                        let _ = n;
                        ans.store(true, Ordering::SeqCst);
                    }
                    Ok(n) => {
                        if to_client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to_client.shutdown(Shutdown::Write);
        });
        // Client to server, watching for the marked transaction's COMMIT.
        let mut buf = [0u8; 16 * 1024];
        let mut window: Vec<u8> = Vec::new();
        let mut marked = false;
        loop {
            let n = match client_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            window.extend_from_slice(chunk);
            let fault = {
                let mut state = armed.lock().expect("lock");
                if state.fault.is_some() && !marked && contains(&window, &state.marker) {
                    marked = true;
                }
                if marked && contains(&window, COMMIT) {
                    state.fault.take()
                } else {
                    None
                }
            };
            match fault {
                None => {
                    if server_out.write_all(chunk).is_err() {
                        break;
                    }
                }
                Some(fault) => {
                    fired.fetch_add(1, Ordering::SeqCst);
                    if fault == Fault::LoseAnswer {
                        mute.store(true, Ordering::SeqCst);
                        let _ = server_out.write_all(chunk);
                        // Wait for the server's answer (so it has committed).
                        let start = Instant::now();
                        while !answered.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    let _ = client_out.shutdown(Shutdown::Both);
                    server_out.shutdown(Shutdown::Write);
                    return;
                }
            }
            // Keep enough to find a marker or COMMIT split across reads.
            let keep = window.len().saturating_sub(256);
            window.drain(..keep);
        }
        let _ = client_out.shutdown(Shutdown::Both);
        server_out.shutdown(Shutdown::Write);
    }
}

/// A provisioner that counts what it is asked.
#[derive(Clone, Default)]
struct Counting(Arc<Counts>);

#[derive(Default)]
struct Counts {
    provisioned: AtomicUsize,
    released: AtomicUsize,
}

impl Counting {
    fn counts(&self) -> (usize, usize) {
        (
            self.0.provisioned.load(Ordering::SeqCst),
            self.0.released.load(Ordering::SeqCst),
        )
    }
}

impl OAuthProvisioner for Counting {
    fn provision(&self, _request: &ProvisionRequest) -> Result<OAuthCredentials, ProvisionError> {
        let n = self.0.provisioned.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(OAuthCredentials {
            client_id: format!("client-{n}"),
            client_secret: SecretValue::new(format!("secret-{n}")),
            token_url: "https://idp.example.com/token".into(),
        })
    }
    fn rotate(&self, _app: &OAuthApp) -> Result<SecretValue, ProvisionError> {
        Ok(SecretValue::new("rotated"))
    }
    fn release(&self, _app: &OAuthApp) -> Result<(), ProvisionError> {
        self.0.released.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Creates an OAuth connection through a proxy that breaks its commit with
/// `fault`; returns the provisioner's counts and what a registry connected
/// directly sees afterwards.
fn create_through_a_broken_commit(fault: proxy::Fault) {
    let Some(db) = test_kit::postgres::database("lost_commit") else {
        return;
    };
    let (upstream, proxied) = upstream_and_proxied(&db);
    let proxy = proxy::Proxy::start(upstream);
    let counting = Counting::default();
    let store = PostgresStore::connect(&proxied(proxy.port()), ring()).expect("connect through the proxy");
    let registry = Registry::builder()
        .store(store)
        .provisioner(counting.clone())
        .build()
        .expect("registry");
    let project = test_kit::unique_project("lost");
    let marker = format!("https://marker-{}.example", project.as_str());
    let spec = ConnectionSpec::project(project.clone(), "inventory")
        .platform_target(project.clone(), "inventory-api")
        .auth(AuthScheme::OAuth2(OAuthClient::Shared))
        .param(Param::plain("ServiceURL").default(marker.clone()))
        .build()
        .expect("spec");
    proxy.arm(fault, &marker);
    let created = registry.create_connection(spec);
    assert_eq!(proxy.fired(), 1, "the proxy broke the commit");
    let (id, _) = created.unwrap_or_else(|e| panic!("{fault:?}: the write must succeed once looked up: {e}"));
    assert_eq!(
        counting.counts(),
        (1, 0),
        "{fault:?}: one application, provisioned once, never released"
    );
    // A registry connected directly sees the connection using it.
    let direct = Registry::builder()
        .store(db.open(ring()).expect("connect directly"))
        .build()
        .expect("registry");
    let info = direct
        .oauth_app(&project, &AppOwner::Project)
        .expect("the application is stored");
    assert_eq!(info.users, vec![id]);
    assert_eq!(info.app.value.client_id(), "client-1");
    assert_eq!(
        direct.catalog().revision(),
        Revision(1),
        "{fault:?}: committed exactly once"
    );
}

/// The connection drops after the server received COMMIT: the commit applied
/// but its answer is lost. The registry looks it up instead of releasing the
/// application it provisioned.
#[test]
fn postgres_commit_whose_answer_is_lost_keeps_its_application() {
    create_through_a_broken_commit(proxy::Fault::LoseAnswer);
}

/// The connection drops before the server received COMMIT: the server rolls
/// back; the registry finds the batch was not applied and commits it again,
/// with the application it already provisioned.
#[test]
fn postgres_commit_lost_before_the_server_got_it_is_committed_again() {
    create_through_a_broken_commit(proxy::Fault::LoseCommit);
}
