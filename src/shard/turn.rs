//! The steps of one reactor turn: read, drain the ring, fire timers, flush, remove.

use std::os::fd::AsRawFd;
use std::time::Duration;

use slab::Slab;

use super::{Ctx, RING_BATCH, Shard};
use crate::clock::Stamp;
use crate::conn::deliver::{Caps, Delivery, deliver};
use crate::conn::outbox::Frame;
use crate::conn::{Conn, Phase, Ping, Transport, mark_dirty, read, session};
use crate::fanout::RingItem;
use crate::fanout::failed::Reason;
use crate::io::{Backend, Sent};
use crate::protocol::server;
use crate::state::{AdminQuery, ControlQueue};

/// Marks `conn` for removal at the end of the turn.
fn kill(ctx: &mut Ctx, key: usize, conn: &mut Conn) {
    conn.kill(key, &mut ctx.dead);
}

/// Bytes the backend read for `key`: into the connection; queue a flush and move its timer
/// when it answered. Returns whether the connection wants more bytes.
pub(super) fn on_data(ctx: &mut Ctx, conns: &mut Slab<Conn>, key: usize, bytes: &[u8]) -> bool {
    let Some(conn) = conns.get_mut(key) else {
        return false;
    };
    let mut plain = std::mem::take(&mut ctx.plain);
    let more = read::on_data(&mut ctx.env(), key, conn, bytes, &mut plain);
    ctx.plain = plain;
    if conn.wants_flush() {
        ctx.mark_dirty(conns, key);
    }
    ctx.rearm(conns, key);
    more
}

/// Hands `conn`'s queued frames to the backend until it must wait or the queue is empty.
/// Returns (bytes taken, send calls made, whether everything is out of our hands: queue
/// empty and no send in flight).
fn send_outbox(
    backend: &mut Backend,
    key: usize,
    conn: &mut Conn,
) -> std::io::Result<(usize, u64, bool)> {
    let fd = conn.stream.as_raw_fd();
    let (mut taken, mut calls) = (0, 0);
    loop {
        calls += u64::from(!conn.outbox.is_empty());
        let sent = backend.send(key, fd, conn.outbox.head_offset(), conn.outbox.ordered())?;
        conn.outbox.consume(sent.taken());
        taken += sent.taken();
        match sent {
            Sent::Ready(_) if conn.outbox.is_empty() => return Ok((taken, calls, true)),
            // More frames than one send takes (IOV_MAX) and the socket has room.
            Sent::Ready(n) if n > 0 => continue,
            Sent::Ready(_) | Sent::Wait(_) => return Ok((taken, calls, false)),
        }
    }
}

