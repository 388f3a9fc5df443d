//! A host's "no limit" for a count (`usize::MAX` as a capacity or a
//! queue's length) is a limit that is never reached: the registry works
//! and reports it, never an overflow.

use std::time::Duration;

use connective::model::{AuditQuery, Revision};
use connective::prelude::*;
use connective::registry::{QueueFull, ReadAudit};
use connective::store::{MemoryStore, Store};

use super::durations::{crm, resolve_orders};

#[test]
fn capacities_without_limit_work_and_report_themselves() {
    let store = std::sync::Arc::new(MemoryStore::with_feed_capacity(usize::MAX));
    let registry = Registry::builder()
        .store(store.clone())
        .resolve_memo(usize::MAX)
        .audit("service:deployer".parse().unwrap())
        .audit_reads(ReadAudit::queued(usize::MAX, QueueFull::Block))
        .build()
        .unwrap();
    registry.create_connection(crm()).unwrap();
    let first = resolve_orders(&registry);
    let again = registry
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert!(again.shares_answer_with(&first));
    let stats = registry.resolve_memo_stats();
    assert_eq!((stats.hits, stats.capacity), (1, usize::MAX), "{stats:?}");
    registry.flush_read_audit(Duration::MAX).unwrap();
    let reads = registry.read_audit_stats().unwrap();
    assert_eq!((reads.queued, reads.recorded), (0, 2), "{reads:?}");
    assert_eq!(
        registry
            .audit(&AuditQuery::all().reads().limit(usize::MAX))
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.changes_since(Revision(0), usize::MAX).unwrap().len(), 4);
}
