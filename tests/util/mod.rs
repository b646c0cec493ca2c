//! Helpers for integration tests: start the real server struct on OS-chosen loopback ports,
//! connect real WebSocket clients (tokio-tungstenite), and speak raw bytes where a test needs
//! a misbehaving client.
#![allow(dead_code)]

pub mod binary;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use fanline::config::Config;
use fanline::ingest::PublishRequest;
use fanline::server::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Starts a gateway on 127.0.0.1:0 (public and admin) with `f` applied to the config.
#[track_caller]
pub fn start(f: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.shards = 2;
    cfg.server.drain_ms = 200;
    cfg.kafka.mode = fanline::config::KafkaMode::Direct;
    f(&mut cfg);
    cfg.validate().expect("test config is valid");
    let s = Server::start(cfg).expect("server starts");
    assert!(s.wait_ready(Duration::from_secs(20)), "server became ready");
    s
}

pub fn ws_url(s: &Server) -> String {
    format!("ws://{}/v1/ws", s.local_addr)
}

/// Connects and reads the welcome frame.
pub async fn connect(s: &Server) -> Ws {
    connect_url(&ws_url(s)).await
}

pub async fn connect_url(url: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    let w = next_json(&mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    ws
}

/// Next text frame as JSON (skips protocol pings), with a 10 s bound.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("stream open")
            .expect("no websocket error");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Subscribes and waits for the ack.
pub async fn subscribe(ws: &mut Ws, channels: &[&str], filter: Option<Value>) -> Value {
    let mut m = json!({"type":"subscribe","id":"s","channels":channels});
    if let Some(f) = filter {
        m["filter"] = f;
    }
    send_json(ws, m).await;
    let ack = next_json(ws).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ack
}

/// Publishes through the server's publish sink (the path `POST /v1/publish` takes).
pub fn publish(s: &Server, channel: &str, data: Value) -> fanline::ingest::PublishAck {
    let req: PublishRequest =
        serde_json::from_value(json!({"channel":channel,"data":data})).expect("valid request");
    s.sink.publish(req).expect("publish succeeds")
}

/// Waits until `cond` holds, up to `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// A blocking HTTP/1.1 request; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    // A server that is shutting down may reset the connection before the request is written:
    // that is a failed request (status 0), like a refused connect.
    if write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    parse_response(&out)
}

/// A raw client that completes the upgrade by hand and then does whatever the test wants.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    upgrade_on(TcpStream::connect(addr).expect("connect"), path)
}

/// [`raw_upgrade`] on a socket whose receive buffer is set to `rcvbuf` bytes before connecting
/// (a client that stops reading then stalls the server's writes quickly).
pub fn raw_upgrade_rcvbuf(addr: SocketAddr, path: &str, rcvbuf: usize) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    sock.connect(&addr.into()).expect("connect");
    upgrade_on(sock.into(), path)
}

fn upgrade_on(mut s: TcpStream, path: &str) -> TcpStream {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("101 response");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    fanline::ws::masked_frame(
        true,
        fanline::ws::OpCode::from_u8(opcode).expect("opcode"),
        payload,
        [1, 2, 3, 4],
    )
}

/// One server frame: (opcode, payload). Blocks up to the socket timeout.
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b)?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b)?;
        len = u64::from_be_bytes(b);
    }
    let mut p = vec![0u8; len as usize];
    s.read_exact(&mut p)?;
    Ok((h[0] & 0x0f, p))
}

/// Reads frames until a close frame; returns its code and the text frames seen before it.
pub fn read_until_close(s: &mut TcpStream) -> (Option<u16>, Vec<Value>) {
    let mut texts = Vec::new();
    loop {
        match read_frame(s) {
            Ok((0x8, p)) => return (p.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])), texts),
            Ok((0x1, p)) => texts.push(serde_json::from_slice(&p).expect("json text frame")),
            Ok(_) => {}
            Err(_) => return (None, texts),
        }
    }
}

