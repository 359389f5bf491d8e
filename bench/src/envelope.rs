//! The `type` and `seq` of a server message, read without parsing the message.
//!
//! A load tool with thousands of sessions reads every change once per session, so a full
//! JSON parse of each frame would cost more CPU than the server spends sending it. The
//! server builds its frames with `serde_json::json!`, whose objects keep their keys sorted
//! (serde_json without `preserve_order`), so a frame ends with its envelope:
//!
//! ```text
//! {"data":{…},"seq":43,"ts":"2026-03-10T12:15:02.104311Z","type":"ticket_update"}
//! ```
//!
//! [`peek`] reads that tail, a few dozen bytes from the end. It also reads the other
//! plausible layout, with `type` and `seq` first (`{"type":"ticket_update","seq":43,…`).
//! Anything else, e.g. whitespace between tokens, gives `None`: parse the message fully
//! then ([`crate::session::parse_frame`]).
//!
//! Why reading from the end is sound: a message that ends in `"}` and whose last member is
//! `"type":"<lowercase word>"` has `type` at the top level (a nested object would end in
//! `}}`). Strings in JSON cannot contain a bare `"`, so the text between `"ts":"` and the
//! `"` before `,"type"` is the whole `ts` value, and the member before it, when it is
//! `"seq":<digits>`, is the top-level `seq`. `hello` has a `seq` inside `data` but none in
//! the envelope; its `ts` follows the `}` of `data`, so it reads as having no `seq`.

use crate::session::FrameKind;

/// The kind and envelope `seq` of a server message, or `None` when its layout is not one
/// of the two this reads.
pub fn peek(text: &str) -> Option<(FrameKind, Option<u64>)> {
    let (kind, seq) = match text.strip_prefix(r#"{"type":""#) {
        Some(rest) => forward(rest)?,
        None => backward(text)?,
    };
    let needs_seq = matches!(
        kind,
        FrameKind::TicketUpdate | FrameKind::QueueUpdate | FrameKind::Snapshot
    );
    if needs_seq && seq.is_none() {
        return None;
    }
    Some((kind, seq))
}

fn kind_of(word: &str) -> Option<FrameKind> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return None;
    }
    Some(match word {
        "ticket_update" => FrameKind::TicketUpdate,
        "queue_update" => FrameKind::QueueUpdate,
        "hello" => FrameKind::Hello,
        "snapshot" => FrameKind::Snapshot,
        "pong" => FrameKind::Pong,
        "error" => FrameKind::Error,
        _ => FrameKind::Other,
    })
}

