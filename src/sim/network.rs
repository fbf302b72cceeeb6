//! The network between a simulated cluster and the endpoints outside it (object-storage
//! locations): each link is a TCP relay on 127.0.0.1 that the cluster's workloads use
//! instead of the endpoint's own address, so a test can cut it (a partition) and restore
//! it. While a link is down, open connections are closed and new ones are closed as soon
//! as they are accepted, so clients see connection errors at once rather than waiting for
//! their timeouts. Killing the cluster takes its links down with it.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One relay: where it listens, where it leads, and whether it is up.
pub struct Link {
    pub target: SocketAddr,
    pub port: u16,
    pub up: watch::Sender<bool>,
}

/// Serves a link until the runtime stops.
pub async fn relay(listener: TcpListener, target: SocketAddr, up: Arc<watch::Sender<bool>>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        let mut state = up.subscribe();
        if !*state.borrow() {
            drop(inbound);
            continue;
        }
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = async { while state.changed().await.is_ok() { if !*state.borrow() { break } } } => {}
            }
        });
    }
}
