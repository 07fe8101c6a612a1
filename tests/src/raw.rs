//! Raw HTTP/1.1 requests: the request target is sent byte for byte as
//! given, so tests can try what an attacker sends (encoded and doubled
//! slashes, dot segments, backslashes) that an HTTP client would normalise.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What Caddy answered to a raw request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    /// The status code (0 when no status line came back).
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// Everything after the header block.
    pub body: String,
}

/// Sends `GET <target> HTTP/1.1` with this `Host` to 127.0.0.1:`port` and
/// reads the whole answer (the connection is closed by `Connection: close`;
/// bounded to 5 s and 1 MiB). A connection closed before any answer (Caddy
/// closes the connections it serves when it reloads its config, e.g. right
/// after tart-sync's write) is tried again, at most three times in all.
pub async fn raw_get(port: u16, host: &str, target: &str) -> RawAnswer {
    let mut answer = raw_get_once(port, host, target).await;
    for _ in 0..2 {
        if answer.status != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = raw_get_once(port, host, target).await;
    }
    answer
}

async fn raw_get_once(port: u16, host: &str, target: &str) -> RawAnswer {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.take(1 << 20).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let bytes = match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(b)) => b,
        _ => Vec::new(),
    };
    parse(&String::from_utf8_lossy(&bytes))
}

fn parse(text: &str) -> RawAnswer {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_string())
    });
    RawAnswer {
        status,
        location,
        body: body.to_string(),
    }
}