/// `{"type":"K","seq":N,…` (the text after `{"type":"`).
fn forward(rest: &str) -> Option<(FrameKind, Option<u64>)> {
    let end = rest.find('"')?;
    let kind = kind_of(&rest[..end])?;
    let seq = rest[end + 1..]
        .strip_prefix(r#","seq":"#)
        .and_then(|after| {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            after[..digits].parse().ok()
        });
    Some((kind, seq))
}

/// `…,"seq":N,"ts":"T","type":"K"}`, read from the end.
fn backward(text: &str) -> Option<(FrameKind, Option<u64>)> {
    let body = text.strip_suffix("\"}")?;
    let type_at = body.rfind(r#","type":""#)?;
    let kind = kind_of(&body[type_at + r#","type":""#.len()..])?;
    let before_type = body[..type_at].strip_suffix('"')?;
    let ts_at = before_type.rfind(r#","ts":""#)?;
    if before_type[ts_at + r#","ts":""#.len()..].contains('"') {
        return None;
    }
    let head = &before_type[..ts_at];
    let digits = head.bytes().rev().take_while(u8::is_ascii_digit).count();
    let seq = (digits > 0)
        .then(|| head[..head.len() - digits].strip_suffix(r#""seq":"#))
        .flatten()
        .and_then(|_| head[head.len() - digits..].parse().ok());
    Some((kind, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the server sends them (keys sorted).
    const TICKET_UPDATE: &str = r#"{"data":{"action":"called","previous_status":"waiting","ticket":{"ahead":null,"call_count":1,"called_at":"2026-03-10T12:15:20.877402Z","code":"A007","counter":{"id":"c7a2d4e9-1b3f-4c6a-8e5d-2f9b0a7c3e14","name":"Desk 2"},"created_at":"2026-03-10T12:04:31.482913Z","estimated_wait_secs":null,"id":"0b6f3c1e-5d0a-4a43-9a55-2f1f7c0b9e21","priority":"normal","service":{"code":"A","id":"5b1c8f0e-3a8d-4f55-8a0e-6d1f9c2b7a10","name":"General"},"status":"called"}},"seq":44,"ts":"2026-03-10T12:15:20.877402Z","type":"ticket_update"}"#;
    const QUEUE_UPDATE: &str = r#"{"data":{"services":[{"code":"A","estimated_wait_secs":150,"id":"5b1c8f0e-3a8d-4f55-8a0e-6d1f9c2b7a10","name":"General","waiting":1}]},"seq":44,"ts":"2026-03-10T12:15:20.877402Z","type":"queue_update"}"#;
    const HELLO: &str = r#"{"data":{"audience":"totem","heartbeat_interval_secs":15,"seq":42,"session_id":"2c9f4e71-0a8b-4d6c-b3e2-9f1a7c5d0e48"},"ts":"2026-03-10T12:15:00.018734512Z","type":"hello"}"#;
    const SNAPSHOT: &str = r#"{"data":{"called":[],"seq":7,"services":[],"tenant":{"name":"T","slug":"t"},"waiting":[]},"seq":7,"ts":"2026-03-10T12:15:00.018734512Z","type":"snapshot"}"#;

    #[test]
    fn sorted_frames_give_their_type_and_seq() {
        assert_eq!(
            peek(TICKET_UPDATE),
            Some((FrameKind::TicketUpdate, Some(44)))
        );
        assert_eq!(peek(QUEUE_UPDATE), Some((FrameKind::QueueUpdate, Some(44))));
        assert_eq!(peek(SNAPSHOT), Some((FrameKind::Snapshot, Some(7))));
        assert_eq!(peek(HELLO), Some((FrameKind::Hello, None)));
        let pong = r#"{"data":{},"ts":"2026-03-10T12:15:30.402215871Z","type":"pong"}"#;
        assert_eq!(peek(pong), Some((FrameKind::Pong, None)));
        let later = r#"{"data":{},"seq":3,"ts":"x","type":"presence"}"#;
        assert_eq!(peek(later), Some((FrameKind::Other, Some(3))));
    }

    #[test]
    fn frames_with_the_envelope_first_are_read_too() {
        let frame = r#"{"type":"ticket_update","seq":43,"ts":"x","data":{"action":"issued"}}"#;
        assert_eq!(peek(frame), Some((FrameKind::TicketUpdate, Some(43))));
        let hello = r#"{"type":"hello","ts":"x","data":{"seq":42}}"#;
        assert_eq!(peek(hello), Some((FrameKind::Hello, None)));
    }

    #[test]
    fn what_the_peek_cannot_vouch_for_is_left_to_the_full_parser() {
        let cases = [
            (
                "pretty",
                "{\"data\": {}, \"seq\": 4, \"ts\": \"x\", \"type\": \"ticket_update\"}",
            ),
            ("not json", "hello"),
            ("empty", ""),
            (
                "change without seq",
                r#"{"data":{},"ts":"x","type":"ticket_update"}"#,
            ),
            (
                "type first, seq later",
                r#"{"type":"ticket_update","data":{},"seq":4}"#,
            ),
            ("nested type last", r#"{"data":{"ts":"x","type":"hello"}}"#),
            ("no ts", r#"{"data":{},"seq":4,"type":"ticket_update"}"#),
            (
                "odd type",
                r#"{"data":{},"seq":4,"ts":"x","type":"Ticket Update"}"#,
            ),
        ];
        for (what, text) in cases {
            assert_eq!(peek(text), None, "{what}: {text}");
        }
    }

    #[test]
    fn names_that_look_like_an_envelope_do_not_fool_it() {
        // A service named `","seq":9,"ts":"x","type":"hello` is escaped inside `data`.
        let tricky = r#"{"data":{"services":[{"name":"\",\"seq\":9,\"ts\":\"x\",\"type\":\"hello"}]},"seq":12,"ts":"2026-03-10T12:15:20Z","type":"queue_update"}"#;
        assert_eq!(peek(tricky), Some((FrameKind::QueueUpdate, Some(12))));
    }

    #[test]
    fn the_peek_agrees_with_the_full_parser() {
        for text in [TICKET_UPDATE, QUEUE_UPDATE, HELLO, SNAPSHOT] {
            let full = crate::session::parse_frame(text, std::time::Instant::now());
            assert_eq!(peek(text), Some((full.kind, full.seq)), "{text}");
        }
    }
}
