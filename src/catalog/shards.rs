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
//!
//! Since a shared shard is copied whole on a change anyway, a shard is no
//! hash table but two arrays sized to what it holds: its entries, and
//! beside them a one-byte tag of each entry's hash, eight to a word. A
//! lookup compares the tags a word at a time and tests an entry only where
//! its tag matches; a change builds the shard's new arrays at their new
//! length (one copy of a shared shard, one reallocation of an unshared
//! one). The shards hold their entries and a byte each, with no empty
//! buckets.
//!
//! A change that replaces an entry of a shared shard (an update keeping
//! the entry's key) does not copy it: it puts in its place a patch over it,
//! the shared shard and the one entry replaced in it. Copying the shard
//! would take a reference on each of its entries (in a large catalog, a
//! cold cache line on a page of its own for each); the patch takes one on
//! the shard. A patch is never patched again: replacing the same entry
//! again makes a new patch over the same shard, and any other change (to
//! another entry, an addition, a removal) copies the shard whole with its
//! entries as the patch has them. So lookups read at most one patch, and
//! the entry a patch replaces stays alive below it until then: at most
//! one a shard.

use std::sync::Arc;

/// One shard: its entries in an array of exactly the shard's length, and
/// beside them each one's [`tag`], eight to a word (entry `i`'s in byte
/// `i % 8` of word `i / 8`, bytes past the last entry zero), in as many
/// words as they take. Shared between copies of the table, as one `Arc`.
#[derive(Debug, Clone)]
struct Shard<T> {
    tags: Box<[u64]>,
    entries: Box<[T]>,
}

/// A list of shards, shared between copies of the table.
type Group<T> = Arc<[Slot<T>]>;

/// A shard's place in its group: a shard as built, or a patch over one.
#[derive(Debug)]
enum Slot<T> {
    Whole(Arc<Shard<T>>),
    Patched(Arc<Patched<T>>),
}

impl<T> Clone for Slot<T> {
    /// Shares the shard or the patch (one reference count).
    fn clone(&self) -> Self {
        match self {
            Slot::Whole(shard) => Slot::Whole(Arc::clone(shard)),
            Slot::Patched(patch) => Slot::Patched(Arc::clone(patch)),
        }
    }
}

/// A shared shard with one of its entries replaced: the shard, the index
/// of the entry replaced, its tag and the entry there now. A replacement
/// keeps the entry's hash, so the shard's tags hold for the patch.
///
/// A lookup tests the patch's entry first, under the patch's own copy of
/// its tag: the entry a patch replaces is the one written last in the
/// shard, the likeliest to be looked up (and written) again, and found
/// there it costs no read of the shard's arrays (in a large catalog, two
/// cold cache lines one after the other, behind the patch's).
#[derive(Debug)]
struct Patched<T> {
    base: Arc<Shard<T>>,
    at: usize,
    tag: u8,
    value: T,
}

/// The tag a shard keeps of an entry's hash: its top byte, which
/// [`locate`] leaves to chance (it reads bits from the 32nd up, one for
/// each doubling of the shards: the top byte only past 2^24 shards).
fn tag(hash: u64) -> u8 {
    (hash >> 56) as u8
}

