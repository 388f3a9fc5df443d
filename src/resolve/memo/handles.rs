//! Striped handles on project snapshots, so that threads resolving against
//! the same snapshot write no cache line in common.
//!
//! An answer keeps the snapshot it borrows from. Kept by the snapshot's own
//! `Arc`, every resolution would add to and subtract from one reference
//! count, on one cache line that two threads resolving the same project
//! then pass back and forth (about a cache miss each time, a few percent of
//! a first resolution). Instead, each project's current snapshot gets one
//! [`Stripe`] per thread (a padded `Arc` to the same snapshot, made the
//! first time that thread resolves against it): an answer keeps its
//! thread's stripe, whose reference count only that thread writes while
//! the answer stays on it.
//!
//! The stripes of a project are found in a small table of slots by the
//! project's hash (two places to look), checked against the project's count
//! of changes with one load: after a write, the next resolution makes the
//! new snapshot's stripes. The registry empties a project's slot when it
//! installs a new snapshot ([`SnapshotHandles::released`]), so a replaced
//! snapshot lives exactly as long as an answer keeps it.

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use hashbrown::DefaultHashBuilder;

use super::striped::{OWN, mine};
use crate::catalog::{Catalog, Changes, ProjectSnapshot};
use crate::model::ProjectId;
use crate::resolve::{ResolveError, ResolveRequest, ResolvedEnv, Resolver, resolve_held};

/// How many slots the table has: the projects whose stripes are kept at
/// most (one more resolving through the table takes a slot over).
const SLOTS: usize = 256;

/// A reference to a snapshot alone on its cache lines (two: adjacent-line
/// prefetchers pull lines in pairs), for one thread: the reference count of
/// an `Arc<Stripe>` is written by that thread only.
#[repr(align(128))]
pub(crate) struct Stripe(Arc<ProjectSnapshot>);

impl Stripe {
    /// The snapshot.
    pub(crate) fn snapshot(&self) -> &ProjectSnapshot {
        &self.0
    }
}

/// One project's snapshot, with its stripes.
struct Handles {
    /// The project's count of changes, and its value before the snapshot
    /// was loaded: the stripes are the current snapshot's while it stays.
    changes: Arc<Changes>,
    seen: u64,
    snapshot: Arc<ProjectSnapshot>,
    /// One per stripe index a thread leases ([`OWN`] of them), and the
    /// last for every thread beyond.
    stripes: Box<[OnceLock<Arc<Stripe>>]>,
}

impl Handles {
    /// Whether the snapshot is still the project's current one.
    #[inline]
    fn holds(&self) -> bool {
        self.changes.get() == self.seen
    }

    /// The calling thread's stripe (made on its first use).
    #[inline]
    fn stripe(&self) -> Arc<Stripe> {
        let mine = self.stripes.get(mine()).or_else(|| self.stripes.last());
        match mine {
            Some(cell) => Arc::clone(cell.get_or_init(|| Arc::new(Stripe(Arc::clone(&self.snapshot))))),
            // Never: there are `OWN + 1` stripes.
            None => Arc::new(Stripe(Arc::clone(&self.snapshot))),
        }
    }
}

/// The stripes of the projects resolved lately (see the module's doc).
pub(crate) struct SnapshotHandles {
    slots: Box<[ArcSwapOption<Handles>]>,
    hasher: DefaultHashBuilder,
}

