//! Resume cursors (SPEC §4, §6): where a client stands in the log, in the three spellings
//! clients send them, and the compact SSE `id:` token. Pure: no I/O, no server state; parsing
//! never panics and bounds every list ([`MAX_POSITIONS`]).
//!
//! - WebSocket `since`: `{"epoch":"9f…","topic/0":120,"topic/1":98}` ([`Cursor::from_json`]).
//! - REST/SSE `?since=`: `epoch:9f…,topic/0:120,topic/1:98` ([`Cursor::parse_query`], which
//!   also takes a compact token); [`Cursor::to_query`] writes it back.
//! - SSE `id:` / `Last-Event-ID`: a compact token ([`StreamPosition::token`],
//!   [`decode_token`]); the legacy one-partition form `topic/partition/offset` is still read.
//!
//! A position is the LAST offset the client has of that partition: everything of its channels
//! at or below it was delivered (or reported in a `gap`). Offsets may be -1 (nothing yet).
//!
//! Token layout (then base64url without padding): `0x01` (version), the epoch (8 bytes,
//! little endian), then per topic: the FNV-1a 32-bit hash of its name (4 bytes LE), the number
//! of its partitions (varint), and per partition in ascending order the partition (varint;
//! delta from the previous one after the first) and the offset (zigzag varint; delta from the
//! previous partition's offset, the first from 0). Sizes for one topic with offsets around
//! 10^6, up to ~10^4 apart between partitions: 3 partitions 32 characters, 12 → 68,
//! 100 → 420 (the `token_sizes` test measures them).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value};

/// Identifies a log (SPEC §4): offsets from different epochs are not comparable.
pub type Epoch = u64;

/// Most positions one cursor may carry (a clear `bad_request` beyond).
pub const MAX_POSITIONS: usize = 1024;

const TOKEN_VERSION: u8 = 1;

/// `epoch` as it appears in `welcome`, `since` and REST answers: 16 lowercase hex digits.
pub fn epoch_str(e: Epoch) -> String {
    format!("{e:016x}")
}

/// Parses [`epoch_str`]'s form.
pub fn parse_epoch(s: &str) -> Result<Epoch, String> {
    if s.is_empty() || s.len() > 16 {
        return Err(format!("epoch {} must be 1..=16 hex digits", quoted(s)));
    }
    u64::from_str_radix(s, 16).map_err(|_| format!("epoch {} must be hex digits", quoted(s)))
}

/// `s` quoted for an error message, cut to 64 bytes (a request may carry huge keys; the
/// error names them without echoing them whole).
pub fn quoted(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match end < s.len() {
        true => format!("{:?}…", &s[..end]),
        false => format!("{s:?}"),
    }
}

/// FNV-1a, 32 bits: the topic's name in a token (stable across builds and replicas).
pub fn topic_hash(topic: &str) -> u32 {
    topic.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// FNV-1a, 64 bits (e.g. an epoch derived from a Kafka cluster id).
pub fn hash64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A token's position: (topic name hash, partition, offset).
pub type HashedPosition = (u32, i32, i64);

/// The last offset a client has of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    fn new(topic: &str, partition: i32, offset: i64) -> Result<Position, String> {
        if topic.is_empty() || partition < 0 || offset < -1 {
            return Err(format!(
                "since: bad position {}/{partition}:{offset} (topic non-empty, partition ≥ 0, offset ≥ -1)",
                quoted(topic)
            ));
        }
        Ok(Position {
            topic: topic.to_string(),
            partition,
            offset,
        })
    }
}

/// A resume cursor: the log it came from (when the client knows it) and its positions,
/// sorted by (topic, partition), each partition once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    pub epoch: Option<Epoch>,
    pub positions: Vec<Position>,
    /// A token's positions by topic hash, until [`Cursor::resolve`] names their topics.
    pub unresolved: Vec<HashedPosition>,
}

impl Cursor {
    /// The WebSocket `since` object: `"topic/partition": offset` entries and an optional
    /// `"epoch": "…"`.
    pub fn from_json(m: &Map<String, Value>) -> Result<Cursor, String> {
        if m.len() > MAX_POSITIONS + 1 {
            return Err(format!("since has more than {MAX_POSITIONS} positions"));
        }
        let mut c = Cursor::default();
        for (k, v) in m {
            if k == "epoch" {
                let s = v.as_str().ok_or("since.epoch must be a string")?;
                c.epoch = Some(parse_epoch(s)?);
                continue;
            }
            let (topic, part) = k
                .rsplit_once('/')
                .ok_or_else(|| format!("since key {} must be \"topic/partition\"", quoted(k)))?;
            let part: i32 = part
                .parse()
                .map_err(|_| format!("since key {}: bad partition", quoted(k)))?;
            let off = v
                .as_i64()
                .ok_or_else(|| format!("since[{}] must be an integer offset", quoted(k)))?;
            c.positions.push(Position::new(topic, part, off)?);
        }
        if c.positions.len() > MAX_POSITIONS {
            return Err(format!("since has more than {MAX_POSITIONS} positions"));
        }
        c.check()
    }

