//! The SQLite store on its own: the rules the database itself enforces.

use rollbot::domain::record::{AuditEntry, RollbackRecord};
use rollbot::domain::rollback::{RollbackId, State, Timestamp};
use rollbot::store::{Store, StoreError};

use crate::support::block_on;
use crate::support::records::sample;

fn record(image: &str) -> RollbackRecord {
    sample(image, State::Requested)
}

#[test]
fn the_database_allows_one_active_rollback_per_image_and_keeps_records_across_opens() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("nested/state.db");
    block_on(async {
        let store = Store::open(&path)
            .await
            .expect("open creates the file and its directory");
        let mut first = record("registry.example.com/acme/app");
        store
            .create(
                &mut first,
                AuditEntry::new(Timestamp(1), None, None, "requested", serde_json::json!({})),
            )
            .await
            .expect("first");
        assert_eq!(first.id, RollbackId(1));
        let mut second = record("registry.example.com/acme/app");
        let refused = store
            .create(
                &mut second,
                AuditEntry::new(Timestamp(1), None, None, "requested", serde_json::json!({})),
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::ActiveExists { .. })),
            "{refused:?}"
        );
        let mut other = record("registry.example.com/acme/other");
        store
            .create(
                &mut other,
                AuditEntry::new(Timestamp(1), None, None, "requested", serde_json::json!({})),
            )
            .await
            .expect("other image");

        first.state = State::Rejected;
        store.save(&first, &[]).await.expect("save");
        store
            .create(
                &mut second,
                AuditEntry::new(Timestamp(2), None, None, "requested", serde_json::json!({})),
            )
            .await
            .expect("the image is free again");
    });
    block_on(async {
        let store = Store::open(&path).await.expect("reopen");
        let active: Vec<RollbackId> = store
            .active()
            .await
            .expect("active")
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(active, vec![RollbackId(2), RollbackId(3)]);
        assert_eq!(
            store
                .get(RollbackId(1))
                .await
                .expect("get")
                .map(|r| r.state),
            Some(State::Rejected)
        );
    });
}

#[test]
fn the_audit_log_is_append_only() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("state.db");
    block_on(async {
        let store = Store::open(&path).await.expect("open");
        store
            .audit(&AuditEntry::new(
                Timestamp(5),
                None,
                None,
                "command",
                serde_json::json!({ "text": "/rollback help" }),
            ))
            .await
            .expect("append");
        assert_eq!(
            store.audit_since(Timestamp(0)).await.expect("read").len(),
            1
        );
    });
    // Even a direct connection cannot rewrite history.
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3,sys\nc=sqlite3.connect('{}')\nfor q in ['UPDATE audit SET kind=\\'x\\'', 'DELETE FROM audit']:\n    try:\n        c.execute(q); print('allowed', q)\n    except Exception as e: print('refused', e)\n",
            path.display()
        ))
        .output();
    if let Ok(output) = output {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(!text.contains("allowed"), "{text}");
        assert_eq!(
            text.matches("the audit log is append-only").count(),
            2,
            "{text}"
        );
    }
}
