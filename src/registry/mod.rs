//! The front door for writes: validates, computes the whole batch in memory
//! (OAuth provisioning included), commits it atomically, updates the catalog.
//! Other replicas catch up from the change feed ([`Registry::sync`],
//! [`Registry::follow`]).
//!
//! # Across replicas
//!
//! A registry validates a write against its own catalog, then commits it with
//! the versions it read as expectations (rule 8): the store is the arbiter
//! between replicas. A mapping and the connections it resolves to are
//! different records, though, so two replicas could each validate a write
//! against the other's old state and both commit: a mapping of `Key` beside an
//! update dropping `Key`, or beside a new integration-scope connection that
//! shadows the mapped one. The store compares versions of the records a batch
//! writes only, so such writes must share a record. Every write that can
//! change what a mapping resolves to also rewrites a *reference fence*
//! ([`Record::ReferenceFence`]) for each
//! connection name it involves:
//!
//! - creating or deleting a connection (its name);
//! - updating one in any way but its values and descriptions (its old and new
//!   names): name, scope, parameters, authentication, target;
//! - setting an integration's mappings (every name they resolve through).
//!
//! Of two such writes about one name, whichever commits second conflicts
//! ([`RegistryError::Conflict`] on the fence); retried, it catches up and is
//! checked again against the winner, so it is refused with the typed error
//! if it would now leave a reference dangling (rule 9).
//!
//! **Granularity.** One fence per project would make every such write conflict
//! with every other of the project, although writes about different names
//! cannot interfere: two people editing different connections, or two deploys
//! mapping disjoint connections, would conflict and retry. One fence per name
//! is exact but costs a record per connection name, in the store and in every
//! replica's memory. So fences are per (project, name stripe): a fixed hash
//! puts each name in one of [`NameStripe::COUNT`](crate::model::NameStripe::COUNT)
//! (64) stripes, writes about different names conflict only when their names
//! share a stripe (1 chance in 64 for two names), and a project has at most
//! 64 fences whatever its size. Writes about one name still conflict with each
//! other, two mappings of one popular connection included: telling them apart
//! would take read-only expectations the store contract does not have. Value
//! edits ([`Tx::set_value`], [`Tx::remove_value`], an update changing values
//! or descriptions only) touch no name fence: a mapping's validity never
//! depends on values (a missing value is reported at resolution), so the most
//! frequent writes seldom contend with mappings. Whether values fit a
//! connection's type does depend on them: a write of a connection following a
//! type rewrites one more fence, which type and template writes share (see
//! "Across replicas" in [`Tx::put_type`]'s module, `registry::types`).

//!
//! # Blocking and async
//!
//! Every write has a blocking form ([`Registry::write`],
//! [`Registry::create_connection`], [`Registry::sync`], [`Registry::follow`],
//! ...) and, with the `async` feature, an async one ([`Registry::write_async`],
//! [`Registry::create_connection_async`], [`Registry::sync_async`],
//! [`Registry::follow_async`], ...). Both run the same write path: it is
//! written once as `async` code over the store calls it makes; the blocking
//! form drives it on the calling thread against a blocking [`Store`] (whose
//! calls complete when made), the async form awaits the registry's
//! [async store](crate::store::AsyncStore). The transaction ([`Tx`]) computes
//! the batch in memory and does no I/O, so no rule exists twice.
//!
//! Which to use: a synchronous host uses the blocking forms with any store.
//! An async host on tokio builds the registry on an async store
//! ([`RegistryBuilder::async_store`], e.g. a
//! [`PostgresStore`](crate::store::PostgresStore) made with
//! `connect_async`) and awaits the `_async` forms, which never block a
//! runtime thread; reads (resolution, listings) stay synchronous and are
//! called directly. With SQLite, an async host calls the blocking forms
//! through `tokio::task::spawn_blocking`. Blocking and async writers may use
//! one registry together: they share its writer lock.

mod error;
mod follow;
mod io;
mod reads;
mod tx;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use error::RegistryError;
#[cfg(feature = "async")]
pub use follow::AsyncFollower;
pub use follow::{FollowStatus, Follower};
pub use reads::{QueueFull, ReadAudit, ReadAuditStats};
pub use tx::Tx;

use crate::block_on::block_on;
use crate::catalog::{Catalog, ProjectSnapshot};
use crate::model::{
    ActorId, AppOwner, AuditEntry, AuditNote, AuditQuery, Connection, ConnectionId, ConnectionName,
    ConnectionSpec, EnvVarName, IntegrationId, Mappings, OAuthApp, ProjectId, Record, RecordKey,
    ReservedNames, ResolvePolicy, Revision, SecretValue, Timestamp, Version, Versioned,
};
use crate::oauth::ledger::AppLedger;
use crate::oauth::{
    LocalProvisioner, OAuthCredentials, OAuthProvisioner, ProvisionError, ProvisionRequest, RuntimeRecords,
};
use crate::resolve::{
    MemoStats, ProjectView, ResolveError, ResolveMemo, ResolveRequest, ResolvedEnv, Resolver, Usage,
    is_visible,
};
#[cfg(feature = "async")]
use crate::store::AsyncStore;
use crate::store::{
    Batch, Change, Changed, CommitToken, Committed, MemoryStore, Op, Snapshot, Store, StoreError,
    UnreadableRecord,
};

/// Whether deleting a connection that integrations still use is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DeleteMode {
    /// Refuse, listing the dependents (the default).
    #[default]
    Refuse,
    /// Delete anyway; the dependents' references then fail to resolve.
    Force,
}

/// A name reference whose connection changed with a write: a new
/// integration-scope connection shadowing a project one, or the reverse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebinding {
    /// The project.
    pub project: ProjectId,
    /// The integration whose reference changed.
    pub integration: IntegrationId,
    /// The name it refers to.
    pub name: ConnectionName,
    /// The connection it resolved to before.
    pub before: ConnectionId,
    /// The connection it resolves to now (`None`: nothing, after a forced
    /// delete).
    pub after: Option<ConnectionId>,
}

impl fmt::Display for Rebinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "integration {} now resolves {} to ",
            self.integration, self.name
        )?;
        match self.after {
            Some(id) => write!(f, "{id}")?,
            None => f.write_str("nothing")?,
        }
        write!(f, " (was {})", self.before)
    }
}

/// What a committed write did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WriteReport {
    /// The store revision of the write (unchanged if nothing was written).
    pub revision: Revision,
    /// Connections created, in order.
    pub created: Vec<ConnectionId>,
    /// Name references that now resolve elsewhere (rule 9).
    pub rebindings: Vec<Rebinding>,
    /// OAuth applications provisioned.
    pub provisioned: Vec<(ProjectId, AppOwner)>,
    /// OAuth applications released.
    pub released: Vec<(ProjectId, AppOwner)>,
    /// OAuth applications whose secret was rotated.
    pub rotated: Vec<(ProjectId, AppOwner)>,
    /// Provisioner failures after the commit (releasing or revoking); the
    /// write itself stands.
    pub warnings: Vec<ProvisionError>,
    /// Set when the write committed but this registry could not read the
    /// change feed back (the store went away right after): why. Its catalog
    /// is behind until the next [`Registry::sync`] or write.
    pub catalog_behind: Option<RegistryError>,
}

/// A connection as an integration sees it.
#[derive(Debug, Clone)]
pub struct VisibleConnection {
    /// The connection and its version.
    pub connection: Versioned<Arc<Connection>>,
    /// The integration-scope connection that shadows it, for a project-scope
    /// connection of the same name (rule 2): references by name get that one.
    pub shadowed_by: Option<ConnectionId>,
}

/// An OAuth application and the connections using it (its secret is never
/// readable here).
#[derive(Debug, Clone)]
pub struct AppInfo {
    /// The application and its version.
    pub app: Versioned<Arc<OAuthApp>>,
    /// The connections using it.
    pub users: Vec<ConnectionId>,
}

