//! connective
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod model;
pub mod store;
pub mod catalog;
pub mod resolve;
