//! The worker link: how batches and results are framed on a worker's Unix socket.
//!
//! Every integer is **little-endian**. One connection per worker process; the worker connects
//! after its warm-up and sends `HELLO` first. The engine then sends one `BATCH` at a time and
//! reads that batch's `RESULT` (preceded, for streaming workers, by any number of `EVENT`
//! frames) before it sends the next batch on the same connection.
//!
//! ```text
//! frame := body_len:u32 | body                  body_len counts the body only
//! body  := kind:u8 | reserved:u8 (=0) | count:u16 | rest
//!
//! kind 1 HELLO   worker → engine   count = 0, rest = stage:u32 | worker_id:u32 | pid:u32
//! kind 2 BATCH   engine → worker   rest = count items
//! kind 3 RESULT  worker → engine   rest = count items, same order and task ids as the BATCH
//! kind 4 EVENT   worker → engine   rest = count items, stream events sent before the RESULT
//! kind 5 CANCEL  engine → worker   rest = count items (empty payloads): these tasks' clients are
//!                                  gone; may arrive while a batch is in flight or between batches
//!
//! item  := task_id:u32 | flags:u16 | status:u16 | len:u32 | [rid_len:u8 | rid] | payload[len]
//!
//! flags   0x0001 INGRESS    the payload is still the task's original input (the request
//!                           body): the first stage of a route, and in a flow every stage
//!                           reached before any stage has answered (the first stage of each
//!                           member of a first ensemble, a first switch's chooser and the
//!                           first stage of its branch)
//!         0x0002 EGRESS     the result leaves the engine as (part of) the task's answer: the
//!                           last stage of a route; in a flow, the last stage of the last step,
//!                           of each branch of a last switch, of each member of a last ensemble
//!         0x0004 REQUEST_ID the item carries its request id (`rid_len` then `rid_len` bytes of
//!                           ASCII) between its header and its payload; `len` counts the
//!                           payload only. Set by the engine on BATCH items.
//!         0x0008 JOINED     the payload is a joined container (below): the outputs of an
//!                           ensemble's members. Set by the engine on BATCH items only.
//!         0x8000 REFERENCE  the payload is a store reference, not inline bytes
//! status  0 in a BATCH; in a RESULT the HTTP status of the item: 200 is success (the payload is
//!         the output), anything else is an error (the payload is its UTF-8 message)
//! ```
//!
//! A joined container, the payload of a JOINED item and the answer of a route whose last
//! step is an ensemble (the engine builds it; workers only read it):
//!
//! ```text
//! joined := count:u16 | part * count            parts in member order
//! part   := status:u16 | flags:u16 | len:u32 | bytes[len]
//!
//! status  200: bytes are the member's output; else the member's error status, and bytes are
//!         its UTF-8 message
//! flags   REFERENCE (0x8000) when bytes are a store reference; JOINED (0x0008) when bytes are
//!         themselves a joined container (a member whose flow ends with an ensemble); else 0
//! ```
//!
//! This is the one definition of the layout: the Python side (`mosec/protocol.py`) imports these
//! numbers from `mosec._engine` and follows this text. The engine never reads payloads, except
//! those flagged REFERENCE, whose layout is in `crate::refs`: it must see which objects a task
//! holds to release them when the task ends.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Item flag: the stage is the first of the task's route.
pub const FLAG_INGRESS: u16 = 0x0001;
/// Item flag: the stage is the last of the task's route.
pub const FLAG_EGRESS: u16 = 0x0002;
/// Item flag: a request id follows the item header.
pub const FLAG_REQUEST_ID: u16 = 0x0004;
/// Item flag: the payload is a joined container of an ensemble's member outputs.
pub const FLAG_JOINED: u16 = 0x0008;
/// Item flag: the payload is a store reference.
pub const FLAG_REFERENCE: u16 = 0x8000;

/// Bytes of a joined part's header: status, flags, length.
const PART_HEADER_LEN: usize = 8;

/// Bytes of the frame header after the length prefix: kind, reserved, count.
const BODY_HEADER_LEN: usize = 4;
/// Bytes of an item header: task id, flags, status, payload length.
const ITEM_HEADER_LEN: usize = 12;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A worker introduces itself.
    Hello = 1,
    /// The engine hands a batch to a worker.
    Batch = 2,
    /// A worker answers the batch it was given.
    Result = 3,
    /// A worker streams events for items of its current batch.
    Event = 4,
    /// The engine tells a worker that tasks' clients are gone.
    Cancel = 5,
}

