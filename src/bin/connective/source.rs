//! Where the program's registry lives: in memory, or in a SQLite file whose
//! secrets are sealed with a key from `CONNECTIVE_SEAL_KEY` or `FILE.key`.
//!
//! Only `apply` creates files. Every other command opens an existing database
//! or, for `plan`, treats a missing one as empty.

use std::path::{Path, PathBuf};

use connective::model::EnvVarName;
use connective::prelude::*;
use connective::store::SqliteStore;
use connective::store::seal::{KeyRing, SealKey};
use secrecy::ExposeSecret;

use crate::vault::VaultArgs;
use crate::{Exit, Failure};

/// The variable holding the base64 sealing key.
const KEY_VARIABLE: &str = "CONNECTIVE_SEAL_KEY";

/// The ID the program's sealing key has, wherever it comes from: the same key
/// opens a database whether it is kept in `FILE.key` or moved to
/// [`KEY_VARIABLE`].
const KEY_ID: &str = "local";

/// The ID earlier versions gave a key from [`KEY_VARIABLE`]: the ring holds
/// the same bytes under it too, so what they sealed still opens.
const OLD_VARIABLE_KEY_ID: &str = "env";

/// What the command will do with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only; a missing file is an error, or an empty registry.
    Read {
        /// Whether a missing file reads as an empty registry (`plan`).
        missing_is_empty: bool,
    },
    /// Write; a missing file is created, with a key file beside it unless the
    /// key comes from the environment.
    Write,
}

/// The registry a command works on.
pub struct Opened {
    /// The registry.
    pub registry: Registry,
    /// Whether it lives in memory only (no --db, or a missing file for `plan`).
    pub in_memory: bool,
}

/// Opens the registry on `db` (or in memory, without one) for `access`,
/// reading referenced secrets from the vault `vault` configures, if any.
pub fn open(
    db: Option<&Path>,
    access: Access,
    prefix: Option<EnvVarName>,
    vault: Option<&VaultArgs>,
) -> Result<Opened, Failure> {
    let mut builder = Registry::builder();
    if let Some(vault) = vault {
        builder = builder.policy(vault.policy(connective::model::ResolvePolicy::default())?);
    }
    if let Some(prefix) = prefix {
        builder = builder.prefix(prefix);
    }
    let store = match db {
        Some(db) => sqlite(db, access)?,
        None => None,
    };
    let in_memory = store.is_none();
    if let Some(store) = store {
        builder = builder.store(store);
    }
    Ok(Opened {
        registry: builder.build()?,
        in_memory,
    })
}

/// The store in `db`, or `None` for a missing file that reads as empty.
fn sqlite(db: &Path, access: Access) -> Result<Option<SqliteStore>, Failure> {
    let exists = db.exists();
    if let (Access::Read { missing_is_empty }, false) = (access, exists) {
        if missing_is_empty {
            crate::show::note(&format!(
                "{} does not exist yet: planning against an empty registry (apply creates it)",
                db.display()
            ));
            return Ok(None);
        }
        return Err(Failure::new(
            Exit::Failure,
            format!(
                "{} does not exist (`connective apply MANIFEST --db {}` creates it)",
                db.display(),
                db.display()
            ),
        ));
    }
    let (key, source) = key_for(db, exists)?;
    match SqliteStore::open(db, key_ring(key)?) {
        Ok(store) => Ok(Some(store)),
        Err(connective::store::StoreError::KeyMismatch { .. }) => Err(Failure::new(
            Exit::Failure,
            format!(
                "the key in {source} is not the key that sealed the secrets of {}; give the key it was created with",
                db.display()
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

fn key_file(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Where the sealing key came from, for messages.
enum KeySource {
    Variable,
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Variable => f.write_str(KEY_VARIABLE),
            KeySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The sealing key: from the environment, else from `FILE.key`. A key file is
/// made only for a database about to be created, never for an existing one
/// (whose secrets a new key could not open).
fn key_for(db: &Path, db_exists: bool) -> Result<(SealKey, KeySource), Failure> {
    let bad_key = |source: &KeySource, e: connective::store::seal::SealError| {
        Failure::new(Exit::Failure, format!("{source}: {e}"))
    };
    if let Ok(text) = std::env::var(KEY_VARIABLE) {
        let source = KeySource::Variable;
        return match SealKey::from_base64(KEY_ID, text.trim()) {
            Ok(key) => Ok((key, source)),
            Err(e) => Err(bad_key(&source, e)),
        };
    }
    let key_file = key_file(db);
    match crate::read_small_text(&key_file) {
        Ok(text) => {
            let source = KeySource::File(key_file);
            match SealKey::from_base64(KEY_ID, text.trim()) {
                Ok(key) => Ok((key, source)),
                Err(e) => Err(bad_key(&source, e)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !db_exists => {
            let key = SealKey::generate(KEY_ID)?;
            write_private(&key_file, key.to_base64().expose_secret())?;
            crate::show::note(&format!(
                "sealing secrets with a new key in {} (set {KEY_VARIABLE} to use your own)",
                key_file.display()
            ));
            Ok((key, KeySource::File(key_file)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::new(
            Exit::Failure,
            format!(
                "no key to open {}: set {KEY_VARIABLE}, or keep its key in {}",
                db.display(),
                key_file.display()
            ),
        )),
        Err(e) => Err(Failure::new(
            Exit::Failure,
            format!("cannot read {}: {e}", key_file.display()),
        )),
    }
}

/// The ring the program opens a database with: `key`, also under the ID
/// earlier versions gave a key from the environment.
fn key_ring(key: SealKey) -> Result<KeyRing, Failure> {
    let old = SealKey::from_base64(OLD_VARIABLE_KEY_ID, key.to_base64().expose_secret())?;
    Ok(KeyRing::new(key).with_old_key(old)?)
}

/// Creates `path` readable by its owner only, failing if it exists.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
