//! Secrets kept in an external store (Vault, OpenBao): references in the
//! model, manifests and stores; resolution from the cache (an answer holds
//! one generation of it); the built-in client against a real OpenBao
//! server.

#[cfg(feature = "vault")]
mod hostile_server;
#[cfg(all(feature = "vault", feature = "test-kit"))]
mod openbao;
#[cfg(feature = "external-secrets")]
mod pinned;
#[cfg(all(feature = "manifest", feature = "sqlite"))]
mod refs;
