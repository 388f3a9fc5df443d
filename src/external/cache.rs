//! The in-memory cache of referenced secrets: the [`ExternalSecrets`] view
//! resolution reads, kept fresh by one background task per secret location.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::{SecretStore, StoreSecret};
use crate::model::{
    ExternalFault, ExternalRef, ExternalSecrets, ExternalValue, ExternalValueRef, FetchInfo, SecretLocation,
    SecretsGeneration, StoreName, Timestamp,
};

/// The locations the cache knows, each with its slot. Grows only (a
/// reference once needed stays fresh), swapped whole when it grows so a
/// lookup reads it without a lock.
type Slots = hashbrown::HashMap<SecretLocation, Arc<Slot>>;

/// How a [`SecretCache`] is set up: its stores, by the name references use
/// (`vault`, `openbao`, a name of the host's own), and its timings.
///
/// ```no_run
/// # #[cfg(feature = "vault")] {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use connective::external::SecretCache;
/// use connective::external::vault::{VaultAuth, VaultStore};
/// use connective::model::{ResolvePolicy, StoreName};
///
/// let vault = VaultStore::new("https://vault.internal:8200", VaultAuth::token_from_env("VAULT_TOKEN")?)?;
/// let cache = SecretCache::builder()
///     .store(StoreName::vault(), vault)
///     .refresh_interval(Duration::from_secs(300))
///     .max_staleness(Duration::from_secs(3600))
///     .build()?;
/// let policy = ResolvePolicy::default().with_external_secrets(Arc::new(cache));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SecretCacheBuilder {
    stores: HashMap<StoreName, Arc<dyn SecretStore>>,
    settings: Settings,
    /// The host's runtime, if it gave one (else the cache starts its own).
    runtime: Option<tokio::runtime::Handle>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    refresh: Duration,
    max_staleness: Duration,
    first_fetch_wait: Duration,
    fetch_timeout: Duration,
    retry_min: Duration,
    jitter: f64,
}

/// Why a [`SecretCacheBuilder`] cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The refresh interval must be positive and shorter than the maximum
    /// staleness, or a healthy value would go stale between refreshes.
    #[error(
        "the refresh interval ({refresh:?}) must be positive and shorter than the maximum staleness ({max_staleness:?})"
    )]
    Timings {
        /// The refresh interval.
        refresh: Duration,
        /// The maximum staleness.
        max_staleness: Duration,
    },
    /// The jitter is a fraction of the interval, from 0 to 0.5.
    #[error("the refresh jitter must be between 0 and 0.5 of the interval")]
    Jitter,
    /// The cache's runtime could not start.
    #[error("cannot start the secret cache's runtime: {0}")]
    Runtime(String),
}

impl Default for SecretCacheBuilder {
    fn default() -> Self {
        SecretCacheBuilder {
            stores: HashMap::new(),
            settings: Settings {
                refresh: Duration::from_secs(300),
                max_staleness: Duration::from_secs(3600),
                first_fetch_wait: Duration::from_secs(5),
                fetch_timeout: Duration::from_secs(10),
                retry_min: Duration::from_secs(1),
                jitter: 0.1,
            },
            runtime: None,
        }
    }
}

impl SecretCacheBuilder {
    /// Serves references naming `name` from `store` (one store may serve
    /// several names: `vault` and `openbao` both read KV version 2).
    pub fn store(mut self, name: StoreName, store: impl SecretStore) -> Self {
        self.stores.insert(name, Arc::new(store));
        self
    }

    /// The same, with a shared store.
    pub fn shared_store(mut self, name: StoreName, store: Arc<dyn SecretStore>) -> Self {
        self.stores.insert(name, store);
        self
    }

