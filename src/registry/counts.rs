//! Requests sent, by kind: [`RequestCounts`] for reports (a rollback's registry cost; Docker Hub
//! counts manifest GETs against pull limits) and the atomic counters behind it.

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

/// Requests sent, by kind. Retries and token fetches count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub manifest_get: u32,
    pub manifest_head: u32,
    pub manifest_put: u32,
    pub blob_head: u32,
    pub blob_upload: u32,
    pub token: u32,
    pub tags_list: u32,
    pub blob_get: u32,
    /// Cross-repository blob mounts asked for (a drill copying an image to its scratch
    /// repository).
    pub blob_mount: u32,
    pub manifest_delete: u32,
}

impl RequestCounts {
    pub fn total(&self) -> u32 {
        self.manifest_get
            + self.manifest_head
            + self.manifest_put
            + self.blob_head
            + self.blob_upload
            + self.token
            + self.tags_list
            + self.blob_get
            + self.blob_mount
            + self.manifest_delete
    }
}

/// Request kinds; the discriminant is the counter slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    ManifestGet = 0,
    ManifestHead = 1,
    ManifestPut = 2,
    BlobHead = 3,
    BlobUpload = 4,
    Token = 5,
    TagsList = 6,
    BlobGet = 7,
    BlobMount = 8,
    ManifestDelete = 9,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    by_kind: [AtomicU32; 10],
}

impl Counters {
    pub(super) fn add(&self, kind: Kind) {
        self.by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> RequestCounts {
        let get = |kind: Kind| self.by_kind[kind as usize].load(Ordering::Relaxed);
        RequestCounts {
            manifest_get: get(Kind::ManifestGet),
            manifest_head: get(Kind::ManifestHead),
            manifest_put: get(Kind::ManifestPut),
            blob_head: get(Kind::BlobHead),
            blob_upload: get(Kind::BlobUpload),
            token: get(Kind::Token),
            tags_list: get(Kind::TagsList),
            blob_get: get(Kind::BlobGet),
            blob_mount: get(Kind::BlobMount),
            manifest_delete: get(Kind::ManifestDelete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_counts_in_its_own_field() {
        let kinds = [
            Kind::ManifestGet,
            Kind::ManifestHead,
            Kind::ManifestPut,
            Kind::BlobHead,
            Kind::BlobUpload,
            Kind::Token,
            Kind::TagsList,
            Kind::BlobGet,
            Kind::BlobMount,
            Kind::ManifestDelete,
        ];
        let counters = Counters::default();
        for (times, kind) in kinds.into_iter().enumerate() {
            for _ in 0..=times {
                counters.add(kind);
            }
        }
        let counts = counters.snapshot();
        assert_eq!(
            counts,
            RequestCounts {
                manifest_get: 1,
                manifest_head: 2,
                manifest_put: 3,
                blob_head: 4,
                blob_upload: 5,
                token: 6,
                tags_list: 7,
                blob_get: 8,
                blob_mount: 9,
                manifest_delete: 10,
            }
        );
        assert_eq!(counts.total(), 55);
    }
}
