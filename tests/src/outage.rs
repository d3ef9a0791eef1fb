//! A TCP relay in front of a server that can be cut: every open connection
//! dropped, and while it is down every new one closed at once, as a client
//! sees an API server that went away (a control plane upgrade, an endpoint
//! change). Clients are pointed at `port`.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Outage {
    pub port: u16,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Default)]
struct Shared {
    down: Mutex<bool>,
    /// The relays of the connections open now.
    open: Mutex<Vec<AbortHandle>>,
}

impl Outage {
    /// Relays `127.0.0.1:<port>` to `127.0.0.1:<upstream>`.
    pub fn start(upstream: u16) -> Outage {
        let port = crate::free_port();
        let shared = Arc::new(Shared::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let accepting = shared.clone();
        runtime.spawn(async move {
            let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            while let Ok((mut client, _)) = listener.accept().await {
                if *accepting.down.lock().unwrap() {
                    continue; // dropped: closed at once
                }
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut open = accepting.open.lock().unwrap();
                open.retain(|r| !r.is_finished());
                open.push(relay.abort_handle());
            }
        });
        crate::wait_for_port(port, "the outage relay");
        Outage {
            port,
            shared,
            _runtime: runtime,
        }
    }

    /// Drops every open connection; new ones are relayed.
    pub fn drop_connections(&self) {
        for relay in self.shared.open.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    /// Down: open connections dropped, new ones closed at once.
    pub fn cut(&self) {
        *self.shared.down.lock().unwrap() = true;
        self.drop_connections();
    }

    /// Up again.
    pub fn restore(&self) {
        *self.shared.down.lock().unwrap() = false;
    }
}
