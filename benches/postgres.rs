//! PostgreSQL figure (issue 4, features `postgres` and `test-kit`): replica
//! propagation, from a commit on replica A to the write being resolvable on
//! replica B, p50 and p99.
//!
//! Two registries on one database, each with its own `PostgresStore`
//! connection; B follows the change feed (`Registry::follow`, woken by
//! `LISTEN/NOTIFY`, polling every 200 ms otherwise). A rewrites one of W's
//! connections (a new `production` value of `ApiKey`); the clock runs from
//! just before A's commit until B resolves W with the new value, and the time
//! of A's own write (commit included) is reported beside it.
//!
//! The server comes from `connective::test_kit::postgres`: the one the `PG*`
//! variables point at, or a throwaway cluster started for this run.
//!
//! ```text
//! cargo bench --features postgres,test-kit --bench postgres
//! CONNECTIVE_BENCH_QUICK=1 cargo bench --features postgres,test-kit --bench postgres
//! ```

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{figure, fmt_ns, median, ns, quantile, quick, w_request};
use connective::model::{AuthScheme, ConnectionName, ConnectionSpec, Param, ProjectId, Target};
use connective::prelude::{Registry, Resolver};
use connective::store::seal::{KeyRing, SealKey};
use connective::test_kit;

fn keys() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("bench", &[7u8; 32]).expect("seal key"))
}

/// `svc00` of W with `ApiKey`'s production value set to `key`.
fn svc00(key: &str) -> ConnectionSpec {
    let c = common::w_connections().into_iter().next().expect("svc00");
    let mut b = ConnectionSpec::project(common::W_PROJECT, c.name.as_str())
        .target(Target::external(c.name.as_str()))
        .auth(AuthScheme::ApiKey);
    for (param, secret, default, prod) in &c.params {
        let mut p = if *secret {
            Param::secret(*param)
        } else {
            Param::plain(*param)
        };
        p = p.default(default.as_str());
        if let Some(prod) = prod {
            p = p.env("production", if *param == "ApiKey" { key } else { prod.as_str() });
        }
        b = b.param(p);
    }
    b.build().expect("spec")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(db) = test_kit::postgres::database("bench_propagation") else {
        println!("# issue 4 figures: PostgreSQL: no server could be had, nothing measured");
        return;
    };
    let a = Registry::builder()
        .store(db.open(keys()).expect("store A"))
        .build()
        .expect("registry A");
    common::fill_store(a.store().as_ref(), common::PER_PROJECT);
    a.sync().expect("sync A");
    common::add_w(&a);
    let b = Arc::new(
        Registry::builder()
            .store(db.open(keys()).expect("store B"))
            .build()
            .expect("registry B"),
    );
    let _follower = b.follow(Duration::from_millis(200));

    let project: ProjectId = common::W_PROJECT.parse().expect("project");
    let name: ConnectionName = "svc00".parse().expect("name");
    let request = w_request();
    let writes = if quick() { 30 } else { 300 };
    let (mut propagation, mut commit) = (Vec::new(), Vec::new());
    for k in 0..writes {
        let c = a
            .snapshot(&project)
            .and_then(|s| s.by_name(None, &name).cloned())
            .expect("svc00");
        let key = format!("live-key-{k}");
        let start = Instant::now();
        a.update_connection(c.value.id(), c.version, svc00(&key))
            .expect("write on A");
        commit.push(ns(start.elapsed()));
        let deadline = start + Duration::from_secs(10);
        loop {
            let seen = b
                .resolve(&request)
                .ok()
                .and_then(|env| env.get("SVC00_APIKEY").map(|v| v.value.expose() == key))
                .unwrap_or(false);
            if seen {
                propagation.push(ns(start.elapsed()));
                break;
            }
            assert!(Instant::now() < deadline, "B did not see write {k} within 10 s");
            std::thread::sleep(Duration::from_micros(100));
        }
        // Let B's follower go back to waiting, as between real writes.
        std::thread::sleep(Duration::from_millis(5));
    }
    let p50 = median(&mut propagation);
    let p99 = quantile(&mut propagation, 0.99);
    let c50 = median(&mut commit);
    println!("# issue 4 figures: PostgreSQL ({writes} writes)");
    figure(
        "PostgreSQL replica propagation (commit on A -> resolvable on B), p50",
        &format!("{} (A's write itself: median {})", fmt_ns(p50), fmt_ns(c50)),
        "<= 20 ms",
        p50 <= 20e6,
    );
    figure(
        "PostgreSQL replica propagation, p99",
        &fmt_ns(p99),
        "<= 200 ms",
        p99 <= 200e6,
    );
}
