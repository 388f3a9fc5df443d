//! Secrets kept in an external store (Vault, OpenBao): references in the
//! model, manifests and stores; resolution from the cache; the built-in
//! client against a real OpenBao server.

#[cfg(all(feature = "vault", feature = "test-kit"))]
mod openbao;
#[cfg(all(feature = "manifest", feature = "sqlite"))]
mod refs;
