//! TLS (rustls) for one connection, sans-I/O around the shard's socket calls.
//!
//! Owns a `rustls::ServerConnection`. Reads: [`TlsConn::pull`] takes ciphertext the shard's
//! backend read (`read_tls` from a slice), decrypts it (`process_new_packets`) and
//! [`TlsConn::read_plain`] hands plaintext to the same `on_bytes` path plain TCP uses. Writes:
//! [`TlsConn::flush`] moves outbox frames into rustls's plaintext writer (one vectored call, so
//! frames coalesce into few records), takes the ciphertext out (`write_tls`) as one `Bytes` and
//! hands it to the backend's send like any frame, repeating only while the backend takes
//! everything. rustls's own buffer limit (64 KiB) bounds what leaves the outbox, so the outbox
//! keeps its caps and drop-oldest policy under TLS too.
//!
//! Also loads the `[tls]` certificate chain and key into a `rustls::ServerConfig`; the shards
//! hold it in an `ArcSwap` that SIGHUP replaces (existing connections keep their config).
//! A connection is only ever touched by the shard thread that accepted it.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::conn::outbox::Outbox;
use crate::io::Sent;

/// Frames offered to rustls's writer per vectored call.
const MAX_SLICES: usize = 64;

/// Why the `[tls]` certificate or key could not be loaded. Startup fails with it; a reload
/// keeps the previous certificate and logs it.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// `tls.cert` is missing, unreadable or holds no certificate: fix the file or the path.
    #[error("tls.cert {path}: {why}")]
    Cert { path: String, why: String },
    /// `tls.key` is missing, unreadable or holds no private key: fix the file or the path.
    #[error("tls.key {path}: {why}")]
    Key { path: String, why: String },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("tls.cert/tls.key rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads `cfg.cert` (PEM chain, leaf first) and `cfg.key` (PEM PKCS#8, PKCS#1 or SEC1) into a
/// server config using the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn load_server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let cert_err = |why: String| TlsSetupError::Cert {
        path: cfg.cert.clone(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| TlsSetupError::Key {
        path: cfg.key.clone(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

/// What one [`TlsConn::pull`] found.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Pull {
    /// Records were processed: drain plaintext, then pull again.
    Data,
    /// As `Data`, and the peer sent close_notify: drain plaintext, then remove the connection.
    DataThenClosed,
    /// All the ciphertext given was taken.
    Empty,
    /// rustls refused more ciphertext: remove the connection.
    Closed,
    /// A handshake error or a bad record: count `handshake_rejected{reason="tls"}` and remove.
    Rejected,
}

/// One TLS session. See the module doc.
#[derive(Debug)]
pub struct TlsConn {
    conn: ServerConnection,
    close_notify_sent: bool,
    /// Ciphertext taken out of rustls that the backend has not taken yet.
    pending: Option<Bytes>,
}

impl TlsConn {
    pub fn new(cfg: Arc<rustls::ServerConfig>) -> Result<TlsConn, rustls::Error> {
        Ok(TlsConn {
            conn: ServerConnection::new(cfg)?,
            close_notify_sent: false,
            pending: None,
        })
    }

    /// Ciphertext (handshake messages, records, alerts) is waiting for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write() || self.pending.is_some()
    }

    /// The handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Takes ciphertext from the front of `bytes` (as much as rustls accepts at once) and
    /// decrypts it. After `Data`, drain plaintext with [`TlsConn::read_plain`] before pulling
    /// the rest.
    pub fn pull(&mut self, bytes: &mut &[u8]) -> Pull {
        if bytes.is_empty() {
            return Pull::Empty;
        }
        match self.conn.read_tls(bytes) {
            Ok(0) => return Pull::Empty,
            Ok(_) => {}
            Err(_) => return Pull::Closed,
        }
        match self.conn.process_new_packets() {
            Ok(state) if state.peer_has_closed() => Pull::DataThenClosed,
            Ok(_) => Pull::Data,
            Err(e) => {
                tracing::debug!("tls: {e}");
                Pull::Rejected
            }
        }
    }

    /// The alert rustls queued after a rejected record (best effort, before closing).
    pub fn alert(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.conn.write_tls(&mut out);
        out
    }

    /// Copies decrypted bytes into `buf`; `None` when there are none left.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.conn.reader().read(buf) {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        }
    }

    /// Moves the outbox into rustls (up to its buffer limit), appends close_notify when
    /// `closing` and the outbox is empty, and hands ciphertext to `send` (the backend's send of
    /// one buffer; `None` asks whether an earlier send is still in flight). Repeats only while
    /// the backend takes everything. Returns (plaintext bytes taken from the outbox,
    /// ciphertext bytes sent, send calls made, whether everything is out of our hands).
    pub fn flush(
        &mut self,
        outbox: &mut Outbox,
        closing: bool,
        mut send: impl FnMut(Option<&Bytes>) -> io::Result<Sent>,
    ) -> io::Result<(usize, usize, u64, bool)> {
        let (mut plain, mut wire, mut calls) = (0, 0, 0);
        loop {
            if let Some(p) = &mut self.pending {
                calls += 1;
                let sent = send(Some(p))?;
                wire += sent.taken();
                p.advance(sent.taken().min(p.len()));
                if p.is_empty() {
                    self.pending = None;
                }
                match sent {
                    Sent::Wait(_) => return Ok((plain, wire, calls, false)),
                    Sent::Ready(_) if self.pending.is_some() => continue,
                    Sent::Ready(_) => {}
                }
            }
            if !outbox.is_empty() && !self.conn.is_handshaking() {
                let slices: Vec<IoSlice<'_>> = outbox.slices().take(MAX_SLICES).collect();
                let n = self.conn.writer().write_vectored(&slices)?;
                drop(slices);
                outbox.consume(n);
                plain += n;
            }
            if closing && outbox.is_empty() && !self.close_notify_sent {
                self.close_notify_sent = true;
                self.conn.send_close_notify();
            }
            if !self.conn.wants_write() {
                let idle = matches!(send(None)?, Sent::Ready(_));
                return Ok((plain, wire, calls, idle && outbox.is_empty()));
            }
            let mut out = Vec::with_capacity(16 * 1024);
            while self.conn.wants_write() {
                if self.conn.write_tls(&mut out)? == 0 {
                    break;
                }
            }
            self.pending = Some(Bytes::from(out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cert: &str, key: &str) -> TlsConfig {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
            listen: None,
        }
    }

    #[test]
    fn load_errors_name_the_setting() {
        let dir = std::env::temp_dir().join(format!("fanline-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
        assert!(load_server_config(&cfg(c, k)).is_ok());
        let e = load_server_config(&cfg("/nonexistent.pem", k)).unwrap_err();
        assert!(e.to_string().starts_with("tls.cert"), "{e}");
        let e = load_server_config(&cfg(c, "/nonexistent.pem")).unwrap_err();
        assert!(e.to_string().starts_with("tls.key"), "{e}");
        // A key file given as the cert: no CERTIFICATE block.
        let e = load_server_config(&cfg(k, k)).unwrap_err();
        assert!(e.to_string().starts_with("tls.cert"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
