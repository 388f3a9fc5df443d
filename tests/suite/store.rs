//! The stores: the conformance suite on each backend, durability, the examples of the store documentation.

#[cfg(all(feature = "sqlite", feature = "postgres", feature = "test-kit"))]
mod examples;
#[cfg(feature = "test-kit")]
mod memory;
#[cfg(all(feature = "postgres", feature = "test-kit"))]
mod postgres;
#[cfg(all(feature = "postgres", feature = "test-kit"))]
mod postgres_registry;
#[cfg(all(feature = "sqlite", feature = "test-kit"))]
mod sqlite;
