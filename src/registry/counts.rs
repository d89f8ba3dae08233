//! Requests sent, by kind: [`RequestCounts`] for reports (a rollback's registry cost; Docker Hub
//! counts manifest GETs against pull limits) and the atomic counters behind it; and, when a
//! run asks for it, the [`RequestTiming`] of each request (where a run's time goes).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::lock;

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

    /// Requests Docker Hub counts against its pull rate limit: manifest GETs (a HEAD is not a
    /// pull).
    pub fn counted_pulls(&self) -> u32 {
        self.manifest_get
    }
}

/// One request and its answer, timed: `--json` reports list them (see
/// `RegistryClient::keep_timeline`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestTiming {
    /// `HEAD /v2/acme/app/manifests/latest`; a token fetch is `GET <realm>`.
    pub request: String,
    /// The answer's status; 0: no answer (a connection error or a timeout).
    pub status: u16,
    /// When it was sent, in microseconds from the start the timeline counts from.
    pub sent_us: u64,
    /// From sending it to the answer's headers, in microseconds.
    pub took_us: u64,
}

/// The most requests a timeline keeps: a run sends a few dozen; a client kept by the daemon
/// must not grow without end.
const MAX_TIMELINE: usize = 1000;

/// Requests timed since `origin`, once asked for.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    kept: Mutex<Option<(Instant, Vec<RequestTiming>)>>,
}

impl Timeline {
    /// Starts keeping requests, timed from `origin`, dropping what was kept before.
    pub(super) fn keep(&self, origin: Instant) {
        *lock(&self.kept) = Some((origin, Vec::new()));
    }

    /// Notes a request sent at `sent` and answered with `status` now (when keeping).
    pub(super) fn note(&self, request: impl FnOnce() -> String, status: u16, sent: Instant) {
        let mut kept = lock(&self.kept);
        let Some((origin, requests)) = kept.as_mut() else {
            return;
        };
        if requests.len() < MAX_TIMELINE {
            let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            requests.push(RequestTiming {
                request: request(),
                status,
                sent_us: micros(sent.saturating_duration_since(*origin)),
                took_us: micros(sent.elapsed()),
            });
        }
    }

    pub(super) fn snapshot(&self) -> Vec<RequestTiming> {
        lock(&self.kept)
            .as_ref()
            .map(|(_, requests)| requests.clone())
            .unwrap_or_default()
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
        assert_eq!(counts.counted_pulls(), 1, "manifest GETs only");
    }

    #[test]
    fn a_timeline_keeps_requests_only_once_asked_and_at_most_its_limit() {
        let timeline = Timeline::default();
        let origin = Instant::now();
        timeline.note(|| "GET /v2/".to_owned(), 200, origin);
        assert!(timeline.snapshot().is_empty(), "not asked for");
        timeline.keep(origin);
        for _ in 0..=MAX_TIMELINE {
            timeline.note(
                || "HEAD /v2/acme/app/manifests/latest".to_owned(),
                200,
                origin,
            );
        }
        let kept = timeline.snapshot();
        assert_eq!(kept.len(), MAX_TIMELINE);
        assert_eq!(kept[0].request, "HEAD /v2/acme/app/manifests/latest");
        assert_eq!((kept[0].status, kept[0].sent_us), (200, 0));
    }
}
