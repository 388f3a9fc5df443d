//! A hash table in two tiers, so that it rarely sits half empty after
//! growing.
//!
//! A `hashbrown` table has a power-of-two number of buckets and grows (to
//! twice as many) once it is 7/8 full, so just past a growth it is 44 %
//! full; a table of 1,000,000 entries has 2^21 buckets (48 % full). Here
//! a full `main` table does not grow: new entries go to a second, smaller
//! `spill` table, which grows on its own up to half of `main`'s buckets.
//! Only when `spill` would grow past that does `main` grow, taking
//! `spill`'s entries. At 1,000,000 entries that is 2^20 + 2^17 buckets
//! (1.18 a entry) rather than 2^21 (2.10 a entry); averaged over sizes
//! spread evenly on a log scale, 1.26 buckets a entry rather than 1.65.
//!
//! A lookup of an entry in `main` probes `main` only; one of an absent key
//! (a new record) probes both tables.

use hashbrown::HashTable;

/// A hash table of `T`s (each holding its own key) in two tiers. Callers
/// pass the hash of every key and an equality test, as with [`HashTable`].
#[derive(Debug)]
pub(super) struct TieredTable<T> {
    /// The large table; it grows only by taking `spill` in.
    main: HashTable<T>,
    /// Entries inserted while `main` was full; at most half as many
    /// buckets as `main`.
    spill: HashTable<T>,
}

impl<T> Default for TieredTable<T> {
    fn default() -> Self {
        TieredTable {
            main: HashTable::new(),
            spill: HashTable::new(),
        }
    }
}

impl<T> TieredTable<T> {
    /// How many entries the table holds.
    pub(super) fn len(&self) -> usize {
        self.main.len() + self.spill.len()
    }

    /// The entry under `hash` for which `eq` holds.
    pub(super) fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
        self.main
            .find(hash, &mut eq)
            .or_else(|| self.spill.find(hash, eq))
    }

    /// Reads, ahead of a lookup under `hash`, the entry in the bucket where
    /// that lookup's probe starts in each table (when it holds one), passing
    /// it to `touch`, which should read it (`std::hint::black_box`).
    ///
    /// A lookup in a large table misses the cache twice in a row: on the
    /// group of control bytes, then on the bucket a control byte points to.
    /// The bucket where the probe starts is where a key that did not collide
    /// lives (a present key is in that bucket or one of the next few, which
    /// share its cache line mostly), and its address does not depend on the
    /// control bytes: the processor starts this read while the read of the
    /// control byte that guards it is still pending, so the two misses
    /// overlap. A hint only: it changes no result.
    pub(super) fn read_ahead(&self, hash: u64, mut touch: impl FnMut(&T)) {
        for table in [&self.main, &self.spill] {
            if let Some(entry) = table.get_bucket(home_bucket(table, hash)) {
                touch(entry);
            }
        }
    }

    /// [`TieredTable::find`], mutable.
    pub(super) fn find_mut(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        match self.main.find_mut(hash, &mut eq) {
            Some(found) => Some(found),
            None => self.spill.find_mut(hash, eq),
        }
    }

    /// Adds `value` under `hash`; the caller knows that no entry equal to
    /// it is in the table. `hasher` gives the hash of any entry (to move
    /// entries when a table grows).
    pub(super) fn insert_unique(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        // `capacity` is what a table holds before it reallocates.
        if self.main.len() < self.main.capacity() {
            self.main.insert_unique(hash, value, &hasher);
            return;
        }
        // `main` is full. `spill` may grow while it stays within half of
        // `main`'s buckets: a full `spill` doubles, so it may while its
        // capacity is at most a quarter of `main`'s.
        let spill_full = self.spill.len() >= self.spill.capacity();
        if !spill_full || self.spill.capacity() * 4 <= self.main.capacity() {
            self.spill.insert_unique(hash, value, &hasher);
            return;
        }
        // `main` grows (at least doubles) and takes `spill` in.
        self.main.reserve(self.spill.len() + 1, &hasher);
        for moved in self.spill.drain() {
            self.main.insert_unique(hasher(&moved), moved, &hasher);
        }
        self.spill = HashTable::new();
        self.main.insert_unique(hash, value, &hasher);
    }

    /// Removes and returns the entry under `hash` for which `eq` holds.
    pub(super) fn remove(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<T> {
        if let Ok(found) = self.main.find_entry(hash, &mut eq) {
            return Some(found.remove().0);
        }
        self.spill.find_entry(hash, eq).ok().map(|found| found.remove().0)
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.main.iter().chain(self.spill.iter())
    }

    /// The bytes the two tables have allocated.
    #[cfg(test)]
    fn allocation_size(&self) -> usize {
        self.main.allocation_size() + self.spill.allocation_size()
    }
}