/// Configures a [`Registry`]: where its records live (a new [`MemoryStore`]
/// unless given a store), who provisions OAuth applications (the
/// [`LocalProvisioner`] unless given one), the resolution policy (the prefix
/// of default variable names, the reserved names, connection types), the
/// audit trail and the memo of repeated resolutions. Start with
/// [`Registry::builder`].
///
/// ```
/// use connective::model::{ActorId, AuditQuery};
/// use connective::prelude::*;
/// use connective::store::MemoryStore;
/// let registry = Registry::builder()
///     .store(MemoryStore::new()) // or a SqliteStore, a PostgresStore, your own
///     .prefix("CHOREO".parse()?) // default variable names: CHOREO_<CONNECTION>_<PARAMETER>
///     .audit("deployer".parse::<ActorId>()?) // one audit entry per committed write
///     .build()?;
/// registry.create_connection(
///     ConnectionSpec::project("acme", "crm").param(Param::plain("Url").default("https://crm.example.com")).build()?,
/// )?;
/// registry.set_mappings(Mappings::of("acme", "orders").by_name_defaults("crm").build()?, None)?;
/// let env = registry.resolve(&ResolveRequest::parse("acme", "orders", "production")?)?;
/// assert_eq!(env.expose("CHOREO_CRM_URL"), Some("https://crm.example.com"));
/// assert_eq!(registry.audit(&AuditQuery::all())?.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RegistryBuilder {
    store: Arc<dyn Store>,
    #[cfg(feature = "async")]
    async_store: Option<Arc<dyn AsyncStore>>,
    provisioner: Arc<dyn OAuthProvisioner>,
    policy: ResolvePolicy,
    audit: Option<ActorId>,
    read_audit: Option<ReadAudit>,
    memo_capacity: usize,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("store", &self.store.backend())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RegistryBuilder {
    /// Uses `store` (default: a new [`MemoryStore`]).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Arc::new(store);
        #[cfg(feature = "async")]
        {
            self.async_store = None;
        }
        self
    }

    /// Uses a shared store.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = store;
        #[cfg(feature = "async")]
        {
            self.async_store = None;
        }
        self
    }

    /// Uses `store` through its async calls (feature `async`): the async
    /// forms of the writes ([`Registry::write_async`] and the others ending
    /// in `_async`) await it without blocking, and the blocking forms use
    /// its blocking calls. Every store of this crate that has async calls
    /// ([`PostgresStore`](crate::store::PostgresStore), [`MemoryStore`])
    /// has both.
    #[cfg(feature = "async")]
    pub fn async_store<S: AsyncStore + Store>(self, store: S) -> Self {
        self.shared_async_store(Arc::new(store))
    }

    /// Uses a shared store through its async calls, see
    /// [`RegistryBuilder::async_store`].
    #[cfg(feature = "async")]
    pub fn shared_async_store<S: AsyncStore + Store>(mut self, store: Arc<S>) -> Self {
        self.store = store.clone();
        self.async_store = Some(store);
        self
    }

    /// Uses `provisioner` for OAuth applications (default: [`LocalProvisioner`]).
    pub fn provisioner(mut self, provisioner: impl OAuthProvisioner + 'static) -> Self {
        self.provisioner = Arc::new(provisioner);
        self
    }

    /// Sets the prefix of default variable names (e.g. `CHOREO`).
    pub fn prefix(mut self, prefix: EnvVarName) -> Self {
        self.policy = self.policy.with_prefix(prefix);
        self
    }

    /// Replaces the reserved variable names.
    pub fn reserved(mut self, reserved: ReservedNames) -> Self {
        self.policy = self.policy.with_reserved(reserved);
        self
    }

    /// Sets the whole resolution policy.
    pub fn policy(mut self, policy: ResolvePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Loads the store into a catalog and returns the registry.
    ///
    /// Records the store cannot read back do not stop it: they are left out
    /// and listed by [`Registry::unreadable`]; resolutions that depend on one
    /// fail, and writes to their projects are refused
    /// ([`RegistryError::ProjectUnreadable`]), while every other project
    /// serves as usual.
    pub fn build(self) -> Result<Registry, RegistryError> {
        let registry = self.registry()?;
        let snapshot = registry.store.load()?;
        registry.replace_all(snapshot)?;
        Ok(registry)
    }

    /// [`RegistryBuilder::build`] for async hosts (feature `async`): loads
    /// the store through its async calls when it has them.
    #[cfg(feature = "async")]
    pub async fn build_async(self) -> Result<Registry, RegistryError> {
        let registry = self.registry()?;
        let snapshot = match &registry.async_store {
            Some(store) => store.load().await?,
            None => registry.store.load()?,
        };
        registry.replace_all(snapshot)?;
        Ok(registry)
    }

    /// Turns on the **audit trail**: every write this registry commits is
    /// recorded by the store, in the write's own transaction, as an
    /// [`AuditEntry`] (who, when, each record key with its operation and
    /// versions before and after; never a value), so each committed write
    /// has exactly one entry and a refused one none. Writes made with
    /// [`Registry::write_as`] are recorded as their actor's, the others as
    /// `actor`'s (the host's own service name, say). Read it back with
    /// [`Registry::audit`]. The memory, SQLite and PostgreSQL stores keep
    /// one ([`Store::keeps_audit`]); building on a store that does not is
    /// refused. Deleting old entries (retention) is the host's call.
    ///
    /// ```
    /// use connective::model::AuditQuery;
    /// use connective::prelude::*;
    /// let registry = Registry::builder().audit("service:host".parse()?).build()?;
    /// let alice = "alice@acme.example".parse()?;
    /// registry.write_as(&alice, |tx| tx.create_connection(ConnectionSpec::project("acme", "crm").build()?))?;
    /// let trail = registry.audit(&AuditQuery::all().by(alice))?;
    /// assert_eq!(trail.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn audit(mut self, actor: ActorId) -> Self {
        self.audit = Some(actor);
        self
    }

    /// Records **reads of secrets** in the audit trail too (off by default;
    /// needs [`RegistryBuilder::audit`], whose actor is the default reader):
    ///
    /// - every resolution through the registry whose answer holds secret
    ///   values ([`Resolver::resolve`], [`Registry::resolve_as`],
    ///   [`Registry::explain`] of a secret variable), memoized answers
    ///   included: who, when, which integration, environment and customer,
    ///   and which connections and parameters, never a value. A resolution
    ///   without secrets is not recorded;
    /// - every OAuth access token the registry's OAuth runtime hands out
    ///   (feature `oauth-runtime`; `access_token`, `cached_access_token`,
    ///   `app_token`; the actor from `OAuthRuntime::acting_as`).
    ///
    /// `setting` says how ([`ReadAudit::queued`]: a bounded queue a thread
    /// of the registry drains to the store, so a read costs no store round
    /// trip, and what to do when it is full; [`ReadAudit::synchronous`]:
    /// each read waits for its entry). A read that cannot be recorded and
    /// must not go unrecorded fails ([`Problem::NotAudited`](crate::resolve::Problem::NotAudited))
    /// and hands nothing out. Read the entries with
    /// `registry.audit(&AuditQuery::all().reads())`.
    ///
    /// Only reads made through the registry are seen: a [`ProjectView`]
    /// from [`Registry::view`], or the [`Catalog`] from
    /// [`Registry::catalog`], resolves without the registry, so a host
    /// that audits reads resolves through the registry.
    ///
    /// ```
    /// use connective::model::AuditQuery;
    /// use connective::prelude::*;
    /// use connective::registry::{QueueFull, ReadAudit};
    /// let registry = Registry::builder()
    ///     .audit("service:host".parse()?)
    ///     .audit_reads(ReadAudit::queued(10_000, QueueFull::Drop))
    ///     .build()?;
    /// registry.create_connection(
    ///     ConnectionSpec::project("acme", "crm").param(Param::secret("ApiKey").default("k")).build()?,
    /// )?;
    /// registry.set_mappings(Mappings::of("acme", "orders").by_name("crm", [("ApiKey", "CRM_KEY")]).build()?, None)?;
    /// let request = ResolveRequest::parse("acme", "orders", "production")?;
    /// registry.resolve_as(&"deployer".parse()?, &request)?;
    /// registry.flush_read_audit(std::time::Duration::from_secs(5))?;
    /// let reads = registry.audit(&AuditQuery::all().reads())?;
    /// assert_eq!(reads[0].actor.as_str(), "deployer");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn audit_reads(mut self, setting: ReadAudit) -> Self {
        self.read_audit = Some(setting);
        self
    }

    /// Keeps at most about `capacity` resolutions for repeated requests
    /// (default [`RegistryBuilder::DEFAULT_RESOLVE_MEMO`]); `0` keeps none.
    ///
    /// [`Resolver::resolve`] on the registry hands out the answer kept for
    /// (project, integration, environment, customer) while the project's
    /// snapshot is the one it was computed on: a copy of one shared answer,
    /// no resolution. After a write the kept answer is carried over if the
    /// write touched nothing it read (the integration's mappings, the
    /// connection each entry finds, their OAuth applications and
    /// templates), else resolved afresh; a resolution after a write never
    /// returns the old answer. Answers holding a value of an external
    /// secret store are not kept (the host's cache may change without a
    /// write), nor are failed resolutions. Beyond `capacity`, a clock evicts
    /// answers not asked for since it last passed. An answer costs about
    /// 300 bytes per variable.
    ///
    /// ```
    /// use connective::prelude::*;
    /// use connective::model::Param;
    /// let registry = Registry::builder().resolve_memo(10_000).build()?;
    /// registry.create_connection(
    ///     ConnectionSpec::project("acme", "crm").param(Param::plain("ServiceURL").default("https://crm")).build()?,
    /// )?;
    /// registry.set_mappings(Mappings::of("acme", "orders").by_name("crm", [("ServiceURL", "CRM_URL")]).build()?, None)?;
    /// let request = ResolveRequest::parse("acme", "orders", "production")?;
    /// let first = registry.resolve(&request)?;
    /// let again = registry.resolve(&request)?;
    /// assert!(again.shares_answer_with(&first));
    /// assert_eq!(registry.resolve_memo_stats().hits, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve_memo(mut self, capacity: usize) -> Self {
        self.memo_capacity = capacity;
        self
    }

    /// The default of [`RegistryBuilder::resolve_memo`]: 1,024 answers.
    pub const DEFAULT_RESOLVE_MEMO: usize = ResolveMemo::DEFAULT_CAPACITY;

    fn registry(self) -> Result<Registry, RegistryError> {
        if self.audit.is_some() && !self.store.keeps_audit() {
            return Err(RegistryError::Store(StoreError::Unsupported {
                backend: self.store.backend(),
                what: "an audit trail",
            }));
        }
        let reads = match (&self.read_audit, &self.audit) {
            (None, _) => None,
            (Some(_), None) => return Err(RegistryError::ReadAuditWithoutTrail),
            (Some(setting), Some(actor)) => {
                Some(reads::Reads::new(setting, actor.clone(), Arc::clone(&self.store)))
            }
        };
        Ok(Registry {
            store: self.store,
            #[cfg(feature = "async")]
            async_store: self.async_store,
            catalog: Catalog::new(self.policy),
            provisioner: self.provisioner,
            writer: async_lock::Mutex::new(()),
            tokens: Tokens::new(),
            unsettled: Mutex::new(Vec::new()),
            oauth_records: Arc::new(RuntimeRecords::new()),
            unreadable: Mutex::new(BTreeMap::new()),
            audit: self.audit,
            reads,
            memo: ResolveMemo::new(self.memo_capacity),
        })
    }
}

