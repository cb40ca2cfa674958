//! MQTT over WebSocket (the `ws` and `wss` listeners): the HTTP upgrade
//! (path check, subprotocol `mqtt` or `mqttv3.1`), and [`WsStream`], which
//! turns the WebSocket's binary messages back into the byte stream the
//! connection task reads, so the same protocol code serves every listener.
//!
//! As the MQTT specification asks (6.0), data travels in binary frames
//! only (a text frame closes the connection) and a frame boundary means
//! nothing: an MQTT packet may span frames, and a frame may hold several
//! packets. Each turn of the connection task is written as one binary
//! message. Pings are answered by tungstenite.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Bytes tungstenite reads from the socket at a time, and the capacity of
/// its receive buffer, which every connection keeps while idle. Its
/// default, 128 KiB, is allocated for every connection and filled with
/// zeros before the first read, so each idle WebSocket client held 136 KiB
/// (docs/performance.md, "Idle WebSocket connections"). 4 KiB is what
/// tungstenite advises for many connections, and what rustls reads at a
/// time below a secure WebSocket.
const WS_READ_BUFFER: usize = 4 * 1024;

/// The subprotocols of MQTT over WebSocket: `mqtt` (3.1.1 and 5.0) and
/// `mqttv3.1` (3.1), in order of preference.
pub(crate) const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Completes the HTTP upgrade on `stream`: the request must be for `path`
/// and, if it offers subprotocols, offer one of [`SUBPROTOCOLS`] (the
/// first offered is chosen). Messages larger than `max_message` bytes
/// close the connection.
// The error type of the upgrade callback is tungstenite's.
#[allow(clippy::result_large_err)]
pub(crate) async fn accept<S>(
    stream: S,
    path: &str,
    max_message: usize,
) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let callback = |request: &Request, response: Response| check_upgrade(request, response, path);
    let inner =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await?;
    Ok(WsStream {
        inner,
        pending: Bytes::new(),
    })
}

/// The upgrade rules, as a pure function of the request. (The error type
/// is the one tungstenite's callback must return.)
#[allow(clippy::result_large_err)]
fn check_upgrade(
    request: &Request,
    mut response: Response,
    path: &str,
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != path {
        return Err(refusal(
            StatusCode::NOT_FOUND,
            format!("MQTT over WebSocket is served on {path}\n"),
        ));
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(response);
    }
    let Some(chosen) = offered.iter().find(|name| SUBPROTOCOLS.contains(name)) else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "offer the WebSocket subprotocol mqtt (or mqttv3.1)\n".to_owned(),
        ));
    };
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(if *chosen == "mqtt" {
            "mqtt"
        } else {
            "mqttv3.1"
        }),
    );
    Ok(response)
}

fn refusal(status: StatusCode, body: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = status;
    response
}

/// A WebSocket connection as a byte stream: reads return the payloads of
/// binary messages in order; each write sends one binary message.
#[derive(Debug)]
pub(crate) struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// What is left of the last binary message received.
    pending: Bytes,
}

fn to_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::from(io::ErrorKind::BrokenPipe)
        }
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let len = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..len]);
                self.pending.advance(len);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
                // End of stream, or the client closed: end of file.
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text WebSocket frame: MQTT over WebSocket uses binary frames only",
                    )));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(WsError::ConnectionClosed)) => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(to_io(error))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.inner).poll_ready(cx)).map_err(to_io)?;
        let message = Message::Binary(Bytes::copy_from_slice(buf));
        Pin::new(&mut self.inner)
            .start_send(message)
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx).map_err(to_io)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;

    fn request(path: &str, protocols: Option<&str>) -> Request {
        let mut request = format!("ws://localhost{path}")
            .into_client_request()
            .unwrap();
        if let Some(protocols) = protocols {
            request.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(protocols).unwrap(),
            );
        }
        request
    }

    fn chosen<B>(response: &tokio_tungstenite::tungstenite::http::Response<B>) -> Option<&str> {
        response
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .map(|value| value.to_str().unwrap())
    }

    #[test]
    fn the_first_mqtt_subprotocol_offered_is_chosen() {
        let ok = check_upgrade(
            &request("/mqtt", Some("foo, mqttv3.1, mqtt")),
            Response::default(),
            "/mqtt",
        )
        .unwrap();
        assert_eq!(chosen(&ok), Some("mqttv3.1"));
        let ok = check_upgrade(
            &request("/mqtt", Some("mqtt")),
            Response::default(),
            "/mqtt",
        )
        .unwrap();
        assert_eq!(chosen(&ok), Some("mqtt"));
        let none = check_upgrade(&request("/mqtt", None), Response::default(), "/mqtt").unwrap();
        assert_eq!(chosen(&none), None);
    }

    #[test]
    fn a_wrong_path_or_foreign_subprotocols_are_refused() {
        let refused = check_upgrade(
            &request("/other", Some("mqtt")),
            Response::default(),
            "/mqtt",
        )
        .unwrap_err();
        assert_eq!(refused.status(), StatusCode::NOT_FOUND);
        let refused = check_upgrade(
            &request("/mqtt", Some("chat, soap")),
            Response::default(),
            "/mqtt",
        )
        .unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn packets_may_span_messages_and_writes_are_binary_messages() {
        use futures::{SinkExt, StreamExt};

        let (client_io, server_io) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let mut stream = accept(server_io, "/mqtt", 1024).await.unwrap();
            let mut received = [0u8; 6];
            stream.read_exact(&mut received).await.unwrap();
            stream.write_all(b"\x20\x02\x00\x00").await.unwrap();
            stream.flush().await.unwrap();
            received
        });
        let (mut client, response) =
            tokio_tungstenite::client_async(request("/mqtt", Some("mqtt")), client_io)
                .await
                .unwrap();
        assert_eq!(chosen(&response), Some("mqtt"));
        client
            .send(Message::binary(&b"\x10\x04"[..]))
            .await
            .unwrap();
        client.send(Message::Ping(Bytes::new())).await.unwrap();
        client
            .send(Message::binary(&b"\x00\x04MQ"[..]))
            .await
            .unwrap();
        let reply = loop {
            match client.next().await.unwrap().unwrap() {
                Message::Binary(data) => break data,
                Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(&reply[..], b"\x20\x02\x00\x00");
        assert_eq!(&server.await.unwrap(), b"\x10\x04\x00\x04MQ");
    }
}
