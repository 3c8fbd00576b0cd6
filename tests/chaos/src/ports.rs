//! Free loopback ports for processes a test starts, which bind them only later.
//!
//! A port the kernel picked for a probe (`bind` to port 0, then close) can be given to any other
//! socket bound to port 0 or connecting out (a fault proxy, a cell's QUIC client, another test)
//! before the process binds it: global-control once failed to start on "address in use" that
//! way. So each port here is probed, never handed out twice in a process, and taken below the
//! kernel's ephemeral range, where no such socket gets its port.

use anyhow::bail;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Mutex;

/// The ports handed out so far in this process, and the range they come from.
static TAKEN: Mutex<Option<(BTreeSet<u16>, Range<u16>)>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 free now and left to the caller.
pub fn free_tcp() -> anyhow::Result<SocketAddr> {
    pick(|addr| std::net::TcpListener::bind(addr).is_ok())
}

/// A UDP port on 127.0.0.1 free now and left to the caller.
pub fn free_udp() -> anyhow::Result<SocketAddr> {
    pick(|addr| std::net::UdpSocket::bind(addr).is_ok())
}

fn below_ephemeral() -> Range<u16> {
    // "32768\t60999" on Linux by default: ours come from below its start, down to 10000.
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    10_000..start.max(10_001)
}

fn pick(free: impl Fn(SocketAddr) -> bool) -> anyhow::Result<SocketAddr> {
    use rand::Rng;
    let mut guard = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    let (taken, range) = guard.get_or_insert_with(|| (BTreeSet::new(), below_ephemeral()));
    for _ in 0..1_000 {
        let port = rand::rng().random_range(range.clone());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !taken.contains(&port) && free(addr) {
            taken.insert(port);
            return Ok(addr);
        }
    }
    bail!("no free port in {range:?} after 1,000 tries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let range = below_ephemeral();
        let tcp: Vec<SocketAddr> = (0..50).map(|_| free_tcp().unwrap()).collect();
        let udp = free_udp().unwrap();
        let distinct: BTreeSet<u16> = tcp.iter().chain([&udp]).map(SocketAddr::port).collect();
        assert_eq!(distinct.len(), 51, "no port is handed out twice");
        assert!(distinct.iter().all(|p| range.contains(p)), "{distinct:?} outside {range:?}");
        assert!(std::net::TcpListener::bind(tcp[0]).is_ok(), "a port handed out is left free");
        assert!(std::net::UdpSocket::bind(udp).is_ok());
    }
}