impl SnapshotHandles {
    pub(crate) fn new() -> Self {
        SnapshotHandles {
            slots: (0..SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The two slots `project` may be in.
    #[inline]
    fn places(&self, project: &ProjectId) -> [usize; 2] {
        let hash = self.hasher.hash_one(project.as_str());
        [hash as usize % SLOTS, (hash >> 32) as usize % SLOTS]
    }

    /// Resolves `request` against its project's current snapshot, the
    /// answer keeping the calling thread's stripe of it.
    pub(crate) fn resolve(
        &self,
        catalog: &Catalog,
        request: &ResolveRequest,
    ) -> Result<ResolvedEnv, ResolveError> {
        match self.stripe(catalog, &request.project) {
            Some(stripe) => resolve_held(stripe.into(), catalog.policy(), request),
            None => catalog.resolve(request),
        }
    }

    /// The calling thread's stripe of `project`'s current snapshot; `None`
    /// if there is no such project.
    #[inline]
    fn stripe(&self, catalog: &Catalog, project: &ProjectId) -> Option<Arc<Stripe>> {
        let places = self.places(project);
        for place in places {
            let slot = self.slots[place].load();
            if let Some(handles) = &*slot
                && handles.snapshot.project() == project
                && handles.holds()
            {
                return Some(handles.stripe());
            }
        }
        self.refresh(catalog, project, places)
    }

    /// Makes the handles of `project`'s current snapshot and puts them in
    /// one of `places`: one holding this project, else an empty one or one
    /// whose snapshot was replaced, else the first. Threads doing so at once
    /// end up sharing the handles the first of them put in.
    #[inline(never)]
    fn refresh(&self, catalog: &Catalog, project: &ProjectId, places: [usize; 2]) -> Option<Arc<Stripe>> {
        let current = catalog.current(project)?;
        let handles = Arc::new(Handles {
            changes: current.changes,
            seen: current.seen,
            snapshot: current.snapshot,
            stripes: (0..=OWN).map(|_| OnceLock::new()).collect(),
        });
        let free = |place: &usize, wanted: &dyn Fn(&Handles) -> bool| {
            self.slots[*place].load().as_deref().is_none_or(wanted)
        };
        loop {
            for place in places {
                if let Some(theirs) = &*self.slots[place].load()
                    && theirs.snapshot.project() == project
                    && theirs.holds()
                {
                    return Some(theirs.stripe());
                }
            }
            let place = places
                .iter()
                .find(|p| free(p, &|h| h.snapshot.project() == project))
                .or_else(|| places.iter().find(|p| free(p, &|h| !h.holds())))
                .unwrap_or(&places[0]);
            let slot = &self.slots[*place];
            let seen = slot.load();
            let before = slot.compare_and_swap(&seen, Some(Arc::clone(&handles)));
            let unchanged = match (&*before, &*seen) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if unchanged {
                return Some(handles.stripe());
            }
            // Another thread changed the slot meanwhile: look again.
        }
    }

    /// Lets go of `project`'s snapshot: called after a new one is
    /// installed, so the replaced one is kept by its answers only.
    pub(crate) fn released(&self, project: &ProjectId) {
        for place in self.places(project) {
            let slot = &self.slots[place];
            let seen = slot.load();
            if seen.as_deref().is_some_and(|h| h.snapshot.project() == project) {
                // Unless another project took the slot meanwhile.
                slot.compare_and_swap(&seen, None);
            }
        }
    }

    /// Lets go of every snapshot (the catalog was replaced whole).
    pub(crate) fn release_all(&self) {
        for slot in &self.slots {
            slot.store(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{catalog, on_threads_alive_at_once, records};
    use super::*;
    use crate::model::{ResolvePolicy, Revision};

    fn replace(catalog: &Catalog, url: &str, revision: u64) {
        catalog.replace_all(Revision(revision), records(url), Vec::new());
    }

    fn acme() -> ProjectId {
        "acme".parse().unwrap()
    }

    #[test]
    fn threads_alive_at_once_keep_one_snapshot_by_stripes_of_their_own() {
        let catalog = catalog("https://a.example");
        let handles = SnapshotHandles::new();
        let project = acme();
        let current = catalog.project(&project).unwrap();
        let stripes = on_threads_alive_at_once(3, || {
            let first = handles.stripe(&catalog, &project).unwrap();
            let again = handles.stripe(&catalog, &project).unwrap();
            (first, again)
        });
        for (i, (first, again)) in stripes.iter().enumerate() {
            assert!(Arc::ptr_eq(first, again), "thread {i} asked twice: one stripe");
            assert!(
                std::ptr::eq(first.snapshot(), &*current),
                "thread {i}: the current snapshot"
            );
            for (other, _) in &stripes[i + 1..] {
                assert!(
                    !Arc::ptr_eq(first, other),
                    "two threads alive at once, two stripes"
                );
            }
        }
        // Each stripe alone on its cache lines.
        assert!(std::mem::align_of::<Stripe>() >= 128);
    }

    #[test]
    fn a_replaced_snapshot_is_never_handed_out_and_is_let_go_of() {
        let catalog = catalog("https://a.example");
        let handles = SnapshotHandles::new();
        let project = acme();
        let request = crate::resolve::ResolveRequest::parse("acme", "orders", "production").unwrap();
        let before = handles.resolve(&catalog, &request).unwrap();
        assert_eq!(before.expose("CRM_URL"), Some("https://a.example"));
        let old = Arc::downgrade(&catalog.project(&project).unwrap());
        // Replaced without telling the handles: the count of changes moved,
        // so the next resolution makes the new snapshot's stripes.
        replace(&catalog, "https://b.example", 2);
        let after = handles.resolve(&catalog, &request).unwrap();
        assert_eq!(after.expose("CRM_URL"), Some("https://b.example"));
        assert_eq!(after.revision(), Revision(2));
        drop(before);
        assert!(
            old.upgrade().is_none(),
            "its slot was taken over by the new snapshot"
        );
        // Told: the current snapshot is kept by the catalog and answers only.
        let current = Arc::downgrade(&catalog.project(&project).unwrap());
        handles.released(&project);
        replace(&catalog, "https://c.example", 3);
        assert!(current.upgrade().is_some(), "an answer keeps it");
        drop(after);
        assert!(current.upgrade().is_none());
        // A project gone: nothing answered, nothing kept.
        replace(&catalog, "https://d.example", 4);
        handles.resolve(&catalog, &request).unwrap();
        catalog.replace_all(Revision(5), Vec::new(), Vec::new());
        assert!(handles.resolve(&catalog, &request).unwrap().is_empty());
        handles.release_all();
        assert!(handles.slots.iter().all(|s| s.load().is_none()));
    }

    #[test]
    fn projects_sharing_a_slot_take_it_over_in_turn_and_answer_right() {
        let handles = SnapshotHandles::new();
        let catalog = Catalog::new(ResolvePolicy::default());
        // More projects than slots: some share both their places.
        let projects: Vec<ProjectId> = (0..2 * SLOTS).map(|i| format!("p{i}").parse().unwrap()).collect();
        for p in &projects {
            catalog.install(crate::catalog::ProjectSnapshot::empty(p.clone()));
        }
        for _ in 0..2 {
            for p in &projects {
                let stripe = handles.stripe(&catalog, p).unwrap();
                assert_eq!(stripe.snapshot().project(), p);
            }
        }
        let kept = handles.slots.iter().filter(|s| s.load().is_some()).count();
        assert!(kept <= SLOTS);
    }
}