impl Shard {
    pub(super) fn drain_ring(&mut self) {
        let Shard { conns, ctx, .. } = self;
        ctx.inbox.begin_drain();
        let limits = &ctx.shared.cfg.limits;
        let caps = Caps {
            frames: limits.outbox_frames,
            bytes: limits.outbox_bytes,
        };
        let shared = ctx.shared.clone();
        let m = &shared.metrics.shards[ctx.id];
        m.ring_items.set(ctx.inbox.len() as i64);
        let failed = shared.fanout.failed.shard(ctx.id);
        for _ in 0..RING_BATCH {
            let Some(item) = ctx.inbox.pop() else { break };
            match item {
                RingItem::Event(ev) => {
                    let Some(entries) = ctx.index.get(&ev.channel) else {
                        continue;
                    };
                    let now = ctx.now;
                    let mut delivered = false;
                    for (key, filter) in entries.iter() {
                        let Some(conn) = conns.get_mut(key) else {
                            continue;
                        };
                        if !conn.is_open() {
                            continue;
                        }
                        let Phase::Open(s) = &mut conn.phase else {
                            continue;
                        };
                        if s.has_ring_gaps() {
                            // Drops from before this event go ahead of it.
                            let b = conn.outbox.bytes() as i64;
                            queue_ring_gaps(s, &mut conn.outbox, true, m);
                            ctx.outbox_bytes += conn.outbox.bytes() as i64 - b;
                        }
                        let before = conn.outbox.bytes();
                        let outcome = deliver(s, &mut conn.outbox, filter, &ev, caps, now, failed);
                        match outcome {
                            Delivery::Filtered => continue,
                            Delivery::Delivered => {}
                            Delivery::Dropped { gap } => m.dropped_slow_consumer.add(gap),
                        }
                        ctx.outbox_bytes += conn.outbox.bytes() as i64 - before as i64;
                        ctx.deliveries += 1;
                        delivered = true;
                        mark_dirty(&mut ctx.dirty, key, conn);
                    }
                    if delivered {
                        ctx.turn_events.push((ev.ingested_at, ev.ts_ms));
                    }
                }
                RingItem::Gap { channel, dropped } => {
                    let Some(entries) = ctx.index.get(&channel) else {
                        continue;
                    };
                    for (key, _) in entries.iter() {
                        let Some(conn) = conns.get_mut(key) else {
                            continue;
                        };
                        let Phase::Open(s) = &mut conn.phase else {
                            continue;
                        };
                        s.note_ring_gap(&channel, dropped);
                        mark_dirty(&mut ctx.dirty, key, conn);
                    }
                }
                RingItem::Status(status) => {
                    let frame = server::status(status);
                    let sse_frame = crate::conn::sse::status(status);
                    for (key, conn) in conns.iter_mut() {
                        if !matches!(conn.phase, Phase::Open(_)) || !conn.is_open() {
                            continue;
                        }
                        let f = match conn.transport() {
                            Transport::Echo => continue,
                            Transport::Sse => &sse_frame,
                            Transport::WebSocket => &frame,
                        };
                        conn.outbox.push_control(f.clone());
                        mark_dirty(&mut ctx.dirty, key, conn);
                    }
                }
            }
        }
    }

    /// Answers this shard's admin queries (after `drain_ring`'s `begin_drain`, so a query
    /// queued after the last pop wakes the shard again).
    pub(super) fn drain_control(&mut self) {
        let state = self.ctx.shared.clone();
        let control = &state.control[self.ctx.id];
        for _ in 0..ControlQueue::CAPACITY {
            let Some(q) = control.pop() else { break };
            match q {
                AdminQuery::Connections { identity, reply } => {
                    let list = self
                        .conns
                        .iter()
                        .filter(|(_, c)| match (&identity, &c.phase) {
                            (None, _) => true,
                            (Some(id), Phase::Open(s)) => *s.peer.grant.identity == **id,
                            _ => false,
                        })
                        .filter_map(|(_, c)| {
                            c.describe(self.ctx.now, state.started, state.started_unix_ms)
                        })
                        .collect();
                    let _ = reply.send(list);
                }
                AdminQuery::Close { id, reply } => {
                    let key = self.conns.iter().find_map(|(key, c)| match &c.phase {
                        Phase::Open(s) if *s.id.text() == *id && c.is_open() => Some(key),
                        _ => None,
                    });
                    if let Some(key) = key {
                        if let Some(c) = self.conns.get_mut(key) {
                            tracing::info!(connection_id = %id, "closed by admin request");
                            c.close(1012, "service restart", self.ctx.now);
                        }
                        self.mark_dirty(key);
                        self.rearm(key);
                    }
                    let _ = reply.send(key.is_some());
                }
            }
        }
    }

