//! The client's address: the socket peer, or, when the peer is a trusted proxy, the rightmost
//! `X-Forwarded-For` hop that is not itself a trusted proxy. A client can put anything in the
//! header; only hops appended by proxies we trust count.

use ipnet::IpNet;
use std::net::IpAddr;

pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A malformed hop ends what we can believe; the last good one stands.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted = nets(&["127.0.0.0/8", "10.0.0.0/8"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Untrusted peer: its header is ignored.
        assert_eq!(client_ip(ip("8.8.8.8"), Some("81.2.69.142"), &trusted), ip("8.8.8.8"));
        // Trusted peer: the rightmost untrusted hop.
        assert_eq!(client_ip(ip("127.0.0.1"), Some("1.2.3.4, 81.2.69.142"), &trusted), ip("81.2.69.142"));
        assert_eq!(client_ip(ip("127.0.0.1"), Some("81.2.69.142, 10.1.1.1"), &trusted), ip("81.2.69.142"));
        // A spoofed leftmost entry does not win.
        assert_eq!(client_ip(ip("127.0.0.1"), Some("62.20.0.1, 81.2.69.142"), &trusted), ip("81.2.69.142"));
        assert_eq!(client_ip(ip("127.0.0.1"), None, &trusted), ip("127.0.0.1"));
        assert_eq!(client_ip(ip("127.0.0.1"), Some("garbage"), &trusted), ip("127.0.0.1"));
    }
}