/// The bucket where a lookup under `hash` in `table` starts its probe
/// (`hashbrown` starts at the hash's low bits; `0` for an empty table).
fn home_bucket<T>(table: &HashTable<T>, hash: u64) -> usize {
    // `num_buckets` is a power of two (or zero).
    (hash as usize) & table.num_buckets().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Entries are (key, value); the hash keeps `bits` bits of the key, so
    /// that small `bits` make keys collide all the time.
    fn hash_of(key: u32, bits: u32) -> u64 {
        let h = u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if bits >= 64 { h } else { h & ((1 << bits) - 1) }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u32),
        Remove(u32),
        Update(u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range, so that removals and updates hit.
        prop_oneof![
            4 => (0u32..3_000, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            1 => (0u32..3_000).prop_map(Op::Remove),
            1 => (0u32..3_000, any::<u32>()).prop_map(|(k, v)| Op::Update(k, v)),
        ]
    }

    /// Applies `ops` to a table and to a reference map and checks, after
    /// each, that both hold the same entries.
    fn check_against_map(ops: &[Op], bits: u32) {
        let mut table: TieredTable<(u32, u32)> = TieredTable::default();
        let mut reference = HashMap::new();
        let hasher = |e: &(u32, u32)| hash_of(e.0, bits);
        for op in ops {
            match *op {
                Op::Insert(k, v) => {
                    if reference.insert(k, v).is_none() {
                        table.insert_unique(hash_of(k, bits), (k, v), hasher);
                    } else if let Some(e) = table.find_mut(hash_of(k, bits), |e| e.0 == k) {
                        e.1 = v;
                    }
                }
                Op::Remove(k) => {
                    let removed = table.remove(hash_of(k, bits), |e| e.0 == k);
                    assert_eq!(removed.map(|e| e.1), reference.remove(&k));
                }
                Op::Update(k, v) => {
                    let found = table.find_mut(hash_of(k, bits), |e| e.0 == k);
                    assert_eq!(found.is_some(), reference.contains_key(&k));
                    if let Some(e) = found {
                        e.1 = v;
                        reference.insert(k, v);
                    }
                }
            }
            assert_eq!(table.len(), reference.len());
        }
        for (&k, &v) in &reference {
            assert_eq!(table.find(hash_of(k, bits), |e| e.0 == k), Some(&(k, v)));
        }
        let mut all: Vec<_> = table.iter().copied().collect();
        all.sort_unstable();
        let mut expected: Vec<_> = reference.into_iter().collect();
        expected.sort_unstable();
        assert_eq!(all, expected);
    }

    proptest! {
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec(op(), 0..4_000)) {
            check_against_map(&ops, 64);
        }

        #[test]
        fn agrees_with_a_map_when_hashes_collide(ops in proptest::collection::vec(op(), 0..600)) {
            check_against_map(&ops, 3);
        }
    }

    /// Growth past every capacity boundary up to 100,000 entries (each
    /// `main` growth and each `spill` growth), then removal of every other
    /// entry and re-insertion: every entry stays findable, and no absent
    /// one is found.
    #[test]
    fn growth_past_capacity_boundaries_keeps_every_entry() {
        let mut table: TieredTable<(u32, u32)> = TieredTable::default();
        let hasher = |e: &(u32, u32)| hash_of(e.0, 64);
        let mut spilled = false;
        for k in 0..100_000u32 {
            table.insert_unique(hash_of(k, 64), (k, k), hasher);
            spilled |= !table.spill.is_empty();
            if k.is_power_of_two() || k % 997 == 0 {
                for j in (0..=k).step_by(usize::try_from(k / 50 + 1).unwrap_or(1)) {
                    assert_eq!(table.find(hash_of(j, 64), |e| e.0 == j), Some(&(j, j)));
                }
                assert!(table.find(hash_of(k + 1, 64), |e| e.0 == k + 1).is_none());
            }
        }
        assert!(spilled, "some entries went to the spill table");
        for k in (0..100_000u32).step_by(2) {
            assert_eq!(table.remove(hash_of(k, 64), |e| e.0 == k), Some((k, k)));
        }
        assert_eq!(table.len(), 50_000);
        for k in 0..100_000u32 {
            let found = table.find(hash_of(k, 64), |e| e.0 == k);
            assert_eq!(found.is_some(), k % 2 == 1, "{k}");
        }
        for k in (0..100_000u32).step_by(2) {
            table.insert_unique(hash_of(k, 64), (k, k + 1), hasher);
        }
        assert_eq!(table.len(), 100_000);
        for k in 0..100_000u32 {
            let expected = if k % 2 == 0 { k + 1 } else { k };
            assert_eq!(table.find(hash_of(k, 64), |e| e.0 == k), Some(&(k, expected)));
        }
    }

    /// `read_ahead` passes the entry in the bucket where a lookup starts:
    /// the entry itself for a key that collided with none, in either tier.
    #[test]
    fn read_ahead_touches_the_entry_a_lookup_finds_first() {
        let mut table: TieredTable<(u32, u32)> = TieredTable::default();
        let hasher = |e: &(u32, u32)| hash_of(e.0, 64);
        let mut touched = Vec::new();
        table.read_ahead(hash_of(1, 64), |e| touched.push(*e));
        assert!(touched.is_empty(), "an empty table has nothing to touch");
        table.insert_unique(hash_of(1, 64), (1, 10), hasher);
        table.read_ahead(hash_of(1, 64), |e| touched.push(*e));
        assert_eq!(touched, [(1, 10)]);
        // Fill `main` to capacity, then `spill` with a few thousand: most
        // of the spilled entries are touched there (a table smaller than
        // a group of control bytes places its entries otherwise).
        let mut k = 2;
        while table.spill.len() < 4_000 {
            table.insert_unique(hash_of(k, 64), (k, k), hasher);
            k += 1;
        }
        let spilled: Vec<u32> = table.spill.iter().map(|e| e.0).collect();
        let touched_there = spilled
            .iter()
            .filter(|&&s| {
                let mut found = false;
                table.read_ahead(hash_of(s, 64), |e| found |= e.0 == s);
                found
            })
            .count();
        assert!(
            touched_there * 10 > spilled.len() * 6,
            "{touched_there} of {}",
            spilled.len()
        );
    }

    /// What makes `read_ahead` worth its read: in a table filled as the
    /// store's is (up to 7/8 of `main`, then `spill`), a present key is
    /// mostly in the bucket where its lookup starts or one of the next
    /// three (the same cache line or the one beside it). Fails if
    /// `hashbrown` starts its probes elsewhere.
    #[test]
    fn most_entries_sit_where_their_lookup_starts() {
        let mut table: TieredTable<(u32, u32)> = TieredTable::default();
        let hasher = |e: &(u32, u32)| hash_of(e.0, 64);
        let n = 200_000u32;
        for k in 0..n {
            table.insert_unique(hash_of(k, 64), (k, k), hasher);
        }
        let (mut home, mut near) = (0, 0);
        for k in 0..n {
            let hash = hash_of(k, 64);
            let (tier, index) = match table.main.find_bucket_index(hash, |e| e.0 == k) {
                Some(i) => (&table.main, i),
                None => (
                    &table.spill,
                    table.spill.find_bucket_index(hash, |e| e.0 == k).unwrap(),
                ),
            };
            let start = home_bucket(tier, hash);
            let distance = index.wrapping_sub(start) & (tier.num_buckets() - 1);
            home += usize::from(distance == 0);
            near += usize::from(distance < 4);
        }
        let n = n as usize;
        assert!(home * 10 > n * 6, "{home} of {n} at home");
        assert!(near * 100 > n * 95, "{near} of {n} within 3 buckets");
    }

    /// The point of the two tiers: at 1,000,000 entries of 16 bytes a
    /// `hashbrown` table takes 2^21 buckets, this table 2^20 + 2^17.
    #[test]
    fn a_million_entries_take_fewer_buckets_than_one_table() {
        let n = 1_000_000u32;
        let mut tiered: TieredTable<(u64, u64)> = TieredTable::default();
        let mut flat: HashTable<(u64, u64)> = HashTable::new();
        let hasher = |e: &(u64, u64)| hash_of(e.0 as u32, 64);
        for k in 0..n {
            tiered.insert_unique(hash_of(k, 64), (u64::from(k), 0), hasher);
            flat.insert_unique(hash_of(k, 64), (u64::from(k), 0), hasher);
        }
        let bucket = 16 + 1;
        let flat_buckets = flat.allocation_size() as f64 / bucket as f64;
        assert!((flat_buckets - f64::from(1 << 21)).abs() < 4.0, "{flat_buckets}");
        let buckets = tiered.allocation_size() as f64 / bucket as f64;
        assert!(buckets < 1.2 * f64::from(n), "{buckets} buckets");
        assert!(
            (buckets - f64::from((1 << 20) + (1 << 17))).abs() < 4.0,
            "{buckets}"
        );
    }
}
