//! What a resolution costs: it shares the values the snapshot holds instead
//! of copying them, and a registry hands out the answer it kept for a
//! repeated request until a write changes what the answer read.

use std::sync::Arc;

use connective::fixture::Fixture;
use connective::model::{
    ConnectionId, ConnectionSpec, IntegrationId, Layer, Mappings, Param, ProjectId, Version,
};
use connective::prelude::{Registry, Resolver};
use connective::registry::DeleteMode;
use connective::resolve::{ResolveError, ResolveRequest, ResolvedEnv, ResolvedValueRef};
use connective::store::{MemoryStore, Store};
use proptest::prelude::*;

const LONG_URL: &str = "https://crm.eu-west-1.example.com/api/v2/orders";

fn fixture() -> Fixture {
    Fixture::project("acme")
        .connection("crm", |c| {
            c.param(Param::plain("ServiceURL").default(LONG_URL))
                .param(Param::secret("ApiKey").default("sk_live_0123456789abcdef0123456789"))
        })
        .mappings("orders", |m| {
            m.by_name("crm", [("ServiceURL", "CRM_URL"), ("ApiKey", "CRM_KEY")])
        })
        .build()
        .unwrap()
}

/// Another registry on `store`, keeping at most `memo` answers (0: none).
fn registry_on(store: &Arc<dyn Store>, memo: usize) -> Registry {
    Registry::builder()
        .shared_store(store.clone())
        .resolve_memo(memo)
        .build()
        .unwrap()
}

#[test]
fn two_resolutions_share_every_value_instead_of_copying_it() {
    let fx = fixture();
    // Straight through the catalog: nothing memoized, two resolutions.
    let catalog = fx.registry().catalog();
    let request = ResolveRequest::parse("acme", "orders", "production").unwrap();
    let (a, b) = (
        catalog.resolve(&request).unwrap(),
        catalog.resolve(&request).unwrap(),
    );
    assert!(!a.shares_answer_with(&b), "two resolutions, two answers");
    match (
        a.get("CRM_URL").unwrap().value(),
        b.get("CRM_URL").unwrap().value(),
    ) {
        (ResolvedValueRef::Plain(x), ResolvedValueRef::Plain(y)) => {
            assert_eq!(x, LONG_URL);
            assert!(
                x.shares_text_with(y),
                "the plain value is the snapshot's, not a copy"
            );
        }
        other => panic!("plain values expected, got {other:?}"),
    }
    match (
        a.get("CRM_KEY").unwrap().value(),
        b.get("CRM_KEY").unwrap().value(),
    ) {
        (ResolvedValueRef::Secret(x), ResolvedValueRef::Secret(y)) => {
            assert!(
                x.shares_secret_with(y),
                "the secret is the snapshot's, not a copy"
            );
        }
        other => panic!("secret values expected, got {other:?}"),
    }
    // Still redacted, still exposed on request.
    assert!(!format!("{a} {a:?}").contains("sk_live_0123456789abcdef"));
    assert_eq!(a.expose("CRM_KEY"), Some("sk_live_0123456789abcdef0123456789"));
}

// ---------------------------------------------------------------------------
// Memoized resolution.

fn request(integration: &str, environment: &str, customer: Option<&str>) -> ResolveRequest {
    let r = ResolveRequest::parse("acme", integration, environment).unwrap();
    match customer {
        Some(c) => r.for_customer(c).unwrap(),
        None => r,
    }
}

/// Sets the fixture's `crm` connection's default `ServiceURL` (`CRM_URL`).
fn set_crm_url(fx: &Fixture, url: &str) {
    set_crm_url_on(fx.registry(), fx, url);
}

