//! A shard's local channel → connections index. Owned by one shard thread; the shard mirrors
//! "this channel has a subscriber here" into the global [`SubscriptionTable`] on the first
//! subscriber's arrival and the last one's departure.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::Subscriptions;
use crate::fanout::{Fanout, SubscriptionTable};
use crate::protocol::Filter;

/// A channel's subscribers on this shard: those without a filter as bare connection keys
/// (4 bytes each: every idle subscriber has one), those with one beside it.
#[derive(Debug, Default)]
pub struct Subscribers {
    plain: Vec<u32>,
    filtered: Vec<(u32, Arc<Filter>)>,
}

impl Subscribers {
    /// Every subscriber: (connection key, its filter).
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (usize, Option<&Filter>)> + '_ {
        let plain = self.plain.iter().map(|&k| (k as usize, None));
        plain.chain(self.filtered.iter().map(|(k, f)| (*k as usize, Some(&**f))))
    }

    pub fn len(&self) -> usize {
        self.plain.len() + self.filtered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes `conn`; returns whether it was there.
    fn remove(&mut self, conn: u32) -> bool {
        if let Some(i) = self.plain.iter().position(|&k| k == conn) {
            self.plain.swap_remove(i);
            return true;
        }
        if let Some(i) = self.filtered.iter().position(|(k, _)| *k == conn) {
            self.filtered.swap_remove(i);
            return true;
        }
        false
    }

    /// Adds `conn` with `filter`, replacing its earlier entry.
    fn insert(&mut self, conn: u32, filter: Option<Arc<Filter>>) {
        self.remove(conn);
        match filter {
            None => self.plain.push(conn),
            Some(f) => self.filtered.push((conn, f)),
        }
    }
}

#[derive(Debug)]
pub struct ChannelIndex {
    map: HashMap<Arc<str>, Subscribers>,
    /// This shard's index and the fan-out whose global table mirrors `map`'s keys.
    shard: usize,
    fanout: Arc<Fanout>,
}

impl Subscriptions for ChannelIndex {
    fn subscribe(&mut self, channel: &str, conn: usize, filter: Option<Arc<Filter>>) -> Arc<str> {
        let fanout = self.fanout.clone();
        self.insert(self.shard, &fanout.subscriptions, channel, conn, filter)
    }

    fn unsubscribe(&mut self, channel: &str, conn: usize) {
        let fanout = self.fanout.clone();
        self.remove(self.shard, &fanout.subscriptions, channel, conn);
    }
}

impl ChannelIndex {
    pub fn new(shard: usize, fanout: Arc<Fanout>) -> ChannelIndex {
        ChannelIndex {
            map: HashMap::new(),
            shard,
            fanout,
        }
    }

    #[inline]
    pub fn get(&self, channel: &str) -> Option<&Subscribers> {
        self.map.get(channel)
    }

    /// Adds or replaces `conn`'s subscription to `channel`. Returns the channel's name as the
    /// index holds it (a subscriber keeps this one shared copy). Connection keys fit 32 bits
    /// (a shard's slab is far smaller).
    pub fn insert(
        &mut self,
        shard: usize,
        table: &SubscriptionTable,
        channel: &str,
        conn: usize,
        filter: Option<Arc<Filter>>,
    ) -> Arc<str> {
        if let Some(name) = self.map.get_key_value(channel).map(|(k, _)| k.clone()) {
            if let Some(v) = self.map.get_mut(channel) {
                v.insert(conn as u32, filter);
            }
            return name;
        }
        let name: Arc<str> = channel.into();
        let mut v = Subscribers::default();
        v.insert(conn as u32, filter);
        self.map.insert(name.clone(), v);
        table.set(channel, shard, true);
        name
    }

    /// Removes `conn` from `channel`; returns whether it was there.
    pub fn remove(
        &mut self,
        shard: usize,
        table: &SubscriptionTable,
        channel: &str,
        conn: usize,
    ) -> bool {
        let Some(v) = self.map.get_mut(channel) else {
            return false;
        };
        if !v.remove(conn as u32) {
            return false;
        }
        if v.is_empty() {
            self.map.remove(channel);
            table.set(channel, shard, false);
        }
        true
    }

    pub fn channels(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_table_follows_first_and_last_local_subscriber() {
        let t = SubscriptionTable::default();
        let mut ix = ChannelIndex::new(2, Arc::new(Fanout::new(Vec::new())));
        ix.insert(2, &t, "a", 1, None);
        let f = Arc::new(Filter::parse(&serde_json::json!({"k": 1})).expect("filter"));
        ix.insert(2, &t, "a", 5, Some(f.clone()));
        ix.insert(2, &t, "a", 5, Some(f));
        let subs: Vec<_> = ix.get("a").map_or(Vec::new(), |s| {
            s.iter().map(|(k, f)| (k, f.is_some())).collect()
        });
        assert_eq!(
            subs,
            [(1, false), (5, true)],
            "re-subscribing replaces, never duplicates"
        );
        ix.insert(2, &t, "a", 5, None);
        assert_eq!(ix.get("a").map(Subscribers::len), Some(2));
        assert_eq!(t.shards_for("a"), 0b100);
        assert!(ix.remove(2, &t, "a", 1));
        assert_eq!(t.shards_for("a"), 0b100);
        assert!(ix.remove(2, &t, "a", 5));
        assert_eq!(t.shards_for("a"), 0);
        assert!(!ix.remove(2, &t, "a", 5));
    }
}
