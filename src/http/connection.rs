//! Settings of every accepted TCP connection, and the one socket operation a WebSocket
//! session needs: ending its connection as soon as its close frame is sent.

use std::any::Any;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use socket2::SockRef;

/// Kernel send buffer of each connection. Linux would let it grow to 4 MiB for a client
/// that stops reading; bounded, a stalled WebSocket client costs little kernel memory and
/// its session soon counts as slow (and is closed with 1013) instead.
pub const SOCKET_SEND_BUFFER_BYTES: usize = 128 * 1024;

/// Prepares an accepted connection (`HttpServer::on_connect`): bounds its send buffer,
/// aborts it when the client acknowledges nothing for `send_timeout` (TCP_USER_TIMEOUT,
/// which also covers a client that keeps its receive window shut: one that stopped reading),
/// and keeps its socket for the WebSocket session that may run on it.
pub fn prepare(connection: &dyn Any, data: &mut Extensions, send_timeout: Duration) {
    let Some(stream) = connection.downcast_ref::<TcpStream>() else {
        return;
    };
    let socket = SockRef::from(stream);
    if let Err(e) = socket.set_send_buffer_size(SOCKET_SEND_BUFFER_BYTES) {
        log::debug!("cannot bound the send buffer of a connection: {e}");
    }
    if let Err(e) = socket.set_tcp_user_timeout(Some(send_timeout)) {
        log::debug!("cannot set the send timeout of a connection: {e}");
    }
    data.insert(ConnectionSocket(stream.as_raw_fd()));
}

/// The socket of the connection a request came on.
///
/// Only valid while that connection is served: a WebSocket session uses it from its own
/// handlers, which run inside the connection's dispatcher (the session is the response
/// body it polls, and is dropped before the socket), never after.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSocket(RawFd);

impl ConnectionSocket {
    /// Stops reading from the client. actix-web then sends what the response has queued
    /// (a session's close frame), closes its side of the connection and lets go of it at
    /// once, where it would otherwise wait up to the disconnect timeout for the client to
    /// close first. A client that does not read what is queued is aborted by the send
    /// timeout instead (see [`prepare`]).
    pub fn end_after_queued_output(self) {
        // SAFETY: the descriptor is open for as long as this type is used (see its docs).
        let fd = unsafe { BorrowedFd::borrow_raw(self.0) };
        if let Err(e) = SockRef::from(&fd).shutdown(std::net::Shutdown::Read) {
            // The client went first: nothing left to end.
            log::debug!("connection already ended: {e}");
        }
    }
}