impl TryFrom<u8> for FrameKind {
    type Error = ProtocolError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            1 => Ok(Self::Hello),
            2 => Ok(Self::Batch),
            3 => Ok(Self::Result),
            4 => Ok(Self::Event),
            5 => Ok(Self::Cancel),
            other => Err(ProtocolError::UnknownKind(other)),
        }
    }
}

/// One task's share of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The task this item belongs to.
    pub task_id: u32,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// 0 in a batch, the HTTP status in a result.
    pub status: u16,
    /// The request id for the worker's logs (BATCH only; empty when absent). At most 255 bytes.
    pub request_id: Bytes,
    /// Inline bytes or a store reference, by `FLAG_REFERENCE`.
    pub payload: Bytes,
}

/// A worker's introduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Index of the stage the worker serves.
    pub stage: u32,
    /// The worker's 1-based id within its stage.
    pub worker_id: u32,
    /// The worker's process id, for logs.
    pub pid: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// See [`Hello`].
    Hello(Hello),
    /// Items of a batch, a result or an event, by kind.
    Items(FrameKind, Vec<Item>),
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed or closed.
    #[error("worker link i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The kind byte names no frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The frame's declared lengths do not add up.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// More than `u16::MAX` items, or a payload over `u32::MAX` bytes.
    #[error("frame too large: {0}")]
    TooLarge(&'static str),
}

/// Encodes the header of an items frame and of each item; payloads are written separately so
/// large ones are never copied into the header buffer.
fn encode_headers(kind: FrameKind, items: &[Item]) -> Result<BytesMut, ProtocolError> {
    let count = u16::try_from(items.len()).map_err(|_| ProtocolError::TooLarge("item count"))?;
    let mut body_len = BODY_HEADER_LEN;
    for item in items {
        u32::try_from(item.payload.len()).map_err(|_| ProtocolError::TooLarge("payload"))?;
        if item.request_id.len() > usize::from(u8::MAX) {
            return Err(ProtocolError::TooLarge("request id"));
        }
        body_len += ITEM_HEADER_LEN + request_id_len(item) + item.payload.len();
    }
    let body_len = u32::try_from(body_len).map_err(|_| ProtocolError::TooLarge("frame"))?;
    let mut head = BytesMut::with_capacity(8 + items.len() * ITEM_HEADER_LEN);
    head.put_u32_le(body_len);
    head.put_u8(kind as u8);
    head.put_u8(0);
    head.put_u16_le(count);
    Ok(head)
}

/// Bytes the request id takes on the wire, its length byte included.
fn request_id_len(item: &Item) -> usize {
    if item.request_id.is_empty() {
        0
    } else {
        1 + item.request_id.len()
    }
}

fn put_item_header(buf: &mut BytesMut, item: &Item) {
    buf.put_u32_le(item.task_id);
    let mut flags = item.flags & !FLAG_REQUEST_ID;
    if !item.request_id.is_empty() {
        flags |= FLAG_REQUEST_ID;
    }
    buf.put_u16_le(flags);
    buf.put_u16_le(item.status);
    // Checked in `encode_headers`.
    buf.put_u32_le(item.payload.len() as u32);
    if !item.request_id.is_empty() {
        buf.put_u8(item.request_id.len() as u8);
        buf.put_slice(&item.request_id);
    }
}

/// Writes an items frame; small item headers are coalesced with small payloads.
///
/// # Errors
/// [`ProtocolError`] when the socket fails or the frame exceeds the format's limits.
pub async fn write_items<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: FrameKind,
    items: &[Item],
) -> Result<(), ProtocolError> {
    /// Payloads below this size are copied next to their header to save a syscall.
    const COALESCE_BELOW: usize = 64 * 1024;
    let mut buf = encode_headers(kind, items)?;
    for item in items {
        put_item_header(&mut buf, item);
        if item.payload.len() < COALESCE_BELOW {
            buf.put_slice(&item.payload);
        } else {
            writer.write_all(&buf).await?;
            buf.clear();
            writer.write_all(&item.payload).await?;
        }
    }
    writer.write_all(&buf).await?;
    writer.flush().await?;
    Ok(())
}

