//! What hosts hand to processes: `.env` files read back by their real readers, Kubernetes objects.

mod dotenv;
mod dotenv_readers;
#[cfg(feature = "kubernetes")]
mod kubernetes;
#[cfg(feature = "kubernetes")]
mod kubernetes_host;
