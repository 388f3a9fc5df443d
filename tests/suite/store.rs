//! The stores: the conformance suite on each backend (PostgreSQL also through
//! its async calls and over TLS), durability, the examples of the store
//! documentation.

#[cfg(all(feature = "sqlite", feature = "postgres", feature = "test-kit"))]
mod examples;
#[cfg(feature = "test-kit")]
mod memory;
#[cfg(all(feature = "postgres", feature = "test-kit"))]
mod postgres;
#[cfg(all(feature = "postgres", feature = "test-kit"))]
mod postgres_async;
#[cfg(all(feature = "postgres", feature = "test-kit"))]
mod postgres_registry;
#[cfg(all(feature = "postgres", feature = "test-kit"))]
mod postgres_round_trips;
#[cfg(all(feature = "postgres", feature = "test-kit"))]
mod postgres_tls;
#[cfg(all(feature = "sqlite", feature = "test-kit"))]
mod sqlite;