#[test]
fn a_repeated_resolution_hands_out_the_kept_answer_until_a_write_changes_it() {
    let fx = fixture();
    let registry = fx.registry();
    let req = request("orders", "production", None);
    let first = registry.resolve(&req).unwrap();
    let again = registry.resolve(&req).unwrap();
    assert!(
        again.shares_answer_with(&first),
        "the second resolution is the kept answer"
    );
    assert_eq!(registry.resolve_memo_stats().hits, 1);
    // A write to what the answer read: the next resolution sees it.
    set_crm_url(&fx, "https://crm.example.com/new");
    let after = registry.resolve(&req).unwrap();
    assert!(!after.shares_answer_with(&first));
    assert_eq!(after.expose("CRM_URL"), Some("https://crm.example.com/new"));
    assert!(after.revision() > first.revision());
}

#[test]
fn a_write_the_answer_did_not_read_carries_it_over_to_the_new_snapshot() {
    let fx = fixture();
    let registry = fx.registry();
    let req = request("orders", "production", None);
    let first = registry.resolve(&req).unwrap();
    // Another connection, another integration's mappings: nothing the
    // answer read.
    registry
        .create_connection(
            ConnectionSpec::project("acme", "erp")
                .param(Param::plain("ServiceURL").default("https://erp.example"))
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "billing")
                .by_name("erp", [("ServiceURL", "ERP_URL")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let after = registry.resolve(&req).unwrap();
    assert!(after.shares_answer_with(&first), "carried over, not recomputed");
    assert!(
        after.revision() > first.revision(),
        "at the new snapshot's revision"
    );
    let stats = registry.resolve_memo_stats();
    assert_eq!((stats.carried_over, stats.misses), (1, 1), "{stats:?}");
    // A new integration-scope connection of the same name shadows the
    // project's (rule 2): the answer read that name, so it is resolved again.
    registry
        .create_connection(
            ConnectionSpec::integration("acme", "orders", "crm")
                .param(Param::plain("ServiceURL").default("https://own.example"))
                .param(Param::secret("ApiKey").default("sk_own"))
                .build()
                .unwrap(),
        )
        .unwrap();
    let shadowed = registry.resolve(&req).unwrap();
    assert_eq!(shadowed.expose("CRM_URL"), Some("https://own.example"));
    assert!(!shadowed.shares_answer_with(&first));
}

/// The number a `CRM_URL` written by the test below ends in (0 for the
/// fixture's own).
fn written(env: &ResolvedEnv) -> u64 {
    let url = env.expose("CRM_URL").expect("CRM_URL");
    if url == LONG_URL {
        return 0;
    }
    url.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a written URL")
}

#[test]
fn threads_hitting_the_memo_never_see_an_answer_older_than_a_returned_write() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let fx = fixture();
    let registry = fx.registry();
    let req = request("orders", "production", None);
    // The last write that has returned, and whether the writer is done.
    let committed = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let writes = 200;
    let seen: Vec<u64> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut last = 0;
                    let mut resolutions = 0;
                    while !done.load(Ordering::Acquire) || resolutions == 0 {
                        let before = committed.load(Ordering::Acquire);
                        let got = written(&registry.resolve(&req).unwrap());
                        assert!(got >= before, "write {before} had returned, the answer was {got}");
                        assert!(got >= last, "the answer went back from {last} to {got}");
                        last = got;
                        resolutions += 1;
                    }
                    resolutions
                })
            })
            .collect();
        for k in 1..=writes {
            set_crm_url(&fx, &format!("https://crm.example.com/{k}"));
            committed.store(k, Ordering::Release);
            assert_eq!(written(&registry.resolve(&req).unwrap()), k);
            // Let the readers hit the answer kept for this write a while.
            for _ in 0..50 {
                std::hint::spin_loop();
            }
        }
        done.store(true, Ordering::Release);
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(written(&registry.resolve(&req).unwrap()), writes);
    let stats = registry.resolve_memo_stats();
    assert!(
        stats.hits > 0,
        "the readers hit the memo: {stats:?} ({seen:?} resolutions)"
    );
    assert!(stats.misses > writes / 2, "the writes were seen: {stats:?}");
}

