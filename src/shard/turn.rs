//! The steps of one reactor turn: read, drain the ring, fire timers, flush, remove.

use std::io::Read;
use std::time::Duration;

use bytes::BytesMut;

use super::{Ctx, RING_BATCH, Shard};
use crate::conn::handshake::{self, Outcome};
use crate::conn::tls::Pull;
use crate::conn::{Conn, Phase, Session, session};
use crate::event::Event;
use crate::fanout::RingItem;
use crate::protocol::server;
use crate::shard::outbox::Flushed;
use crate::ws::Decoder;

/// Marks `conn` for removal at the end of the turn.
fn kill(ctx: &mut Ctx, key: usize, conn: &mut Conn) {
    if !conn.dead {
        conn.dead = true;
        ctx.dead.push(key);
    }
}

impl Shard {
    pub(super) fn on_readable(&mut self, key: usize, scratch: &mut [u8]) {
        let Shard { conns, ctx, .. } = self;
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        if conn.tls.is_some() {
            tls_readable(ctx, key, conn, scratch);
        } else {
            plain_readable(ctx, key, conn, scratch);
        }
        if conn.wants_flush() {
            self.mark_dirty(key);
        }
        self.rearm(key);
    }

    pub(super) fn drain_ring(&mut self) {
        let Shard { conns, ctx, .. } = self;
        ctx.inbox.begin_drain();
        let limits = &ctx.shared.cfg.limits;
        let (max_frames, max_bytes) = (limits.outbox_frames, limits.outbox_bytes);
        let shared = ctx.shared.clone();
        let m = &shared.metrics.shards[ctx.id];
        for _ in 0..RING_BATCH {
            let Some(item) = ctx.inbox.pop() else { break };
            match item {
                RingItem::Event(ev) => {
                    let Some(entries) = ctx.index.get(&ev.channel) else {
                        continue;
                    };
                    let now = ctx.now;
                    let mut delivered = false;
                    for e in entries {
                        let Some(conn) = conns.get_mut(e.conn) else {
                            continue;
                        };
                        if conn.dead || conn.closing.is_some() {
                            continue;
                        }
                        if let Some(f) = &e.filter
                            && !f.matches(&ev.data)
                        {
                            continue;
                        }
                        let Phase::Ws(s) = &mut conn.phase else {
                            continue;
                        };
                        if s.has_watermarks && s.already_replayed(&ev) {
                            continue;
                        }
                        let before = conn.outbox.bytes();
                        conn.outbox
                            .push_event(&ev, max_frames, max_bytes, |d: &Event| {
                                s.note_drop(d, now);
                                m.dropped_slow_consumer.inc();
                            });
                        ctx.outbox_bytes += conn.outbox.bytes() as i64 - before as i64;
                        ctx.deliveries += 1;
                        s.sent += 1;
                        delivered = true;
                        if !conn.dirty {
                            conn.dirty = true;
                            ctx.dirty.push(e.conn);
                        }
                    }
                    if delivered {
                        ctx.turn_events.push(ev.ingested_at);
                    }
                }
                RingItem::Gap { channel, dropped } => {
                    let Some(entries) = ctx.index.get(&channel) else {
                        continue;
                    };
                    for e in entries {
                        let Some(conn) = conns.get_mut(e.conn) else {
                            continue;
                        };
                        let Phase::Ws(s) = &mut conn.phase else {
                            continue;
                        };
                        match s.pending_gaps.iter_mut().find(|(c, _)| *c == channel) {
                            Some((_, n)) => *n += dropped,
                            None => s.pending_gaps.push((channel.clone(), dropped)),
                        }
                        if !conn.dirty {
                            conn.dirty = true;
                            ctx.dirty.push(e.conn);
                        }
                    }
                }
                RingItem::Connections { identity, reply } => {
                    let list = conns
                        .iter()
                        .filter(|(_, c)| match (&identity, &c.phase) {
                            (None, _) => true,
                            (Some(id), Phase::Ws(s)) => *s.peer.identity.id == **id,
                            _ => false,
                        })
                        .filter_map(|(_, c)| c.describe(shared.started, shared.started_unix_ms))
                        .collect();
                    let _ = reply.send(list);
                }
                RingItem::Status(status) => {
                    let frame = server::status(status);
                    let sse_frame = crate::conn::sse::status(status);
                    for (key, conn) in conns.iter_mut() {
                        if let Phase::Ws(s) = &conn.phase
                            && !s.echo
                            && conn.closing.is_none()
                        {
                            let f = if s.sse { &sse_frame } else { &frame };
                            conn.outbox.push_control(f.clone());
                            if !conn.dirty {
                                conn.dirty = true;
                                ctx.dirty.push(key);
                            }
                        }
                    }
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
            if conn.timer.map(|t| t.1) != Some(generation) || conn.dead {
                continue;
            }
            conn.timer = None;
            let now = ctx.now;
            let m = &ctx.shared.metrics.shards[ctx.id];
            if let Some(deadline) = conn.closing {
                if now >= deadline {
                    kill(ctx, key, conn);
                }
            } else {
                match &mut conn.phase {
                    Phase::Http { deadline, .. } => {
                        if now >= *deadline {
                            m.reject("timeout");
                            tracing::warn!(remote = %conn.remote, "upgrade not completed in time; closing");
                            kill(ctx, key, conn);
                        }
                    }
                    Phase::Ws(s) => {
                        if !s.sse
                            && now.saturating_duration_since(conn.last_read) >= hb.mul_f32(1.5)
                        {
                            m.closed_heartbeat.inc();
                            tracing::info!(connection_id = %s.id, "peer silent past 1.5x heartbeat; closing");
                            conn.close(1001, "heartbeat timeout", now);
                        } else if s
                            .overflow_since
                            .is_some_and(|o| now.saturating_duration_since(o) >= slow)
                        {
                            m.closed_slow_consumer.inc();
                            tracing::info!(connection_id = %s.id, "slow consumer; closing with 4000");
                            let before = conn.outbox.bytes() as i64;
                            conn.outbox.clear_events(|_| m.dropped_slow_consumer.inc());
                            ctx.outbox_bytes += conn.outbox.bytes() as i64 - before;
                            conn.close(4000, "slow consumer", now);
                        } else if now >= s.next_ping {
                            conn.outbox.push_control(if s.sse {
                                crate::conn::sse::HEARTBEAT
                            } else {
                                bytes::Bytes::from_static(b"\x89\x00")
                            });
                            s.next_ping = now + hb;
                        }
                    }
                }
            }
            if !conn.dead && (!conn.outbox.is_empty() || conn.shut_after_flush) {
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
            conn.dirty = false;
            if conn.dead {
                continue;
            }
            let mut overflowing = false;
            if let Phase::Ws(s) = &mut conn.phase {
                for f in session::gap_frames(&mut s.pending_gaps, s.sse) {
                    m.gaps_sent.inc();
                    ctx.outbox_bytes += f.len() as i64;
                    conn.outbox.push_control_front(f);
                }
                overflowing = s.overflow_since.is_some();
            }
            let all_written = if let Some(tls) = &mut conn.tls {
                let shut = conn.shut_after_flush;
                match tls.flush(&mut conn.outbox, &conn.stream, shut) {
                    Ok((plain, wire, calls)) => {
                        m.writev_calls.add(calls);
                        m.bytes_written.add(wire as u64);
                        ctx.outbox_bytes -= plain as i64;
                    }
                    Err(_) => {
                        kill(ctx, key, conn);
                        continue;
                    }
                }
                tls.all_written(&conn.outbox)
            } else if conn.outbox.is_empty() {
                true
            } else {
                m.writev_calls.inc();
                match conn.outbox.flush(&conn.stream, &mut ctx.iov) {
                    Ok((n, done)) => {
                        m.bytes_written.add(n as u64);
                        ctx.outbox_bytes -= n as i64;
                        done == Flushed::All
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                    Err(_) => {
                        kill(ctx, key, conn);
                        continue;
                    }
                }
            };
            if all_written {
                if let Phase::Ws(s) = &mut conn.phase {
                    s.overflow_since = None;
                }
                if conn.shut_after_flush {
                    conn.shut_after_flush = false;
                    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                }
            }
            if overflowing {
                self.rearm(key);
            }
        }
        self.ctx.dirty = dirty;
        let now = std::time::Instant::now();
        for t in self.ctx.turn_events.drain(..) {
            m.ingest_to_write.record(now.saturating_duration_since(t));
        }
    }

    pub(super) fn remove_dead(&mut self) {
        let dead = std::mem::take(&mut self.ctx.dead);
        for key in dead {
            let Some(mut conn) = self.conns.try_remove(key) else {
                continue;
            };
            let ctx = &mut self.ctx;
            session::drop_subscriptions(ctx, key, &mut conn);
            ctx.outbox_bytes -= conn.outbox.bytes() as i64;
            if let Phase::Ws(s) = &conn.phase {
                ctx.metrics().connections.add(-1);
                tracing::info!(connection_id = %s.id, remote = %conn.remote, sent = s.sent, dropped = s.dropped, "disconnected");
            }
            let _ = self.poll.registry().deregister(&mut conn.stream);
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
        m.outbox_bytes
            .add(std::mem::take(&mut self.ctx.outbox_bytes));
    }
}

/// Plain TCP: read until the socket would block, handing each chunk to `on_bytes`.
fn plain_readable(ctx: &mut Ctx, key: usize, conn: &mut Conn, scratch: &mut [u8]) {
    loop {
        if conn.dead {
            break;
        }
        match (&conn.stream).read(scratch) {
            Ok(0) => {
                kill(ctx, key, conn);
                break;
            }
            Ok(n) => {
                conn.last_read = ctx.now;
                if conn.closing.is_none() {
                    on_bytes(ctx, key, conn, &scratch[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                kill(ctx, key, conn);
                break;
            }
        }
    }
}

/// TLS: read and decrypt until the socket would block; plaintext goes to `on_bytes` exactly
/// as on plain TCP. A handshake error or bad record counts `tls` and closes the socket.
fn tls_readable(ctx: &mut Ctx, key: usize, conn: &mut Conn, scratch: &mut [u8]) {
    let Some(mut tls) = conn.tls.take() else {
        return;
    };
    loop {
        if conn.dead {
            break;
        }
        let pull = tls.pull(&conn.stream);
        match pull {
            Pull::Data | Pull::DataThenClosed => {
                conn.last_read = ctx.now;
                while let Some(n) = tls.read_plain(scratch) {
                    if conn.closing.is_none() && !conn.dead {
                        on_bytes(ctx, key, conn, &scratch[..n]);
                    }
                }
                if pull == Pull::DataThenClosed {
                    kill(ctx, key, conn);
                }
            }
            Pull::WouldBlock => break,
            Pull::Closed => kill(ctx, key, conn),
            Pull::Rejected => {
                ctx.metrics().reject("tls");
                tracing::info!(remote = %conn.remote, "tls handshake or record error; closing");
                kill(ctx, key, conn);
            }
        }
    }
    conn.tls = Some(tls);
}

/// Bytes read from a connection that is not closing.
fn on_bytes(ctx: &mut Ctx, key: usize, conn: &mut Conn, chunk: &[u8]) {
    if let Phase::Http { head, client, .. } = &mut conn.phase {
        head.extend_from_slice(chunk);
        if client.is_none() {
            match proxy_header(ctx, conn.remote, head) {
                Ok(None) => return,
                Ok(Some(addr)) => *client = Some(addr),
                Err(()) => {
                    ctx.metrics().reject("bad_request");
                    let r = crate::http::error_response(
                        400,
                        "bad_request",
                        "malformed PROXY header",
                        &[],
                    );
                    conn.outbox.push_control(r.into());
                    conn.close(0, "", ctx.now);
                    return;
                }
            }
        }
        let remote = client.unwrap_or(conn.remote);
        let outcome = handshake::on_head(&ctx.shared, ctx.metrics(), head, remote);
        match outcome {
            Outcome::NeedMore => return,
            Outcome::Respond(r) => {
                ctx.metrics().connections_total_http.inc();
                conn.outbox.push_control(r.into());
                conn.close(0, "", ctx.now);
                return;
            }
            Outcome::Upgrade {
                response,
                echo,
                leftover,
                admitted,
            } => {
                conn.outbox.push_control(response.into());
                let mut admitted = *admitted;
                let sse = admitted.sse.take();
                let s = new_session(ctx, echo, admitted);
                if !echo && sse.is_none() {
                    let l = &ctx.shared.cfg.limits;
                    let limits = serde_json::json!({
                        "max_subscriptions": l.max_subscriptions, "max_inbound_bytes": l.max_inbound_bytes,
                        "inbound_msgs_per_s": l.inbound_msgs_per_s, "inbound_burst": l.inbound_burst,
                        "outbox_frames": l.outbox_frames, "outbox_bytes": l.outbox_bytes,
                    });
                    conn.outbox.push_control(server::welcome(
                        &s.id,
                        ctx.shared.cfg.server.heartbeat_ms,
                        limits,
                    ));
                }
                tracing::info!(connection_id = %s.id, remote = %s.peer.client_ip, identity = %s.peer.identity.id, "connected");
                conn.phase = Phase::Ws(Box::new(s));
                ctx.metrics().connections.add(1);
                match sse {
                    Some(_) => ctx.metrics().connections_total_sse.inc(),
                    None => ctx.metrics().connections_total_ws.inc(),
                }
                if let Some(req) = sse {
                    return session::open_sse(ctx, key, conn, req);
                }
                if leftover.is_empty() {
                    return;
                }
                return ws_bytes(ctx, key, conn, &leftover);
            }
        }
    }
    ws_bytes(ctx, key, conn, chunk)
}

/// PROXY protocol v2, accepted only from `auth.trusted_proxies`: strips the header from `head`
/// and returns the client address it carries (the socket peer for LOCAL). `Ok(None)`: need
/// more bytes. Connections from anyone else are returned as they are.
fn proxy_header(
    ctx: &Ctx,
    peer: std::net::SocketAddr,
    head: &mut Vec<u8>,
) -> Result<Option<std::net::SocketAddr>, ()> {
    let auth = ctx.shared.auth.load();
    let sig = head.len().min(crate::auth::PROXY_V2_SIGNATURE.len());
    let looks_proxied = head[..sig] == crate::auth::PROXY_V2_SIGNATURE[..sig];
    if !looks_proxied || !crate::auth::in_cidrs(auth.trusted_proxies(), peer.ip()) {
        return Ok(Some(peer));
    }
    match crate::auth::parse_proxy_v2(head) {
        Ok(None) => Ok(None),
        Ok(Some(h)) => {
            head.drain(..h.len.min(head.len()));
            Ok(Some(h.source.unwrap_or(peer)))
        }
        Err(_) => Err(()),
    }
}

fn new_session(ctx: &mut Ctx, echo: bool, a: handshake::Admitted) -> Session {
    ctx.conn_seq += 1;
    let started = ctx.shared.started.elapsed().as_nanos() as u64 ^ 0x5bd1_e995;
    Session {
        id: format!("{:x}-{}-{}", started & 0xffff_ffff, ctx.id, ctx.conn_seq).into(),
        echo,
        sse: false,
        decoder: Decoder::new(ctx.shared.cfg.limits.max_inbound_bytes),
        rbuf: BytesMut::new(),
        subs: Vec::new(),
        has_watermarks: false,
        close_sent: false,
        next_ping: ctx.now + Duration::from_millis(ctx.shared.cfg.server.heartbeat_ms),
        overflow_since: None,
        pending_gaps: Vec::new(),
        forced_filter: a.forced_filter,
        peer: crate::conn::Peer {
            identity: a.identity,
            permit: a.permit,
            client_ip: a.client_ip,
            bucket: crate::auth::TokenBucket::from_limits(&ctx.shared.cfg.limits),
        },
        sent: 0,
        dropped: 0,
        failed: 0,
        last_failure: None,
        connected_at: ctx.now,
    }
}

/// WebSocket bytes: decode every complete message and act on it.
fn ws_bytes(ctx: &mut Ctx, key: usize, conn: &mut Conn, chunk: &[u8]) {
    let Phase::Ws(s) = &mut conn.phase else {
        return;
    };
    if s.sse {
        return; // an SSE client has nothing to say: discard
    }
    s.rbuf.extend_from_slice(chunk);
    loop {
        let Phase::Ws(s) = &mut conn.phase else {
            return;
        };
        let msg = match s.decoder.decode(&mut s.rbuf) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                let code = e.close_code();
                let m = ctx.metrics();
                if code == 1009 {
                    m.closed_too_big.inc()
                } else {
                    m.closed_protocol.inc()
                }
                tracing::info!(connection_id = %s.id, "closing on protocol error {e:?} ({code})");
                conn.close(code, "", ctx.now);
                return;
            }
        };
        if !session::on_message(ctx, key, conn, msg) {
            return;
        }
    }
    if let Phase::Ws(s) = &mut conn.phase
        && s.rbuf.is_empty()
        && s.rbuf.capacity() > 0
    {
        s.rbuf = BytesMut::new(); // idle connections hold no read buffer
    }
}
