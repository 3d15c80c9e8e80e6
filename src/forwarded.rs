//! Who the client really is behind a reverse proxy. `X-Forwarded-For` is believed only from
//! peers in `[http] trusted_proxies`: the client is the rightmost address in the chain that is
//! not itself a trusted proxy (the standard walk: each trusted hop appended the address it saw).
//! From anyone else the header says nothing, and the gateway replaces it.

use std::net::IpAddr;

use ipnet::IpNet;

/// Whether `ip` is one of the trusted proxies (an IPv4-mapped IPv6 address, as a dual-stack
/// listener sees IPv4 peers, counts as its IPv4 address).
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client's address: `peer` itself unless `peer` is trusted and `X-Forwarded-For` (all of
/// its field values, in order) names someone further out.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let chain: Vec<IpAddr> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|s| parse_hop(s.trim()))
        .collect();
    let mut client = peer;
    for hop in chain.iter().rev() {
        client = *hop;
        if !is_trusted(*hop, trusted) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')?.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mapped_ipv4_peers_match_ipv4_lists() {
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.2/32".parse().unwrap()];
        assert!(super::is_trusted("::ffff:10.0.0.2".parse().unwrap(), &nets));
        assert!(!super::is_trusted(
            "::ffff:10.0.0.3".parse().unwrap(),
            &nets
        ));
    }

    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("192.0.2.1"), ["1.2.3.4"], &t), ip("192.0.2.1"));
        assert_eq!(client_ip(ip("192.0.2.1"), [], &[]), ip("192.0.2.1"));
    }

    #[test]
    fn trusted_hops_are_walked_from_the_right() {
        let t = nets(&["10.0.0.0/8"]);
        // spoofed, real client, inner proxy
        let xff = ["6.6.6.6, 198.51.100.7", "10.1.1.1"];
        assert_eq!(client_ip(ip("10.0.0.2"), xff, &t), ip("198.51.100.7"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), ["[2001:db8::5]:443"], &t),
            ip("2001:db8::5")
        );
        // Only trusted hops: the leftmost one is the best we know.
        assert_eq!(client_ip(ip("10.0.0.2"), ["10.9.9.9"], &t), ip("10.9.9.9"));
        // Garbage is skipped, no header means the peer.
        assert_eq!(client_ip(ip("10.0.0.2"), ["nonsense"], &t), ip("10.0.0.2"));
    }
}
