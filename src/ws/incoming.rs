//! The bytes a WebSocket client sends, checked before actix-web-actors buffers them.
//!
//! actix-web-actors appends every chunk the connection delivers to one growing buffer and
//! checks a frame's size only once the whole frame is there, so a client that declares a
//! frame of 2^62 bytes and keeps streaming can take all of the server's memory. The
//! [`FrameGate`] sits between the connection and that decoder:
//!
//! - it reads each frame's header as it arrives and refuses a frame whose declared length
//!   is over the limit right there, before any of its payload is kept;
//! - it hands the decoder one frame at a time and waits for the decoder to take it, so the
//!   decoder's buffer never holds more than one (small) frame, and it reads nothing more
//!   from the connection while it still holds bytes: the connection's own buffers then fill
//!   and TCP flow control stops the client;
//! - a frame, once started, must be complete within a deadline, so a frame trickled byte
//!   by byte cannot hold a session open.
//!
//! A refusal ends the stream with an error; the session reads [`Refusal`] from the shared
//! verdict to choose its close code.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::rt::time::{Sleep, sleep};
use actix_web::web::Bytes;
use futures_util::Stream;

/// Why the gate stopped a client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A frame declared a payload over the limit.
    TooBig,
    /// A started frame did not complete within the deadline.
    Incomplete,
}

/// Where the gate reports a refusal to its session (both live on one worker thread).
pub type Verdict = Rc<Cell<Option<Refusal>>>;

/// Follows the frame boundaries of a client's byte stream (RFC 6455 §5.2) without keeping
/// any payload: only the header bytes of the current frame, at most 14.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    max_payload: u64,
    state: ScanState,
}

#[derive(Debug, Clone)]
enum ScanState {
    Header { bytes: [u8; MAX_HEADER], len: usize },
    Payload { remaining: u64 },
}

const MAX_HEADER: usize = 14;

/// How far the next bytes of the stream reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// All of these bytes belong to the current frame, which goes on after them.
    Within(usize),
    /// The first `n` bytes complete the current frame.
    Completes(usize),
}

impl FrameScanner {
    pub fn new(max_payload: usize) -> Self {
        Self {
            max_payload: max_payload as u64,
            state: ScanState::Header {
                bytes: [0; MAX_HEADER],
                len: 0,
            },
        }
    }

    /// Whether a frame has started and not yet completed.
    pub fn mid_frame(&self) -> bool {
        !matches!(self.state, ScanState::Header { len: 0, .. })
    }

    /// Takes the next bytes of the stream (not empty); says how many of them belong to
    /// the current frame, or refuses the frame as soon as its header declares too much.
    pub fn advance(&mut self, input: &[u8]) -> Result<Step, Refusal> {
        let mut used = 0;
        loop {
            match &mut self.state {
                ScanState::Header { bytes, len } => {
                    let needed = header_len(&bytes[..*len]);
                    let take = (needed - *len).min(input.len() - used);
                    bytes[*len..*len + take].copy_from_slice(&input[used..used + take]);
                    *len += take;
                    used += take;
                    if *len < needed {
                        return Ok(Step::Within(used));
                    }
                    // With two bytes the length may need more; loop until it is whole.
                    if header_len(&bytes[..*len]) > *len {
                        continue;
                    }
                    let declared = payload_len(&bytes[..*len]);
                    if declared > self.max_payload {
                        return Err(Refusal::TooBig);
                    }
                    self.state = ScanState::Payload {
                        remaining: declared,
                    };
                }
                ScanState::Payload { remaining } => {
                    let take = (*remaining).min((input.len() - used) as u64);
                    *remaining -= take;
                    used += take as usize;
                    if *remaining == 0 {
                        self.state = ScanState::Header {
                            bytes: [0; MAX_HEADER],
                            len: 0,
                        };
                        return Ok(Step::Completes(used));
                    }
                    return Ok(Step::Within(used));
                }
            }
        }
    }
}

/// The length of a header that starts with `start`, as far as `start` tells: 2 until the
/// second byte is known, then the full length (extended length and mask included).
fn header_len(start: &[u8]) -> usize {
    let Some(&second) = start.get(1) else {
        return 2;
    };
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// The payload length a whole header declares.
fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes(header[2..10].try_into().expect("eight bytes")),
        short => u64::from(short),
    }
}