/// A metric's value from the Prometheus text of the admin listener (sum over label sets
/// matching `name_with_labels` as a prefix).
pub fn metric(s: &Server, name_with_labels: &str) -> f64 {
    let (_, body) = http(s.admin_addr, "GET", "/metrics", None);
    body.lines()
        .filter(|l| l.starts_with(name_with_labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Publishes with a partitioning key and optional event type.
pub fn publish_keyed(
    s: &Server,
    channel: &str,
    key: &str,
    data: Value,
) -> fanline::ingest::PublishAck {
    let req: PublishRequest =
        serde_json::from_value(json!({"channel":channel,"key":key,"data":data}))
            .expect("valid request");
    s.sink.publish(req).expect("publish succeeds")
}

/// Starts a gateway on the embedded Kafka mock cluster (or `brokers` when given).
#[track_caller]
pub fn start_kafka(f: impl FnOnce(&mut Config)) -> Server {
    start(|c| {
        c.kafka.mode = fanline::config::KafkaMode::Kafka;
        c.kafka.metadata_refresh_ms = 500;
        f(c)
    })
}

/// A self-signed certificate for `localhost` written to PEM files in a fresh temp directory.
pub struct TestCert {
    pub cert_path: String,
    pub key_path: String,
    pub der: rustls::pki_types::CertificateDer<'static>,
}

/// Generates a self-signed `localhost` certificate and writes it as `<tag>.crt`/`<tag>.key`
/// under a per-process temp directory (overwriting, which is what a reload test wants).
pub fn write_test_cert(dir_tag: &str, tag: &str) -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("rcgen generates a cert");
    let dir = std::env::temp_dir().join(format!("fanline-tls-{}-{dir_tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert_path = dir.join(format!("{tag}.crt"));
    let key_path = dir.join(format!("{tag}.key"));
    std::fs::write(&cert_path, ck.cert.pem()).expect("write cert");
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).expect("write key");
    TestCert {
        cert_path: cert_path.to_string_lossy().into_owned(),
        key_path: key_path.to_string_lossy().into_owned(),
        der: ck.cert.der().clone(),
    }
}

/// A rustls client config trusting exactly `roots` (ring provider).
pub fn tls_client_config(
    roots: &[&rustls::pki_types::CertificateDer<'static>],
) -> std::sync::Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone()).expect("test root is valid");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    std::sync::Arc::new(cfg)
}

/// Opens a wss:// connection to `addr` (SNI `localhost`) trusting `roots`, without reading
/// the welcome frame.
pub async fn try_connect_wss(
    addr: SocketAddr,
    roots: &[&rustls::pki_types::CertificateDer<'static>],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let url = format!("wss://localhost:{}/v1/ws", addr.port());
    let connector = tokio_tungstenite::Connector::Rustls(tls_client_config(roots));
    let (ws, _) =
        tokio_tungstenite::client_async_tls_with_config(url, tcp, None, Some(connector)).await?;
    Ok(ws)
}

/// Connects over wss:// and reads the welcome frame.
pub async fn connect_wss(
    addr: SocketAddr,
    roots: &[&rustls::pki_types::CertificateDer<'static>],
) -> Ws {
    let mut ws = tokio::time::timeout(Duration::from_secs(10), try_connect_wss(addr, roots))
        .await
        .expect("wss connects within 10 s")
        .expect("wss connects");
    let w = next_json(&mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    ws
}

/// The leaf certificate the server presented on a wss:// connection.
pub fn peer_cert(ws: &Ws) -> rustls::pki_types::CertificateDer<'static> {
    match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Rustls(t) => t
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("server presented a certificate")
            .clone()
            .into_owned(),
        _ => panic!("not a TLS stream"),
    }
}

/// One HTTP/1.1 request over TLS (SNI `localhost`); returns (status, body).
pub async fn https(
    addr: SocketAddr,
    roots: &[&rustls::pki_types::CertificateDer<'static>],
    path: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(roots));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut tls = connector.connect(name, tcp).await.expect("tls handshake");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.expect("write request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    parse_response(&out)
}

/// (status, body) of a raw HTTP/1.1 response; status 0 when there is none.
fn parse_response(out: &str) -> (u16, String) {
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