    pub(super) fn fire_timers(&mut self) {
        let mut fired = Vec::new();
        self.ctx.timers.advance(self.ctx.now, &mut fired);
        let hb = Duration::from_millis(self.ctx.shared.cfg.server.heartbeat_ms);
        let slow = Duration::from_secs(self.ctx.shared.cfg.limits.slow_consumer_close_s);
        for (key, generation) in fired {
            let Shard { conns, ctx, .. } = self;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if conn.timer.map(|t| t.1) != Some(generation) || conn.is_dead() {
                continue;
            }
            conn.timer = None;
            let now = ctx.now;
            let m = &ctx.shared.metrics.shards[ctx.id];
            let sse = conn.transport() == Transport::Sse;
            if let Some(c) = conn.life.closing() {
                if now >= c.deadline && !conn.linger_on(now) {
                    kill(ctx, key, conn);
                }
            } else {
                match &mut conn.phase {
                    Phase::Http(h) => {
                        if now >= h.deadline {
                            m.reject("timeout");
                            tracing::warn!(remote = %h.remote, "upgrade not completed in time; closing");
                            kill(ctx, key, conn);
                        }
                    }
                    Phase::Open(s) => {
                        let unanswered = match s.ping {
                            Ping::Out { at } => Stamp::at(now).since(at) >= hb.mul_f32(1.5),
                            Ping::Idle | Ping::Queued { .. } => false,
                        };
                        if unanswered {
                            m.closed_heartbeat.inc();
                            tracing::info!(connection_id = %s.id, "ping unanswered past 1.5x heartbeat; closing");
                            conn.close(1001, "heartbeat timeout", now);
                        } else if s
                            .overflow_since()
                            .is_some_and(|o| now.saturating_duration_since(o) >= slow)
                        {
                            m.closed_slow_consumer.inc();
                            tracing::info!(connection_id = %s.id, "slow consumer; closing with 4000");
                            let before = conn.outbox.bytes() as i64;
                            let failed = ctx.shared.fanout.failed.shard(ctx.id);
                            conn.outbox.clear_events(|ev| {
                                m.dropped_slow_consumer.inc();
                                failed.conn(
                                    &s.id.text(),
                                    &s.peer.grant.identity,
                                    ev,
                                    Reason::SlowConsumerClose,
                                );
                                s.note_drop(ev, now);
                            });
                            ctx.outbox_bytes += conn.outbox.bytes() as i64 - before;
                            conn.close(4000, "slow consumer", now);
                        } else if Stamp::at(now).reached(s.next_ping) {
                            s.next_ping = Stamp::at(now) + hb;
                            // Keeps the bucket's wrapping clock within range (TokenBucket).
                            s.peer.bucket.refill(now, s.peer.grant.inbound);
                            // A quiet moment: lanes that drained since the last one go back.
                            conn.outbox.trim();
                            if sse {
                                conn.outbox.push_control(crate::conn::sse::HEARTBEAT);
                            } else if s.ping == Ping::Idle {
                                let mark = conn.outbox.push_control(crate::ws::ping_frame(&[]));
                                s.ping = Ping::Queued { mark: mark as u32 };
                            }
                        }
                    }
                }
            }
            if !conn.outbox.is_empty() || conn.shut_pending() {
                self.mark_dirty(key);
            }
            self.rearm(key);
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.ctx.dirty);
        let shared = self.ctx.shared.clone();
        let m = &shared.metrics.shards[self.ctx.id];
        for key in dirty.drain(..) {
            let Shard { conns, ctx, .. } = self;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            conn.queued = false;
            if conn.is_dead() {
                continue;
            }
            let mut overflowing = false;
            let transport = conn.transport();
            let open = conn.is_open();
            if let Phase::Open(s) = &mut conn.phase {
                let before = conn.outbox.bytes() as i64;
                conn.outbox.settle();
                queue_ring_gaps(s, &mut conn.outbox, open, m);
                let pending = s
                    .trouble
                    .as_mut()
                    .map(|t| std::mem::take(&mut t.pending_gaps));
                for (channel, n) in pending.into_iter().flatten() {
                    if conn
                        .outbox
                        .push_gap(channel, n, session::gap_encoder(transport))
                    {
                        m.gaps_sent.inc();
                    }
                }
                ctx.outbox_bytes += conn.outbox.bytes() as i64 - before;
                overflowing = s.overflow_since().is_some();
            }
            let shut = conn.shut_pending();
            let backend = &mut self.backend;
            let all_written = if let Some(tls) = &mut conn.tls {
                let fd = conn.stream.as_raw_fd();
                let send = |b: Option<&bytes::Bytes>| backend.send(key, fd, 0, b.into_iter());
                match tls.flush(&mut conn.outbox, shut, send) {
                    Ok((plain, wire, calls, done)) => {
                        m.writev_calls.add(calls);
                        m.bytes_written.add(wire as u64);
                        ctx.outbox_bytes -= plain as i64;
                        done
                    }
                    Err(_) => {
                        kill(ctx, key, conn);
                        continue;
                    }
                }
            } else if conn.outbox.is_empty() && !shut {
                true
            } else {
                match send_outbox(backend, key, conn) {
                    Ok((n, calls, done)) => {
                        m.writev_calls.add(calls);
                        m.bytes_written.add(n as u64);
                        ctx.outbox_bytes -= n as i64;
                        done
                    }
                    Err(_) => {
                        kill(ctx, key, conn);
                        continue;
                    }
                }
            };
            let (frames, bytes) = (
                ctx.shared.cfg.limits.outbox_frames,
                ctx.shared.cfg.limits.outbox_bytes,
            );
            if overflowing
                && conn.outbox.below_low_watermark(frames, bytes)
                && let Phase::Open(s) = &mut conn.phase
            {
                s.keeping_up(); // the 4000 clock stops
            }
            let ping_out = conn.note_written(ctx.now);
            if all_written && conn.shut_pending() {
                conn.mark_write_shut();
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            }
            if overflowing || ping_out {
                self.ctx.rearm(&mut self.conns, key);
            }
        }
        self.ctx.dirty = dirty;
        if self.ctx.turn_events.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for (t, ts_ms) in self.ctx.turn_events.drain(..) {
            m.ingest_to_write.record(now.saturating_duration_since(t));
            // A record stamped in the future (producer clock ahead) counts as 0.
            let ms = unix_ms.saturating_sub(ts_ms).max(0) as u64;
            m.kafka_to_write
                .record(std::time::Duration::from_millis(ms));
        }
    }