#[test]
fn the_memo_keeps_at_most_its_capacity_and_zero_turns_it_off() {
    let fx = fixture();
    let registry = registry_on(fx.registry().store(), 2);
    for c in 0..5 {
        let customer = format!("customer{c}");
        registry
            .resolve(&request("orders", "production", Some(customer.as_str())))
            .unwrap();
    }
    let stats = registry.resolve_memo_stats();
    assert_eq!(
        (stats.entries, stats.capacity, stats.evictions),
        (2, 2, 3),
        "{stats:?}"
    );
    let off = registry_on(fx.registry().store(), 0);
    let req = request("orders", "production", None);
    let (a, b) = (off.resolve(&req).unwrap(), off.resolve(&req).unwrap());
    assert!(!a.shares_answer_with(&b));
    assert_eq!(off.resolve_memo_stats().entries, 0);
}

/// Sets `crm`'s default `ServiceURL` through `registry`.
fn set_crm_url_on(registry: &Registry, fx: &Fixture, url: &str) {
    let id = fx.id("crm", None).unwrap();
    let version = registry.connection(fx.project_id(), id).unwrap().version;
    registry
        .set_value(
            fx.project_id(),
            id,
            version,
            &"ServiceURL".parse().unwrap(),
            Layer::Default,
            url,
        )
        .unwrap();
}

#[test]
fn a_replaced_snapshot_lives_exactly_as_long_as_an_answer_keeps_it() {
    let fx = fixture();
    // Without a memo, answers keep their snapshot by a stripe per thread.
    let registry = registry_on(fx.registry().store(), 0);
    let req = request("orders", "production", None);
    let project = fx.project_id();
    for round in 0..2 {
        let first = registry.snapshot(project).unwrap();
        let replaced = Arc::downgrade(&first);
        drop(first);
        // Answers on two threads, so on two stripes (the second thread's
        // answer outlives it).
        let here = registry.resolve(&req).unwrap();
        let there = std::thread::scope(|s| s.spawn(|| registry.resolve(&req).unwrap()).join().unwrap());
        let url = format!("https://crm.example.com/{round}");
        if round == 0 {
            // Written through this registry.
            set_crm_url_on(&registry, &fx, &url);
        } else {
            // Written through another, and read back by this one.
            fx.registry().sync().unwrap();
            set_crm_url_on(fx.registry(), &fx, &url);
            registry.sync().unwrap();
        }
        // Before any resolution on the new snapshot: the registry let go
        // of the old one when it installed the new.
        assert!(replaced.upgrade().is_some(), "round {round}: kept by two answers");
        assert_eq!(here.expose("CRM_URL"), there.expose("CRM_URL"));
        drop(here);
        assert!(replaced.upgrade().is_some(), "round {round}: kept by one answer");
        drop(there);
        assert!(
            replaced.upgrade().is_none(),
            "round {round}: kept by no answer, so gone"
        );
        assert_eq!(
            registry.resolve(&req).unwrap().expose("CRM_URL"),
            Some(url.as_str())
        );
    }
}

#[test]
fn explain_agrees_with_a_memoized_answer() {
    let fx = fixture();
    let registry = fx.registry();
    let req = request("orders", "production", None);
    registry.resolve(&req).unwrap();
    let kept = registry.resolve(&req).unwrap();
    let why = registry.explain(&req, "CRM_URL").unwrap().unwrap();
    assert_eq!(why.provenance, kept.provenance("CRM_URL").unwrap().clone());
    assert_eq!(why.value.expose(), kept.expose("CRM_URL").unwrap());
}

// The property: on any sequence of writes, through this registry or another
// one on the same store, a memoized resolution answers what a fresh one
// does (values and provenance), and after a write never the old answer.

const NAMES: [&str; 3] = ["crm", "erp", "sms"];
const INTEGRATIONS: [&str; 2] = ["orders", "billing"];

#[derive(Debug, Clone)]
enum Op {
    /// Create or replace connection `name` in a scope (`None`: project).
    Put {
        scope: Option<usize>,
        name: usize,
        value: u8,
        by: usize,
    },
    /// Delete it (forced).
    Delete {
        scope: Option<usize>,
        name: usize,
        by: usize,
    },
    /// Set an integration's mappings: each use by name or by the ID of the
    /// connection of that name in some scope, with explicit entries or
    /// defaults.
    Map {
        integration: usize,
        uses: Vec<(usize, bool, bool)>,
        by: usize,
    },
    /// Resolve now (so answers are kept between writes).
    Resolve,
}

