//! The PROXY protocol (HAProxy's, versions 1 and 2): a header a load
//! balancer sends before the client's bytes, carrying the client's
//! address. [`parse`] is a pure parser (bytes in, header or "need more"
//! out); [`read_header`] reads one from a socket without consuming a byte
//! past it, so the TLS or MQTT bytes that follow stay in the stream.
//!
//! Only what Tern needs is kept: the source address. `UNKNOWN` (v1),
//! `LOCAL` (v2, the balancer's own health checks) and non-IP families
//! (v2 `UNSPEC`, `UNIX`) carry no client address: the socket's peer is
//! used, as the specification says. Type-length-value extensions (v2) are
//! skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The longest v1 header, CRLF included (the specification's bound).
pub(crate) const V1_MAX_LEN: usize = 107;
/// The v2 signature, the first 12 bytes of every v2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version and command, family
/// and protocol, and the length of what follows.
const V2_FIXED_LEN: usize = 16;
/// The longest v2 address block accepted (addresses and TLVs). Balancers
/// send at most a few hundred bytes; a longer one is refused rather than
/// buffered.
pub(crate) const V2_MAX_BLOCK_LEN: usize = 1024;
const V1_PREFIX: &[u8] = b"PROXY ";

/// A complete header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxyHeader {
    /// The client's address, or `None` when the header carries none
    /// (`UNKNOWN`, `LOCAL`, a non-IP family): use the socket's peer.
    pub source: Option<SocketAddr>,
    /// The header's length in bytes; the client's own bytes follow.
    pub len: usize,
}

/// Why a header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum ProxyError {
    /// The first bytes are neither `PROXY ` nor the v2 signature.
    #[error(
        "no PROXY protocol header: the first bytes are neither \"PROXY \" (v1) nor the v2 signature"
    )]
    Missing,
    /// No CRLF within the v1 bound.
    #[error("PROXY v1 header without CRLF in its first {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    /// A v2 version other than 2.
    #[error("PROXY v2 header with version {0}, not 2")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) and PROXY (1).
    #[error("PROXY v2 header with command {0}, neither LOCAL (0) nor PROXY (1)")]
    V2Command(u8),
    /// A v2 address block over [`V2_MAX_BLOCK_LEN`].
    #[error("PROXY v2 address block of {0} bytes, over the {V2_MAX_BLOCK_LEN} accepted")]
    V2TooLong(usize),
    /// A v2 address block too short for its address family.
    #[error("PROXY v2 address block of {len} bytes, too short for its family (needs {needed})")]
    V2Truncated {
        /// The announced length.
        len: usize,
        /// What the family needs.
        needed: usize,
    },
}

/// Parses the header at the start of `buf`: `Ok(None)` while more bytes
/// are needed, an error as soon as the bytes cannot start a valid one.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if could_start(buf, V1_PREFIX) {
        if buf.len() < V1_PREFIX.len() {
            return Ok(None);
        }
        return parse_v1(buf);
    }
    if could_start(buf, &V2_SIGNATURE) {
        if buf.len() < V2_FIXED_LEN {
            return Ok(None);
        }
        return parse_v2(buf);
    }
    Err(ProxyError::Missing)
}

