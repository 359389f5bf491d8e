//! A TCP proxy for fault tests: between a browser and the app it can cut WebSocket
//! traffic while HTTP keeps flowing (a reverse proxy that cannot pass WebSockets); between
//! the app and PostgreSQL it can cut everything (a database outage).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::rt::net::{TcpListener, TcpStream};
use actix_web::rt::task::JoinHandle;

pub struct CuttingProxy {
    pub base: String,
    /// Cut every connection, not only WebSocket handshakes.
    all: bool,
    cut: Arc<AtomicBool>,
    websockets: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CuttingProxy {
    /// Proxies to the app at `target_base` (`http://127.0.0.1:PORT`).
    pub async fn start(target_base: &str) -> CuttingProxy {
        Self::start_with(target_base.trim_start_matches("http://"), false).await
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
        let accept = {
            let (cut, websockets) = (cut.clone(), websockets.clone());
            actix_web::rt::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let (cut, websockets, target) =
                        (cut.clone(), websockets.clone(), target.clone());
                    actix_web::rt::spawn(async move {
                        let cuttable = all || starts_websocket(&inbound).await;
                        if cuttable && cut.load(Ordering::SeqCst) {
                            return; // dropped: the connection fails
                        }
                        let relay = actix_web::rt::spawn(relay(inbound, target));
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

async fn relay(mut inbound: TcpStream, target: String) {
    if let Ok(mut outbound) = TcpStream::connect(&target).await {
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    }
}
