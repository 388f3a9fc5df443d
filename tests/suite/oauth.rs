//! The OAuth runtime against a real authorization server: tokens, statuses,
//! replicas, tracing spans.

#[cfg(all(feature = "oauth-runtime", feature = "postgres", feature = "test-kit"))]
mod replicas;
#[cfg(feature = "oauth-runtime")]
mod runtime;
#[cfg(all(feature = "oauth-runtime", feature = "tracing"))]
mod spans;