/// Whether `buf` and `prefix` agree on their common length.
fn could_start(buf: &[u8], prefix: &[u8]) -> bool {
    let common = buf.len().min(prefix.len());
    buf[..common] == prefix[..common]
}

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end])
        .map_err(|_| ProxyError::V1Malformed("not ASCII"))?;
    let len = end + 2;
    let mut fields = line.split(' ');
    let source = match fields.next() {
        // The rest of an UNKNOWN line is to be ignored.
        Some("UNKNOWN") => None,
        Some(family @ ("TCP4" | "TCP6")) => {
            let parts: Vec<&str> = fields.collect();
            let [source, _destination, source_port, destination_port] = parts[..] else {
                return Err(ProxyError::V1Malformed(
                    "expected source and destination addresses and ports",
                ));
            };
            let ip = parse_v1_address(family, source)?;
            let port = parse_v1_port(source_port)?;
            parse_v1_port(destination_port)?;
            Some(SocketAddr::new(ip, port))
        }
        _ => {
            return Err(ProxyError::V1Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Some(ProxyHeader { source, len }))
}

fn parse_v1_address(family: &str, text: &str) -> Result<IpAddr, ProxyError> {
    let parsed = if family == "TCP4" {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    parsed.map_err(|_| ProxyError::V1Malformed("source address does not match the protocol"))
}

fn parse_v1_port(text: &str) -> Result<u16, ProxyError> {
    let digits_only = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    match text.parse() {
        Ok(port) if digits_only => Ok(port),
        _ => Err(ProxyError::V1Malformed(
            "port is not a number between 0 and 65535",
        )),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0F;
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    if command > 1 {
        return Err(ProxyError::V2Command(command));
    }
    let block_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if block_len > V2_MAX_BLOCK_LEN {
        return Err(ProxyError::V2TooLong(block_len));
    }
    let len = V2_FIXED_LEN + block_len;
    if buf.len() < len {
        return Ok(None);
    }
    let block = &buf[V2_FIXED_LEN..len];
    let family = buf[13] >> 4;
    let is_stream = buf[13] & 0x0F == 1;
    let is_local = command == 0;
    let needed = match family {
        1 => 12, // two IPv4 addresses, two ports
        2 => 36, // two IPv6 addresses, two ports
        _ => 0,
    };
    if block_len < needed {
        return Err(ProxyError::V2Truncated {
            len: block_len,
            needed,
        });
    }
    let source = match family {
        _ if is_local || !is_stream => None,
        1 => {
            let ip = Ipv4Addr::from(<[u8; 4]>::try_from(&block[..4]).expect("length checked"));
            let port = u16::from_be_bytes([block[8], block[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        2 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&block[..16]).expect("length checked"));
            let port = u16::from_be_bytes([block[32], block[33]]);
            Some(SocketAddr::new(IpAddr::V6(ip), port))
        }
        _ => None,
    };
    Ok(Some(ProxyHeader { source, len }))
}

/// Why reading a header from a socket failed.
#[derive(Debug, Error)]
pub(crate) enum ProxyReadError {
    /// The bytes are not a valid header.
    #[error(transparent)]
    Invalid(#[from] ProxyError),
    /// The peer closed without sending a byte (a TCP health check does).
    #[error("the connection closed before sending anything")]
    Empty,
    /// The peer closed before a whole header arrived.
    #[error("the connection closed before a whole PROXY protocol header arrived")]
    Closed,
    /// The socket failed.
    #[error("reading the PROXY protocol header failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one header from `stream`. Returns the client's address (if the
/// header has one) and the stream with the bytes read past the header put
/// back in front of it. The caller bounds the time it may take.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    mut stream: S,
) -> Result<(Option<SocketAddr>, Prefixed<S>), ProxyReadError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some(header) = parse(&buf)? {
            buf.advance(header.len);
            return Ok((header.source, Prefixed::new(buf, stream)));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(if buf.is_empty() {
                ProxyReadError::Empty
            } else {
                ProxyReadError::Closed
            });
        }
    }
}

/// A stream with some bytes already read from it put back in front: reads
/// return them first. Writes go straight to the stream.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, to be read after `prefix`.
    pub(crate) fn new(prefix: BytesMut, inner: S) -> Self {
        Self { prefix, inner }
    }

    /// Whether every byte put back was read: reads go to `inner` now.
    pub(crate) fn is_drained(&self) -> bool {
        self.prefix.is_empty()
    }

    /// The stream under it.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The stream under it; bytes put back and not read are lost.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl Prefixed<TcpStream> {
    /// Ready when a read would not wait: bytes are put back, or the
    /// socket has some (or an error, or end of stream).
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.prefix.is_empty() {
            self.inner.poll_read_ready(cx)
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let len = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..len]);
        self.prefix.advance(len);
        if self.prefix.is_empty() {
            // Not kept for the connection's life once read.
            self.prefix = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family_protocol: u8, block: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family_protocol);
        header.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        header.extend_from_slice(block);
        header
    }

    fn ipv4_block() -> Vec<u8> {
        let mut block = vec![203, 0, 113, 7, 10, 0, 0, 1];
        block.extend_from_slice(&51234u16.to_be_bytes());
        block.extend_from_slice(&1883u16.to_be_bytes());
        block
    }

    #[test]
    fn v1_tcp4_and_tcp6_give_the_source_address() {
        let text = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n\x10rest";
        let header = parse(text).unwrap().unwrap();
        assert_eq!(header.source, Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(&text[header.len..], b"\x10rest");
        let text = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 8883\r\n";
        let header = parse(text).unwrap().unwrap();
        assert_eq!(header.source, Some("[2001:db8::7]:4000".parse().unwrap()));
        assert_eq!(header.len, text.len());
    }

    #[test]
    fn v1_unknown_carries_no_address() {
        let header = parse(b"PROXY UNKNOWN ignored things\r\n").unwrap().unwrap();
        assert_eq!(header.source, None);
        assert_eq!(header.len, 30);
    }

    #[test]
    fn v1_malformed_lines_are_refused() {
        for line in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n"[..],
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 203.0.113.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 1883\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 +1 1883\r\n",
            b"PROXY UDP4 203.0.113.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4  203.0.113.7 10.0.0.1 1 2\r\n",
        ] {
            assert!(
                matches!(parse(line), Err(ProxyError::V1Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn v1_without_crlf_within_the_bound_is_oversized() {
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(V1_MAX_LEN - 1, b'1');
        assert_eq!(parse(&long), Ok(None), "one byte short: still waiting");
        long.push(b'1');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn truncated_headers_ask_for_more() {
        let full = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n";
        for end in 0..full.len() {
            assert_eq!(parse(&full[..end]), Ok(None), "v1 cut at {end}");
        }
        let full = v2(1, 0x11, &ipv4_block());
        for end in 0..full.len() {
            assert_eq!(parse(&full[..end]), Ok(None), "v2 cut at {end}");
        }
    }

    #[test]
    fn mqtt_or_tls_bytes_are_not_a_header() {
        // CONNECT, a TLS ClientHello, an HTTP request.
        for start in [&[0x10, 0x0c, 0x00, 0x04][..], &[0x16, 0x03, 0x01], b"GET /"] {
            assert_eq!(parse(start), Err(ProxyError::Missing));
        }
        assert_eq!(parse(b"PROXX"), Err(ProxyError::Missing));
    }

    #[test]
    fn v2_ipv4_and_ipv6_give_the_source_address_and_skip_tlvs() {
        let mut block = ipv4_block();
        block.extend_from_slice(&[0x04, 0x00, 0x02, 0xAB, 0xCD]); // a TLV
        let mut bytes = v2(1, 0x11, &block);
        let header_len = bytes.len();
        bytes.extend_from_slice(b"\x10after");
        let header = parse(&bytes).unwrap().unwrap();
        assert_eq!(header.source, Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(header.len, header_len);

        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&4000u16.to_be_bytes());
        block.extend_from_slice(&8883u16.to_be_bytes());
        let header = parse(&v2(1, 0x21, &block)).unwrap().unwrap();
        assert_eq!(header.source, Some("[2001:db8::7]:4000".parse().unwrap()));
    }

    #[test]
    fn v2_local_and_unspec_use_the_socket_address() {
        let local = parse(&v2(0, 0x11, &ipv4_block())).unwrap().unwrap();
        assert_eq!(local.source, None);
        let unspec = parse(&v2(1, 0x00, &[])).unwrap().unwrap();
        assert_eq!(
            unspec,
            ProxyHeader {
                source: None,
                len: 16
            }
        );
    }

    #[test]
    fn v2_malformed_headers_are_refused() {
        let mut wrong_version = v2(1, 0x11, &ipv4_block());
        wrong_version[12] = 0x11;
        assert_eq!(parse(&wrong_version), Err(ProxyError::V2Version(1)));
        assert_eq!(
            parse(&v2(2, 0x11, &ipv4_block())),
            Err(ProxyError::V2Command(2))
        );
        assert_eq!(
            parse(&v2(1, 0x11, &ipv4_block()[..8])),
            Err(ProxyError::V2Truncated { len: 8, needed: 12 })
        );
        assert_eq!(
            parse(&v2(1, 0x21, &ipv4_block())),
            Err(ProxyError::V2Truncated {
                len: 12,
                needed: 36
            })
        );
    }

    #[test]
    fn v2_oversized_address_block_is_refused_from_the_fixed_part() {
        let mut fixed = v2(1, 0x11, &[]);
        fixed[14..16].copy_from_slice(&u16::try_from(V2_MAX_BLOCK_LEN + 1).unwrap().to_be_bytes());
        assert_eq!(
            parse(&fixed),
            Err(ProxyError::V2TooLong(V2_MAX_BLOCK_LEN + 1))
        );
    }

    #[tokio::test]
    async fn read_header_leaves_the_following_bytes_in_the_stream() {
        let mut sent = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n".to_vec();
        sent.extend_from_slice(b"\x10\x02MQTT");
        let (source, mut rest) = read_header(&sent[..]).await.unwrap();
        assert_eq!(source, Some("203.0.113.7:51234".parse().unwrap()));
        let mut after = Vec::new();
        rest.read_to_end(&mut after).await.unwrap();
        assert_eq!(after, b"\x10\x02MQTT");
    }

    #[tokio::test]
    async fn read_header_reports_an_early_close_and_garbage() {
        let cut = read_header(&b"PROXY TCP4 203.0"[..]).await;
        assert!(matches!(cut, Err(ProxyReadError::Closed)), "{cut:?}");
        let silent = read_header(&b""[..]).await;
        assert!(matches!(silent, Err(ProxyReadError::Empty)), "{silent:?}");
        let garbage = read_header(&b"\x10\x0c\x00\x04MQTT"[..]).await;
        assert!(
            matches!(garbage, Err(ProxyReadError::Invalid(ProxyError::Missing))),
            "{garbage:?}"
        );
    }
}
