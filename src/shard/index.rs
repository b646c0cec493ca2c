//! A shard's local channel → connections index. Owned by one shard thread; the shard mirrors
//! "this channel has a subscriber here" into the global [`SubscriptionTable`] on the first
//! subscriber's arrival and the last one's departure.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::Subscriptions;
use crate::fanout::{Fanout, SubscriptionTable};
use crate::protocol::Filter;

/// One subscriber of a channel on this shard.
#[derive(Debug, Clone)]
pub struct Entry {
    pub conn: usize,
    pub filter: Option<Arc<Filter>>,
}

#[derive(Debug)]
pub struct ChannelIndex {
    map: HashMap<Arc<str>, Vec<Entry>>,
    /// This shard's index and the fan-out whose global table mirrors `map`'s keys.
    shard: usize,
    fanout: Arc<Fanout>,
}

impl Subscriptions for ChannelIndex {
    fn subscribe(&mut self, channel: &str, conn: usize, filter: Option<Arc<Filter>>) -> Arc<str> {
        let fanout = self.fanout.clone();
        self.insert(
            self.shard,
            &fanout.subscriptions,
            channel,
            Entry { conn, filter },
        )
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
    pub fn get(&self, channel: &str) -> Option<&[Entry]> {
        self.map.get(channel).map(Vec::as_slice)
    }

    /// Adds or replaces `conn`'s subscription to `channel`. Returns the channel's name as the
    /// index holds it (a subscriber keeps this one shared copy).
    pub fn insert(
        &mut self,
        shard: usize,
        table: &SubscriptionTable,
        channel: &str,
        e: Entry,
    ) -> Arc<str> {
        if let Some((name, v)) = self.map.get_key_value(channel) {
            let name = name.clone();
            let at = v.iter().position(|x| x.conn == e.conn);
            if let Some(v) = self.map.get_mut(channel) {
                match at {
                    Some(i) => v[i].filter = e.filter,
                    None => v.push(e),
                }
            }
            return name;
        }
        let name: Arc<str> = channel.into();
        self.map.insert(name.clone(), vec![e]);
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
        let Some(i) = v.iter().position(|x| x.conn == conn) else {
            return false;
        };
        v.swap_remove(i);
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
        ix.insert(
            2,
            &t,
            "a",
            Entry {
                conn: 1,
                filter: None,
            },
        );
        ix.insert(
            2,
            &t,
            "a",
            Entry {
                conn: 5,
                filter: None,
            },
        );
        assert_eq!(t.shards_for("a"), 0b100);
        assert!(ix.remove(2, &t, "a", 1));
        assert_eq!(t.shards_for("a"), 0b100);
        assert!(ix.remove(2, &t, "a", 5));
        assert_eq!(t.shards_for("a"), 0);
        assert!(!ix.remove(2, &t, "a", 5));
    }
}