    /// `?since=` of REST and SSE: `epoch:HEX,topic/p:offset,…`, or a compact token (what an
    /// SSE `id:` carries; [`Cursor::resolve`] it before use).
    pub fn parse_query(v: &str) -> Result<Cursor, String> {
        if !v.is_empty() && !v.contains([':', '/', ',']) {
            return Cursor::from_token(v);
        }
        let mut c = Cursor::default();
        for x in v.split(',').filter(|x| !x.is_empty()) {
            if c.positions.len() >= MAX_POSITIONS {
                return Err(format!("since has more than {MAX_POSITIONS} positions"));
            }
            if let Some(e) = x.strip_prefix("epoch:") {
                c.epoch = Some(parse_epoch(e)?);
                continue;
            }
            let bad = || format!("since entry {} must be topic/partition:offset", quoted(x));
            let (tp, o) = x.rsplit_once(':').ok_or_else(bad)?;
            let (t, p) = tp.rsplit_once('/').ok_or_else(bad)?;
            let p: i32 = p.parse().map_err(|_| bad())?;
            let o: i64 = o.parse().map_err(|_| bad())?;
            c.positions.push(Position::new(t, p, o).map_err(|_| bad())?);
        }
        c.check()
    }

    /// `Last-Event-ID`: a compact token ([`Cursor::resolve`] it before use), or the legacy
    /// `topic/partition/offset` of one event.
    pub fn parse_event_id(v: &str) -> Result<Cursor, String> {
        let v = v.trim();
        if !v.contains('/') {
            return Cursor::from_token(v);
        }
        let bad = || "Last-Event-ID must be an id this server sent".to_string();
        let (rest, offset) = v.rsplit_once('/').ok_or_else(bad)?;
        let (topic, p) = rest.rsplit_once('/').ok_or_else(bad)?;
        let (p, offset) = (
            p.parse().map_err(|_| bad())?,
            offset.parse().map_err(|_| bad())?,
        );
        Ok(Cursor {
            epoch: None,
            positions: vec![Position::new(topic, p, offset).map_err(|_| bad())?],
            unresolved: Vec::new(),
        })
    }

    fn from_token(v: &str) -> Result<Cursor, String> {
        let (epoch, unresolved) = decode_token(v)?;
        Ok(Cursor {
            epoch: Some(epoch),
            positions: Vec::new(),
            unresolved,
        })
    }

    /// Names the topics of a token's positions with `resolve` (topic hash → a topic served
    /// here). Positions whose topic is unknown are left out (a topic not served here): the
    /// cursor is then partial for any channel that needs them.
    pub fn resolve(&mut self, resolve: impl Fn(u32) -> Option<Arc<str>>) {
        if self.unresolved.is_empty() {
            return;
        }
        for (h, p, o) in self.unresolved.drain(..) {
            if let Some(t) = resolve(h) {
                self.positions.push(Position {
                    topic: t.to_string(),
                    partition: p,
                    offset: o,
                });
            }
        }
        self.positions
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        self.positions
            .dedup_by(|a, b| a.topic == b.topic && a.partition == b.partition);
    }

    /// The `?since=` form, epoch first when known.
    pub fn to_query(&self) -> String {
        let mut out = String::new();
        if let Some(e) = self.epoch {
            out.push_str("epoch:");
            out.push_str(&epoch_str(e));
        }
        for p in &self.positions {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&format!("{}/{}:{}", p.topic, p.partition, p.offset));
        }
        out
    }

    /// Refuses a partition named twice (which position would win is unclear).
    fn check(mut self) -> Result<Cursor, String> {
        self.positions
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        if let Some(w) = self
            .positions
            .windows(2)
            .find(|w| w[0].topic == w[1].topic && w[0].partition == w[1].partition)
        {
            return Err(format!(
                "since names {}/{} twice",
                w[0].topic, w[0].partition
            ));
        }
        Ok(self)
    }
}

/// A stream's position on every partition it reads (an SSE connection's `id:`). Updated per
/// delivered event in O(log partitions); [`StreamPosition::token`] is O(partitions).
#[derive(Debug, Clone, Default)]
pub struct StreamPosition {
    epoch: Epoch,
    /// (topic hash, partition, topic, last offset), sorted by (hash, partition).
    parts: Vec<(u32, i32, Arc<str>, i64)>,
}