    /// How often a secret is fetched again (default 5 minutes), give or
    /// take the jitter; a secret whose lease the store gives is fetched
    /// again after two thirds of its lease if that is sooner. Rotation in
    /// the store reaches resolution within this interval; the store sees
    /// about `3600 / interval` requests an hour per secret location,
    /// whatever the resolution rate.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.settings.refresh = interval;
        self
    }

    /// How long the last good value is served while refreshes fail
    /// (default 1 hour); past it, a lookup fails with
    /// [`ExternalFault::Stale`].
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.settings.max_staleness = staleness;
        self
    }

    /// How long a lookup of a secret never fetched waits for its first
    /// fetch (default 5 seconds; zero: not at all, the lookup answers
    /// [`ExternalFault::NotFetched`] and the fetch goes on). Only a cold
    /// secret waits; [`SecretCache::prefetch`] warms them at start.
    pub fn first_fetch_wait(mut self, wait: Duration) -> Self {
        self.settings.first_fetch_wait = wait;
        self
    }

    /// How long one fetch may take before it counts as failed with
    /// [`ExternalFault::Unavailable`] (default 10 seconds).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.settings.fetch_timeout = timeout;
        self
    }

    /// The first wait before fetching again after a failure (default 1
    /// second), doubled at each failure up to the refresh interval.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.settings.retry_min = wait;
        self
    }

    /// How far each refresh may fall from the interval, as a fraction of it
    /// (default 0.1: ±10%), so secrets fetched together spread out.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.settings.jitter = fraction;
        self
    }

    /// Runs the cache's refreshers and its stores' requests on the host's
    /// tokio runtime (`handle`) instead of a private runtime of one thread.
    /// The runtime needs its timers and I/O enabled
    /// ([`enable_all`](tokio::runtime::Builder::enable_all)), and must
    /// outlive the cache's use: once it shuts down, secrets are no longer
    /// refreshed (their last values serve until the maximum staleness).
    ///
    /// Lookups (resolution) may be called from inside that runtime. A
    /// secret never fetched yet is then waited for as
    /// [`first_fetch_wait`](Self::first_fetch_wait) says on a
    /// multi-thread runtime (the waiting worker hands its other tasks on,
    /// [`block_in_place`](tokio::task::block_in_place)), but not at all on
    /// a current-thread runtime, whose one thread is the one that would
    /// fetch it: that lookup answers [`ExternalFault::NotFetched`] at once
    /// and the fetch goes on. Such a host warms its secrets with
    /// [`SecretCache::prefetch_async`] at start.
    ///
    /// ```
    /// use connective::external::SecretCache;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let cache = SecretCache::builder().runtime(runtime.handle().clone()).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// The cache, with a private runtime of one thread for its fetches
    /// (unless [`runtime`](Self::runtime) gave the host's).
    pub fn build(self) -> Result<SecretCache, SettingsError> {
        let s = self.settings;
        if s.refresh.is_zero() || s.refresh >= s.max_staleness {
            return Err(SettingsError::Timings {
                refresh: s.refresh,
                max_staleness: s.max_staleness,
            });
        }
        if !(0.0..=0.5).contains(&s.jitter) {
            return Err(SettingsError::Jitter);
        }
        let (handle, runtime) = match self.runtime {
            Some(handle) => (handle, None),
            None => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("connective-secrets")
                    .enable_all()
                    .build()
                    .map_err(|e| SettingsError::Runtime(e.to_string()))?;
                (runtime.handle().clone(), Some(runtime))
            }
        };
        static VIEWS: AtomicU64 = AtomicU64::new(1);
        let id = VIEWS.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::new(Inner {
            id,
            handle,
            tasks: Mutex::new(Vec::new()),
            stores: self.stores,
            settings: s,
            slots: ArcSwap::from_pointee(Slots::default()),
            grow: Mutex::new(()),
            current: ArcSwap::from_pointee(Generation {
                cache: id,
                chunks: Vec::new(),
                len: 0,
            }),
            publish: Mutex::new(()),
            generation: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        Ok(SecretCache {
            inner,
            _runtime: Arc::new(RuntimeGuard(runtime)),
        })
    }
}

/// The in-memory cache of values referenced in external secret stores:
/// the [`ExternalSecrets`] view a host gives resolution
/// ([`ResolvePolicy::with_external_secrets`](crate::model::ResolvePolicy::with_external_secrets)).
///
/// - **Lookups are memory reads**: the cache numbers each key looked up,
///   attaches that number to the reference at its first lookup, and keeps
///   every key's answer ready in one immutable generation, replaced whole
///   at every fetch; so a lookup is one atomic load of the generation and
///   an index into it (no key search), and a resolution pins the
///   generation once ([`ExternalSecrets::pin`]) and borrows all its
///   referenced values from it (no copy, no reference count per value). A
///   store is never called on them (a secret never fetched yet waits for
///   its first fetch, up to [`SecretCacheBuilder::first_fetch_wait`]).
/// - **One task per secret location** fetches it, first when it is needed
///   (or at [`SecretCache::prefetch`]), then every refresh interval (±
///   jitter, sooner for a lease): however many resolutions want a secret,
///   the store sees one request at a time for it.
/// - **A store that fails** leaves the last good value serving, its
///   provenance saying since when refreshes fail, up to the maximum
///   staleness; then lookups fail with [`ExternalFault::Stale`] naming the
///   cause. A secret that is gone, a key that is missing, a path that may
///   not be read are faults at once ([`ExternalFault::is_definitive`]).
/// - **Values stay in memory**, in [`SecretValue`](crate::model::SecretValue)s
///   (zeroed when dropped): nothing is written to disk, printed, or put in
///   an error.
///
/// Cloning shares the cache; the fetching stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct SecretCache {
    inner: Arc<Inner>,
    _runtime: Arc<RuntimeGuard>,
}

/// Counts of what a [`SecretCache`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Secret locations known (each fetched and kept fresh).
    pub locations: usize,
    /// Reads sent to the stores.
    pub requests: u64,
    /// Reads that failed.
    pub failures: u64,
}

struct RuntimeGuard(Option<tokio::runtime::Runtime>);

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

struct Inner {
    /// This cache's number, for the state it attaches to references.
    id: u64,
    /// The runtime the refreshers run on: the cache's own, or the host's.
    handle: tokio::runtime::Handle,
    /// The refreshers, stopped when the cache is dropped (on a host's
    /// runtime they would otherwise sleep on until their next refresh).
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    stores: HashMap<StoreName, Arc<dyn SecretStore>>,
    settings: Settings,
    slots: ArcSwap<Slots>,
    grow: Mutex<()>,
    /// Every key's answer as of the last change: what lookups read and
    /// resolutions pin.
    current: ArcSwap<Generation>,
    /// Serializes the changes of `current` (taken after a slot's `keys`).
    publish: Mutex<()>,
    generation: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
}

/// One secret location: its state (none before the first fetch ends), the
/// keys looked up there, and a count of attempts its first-fetch waiters
/// watch.
struct Slot {
    state: ArcSwapOption<State>,
    /// One entry per key a reference attached to this cache asked for,
    /// its answer in the cache's generation made again at every change of
    /// `state` (under this lock, which every change of `state` takes): a
    /// lookup reads the answer ready, without finding the key in the secret.
    keys: Mutex<Vec<KeyEntry>>,
    attempts: Mutex<u64>,
    attempted: Condvar,
}

/// A key of a location and the place of its answer in every generation
/// made since it was first looked up (which the cache attaches to the
/// references of the key it looks up: [`ExternalRef::cache_index`]).
struct KeyEntry {
    key: smol_str::SmolStr,
    index: usize,
}

