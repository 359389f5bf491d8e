//! A TCP proxy for fault tests: between a browser and the app it can cut WebSocket
//! traffic while HTTP keeps flowing (a reverse proxy that cannot pass WebSockets); between
//! the app and PostgreSQL it can cut everything (a database outage that refuses
//! connections) or stall everything (a network that drops packets: connections stay up,
//! no byte passes and nothing errors, until it heals).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::rt::net::{TcpListener, TcpStream};
use actix_web::rt::task::JoinHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

pub struct CuttingProxy {
    pub base: String,
    /// Cut every connection, not only WebSocket handshakes.
    all: bool,
    cut: Arc<AtomicBool>,
    websockets: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// `true` while bytes flow; `stall` sets it to `false`.
    flowing: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl CuttingProxy {
    /// Proxies to the app at `target_base` (`http://127.0.0.1:PORT`).
    pub async fn start(target_base: &str) -> CuttingProxy {
        Self::start_with(target_base.trim_start_matches("http://"), false).await
    }

    /// A proxy in front of the tests' PostgreSQL server, and that server's URL through it
    /// (`postgres://USER@HOST:PORT`, without a database).
    pub async fn in_front_of_postgres() -> (CuttingProxy, String) {
        let server = crate::helpers::postgres_server_url();
        let (credentials, address) = server.rsplit_once('@').expect("user@host in the URL");
        let proxy = Self::start_tcp(address).await;
        let through = format!("{credentials}@{}", proxy.base.trim_start_matches("http://"));
        (proxy, through)
    }

    /// Proxies any TCP service at `target` (`HOST:PORT`); `cut` then cuts every connection.
    pub async fn start_tcp(target: &str) -> CuttingProxy {
        Self::start_with(target, true).await
    }

    async fn start_with(target: &str, all: bool) -> CuttingProxy {
        let target = target.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy listens");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let websockets = Arc::new(Mutex::new(Vec::new()));
        let (flowing, gate) = watch::channel(true);
        let accept = {
            let (cut, websockets) = (cut.clone(), websockets.clone());
            actix_web::rt::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let (cut, websockets, target, gate) = (
                        cut.clone(),
                        websockets.clone(),
                        target.clone(),
                        gate.clone(),
                    );
                    actix_web::rt::spawn(async move {
                        let cuttable = all || starts_websocket(&inbound).await;
                        if cuttable && cut.load(Ordering::SeqCst) {
                            return; // dropped: the connection fails
                        }
                        let relay = actix_web::rt::spawn(relay(inbound, target, gate));
                        if cuttable {
                            websockets.lock().unwrap().push(relay);
                        }
                    });
                }
            })
        };
        CuttingProxy {
            base,
            all,
            cut,
            websockets,
            flowing,
            accept,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Cuts (closing the open ones) or restores every connection (for `start_tcp`).
    pub fn cut(&self, cut: bool) {
        assert!(self.all, "this proxy only cuts WebSockets");
        self.cut_connections(cut);
    }

    /// Stops (or resumes) every byte in both directions, on open and new connections,
    /// without closing anything (for `start_tcp`).
    pub fn stall(&self, stalled: bool) {
        assert!(self.all, "this proxy only cuts WebSockets");
        self.flowing.send_replace(!stalled);
    }

    /// Cuts (closing the open ones) or restores WebSocket connections.
    pub fn cut_websockets(&self, cut: bool) {
        self.cut_connections(cut);
    }

    fn cut_connections(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for relay in self.websockets.lock().unwrap().drain(..) {
                relay.abort();
            }
        }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Whether the connection's first request is a WebSocket handshake (`GET /ws/…`).
async fn starts_websocket(stream: &TcpStream) -> bool {
    let mut head = [0u8; 8];
    loop {
        match stream.peek(&mut head).await {
            Ok(n) if n >= head.len() => return &head == b"GET /ws/",
            Ok(0) | Err(_) => return false,
            Ok(_) => stream.readable().await.ok().map_or((), |_| ()),
        }
    }
}

async fn relay(inbound: TcpStream, target: String, gate: watch::Receiver<bool>) {
    if flows(&mut gate.clone()).await.is_err() {
        return;
    }
    let Ok(outbound) = TcpStream::connect(&target).await else {
        return;
    };
    let (from_client, to_client) = inbound.into_split();
    let (from_server, to_server) = outbound.into_split();
    futures_util::future::join(
        pump(from_client, to_server, gate.clone()),
        pump(from_server, to_client, gate),
    )
    .await;
}

/// Copies one direction, holding every byte while the gate is closed.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut gate: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if flows(&mut gate).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Waits until bytes may flow.
async fn flows(gate: &mut watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    gate.wait_for(|flowing| *flowing).await.map(|_| ())
}