/// The low bit of every byte.
const LOW: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of exactly those bytes of `x` that are zero. (The sum of a
/// byte's low seven bits and `0x7f` sets its high bit unless they are all
/// zero, and carries into no other byte.)
fn zero_bytes(x: u64) -> u64 {
    !(((x & !HIGH) + !HIGH) | x | !HIGH)
}

/// `tags` (one a byte, the first in the low byte) packed eight to a word.
fn packed(tags: impl ExactSizeIterator<Item = u8>) -> Box<[u64]> {
    let mut words = vec![0; tags.len().div_ceil(8)];
    for (i, t) in tags.enumerate() {
        words[i / 8] |= u64::from(t) << (8 * (i % 8));
    }
    words.into_boxed_slice()
}

impl<T> Default for Shard<T> {
    /// An empty shard (no arrays allocated).
    fn default() -> Self {
        Shard {
            tags: Box::default(),
            entries: Box::default(),
        }
    }
}

impl<T> Shard<T> {
    /// How many entries the shard holds.
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The tag of entry `i`.
    fn tag(&self, i: usize) -> u8 {
        (self.tags[i / 8] >> (8 * (i % 8))) as u8
    }

    /// Every entry's tag, in order.
    fn tags(&self) -> impl ExactSizeIterator<Item = u8> {
        (0..self.len()).map(|i| self.tag(i))
    }

    /// Sets the tag of entry `i`.
    fn set_tag(&mut self, i: usize, tag: u8) {
        let shift = 8 * (i % 8);
        let word = &mut self.tags[i / 8];
        *word = (*word & !(0xff << shift)) | (u64::from(tag) << shift);
    }

    /// The first index `i` of an entry `e` tagged `tag` for which
    /// `eq(i, e)` holds: the tags are compared a word (eight) at a time,
    /// and an entry tested only where its tag matches.
    #[inline]
    fn index(&self, tag: u8, mut eq: impl FnMut(usize, &T) -> bool) -> Option<usize> {
        let splat = LOW * u64::from(tag);
        for (w, &word) in self.tags.iter().enumerate() {
            let mut matches = zero_bytes(word ^ splat);
            while matches != 0 {
                let i = w * 8 + (matches.trailing_zeros() / 8) as usize;
                // Past the last entry (a zero byte matching tag 0): no more.
                if eq(i, self.entries.get(i)?) {
                    return Some(i);
                }
                matches &= matches - 1;
            }
        }
        None
    }

    /// Adds `value` tagged `tag`, growing the entries by exactly one (and
    /// the tags by a word when the last one is full).
    fn push(&mut self, tag: u8, value: T) {
        let i = self.len();
        if i.is_multiple_of(8) {
            self.tags = grown(std::mem::take(&mut self.tags), 0);
        }
        self.set_tag(i, tag);
        self.entries = grown(std::mem::take(&mut self.entries), value);
    }

    /// Removes the entry at `i` (the last one takes its place), shrinking
    /// the entries by exactly one (and the tags by a word when the last one
    /// empties).
    fn swap_remove(&mut self, i: usize) -> T {
        let last = self.len() - 1;
        let moved = self.tag(last);
        self.set_tag(i, moved);
        self.set_tag(last, 0);
        if last.is_multiple_of(8) {
            let mut tags = Vec::from(std::mem::take(&mut self.tags));
            tags.pop();
            self.tags = tags.into_boxed_slice();
        }
        let mut entries = Vec::from(std::mem::take(&mut self.entries));
        let value = entries.swap_remove(i);
        self.entries = entries.into_boxed_slice();
        value
    }
}

/// `all` and `value` after it, reallocated to exactly one more.
fn grown<U>(all: Box<[U]>, value: U) -> Box<[U]> {
    let mut all = Vec::from(all);
    all.reserve_exact(1);
    all.push(value);
    all.into_boxed_slice()
}

impl<T> Slot<T> {
    /// The shard as built (below the patch, if any): its tags are the
    /// slot's.
    fn base(&self) -> &Arc<Shard<T>> {
        match self {
            Slot::Whole(shard) => shard,
            Slot::Patched(patch) => &patch.base,
        }
    }

    /// How many entries the slot holds.
    fn len(&self) -> usize {
        self.base().len()
    }

    /// Entry `i` as the slot has it: the patch's if it replaces it.
    #[inline]
    fn entry(&self, i: usize) -> &T {
        match self {
            Slot::Whole(shard) => &shard.entries[i],
            Slot::Patched(patch) => patch.entry(i),
        }
    }

    /// Every entry, in order.
    fn entries(&self) -> impl Iterator<Item = &T> {
        (0..self.len()).map(|i| self.entry(i))
    }

    /// The index of an entry tagged `tag` for which `eq` holds: the first
    /// one, or in a patch the patch's own if it is one (see [`Patched`]).
    /// (The lookup in a patch is a function of its own: the loop over a
    /// whole shard, inlined where tables are read, stays as small.)
    #[inline]
    fn index(&self, tag: u8, mut eq: impl FnMut(&T) -> bool) -> Option<usize> {
        match self {
            Slot::Whole(shard) => shard.index(tag, |_, e| eq(e)),
            Slot::Patched(patch) => patch.index(tag, eq),
        }
    }

    /// The entry tagged `tag` for which `eq` holds that
    /// [`Slot::index`] finds.
    #[inline]
    fn find(&self, tag: u8, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
        match self {
            Slot::Whole(shard) => shard.index(tag, |_, e| eq(e)).map(|i| &shard.entries[i]),
            Slot::Patched(patch) => patch.find(tag, eq),
        }
    }

    /// The slot's shard, to change in place: when it is a whole one no
    /// other table holds.
    fn own_whole(&mut self) -> Option<&mut Shard<T>> {
        match self {
            Slot::Whole(shard) => Arc::get_mut(shard),
            Slot::Patched(_) => None,
        }
    }
}

impl<T> Slot<T> {
    /// Reads the slot's reference count (its shard's or its patch's).
    fn warm_count(&self) {
        match self {
            Slot::Whole(shard) => warm_count(shard),
            Slot::Patched(patch) => warm_count(patch),
        }
    }
}

impl<T> Patched<T> {
    /// Entry `i`: the patch's if it replaces it, else the shard's (the
    /// shard is read only then).
    #[inline]
    fn entry(&self, i: usize) -> &T {
        if i == self.at {
            &self.value
        } else {
            &self.base.entries[i]
        }
    }

    /// The index of an entry tagged `tag` for which `eq` holds, as the
    /// patch has them: the patch's own entry if it is one, else the
    /// shard's first other one. (Only the patch's entry is read when it
    /// is the one: not the shard's arrays.)
    #[inline(never)]
    fn index(&self, tag: u8, mut eq: impl FnMut(&T) -> bool) -> Option<usize> {
        if tag == self.tag && eq(&self.value) {
            return Some(self.at);
        }
        self.base.index(tag, |i, e| i != self.at && eq(e))
    }

    /// The entry [`Patched::index`] finds.
    #[inline(never)]
    fn find(&self, tag: u8, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
        if tag == self.tag && eq(&self.value) {
            return Some(&self.value);
        }
        let i = self.base.index(tag, |i, e| i != self.at && eq(e))?;
        Some(&self.base.entries[i])
    }
}

impl<T: Entry> Slot<T> {
    /// Reads the reference count of every entry a whole copy of the slot
    /// clones (see [`ShardedTable::warm_path`]).
    fn warm_entries(&self) {
        self.entries().for_each(T::warm);
    }

    /// A whole copy of the slot's entries with `value` tagged `tag` added:
    /// built at its length, each array allocated once.
    fn with(&self, tag: u8, value: T) -> Shard<T> {
        self.warm_entries();
        let n = self.len();
        let mut tags = Vec::with_capacity((n + 1).div_ceil(8));
        tags.extend_from_slice(&self.base().tags);
        if n.is_multiple_of(8) {
            tags.push(0);
        }
        // The bytes past the last tag are zero.
        tags[n / 8] |= u64::from(tag) << (8 * (n % 8));
        let mut entries = Vec::with_capacity(n + 1);
        entries.extend(self.entries().cloned());
        entries.push(value);
        Shard {
            tags: tags.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
        }
    }

    /// A whole copy of the slot's entries without the one at `i` (the last
    /// one in its place, as [`Shard::swap_remove`] leaves it), and that
    /// entry.
    fn without(&self, i: usize) -> (Shard<T>, T) {
        self.warm_entries();
        let last = self.len() - 1;
        let base = self.base();
        let order = (0..last).map(|j| if j == i { last } else { j });
        let shard = Shard {
            tags: packed(order.clone().map(|j| base.tag(j))),
            entries: order.map(|j| self.entry(j).clone()).collect(),
        };
        (shard, self.entry(i).clone())
    }

    /// Puts `value` in place of entry `i` (which has the same hash) and
    /// returns that entry. The slot's own shard or patch is changed in
    /// place; a shared shard gets a patch over it, a shared patch of the
    /// same entry a new patch over the same shard, and a shared patch of
    /// another entry gives way to a whole copy of the shard with both.
    fn replace(&mut self, i: usize, value: T) -> T {
        match self {
            Slot::Whole(shard) => match Arc::get_mut(shard) {
                Some(own) => std::mem::replace(&mut own.entries[i], value),
                None => {
                    let old = shard.entries[i].clone();
                    *self = Slot::Patched(Arc::new(Patched {
                        base: Arc::clone(shard),
                        at: i,
                        tag: shard.tag(i),
                        value,
                    }));
                    old
                }
            },
            Slot::Patched(patch) if patch.at == i => match Arc::get_mut(patch) {
                Some(own) => std::mem::replace(&mut own.value, value),
                None => {
                    let old = patch.value.clone();
                    *patch = Arc::new(Patched {
                        base: Arc::clone(&patch.base),
                        at: i,
                        tag: patch.tag,
                        value,
                    });
                    old
                }
            },
            Slot::Patched(patch) => {
                patch.base.entries.iter().for_each(T::warm);
                let mut entries: Box<[T]> = patch.base.entries.clone();
                entries[patch.at] = patch.value.clone();
                let old = std::mem::replace(&mut entries[i], value);
                *self = Slot::Whole(Arc::new(Shard {
                    tags: patch.base.tags.clone(),
                    entries,
                }));
                old
            }
        }
    }
}

/// An entry of a [`ShardedTable`]: cloned when a copy of the table copies
/// its shard.
pub(super) trait Entry: Clone {
    /// Reads the cache line that cloning this entry writes (a reference
    /// count's), if any, so that it is fetched ahead of the clone: see
    /// [`ShardedTable::warm_path`].
    fn warm(&self);

    /// Reads what [`Entry::warm`] reads and what a change to this entry
    /// will compare with the change, if any (see
    /// [`ShardedTable::warm_change`]).
    fn warm_for_change(&self) {
        self.warm();
    }
}

/// A hash table of `T`s (each holding its own key), split by hash into a
/// power-of-two number of groups of a power-of-two number of shards, each
/// group and each shard behind an `Arc`; the table doubles its number of
/// shards when it holds `MAX` entries a shard on average. Callers pass the
/// hash of every key and an equality test, as with a
/// [`hashbrown::HashTable`].
pub(super) struct ShardedTable<T, const MAX: usize> {
    /// The table's groups, `list[first..first + count]`: a power-of-two
    /// number of them (at least one), each of the same power-of-two number
    /// of shards (at least one), in a list behind one `Arc`. The list is
    /// the table's own, or one that other tables share, each with a run of
    /// it (see [`ShardedTable::share_lists`]).
    list: Arc<[Group<T>]>,
    first: usize,
    count: usize,
    len: usize,
}

impl<T, const MAX: usize> Default for ShardedTable<T, MAX> {
    /// An empty table: one group of one empty shard (no arrays allocated).
    fn default() -> Self {
        let shard: Group<T> = Arc::new([Slot::Whole(Arc::new(Shard::default()))]);
        ShardedTable::of(Arc::new([shard]), 0)
    }
}

impl<T: std::fmt::Debug, const MAX: usize> std::fmt::Debug for ShardedTable<T, MAX> {
    /// The table's groups and length (not the rest of a list it shares,
    /// nor where its run starts: tables holding the same are alike).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedTable")
            .field("groups", &self.groups())
            .field("len", &self.len)
            .finish()
    }
}

