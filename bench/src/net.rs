//! Many client sockets to one server from one machine.
//!
//! A TCP connection is identified by (source address, source port, server address, server
//! port). From one source address to one server port there are only as many connections as
//! ephemeral ports (about 28,000 by default), fewer while old ones sit in TIME_WAIT. The
//! whole 127.0.0.0/8 block is loopback on Linux, so a tool that binds its sockets to
//! 127.0.0.1, 127.0.0.2, … before connecting multiplies that room.
//! `IP_BIND_ADDRESS_NO_PORT` lets the kernel pick the port at connect time, per destination,
//! instead of reserving one per source address at bind time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use tokio::net::{TcpSocket, TcpStream};

/// The most loopback source addresses the tools spread over (127.0.0.1 to 127.0.0.254).
pub const MAX_SOURCES: usize = 254;

/// How many loopback source addresses `sessions` connections need, given the ephemeral port
/// range: each address carries at most half the range (room for TIME_WAIT and for other
/// clients), plus one address to spare. At least 1, at most [`MAX_SOURCES`].
pub fn sources_needed(sessions: usize, ports: (u16, u16)) -> usize {
    let range = usize::from(ports.1.saturating_sub(ports.0)) + 1;
    let per_address = (range / 2).max(1);
    (sessions.div_ceil(per_address) + 1).clamp(1, MAX_SOURCES)
}

/// The source address of the `index`-th connection, spread round-robin over `count`
/// addresses: 127.0.0.1, 127.0.0.2, …
pub fn source_for(index: u64, count: usize) -> Ipv4Addr {
    let count = count.clamp(1, MAX_SOURCES) as u64;
    Ipv4Addr::new(127, 0, 0, 1 + (index % count) as u8)
}

/// Whether a server address can be reached from any 127.0.0.x source (it is loopback).
pub fn can_spread(server: &SocketAddr) -> bool {
    match server.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(_) => false,
    }
}

/// A TCP connection to `server`, bound to `source` first when given. Nagle is off.
pub async fn connect_from(server: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the size given. The option only
        // defers the choice of the port; failure (an old kernel) is harmless.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(server).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_addresses_for_the_sessions() {
        let ports = (32768, 60999); // 28,232 ports: 14,116 per address
        assert_eq!(sources_needed(0, ports), 1);
        assert_eq!(sources_needed(200, ports), 2);
        assert_eq!(sources_needed(14_116, ports), 2);
        assert_eq!(sources_needed(14_117, ports), 3);
        assert_eq!(sources_needed(20_000, ports), 3);
        assert_eq!(sources_needed(10_000_000, ports), MAX_SOURCES);
        assert_eq!(sources_needed(100, (40000, 40001)), 101);
        assert_eq!(sources_needed(1000, (40000, 40001)), MAX_SOURCES);
    }

    #[test]
    fn connections_go_round_robin_over_the_addresses() {
        let picked: Vec<Ipv4Addr> = (0..5).map(|i| source_for(i, 3)).collect();
        let octets: Vec<u8> = picked.iter().map(|a| a.octets()[3]).collect();
        assert_eq!(octets, [1, 2, 3, 1, 2]);
        assert_eq!(source_for(7, 0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_for(300, 1000).octets()[3], 47);
    }

    #[test]
    fn only_loopback_servers_allow_spreading() {
        assert!(can_spread(&"127.0.0.1:8080".parse().unwrap()));
        assert!(!can_spread(&"10.0.0.5:8080".parse().unwrap()));
        assert!(!can_spread(&"[::1]:8080".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_socket_bound_to_a_second_loopback_address_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let stream = connect_from(server, Some(Ipv4Addr::new(127, 0, 0, 2)))
            .await
            .unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(stream.local_addr().unwrap().ip(), peer.ip());
    }
}