    pub(super) fn remove_dead(&mut self) {
        let dead = std::mem::take(&mut self.ctx.dead);
        for key in dead {
            let Some(mut conn) = self.conns.try_remove(key) else {
                continue;
            };
            // No I/O names `key` past this, so the socket may close when `conn` drops.
            self.backend.deregister(key, conn.stream.as_raw_fd());
            let ctx = &mut self.ctx;
            session::drop_subscriptions(&mut ctx.env(), key, &mut conn);
            ctx.outbox_bytes -= conn.outbox.bytes() as i64;
            if let Phase::Open(s) = &conn.phase {
                let failed = ctx.shared.fanout.failed.shard(ctx.id);
                for f in conn.outbox.iter() {
                    if let Frame::Event(ev) = f {
                        failed.conn(&s.id.text(), &s.peer.grant.identity, &ev, Reason::Closed);
                    }
                }
                ctx.metrics().connections.add(-1);
                let sent = conn.outbox.events_written();
                tracing::info!(connection_id = %s.id, remote = %s.peer.client_ip(), sent, dropped = s.dropped(), "disconnected");
            }
        }
    }

    pub(super) fn publish_tallies(&mut self) {
        let m = &self.ctx.shared.metrics.shards[self.ctx.id];
        m.last_turn_ms.set(
            self.ctx
                .now
                .saturating_duration_since(self.ctx.shared.started)
                .as_millis() as i64,
        );
        m.deliveries.add(std::mem::take(&mut self.ctx.deliveries));
        self.ctx
            .shared
            .fanout
            .failed
            .tick(self.ctx.id, self.ctx.now);
        m.outbox_bytes
            .add(std::mem::take(&mut self.ctx.outbox_bytes));
        m.turns.inc();
        m.turn_time
            .record(std::time::Instant::now().saturating_duration_since(self.ctx.now));
    }
}

/// Queues a session's ring-full drops behind everything queued so far (exact: they came after
/// it); on a closing connection in the control lane, ahead of the close.
fn queue_ring_gaps(
    s: &mut crate::conn::Session,
    outbox: &mut crate::conn::outbox::Outbox,
    open: bool,
    m: &crate::metrics::ShardMetrics,
) {
    let encode = session::gap_encoder(outbox.transport());
    let Some(t) = s.trouble.as_mut().filter(|t| !t.ring_gaps.is_empty()) else {
        return;
    };
    for (channel, n) in t.ring_gaps.drain(..) {
        let new = match open {
            true => outbox.push_gap_behind(channel, n, encode),
            false => outbox.push_gap(channel, n, encode),
        };
        if new {
            m.gaps_sent.inc();
        }
    }
}
