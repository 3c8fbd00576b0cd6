//! Faults a drill injects besides `kill -9` (which is [`crate::platform::Process::kill9`]): a UDP
//! fault proxy that sits on the QUIC path between one cell and the control plane and can cut it.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Largest datagram forwarded: QUIC never sends more than a UDP payload can hold.
const DATAGRAM_BYTES_MAX: usize = 65_535;

/// Forwards datagrams between one client (a cell's QUIC endpoint, whichever port it uses now)
/// and `upstream` (the control plane's QUIC port), or drops every one of them while cut, as a
/// network partition does: no error, no reset, just silence in both directions.
pub struct UdpFaultProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    pub forwarded: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpFaultProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<UdpFaultProxy> {
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.context("bind the fault proxy")?;
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.context("bind the fault proxy's upstream side")?;
        back.connect(upstream).await.with_context(|| format!("aim the fault proxy at {upstream}"))?;
        let addr = front.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let (forwarded, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (c, fw, dr) = (cut.clone(), forwarded.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let (mut up, mut down) = (vec![0u8; DATAGRAM_BYTES_MAX], vec![0u8; DATAGRAM_BYTES_MAX]);
            loop {
                tokio::select! {
                    r = front.recv_from(&mut up) => {
                        let Ok((n, from)) = r else { continue };
                        client = Some(from);
                        if c.load(Ordering::SeqCst) {
                            dr.fetch_add(1, Ordering::Relaxed);
                        } else if back.send(&up[..n]).await.is_ok() {
                            fw.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    r = back.recv(&mut down) => {
                        // The control plane's port may be closed while it is down: keep going.
                        let Ok(n) = r else { continue };
                        match (client, c.load(Ordering::SeqCst)) {
                            (Some(to), false) => {
                                if front.send_to(&down[..n], to).await.is_ok() {
                                    fw.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            _ => {
                                dr.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        });
        Ok(UdpFaultProxy { addr, cut, forwarded, dropped, task })
    }

    /// Cuts (`true`) or heals (`false`) the path.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.forwarded.load(Ordering::Relaxed), self.dropped.load(Ordering::Relaxed))
    }
}

impl Drop for UdpFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