fn gen_op() -> impl Strategy<Value = Op> {
    let scope = prop::option::of(0..INTEGRATIONS.len());
    prop_oneof![
        4 => (scope.clone(), 0..NAMES.len(), any::<u8>(), 0..2usize)
            .prop_map(|(scope, name, value, by)| Op::Put { scope, name, value, by }),
        1 => (scope, 0..NAMES.len(), 0..2usize).prop_map(|(scope, name, by)| Op::Delete { scope, name, by }),
        3 => (
            0..INTEGRATIONS.len(),
            prop::collection::vec((0..NAMES.len(), any::<bool>(), any::<bool>()), 0..3),
            0..2usize
        )
            .prop_map(|(integration, uses, by)| Op::Map { integration, uses, by }),
        2 => Just(Op::Resolve),
    ]
}

fn spec(scope: Option<usize>, name: usize, value: u8) -> ConnectionSpec {
    let b = match scope {
        None => ConnectionSpec::project("acme", NAMES[name]),
        Some(i) => ConnectionSpec::integration("acme", INTEGRATIONS[i], NAMES[name]),
    };
    let tag = format!(
        "{}-{}-{value}",
        scope.map_or("p".to_string(), |i| i.to_string()),
        NAMES[name]
    );
    b.param(
        Param::plain("Url")
            .default(format!("https://{tag}.example.com/default/long/enough/to/share"))
            .env("production", format!("https://{tag}.example.com/production")),
    )
    .param(
        Param::secret("Key")
            .default(format!("sk-{tag}"))
            .customer("globex", format!("sk-globex-{tag}")),
    )
    .build()
    .unwrap()
}

fn find(registry: &Registry, scope: Option<usize>, name: usize) -> Option<(ConnectionId, Version)> {
    let project: ProjectId = "acme".parse().unwrap();
    let snapshot = registry.snapshot(&project)?;
    let integration = scope.map(|i| INTEGRATIONS[i].parse::<IntegrationId>().unwrap());
    snapshot
        .by_name(integration.as_ref(), &NAMES[name].parse().unwrap())
        .map(|c| (c.value.id(), c.version))
}

fn apply(registries: &[Registry; 2], op: &Op) {
    let project: ProjectId = "acme".parse().unwrap();
    match op {
        Op::Put {
            scope,
            name,
            value,
            by,
        } => {
            let r = &registries[*by];
            let _ = r.sync();
            let _ = match find(r, *scope, *name) {
                Some((id, version)) => r
                    .update_connection(id, version, spec(*scope, *name, *value))
                    .map(|_| ()),
                None => r.create_connection(spec(*scope, *name, *value)).map(|_| ()),
            };
        }
        Op::Delete { scope, name, by } => {
            let r = &registries[*by];
            let _ = r.sync();
            if let Some((id, version)) = find(r, *scope, *name) {
                let _ = r.delete_connection(&project, id, version, DeleteMode::Force);
            }
        }
        Op::Map {
            integration,
            uses,
            by,
        } => {
            let r = &registries[*by];
            let _ = r.sync();
            let mut m = Mappings::of("acme", INTEGRATIONS[*integration]);
            for (k, (name, by_id, defaults)) in uses.iter().enumerate() {
                let entries = [("Url", format!("URL_{k}")), ("Key", format!("KEY_{k}"))];
                let id = by_id
                    .then(|| find(r, Some(*integration), *name).or_else(|| find(r, None, *name)))
                    .flatten();
                m = match (id, defaults) {
                    (Some((id, _)), true) => m.by_id_defaults(id),
                    (Some((id, _)), false) => m.by_id(id, entries),
                    (None, true) => m.by_name_defaults(NAMES[*name]),
                    (None, false) => m.by_name(NAMES[*name], entries),
                };
            }
            if let Ok(m) = m.build() {
                let expected = r
                    .mappings(&project, &INTEGRATIONS[*integration].parse().unwrap())
                    .map(|m| m.version);
                let _ = r.set_mappings(m, expected);
            }
        }
        Op::Resolve => {}
    }
}