/// Answers per chunk of a [`Generation`]: a change copies the chunk it
/// touches and shares the others with the generation before.
const CHUNK: usize = 64;

/// The answer of every key looked up so far, by [`KeyEntry::index`], as of
/// one moment: immutable, replaced whole by each change (a fetch, a new
/// key), so a resolution that holds it reads consistent values that no
/// later refresh changes.
#[derive(Clone)]
struct Generation {
    /// The cache's number: which references' entries index it.
    cache: u64,
    chunks: Vec<Arc<Chunk>>,
    len: usize,
}

/// [`CHUNK`] answers of a [`Generation`], from `CHUNK * n` on.
#[derive(Clone)]
struct Chunk {
    /// The value of each answer served without a clock to read (refreshes
    /// succeeding), one word apiece in a row of their own: what a
    /// resolution reads for a referenced value is that word (the keys one
    /// resolution looks up, numbered together, are eight to a cache line),
    /// not the answer nor the value behind it.
    healthy: [Option<Arc<ExternalValue>>; CHUNK],
    /// Every answer, for the others (a fault, a value served while
    /// refreshes fail) and for lookups.
    answers: Vec<Arc<Answer>>,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            healthy: std::array::from_fn(|_| None),
            answers: Vec::with_capacity(CHUNK),
        }
    }

    /// Sets the answer at `at` (an index in the chunk, at most its length).
    fn put(&mut self, at: usize, answer: Answer) {
        let Some(healthy) = self.healthy.get_mut(at).filter(|_| at <= self.answers.len()) else {
            return;
        };
        *healthy = match &answer {
            Answer::Value { value, failing: None } => Some(Arc::clone(value)),
            _ => None,
        };
        match self.answers.get_mut(at) {
            Some(slot) => *slot = Arc::new(answer),
            None => self.answers.push(Arc::new(answer)),
        }
    }
}

impl Generation {
    fn answer(&self, index: usize) -> Option<&Answer> {
        let chunk = self.chunks.get(index / CHUNK)?;
        chunk.answers.get(index % CHUNK).map(|answer| &**answer)
    }

    /// Replaces the answer at `index` (below `len`).
    fn set(&mut self, index: usize, answer: Answer) {
        if index < self.len
            && let Some(chunk) = self.chunks.get_mut(index / CHUNK)
        {
            Arc::make_mut(chunk).put(index % CHUNK, answer);
        }
    }

    /// Adds `answer`; its index.
    fn push(&mut self, answer: Answer) -> usize {
        let index = self.len;
        if index.is_multiple_of(CHUNK) {
            self.chunks.push(Arc::new(Chunk::new()));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            Arc::make_mut(chunk).put(index % CHUNK, answer);
        }
        self.len += 1;
        index
    }
}

impl SecretsGeneration for Generation {
    #[inline]
    fn get(&self, reference: &ExternalRef) -> Option<Result<ExternalValueRef<'_>, ExternalFault>> {
        let index = reference.cache_index(self.cache)?;
        let chunk = self.chunks.get(index / CHUNK)?;
        let at = index % CHUNK;
        if let Some(Some(value)) = chunk.healthy.get(at) {
            return Some(Ok(borrowed(value)));
        }
        chunk.answers.get(at).map(|answer| answer.borrow())
    }
}

/// `value`, borrowed.
#[inline]
fn borrowed(value: &ExternalValue) -> ExternalValueRef<'_> {
    ExternalValueRef {
        value: &value.value,
        fetch: &value.fetch,
    }
}

/// What a lookup of one key answers: a value (with the instant it goes
/// stale if its refreshes are failing), or a fault.
enum Answer {
    Value {
        /// Shared with the generation's row of healthy values.
        value: Arc<ExternalValue>,
        /// Set while refreshes fail: past it, the value is stale.
        failing: Option<Stale>,
    },
    Fault(ExternalFault),
}

/// When a value served while refreshes fail goes stale, and why.
struct Stale {
    at: Instant,
    fetched_at: Timestamp,
    cause: ExternalFault,
}

impl Answer {
    /// The answer of `key` in `state`.
    fn of(state: Option<&State>, key: &str) -> Answer {
        let Some(state) = state else {
            return Answer::Fault(ExternalFault::NotFetched);
        };
        let (Some(good), Some(fetch)) = (&state.good, &state.fetch) else {
            return Answer::Fault(match &state.failure {
                Some(f) => f.fault.clone(),
                None => ExternalFault::NotFetched,
            });
        };
        match good.secret.get(key) {
            Some(value) => Answer::Value {
                value: Arc::new(ExternalValue {
                    value: value.clone(),
                    fetch: fetch.clone(),
                }),
                failing: state.failure.as_ref().map(|f| Stale {
                    at: good.stale_at,
                    fetched_at: good.fetched_at,
                    cause: f.fault.clone(),
                }),
            },
            None => Answer::Fault(ExternalFault::KeyMissing),
        }
    }

    /// What a lookup gives now, borrowed.
    #[inline]
    fn borrow(&self) -> Result<ExternalValueRef<'_>, ExternalFault> {
        match self {
            Answer::Value { value, failing: None } => Ok(borrowed(value)),
            Answer::Value {
                value,
                failing: Some(stale),
            } => {
                if Instant::now() >= stale.at {
                    Err(ExternalFault::Stale {
                        fetched_at: stale.fetched_at,
                        cause: Box::new(stale.cause.clone()),
                    })
                } else {
                    Ok(borrowed(value))
                }
            }
            Answer::Fault(fault) => Err(fault.clone()),
        }
    }
}

