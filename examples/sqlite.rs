//! Connections that survive a restart: a registry on `SqliteStore`, closed and
//! opened again, with secrets sealed in the file.
//!
//! ```text
//! cargo run --example sqlite --features sqlite
//! ```
//!
//! For real use, keep the file somewhere durable and the sealing key outside
//! it (a secret manager, an environment variable):
//!
//! ```text
//! let key = SealKey::from_base64("2025-01", &std::env::var("CONNECTIVE_SEAL_KEY")?)?;
//! let store = SqliteStore::open("/var/lib/myhost/connections.db", KeyRing::new(key))?;
//! ```

use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{SqliteStore, Store};

fn registry(path: &std::path::Path, key: &SealKey) -> Result<Registry, Box<dyn std::error::Error>> {
    let store = SqliteStore::open(path, KeyRing::new(key.clone()))?;
    Ok(Registry::builder().store(store).build()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("connections.db");
    // A fresh key for this demo; a host loads its own (see above).
    let key = SealKey::generate("demo")?;

    {
        let registry = registry(&path, &key)?;
        registry.create_connection(
            ConnectionSpec::project("acme", "crm")
                .target(Target::external("crm"))
                .auth(AuthScheme::ApiKey)
                .param(Param::plain("ServiceURL").default("https://crm.example.com"))
                .param(Param::secret("ApiKey").env("production", "crm-live-2f9d"))
                .build()?,
        )?;
        registry.set_mappings(
            Mappings::of("acme", "orders")
                .by_name("crm", [("ServiceURL", "CRM_URL"), ("ApiKey", "CRM_KEY")])
                .build()?,
            None,
        )?;
        println!(
            "committed 2 writes to {} (revision {})",
            path.display(),
            registry.store().revision()?
        );
    } // The registry and its store are closed here, as at a restart.

    let registry = registry(&path, &key)?;
    let env = registry.resolve(&ResolveRequest::parse("acme", "orders", "production")?)?;
    println!("after reopening, integration orders gets:");
    for var in env.iter() {
        let shown = if var.value().is_secret() {
            "[REDACTED]"
        } else {
            var.value().expose()
        };
        println!("  {}={shown}", var.name());
    }

    // Look at the raw bytes of the database and its write-ahead log.
    let mut bytes = std::fs::read(&path)?;
    bytes.extend(std::fs::read(dir.path().join("connections.db-wal")).unwrap_or_default());
    let sealed = bytes.windows(9).any(|w| w == b"cs1:demo:");
    let plaintext = bytes.windows(13).any(|w| w == b"crm-live-2f9d");
    println!("sealed values in the files: {sealed}; the API key in plaintext: {plaintext}");
    Ok(())
}