/// The client's byte stream as the session's decoder should see it (see the module docs).
pub struct FrameGate<S> {
    inner: S,
    scanner: FrameScanner,
    /// Bytes read from the connection and not yet handed on: part of one chunk.
    held: Bytes,
    /// A frame was just handed on whole: let the decoder take it before the next one.
    yield_once: bool,
    frame_deadline: Duration,
    /// Runs while a frame is incomplete.
    timer: Option<Pin<Box<Sleep>>>,
    verdict: Verdict,
    ended: bool,
}

impl<S> FrameGate<S> {
    pub fn new(inner: S, max_payload: usize, frame_deadline: Duration, verdict: Verdict) -> Self {
        Self {
            inner,
            scanner: FrameScanner::new(max_payload),
            held: Bytes::new(),
            yield_once: false,
            frame_deadline,
            timer: None,
            verdict,
            ended: false,
        }
    }

    fn refuse(&mut self, refusal: Refusal) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.verdict.set(Some(refusal));
        self.ended = true;
        self.held = Bytes::new();
        self.timer = None;
        Poll::Ready(Some(Err(PayloadError::Overflow)))
    }
}

impl<S> Stream for FrameGate<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if this.yield_once {
            // The decoder reads until its source is pending, then decodes one frame: being
            // pending here once makes it decode the frame it was just given.
            this.yield_once = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.held.is_empty() {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.held = chunk,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if let Some(timer) = &mut this.timer
                        && timer.as_mut().poll(cx).is_ready()
                    {
                        return this.refuse(Refusal::Incomplete);
                    }
                    return Poll::Pending;
                }
            }
            if this.held.is_empty() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        match this.scanner.advance(&this.held) {
            Err(refusal) => this.refuse(refusal),
            Ok(Step::Within(n)) => {
                if this.timer.is_none() {
                    this.timer = Some(Box::pin(sleep(this.frame_deadline)));
                }
                Poll::Ready(Some(Ok(this.held.split_to(n))))
            }
            Ok(Step::Completes(n)) => {
                this.timer = None;
                this.yield_once = true;
                Poll::Ready(Some(Ok(this.held.split_to(n))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_codec::Decoder;
    use proptest::prelude::*;

    /// A masked client frame header for a payload of `len` bytes.
    fn header(opcode: u8, len: u64) -> Vec<u8> {
        let mut bytes = vec![0x80 | opcode];
        match len {
            0..=125 => bytes.push(0x80 | len as u8),
            126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&len.to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes
    }

    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = header(opcode, payload.len() as u64);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn frames_are_followed_across_any_split() {
        let stream: Vec<u8> = [
            frame(0x1, b"{\"type\":\"ping\"}"),
            frame(0x9, b""),
            frame(0x1, &[b'x'; 300]),
            frame(0x2, &[0; 4096]),
        ]
        .concat();
        let ends = {
            let lens = [15 + 6, 6, 300 + 8, 4096 + 8];
            let mut at = 0;
            lens.map(|len| {
                at += len;
                at
            })
        };
        for piece in [1, 2, 3, 7, 13, 100, 5000] {
            let mut scanner = FrameScanner::new(4096);
            let mut at = 0;
            let mut completed = Vec::new();
            while at < stream.len() {
                let chunk = &stream[at..(at + piece).min(stream.len())];
                let mut used = 0;
                while used < chunk.len() {
                    match scanner.advance(&chunk[used..]).unwrap() {
                        Step::Within(n) => used += n,
                        Step::Completes(n) => {
                            used += n;
                            completed.push(at + used);
                        }
                    }
                }
                at += chunk.len();
            }
            assert_eq!(completed, ends, "chunks of {piece}");
            assert!(!scanner.mid_frame());
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_at_its_header() {
        // (case, declared length, refused)
        let cases = [
            ("at the limit", 4096, false),
            ("one over", 4097, true),
            ("16-bit length", 60_000, true),
            ("2^62", 1u64 << 62, true),
            ("2^64 - 1", u64::MAX, true),
        ];
        for (case, len, refused) in cases {
            let mut scanner = FrameScanner::new(4096);
            let header = header(0x1, len);
            // Byte by byte: the refusal comes with the header's last byte, not later.
            let mut outcome = Ok(Step::Within(0));
            for (i, byte) in header.iter().enumerate() {
                outcome = scanner.advance(std::slice::from_ref(byte));
                if i + 1 < header.len() {
                    assert_eq!(outcome, Ok(Step::Within(1)), "{case}: byte {i}");
                }
            }
            assert_eq!(outcome == Err(Refusal::TooBig), refused, "{case}");
        }
    }

    #[test]
    fn an_empty_frame_completes_with_its_header() {
        let mut scanner = FrameScanner::new(4096);
        let bytes = [frame(0xA, b""), frame(0x1, b"a")].concat();
        assert_eq!(scanner.advance(&bytes), Ok(Step::Completes(6)));
        assert_eq!(scanner.advance(&bytes[6..]), Ok(Step::Completes(7)));
    }

    #[test]
    fn an_unmasked_header_is_measured_too() {
        // Servers' frames are unmasked; a client that sends one is refused by the decoder
        // later, but the scanner must still find its end.
        let mut scanner = FrameScanner::new(4096);
        assert_eq!(
            scanner.advance(&[0x81, 126, 0x10, 0x00]),
            Ok(Step::Within(4))
        );
        assert!(scanner.mid_frame());
        assert_eq!(
            scanner.advance(&vec![0; 0x1000 + 5]),
            Ok(Step::Completes(0x1000))
        );
    }

    /// A client's byte stream: frames of any kind and length (some over the limit, some
    /// unmasked), then arbitrary bytes.
    fn client_stream() -> impl Strategy<Value = Vec<u8>> {
        let frame = (0u8..16, 0usize..6000, any::<bool>(), any::<bool>()).prop_map(
            |(opcode, len, masked, fin)| {
                let mut bytes = header(opcode, len as u64);
                if !masked {
                    bytes[1] &= 0x7f;
                    bytes.truncate(bytes.len() - 4);
                }
                if !fin {
                    bytes[0] &= 0x7f;
                }
                bytes.resize(bytes.len() + len, b'x');
                bytes
            },
        );
        (
            prop::collection::vec(frame, 0..12),
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(frames, tail)| [frames.concat(), tail].concat())
    }

    proptest! {
        /// The session's input path as actix-web-actors runs it: read from the gate until
        /// it is pending, decode one frame, repeat. Whatever the bytes and however they are
        /// cut into chunks, nothing panics, the decoder never holds more than one frame at
        /// the limit, the gate never more than one chunk, and a frame over the limit is
        /// refused before its payload.
        #[test]
        fn no_byte_stream_grows_the_session_input_past_one_frame(
            stream in client_stream(),
            cuts in prop::collection::vec(1usize..2000, 1..40),
        ) {
            const MAX: usize = 4096;
            let mut chunks = Vec::new();
            let mut rest = &stream[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
                chunks.push(Ok(Bytes::copy_from_slice(chunk)));
                rest = tail;
            }
            let largest_chunk = cuts.iter().copied().max().unwrap_or(0);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let _entered = runtime.enter();
            let verdict = Verdict::default();
            let mut gate = FrameGate::new(
                futures_util::stream::iter(chunks),
                MAX,
                Duration::from_secs(5),
                verdict.clone(),
            );
            let mut codec = actix_http::ws::Codec::new().max_size(MAX);
            let mut buffer = actix_web::web::BytesMut::new();
            let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
            let mut ended = false;
            for _ in 0..100_000 {
                while !ended {
                    match Pin::new(&mut gate).poll_next(&mut cx) {
                        Poll::Ready(Some(Ok(bytes))) => buffer.extend_from_slice(&bytes),
                        Poll::Ready(Some(Err(_))) | Poll::Ready(None) => ended = true,
                        Poll::Pending => break,
                    }
                    prop_assert!(gate.held.len() <= largest_chunk);
                }
                prop_assert!(buffer.len() <= MAX_HEADER + MAX, "decoder holds {}", buffer.len());
                match codec.decode(&mut buffer) {
                    Ok(Some(_)) => {}
                    Ok(None) if ended => break,
                    Ok(None) => {}
                    // The session closes on a decoding error: its input ends there.
                    Err(_) => break,
                }
            }
            if verdict.get() == Some(Refusal::TooBig) {
                prop_assert!(buffer.len() <= MAX_HEADER + MAX);
            }
        }
    }
}