/// What the last fetches of a location gave: one swap, so a lookup reads
/// it with one load.
struct State {
    /// The last good value (none after a definitive fault).
    good: Option<Arc<Fetched>>,
    /// Why the refreshes fail, while they do.
    failure: Option<Failure>,
    /// The provenance lookups give the good value (built once per state:
    /// lookups share it).
    fetch: Option<Arc<FetchInfo>>,
}

impl State {
    fn new(good: Option<Arc<Fetched>>, failure: Option<Failure>) -> Self {
        let fetch = good.as_ref().map(|g| {
            let info = FetchInfo::new(g.secret.version().cloned(), g.fetched_at);
            Arc::new(match &failure {
                Some(f) => info.failing_since(f.since),
                None => info,
            })
        });
        State { good, failure, fetch }
    }
}

struct Fetched {
    secret: StoreSecret,
    fetched_at: Timestamp,
    /// When it stops being served if refreshes keep failing.
    stale_at: Instant,
}

struct Failure {
    fault: ExternalFault,
    since: Timestamp,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|e| e.into_inner());
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

/// Whether a lookup may block its thread to wait for a first fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Not on the refreshers' runtime: block.
    Block,
    /// On a worker (or in `block_on`) of the refreshers' multi-thread
    /// runtime: block in place, the worker's other tasks handed on.
    InPlace,
    /// On the refreshers' current-thread runtime: blocking would stop the
    /// very fetch waited for.
    No,
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut stores: Vec<&str> = self.inner.stores.keys().map(StoreName::as_str).collect();
        stores.sort_unstable();
        f.debug_struct("SecretCache")
            .field("stores", &stores)
            .field("stats", &self.stats())
            .finish()
    }
}

impl SecretCache {
    /// A builder with the default timings and no store.
    pub fn builder() -> SecretCacheBuilder {
        SecretCacheBuilder::default()
    }

    /// Fetches every secret `references` name that the cache does not know
    /// yet (in parallel, one request per location), waiting at most
    /// `wait` for them: warming the cache at start. Answers the references
    /// that have no value, and why (as a lookup would).
    ///
    /// Called from inside the host's current-thread runtime the cache runs
    /// on (see [`SecretCacheBuilder::runtime`]), it starts the fetches but
    /// does not wait: [`SecretCache::prefetch_async`] does.
    pub fn prefetch<'r>(
        &self,
        references: impl IntoIterator<Item = &'r ExternalRef>,
        wait: Duration,
    ) -> Vec<(ExternalRef, ExternalFault)> {
        self.prefetch_with(references, wait, self.inner.wait_here())
    }

    fn prefetch_with<'r>(
        &self,
        references: impl IntoIterator<Item = &'r ExternalRef>,
        wait: Duration,
        how: Wait,
    ) -> Vec<(ExternalRef, ExternalFault)> {
        let references: Vec<&ExternalRef> = references.into_iter().collect();
        let slots: Vec<Option<Arc<Slot>>> =
            references.iter().map(|r| self.inner.slot(r.location())).collect();
        let deadline = crate::deadline::after(wait);
        for slot in slots.iter().flatten() {
            slot.wait_first(deadline.saturating_duration_since(Instant::now()), how);
        }
        references
            .into_iter()
            .filter_map(|r| self.inner.read(r).err().map(|fault| (r.clone(), fault)))
            .collect()
    }

    /// [`SecretCache::prefetch`] for an async host: waits without blocking
    /// its runtime.
    pub async fn prefetch_async(
        &self,
        references: Vec<ExternalRef>,
        wait: Duration,
    ) -> Vec<(ExternalRef, ExternalFault)> {
        let cache = self.clone();
        let task = self
            .inner
            .handle
            // A thread of the blocking pool: never one a refresher needs.
            .spawn_blocking(move || cache.prefetch_with(references.iter(), wait, Wait::Block));
        task.await.unwrap_or_default()
    }

    /// What the cache did so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            locations: self.inner.slots.load().len(),
            requests: self.inner.requests.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
        }
    }
}

impl ExternalSecrets for SecretCache {
    fn lookup(&self, reference: &ExternalRef) -> Result<ExternalValue, ExternalFault> {
        match self.inner.read(reference) {
            Err(ExternalFault::NotFetched) => {
                // First need: start the fetch and wait for it, briefly.
                if let Some(slot) = self.inner.slot(reference.location()) {
                    slot.wait_first(self.inner.settings.first_fetch_wait, self.inner.wait_here());
                }
                self.inner.read(reference)
            }
            answer => answer,
        }
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The cache's current generation: every key looked up so far, with the
    /// answer a lookup gives now (one reference count).
    fn pin(&self) -> Option<Arc<dyn SecretsGeneration>> {
        Some(self.inner.current.load_full())
    }
}

impl Inner {
    /// The value of `reference` from memory, or why there is none
    /// (`NotFetched` when its location is unknown or not fetched yet).
    fn read(&self, reference: &ExternalRef) -> Result<ExternalValue, ExternalFault> {
        // The entry of the reference's key this cache attached to the
        // reference at an earlier lookup: its answer is ready.
        if let Some(index) = reference.cache_index(self.id) {
            return self.answer(index);
        }
        let slots = self.slots.load();
        let Some(slot) = slots.get(reference.location()) else {
            return Err(if self.stores.contains_key(reference.store()) {
                ExternalFault::NotFetched
            } else {
                ExternalFault::UnknownStore {
                    store: reference.store().clone(),
                }
            });
        };
        // Attached for the next lookups, unless another cache keeps the
        // reference's place (then this cache reads the slot each time).
        match reference.cache_index_or_attach(self.id, || self.entry(slot, reference.key())) {
            Some(index) => self.answer(index),
            None => Self::read_slot(slot, reference),
        }
    }