/// Keeps connections, mappings and OAuth applications; resolves integrations.
///
/// `Send + Sync`: share it in an `Arc`. Reads ([`Resolver::resolve`] and the
/// listing methods) are lock-free against an in-memory catalog; writes are
/// serialized within the registry and committed atomically to the store.
///
/// ```
/// use connective::prelude::*;
///
/// let registry = Registry::in_memory();
/// let twilio = registry.create_connection(
///     ConnectionSpec::project("acme", "twilio")
///         .target(Target::external("twilio"))
///         .auth(AuthScheme::ApiKey)
///         .param(Param::plain("ServiceURL").default("https://api.twilio.com"))
///         .param(Param::secret("ApiKey").env("production", "live-key").env("development", "test-key"))
///         .build()?,
/// )?;
/// registry.set_mappings(
///     Mappings::of("acme", "orders").by_name("twilio", [("ServiceURL", "TWILIO_URL"), ("ApiKey", "TWILIO_KEY")]).build()?,
///     None,
/// )?;
/// let env = registry.resolve(&ResolveRequest::parse("acme", "orders", "production")?)?;
/// assert_eq!(env.get("TWILIO_URL").unwrap().value().expose(), "https://api.twilio.com");
/// assert!(env.get("TWILIO_KEY").unwrap().value().is_secret());
/// assert_eq!(env.provenance("TWILIO_KEY").unwrap().connection_id, twilio.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Registry {
    store: Arc<dyn Store>,
    /// The same store through its async calls, when it has them.
    #[cfg(feature = "async")]
    async_store: Option<Arc<dyn AsyncStore>>,
    catalog: Catalog,
    provisioner: Arc<dyn OAuthProvisioner>,
    /// Serializes writes, blocking and async alike (a lock either can wait
    /// for: async writers without blocking their thread).
    writer: async_lock::Mutex<()>,
    tokens: Tokens,
    /// Writes whose commit answer was lost and could not be looked up yet.
    unsettled: Mutex<Vec<Unsettled>>,
    /// Records the store holds but this registry cannot read back.
    unreadable: Mutex<BTreeMap<RecordKey, UnreadableRecord>>,
    /// Token sets and statuses, fed with the catalog (rule 11).
    oauth_records: Arc<RuntimeRecords>,
    /// Who unattributed writes are recorded as; `None`: no audit trail.
    audit: Option<ActorId>,
    /// Records reads of secrets; `None`: reads are not audited.
    reads: Option<reads::Reads>,
    /// Answers kept for repeated resolutions.
    memo: ResolveMemo,
}

/// The tokens of one registry's batches: a random prefix of its own and a
/// counter, so naming a batch costs no system call.
#[derive(Debug)]
struct Tokens {
    prefix: u64,
    next: AtomicU64,
}

impl Tokens {
    fn new() -> Self {
        Tokens {
            prefix: CommitToken::random().get() as u64,
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> CommitToken {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        CommitToken::new((u128::from(self.prefix) << 64) | u128::from(n))
    }
}

/// Stands in for the host's provisioner in a [`Registry::dry_run`]: calls
/// nothing, and hands out placeholder credentials (empty) that never leave
/// the dry run.
struct DryRunProvisioner;

impl OAuthProvisioner for DryRunProvisioner {
    fn provision(&self, _: &ProvisionRequest) -> Result<OAuthCredentials, ProvisionError> {
        Ok(OAuthCredentials {
            client_id: String::new(),
            client_secret: SecretValue::new(""),
            token_url: String::new(),
        })
    }

    fn rotate(&self, _: &OAuthApp) -> Result<SecretValue, ProvisionError> {
        Ok(SecretValue::new(""))
    }
}

/// A write whose commit answer was lost: what was provisioned for it stays
/// until the store says whether it was applied.
#[derive(Debug)]
struct Unsettled {
    token: CommitToken,
    /// The batch, if applied, has a revision after this one.
    after: Revision,
    work: AppLedger,
}

/// What became of a batch handed to the store.
enum Outcome {
    Applied(Committed),
    /// Not applied: nothing was written.
    NotApplied(StoreError),
    /// The answer was lost and could not be looked up (why).
    Unknown(StoreError),
}

/// How often a batch is committed again after its answer was lost and the
/// store said it had not been applied.
const COMMIT_ATTEMPTS: usize = 3;

/// The pauses before each look-up of a commit whose answer was lost, while
/// the store is unavailable.
const LOOKUP_PAUSES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(50),
    Duration::from_millis(250),
];

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store.backend())
            .field("revision", &self.catalog.revision())
            .finish_non_exhaustive()
    }
}

/// How often a follower checks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// How many batches one catch-up step reads.
const SYNC_PAGE: usize = 1024;

impl Registry {
    /// A registry on a new [`MemoryStore`] with the [`LocalProvisioner`] and
    /// the default policy.
    pub fn in_memory() -> Registry {
        Registry {
            store: Arc::new(MemoryStore::new()),
            #[cfg(feature = "async")]
            async_store: None,
            catalog: Catalog::new(ResolvePolicy::default()),
            provisioner: Arc::new(LocalProvisioner::default()),
            writer: async_lock::Mutex::new(()),
            tokens: Tokens::new(),
            unsettled: Mutex::new(Vec::new()),
            unreadable: Mutex::new(BTreeMap::new()),
            oauth_records: Arc::new(RuntimeRecords::new()),
            audit: None,
            reads: None,
            memo: ResolveMemo::new(ResolveMemo::DEFAULT_CAPACITY),
        }
    }