/// What an answer says: every variable's name, value and provenance, or the
/// problems.
fn said(answer: &Result<ResolvedEnv, ResolveError>) -> String {
    match answer {
        Ok(env) => env
            .iter()
            .map(|v| format!("{}={} [{:?}]", v.name(), v.value().expose(), v.provenance()))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error: {:?}", e.problems),
    }
}

fn check_memo_agrees(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let registry = || registry_on(&store, 64);
    let registries = [registry(), registry()];
    // Without a memo: first resolutions only, their snapshots kept by
    // stripes; it writes nothing and follows the other two.
    let unmemoized = registry_on(&store, 0);
    let requests: Vec<ResolveRequest> = INTEGRATIONS
        .iter()
        .flat_map(|i| {
            ["production", "development"]
                .into_iter()
                .flat_map(move |e| [None, Some("globex")].into_iter().map(move |c| request(i, e, c)))
        })
        .collect();
    for op in &ops {
        apply(&registries, op);
        for r in registries.iter().chain([&unmemoized]) {
            r.sync().unwrap();
            for req in &requests {
                let memoized = r.resolve(req);
                let fresh = r.catalog().resolve(req);
                prop_assert_eq!(said(&memoized), said(&fresh), "after {:?}, {}", op, req);
                if let (Ok(a), Ok(b)) = (&memoized, &fresh) {
                    prop_assert_eq!(a.revision(), b.revision(), "after {:?}, {}", op, req);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    // A failure is kept next to this file (`resolve_cost.proptest-regressions`),
    // like the other property tests', and replayed first on the next run.
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("CI").is_some() { 64 } else { 32 },
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn memoized_and_fresh_resolution_agree_on_every_write_sequence(ops in prop::collection::vec(gen_op(), 1..30)) {
        check_memo_agrees(ops)?;
    }
}

/// A host's cache of external secrets whose value changes without a write.
struct Rotating {
    value: std::sync::Mutex<String>,
    generation: std::sync::atomic::AtomicU64,
}

impl connective::model::ExternalSecrets for Rotating {
    fn lookup(
        &self,
        _: &connective::model::ExternalRef,
    ) -> Result<connective::model::ExternalValue, connective::model::ExternalFault> {
        Ok(connective::model::ExternalValue {
            value: connective::model::SecretValue::new(self.value.lock().unwrap().clone()),
            fetch: Arc::new(connective::model::FetchInfo::new(
                None,
                connective::model::Timestamp(1_700_000_000),
            )),
        })
    }
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn an_answer_holding_an_external_secret_is_not_kept_so_rotation_shows_at_once() {
    let cache = Arc::new(Rotating {
        value: std::sync::Mutex::new("pw-1".into()),
        generation: 0.into(),
    });
    let registry = Registry::builder()
        .policy(connective::model::ResolvePolicy::default().with_external_secrets(cache.clone()))
        .build()
        .unwrap();
    registry
        .create_connection(
            ConnectionSpec::project("acme", "crm")
                .param(Param::plain("ServiceURL").default(LONG_URL))
                .param(Param::secret("Password").default_ref("vault:secret/crm#password"))
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("crm", [("ServiceURL", "CRM_URL"), ("Password", "CRM_PASSWORD")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let req = request("orders", "production", None);
    assert_eq!(
        registry.resolve(&req).unwrap().expose("CRM_PASSWORD"),
        Some("pw-1")
    );
    *cache.value.lock().unwrap() = "pw-2".into();
    cache.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        registry.resolve(&req).unwrap().expose("CRM_PASSWORD"),
        Some("pw-2")
    );
    let stats = registry.resolve_memo_stats();
    // Kept: only that the request reads external values (no answer).
    assert_eq!((stats.hits, stats.misses, stats.entries), (0, 2, 1), "{stats:?}");
}