impl<T, const MAX: usize> Clone for ShardedTable<T, MAX> {
    /// Shares everything (one reference count).
    fn clone(&self) -> Self {
        ShardedTable {
            list: Arc::clone(&self.list),
            first: self.first,
            count: self.count,
            len: self.len,
        }
    }
}

impl<T, const MAX: usize> ShardedTable<T, MAX> {
    /// A table of `len` entries in the groups of its own `list`.
    fn of(list: Arc<[Group<T>]>, len: usize) -> Self {
        ShardedTable {
            count: list.len(),
            list,
            first: 0,
            len,
        }
    }

    /// The table's groups.
    fn groups(&self) -> &[Group<T>] {
        &self.list[self.first..self.first + self.count]
    }

    /// Group `g` of the table.
    #[inline]
    fn group(&self, g: usize) -> &Group<T> {
        &self.list[self.first + g]
    }
}

impl<T: Copy, const MAX: usize> ShardedTable<T, MAX> {
    /// Puts the lists of groups of `tables` into one list they share, each
    /// table's groups a run of it, in order; the tables hold the same
    /// entries. A table whose list is another's copies its own run out
    /// before it changes (see [`ShardedTable::path_mut`]).
    ///
    /// Every copy of a table takes a reference on its list, a cache line of
    /// the list's own: for a table that is copied often but rarely changed,
    /// such as a project's per-name index in a large catalog (copied with
    /// its snapshot by every write into the project, changed by
    /// additions, removals and renames only), that line is cold on each
    /// copy, where one list shared by every project's index stays in cache.
    ///
    /// The shared list keeps every table's groups as they were until the
    /// last table sharing it is dropped (or has copied its run out): for
    /// entries of plain bytes (`T: Copy`, holding no reference to anything
    /// else) that is at most one more copy of the tables' groups and shards
    /// as they were shared.
    pub(super) fn share_lists<'a>(tables: impl IntoIterator<Item = &'a mut Self>)
    where
        T: 'a,
    {
        let mut tables: Vec<&mut Self> = tables.into_iter().collect();
        let list: Arc<[Group<T>]> = tables.iter().flat_map(|t| t.groups().iter().cloned()).collect();
        let mut first = 0;
        for table in &mut tables {
            table.list = Arc::clone(&list);
            table.first = first;
            first += table.count;
        }
    }
}

