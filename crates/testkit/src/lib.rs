//! What scorch's tests share: a real S3-compatible server ([`s3`]) and the conformance
//! checks every artifact store backend runs ([`store`]), one function per property in the
//! manner of `object_store`'s integration checks.
#![deny(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod s3;
pub mod store;
