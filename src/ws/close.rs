//! Every way the server closes a WebSocket session: its code, the reason sent with it and
//! its label in `nextup_ws_sessions_closed_total`, in one table beside the error table
//! (`crate::error`). docs/websocket.md §7 describes each for client authors.

/// Why the server closes a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The server is shutting down; the client reconnects elsewhere or later.
    Shutdown,
    /// A malformed frame.
    ProtocolError,
    /// A fragmented message: clients send each message in one frame.
    Fragmented,
    /// A frame not completed within `REQUEST_TIMEOUT_SECS` of its first byte.
    FrameIncomplete,
    /// A frame declaring more than the size limit.
    TooBig,
    /// The session could not join its tenant's hub.
    HubUnavailable,
    /// The client reads too slowly: its mailbox is full.
    TooSlow,
    /// The changes missed while joining do not fit in the mailbox.
    TooFarBehind,
    /// Nothing from the client for `CLIENT_TIMEOUT_SECS`.
    Timeout,
    /// The operator's token expired.
    TokenExpired,
    /// The operator's token was revoked (deactivated, role or password changed).
    TokenRevoked,
}

impl Close {
    /// (close code, reason sent to the client, metric label), for every variant.
    pub fn parts(self) -> (u16, &'static str, &'static str) {
        use Close::*;
        match self {
            Shutdown => (
                1001,
                "server shutting down; reconnect with since",
                "shutdown",
            ),
            ProtocolError => (1002, "protocol error", "protocol_error"),
            Fragmented => (
                1003,
                "fragmented messages are not accepted",
                "protocol_error",
            ),
            FrameIncomplete => (1008, "message not completed in time", "protocol_error"),
            TooBig => (1009, "message too big", "protocol_error"),
            HubUnavailable => (1011, "the session could not join its hub", "server_error"),
            TooSlow => (1013, "client too slow; reconnect with since", "slow_client"),
            TooFarBehind => (1013, "too far behind; reconnect with since", "slow_client"),
            Timeout => (4000, "no message from the client in time", "timeout"),
            TokenExpired => (4001, "token expired; log in again", "token_expired"),
            TokenRevoked => (4001, "token revoked; log in again", "token_revoked"),
        }
    }

    pub fn code(self) -> u16 {
        self.parts().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_in_the_ranges_rfc_6455_allows_a_server_to_send() {
        use Close::*;
        for close in [
            Shutdown,
            ProtocolError,
            Fragmented,
            FrameIncomplete,
            TooBig,
            HubUnavailable,
            TooSlow,
            TooFarBehind,
            Timeout,
            TokenExpired,
            TokenRevoked,
        ] {
            let (code, reason, label) = close.parts();
            // 1004-1006 and 1015 are reserved; 1000-2999 are the protocol's, 4000-4999 ours.
            assert!(
                matches!(code, 1001..=1003 | 1007..=1014 | 4000..=4999),
                "{close:?}"
            );
            // A close frame's payload is at most 125 bytes: the code and the reason.
            assert!(2 + reason.len() <= 125, "{close:?}");
            assert!(!label.is_empty());
        }
    }
}