/// Reads `x`'s reference count (see [`ShardedTable::warm_path`]).
pub(super) fn warm_count<U: ?Sized>(x: &Arc<U>) {
    std::hint::black_box(Arc::strong_count(x));
}

/// Where `hash` goes among `groups` groups of `shards` shards (both powers
/// of two): (group, shard in the group), from bits the shards' [`tag`]s do
/// not use.
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
        self.count * self.group(0).len()
    }

    /// The (group, shard) of `hash`.
    #[inline]
    fn position(&self, hash: u64) -> (usize, usize) {
        locate(hash, self.count, self.group(0).len())
    }

    /// The entry with `hash` for which `eq` holds.
    #[inline]
    pub(super) fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        let (g, s) = self.position(hash);
        self.group(g)[s].find(tag(hash), eq)
    }

    /// Whether `other` is a copy of this table that neither has changed
    /// since (they share everything).
    #[cfg(test)]
    pub(super) fn shares_all_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.list, &other.list) && self.first == other.first
    }

    /// Whether `other` shares this table's list of groups (its own or a
    /// run of it: see [`ShardedTable::share_lists`]).
    #[cfg(test)]
    pub(super) fn shares_list_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.list, &other.list)
    }

    /// Every shard's slot, in no particular order.
    fn slots(&self) -> impl Iterator<Item = &Slot<T>> {
        self.groups().iter().flat_map(|g| g.iter())
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots().flat_map(Slot::entries)
    }

    /// The slot of shard `s` of group `g`, its group and the list of
    /// groups unshared: the list and the group are copied if another table
    /// holds them (of a list other tables have runs of, the table's run
    /// only). The slot's shard or patch is left to the caller, who copies
    /// or patches it (if shared) as it changes it.
    fn path_mut(&mut self, g: usize, s: usize) -> &mut Slot<T> {
        self.warm_path(g);
        if self.count != self.list.len() {
            self.list = self.groups().iter().cloned().collect();
            self.first = 0;
        }
        let groups = Arc::make_mut(&mut self.list);
        let group = Arc::make_mut(&mut groups[g]);
        &mut group[s]
    }

    /// Reads every reference count that copying the path to a shard of
    /// group `g` will increment: those of the groups when the list is
    /// shared, of the group's shards when the group is (or its list). (The
    /// counts of the shard's entries, which a whole copy of it takes, are
    /// read by the copy: see [`Slot::with`].) Each increment is a locked instruction, which on x86 waits for its cache
    /// line before any later memory access may go ahead; in a large
    /// catalog these lines are cold, and a copy fetched them one at a
    /// time. Read with plain loads first, which the processor overlaps,
    /// they arrive together and the increments find them in cache.
    fn warm_path(&self, g: usize) {
        let list = Arc::strong_count(&self.list) > 1;
        if list {
            self.groups().iter().for_each(warm_count);
        }
        let group = self.group(g);
        if list || Arc::strong_count(group) > 1 {
            group.iter().for_each(Slot::warm_count);
        }
    }

    /// Reads, with plain loads, every cache line that a copy of this table
    /// and a replacement in the copy of the entry with `hash` will touch:
    /// the list's reference count (the copy takes one), the counts of the
    /// groups and of the shards of the entry's group (the change copies
    /// that path: see [`ShardedTable::warm_path`]), the shard's tags and
    /// the entries under the entry's tag (the lookup reads them, the
    /// replacement takes a reference on the one it returns, and the change
    /// compares it: see [`Entry::warm_for_change`]), and the counts
    /// the patch over the shard takes (see [`Slot::replace`]). In a patched
    /// shard whose patch has the entry's tag, only the patch's entry (the
    /// one the lookup tests first, and almost always finds) is read that
    /// way, not the shard's arrays below it. Called
    /// before the copy, while nothing else waits: the lines of each level
    /// are fetched together, and together with the next level's, where the
    /// copy and the lookup would fetch many of them one after another (each
    /// reference count taken is a locked instruction that holds back every
    /// later load until its line is in).
    pub(super) fn warm_change(&self, hash: u64) {
        warm_count(&self.list);
        let (g, s) = self.position(hash);
        self.groups().iter().for_each(warm_count);
        let group = self.group(g);
        group.iter().for_each(Slot::warm_count);
        let slot = &group[s];
        let base = slot.base();
        warm_count(base);
        let tag = tag(hash);
        let under_tag = |_: usize, e: &T| {
            e.warm_for_change();
            false
        };
        match slot {
            Slot::Whole(shard) => {
                shard.index(tag, under_tag);
            }
            Slot::Patched(patch) if patch.tag == tag => patch.value.warm_for_change(),
            Slot::Patched(patch) => {
                // A change to another entry of the shard copies it whole,
                // the patch's entry with it.
                patch.value.warm();
                patch.base.index(tag, under_tag);
            }
        }
    }

    /// Reads the list's reference count, which a copy of the table takes.
    pub(super) fn warm_copy(&self) {
        warm_count(&self.list);
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
        let (g, s) = self.position(hash);
        match self.group(g)[s].index(tag(hash), &mut eq) {
            // Same length and hash: a shared shard gets a patch.
            Some(i) => Some(self.path_mut(g, s).replace(i, value)),
            None => {
                self.insert_unique(hash, value, hasher);
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
        let (g, s) = self.position(hash);
        let slot = self.path_mut(g, s);
        match slot.own_whole() {
            Some(own) => own.push(tag(hash), value),
            None => *slot = Slot::Whole(Arc::new(slot.with(tag(hash), value))),
        }
        self.len += 1;
    }

    /// Removes the entry with `hash` for which `eq` holds and returns it.
    /// Copies the one shard it changes if another table shares it (and
    /// nothing when there is no such entry).
    pub(super) fn remove(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<T> {
        let (g, s) = self.position(hash);
        let i = self.group(g)[s].index(tag(hash), eq)?;
        let slot = self.path_mut(g, s);
        let value = match slot.own_whole() {
            Some(own) => own.swap_remove(i),
            None => {
                let (rest, value) = slot.without(i);
                *slot = Slot::Whole(Arc::new(rest));
                value
            }
        };
        self.len -= 1;
        Some(value)
    }

    /// Doubles the number of shards, redistributing every entry; each new
    /// shard is allocated at its length.
    fn split(&mut self, hasher: &impl Fn(&T) -> u64) {
        let (groups, shards) = layout(self.shard_count() * 2);
        let places: Vec<usize> = self
            .iter()
            .map(|value| {
                let (g, s) = locate(hasher(value), groups, shards);
                g * shards + s
            })
            .collect();
        let old = self
            .slots()
            .flat_map(|s| s.base().tags().zip(s.entries().cloned()));
        let len = self.len;
        *self = ShardedTable::of(laid_out(groups, shards, &places, old), len);
    }

    /// A table of `entries` (each with its hash) as adding them one by one
    /// with [`ShardedTable::insert_unique`] leaves it: as many shards, and
    /// in each its entries in the order given. Built in one pass, each
    /// shard allocated once at its length (where adding one by one
    /// reallocates a shard on each entry and redistributes them all on
    /// each doubling).
    pub(super) fn from_entries(entries: Vec<(u64, T)>) -> Self {
        // Adding doubles the shards before an entry that would pass `MAX`
        // a shard on average: it ends with the fewest that hold them all.
        let len = entries.len();
        let mut total = 1;
        while total * MAX < len {
            total *= 2;
        }
        let (groups, shards) = layout(total);
        let places: Vec<usize> = entries
            .iter()
            .map(|&(hash, _)| {
                let (g, s) = locate(hash, groups, shards);
                g * shards + s
            })
            .collect();
        let tagged = entries.into_iter().map(|(hash, value)| (tag(hash), value));
        ShardedTable::of(laid_out(groups, shards, &places, tagged), len)
    }
}

/// `groups` groups of `shards` shards holding `entries` (each with its
/// tag), entry `i` in shard `places[i]` (counted across the groups), in
/// order; each shard allocated at its length.
fn laid_out<T>(
    groups: usize,
    shards: usize,
    places: &[usize],
    entries: impl Iterator<Item = (u8, T)>,
) -> Arc<[Group<T>]> {
    let mut lengths = vec![0; groups * shards];
    for &p in places {
        lengths[p] += 1;
    }
    let mut tags: Vec<Vec<u8>> = lengths.iter().map(|&n| Vec::with_capacity(n)).collect();
    let mut values: Vec<Vec<T>> = lengths.iter().map(|&n| Vec::with_capacity(n)).collect();
    for ((t, value), &p) in entries.zip(places) {
        tags[p].push(t);
        values[p].push(value);
    }
    let mut built = tags.into_iter().zip(values).map(|(tags, entries)| {
        Slot::Whole(Arc::new(Shard {
            tags: packed(tags.into_iter()),
            entries: entries.into_boxed_slice(),
        }))
    });
    (0..groups)
        .map(|_| built.by_ref().take(shards).collect())
        .collect()
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

    impl<T> Slot<T> {
        /// Whether `other` is this very shard or patch.
        fn same(&self, other: &Self) -> bool {
            match (self, other) {
                (Slot::Whole(a), Slot::Whole(b)) => Arc::ptr_eq(a, b),
                (Slot::Patched(a), Slot::Patched(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
        }
    }

    impl<T: super::Entry, const MAX: usize> ShardedTable<T, MAX> {
        /// How many slots are patches.
        fn patches(&self) -> usize {
            self.slots().filter(|s| matches!(s, Slot::Patched(_))).count()
        }
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
        assert_eq!(layout(t.shard_count()), (t.groups().len(), t.group(0).len()));
        let mut copy = t.clone();
        assert!(t.shares_all_with(&copy), "a copy shares the whole list");
        assert_eq!(put(&mut copy, &h, (7, 1)), Some((7, 0)));
        assert!(!t.shares_all_with(&copy));
        assert_eq!(copy.remove(h(8), |x| x.0 == 8), Some((8, 0)));
        assert_eq!(get(&t, &h, 7), Some((7, 0)));
        assert_eq!(get(&t, &h, 8), Some((8, 0)));
        assert_eq!(get(&copy, &h, 7), Some((7, 1)));
        assert_eq!(get(&copy, &h, 8), None);
        assert_eq!((t.len(), copy.len()), (1_000, 999));
        // Only the shards of keys 7 and 8 (and their groups) are no longer
        // shared.
        let unshared = t.slots().zip(copy.slots()).filter(|(a, b)| !a.same(b)).count();
        assert!((1..=2).contains(&unshared), "{unshared} shards copied");
        let groups = t.groups().iter().zip(copy.groups().iter());
        let unshared = groups.filter(|(a, b)| !Arc::ptr_eq(a, b)).count();
        assert!((1..=2).contains(&unshared), "{unshared} groups copied");
    }

    thread_local! {
        /// How many entries of type `Counted` were warmed on this thread.
        static WARMED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    thread_local! {
        /// How many entries of type `Counted` were cloned on this thread.
        static CLONED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// An entry (its key and a value) that counts the calls of
    /// [`Entry::warm`] and its clones.
    #[derive(Debug, PartialEq)]
    struct Counted(u32, u32);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            CLONED.with(|c| c.set(c.get() + 1));
            Counted(self.0, self.1)
        }
    }

    impl super::Entry for Counted {
        fn warm(&self) {
            WARMED.with(|w| w.set(w.get() + 1));
        }
    }

    type CountedTable = ShardedTable<Counted, 32>;

    fn put_counted(t: &mut CountedTable, k: u32, v: u32) -> Option<u32> {
        t.insert(hash(k), Counted(k, v), |x| x.0 == k, |x| hash(x.0))
            .map(|old| old.1)
    }

    fn get_counted(t: &CountedTable, k: u32) -> Option<u32> {
        t.find(hash(k), |x| x.0 == k).map(|x| x.1)
    }

    fn warmed() -> usize {
        WARMED.with(std::cell::Cell::get)
    }

    fn cloned() -> usize {
        CLONED.with(std::cell::Cell::get)
    }

    /// The slot of `k`'s shard.
    fn slot_of(t: &CountedTable, k: u32) -> &Slot<Counted> {
        let (g, s) = t.position(hash(k));
        &t.group(g)[s]
    }

    #[test]
    fn a_replacement_in_a_copy_patches_its_shard_and_other_changes_copy_it_whole() {
        let mut t = CountedTable::default();
        for k in 0..1_000 {
            put_counted(&mut t, k, 0);
        }
        // Keys of the shard of 7.
        let (g, s) = t.position(hash(7));
        let mates: Vec<u32> = (0..1_000)
            .filter(|&k| k != 7 && t.position(hash(k)) == (g, s))
            .collect();
        let shard_len = slot_of(&t, 7).len();
        assert_eq!(mates.len() + 1, shard_len);
        // The table is not shared: its shard changes in place.
        let (w, c) = (warmed(), cloned());
        assert_eq!(put_counted(&mut t, 7, 1), Some(0));
        assert_eq!((warmed() - w, cloned() - c), (0, 0));
        assert!(matches!(slot_of(&t, 7), Slot::Whole(_)));
        // A replacement in a copy: a patch over the shared shard, which
        // clones and reads no entry but the one it returns.
        let original = t.clone();
        let mut copy = t.clone();
        let (w, c) = (warmed(), cloned());
        assert_eq!(put_counted(&mut copy, 7, 2), Some(1));
        assert_eq!((warmed() - w, cloned() - c), (0, 1));
        let Slot::Patched(patch) = slot_of(&copy, 7) else {
            panic!("no patch")
        };
        assert!(Arc::ptr_eq(&patch.base, slot_of(&original, 7).base()));
        // Its own patch changes in place.
        let (w, c) = (warmed(), cloned());
        assert_eq!(put_counted(&mut copy, 7, 3), Some(2));
        assert_eq!((warmed() - w, cloned() - c), (0, 0));
        // A copy of the copy replacing the same entry: a new patch over the
        // same shard.
        let mut second = copy.clone();
        let (w, c) = (warmed(), cloned());
        assert_eq!(put_counted(&mut second, 7, 4), Some(3));
        assert_eq!((warmed() - w, cloned() - c), (0, 1));
        let Slot::Patched(again) = slot_of(&second, 7) else {
            panic!("no patch")
        };
        assert!(Arc::ptr_eq(&again.base, slot_of(&original, 7).base()));
        assert!(!slot_of(&second, 7).same(slot_of(&copy, 7)));
        // Another entry of the patched shard: the shard is copied whole
        // (every entry read and cloned, the patch's entry as it has it),
        // and never patched twice.
        let mate = mates[0];
        let mut third = second.clone();
        let (w, c) = (warmed(), cloned());
        assert_eq!(put_counted(&mut third, mate, 5), Some(0));
        assert_eq!((warmed() - w, cloned() - c), (shard_len, shard_len + 1));
        assert!(matches!(slot_of(&third, 7), Slot::Whole(_)));
        assert_eq!(get_counted(&third, 7), Some(4));
        // Adding to and removing from a patched shard copy it whole too.
        let mut added = second.clone();
        let new_mate = (1_000..).find(|&k| t.position(hash(k)) == (g, s)).unwrap_or(0);
        assert_eq!(put_counted(&mut added, new_mate, 6), None);
        assert!(matches!(slot_of(&added, 7), Slot::Whole(_)));
        let mut removed = second.clone();
        assert_eq!(removed.remove(hash(mate), |x| x.0 == mate).map(|x| x.1), Some(0));
        assert!(matches!(slot_of(&removed, 7), Slot::Whole(_)));
        // Every table holds its own.
        let tables = [(&original, 1, 0), (&copy, 3, 0), (&second, 4, 0), (&third, 4, 5)];
        for (table, seven, of_mate) in tables {
            assert_eq!(get_counted(table, 7), Some(seven));
            assert_eq!(get_counted(table, mate), Some(of_mate));
            assert_eq!(table.iter().count(), 1_000);
        }
        assert_eq!(
            (get_counted(&added, 7), get_counted(&added, new_mate), added.len()),
            (Some(4), Some(6), 1_001)
        );
        assert_eq!(
            (
                get_counted(&removed, 7),
                get_counted(&removed, mate),
                removed.len()
            ),
            (Some(4), None, 999)
        );
    }

    #[test]
    fn warming_a_change_reads_the_entries_under_its_tag_and_changes_nothing() {
        let empty = CountedTable::default();
        let before = warmed();
        empty.warm_change(hash(1));
        assert_eq!(warmed(), before, "an empty table has no entries to read");
        let mut t = CountedTable::default();
        for k in 0..1_000 {
            put_counted(&mut t, k, 0);
        }
        let mut patched = t.clone();
        put_counted(&mut patched, 7, 1);
        for table in [&t, &patched] {
            let copy = table.clone();
            for k in [0, 7, 999, 5_000] {
                let slot = slot_of(table, k);
                let under_tag = slot.base().tags().filter(|&x| x == tag(hash(k))).count();
                // The patch's entry alone under its own tag; else every
                // entry under the tag, and the patch's count.
                let expected = match slot {
                    Slot::Patched(p) if p.tag == tag(hash(k)) => 1,
                    Slot::Patched(_) => under_tag + 1,
                    Slot::Whole(_) => under_tag,
                };
                let before = warmed();
                table.warm_change(hash(k));
                assert_eq!(warmed() - before, expected, "key {k}");
            }
            assert!(table.shares_all_with(&copy), "nothing was copied");
        }
        assert_eq!(get_counted(&patched, 7), Some(1));
    }

    #[test]
    fn tables_sharing_one_list_answer_as_before_and_copy_their_run_out_to_change() {
        // An empty table (one group), one of one group of several shards,
        // one of several groups.
        let mut tables: Vec<Table> = [0u32, 100, 1_000]
            .iter()
            .enumerate()
            .map(|(n, &size)| {
                let mut t = Table::default();
                for k in 0..size {
                    put(&mut t, &hash, (k, n as u32));
                }
                t
            })
            .collect();
        let own: Vec<Table> = tables.clone();
        let counts: Vec<usize> = tables.iter().map(|t| t.count).collect();
        assert!(counts[2] > 1);
        Table::share_lists(tables.iter_mut());
        let list = Arc::clone(&tables[0].list);
        assert_eq!(list.len(), counts.iter().sum::<usize>());
        let mut first = 0;
        for (n, t) in tables.iter().enumerate() {
            assert!(Arc::ptr_eq(&t.list, &list));
            assert_eq!((t.first, t.count, t.len()), (first, counts[n], own[n].len()));
            first += counts[n];
            for k in 0..1_100 {
                assert_eq!(get(t, &hash, k), get(&own[n], &hash, k), "table {n}, key {k}");
            }
            assert_eq!(format!("{t:?}"), format!("{:?}", own[n]));
        }
        // A copy of a table in the shared list shares its run.
        let copy = tables[1].clone();
        assert!(copy.shares_all_with(&tables[1]));
        assert!(!tables[1].shares_all_with(&tables[2]));
        // A replacement copies the table's run out (its groups only); the
        // others keep theirs in the shared list.
        assert_eq!(put(&mut tables[1], &hash, (5, 9)), Some((5, 1)));
        assert!(!Arc::ptr_eq(&tables[1].list, &list));
        assert_eq!((tables[1].first, tables[1].list.len()), (0, counts[1]));
        assert!(Arc::ptr_eq(&tables[2].list, &list));
        assert_eq!(get(&tables[1], &hash, 5), Some((5, 9)));
        assert_eq!(get(&copy, &hash, 5), Some((5, 1)));
        // A removal, and additions past a doubling of the shards.
        assert_eq!(tables[2].remove(hash(7), |x| x.0 == 7), Some((7, 2)));
        for k in 0..100 {
            assert_eq!(put(&mut tables[0], &hash, (k, 3)), None);
        }
        assert!(tables[0].shard_count() > 1);
        assert!(tables.iter().all(|t| !Arc::ptr_eq(&t.list, &list)));
        assert_eq!(
            (tables[0].len(), tables[1].len(), tables[2].len()),
            (100, 100, 999)
        );
        for k in 0..1_100 {
            assert_eq!(get(&tables[0], &hash, k), (k < 100).then_some((k, 3)));
            let expected = (k < 100).then_some((k, if k == 5 { 9 } else { 1 }));
            assert_eq!(get(&tables[1], &hash, k), expected);
            assert_eq!(get(&tables[2], &hash, k), (k < 1_000 && k != 7).then_some((k, 2)));
            // The copy still reads the shared list as it was.
            assert_eq!(get(&copy, &hash, k), (k < 100).then_some((k, 1)));
        }
        // Sharing the list of one table, or of none, changes nothing.
        let alone = tables[2].clone();
        Table::share_lists([&mut tables[2]]);
        assert_eq!((tables[2].first, tables[2].count), (0, tables[2].list.len()));
        assert_eq!(format!("{:?}", tables[2]), format!("{alone:?}"));
        Table::share_lists(std::iter::empty());
    }

    #[test]
    fn removing_what_is_not_there_copies_nothing() {
        let mut t = Table::default();
        for k in 0..100 {
            put(&mut t, &hash, (k, k));
        }
        let mut copy = t.clone();
        assert_eq!(copy.remove(hash(1_000), |x| x.0 == 1_000), None);
        assert!(t.shares_all_with(&copy));
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
        assert_eq!((t.shard_count(), t.groups().len(), t.group(0).len()), (64, 8, 8));
        let mut all: Vec<u32> = t.iter().map(|e| e.0).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1_000).collect::<Vec<_>>());
        let t = fill::<8>(100);
        assert_eq!((t.shard_count(), t.groups().len(), t.group(0).len()), (16, 4, 4));
        let t = fill::<64>(64);
        assert_eq!((t.shard_count(), t.groups().len(), t.group(0).len()), (1, 1, 1));
        let t = fill::<64>(65);
        assert_eq!((t.shard_count(), t.groups().len(), t.group(0).len()), (2, 2, 1));
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

    /// Checks what every shard of `t` holds against `hasher`: one tag per
    /// entry, each the tag of the entry's hash (the patch's entry too),
    /// eight to a word in as many words as they take (zero past the last),
    /// entries in an array of exactly their number; returns the bytes the
    /// shards and the patches over them allocate (their `Arc` blocks and
    /// the shards' two arrays).
    fn shard_bytes(t: &Table, hasher: impl Fn(u32) -> u64) -> usize {
        let mut bytes = 0;
        for slot in t.slots() {
            let shard = slot.base();
            let n = shard.len();
            assert_eq!(shard.tags.len(), n.div_ceil(8));
            for (t, e) in shard.tags().zip(slot.entries()) {
                assert_eq!(t, tag(hasher(e.0)), "entry {e:?} under another tag");
            }
            if let Slot::Patched(patch) = slot {
                let (below, above) = (&shard.entries[patch.at], &patch.value);
                assert_eq!(below.0, above.0, "a patch replaces an entry of the same key");
                bytes += 2 * size_of::<usize>() + size_of::<Patched<Entry>>();
            }
            if !n.is_multiple_of(8) {
                assert_eq!(shard.tags[n / 8] >> (8 * (n % 8)), 0, "bytes past the last tag");
            }
            // A boxed slice's block is its contents: no spare capacity.
            assert_eq!(std::mem::size_of_val(&*shard.entries), n * 8);
            assert_eq!(std::mem::size_of_val(&*shard.tags), n.div_ceil(8) * 8);
            bytes += 2 * size_of::<usize>() + size_of::<Shard<Entry>>() + n * 8 + n.div_ceil(8) * 8;
        }
        bytes
    }

    /// What `shard_bytes` gives at most for `n` entries in `shards` shards
    /// with `patches` patches over them: 8 bytes an entry and its tag, a
    /// 48-byte block a shard and at most 7 bytes of its last word of tags,
    /// and a 40-byte block a patch.
    fn at_most(n: usize, shards: usize, patches: usize) -> usize {
        n * 9 + shards * (48 + 7) + patches * 40
    }

    #[test]
    fn shards_are_sized_to_their_entries_whichever_way_they_were_changed() {
        let mut t = Table::default();
        // Built unshared (each shard grown in place), across splits.
        for k in 0..1_000 {
            put(&mut t, &hash, (k, 0));
        }
        let bulk = shard_bytes(&t, hash);
        // 1,000 entries of 8 bytes and a tag each, and per shard (32 of
        // them, about 31 entries) a 48-byte block and a word of tags
        // partly empty: under 11 bytes an entry
        // (the hash tables these shards replace had 64 buckets of 9 bytes
        // for about 31 entries here).
        assert_eq!(t.shard_count(), 32);
        assert!((1_000 * 9 + 32 * 48..=at_most(1_000, 32, 0)).contains(&bulk));
        // Changed as a copy (each shard copied at its new length) and in
        // place, growing, shrinking and replacing.
        let original = t.clone();
        for k in (0..1_000).step_by(3) {
            assert_eq!(t.remove(hash(k), |x| x.0 == k), Some((k, 0)));
        }
        for k in (1_000..1_200).step_by(7) {
            put(&mut t, &hash, (k, 1));
        }
        for k in (1..1_000).step_by(3) {
            assert_eq!(put(&mut t, &hash, (k, 2)), Some((k, 0)));
        }
        let copy = t.clone();
        for k in 2_000..2_100 {
            put(&mut t, &hash, (k, 3));
        }
        // Replaced in a copy: patches over shared shards.
        let unpatched = t.clone();
        for k in (1..1_000).step_by(3 * 37) {
            assert_eq!(put(&mut t, &hash, (k, 4)), Some((k, 2)));
        }
        assert!(t.patches() > 0);
        assert_eq!(unpatched.patches(), 0);
        assert!(shard_bytes(&t, hash) <= at_most(t.len(), t.shard_count(), t.patches()));
        assert!(shard_bytes(&copy, hash) <= at_most(copy.len(), copy.shard_count(), copy.patches()));
        assert_eq!(shard_bytes(&original, hash), bulk);
        assert_eq!(original.iter().filter(|e| e.1 == 0).count(), 1_000);
    }

    proptest! {
        /// A shard's lookup finds the first entry whose tag matches and
        /// which passes the test, as a plain scan does, whatever the tags
        /// (zero, as the bytes past the last one are; high bit set;
        /// repeated) and wherever it stands in its word of eight.
        #[test]
        fn a_shard_finds_what_a_plain_scan_finds(
            tags in prop::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()],
                0..40,
            ),
            pass in prop::collection::vec(any::<bool>(), 40),
            wanted in prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()],
        ) {
            let shard = Shard {
                entries: (0..tags.len()).collect::<Box<[usize]>>(),
                tags: packed(tags.iter().copied()),
            };
            let plain = (0..tags.len()).find(|&i| tags[i] == wanted && pass[i]);
            prop_assert_eq!(shard.index(wanted, |i, _| pass[i]), plain);
            let tested = std::cell::Cell::new(0);
            shard.index(wanted, |_, _| { tested.set(tested.get() + 1); false });
            // Only entries under the wanted tag are tested.
            prop_assert_eq!(tested.get(), tags.iter().filter(|&&t| t == wanted).count());
        }
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

    /// Hashes that keep three bits where the table places an entry (among
    /// up to 8 shards) and one bit of the tag: tags collide all the time,
    /// shards hold many times `MAX`.
    fn colliding(key: u32) -> u64 {
        hash(key) & 0x0100_0007_0000_0000
    }

    proptest! {
        /// A table built in one pass is the table adding the same entries
        /// one by one leaves: the same groups of shards, each with the same
        /// tags and entries in the same order (so every lookup agrees);
        /// with full hashes and with hashes whose tags and places collide,
        /// equal keys included.
        #[test]
        fn a_table_built_at_once_is_the_table_built_entry_by_entry(
            keys in prop::collection::vec(0u32..2_000, 0..400),
            collide in any::<bool>(),
        ) {
            let hash = |k| if collide { colliding(k) } else { hash(k) };
            let mut one_by_one = Table::default();
            for (i, &k) in keys.iter().enumerate() {
                one_by_one.insert_unique(hash(k), (k, i as u32), |x| hash(x.0));
            }
            let entries = keys.iter().enumerate().map(|(i, &k)| (hash(k), (k, i as u32))).collect();
            let at_once = Table::from_entries(entries);
            prop_assert_eq!(at_once.len(), one_by_one.len());
            prop_assert_eq!(
                (at_once.groups().len(), at_once.group(0).len()),
                (one_by_one.groups().len(), one_by_one.group(0).len())
            );
            for (a, b) in at_once.slots().zip(one_by_one.slots()) {
                prop_assert_eq!(&a.base().tags, &b.base().tags);
                prop_assert_eq!(&a.base().entries, &b.base().entries);
            }
            for &k in &keys {
                prop_assert_eq!(get(&at_once, &hash, k), get(&one_by_one, &hash, k));
            }
        }
    }

    proptest! {
        /// Every table, and every copy taken along the way, holds exactly
        /// what a plain map given the same operations holds; with full
        /// hashes and with hashes whose tags and places collide.
        #[test]
        fn tables_and_their_copies_agree_with_a_map(
            ops in prop::collection::vec(op(), 0..600),
            collide in any::<bool>(),
        ) {
            let hash = |k| if collide { colliding(k) } else { hash(k) };
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
                shard_bytes(&t, hash);
            }
        }
    }
}
