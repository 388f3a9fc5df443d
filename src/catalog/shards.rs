//! A hash table that snapshots share in shards: a copy of the table shares
//! every shard, and a change to the copy copies only the shard it touches.
//!
//! A project's snapshot is copied on every write to it; with one flat table
//! that copy, and the reference count of every record it holds, is touched
//! in full (about 2,000 cold cache lines for a project of 1,000
//! connections). Split into shards of at most `MAX` entries on average, in
//! groups, behind one shared list, a copy of the table is one reference
//! count, and a change to the copy copies the list of groups, one group (a
//! list of shards) and one shard: for 1,000 entries in shards of 16, 8 + 8 +
//! about 16 reference counts rather than 1,000. In a large catalog these are
//! cache misses, so the sizes are chosen to keep their sum small: the sum
//! of the list's, the group's and the shard's lengths is least near
//! `2 * sqrt(len / MAX) + MAX`.

use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;

/// One shard: a plain hash table, shared between copies of the table.
type Shard<T> = Arc<HashTable<T>>;

/// A list of shards, shared between copies of the table.
type Group<T> = Arc<[Shard<T>]>;

/// An entry of a [`ShardedTable`]: cloned when a copy of the table copies
/// its shard.
pub(super) trait Entry: Clone {
    /// Reads the cache line that cloning this entry writes (a reference
    /// count's), if any, so that it is fetched ahead of the clone: see
    /// [`ShardedTable::warm_path`].
    fn warm(&self);
}

/// A hash table of `T`s (each holding its own key), split by hash into a
/// power-of-two number of groups of a power-of-two number of shards, each
/// group and each shard behind an `Arc`; the table doubles its number of
/// shards when it holds `MAX` entries a shard on average. Callers pass the
/// hash of every key and an equality test, as with [`HashTable`].
#[derive(Debug)]
pub(super) struct ShardedTable<T, const MAX: usize> {
    /// A power-of-two number of groups (at least one), each of the same
    /// power-of-two number of shards (at least one), behind one `Arc`.
    groups: Arc<[Group<T>]>,
    len: usize,
}

impl<T, const MAX: usize> Default for ShardedTable<T, MAX> {
    /// An empty table: one group of one empty shard (no table allocated).
    fn default() -> Self {
        let shard: Group<T> = Arc::new([Arc::new(HashTable::new())]);
        ShardedTable {
            groups: Arc::new([shard]),
            len: 0,
        }
    }
}

impl<T, const MAX: usize> Clone for ShardedTable<T, MAX> {
    /// Shares everything (one reference count).
    fn clone(&self) -> Self {
        ShardedTable {
            groups: Arc::clone(&self.groups),
            len: self.len,
        }
    }
}

/// Reads `x`'s reference count (see [`ShardedTable::warm_path`]).
pub(super) fn warm_count<U: ?Sized>(x: &Arc<U>) {
    std::hint::black_box(Arc::strong_count(x));
}

/// Where `hash` goes among `groups` groups of `shards` shards (both powers
/// of two): (group, shard in the group), from bits the shard's own table
/// uses neither for a bucket (the low ones) nor for its control byte (the
/// top seven).
fn locate(hash: u64, groups: usize, shards: usize) -> (usize, usize) {
    let bits = (hash >> 32) as usize;
    (
        bits & (groups - 1),
        (bits >> groups.trailing_zeros()) & (shards - 1),
    )
}

/// How `total` shards (a power of two) are laid out: (groups, shards per
/// group), about the square root each.
fn layout(total: usize) -> (usize, usize) {
    let shards = 1usize << (total.trailing_zeros() / 2);
    (total / shards, shards)
}

impl<T: Entry, const MAX: usize> ShardedTable<T, MAX> {
    /// How many entries the table holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// How many shards the table has.
    fn shard_count(&self) -> usize {
        self.groups.len() * self.groups[0].len()
    }

    /// The (group, shard) of `hash`.
    fn position(&self, hash: u64) -> (usize, usize) {
        locate(hash, self.groups.len(), self.groups[0].len())
    }

