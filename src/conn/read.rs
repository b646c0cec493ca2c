//! A connection's read side: plain or TLS readable, the HTTP head (with PROXY v2 from
//! trusted proxies), the upgrade and session start, then WebSocket bytes into the session.
//! Moved here from the shard's turn so "a client sent bytes" starts in `conn/`.

use std::io::Write;
use std::time::Duration;

use super::handshake::{self, Outcome};
use super::outbox::Deflated;
use super::tls::Pull;
use super::{Conn, Env, Phase, Reader, Session, Transport, session};
use crate::protocol::server;

/// Bytes the backend read from `conn` (ciphertext on a TLS listener). Returns whether the
/// connection wants more (false: it is dead, stop reading it). `plain`: the shard's buffer
/// for decrypted bytes.
pub fn on_data(
    ctx: &mut Env<'_>,
    key: usize,
    conn: &mut Conn,
    bytes: &[u8],
    plain: &mut Vec<u8>,
) -> bool {
    if conn.is_dead() {
        return false;
    }
    conn.heard(ctx.now);
    if conn.tls.is_some() {
        tls_data(ctx, key, conn, bytes, plain);
    } else if conn.is_open() {
        on_bytes(ctx, key, conn, bytes);
    }
    !conn.is_dead()
}

/// TLS: decrypt `bytes`; plaintext goes to `on_bytes` exactly as on plain TCP. A handshake
/// error or bad record counts `tls` and closes the socket (after a best-effort alert).
fn tls_data(ctx: &mut Env<'_>, key: usize, conn: &mut Conn, bytes: &[u8], plain: &mut Vec<u8>) {
    let Some(mut tls) = conn.tls.take() else {
        return;
    };
    if plain.is_empty() {
        plain.resize(16 * 1024, 0);
    }
    let mut rest = bytes;
    while !conn.is_dead() {
        let pull = tls.pull(&mut rest);
        match pull {
            Pull::Data | Pull::DataThenClosed => {
                while let Some(n) = tls.read_plain(plain) {
                    if conn.is_open() {
                        on_bytes(ctx, key, conn, &plain[..n]);
                    }
                }
                if pull == Pull::DataThenClosed {
                    ctx.kill(key, conn);
                }
            }
            Pull::Empty => break,
            Pull::Closed => ctx.kill(key, conn),
            Pull::Rejected => {
                ctx.metrics().reject("tls");
                tracing::info!(remote = %conn.client_ip(), "tls handshake or record error; closing");
                let _ = (&conn.stream).write(&tls.alert());
                ctx.kill(key, conn);
            }
        }
    }
    conn.tls = Some(tls);
}

/// Bytes read from a connection that is not closing.
fn on_bytes(ctx: &mut Env<'_>, key: usize, conn: &mut Conn, chunk: &[u8]) {
    if let Phase::Http(h) = &mut conn.phase {
        let super::HttpPhase {
            remote,
            head,
            client,
            slot,
            ..
        } = &mut **h;
        let peer = *remote;
        head.extend_from_slice(chunk);
        if client.is_none() {
            match proxy_header(ctx, peer, head) {
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
        let remote = client.unwrap_or(peer);
        let outcome = handshake::on_head(ctx.state, ctx.metrics(), head, remote, slot);
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
                let (tier, t) = (admitted.identity.tier.take(), admitted.limits);
                let s = new_session(ctx, admitted);
                let transport = match (&sse, echo) {
                    (Some(_), _) => Transport::Sse,
                    (None, true) => Transport::Echo,
                    (None, false) => Transport::WebSocket,
                };
                if transport == Transport::WebSocket {
                    let l = ctx.state.limits.load();
                    let limits = serde_json::json!({
                        "tier": tier, "connections_per_identity": t.connections,
                        "max_subscriptions": l.max_subscriptions, "max_inbound_bytes": l.max_inbound_bytes,
                        "inbound_msgs_per_s": t.inbound_msgs_per_s, "inbound_burst": t.inbound_burst,
                        "outbox_frames": l.outbox_frames, "outbox_bytes": l.outbox_bytes,
                    });
                    conn.outbox.push_control(server::welcome(
                        &s.id.text(),
                        ctx.state.replay.epoch(),
                        ctx.state.cfg.server.heartbeat_ms,
                        limits,
                    ));
                }
                tracing::info!(connection_id = %s.id, remote = %s.peer.client_ip(), identity = %s.peer.grant.identity, "connected");
                let deflate = s.deflate;
                conn.open(s, transport);
                if let (Some(d), Transport::WebSocket) = (deflate, transport) {
                    conn.outbox.set_deflate(Deflated {
                        min_bytes: ctx.state.cfg.compression.min_bytes,
                        max_payload: d.max_compressed_payload(),
                    });
                }
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
    ctx: &Env<'_>,
    peer: std::net::SocketAddr,
    head: &mut Vec<u8>,
) -> Result<Option<std::net::SocketAddr>, ()> {
    let auth = ctx.state.auth.load();
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

fn new_session(ctx: &mut Env<'_>, a: handshake::Admitted) -> Session {
    *ctx.conn_seq += 1;
    let max_inbound = ctx.state.limits.load().max_inbound_bytes;
    let rate = crate::auth::Rate {
        per_s: a.limits.inbound_msgs_per_s,
        burst: a.limits.inbound_burst,
    };
    Session {
        id: crate::conn::state::SessionId::new(ctx.shard, *ctx.conn_seq),
        position: None,
        deflate: a.deflate,
        reader: None,
        subs: Default::default(),
        has_watermarks: false,
        next_ping: crate::clock::Stamp::at(ctx.now)
            + Duration::from_millis(ctx.state.cfg.server.heartbeat_ms),
        ping: crate::conn::Ping::Idle,
        trouble: None,
        peer: crate::conn::Peer {
            grant: ctx.grant(crate::conn::Grant {
                identity: a.identity.id,
                acl: a.identity.acl,
                forced_filter: a.forced_filter,
                inbound: rate,
                max_inbound: u32::try_from(max_inbound).unwrap_or(u32::MAX),
            }),
            permit: a.permit,
            identity_permit: a.identity_permit,
            client: crate::conn::state::pack_ip(a.client_ip),
            bucket: crate::auth::TokenBucket::new(rate),
        },
        connected_ms: ctx
            .now
            .saturating_duration_since(ctx.state.started)
            .as_millis() as u64,
    }
}

/// WebSocket bytes: decode every complete message and act on it.
fn ws_bytes(ctx: &mut Env<'_>, key: usize, conn: &mut Conn, chunk: &[u8]) {
    if conn.transport() == Transport::Sse {
        return; // an SSE client has nothing to say: discard
    }
    let Phase::Open(s) = &mut conn.phase else {
        return;
    };
    let (max, deflate) = (s.peer.grant.max_inbound, s.deflate);
    s.reader
        .get_or_insert_with(|| Box::new(Reader::new(max, deflate)))
        .rbuf
        .extend_from_slice(chunk);
    loop {
        let Phase::Open(s) = &mut conn.phase else {
            return;
        };
        let Some(r) = s.reader.as_mut() else {
            return;
        };
        let msg = match r.decoder.decode(&mut r.rbuf) {
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
    if let Phase::Open(s) = &mut conn.phase
        && s.reader.as_ref().is_some_and(|r| r.at_rest())
    {
        s.reader = None; // idle connections hold no read state
    }
}
