//! The hash map behind the log mirror, built so that growing it never
//! stalls decisions.
//!
//! A standard map rehashes every key when it doubles. With hundreds of
//! thousands of triplet keys (three heap strings each) that is a cache miss
//! per string and measured at 180 ms for one doubling at 229k keys: every
//! decision queued meanwhile waited. Here each bucket holds the key's hash
//! and a pointer, so doubling copies 16 bytes per key and reads no key.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

struct Item<K, V> {
    hash: u64,
    entry: Box<(K, V)>,
}

/// A map from `K` to `V` whose growth never rereads keys.
pub(super) struct Table<K, V> {
    items: HashTable<Item<K, V>>,
    hasher: foldhash::fast::RandomState,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table { items: HashTable::new(), hasher: foldhash::fast::RandomState::default() }
    }
}

impl<K: Hash + Eq, V> Table<K, V> {
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.items.find(hash, |i| i.hash == hash && i.entry.0.borrow() == key).map(|i| &i.entry.1)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: K, value: V) {
        let hash = self.hash(&key);
        match self.items.find_mut(hash, |i| i.hash == hash && i.entry.0 == key) {
            Some(item) => item.entry.1 = value,
            None => {
                self.items.insert_unique(hash, Item { hash, entry: Box::new((key, value)) }, |i| i.hash);
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let found = self.items.find_entry(hash, |i| i.hash == hash && i.entry.0.borrow() == key).ok()?;
        Some(found.remove().0.entry.1)
    }

    /// Keep only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.items.retain(|i| keep(&i.entry.0, &i.entry.1));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter().map(|i| (&i.entry.0, &i.entry.1))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl<K: Hash + Eq, V> Extend<(K, V)> for Table<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map() {
        let mut t: Table<String, u32> = Table::default();
        for i in 0..10_000u32 {
            t.insert(format!("k{i}"), i);
        }
        t.insert("k7".into(), 70);
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.get("k7"), Some(&70));
        assert_eq!(t.get("k9999"), Some(&9999));
        assert!(!t.contains_key("nope"));
        assert_eq!(t.remove("k7"), Some(70));
        assert_eq!(t.remove("k7"), None);
        assert_eq!(t.len(), 9_999);
        assert_eq!(t.iter().map(|(_, v)| u64::from(*v)).sum::<u64>(), (0..10_000u64).sum::<u64>() - 7);
    }
}