    /// What a lookup of the key whose answer is at `index` gives now.
    fn answer(&self, index: usize) -> Result<ExternalValue, ExternalFault> {
        match self.current.load().answer(index) {
            Some(answer) => answer.borrow().map(ExternalValueRef::to_owned_value),
            // Not reached: an entry is numbered in the generation it is made in.
            None => Err(ExternalFault::NotFetched),
        }
    }

    /// The place of `key`'s answer in `slot`'s entries, made (with its
    /// answer as of now, in a new generation) if it is new.
    fn entry(&self, slot: &Slot, key: &str) -> usize {
        let mut keys = slot.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = keys.iter().find(|e| e.key == key) {
            return entry.index;
        }
        let answer = Answer::of(slot.state.load().as_deref(), key);
        let index = self.publish(|next| next.push(answer));
        keys.push(KeyEntry {
            key: key.into(),
            index,
        });
        index
    }

    /// Sets `slot`'s state, and every answer of its keys with it, in a new
    /// generation.
    fn set_state(&self, slot: &Slot, state: State) {
        let keys = slot.keys.lock().unwrap_or_else(|e| e.into_inner());
        let state = Arc::new(state);
        if !keys.is_empty() {
            self.publish(|next| {
                for entry in keys.iter() {
                    next.set(entry.index, Answer::of(Some(&state), &entry.key));
                }
            });
        }
        slot.state.store(Some(state));
    }

    /// Makes the next generation with `change` and makes it current.
    fn publish<R>(&self, change: impl FnOnce(&mut Generation) -> R) -> R {
        let _publish = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Generation::clone(&self.current.load());
        let out = change(&mut next);
        self.current.store(Arc::new(next));
        out
    }

    fn read_slot(slot: &Slot, reference: &ExternalRef) -> Result<ExternalValue, ExternalFault> {
        let state = slot.state.load();
        let Some(state) = &*state else {
            return Err(ExternalFault::NotFetched);
        };
        let failure = &state.failure;
        let (Some(good), Some(fetch)) = (&state.good, &state.fetch) else {
            return Err(failure
                .as_ref()
                .map_or(ExternalFault::NotFetched, |f| f.fault.clone()));
        };
        if let Some(failure) = failure
            && Instant::now() >= good.stale_at
        {
            return Err(ExternalFault::Stale {
                fetched_at: good.fetched_at,
                cause: Box::new(failure.fault.clone()),
            });
        }
        match good.secret.get(reference.key()) {
            Some(value) => Ok(ExternalValue {
                value: value.clone(),
                fetch: fetch.clone(),
            }),
            None => Err(ExternalFault::KeyMissing),
        }
    }

    /// The slot of `location`, made (and its refresher started) if it is new;
    /// `None` for a store the cache does not have.
    fn slot(self: &Arc<Self>, location: &SecretLocation) -> Option<Arc<Slot>> {
        if let Some(slot) = self.slots.load().get(location) {
            return Some(slot.clone());
        }
        let store = self.stores.get(location.store())?.clone();
        let _grow = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = self.slots.load().get(location) {
            return Some(slot.clone());
        }
        let slot = Arc::new(Slot {
            state: ArcSwapOption::empty(),
            keys: Mutex::new(Vec::new()),
            attempts: Mutex::new(0),
            attempted: Condvar::new(),
        });
        let mut grown = Slots::clone(&self.slots.load());
        grown.insert(location.clone(), slot.clone());
        self.slots.store(Arc::new(grown));
        let task = refresher(Arc::downgrade(self), store, location.clone(), slot.clone());
        // The task reports to the subscriber of the thread that first
        // needed the secret (the global one, for most hosts).
        #[cfg(feature = "tracing")]
        let task = tracing::instrument::WithSubscriber::with_current_subscriber(task);
        let task = self.handle.spawn(task).abort_handle();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(task);
        Some(slot)
    }

    /// How a lookup on this thread may wait for a first fetch.
    fn wait_here(&self) -> Wait {
        match tokio::runtime::Handle::try_current() {
            Ok(current) if current.id() == self.handle.id() => match current.runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => Wait::InPlace,
                _ => Wait::No,
            },
            _ => Wait::Block,
        }
    }