    /// Starts configuring a registry.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            store: Arc::new(MemoryStore::new()),
            #[cfg(feature = "async")]
            async_store: None,
            provisioner: Arc::new(LocalProvisioner::default()),
            policy: ResolvePolicy::default(),
            audit: None,
            read_audit: None,
            memo_capacity: ResolveMemo::DEFAULT_CAPACITY,
        }
    }

    /// The catalog (lock-free reads).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The OAuth token sets and connection statuses this registry has seen
    /// (rule 11): kept up to date like the catalog, by [`Registry::sync`] and
    /// [`Registry::follow`], and by the OAuth runtime's own writes. List
    /// statuses with [`RuntimeRecords::statuses`].
    pub fn oauth_records(&self) -> &Arc<RuntimeRecords> {
        &self.oauth_records
    }

    /// The store's async calls, if the registry was built with
    /// [`RegistryBuilder::async_store`] (feature `async`).
    #[cfg(feature = "async")]
    pub fn async_store(&self) -> Option<&Arc<dyn AsyncStore>> {
        self.async_store.as_ref()
    }

    /// Runs `f` as one atomic write: everything it does commits together, or
    /// nothing does (and OAuth applications it provisioned are released again;
    /// if that fails too, the error is [`RegistryError::CompensationFailed`]).
    ///
    /// If the store loses the answer to the commit
    /// ([`StoreError::OutcomeUnknown`]), the registry looks the batch up
    /// ([`Store::find_commit`]) before undoing anything: applied, the write
    /// succeeds; not applied, the same batch is committed again (so an OAuth
    /// application is provisioned once); when the look-up fails too, the
    /// answer is [`RegistryError::OutcomeUnknown`] and nothing is undone until
    /// a later write (or [`Registry::settle`]) finds out.
    ///
    /// Writes of one registry are serialized (blocking and async ones
    /// alike); `f` may read the registry but must not call its write methods
    /// (that would wait for itself). This blocks the calling thread on the
    /// store: from async code use [`Registry::write_async`].
    ///
    /// ```
    /// # use connective::prelude::*;
    /// let registry = Registry::in_memory();
    /// let (ids, report) = registry.write(|tx| {
    ///     let a = tx.create_connection(ConnectionSpec::project("acme", "a").build()?)?;
    ///     let b = tx.create_connection(ConnectionSpec::project("acme", "b").build()?)?;
    ///     Ok((a, b))
    /// })?;
    /// assert_eq!(report.created, vec![ids.0, ids.1]);
    /// # Ok::<(), RegistryError>(())
    /// ```
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError>,
    ) -> Result<(R, WriteReport), RegistryError> {
        block_on(self.write_with(&io::Blocking(&*self.store), None, f))
    }

    /// [`Registry::write`] on behalf of `actor`: with the audit trail on
    /// ([`RegistryBuilder::audit`]), the write's entry names `actor`.
    pub fn write_as<R>(
        &self,
        actor: &ActorId,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError>,
    ) -> Result<(R, WriteReport), RegistryError> {
        block_on(self.write_with(&io::Blocking(&*self.store), Some(actor), f))
    }

    /// The audit entries `query` selects, oldest first (see
    /// [`RegistryBuilder::audit`]); [`StoreError::Unsupported`] from a store
    /// that keeps none. A connection's entries:
    /// `AuditQuery::all().of_record(connection.key())`.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, RegistryError> {
        Ok(self.store.audit(query)?)
    }

    /// [`Registry::audit`] for async hosts (feature `async`): on the
    /// registry's [`AsyncStore`] when it was built with one.
    #[cfg(feature = "async")]
    pub async fn audit_async(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, RegistryError> {
        match &self.async_store {
            Some(store) => Ok(store.audit(query).await?),
            None => Ok(self.store.audit(query)?),
        }
    }

    /// [`Registry::write`] for async hosts (feature `async`): the same write,
    /// awaiting the store instead of blocking a thread. It uses the
    /// registry's [`AsyncStore`] when it was built with one
    /// ([`RegistryBuilder::async_store`]); on a blocking store (memory,
    /// SQLite) the store's calls run on the calling task, which is fine for
    /// [`MemoryStore`] and blocks the task for the commit of a durable one.
    ///
    /// `f` runs on the calling task, as do the provisioner's calls it makes.
    ///
    /// ```
    /// # use connective::prelude::*;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let registry = Registry::in_memory();
    /// let (id, report) = registry
    ///     .write_async(|tx| tx.create_connection(ConnectionSpec::project("acme", "a").build()?))
    ///     .await?;
    /// assert_eq!(report.created, vec![id]);
    /// # Ok::<(), RegistryError>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "async")]
    pub async fn write_async<R: Send>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError> + Send,
    ) -> Result<(R, WriteReport), RegistryError> {
        self.write_as_async_inner(None, f).await
    }

    /// [`Registry::write_as`] for async hosts (feature `async`).
    #[cfg(feature = "async")]
    pub async fn write_as_async<R: Send>(
        &self,
        actor: &ActorId,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError> + Send,
    ) -> Result<(R, WriteReport), RegistryError> {
        self.write_as_async_inner(Some(actor), f).await
    }

    #[cfg(feature = "async")]
    async fn write_as_async_inner<R: Send>(
        &self,
        actor: Option<&ActorId>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError> + Send,
    ) -> Result<(R, WriteReport), RegistryError> {
        match &self.async_store {
            Some(store) => self.write_with(&io::Async(&**store), actor, f).await,
            None => self.write_with(&io::Blocking(&*self.store), actor, f).await,
        }
    }

    /// The write path, once for both front doors: catch up, run `f`, check,
    /// commit (looking up a lost answer), install, settle.
    async fn write_with<I: io::Io, R>(
        &self,
        io: &I,
        actor: Option<&ActorId>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError>,
    ) -> Result<(R, WriteReport), RegistryError> {
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument as _;
            let span = tracing::debug_span!(
                "connective.write",
                backend = io.backend(),
                writes = tracing::field::Empty,
                revision = tracing::field::Empty
            );
            self.write_locked(io, actor, f, &span)
                .instrument(span.clone())
                .await
        }
        #[cfg(not(feature = "tracing"))]
        self.write_locked(io, actor, f).await
    }

    async fn write_locked<I: io::Io, R>(
        &self,
        io: &I,
        actor: Option<&ActorId>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError>,
        #[cfg(feature = "tracing")] span: &tracing::Span,
    ) -> Result<(R, WriteReport), RegistryError> {
        let _guard = self.writer.lock().await;
        // Validate against the freshest state we can get cheaply; if the store
        // is unreachable the commit below will say so.
        if let Err(e) = self.catch_up_locked(io).await
            && !matches!(
                e,
                RegistryError::Store(StoreError::Unavailable { .. } | StoreError::Timeout { .. })
            )
        {
            return Err(e);
        }
        let mut tx = Tx::new(self, Arc::clone(&self.provisioner));
        let value = match Self::prepare(&mut tx, f) {
            Ok(v) => v,
            Err(e) => return Err(self.undo(&tx.work, e)),
        };
        if tx.is_empty() {
            let mut report = std::mem::take(&mut tx.report);
            report.revision = self.catalog.revision();
            self.settle_locked(io, &mut report).await;
            return Ok((value, report));
        }
        let token = self.tokens.next();
        // If the batch is applied, its revision comes after this one.
        let after = self.catalog.revision();
        let mut batch = tx.batch(token);
        if let Some(default) = &self.audit {
            batch.audit = Some(AuditNote {
                actor: actor.unwrap_or(default).clone(),
                at: Timestamp::now(),
            });
        }
        let rebindings = tx.rebindings();
        let committed = match self.commit_batch(io, &batch, token, after).await {
            Outcome::Applied(c) => c,
            Outcome::NotApplied(e) => return Err(self.undo(&tx.work, e.into())),
            Outcome::Unknown(e) => return Err(self.keep_unsettled(&mut tx, token, after, e)),
        };
        // The runtime records the batch wrote (a deleted connection's) are
        // indexed at once; the catalog gets the rest below.
        for (w, version) in batch.writes.iter().zip(&committed.versions) {
            let record = match &w.op {
                Op::Put(r) => Some(r),
                Op::Delete => None,
            };
            self.oauth_records.apply(&w.key, *version, record);
        }
        #[cfg(feature = "tracing")]
        {
            // Record keys are identifiers (project, connection ID, integration,
            // application owner); values never reach a span.
            span.record("writes", batch.writes.len());
            span.record("revision", committed.revision.0);
            for w in &batch.writes {
                tracing::debug!(key = %w.key, "committed");
            }
        }
        let mut report = self.publish(io, tx, &committed).await;
        report.rebindings = rebindings;
        self.settle_locked(io, &mut report).await;
        Ok((value, report))
    }

    /// Runs `f` on `tx`, then the checks a write makes before it commits:
    /// every project it writes is readable, and no integration's mappings
    /// got worse (rule 9).
    fn prepare<R>(
        tx: &mut Tx<'_>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        let value = f(tx)?;
        if !tx.is_empty() {
            tx.check_writable()?;
            tx.check_typing()?;
            tx.check_dependents()?;
        }
        Ok(value)
    }

    /// A dry run of [`Registry::write`]: runs `f` on a transaction exactly as
    /// a write would (every check, the whole batch computed, rule 9's check
    /// of dependents) and then drops it. Nothing is committed and no
    /// provisioner is called: an application the write would provision gets
    /// placeholder credentials that go nowhere, a rotation a placeholder
    /// secret. The report says what the write would do (connections
    /// created, rebindings, applications provisioned, released and rotated)
    /// against this registry's catalog as it is now; the Connection IDs in it
    /// are drawn for the dry run only.
    ///
    /// A write running the same `f` against the same catalog does the same,
    /// so a dry run previews a write ([`Manifest::plan`](crate::manifest::Manifest::plan)
    /// is one). Unlike a write, a dry run does not first catch up with the
    /// store.
    ///
    /// ```
    /// # use connective::prelude::*;
    /// let registry = Registry::in_memory();
    /// let spec = ConnectionSpec::project("acme", "inventory")
    ///     .platform_target("acme", "inventory-api")
    ///     .auth(AuthScheme::OAuth2(OAuthClient::Shared))
    ///     .build()?;
    /// let (_, report) = registry.dry_run(|tx| tx.create_connection(spec))?;
    /// assert_eq!(report.provisioned, vec![("acme".parse()?, AppOwner::Project)]);
    /// assert!(registry.snapshot(&"acme".parse()?).is_none()); // nothing written
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dry_run<R>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, RegistryError>,
    ) -> Result<(R, WriteReport), RegistryError> {
        let mut tx = Tx::new(self, Arc::new(DryRunProvisioner));
        let value = Self::prepare(&mut tx, f)?;
        let rebindings = if tx.is_empty() {
            Vec::new()
        } else {
            tx.rebindings()
        };
        let mut report = std::mem::take(&mut tx.report);
        report.revision = self.catalog.revision();
        report.rebindings = rebindings;
        Ok((value, report))
    }

    /// A write whose commit answer was lost and could not be looked up: what
    /// was provisioned for it stays until the store can tell (see
    /// [`Registry::settle`]).
    fn keep_unsettled(
        &self,
        tx: &mut Tx<'_>,
        token: CommitToken,
        after: Revision,
        e: StoreError,
    ) -> RegistryError {
        let kept = tx.work.kept();
        self.unsettled_list().push(Unsettled {
            token,
            after,
            work: std::mem::take(&mut tx.work),
        });
        RegistryError::OutcomeUnknown {
            token,
            kept,
            message: e.to_string(),
        }
    }

    /// After a commit: finishes the provisioner's work and publishes the
    /// transaction's snapshots (or, if another batch came in between, catches
    /// up with the store instead).
    async fn publish<I: io::Io>(&self, io: &I, mut tx: Tx<'_>, committed: &Committed) -> WriteReport {
        tx.after_commit();
        let contiguous = self.catalog.revision().0.checked_add(1) == Some(committed.revision.0);
        let (snapshots, mut report) = tx.into_snapshots(&committed.versions, committed.revision);
        if contiguous {
            for snapshot in snapshots {
                self.install(snapshot);
            }
            self.catalog.set_revision(committed.revision);
        } else if let Err(e) = self.catch_up_locked(io).await {
            report.catalog_behind = Some(e);
        }
        report.revision = committed.revision;
        report
    }

    /// Commits `batch`; when the store loses the answer, looks it up before
    /// deciding (and commits it again if it was not applied).
    async fn commit_batch<I: io::Io>(
        &self,
        io: &I,
        batch: &Batch,
        token: CommitToken,
        after: Revision,
    ) -> Outcome {
        for _ in 0..COMMIT_ATTEMPTS {
            match io.commit(batch).await {
                Ok(c) => return Outcome::Applied(c),
                Err(StoreError::OutcomeUnknown { .. }) => match self.look_up(io, token, after).await {
                    Ok(Some(c)) => return Outcome::Applied(c),
                    // Not applied: the same batch, with the same
                    // expectations, may be committed again.
                    Ok(None) => continue,
                    Err(e) => return Outcome::Unknown(e),
                },
                Err(e) => return Outcome::NotApplied(e),
            }
        }
        Outcome::NotApplied(StoreError::Unavailable {
            backend: io.backend(),
            message: format!(
                "the answer to commit {token} was lost {COMMIT_ATTEMPTS} times, and each time it had not been applied"
            ),
        })
    }

    /// Looks up the batch named `token`, retrying a little while the store is
    /// unavailable.
    async fn look_up<I: io::Io>(
        &self,
        io: &I,
        token: CommitToken,
        after: Revision,
    ) -> Result<Option<Committed>, StoreError> {
        let mut result = Ok(None);
        for pause in LOOKUP_PAUSES {
            io.pause(pause).await;
            result = io.find_commit(token, after).await;
            if !matches!(
                result,
                Err(StoreError::Unavailable { .. } | StoreError::Timeout { .. })
            ) {
                break;
            }
        }
        result
    }

    /// Undoes the provisioner's work for a write that was not applied; a
    /// failure to undo is reported with the write's own error.
    fn undo(&self, work: &AppLedger, error: RegistryError) -> RegistryError {
        let (_, failures) = work.undo(&*self.provisioner);
        if failures.is_empty() {
            error
        } else {
            RegistryError::CompensationFailed {
                error: Box::new(error),
                failures,
            }
        }
    }

    fn unsettled_list(&self) -> MutexGuard<'_, Vec<Unsettled>> {
        self.unsettled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks up the writes whose commit answer was lost: the provisioner's
    /// work for each is finished if it was applied, undone if not; what is
    /// released and what fails is added to `report`. Writes the store cannot
    /// tell about yet stay pending.
    async fn settle_locked<I: io::Io>(&self, io: &I, report: &mut WriteReport) {
        let pending: Vec<(CommitToken, Revision)> =
            self.unsettled_list().iter().map(|u| (u.token, u.after)).collect();
        if pending.is_empty() {
            return;
        }
        let mut answers = HashMap::with_capacity(pending.len());
        for (token, after) in pending {
            if let Ok(found) = io.find_commit(token, after).await {
                answers.insert(token, found.is_some());
            }
        }
        self.unsettled_list().retain_mut(|u| {
            let (released, failures) = match answers.get(&u.token) {
                Some(true) => u.work.finish(&*self.provisioner),
                Some(false) => u.work.undo(&*self.provisioner),
                None => return true,
            };
            report.released.extend(released);
            report.warnings.extend(failures);
            false
        });
    }

    /// Finds out what became of writes whose commit answer was lost
    /// ([`RegistryError::OutcomeUnknown`]): for each, the store says whether
    /// it was applied; if it was, the applications it provisioned stay in use
    /// (and what it no longer used is released), if not, they are released.
    /// Every write does this too. The report lists what was released and
    /// which provisioner calls failed; writes the store still cannot tell
    /// about stay pending ([`Registry::unsettled`]).
    pub fn settle(&self) -> WriteReport {
        block_on(self.settle_with(&io::Blocking(&*self.store)))
    }

    /// [`Registry::settle`] for async hosts (feature `async`).
    #[cfg(feature = "async")]
    pub async fn settle_async(&self) -> WriteReport {
        match &self.async_store {
            Some(store) => self.settle_with(&io::Async(&**store)).await,
            None => self.settle_with(&io::Blocking(&*self.store)).await,
        }
    }

    async fn settle_with<I: io::Io>(&self, io: &I) -> WriteReport {
        let _guard = self.writer.lock().await;
        let mut report = WriteReport {
            revision: self.catalog.revision(),
            ..WriteReport::default()
        };
        self.settle_locked(io, &mut report).await;
        report
    }

    /// The tokens of writes whose outcome is still unknown (see
    /// [`Registry::settle`]).
    pub fn unsettled(&self) -> Vec<CommitToken> {
        self.unsettled_list().iter().map(|u| u.token).collect()
    }
    /// Creates a connection; returns its Connection ID and the write report.
    pub fn create_connection(
        &self,
        spec: ConnectionSpec,
    ) -> Result<(ConnectionId, WriteReport), RegistryError> {
        self.write(|tx| tx.create_connection(spec))
    }

    /// Replaces a connection's spec, expecting `version` (rule 8).
    pub fn update_connection(
        &self,
        id: ConnectionId,
        version: Version,
        spec: ConnectionSpec,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.update_connection(id, version, spec))
            .map(|(_, r)| r)
    }

    /// Deletes a connection, expecting `version` (rules 8, 9).
    pub fn delete_connection(
        &self,
        project: &ProjectId,
        id: ConnectionId,
        version: Version,
        mode: DeleteMode,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.delete_connection(project, id, version, mode))
            .map(|(_, r)| r)
    }

    /// Sets one parameter value of a connection, expecting `version` (see
    /// [`Tx::set_value`]).
    pub fn set_value(
        &self,
        project: &ProjectId,
        id: ConnectionId,
        version: Version,
        param: &crate::model::ParamName,
        layer: crate::model::Layer,
        value: impl Into<String>,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.set_value(project, id, version, param, layer, value))
            .map(|(_, r)| r)
    }

    /// Sets an integration's mappings, expecting `expected` (`None`: none yet).
    pub fn set_mappings(
        &self,
        mappings: Mappings,
        expected: Option<Version>,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.set_mappings(mappings, expected))
            .map(|(_, r)| r)
    }

    /// Rotates an OAuth application's secret.
    pub fn rotate_app_secret(
        &self,
        project: &ProjectId,
        owner: &AppOwner,
    ) -> Result<WriteReport, RegistryError> {
        self.write(|tx| tx.rotate_app_secret(project, owner))
            .map(|(_, r)| r)
    }

    /// [`Registry::create_connection`] for async hosts (feature `async`; see
    /// [`Registry::write_async`]).
    #[cfg(feature = "async")]
    pub async fn create_connection_async(
        &self,
        spec: ConnectionSpec,
    ) -> Result<(ConnectionId, WriteReport), RegistryError> {
        self.write_async(|tx| tx.create_connection(spec)).await
    }

    /// [`Registry::update_connection`] for async hosts (feature `async`).
    #[cfg(feature = "async")]
    pub async fn update_connection_async(
        &self,
        id: ConnectionId,
        version: Version,
        spec: ConnectionSpec,
    ) -> Result<WriteReport, RegistryError> {
        self.write_async(|tx| tx.update_connection(id, version, spec))
            .await
            .map(|(_, r)| r)
    }

    /// [`Registry::delete_connection`] for async hosts (feature `async`).
    #[cfg(feature = "async")]
    pub async fn delete_connection_async(
        &self,
        project: &ProjectId,
        id: ConnectionId,
        version: Version,
        mode: DeleteMode,
    ) -> Result<WriteReport, RegistryError> {
        self.write_async(|tx| tx.delete_connection(project, id, version, mode))
            .await
            .map(|(_, r)| r)
    }

    /// [`Registry::set_value`] for async hosts (feature `async`).
    #[cfg(feature = "async")]
    pub async fn set_value_async(
        &self,
        project: &ProjectId,
        id: ConnectionId,
        version: Version,
        param: &crate::model::ParamName,
        layer: crate::model::Layer,
        value: impl Into<String> + Send,
    ) -> Result<WriteReport, RegistryError> {
        self.write_async(|tx| tx.set_value(project, id, version, param, layer, value))
            .await
            .map(|(_, r)| r)
    }

    /// [`Registry::set_mappings`] for async hosts (feature `async`).
    #[cfg(feature = "async")]
    pub async fn set_mappings_async(
        &self,
        mappings: Mappings,
        expected: Option<Version>,
    ) -> Result<WriteReport, RegistryError> {
        self.write_async(|tx| tx.set_mappings(mappings, expected))
            .await
            .map(|(_, r)| r)
    }

    /// [`Registry::rotate_app_secret`] for async hosts (feature `async`).
    #[cfg(feature = "async")]
    pub async fn rotate_app_secret_async(
        &self,
        project: &ProjectId,
        owner: &AppOwner,
    ) -> Result<WriteReport, RegistryError> {
        self.write_async(|tx| tx.rotate_app_secret(project, owner))
            .await
            .map(|(_, r)| r)
    }

    /// A project's current snapshot.
    pub fn snapshot(&self, project: &ProjectId) -> Option<Arc<ProjectSnapshot>> {
        self.catalog.project(project)
    }

    /// A project's snapshot with this registry's policy: an immutable
    /// [`Resolver`] that later writes do not change.
    pub fn view(&self, project: &ProjectId) -> ProjectView {
        ProjectView {
            snapshot: self
                .snapshot(project)
                .unwrap_or_else(|| Arc::new(ProjectSnapshot::empty(project.clone()))),
            policy: self.catalog.policy().clone(),
        }
    }

    /// A project's current snapshot read under this registry's policy,
    /// without copying the policy.
    fn current_view(&self, project: &ProjectId) -> Option<ProjectView<Arc<ProjectSnapshot>, &ResolvePolicy>> {
        Some(ProjectView {
            snapshot: self.snapshot(project)?,
            policy: self.catalog.policy(),
        })
    }

    /// A connection and its version.
    pub fn connection(&self, project: &ProjectId, id: ConnectionId) -> Option<Versioned<Arc<Connection>>> {
        self.snapshot(project)?.connection(id).cloned()
    }

    /// An integration's mappings and their version.
    pub fn mappings(
        &self,
        project: &ProjectId,
        integration: &IntegrationId,
    ) -> Option<Versioned<Arc<Mappings>>> {
        self.snapshot(project)?.mappings(integration).cloned()
    }

    /// The connections `integration` can see (rule 1), sorted by name with its
    /// own before the project's, each marked with what shadows it (rule 2).
    pub fn visible_connections(
        &self,
        project: &ProjectId,
        integration: &IntegrationId,
    ) -> Vec<VisibleConnection> {
        let Some(view) = self.current_view(project) else {
            return Vec::new();
        };
        let mut out: Vec<VisibleConnection> = view
            .snapshot
            .connections()
            .filter(|c| is_visible(&c.value, integration))
            .map(|c| {
                let winner = view
                    .find_connection(
                        integration,
                        &crate::model::ConnectionRef::Name(c.value.name().clone()),
                    )
                    .map(|w| w.value.id());
                VisibleConnection {
                    connection: c.clone(),
                    shadowed_by: winner.filter(|w| *w != c.value.id()),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            let key = |v: &VisibleConnection| {
                (
                    v.connection.value.name().clone(),
                    v.connection.value.scope() == &crate::model::Scope::Project,
                )
            };
            key(a).cmp(&key(b))
        });
        out
    }

    /// Why `request`'s integration gets `variable`: the winning connection,
    /// parameter and layer, the layers it beat, the connections it shadows.
    /// `Ok(None)` if the integration does not get that variable. (A
    /// [`ResolvedEnv`] already holds the winning
    /// part of this for each of its variables:
    /// [`ResolvedEnv::provenance`](crate::resolve::ResolvedEnv::provenance).)
    ///
    /// ```
    /// # use connective::fixture::Fixture;
    /// # use connective::model::Param;
    /// # use connective::resolve::{ResolveRequest, LayerOutcome};
    /// let fx = Fixture::project("acme")
    ///     .connection("crm", |c| c.param(Param::plain("Url").default("https://dev").env("production", "https://prod")))
    ///     .mappings("orders", |m| m.by_name("crm", [("Url", "CRM_URL")]))
    ///     .build()?;
    /// let why = fx.registry().explain(&ResolveRequest::parse("acme", "orders", "production")?, "CRM_URL")?.unwrap();
    /// assert_eq!(why.layers.iter().map(|c| c.outcome.clone()).collect::<Vec<_>>(),
    ///            vec![LayerOutcome::Outranked, LayerOutcome::Won]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn explain(
        &self,
        request: &ResolveRequest,
        variable: &str,
    ) -> Result<Option<crate::resolve::Explanation>, ResolveError> {
        let Some(view) = self.current_view(&request.project) else {
            return Ok(None);
        };
        let explanation = view.explain(request, variable)?;
        if let (Some(reads), Some(why)) = (&self.reads, &explanation) {
            reads
                .explained(request, view.snapshot.revision(), why)
                .map_err(|e| not_audited(request, e.to_string()))?;
        }
        Ok(explanation)
    }

    /// Connection `id` of `project` as `viewer` may see it, with values for
    /// `env` (see [`ProjectView::listing`]): never a field the viewer may not
    /// see, never a secret's value.
    pub fn listing(
        &self,
        project: &ProjectId,
        id: ConnectionId,
        viewer: &crate::model::Viewer,
        env: &crate::model::Environment,
    ) -> Option<crate::resolve::ConnectionListing> {
        self.current_view(project)?.listing(id, viewer, env)
    }

    /// Every connection of `project` as `viewer` may see it (see
    /// [`ProjectView::listings`]).
    pub fn listings(
        &self,
        project: &ProjectId,
        viewer: &crate::model::Viewer,
        env: &crate::model::Environment,
    ) -> Vec<crate::resolve::ConnectionListing> {
        self.current_view(project)
            .map(|v| v.listings(viewer, env))
            .unwrap_or_default()
    }

    /// The connections `customer`'s own flows may use in `env` (see
    /// [`ProjectView::builder_connections`]).
    pub fn builder_connections(
        &self,
        project: &ProjectId,
        customer: &crate::model::CustomerId,
        env: &crate::model::Environment,
    ) -> Vec<crate::resolve::BuilderConnection> {
        self.current_view(project)
            .map(|v| v.builder_connections(customer, env))
            .unwrap_or_default()
    }

    /// What the request's customer must still provide before its
    /// integration can deploy (see [`ProjectView::onboarding`]): nothing
    /// owed and nothing blocked means [`Resolver::resolve`] succeeds.
    pub fn onboarding(&self, request: &ResolveRequest) -> crate::resolve::Onboarding {
        match self.current_view(&request.project) {
            Some(view) => view.onboarding(request),
            None => crate::resolve::Onboarding {
                request: request.clone(),
                owed: Vec::new(),
                blocked: Vec::new(),
            },
        }
    }

    /// The integrations whose mappings resolve to a connection (rule 9).
    pub fn dependents(&self, project: &ProjectId, id: ConnectionId) -> Vec<IntegrationId> {
        self.current_view(project)
            .map(|view| view.dependents(id))
            .unwrap_or_default()
    }

    /// A connection's mappings: every integration mapping entry that resolves
    /// to it, with the variables it produces.
    pub fn usages(&self, project: &ProjectId, id: ConnectionId) -> Vec<Usage> {
        self.current_view(project)
            .map(|view| view.usages(id))
            .unwrap_or_default()
    }

    /// An OAuth application and its users.
    pub fn oauth_app(&self, project: &ProjectId, owner: &AppOwner) -> Option<AppInfo> {
        let snapshot = self.snapshot(project)?;
        let app = snapshot.app(owner)?.clone();
        let users = snapshot
            .app_users(owner)
            .into_iter()
            .map(|c| c.value.id())
            .collect();
        Some(AppInfo { app, users })
    }

    /// Catches up with writes other replicas committed to the shared store;
    /// returns the revision now reflected. Blocks on the store: from async
    /// code use [`Registry::sync_async`].
    pub fn sync(&self) -> Result<Revision, RegistryError> {
        block_on(self.sync_with(&io::Blocking(&*self.store)))
    }

    /// [`Registry::sync`] for async hosts (feature `async`), on the
    /// registry's [`AsyncStore`] when it has one.
    #[cfg(feature = "async")]
    pub async fn sync_async(&self) -> Result<Revision, RegistryError> {
        match &self.async_store {
            Some(store) => self.sync_with(&io::Async(&**store)).await,
            None => self.sync_with(&io::Blocking(&*self.store)).await,
        }
    }

    async fn sync_with<I: io::Io>(&self, io: &I) -> Result<Revision, RegistryError> {
        let _guard = self.writer.lock().await;
        self.catch_up_locked(io).await?;
        Ok(self.catalog.revision())
    }

    /// Records the store holds but this registry cannot read back (e.g.
    /// sealed under a key its ring lacks), sorted by key, with why. They are
    /// left out of the catalog: resolutions that depend on one fail with
    /// [`Problem::Unreadable`](crate::resolve::Problem::Unreadable), and
    /// writes to their projects are refused
    /// ([`RegistryError::ProjectUnreadable`]) until the record is readable
    /// again (the store rewrites or deletes it, or this registry is rebuilt
    /// with the missing key).
    pub fn unreadable(&self) -> Vec<UnreadableRecord> {
        self.unreadable_map().values().cloned().collect()
    }

    fn unreadable_map(&self) -> MutexGuard<'_, BTreeMap<RecordKey, UnreadableRecord>> {
        self.unreadable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a project's next snapshot, and lets go of what the memo
    /// kept of the one it replaces (answers still keep it).
    fn install(&self, snapshot: ProjectSnapshot) {
        let project = snapshot.project().clone();
        self.catalog.install(snapshot);
        self.memo.released(&project);
    }

    /// Refuses a record's version that no store of this crate would give
    /// (outside [`Version::FIRST`]`..=`[`Version::MAX`]; a host's own store
    /// may): [`StoreError::Unreadable`] naming the record, as the crate's
    /// stores refuse such a row, before the catalog takes any of it.
    fn check_versions(&self, snapshot: &Snapshot, changes: &[Change]) -> Result<(), RegistryError> {
        let bad = snapshot
            .records
            .iter()
            .find(|(v, _)| !v.is_valid())
            .map(|(v, r)| (r.key(), *v))
            .or_else(|| {
                let u = snapshot.unreadable.iter().find(|u| !u.version.is_valid())?;
                Some((u.key.clone(), u.version))
            })
            .or_else(|| {
                let c = changes.iter().find(|c| !c.version.is_valid())?;
                Some((c.key.clone(), c.version))
            });
        match bad {
            Some((key, version)) => {
                Err(crate::store::not_a_version(self.store.backend(), &key, version.0).into())
            }
            None => Ok(()),
        }
    }

    /// Replaces the catalog with everything in `snapshot`, once its
    /// versions are checked ([`Registry::check_versions`]).
    fn replace_all(&self, snapshot: Snapshot) -> Result<(), RegistryError> {
        self.check_versions(&snapshot, &[])?;
        self.oauth_records.replace_all(&snapshot.records);
        let keys = snapshot.unreadable.iter().map(|u| u.key.clone()).collect();
        self.catalog
            .replace_all(snapshot.revision, snapshot.records, keys);
        self.memo.released_all();
        *self.unreadable_map() = snapshot
            .unreadable
            .into_iter()
            .map(|u| (u.key.clone(), u))
            .collect();
        Ok(())
    }

    async fn catch_up_locked<I: io::Io>(&self, io: &I) -> Result<(), RegistryError> {
        loop {
            let from = self.catalog.revision();
            let changes = match io.changes_since(from, SYNC_PAGE).await {
                Ok(c) => c,
                Err(StoreError::FeedTruncated { .. }) => {
                    let snapshot = io.load().await?;
                    return self.replace_all(snapshot);
                }
                Err(e) => return Err(e.into()),
            };
            self.check_versions(&Snapshot::default(), &changes)?;
            if !self.apply_changes(&changes) {
                // Probably caught up; one more round trip would confirm, but
                // the next sync does that.
                return Ok(());
            }
        }
    }

    /// Applies a page of the change feed to the catalog; whether the page
    /// was full (more may follow).
    fn apply_changes(&self, changes: &[Change]) -> bool {
        let Some(last) = changes.last().map(|c| c.revision) else {
            return false;
        };
        let mut touched: HashMap<ProjectId, ProjectSnapshot> = HashMap::new();
        for change in changes {
            if !matches!(change.change, Changed::Unreadable(_)) {
                self.oauth_records
                    .apply(&change.key, change.version, change.record());
            }
            let project = change.key.project();
            let snapshot = touched.entry(project.clone()).or_insert_with(|| {
                self.catalog
                    .project(project)
                    .map(|s| (*s).clone())
                    .unwrap_or_else(|| ProjectSnapshot::empty(project.clone()))
            });
            let readable = match &change.change {
                Changed::Put(record) => {
                    snapshot.put(change.version, record);
                    true
                }
                Changed::Deleted => {
                    snapshot.remove(&change.key);
                    true
                }
                Changed::Unreadable(why) => {
                    snapshot.mark_unreadable(&change.key);
                    self.unreadable_map().insert(change.key.clone(), (**why).clone());
                    false
                }
            };
            if readable {
                let mut unreadable = self.unreadable_map();
                if !unreadable.is_empty() {
                    unreadable.remove(&change.key);
                }
            }
            snapshot.set_revision(change.revision);
        }
        for snapshot in touched.into_values() {
            self.install(snapshot);
        }
        self.catalog.set_revision(last);
        let mut batches = 0usize;
        let mut previous = None;
        for c in changes {
            if previous != Some(c.revision) {
                batches += 1;
                previous = Some(c.revision);
            }
        }
        batches >= SYNC_PAGE
    }

    /// Follows the store's change feed on a background thread, so writes from
    /// other replicas become resolvable here. Waits with
    /// [`Store::wait_for_change`] for at most `poll` between checks; after a
    /// failure (the database is down) it tries again with a pause that
    /// doubles up to `poll` ([`FollowStatus`]). Stops when the returned
    /// [`Follower`] is dropped. Async hosts use [`Registry::follow_async`].
    pub fn follow(self: &Arc<Self>, poll: Duration) -> Follower {
        follow::spawn_thread(Arc::clone(self), poll)
    }

    /// The follower's loop, once for the thread and the task: wait for a
    /// change (in slices of at most `slice`), catch up, report the status;
    /// after a failure pause (doubling up to `poll`) and try again.
    async fn follow_with<I: io::Io>(
        &self,
        io: &I,
        poll: Duration,
        slice: Duration,
        stop: &AtomicBool,
        report: &(dyn Fn(FollowStatus) + Sync),
    ) {
        let mut failures = 0u32;
        let mut reported = None;
        while !stop.load(Ordering::Acquire) {
            let seen = self.catalog.revision();
            let result = match io.wait_for_change(seen, poll.min(slice)).await {
                Ok(latest) if latest > seen => self.sync_with(io).await.map(|_| ()),
                Ok(_) => Ok(()),
                Err(e) => Err(RegistryError::from(e)),
            };
            match result {
                Ok(()) => {
                    let revision = self.catalog.revision();
                    if failures > 0 || reported != Some(revision) {
                        report(FollowStatus::Following { revision });
                        reported = Some(revision);
                    }
                    failures = 0;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = follow::backoff(failures, poll);
                    report(FollowStatus::Retrying {
                        attempt: failures,
                        error,
                        retry_in: pause,
                    });
                    reported = None;
                    let mut slept = Duration::ZERO;
                    while slept < pause && !stop.load(Ordering::Acquire) {
                        let step = slice.min(pause - slept);
                        io.pause(step).await;
                        slept += step;
                    }
                }
            }
        }
    }
}

