//! TLS routes: the ClientHello is read (bounded, within the header
//! timeout) and parsed by rustls for its server name only; the function
//! gets every byte untouched, the handshake included. Nothing is decrypted.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::Shared;
use crate::splice::forward;

/// The most ClientHello bytes read before giving up (a ClientHello fits in
/// one 16 KiB record; a few records are allowed for large extensions).
pub const MAX_HELLO: usize = 64 * 1024;

/// Why a ClientHello did not give a server name.
#[derive(Debug, PartialEq, Eq)]
pub enum HelloError {
    /// Not a TLS handshake, or a malformed one.
    NotTls(String),
    /// A ClientHello without the server_name extension.
    NoServerName,
    /// More than [`MAX_HELLO`] bytes without a whole ClientHello.
    TooLarge,
    /// The client closed before a whole ClientHello.
    Closed,
}

/// Reads the ClientHello from `client` into `buf`; returns its server name.
pub async fn server_name(client: &mut TcpStream, buf: &mut Vec<u8>) -> Result<String, HelloError> {
    let mut acceptor = Acceptor::default();
    let mut fed = 0;
    loop {
        let mut chunk = [0u8; 4096];
        let n = client
            .read(&mut chunk)
            .await
            .map_err(|e| HelloError::NotTls(e.to_string()))?;
        if n == 0 {
            return Err(HelloError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_HELLO {
            return Err(HelloError::TooLarge);
        }
        let mut cursor = Cursor::new(&buf[fed..]);
        acceptor
            .read_tls(&mut cursor)
            .map_err(|e| HelloError::NotTls(e.to_string()))?;
        fed += cursor.position() as usize;
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                return accepted
                    .client_hello()
                    .server_name()
                    .map(|s| s.to_ascii_lowercase())
                    .ok_or(HelloError::NoServerName);
            }
            Err((e, _)) => return Err(HelloError::NotTls(e.to_string())),
        }
    }
}

/// Serves one TLS connection.
pub async fn handle(mut client: TcpStream, shared: Arc<Shared>, header_timeout: Duration) {
    let mut hello = Vec::new();
    let name =
        match tokio::time::timeout(header_timeout, server_name(&mut client, &mut hello)).await {
            Ok(Ok(name)) => name,
            Ok(Err(e)) => {
                let reason = match e {
                    HelloError::NoServerName => "no_server_name",
                    HelloError::TooLarge => "hello_too_large",
                    HelloError::Closed => "closed",
                    HelloError::NotTls(_) => "not_tls",
                };
                tracing::debug!(?e, "TLS client refused");
                shared.metrics.rejected("tls", reason);
                return;
            }
            Err(_) => {
                shared.metrics.rejected("tls", "header_timeout");
                return;
            }
        };
    let table = shared.state.table();
    let Some(target) = table.tls.get(&name).cloned() else {
        tracing::debug!(server_name = %name, "no TLS route");
        shared.metrics.route_miss("tls");
        return;
    };
    forward(client, &hello, &target, &shared).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn plain_text_is_not_a_client_hello() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let got = server_name(&mut s, &mut buf).await;
        assert!(matches!(got, Err(HelloError::NotTls(_))), "{got:?}");
    }
}