    /// The entry with `hash` for which `eq` holds.
    pub(super) fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        let (g, s) = self.position(hash);
        self.groups[g][s].find(hash, eq)
    }

    /// Whether `other` is a copy of this table that neither has changed
    /// since (they share everything).
    #[cfg(test)]
    pub(super) fn shares_all_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.groups, &other.groups)
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.groups.iter().flat_map(|g| g.iter()).flat_map(|s| s.iter())
    }

    /// The shard of `hash`, unshared: the list of groups, its group and
    /// itself are copied if another table holds them.
    fn shard_mut(&mut self, hash: u64) -> &mut HashTable<T> {
        let (g, s) = self.position(hash);
        self.warm_path(g, s);
        let groups = Arc::make_mut(&mut self.groups);
        let group = Arc::make_mut(&mut groups[g]);
        Arc::make_mut(&mut group[s])
    }

    /// Reads every reference count that copying the path to shard `s` of
    /// group `g` will increment: those of the groups when the list is
    /// shared, of the group's shards when the group is (or its list), of
    /// the shard's entries when the shard is (or its group). Each
    /// increment is a locked instruction, which on x86 waits for its cache
    /// line before any later memory access may go ahead; in a large
    /// catalog these lines are cold, and a copy fetched them one at a
    /// time. Read with plain loads first, which the processor overlaps,
    /// they arrive together and the increments find them in cache.
    fn warm_path(&self, g: usize, s: usize) {
        let list = Arc::strong_count(&self.groups) > 1;
        if list {
            self.groups.iter().for_each(warm_count);
        }
        let group = &self.groups[g];
        let grouped = list || Arc::strong_count(group) > 1;
        if grouped {
            group.iter().for_each(warm_count);
        }
        if grouped || Arc::strong_count(&group[s]) > 1 {
            group[s].iter().for_each(T::warm);
        }
    }

    /// Whether one more entry would pass `MAX` entries a shard on average.
    fn full(&self) -> bool {
        self.len >= self.shard_count() * MAX
    }

    /// Puts `value` (with `hash`) in place of the entry for which `eq`
    /// holds and returns that entry, or adds it. `hasher` gives any entry's
    /// hash. Copies the one shard it changes if another table shares it.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        value: T,
        mut eq: impl FnMut(&T) -> bool,
        hasher: impl Fn(&T) -> u64,
    ) -> Option<T> {
        if self.full() && self.find(hash, &mut eq).is_none() {
            self.split(&hasher);
        }
        match self.shard_mut(hash).entry(hash, eq, hasher) {
            Slot::Occupied(mut e) => Some(std::mem::replace(e.get_mut(), value)),
            Slot::Vacant(e) => {
                e.insert(value);
                self.len += 1;
                None
            }
        }
    }

    /// Adds `value` (with `hash`), beside any entry equal to it. `hasher`
    /// gives any entry's hash. Copies the one shard it changes if another
    /// table shares it.
    pub(super) fn insert_unique(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        if self.full() {
            self.split(&hasher);
        }
        self.shard_mut(hash).insert_unique(hash, value, hasher);
        self.len += 1;
    }

    /// Removes the entry with `hash` for which `eq` holds and returns it.
    /// Copies the one shard it changes if another table shares it (and
    /// nothing when there is no such entry).
    pub(super) fn remove(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<T> {
        self.find(hash, &mut eq)?;
        let (value, _) = self.shard_mut(hash).find_entry(hash, eq).ok()?.remove();
        self.len -= 1;
        Some(value)
    }

    /// Doubles the number of shards, redistributing every entry.
    fn split(&mut self, hasher: &impl Fn(&T) -> u64) {
        let (groups, shards) = layout(self.shard_count() * 2);
        let mut tables: Vec<Vec<HashTable<T>>> = (0..groups)
            .map(|_| (0..shards).map(|_| HashTable::with_capacity(MAX / 2)).collect())
            .collect();
        for value in self.iter() {
            let hash = hasher(value);
            let (g, s) = locate(hash, groups, shards);
            tables[g][s].insert_unique(hash, value.clone(), hasher);
        }
        self.groups = tables
            .into_iter()
            .map(|g| g.into_iter().map(Arc::new).collect())
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::hash::BuildHasher;

    use proptest::prelude::*;

    use super::*;

    /// Entries keyed by their first field.
    type Entry = (u32, u32);

    impl super::Entry for (u32, u32) {
        fn warm(&self) {}
    }

    /// The tables the tests use: shards of 32 entries.
    type Table = ShardedTable<Entry, 32>;

    static HASHER: std::sync::LazyLock<hashbrown::DefaultHashBuilder> =
        std::sync::LazyLock::new(hashbrown::DefaultHashBuilder::default);

    fn hash(key: u32) -> u64 {
        HASHER.hash_one(key)
    }

    fn put(t: &mut Table, hasher: &impl Fn(u32) -> u64, e: Entry) -> Option<Entry> {
        t.insert(hasher(e.0), e, |x| x.0 == e.0, |x| hasher(x.0))
    }

    fn get(t: &Table, hasher: &impl Fn(u32) -> u64, key: u32) -> Option<Entry> {
        t.find(hasher(key), |x| x.0 == key).copied()
    }

    #[test]
    fn a_change_to_a_copy_copies_one_shard_and_leaves_the_original_alone() {
        let h = hash;
        let mut t = Table::default();
        for k in 0..1_000 {
            assert_eq!(put(&mut t, &h, (k, 0)), None);
        }
        assert!(t.shard_count() >= 1_000 / 32);
        assert_eq!(layout(t.shard_count()), (t.groups.len(), t.groups[0].len()));
        let mut copy = t.clone();
        assert!(
            Arc::ptr_eq(&t.groups, &copy.groups),
            "a copy shares the whole list"
        );
        assert_eq!(put(&mut copy, &h, (7, 1)), Some((7, 0)));
        assert!(!Arc::ptr_eq(&t.groups, &copy.groups));
        assert_eq!(copy.remove(h(8), |x| x.0 == 8), Some((8, 0)));
        assert_eq!(get(&t, &h, 7), Some((7, 0)));
        assert_eq!(get(&t, &h, 8), Some((8, 0)));
        assert_eq!(get(&copy, &h, 7), Some((7, 1)));
        assert_eq!(get(&copy, &h, 8), None);
        assert_eq!((t.len(), copy.len()), (1_000, 999));
        // Only the shards of keys 7 and 8 (and their groups) are no longer
        // shared.
        let shards = |t: &Table| -> Vec<*const HashTable<Entry>> {
            t.groups.iter().flat_map(|g| g.iter()).map(Arc::as_ptr).collect()
        };
        let unshared = shards(&t)
            .iter()
            .zip(shards(&copy))
            .filter(|(a, b)| **a != *b)
            .count();
        assert!((1..=2).contains(&unshared), "{unshared} shards copied");
        let groups = t.groups.iter().zip(copy.groups.iter());
        let unshared = groups.filter(|(a, b)| !Arc::ptr_eq(a, b)).count();
        assert!((1..=2).contains(&unshared), "{unshared} groups copied");
    }

    thread_local! {
        /// How many entries of type `Counted` were warmed on this thread.
        static WARMED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// An entry that counts the calls of [`Entry::warm`].
    #[derive(Debug, Clone, PartialEq)]
    struct Counted(u32);

    impl super::Entry for Counted {
        fn warm(&self) {
            WARMED.with(|w| w.set(w.get() + 1));
        }
    }

    #[test]
    fn a_copy_warms_the_entries_of_the_shard_it_copies_and_no_others() {
        let mut t = ShardedTable::<Counted, 32>::default();
        let put = |t: &mut ShardedTable<Counted, 32>, k: u32| {
            t.insert(hash(k), Counted(k), |x| x.0 == k, |x| hash(x.0));
        };
        for k in 0..1_000 {
            put(&mut t, k);
        }
        let warmed = || WARMED.with(std::cell::Cell::get);
        // The table is not shared: nothing is copied, nothing warmed.
        let before = warmed();
        put(&mut t, 7);
        assert_eq!(warmed(), before);
        // A copy's first change copies (and warms) the shard of its key.
        let copy_of = t.clone();
        let mut copy = t.clone();
        let (g, s) = copy.position(hash(7));
        let shard_len = copy.groups[g][s].len();
        put(&mut copy, 7);
        assert_eq!(warmed() - before, shard_len);
        // The next change to that shard copies nothing more.
        let before = warmed();
        copy.remove(hash(7), |x| x.0 == 7);
        assert_eq!(warmed(), before);
        assert_eq!(copy_of.find(hash(7), |x| x.0 == 7), Some(&Counted(7)));
        assert_eq!(copy.find(hash(7), |x| x.0 == 7), None);
    }

    #[test]
    fn removing_what_is_not_there_copies_nothing() {
        let mut t = Table::default();
        for k in 0..100 {
            put(&mut t, &hash, (k, k));
        }
        let mut copy = t.clone();
        assert_eq!(copy.remove(hash(1_000), |x| x.0 == 1_000), None);
        assert!(Arc::ptr_eq(&t.groups, &copy.groups));
        assert_eq!(Table::default().remove(hash(1), |x| x.0 == 1), None);
    }

    #[test]
    fn tables_of_any_shard_size_grow_in_square_layouts() {
        fn fill<const MAX: usize>(n: u32) -> ShardedTable<Entry, MAX> {
            let mut t = ShardedTable::<Entry, MAX>::default();
            for k in 0..n {
                t.insert(hash(k), (k, k), |x| x.0 == k, |x| hash(x.0));
            }
            t
        }
        let empty = ShardedTable::<Entry, 16>::default();
        assert_eq!(
            (empty.len(), empty.shard_count(), empty.iter().count()),
            (0, 1, 0)
        );
        assert_eq!(empty.find(hash(1), |_| true), None);
        let t = fill::<16>(1_000);
        // 1,000 entries in shards of 16 on average: 64 shards, 8 groups of 8.
        assert_eq!((t.shard_count(), t.groups.len(), t.groups[0].len()), (64, 8, 8));
        let mut all: Vec<u32> = t.iter().map(|e| e.0).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1_000).collect::<Vec<_>>());
        let t = fill::<8>(100);
        assert_eq!((t.shard_count(), t.groups.len(), t.groups[0].len()), (16, 4, 4));
        let t = fill::<64>(64);
        assert_eq!((t.shard_count(), t.groups.len(), t.groups[0].len()), (1, 1, 1));
        let t = fill::<64>(65);
        assert_eq!((t.shard_count(), t.groups.len(), t.groups[0].len()), (2, 2, 1));
    }

    #[test]
    fn equal_entries_added_side_by_side_come_out_one_at_a_time() {
        let mut t = Table::default();
        for k in 0..200 {
            t.insert_unique(hash(k), (k, 0), |x| hash(x.0));
        }
        let copy = t.clone();
        // A second, equal entry for every even key: the table grows past a
        // split with them.
        for k in (0..200).step_by(2) {
            t.insert_unique(hash(k), (k, 0), |x| hash(x.0));
        }
        assert_eq!((t.len(), copy.len()), (300, 200));
        for k in (0..200).step_by(2) {
            assert_eq!(t.remove(hash(k), |x| *x == (k, 0)), Some((k, 0)));
            assert_eq!(get(&t, &hash, k), Some((k, 0)), "the other one of {k} stays");
        }
        for k in 0..200 {
            assert_eq!(t.remove(hash(k), |x| *x == (k, 0)), Some((k, 0)));
            assert_eq!(get(&t, &hash, k), None);
            assert_eq!(get(&copy, &hash, k), Some((k, 0)));
        }
        assert_eq!((t.len(), copy.len()), (0, 200));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u32, u32),
        Remove(u32),
        /// Keep a copy of the table (and of the model) to check later.
        Copy,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..300u32, any::<u32>()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => (0..300u32).prop_map(Op::Remove),
            1 => Just(Op::Copy),
        ]
    }

    proptest! {
        /// Every table, and every copy taken along the way, holds exactly
        /// what a plain map given the same operations holds.
        #[test]
        fn tables_and_their_copies_agree_with_a_map(ops in prop::collection::vec(op(), 0..600)) {
            let mut t = Table::default();
            let mut model: HashMap<u32, u32> = HashMap::new();
            let mut copies = Vec::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        let was = put(&mut t, &hash, (k, v)).map(|e| e.1);
                        prop_assert_eq!(was, model.insert(k, v));
                    }
                    Op::Remove(k) => {
                        let was = t.remove(hash(k), |x| x.0 == k).map(|e| e.1);
                        prop_assert_eq!(was, model.remove(&k));
                    }
                    Op::Copy => copies.push((t.clone(), model.clone())),
                }
            }
            copies.push((t, model));
            for (t, model) in copies {
                prop_assert_eq!(t.len(), model.len());
                let mut all: Vec<Entry> = t.iter().copied().collect();
                all.sort_unstable();
                let mut expected: Vec<Entry> = model.iter().map(|(k, v)| (*k, *v)).collect();
                expected.sort_unstable();
                prop_assert_eq!(all, expected);
                for k in 0..300 {
                    prop_assert_eq!(get(&t, &hash, k).map(|e| e.1), model.get(&k).copied());
                }
            }
        }
    }
}