impl Resolver for Registry {
    /// Resolves against the catalog; with reads audited
    /// ([`RegistryBuilder::audit_reads`]), an answer holding secrets is
    /// recorded as the registry's default actor's read.
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        self.resolve_by(None, request)
    }
}

/// The error of a read that holds secrets and could not be recorded.
fn not_audited(request: &ResolveRequest, reason: String) -> ResolveError {
    ResolveError {
        request: request.clone(),
        problems: vec![crate::resolve::Problem::NotAudited { reason }],
    }
}

impl Registry {
    /// [`Resolver::resolve`] on behalf of `actor`: with reads audited
    /// ([`RegistryBuilder::audit_reads`]), an answer holding secrets is
    /// recorded as `actor`'s read. Without read audit it is `resolve`.
    pub fn resolve_as(&self, actor: &ActorId, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        self.resolve_by(Some(actor), request)
    }

    /// Resolution, recorded when reads are audited. The hook is here, over
    /// whatever the catalog answers (computed or memoized alike: each
    /// answer handed out is a read).
    fn resolve_by(
        &self,
        actor: Option<&ActorId>,
        request: &ResolveRequest,
    ) -> Result<ResolvedEnv, ResolveError> {
        let env = self.memo.resolve(&self.catalog, request)?;
        if let Some(reads) = &self.reads {
            reads
                .resolution(actor, &env)
                .map_err(|e| not_audited(request, e.to_string()))?;
        }
        Ok(env)
    }

