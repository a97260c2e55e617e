//! ComfyUI's WebSocket (`/ws?clientId=<id>`): tungstenite over our own
//! `TcpStream`, so every read has a timeout and the job loop can watch the
//! child, the clock and the history between messages.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tungstenite::{Message, WebSocket};

use crate::error::HandlerError;

/// What one read gave.
pub(crate) enum WsRead {
    /// A JSON text message `{"type", "data"}`.
    Event(Value),
    /// Nothing arrived within the read timeout (or a binary/preview frame).
    Idle,
    /// The socket is gone.
    Closed,
}

/// A connected ComfyUI WebSocket.
pub(crate) struct ComfySocket {
    ws: WebSocket<TcpStream>,
}

impl ComfySocket {
    /// Opens `/ws?clientId=<client_id>`; reads then wait at most `tick`.
    pub(crate) fn connect(
        port: u16,
        client_id: &str,
        tick: Duration,
    ) -> Result<Self, HandlerError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let fail =
            |e: &dyn std::fmt::Display| HandlerError::WebSocket(format!("127.0.0.1:{port}: {e}"));
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| fail(&e))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| fail(&e))?;
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| fail(&e))?;
        let _ = stream.set_nodelay(true);
        let url = format!("ws://127.0.0.1:{port}/ws?clientId={client_id}");
        let (ws, _) = tungstenite::client(url.as_str(), stream).map_err(|e| fail(&e))?;
        ws.get_ref()
            .set_read_timeout(Some(tick))
            .map_err(|e| fail(&e))?;
        Ok(ComfySocket { ws })
    }

    /// The next message, or [`WsRead::Idle`] after the read timeout.
    pub(crate) fn read(&mut self) -> WsRead {
        match self.ws.read() {
            Ok(Message::Text(t)) => match serde_json::from_str::<Value>(t.as_str()) {
                Ok(v) => WsRead::Event(v),
                Err(_) => WsRead::Idle,
            },
            Ok(Message::Close(_)) => {
                let _ = self.ws.flush();
                WsRead::Closed
            }
            Ok(_) => WsRead::Idle,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                WsRead::Idle
            }
            Err(_) => WsRead::Closed,
        }
    }

    /// Closes the socket politely (best effort).
    pub(crate) fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
