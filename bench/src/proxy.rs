//! A TCP proxy on 127.0.0.1 that can be cut and restored, to stage an outage of whatever it
//! fronts (here PostgreSQL). Cut: new connections are accepted and closed at once (the
//! client sees them fail immediately, as with a refusal) and open ones are closed. Restore:
//! connections pass again.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Default)]
struct Shared {
    cut: AtomicBool,
    next_id: AtomicU64,
    relays: Mutex<HashMap<u64, AbortHandle>>,
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// A running proxy; stops (closing every relayed connection) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    target: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and relays to `target` (`HOST:PORT`).
    pub async fn start(target: &str) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept = tokio::spawn(accept_loop(listener, target.to_owned(), shared.clone()));
        Ok(Proxy {
            addr,
            target: target.to_owned(),
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Refuses new connections and closes the open ones.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        let relays: Vec<AbortHandle> = {
            let mut map = self.shared.relays.lock().expect("not poisoned");
            map.drain().map(|(_, handle)| handle).collect()
        };
        for relay in relays {
            relay.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Connections currently relayed.
    pub fn open_connections(&self) -> usize {
        self.shared.relays.lock().expect("not poisoned").len()
    }

    /// Connections accepted and relayed, and refused while cut, since the start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.accepted.load(Ordering::Relaxed),
            self.shared.refused.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, target: String, shared: Arc<Shared>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if shared.cut.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(inbound);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        // Registered before it runs, so a cut right now closes it too.
        let mut relays = shared.relays.lock().expect("not poisoned");
        let task = tokio::spawn(relay(inbound, target.clone(), shared.clone(), id));
        relays.insert(id, task.abort_handle());
    }
}

async fn relay(mut inbound: TcpStream, target: String, shared: Arc<Shared>, id: u64) {
    if let Ok(mut outbound) = TcpStream::connect(&target).await {
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    }
    shared.relays.lock().expect("not poisoned").remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn echoes(stream: &mut TcpStream) -> bool {
        if stream.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 4];
        matches!(
            tokio::time::timeout(
                std::time::Duration::from_secs(2),
                stream.read_exact(&mut buf)
            )
            .await,
            Ok(Ok(_))
        ) && &buf == b"ping"
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_refuses_new_ones_until_restored() {
        let proxy = Proxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut open).await);

        proxy.cut();
        assert!(!echoes(&mut open).await, "an open connection is closed");
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(!echoes(&mut new).await, "a new connection fails");

        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut again).await);
        assert_eq!(proxy.counts().0, 2);
    }
}