/// Writes a HELLO frame (used by tests standing in for a worker).
///
/// # Errors
/// [`ProtocolError::Io`] when the socket fails.
pub async fn write_hello<W: AsyncWrite + Unpin>(
    writer: &mut W,
    hello: Hello,
) -> Result<(), ProtocolError> {
    let mut buf = BytesMut::with_capacity(20);
    buf.put_u32_le((BODY_HEADER_LEN + 12) as u32);
    buf.put_u8(FrameKind::Hello as u8);
    buf.put_u8(0);
    buf.put_u16_le(0);
    buf.put_u32_le(hello.stage);
    buf.put_u32_le(hello.worker_id);
    buf.put_u32_le(hello.pid);
    writer.write_all(&buf).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one whole frame. Payloads are slices of one buffer: no copy per item.
///
/// # Errors
/// [`ProtocolError`] on a closed socket, an unknown kind or inconsistent lengths.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Frame, ProtocolError> {
    let body_len = reader.read_u32_le().await? as usize;
    if body_len < BODY_HEADER_LEN {
        return Err(ProtocolError::Malformed("body shorter than its header"));
    }
    let mut body = BytesMut::zeroed(body_len);
    reader.read_exact(&mut body).await?;
    decode_body(body.freeze())
}

/// Reads frames off a socket through one growing buffer: each read takes whatever the socket
/// has (one `read` for a whole small frame, and for several queued ones), and the frames'
/// payloads are slices of that buffer. Unlike [`read_frame`], [`FrameReader::next`] is
/// cancel-safe: a frame half-received when a `select!` drops its future stays buffered, so the
/// link can wait for frames and for other events in one task.
pub struct FrameReader<R> {
    /// The socket.
    reader: R,
    /// Received bytes not yet returned as frames.
    buffer: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Bytes asked of the socket when the buffer has no room: one small frame's worth and more.
    const READ_AHEAD: usize = 16 * 1024;

    /// Wraps a socket's read side.
    pub fn new(reader: R) -> Self {
        Self { reader, buffer: BytesMut::with_capacity(Self::READ_AHEAD) }
    }

    /// The next whole frame.
    ///
    /// # Errors
    /// [`ProtocolError::Io`] when the socket fails or closes (EOF, mid-frame or not), and
    /// [`decode_body`]'s errors.
    pub async fn next(&mut self) -> Result<Frame, ProtocolError> {
        loop {
            if self.buffer.len() >= 4 {
                let mut prefix = [0u8; 4];
                prefix.copy_from_slice(&self.buffer[..4]);
                let body_len = u32::from_le_bytes(prefix) as usize;
                if body_len < BODY_HEADER_LEN {
                    return Err(ProtocolError::Malformed("body shorter than its header"));
                }
                if self.buffer.len() >= 4 + body_len {
                    self.buffer.advance(4);
                    return decode_body(self.buffer.split_to(body_len).freeze());
                }
                // A large frame is read straight into room for all of it.
                self.buffer.reserve(4 + body_len - self.buffer.len());
            }
            if self.buffer.capacity() == self.buffer.len() {
                self.buffer.reserve(Self::READ_AHEAD);
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                let eof = std::io::ErrorKind::UnexpectedEof;
                return Err(ProtocolError::Io(std::io::Error::new(eof, "worker link closed")));
            }
        }
    }
}

/// Decodes a frame body (everything after the length prefix).
///
/// # Errors
/// [`ProtocolError`] on an unknown kind or lengths that do not add up.
pub fn decode_body(mut body: Bytes) -> Result<Frame, ProtocolError> {
    if body.len() < BODY_HEADER_LEN {
        return Err(ProtocolError::Malformed("body shorter than its header"));
    }
    let kind = FrameKind::try_from(body.get_u8())?;
    let _reserved = body.get_u8();
    let count = body.get_u16_le() as usize;
    if kind == FrameKind::Hello {
        if body.len() != 12 {
            return Err(ProtocolError::Malformed("hello must carry 12 bytes"));
        }
        return Ok(Frame::Hello(Hello {
            stage: body.get_u32_le(),
            worker_id: body.get_u32_le(),
            pid: body.get_u32_le(),
        }));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        if body.len() < ITEM_HEADER_LEN {
            return Err(ProtocolError::Malformed("item header cut short"));
        }
        let task_id = body.get_u32_le();
        let flags = body.get_u16_le();
        let status = body.get_u16_le();
        let len = body.get_u32_le() as usize;
        let mut request_id = Bytes::new();
        if flags & FLAG_REQUEST_ID != 0 {
            let rid_len =
                usize::from(*body.first().ok_or(ProtocolError::Malformed("request id cut short"))?);
            if body.len() < 1 + rid_len {
                return Err(ProtocolError::Malformed("request id cut short"));
            }
            body.advance(1);
            request_id = body.split_to(rid_len);
        }
        if body.len() < len {
            return Err(ProtocolError::Malformed("payload cut short"));
        }
        let payload = body.split_to(len);
        items.push(Item { task_id, flags, status, request_id, payload });
    }
    if !body.is_empty() {
        return Err(ProtocolError::Malformed("bytes left after the last item"));
    }
    Ok(Frame::Items(kind, items))
}

