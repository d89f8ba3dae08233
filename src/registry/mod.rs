//! The registry port: the few distribution-spec calls a rollback needs, over one HTTP client.
//!
//! HEAD/GET/PUT manifests by tag or digest, HEAD blobs (and, for drills, mount blobs across
//! repositories and DELETE manifests), with Basic or Bearer-token auth, retries
//! for 429/502/503/504, and a count of every request by kind (a rollback's registry cost is part
//! of its report: Docker Hub counts manifest GETs against pull limits, HEADs are free).
//!
//! This is a small client of our own rather than `oci-client`: a safe retag needs things that
//! crate does not expose: the `Docker-Content-Digest` of a PUT, the `Content-Type` of a GET,
//! the `ratelimit-remaining` header, and HEADs that never silently fall back to a counted GET
//! (see `shared/reference/api-facts.md` §3 and `registry-notes.md`).
//!
//! # Layout
//!
//! Every request takes one path: a method in `manifests.rs` or `blobs.rs` describes it as an
//! `Op` and hands it to `RegistryClient::call` (`request.rs`), which sends it through
//! the retry loop (`send.rs`, with auth from `authorize.rs`) and turns any answer it did not
//! expect into a [`RegistryError`] (`answers.rs`, `error.rs`). `client.rs` builds the client;
//! `counts.rs` counts requests by kind and, when a run asks, times each one.

pub mod auth;
pub mod oci;

mod answers;
mod authorize;
mod blobs;
mod client;
mod counts;
mod error;
mod manifests;
mod pool;
mod presence;
mod request;
mod send;
#[cfg(test)]
mod testing;

pub use blobs::{BlobCopy, BlobUpload, MAX_COPIED_BLOB_BYTES};
pub use client::RegistryClient;
pub use counts::{RequestCounts, RequestTiming};
pub use error::RegistryError;
pub use manifests::ManifestHead;
pub use pool::Registries;
pub use presence::missing_references;
