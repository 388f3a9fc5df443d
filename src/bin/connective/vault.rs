//! The Vault or OpenBao server `vault:` and `openbao:` references are read
//! from, when resolving: its address, namespace and CA from options or the
//! variables the `vault` and `bao` programs read, and its credentials from
//! the environment or files, never from the command line (where other users
//! of the machine and the shell's history would see them).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use connective::external::SecretCache;
use connective::external::vault::{VaultAuth, VaultError, VaultStore};
use connective::model::{ExternalFault, ResolvePolicy, StoreName};
use connective::resolve::{Problem, ResolveError};

use crate::{Exit, Failure};

/// The role ID of an AppRole login.
const ROLE_ID: &str = "CONNECTIVE_VAULT_ROLE_ID";
/// The secret ID of an AppRole login.
const SECRET_ID: &str = "CONNECTIVE_VAULT_SECRET_ID";

/// Where the vault is and how to log in. Secrets come from the environment
/// or from files only.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Vault / OpenBao (for vault: and openbao: references)")]
pub struct VaultArgs {
    /// The server's address, e.g. https://vault.internal:8200 [default:
    /// $VAULT_ADDR, else $BAO_ADDR].
    #[arg(long, value_name = "URL")]
    vault_addr: Option<String>,
    /// The namespace [default: $VAULT_NAMESPACE, else $BAO_NAMESPACE].
    #[arg(long, value_name = "NAMESPACE")]
    vault_namespace: Option<String>,
    /// PEM certificates of the CA that signed the server's certificate
    /// [default: $VAULT_CACERT, else $BAO_CACERT].
    #[arg(long, value_name = "FILE")]
    vault_ca: Option<PathBuf>,
    /// A file holding the token (a Vault Agent's sink) [default: $VAULT_TOKEN,
    /// else $BAO_TOKEN].
    #[arg(long, value_name = "FILE")]
    vault_token_file: Option<PathBuf>,
    /// AppRole login: a file holding the role ID [default:
    /// $CONNECTIVE_VAULT_ROLE_ID].
    #[arg(long, value_name = "FILE")]
    vault_role_id_file: Option<PathBuf>,
    /// AppRole login: a file holding the secret ID [default:
    /// $CONNECTIVE_VAULT_SECRET_ID].
    #[arg(long, value_name = "FILE")]
    vault_secret_id_file: Option<PathBuf>,
    /// The mount of the AppRole auth method.
    #[arg(long, value_name = "MOUNT", default_value = "approle")]
    vault_approle_mount: String,
}

/// The first of `vars` set to something.
fn env_of(vars: &[&str]) -> Option<String> {
    vars.iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|value| !value.trim().is_empty())
}

/// A credential: the file's contents (trimmed), else the variable's. The
/// message of a failure names the file or variable, never what it holds.
fn credential(file: Option<&Path>, vars: &[&str]) -> Result<Option<String>, Failure> {
    if let Some(file) = file {
        let text = crate::read_small_text(file)
            .map_err(|e| Failure::new(Exit::Failure, format!("cannot read {}: {e}", file.display())))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(Failure::new(
                Exit::Failure,
                format!("{} is empty", file.display()),
            ));
        }
        return Ok(Some(text.to_owned()));
    }
    Ok(env_of(vars).map(|v| v.trim().to_owned()))
}

impl VaultArgs {
    /// The resolve policy with a secret cache on the configured server, or
    /// `policy` as it is when no server is configured.
    pub fn policy(&self, policy: ResolvePolicy) -> Result<ResolvePolicy, Failure> {
        Ok(match self.cache()? {
            Some(cache) => policy.with_external_secrets(Arc::new(cache)),
            None => policy,
        })
    }