    /// A jittered wait around `base`.
    fn jittered(&self, base: Duration) -> Duration {
        let spread = self.settings.jitter;
        if spread == 0.0 {
            return base;
        }
        let unit = getrandom::u64().map_or(0.5, |n| (n >> 11) as f64 / (1u64 << 53) as f64);
        // At most 1.5 times `base`: past what a Duration holds, the longest.
        Duration::try_from_secs_f64(base.as_secs_f64() * (1.0 + spread * (2.0 * unit - 1.0)))
            .unwrap_or(Duration::MAX)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl Slot {
    /// Waits until the first fetch of this slot is done, at most `wait`,
    /// as `how` allows.
    fn wait_first(&self, wait: Duration, how: Wait) {
        match how {
            Wait::Block => self.block_first(wait),
            Wait::InPlace => tokio::task::block_in_place(|| self.block_first(wait)),
            Wait::No => {}
        }
    }

    fn block_first(&self, wait: Duration) {
        let deadline = crate::deadline::after(wait);
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        while *attempts == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            attempts = self
                .attempted
                .wait_timeout(attempts, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn attempted(&self) {
        *self.attempts.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.attempted.notify_all();
    }
}

/// Keeps one location fresh: fetches, stores the answer, sleeps until the
/// next refresh (or retry), for as long as the cache lives.
async fn refresher(
    cache: Weak<Inner>,
    store: Arc<dyn SecretStore>,
    location: SecretLocation,
    slot: Arc<Slot>,
) {
    let mut retry: Option<Duration> = None;
    loop {
        let Some(inner) = cache.upgrade() else { return };
        let settings = inner.settings;
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let read = store.read(&location);
        #[cfg(feature = "tracing")]
        let read = tracing::Instrument::instrument(
            read,
            tracing::debug_span!("connective.secret_fetch", store = %location.store(), location = %location),
        );
        let answer = match tokio::time::timeout(settings.fetch_timeout, read).await {
            Ok(answer) => answer,
            Err(_) => Err(ExternalFault::Unavailable {
                message: format!("no answer within {:?}", settings.fetch_timeout),
            }),
        };
        let next = match answer {
            Ok(secret) => {
                retry = None;
                let interval = match secret.ttl() {
                    Some(lease) if !lease.is_zero() => settings.refresh.min(lease.mul_f64(2.0 / 3.0)),
                    _ => settings.refresh,
                };
                inner.set_state(
                    &slot,
                    State::new(
                        Some(Arc::new(Fetched {
                            secret,
                            fetched_at: Timestamp::now(),
                            stale_at: crate::deadline::after(settings.max_staleness),
                        })),
                        None,
                    ),
                );
                inner.bump();
                inner.jittered(interval)
            }
            Err(fault) => {
                inner.failures.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "tracing")]
                tracing::warn!(store = %location.store(), location = %location, fault = %fault, "external secret fetch failed");
                let before = slot.state.load_full();
                let since = before
                    .as_ref()
                    .and_then(|s| s.failure.as_ref())
                    .map_or_else(Timestamp::now, |f| f.since);
                // A definitive fault drops the value at once.
                let good = match fault.is_definitive() {
                    true => None,
                    false => before.as_ref().and_then(|s| s.good.clone()),
                };
                inner.set_state(&slot, State::new(good.clone(), Some(Failure { fault, since })));
                inner.bump();
                let wait = retry.map_or(settings.retry_min, |w| (w * 2).min(settings.refresh));
                retry = Some(wait);
                // Wake up when the last good value goes stale, so the
                // generation says lookups changed.
                match good {
                    Some(good) => {
                        let until_stale = good.stale_at.saturating_duration_since(Instant::now());
                        if until_stale > Duration::ZERO {
                            wait.min(until_stale)
                        } else {
                            wait
                        }
                    }
                    None => wait,
                }
            }
        };
        slot.attempted();
        drop(inner);
        tokio::time::sleep(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::external::StoreFuture;
    use crate::model::SecretValue;
    use std::sync::atomic::AtomicBool;

    /// A store answering `value-N` for the N-th read, or failing while `down`.
    #[derive(Default)]
    struct Counting {
        reads: AtomicU64,
        down: AtomicBool,
    }

    impl SecretStore for Arc<Counting> {
        fn read<'a>(&'a self, location: &'a SecretLocation) -> StoreFuture<'a> {
            Box::pin(async move {
                let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if self.down.load(Ordering::SeqCst) {
                    return Err(ExternalFault::Unavailable {
                        message: "connection refused".into(),
                    });
                }
                match location.path() {
                    "gone" => Err(ExternalFault::NotFound),
                    _ => Ok(StoreSecret::new()
                        .with_key("k", SecretValue::new(format!("value-{n}")))
                        .with_version(n.to_string().parse().unwrap())),
                }
            })
        }
    }

    fn reference(text: &str) -> ExternalRef {
        text.parse().unwrap()
    }

    fn cache(store: &Arc<Counting>, refresh_ms: u64, stale_ms: u64) -> SecretCache {
        SecretCache::builder()
            .store(StoreName::vault(), store.clone())
            .refresh_interval(Duration::from_millis(refresh_ms))
            .max_staleness(Duration::from_millis(stale_ms))
            .retry_after(Duration::from_millis(20))
            .jitter(0.0)
            .build()
            .unwrap()
    }

    #[test]
    fn timings_are_checked() {
        let err = SecretCache::builder()
            .refresh_interval(Duration::from_secs(10))
            .max_staleness(Duration::from_secs(5))
            .build()
            .unwrap_err();
        assert!(matches!(err, SettingsError::Timings { .. }));
        assert_eq!(
            SecretCache::builder().jitter(0.9).build().unwrap_err(),
            SettingsError::Jitter
        );
    }

    #[test]
    fn concurrent_cold_lookups_share_one_fetch_and_warm_ones_fetch_nothing() {
        let store = Arc::new(Counting::default());
        let cache = cache(&store, 60_000, 120_000);
        let r = reference("vault:secret/crm#k");
        std::thread::scope(|s| {
            for _ in 0..32 {
                s.spawn(|| assert_eq!(cache.lookup(&r).unwrap().value.expose(), "value-1"));
            }
        });
        for _ in 0..10_000 {
            cache.lookup(&r).unwrap();
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().requests, 1);
        // Another key of the same secret is in the same answer.
        assert_eq!(
            cache.lookup(&reference("vault:secret/crm#other")).unwrap_err(),
            ExternalFault::KeyMissing
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn refreshes_follow_the_interval_and_staleness_ends_the_last_good_value() {
        let store = Arc::new(Counting::default());
        let cache = cache(&store, 100, 600);
        let r = reference("vault:secret/crm#k");
        let first = cache.lookup(&r).unwrap();
        std::thread::sleep(Duration::from_millis(350));
        let later = cache.lookup(&r).unwrap();
        assert_ne!(
            later.value.expose(),
            first.value.expose(),
            "refreshed in the background"
        );
        assert!(later.fetch.version > first.fetch.version);
        store.down.store(true, Ordering::SeqCst);
        let generation = cache.generation();
        std::thread::sleep(Duration::from_millis(250));
        let serving = cache.lookup(&r).unwrap();
        assert!(serving.fetch.failing_since.is_some(), "{:?}", serving.fetch);
        assert!(cache.generation() > generation);
        std::thread::sleep(Duration::from_millis(600));
        match cache.lookup(&r).unwrap_err() {
            ExternalFault::Stale { cause, .. } => {
                assert!(matches!(*cause, ExternalFault::Unavailable { .. }))
            }
            other => panic!("expected stale, got {other}"),
        }
        store.down.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        assert!(cache.lookup(&r).is_ok(), "recovers when the store is back");
    }

    #[test]
    fn an_async_host_prefetches_without_blocking_its_runtime() {
        let store = Arc::new(Counting::default());
        let cache = cache(&store, 60_000, 120_000);
        let host = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let refs = vec![reference("vault:secret/a#k"), reference("vault:secret/gone#k")];
        let missing = host.block_on(async {
            // A timer on the host's one thread keeps running meanwhile.
            let ticks = tokio::spawn(async {
                let mut n = 0;
                for _ in 0..5 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    n += 1;
                }
                n
            });
            let missing = cache.prefetch_async(refs, Duration::from_secs(5)).await;
            assert_eq!(ticks.await.unwrap(), 5);
            missing
        });
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].1, ExternalFault::NotFound);
        assert_eq!(cache.stats().locations, 2);
        assert!(cache.lookup(&reference("vault:secret/a#k")).is_ok());
    }

    /// A store answering `value-N` and noting the thread of each read.
    #[derive(Default)]
    struct Noting {
        counting: Arc<Counting>,
        threads: Mutex<Vec<std::thread::ThreadId>>,
    }

    impl SecretStore for Arc<Noting> {
        fn read<'a>(&'a self, location: &'a SecretLocation) -> StoreFuture<'a> {
            self.threads.lock().unwrap().push(std::thread::current().id());
            self.counting.read(location)
        }
    }

    fn on_runtime(store: &Arc<Noting>, handle: tokio::runtime::Handle) -> SecretCache {
        SecretCache::builder()
            .store(StoreName::vault(), store.clone())
            .refresh_interval(Duration::from_millis(100))
            .max_staleness(Duration::from_secs(60))
            .first_fetch_wait(Duration::from_secs(3))
            .jitter(0.0)
            .runtime(handle)
            .build()
            .unwrap()
    }

    #[test]
    fn on_a_host_current_thread_runtime_fetches_run_there_and_a_lookup_inside_it_does_not_wait() {
        let host = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(Noting::default());
        let cache = on_runtime(&store, host.handle().clone());
        let r = reference("vault:secret/crm#k");
        host.block_on(async {
            // The one thread that would fetch is this one: no waiting.
            let asked = Instant::now();
            assert_eq!(cache.lookup(&r).unwrap_err(), ExternalFault::NotFetched);
            assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
            assert_eq!(cache.prefetch([&r], Duration::from_secs(3)).len(), 1);
            assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
            // Awaited, the fetch runs.
            let missing = cache
                .prefetch_async(vec![r.clone()], Duration::from_secs(3))
                .await;
            assert!(missing.is_empty(), "{missing:?}");
            let first = cache.lookup(&r).unwrap();
            // Refreshed in the background, on this runtime.
            tokio::time::sleep(Duration::from_millis(350)).await;
            let later = cache.lookup(&r).unwrap();
            assert!(later.fetch.version > first.fetch.version, "{:?}", later.fetch);
        });
        let here = std::thread::current().id();
        let threads = store.threads.lock().unwrap().clone();
        assert!(
            threads.len() >= 2 && threads.iter().all(|t| *t == here),
            "{threads:?}"
        );
        assert_eq!(cache.stats().locations, 1);
    }

    #[test]
    fn on_a_host_multi_thread_runtime_a_lookup_inside_a_task_waits_for_the_first_fetch_in_place() {
        // One worker: a lookup blocking it would stop the fetch it waits for.
        let host = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("host-worker")
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(Noting::default());
        let cache = on_runtime(&store, host.handle().clone());
        let (a, b) = (reference("vault:secret/a#k"), reference("vault:secret/b#k"));
        let in_task = {
            let cache = cache.clone();
            host.block_on(async move {
                tokio::spawn(async move {
                    let asked = Instant::now();
                    (
                        cache.lookup(&a).map(|v| v.value.expose().to_owned()),
                        asked.elapsed(),
                    )
                })
                .await
                .unwrap()
            })
        };
        assert_eq!(in_task.0.unwrap(), "value-1");
        assert!(in_task.1 < Duration::from_secs(2), "waited {:?}", in_task.1);
        // From the runtime's own `block_on` too.
        let in_block_on = host.block_on(async { cache.lookup(&b).map(|v| v.value.expose().to_owned()) });
        assert_eq!(in_block_on.unwrap(), "value-2");
        // No thread of the cache's own: every read ran on the host's worker.
        drop(cache);
        let names: Vec<_> = store.threads.lock().unwrap().clone();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            !names.contains(&std::thread::current().id()),
            "a read ran on the caller's thread"
        );
    }

    #[test]
    fn a_dropped_cache_stops_its_refreshers_on_the_host_runtime() {
        let host = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(Noting::default());
        let cache = SecretCache::builder()
            .store(StoreName::vault(), store.clone())
            .refresh_interval(Duration::from_secs(60))
            .runtime(host.handle().clone())
            .build()
            .unwrap();
        cache.lookup(&reference("vault:secret/a#k")).unwrap();
        assert_eq!(Arc::strong_count(&store), 2, "the cache holds the store");
        drop(cache);
        // The refresher, asleep for a minute, is aborted and lets go of it.
        let dropped = Instant::now();
        while Arc::strong_count(&store) > 1 {
            assert!(
                dropped.elapsed() < Duration::from_secs(2),
                "the refresher lives on"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_reference_looked_up_in_two_caches_gets_each_ones_value() {
        let (a, b) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
        b.reads.store(100, Ordering::SeqCst);
        let (first, second) = (cache(&a, 60_000, 120_000), cache(&b, 60_000, 120_000));
        let r = reference("vault:secret/crm#k");
        for _ in 0..3 {
            // The first cache attaches its slot to the reference; the second
            // must not read it.
            assert_eq!(first.lookup(&r).unwrap().value.expose(), "value-1");
            assert_eq!(second.lookup(&r).unwrap().value.expose(), "value-101");
        }
    }

    #[test]
    fn a_pinned_generation_keeps_its_answers_and_the_next_one_has_the_refresh() {
        let store = Arc::new(Counting::default());
        let cache = cache(&store, 400, 60_000);
        let r = reference("vault:secret/crm#k");
        let before = cache.pin().unwrap();
        assert!(before.get(&r).is_none(), "never looked up");
        assert_eq!(cache.lookup(&r).unwrap().value.expose(), "value-1");
        let pinned = cache.pin().unwrap();
        let held = pinned.get(&r).unwrap().unwrap();
        assert_eq!(held.value.expose(), "value-1");
        // The answer a lookup gives, shared (not copied).
        assert!(held.value.same_as(&cache.lookup(&r).unwrap().value));
        let start = Instant::now();
        while cache.lookup(&r).unwrap().value.expose() == "value-1" {
            assert!(start.elapsed() < Duration::from_secs(5), "no refresh");
            std::thread::sleep(Duration::from_millis(10));
        }
        let held = pinned.get(&r).unwrap().unwrap();
        assert_eq!(held.value.expose(), "value-1");
        assert_eq!(held.fetch.version, Some("1".parse().unwrap()));
        let now = cache.pin().unwrap();
        let fresh = now.get(&r).unwrap().unwrap();
        assert_eq!(fresh.value.expose(), cache.lookup(&r).unwrap().value.expose());
        assert!(fresh.fetch.version > held.fetch.version);
        assert!(before.get(&r).is_none(), "an older generation stays as it was");
        // Another key of the location is numbered when first looked up.
        assert_eq!(
            cache.lookup(&reference("vault:secret/crm#other")).unwrap_err(),
            ExternalFault::KeyMissing
        );
        assert!(now.get(&reference("vault:secret/crm#other")).is_none());
    }

    #[test]
    fn a_resolution_holds_one_generation_for_all_its_referenced_values() {
        use crate::model::{ConnectionSpec, Mappings, Param, ResolvePolicy};
        use crate::registry::Registry;
        use crate::resolve::{ResolveRequest, Resolver as _};

        let store = Arc::new(Counting::default());
        let cache = cache(&store, 60_000, 120_000);
        let registry = Registry::builder()
            .policy(ResolvePolicy::default().with_external_secrets(Arc::new(cache.clone())))
            .resolve_memo(0)
            .build()
            .unwrap();
        let mut spec = ConnectionSpec::project("acme", "crm");
        let mut entries = Vec::new();
        for i in 0..8 {
            spec = spec.param(Param::secret(format!("Key{i}")).default_ref(format!("vault:secret/crm{i}#k")));
            entries.push((format!("Key{i}"), format!("CRM_KEY_{i}")));
        }
        registry.create_connection(spec.build().unwrap()).unwrap();
        registry
            .set_mappings(
                Mappings::of("acme", "orders")
                    .by_name("crm", entries.iter().map(|(p, v)| (p.as_str(), v.clone())))
                    .build()
                    .unwrap(),
                None,
            )
            .unwrap();
        let request = ResolveRequest::parse("acme", "orders", "production").unwrap();
        // The first resolution fetches (the generation changes meanwhile).
        assert_eq!(registry.resolve(&request).unwrap().len(), 8);
        let counts = || Arc::strong_count(&cache.inner.current.load_full()) - 1;
        let idle = counts();
        let env = registry.resolve(&request).unwrap();
        assert!(env.expose("CRM_KEY_7").unwrap().starts_with("value-"));
        assert_eq!(counts(), idle + 1, "one count for eight values");
        let copy = env.clone();
        assert_eq!(counts(), idle + 1, "copies share it");
        drop((env, copy));
        assert_eq!(counts(), idle);
    }

    #[test]
    fn definitive_faults_and_unknown_stores_are_typed() {
        let store = Arc::new(Counting::default());
        let cache = cache(&store, 60_000, 120_000);
        assert_eq!(
            cache.lookup(&reference("vault:secret/gone#k")).unwrap_err(),
            ExternalFault::NotFound
        );
        assert_eq!(
            cache.lookup(&reference("aws-sm:eu/db#k")).unwrap_err(),
            ExternalFault::UnknownStore {
                store: "aws-sm".parse().expect("store name")
            }
        );
        assert_eq!(
            cache
                .lookup(&reference("aws-sm:eu/db#k"))
                .unwrap_err()
                .to_string(),
            "no secret store named aws-sm is configured"
        );
        let missing = cache.prefetch(
            [&reference("vault:secret/a#k"), &reference("vault:secret/gone#k")],
            Duration::from_secs(5),
        );
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].1, ExternalFault::NotFound);
    }
}
