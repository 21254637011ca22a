//! A TCP proxy in front of the broker that a test can cut and restore, to simulate outages.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    kill: broadcast::Sender<()>,
    task: JoinHandle<()>,
    /// Local ports of the proxy's connections to the broker: the broker names a connection
    /// after its peer address, so a test can close exactly these from the server side.
    upstream_ports: Arc<Mutex<Vec<u16>>>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (kill, _) = broadcast::channel(4);
        let upstream_ports = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let cut = cut.clone();
            let kill = kill.clone();
            let upstream_ports = upstream_ports.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut killed = kill.subscribe();
                    let upstream_ports = upstream_ports.clone();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        if let Ok(local) = server.local_addr() {
                            upstream_ports
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(local.port());
                        }
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = killed.recv() => {}
                        }
                    });
                }
            })
        };
        TcpProxy {
            port,
            cut,
            kill,
            task,
            upstream_ports,
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Drops every proxied connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let _ = self.kill.send(());
    }

    /// Local ports of every broker connection made so far, oldest first.
    pub fn upstream_ports(&self) -> Vec<u16> {
        self.upstream_ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.kill.send(());
    }
}