    /// The cache on the configured server; `None` when no address is given.
    fn cache(&self) -> Result<Option<SecretCache>, Failure> {
        let Some(addr) = self
            .vault_addr
            .clone()
            .or_else(|| env_of(&["VAULT_ADDR", "BAO_ADDR"]))
        else {
            if self.vault_token_file.is_some()
                || self.vault_role_id_file.is_some()
                || self.vault_secret_id_file.is_some()
                || self.vault_ca.is_some()
                || self.vault_namespace.is_some()
            {
                return Err(Failure::new(
                    Exit::Usage,
                    "vault settings without an address: give --vault-addr URL or set VAULT_ADDR",
                ));
            }
            return Ok(None);
        };
        let role_id = credential(self.vault_role_id_file.as_deref(), &[ROLE_ID])?;
        let auth = match role_id {
            Some(role_id) => {
                let secret_id = credential(self.vault_secret_id_file.as_deref(), &[SECRET_ID])?.ok_or_else(|| {
                    Failure::new(
                        Exit::Usage,
                        format!("an AppRole login needs a secret ID: set {SECRET_ID} or give --vault-secret-id-file FILE"),
                    )
                })?;
                VaultAuth::app_role(role_id, secret_id).at_mount(self.vault_approle_mount.clone())
            }
            None => {
                let token = credential(self.vault_token_file.as_deref(), &["VAULT_TOKEN", "BAO_TOKEN"])?
                    .ok_or_else(|| {
                        Failure::new(
                            Exit::Usage,
                            format!(
                                "no credentials for the vault at {addr}: set VAULT_TOKEN (or BAO_TOKEN), give \
                                 --vault-token-file FILE, or log in with AppRole ({ROLE_ID} and {SECRET_ID})"
                            ),
                        )
                    })?;
                VaultAuth::token(token)
            }
        };
        let ca = self
            .vault_ca
            .clone()
            .or_else(|| env_of(&["VAULT_CACERT", "BAO_CACERT"]).map(PathBuf::from));
        let store = match ca {
            Some(ca) => {
                let pem = crate::read_small(&ca)
                    .map_err(|e| Failure::new(Exit::Failure, format!("cannot read {}: {e}", ca.display())))?;
                VaultStore::with_ca(&addr, auth, &pem).map_err(setup)?
            }
            None => VaultStore::new(&addr, auth).map_err(setup)?,
        };
        let store = match self
            .vault_namespace
            .clone()
            .or_else(|| env_of(&["VAULT_NAMESPACE", "BAO_NAMESPACE"]))
        {
            Some(namespace) => store.with_namespace(namespace).map_err(setup)?,
            None => store,
        };
        // One server answers both names; a one-shot program waits for each
        // first fetch as long as a fetch may take.
        let cache = SecretCache::builder()
            .store(StoreName::vault(), store.clone())
            .store(StoreName::openbao(), store)
            .fetch_timeout(Duration::from_secs(10))
            .first_fetch_wait(Duration::from_secs(11))
            .build()?;
        Ok(Some(cache))
    }
}

/// A vault client that cannot be set up: a malformed AppRole mount or
/// namespace is a usage error, the rest (a certificate, the HTTP client) a
/// failure.
fn setup(error: VaultError) -> Failure {
    match error {
        VaultError::Invalid { .. } => Failure::new(Exit::Usage, error.to_string()),
        other => other.into(),
    }
}

/// A failed resolution, with a hint when references went unread because no
/// vault is configured.
pub fn resolve_failure(error: ResolveError) -> Failure {
    let unconfigured = error.problems.iter().any(|p| {
        matches!(
            p,
            Problem::ExternalSecret {
                fault: ExternalFault::NoCache,
                ..
            }
        )
    });
    let mut message = error.to_string();
    if unconfigured {
        message.push_str(
            "\nhint: vault: and openbao: references are read from the server at --vault-addr or $VAULT_ADDR, \
             with $VAULT_TOKEN (or --vault-token-file, or an AppRole login); see --help",
        );
    }
    Failure::new(Exit::Failure, message)
}