    /// Waits until every read of secrets recorded so far is in the store
    /// (see [`RegistryBuilder::audit_reads`]), at most `timeout`; for a
    /// host shutting down, or a test. Answers the store's last error (or
    /// a timeout) if the queue did not drain in time; `Ok` at once when
    /// reads are not audited or recorded synchronously. `Duration::MAX`
    /// waits without limit.
    pub fn flush_read_audit(&self, timeout: Duration) -> Result<(), RegistryError> {
        match &self.reads {
            Some(reads) => Ok(reads.flush(timeout)?),
            None => Ok(()),
        }
    }

    /// What the memo of resolutions has done so far (see
    /// [`RegistryBuilder::resolve_memo`]).
    pub fn resolve_memo_stats(&self) -> MemoStats {
        self.memo.stats()
    }

    /// How the recording of reads of secrets is doing (queued, recorded,
    /// dropped, refused, the store's last error); `None` when reads are not
    /// audited.
    pub fn read_audit_stats(&self) -> Option<ReadAuditStats> {
        self.reads.as_ref().map(reads::Reads::stats)
    }
}

// Compile-time proof that the front door is shareable across threads, and
// that its async writes can be spawned on a multi-threaded runtime.
#[cfg(feature = "async")]
const _: () = {
    fn assert_send<T: Send>(_: &T) {}
    #[allow(dead_code)]
    fn writes_are_send(registry: &Registry, spec: ConnectionSpec) {
        assert_send(&registry.create_connection_async(spec));
        assert_send(&registry.sync_async());
        assert_send(&registry.settle_async());
    }
};

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Registry>();
    assert_send_sync::<Catalog>();
    assert_send_sync::<ProjectSnapshot>();
    assert_send_sync::<ResolvedEnv>();
    assert_send_sync::<Record>();
};