/// One member's slot in a joined container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedPart {
    /// 200, or the member's error status.
    pub status: u16,
    /// `FLAG_REFERENCE` or `FLAG_JOINED` for what `bytes` are, else 0.
    pub flags: u16,
    /// The member's output, or its error message.
    pub bytes: Bytes,
}

/// Builds a joined container from the parts, in order.
///
/// # Errors
/// [`ProtocolError::TooLarge`] for more than `u16::MAX` parts or a part over `u32::MAX`
/// bytes.
pub fn encode_joined(parts: &[JoinedPart]) -> Result<Bytes, ProtocolError> {
    let count = u16::try_from(parts.len()).map_err(|_| ProtocolError::TooLarge("joined parts"))?;
    let total: usize = parts.iter().map(|part| PART_HEADER_LEN + part.bytes.len()).sum();
    let mut joined = BytesMut::with_capacity(2 + total);
    joined.put_u16_le(count);
    for part in parts {
        let len =
            u32::try_from(part.bytes.len()).map_err(|_| ProtocolError::TooLarge("joined part"))?;
        joined.put_u16_le(part.status);
        joined.put_u16_le(part.flags);
        joined.put_u32_le(len);
        joined.put_slice(&part.bytes);
    }
    Ok(joined.freeze())
}

/// Reads a joined container; the parts' bytes are slices of `joined`, not copies.
///
/// # Errors
/// [`ProtocolError::Malformed`] when the lengths do not add up.
pub fn decode_joined(joined: &Bytes) -> Result<Vec<JoinedPart>, ProtocolError> {
    let mut body = joined.clone();
    if body.len() < 2 {
        return Err(ProtocolError::Malformed("joined container shorter than its count"));
    }
    let count = usize::from(body.get_u16_le());
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        if body.len() < PART_HEADER_LEN {
            return Err(ProtocolError::Malformed("joined part header cut short"));
        }
        let status = body.get_u16_le();
        let flags = body.get_u16_le();
        let len = body.get_u32_le() as usize;
        if body.len() < len {
            return Err(ProtocolError::Malformed("joined part cut short"));
        }
        parts.push(JoinedPart { status, flags, bytes: body.split_to(len) });
    }
    if !body.is_empty() {
        return Err(ProtocolError::Malformed("bytes left after the last joined part"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(task_id: u32, payload: Vec<u8>) -> Item {
        Item {
            task_id,
            flags: FLAG_INGRESS | FLAG_EGRESS,
            status: 0,
            request_id: Bytes::new(),
            payload: payload.into(),
        }
    }

    async fn round_trip(kind: FrameKind, items: Vec<Item>) {
        let mut wire = Vec::new();
        write_items(&mut wire, kind, &items).await.unwrap();
        let decoded = read_frame(&mut wire.as_slice()).await.unwrap();
        assert_eq!(decoded, Frame::Items(kind, items));
    }

    #[tokio::test]
    async fn round_trips_zero_one_and_many_items() {
        round_trip(FrameKind::Batch, vec![]).await;
        round_trip(FrameKind::Result, vec![item(7, b"{\"a\":1}".to_vec())]).await;
        let many = (0..500).map(|i| item(i, vec![i as u8; (i % 17) as usize])).collect();
        round_trip(FrameKind::Batch, many).await;
    }

    #[tokio::test]
    async fn round_trips_large_payloads_and_flags() {
        let big = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect::<Vec<_>>();
        let mut reference = item(1, b"ref".to_vec());
        reference.flags = FLAG_REFERENCE;
        reference.status = 422;
        round_trip(FrameKind::Result, vec![item(0, big.clone()), reference, item(2, big)]).await;
    }

    #[tokio::test]
    async fn hello_round_trips() {
        let hello = Hello { stage: 2, worker_id: 3, pid: 4242 };
        let mut wire = Vec::new();
        write_hello(&mut wire, hello).await.unwrap();
        assert_eq!(read_frame(&mut wire.as_slice()).await.unwrap(), Frame::Hello(hello));
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        assert!(matches!(
            decode_body(Bytes::from_static(&[9, 0, 0, 0])),
            Err(ProtocolError::UnknownKind(9))
        ));
        // One item announced, header cut short.
        assert!(matches!(
            decode_body(Bytes::from_static(&[3, 0, 1, 0, 1, 2])),
            Err(ProtocolError::Malformed(_))
        ));
        // Payload length beyond the body.
        let mut body = vec![3u8, 0, 1, 0];
        body.extend_from_slice(&[1, 0, 0, 0, 0, 0, 200, 0, 10, 0, 0, 0, 1, 2]);
        assert!(matches!(decode_body(body.into()), Err(ProtocolError::Malformed(_))));
    }

    #[test]
    fn joined_containers_round_trip_in_their_layout() {
        let parts = vec![
            JoinedPart { status: 200, flags: 0, bytes: Bytes::from_static(b"ab") },
            JoinedPart { status: 422, flags: 0, bytes: Bytes::from_static(b"bad") },
            JoinedPart { status: 200, flags: FLAG_REFERENCE, bytes: Bytes::new() },
        ];
        let joined = encode_joined(&parts).unwrap();
        let mut expected = vec![3, 0];
        expected.extend_from_slice(&[200, 0, 0, 0, 2, 0, 0, 0, b'a', b'b']);
        expected.extend_from_slice(&[0xa6, 1, 0, 0, 3, 0, 0, 0, b'b', b'a', b'd']);
        expected.extend_from_slice(&[200, 0, 0, 0x80, 0, 0, 0, 0]);
        assert_eq!(joined.as_ref(), expected.as_slice());
        assert_eq!(decode_joined(&joined).unwrap(), parts);
        assert_eq!(decode_joined(&encode_joined(&[]).unwrap()).unwrap(), vec![]);
        for bad in [
            &b"\x01"[..],
            b"\x01\x00\xc8\x00",
            b"\x01\x00\xc8\x00\x00\x00\x05\x00\x00\x00ab",
            b"\x00\x00x",
        ] {
            let bad = Bytes::copy_from_slice(bad);
            assert!(matches!(decode_joined(&bad), Err(ProtocolError::Malformed(_))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn frame_reader_splits_coalesced_frames_and_waits_for_cut_ones() {
        let mut wire = Vec::new();
        write_items(&mut wire, FrameKind::Result, &[item(1, b"one".to_vec())]).await.unwrap();
        write_items(&mut wire, FrameKind::Event, &[item(2, vec![7; 100_000])]).await.unwrap();
        let (mut near, far) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            // Small pieces: frames arrive cut anywhere, several per read or one over many.
            for piece in wire.chunks(13) {
                near.write_all(piece).await.unwrap();
            }
        });
        let mut frames = FrameReader::new(far);
        let first = frames.next().await.unwrap();
        assert_eq!(first, Frame::Items(FrameKind::Result, vec![item(1, b"one".to_vec())]));
        let second = frames.next().await.unwrap();
        assert_eq!(second, Frame::Items(FrameKind::Event, vec![item(2, vec![7; 100_000])]));
        writer.await.unwrap();
        assert!(matches!(frames.next().await, Err(ProtocolError::Io(_))));
    }

    #[tokio::test]
    async fn frame_reader_keeps_a_frame_whose_wait_was_cancelled() {
        let mut wire = Vec::new();
        write_items(&mut wire, FrameKind::Result, &[item(5, b"kept".to_vec())]).await.unwrap();
        let (mut near, far) = tokio::io::duplex(1024);
        let mut frames = FrameReader::new(far);
        near.write_all(&wire[..9]).await.unwrap();
        // The wait gives up after the first bytes were taken into the buffer.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), frames.next());
        assert!(waited.await.is_err());
        near.write_all(&wire[9..]).await.unwrap();
        let frame = frames.next().await.unwrap();
        assert_eq!(frame, Frame::Items(FrameKind::Result, vec![item(5, b"kept".to_vec())]));
    }

    #[tokio::test]
    async fn closed_socket_is_an_io_error() {
        let empty: &[u8] = &[];
        assert!(matches!(read_frame(&mut &*empty).await, Err(ProtocolError::Io(_))));
    }
}
