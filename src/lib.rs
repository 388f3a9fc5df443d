//! connective
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod model;
pub mod store;