#[cfg(feature = "oauth-runtime")]
impl crate::oauth::runtime::Host for Registry {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }
    fn connection(&self, project: &ProjectId, id: ConnectionId) -> Option<Arc<Connection>> {
        self.catalog
            .with_project(project, |s| s.connection(id).map(|c| Arc::clone(&c.value)))
            .flatten()
    }
    fn app(&self, project: &ProjectId, owner: &AppOwner) -> Option<(Version, Arc<OAuthApp>)> {
        self.catalog
            .with_project(project, |s| {
                s.app(owner).map(|a| (a.version, Arc::clone(&a.value)))
            })
            .flatten()
    }
    fn template(
        &self,
        project: &ProjectId,
        name: &crate::model::TemplateName,
    ) -> Option<Arc<crate::model::ConnectionTemplate>> {
        self.catalog
            .with_project(project, |s| s.template(name).map(|t| Arc::clone(&t.value)))
            .flatten()
    }
    fn app_version(&self, project: &ProjectId, owner: &AppOwner) -> Option<Version> {
        self.catalog
            .with_project(project, |s| s.app(owner).map(|a| a.version))
            .flatten()
    }
    fn records(&self) -> &RuntimeRecords {
        &self.oauth_records
    }
    fn policy(&self) -> &ResolvePolicy {
        self.catalog.policy()
    }
    fn record_read(
        &self,
        actor: Option<&ActorId>,
        read: &dyn Fn() -> crate::model::SecretRead,
    ) -> Result<(), String> {
        match &self.reads {
            Some(reads) => reads.record(actor, read()).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "oauth-runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth-runtime")))]
impl Registry {
    /// Starts configuring the OAuth runtime on this registry (rule 11): its
    /// token sets and statuses live in this registry's store, its
    /// connections and applications are this registry's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use connective::prelude::*;
    /// use connective::model::CredentialKey;
    /// let registry = Arc::new(Registry::in_memory());
    /// let runtime = registry.oauth_runtime().build()?;
    /// let key = CredentialKey::new("acme".parse()?, ConnectionId::random(), "production".parse()?, None);
    /// assert_eq!(runtime.status(&key).health(), &connective::model::Health::Untested);
    /// # Ok(())
    /// # }
    /// ```
    pub fn oauth_runtime(self: &Arc<Self>) -> crate::oauth::runtime::OAuthRuntimeBuilder {
        crate::oauth::runtime::OAuthRuntimeBuilder::new(
            Arc::clone(self) as Arc<dyn crate::oauth::runtime::Host>
        )
    }
}
