//! Two host replicas on one PostgreSQL database: a write on one is resolved by
//! the other, which follows the change feed (woken by LISTEN/NOTIFY).
//!
//! ```text
//! cargo run --example postgres --features postgres,test-kit
//! ```
//!
//! With no `PG*` variables and no connection string, it starts the throwaway
//! PostgreSQL server the tests use (`test_kit::postgres`: `initdb` and `pg_ctl`
//! from `/usr/lib/postgresql/*/bin` or `PATH`, a free loopback port, deleted
//! when the program ends). To use your own server, set the standard libpq
//! variables or pass a connection string (the user needs to create tables;
//! they are named `connective_*`):
//!
//! ```text
//! PGHOST=localhost PGPORT=5432 PGUSER=app PGPASSWORD=... PGDATABASE=connections \
//!     cargo run --example postgres --features postgres,test-kit
//! cargo run --example postgres --features postgres,test-kit -- "host=localhost user=app dbname=connections"
//! cargo run --example postgres --features postgres,test-kit -- postgresql://app@localhost/connections
//! ```
//!
//! Secrets are sealed with the base64 key in `CONNECTIVE_SEAL_KEY` (32 bytes;
//! key ID from `CONNECTIVE_SEAL_KEY_ID`, default `main`), or with a fixed,
//! public demo key when it is unset: never keep real secrets under that one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connective::prelude::*;
use connective::store::PostgresStore;
use connective::store::seal::{KeyRing, SealKey};

fn main() {
    let mut params = std::env::args().nth(1).unwrap_or_default();
    let configured = !params.is_empty()
        || ["PGHOST", "PGPORT", "PGDATABASE", "PGUSER"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
    // Kept until the end: dropping it drops the database.
    let mut _throwaway = None;
    if !configured {
        match connective::test_kit::postgres::try_database("example") {
            Ok(db) => {
                println!(
                    "no PG* variables or connection string given: started a throwaway PostgreSQL server \
                     (deleted when this program ends)"
                );
                params = db.connection_string();
                _throwaway = Some(db);
            }
            Err(reason) => {
                eprintln!(
                    "cannot start a throwaway PostgreSQL server: {reason}\n\
                     Point the example at a server instead: set PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE, \
                     or pass a connection string, e.g.\n  \
                     cargo run --example postgres --features postgres,test-kit -- \"host=localhost user=app dbname=connections\""
                );
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = run(&params) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn key_ring() -> Result<KeyRing, Box<dyn std::error::Error>> {
    let key = match std::env::var("CONNECTIVE_SEAL_KEY") {
        Ok(text) => {
            let id = std::env::var("CONNECTIVE_SEAL_KEY_ID").unwrap_or_else(|_| "main".into());
            SealKey::from_base64(id, &text)?
        }
        Err(_) => {
            eprintln!("note: CONNECTIVE_SEAL_KEY is not set; sealing with the public demo key");
            SealKey::from_bytes("demo-not-secret", &[0x42; 32])?
        }
    };
    Ok(KeyRing::new(key))
}

fn replica(params: &str) -> Result<Arc<Registry>, Box<dyn std::error::Error>> {
    let store = PostgresStore::connect(params, key_ring()?)?;
    println!("replica connected to {}", store.server());
    Ok(Arc::new(Registry::builder().store(store).build()?))
}

fn run(params: &str) -> Result<(), Box<dyn std::error::Error>> {
    let a = replica(params)?;
    let b = replica(params)?;
    // b follows the feed in the background: LISTEN/NOTIFY wakes it at once;
    // the 500 ms is its longest wait (and how long stopping it can take).
    let _follower = b.follow(Duration::from_millis(500));

    // A project of its own per run, so the example can run again and again.
    let run = ConnectionId::random().to_string();
    let project = format!("example-{}", &run[..8]);
    a.create_connection(
        ConnectionSpec::project(project.as_str(), "crm")
            .target(Target::external("crm"))
            .auth(AuthScheme::ApiKey)
            .param(Param::plain("ServiceURL").default("https://crm.example.com"))
            .param(Param::secret("ApiKey").default("crm-demo-key"))
            .build()?,
    )?;
    let written = Instant::now();
    let report = a.set_mappings(
        Mappings::of(project.as_str(), "orders")
            .by_name("crm", [("ServiceURL", "CRM_URL"), ("ApiKey", "CRM_KEY")])
            .build()?,
        None,
    )?;
    println!("replica a committed revision {}", report.revision);

    let request = ResolveRequest::parse(&project, "orders", "production")?;
    loop {
        if let Ok(env) = b.resolve(&request)
            && env.get("CRM_URL").is_some()
        {
            println!("replica b resolves orders after {:?}:", written.elapsed());
            for var in env.iter() {
                let shown = if var.value().is_secret() {
                    "[REDACTED]"
                } else {
                    var.value().expose()
                };
                println!("  {}={shown}", var.name());
            }
            return Ok(());
        }
        if written.elapsed() > Duration::from_secs(10) {
            return Err("replica b did not see the write within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
