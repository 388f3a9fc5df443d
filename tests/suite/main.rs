//! The integration tests, as one test binary: one module per capability
//! (a file, or a folder of them for a capability with several sides), and
//! what several modules share in [`support`].
//!
//! Adding a test: put it in the module of the capability it proves (or add a
//! module here, with the features it needs on its `mod` line), named after
//! the behaviour it proves; shared helpers go to `support`. A test needs a
//! binary of its own only for process-wide state it must not share with
//! other tests running beside it in the same process (environment
//! variables, a global allocator or subscriber, `harness = false`); such a
//! binary is a `tests/*.rs` file whose first lines say why.

mod support;

mod audit;
mod bad_input;
#[cfg(feature = "cli")]
mod cli;
mod concurrency;
mod connection_types;
mod examples;
mod external_secrets;
mod field_visibility;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "test-kit"))]
mod key_binding;
mod leaks;
mod manifest;
mod mappings;
mod oauth;
mod onboarding;
mod output;
mod prismatic;
mod properties;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "test-kit"))]
mod replicas;
mod resolve_cost;
mod shared_oauth;
mod store;
mod templates;
#[cfg(feature = "tracing")]
mod tracing_spans;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "test-kit"))]
mod typed_replicas;
mod versions_and_dependents;
mod visibility_and_precedence;