impl StreamPosition {
    /// Starts at `positions` (topic, partition, last offset).
    pub fn new(epoch: Epoch, positions: impl IntoIterator<Item = (Arc<str>, i32, i64)>) -> Self {
        let mut parts: Vec<_> = positions
            .into_iter()
            .map(|(t, p, o)| (topic_hash(&t), p, t, o))
            .collect();
        parts.sort_by_key(|a| (a.0, a.1));
        parts.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);
        StreamPosition { epoch, parts }
    }

    /// Records a delivered event (offsets only grow: an older one changes nothing). A
    /// partition not seen before is added.
    pub fn advance(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let key = (topic_hash(topic), partition);
        match self.parts.binary_search_by_key(&key, |a| (a.0, a.1)) {
            Ok(i) => self.parts[i].3 = self.parts[i].3.max(offset),
            Err(i) => self
                .parts
                .insert(i, (key.0, partition, topic.clone(), offset)),
        }
    }

    /// Number of partitions tracked.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The compact token for `id:` (see the module doc).
    pub fn token(&self) -> String {
        let mut raw = Vec::with_capacity(9 + 4 * self.parts.len() + 8);
        raw.push(TOKEN_VERSION);
        raw.extend_from_slice(&self.epoch.to_le_bytes());
        let mut i = 0;
        while i < self.parts.len() {
            let h = self.parts[i].0;
            let n = self.parts[i..].iter().take_while(|a| a.0 == h).count();
            raw.extend_from_slice(&h.to_le_bytes());
            put_varint(&mut raw, n as u64);
            let (mut prev_p, mut prev_o) = (0i64, 0i64);
            for (k, a) in self.parts[i..i + n].iter().enumerate() {
                let p = i64::from(a.1);
                put_varint(&mut raw, if k == 0 { p } else { p - prev_p } as u64);
                put_varint(&mut raw, zigzag(a.3.wrapping_sub(prev_o)));
                (prev_p, prev_o) = (p, a.3);
            }
            i += n;
        }
        B64.encode(raw)
    }
}

/// Why a token is refused. The caller answers 400 (or the client falls back to no cursor).
fn token_error(what: &str) -> String {
    format!("Last-Event-ID/since token is not one this server sent ({what})")
}

/// Decodes [`StreamPosition::token`]: (epoch, [(topic hash, partition, offset)]).
pub fn decode_token(s: &str) -> Result<(Epoch, Vec<HashedPosition>), String> {
    // 1 + 8 header bytes, then at most MAX_POSITIONS × (4 + 3 × 10) bytes.
    if s.len() > 4 * (9 + MAX_POSITIONS * 34) / 3 + 4 {
        return Err(token_error("too long"));
    }
    let raw = B64.decode(s).map_err(|_| token_error("not base64url"))?;
    let mut r = Reader { raw: &raw, at: 0 };
    if r.bytes(1)? != [TOKEN_VERSION] {
        return Err(token_error("unknown version"));
    }
    let mut e = [0u8; 8];
    e.copy_from_slice(r.bytes(8)?);
    let mut out = Vec::new();
    while r.at < raw.len() {
        let mut h = [0u8; 4];
        h.copy_from_slice(r.bytes(4)?);
        let h = u32::from_le_bytes(h);
        let n = r.varint()?;
        if n == 0 || out.len() as u64 + n > MAX_POSITIONS as u64 {
            return Err(token_error("partition count"));
        }
        let (mut p, mut o) = (0i64, 0i64);
        for k in 0..n {
            let dp = i64::try_from(r.varint()?).map_err(|_| token_error("partition"))?;
            p = if k == 0 {
                dp
            } else {
                p.checked_add(dp)
                    .filter(|_| dp > 0)
                    .ok_or_else(|| token_error("partition order"))?
            };
            o = o
                .checked_add(unzigzag(r.varint()?))
                .ok_or_else(|| token_error("offset"))?;
            let part = i32::try_from(p).map_err(|_| token_error("partition"))?;
            if o < -1 {
                return Err(token_error("offset"));
            }
            out.push((h, part, o));
        }
    }
    Ok((Epoch::from_le_bytes(e), out))
}

struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let b = self
            .raw
            .get(self.at..self.at + n)
            .ok_or_else(|| token_error("truncated"))?;
        self.at += n;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bytes(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(token_error("varint too long"))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
#[path = "cursor_tests.rs"]
mod tests;
