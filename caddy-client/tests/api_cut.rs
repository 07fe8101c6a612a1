//! An answer whose body is cut short: Caddy did answer (its status is known),
//! so it is not "cannot reach Caddy"; a repeatable request is tried once more.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use caddy_client::{Client, ErrorKind};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server on loopback that answers every request with a head announcing
/// 100 bytes, sends 10 and closes; counts the connections.
async fn cutting_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"apps\":{")
                .await;
            let _ = conn.shutdown().await;
        }
    });
    (format!("http://{addr}"), served)
}

#[tokio::test]
async fn a_body_cut_short_is_truncated_not_unreachable_and_a_get_is_tried_twice() {
    let (address, served) = cutting_server().await;
    let client = Client::new(&address).unwrap();
    let err = client.config("").get::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    assert_eq!(err.status(), Some(200));
    assert!(!err.is_unreachable(), "{err}");
    assert!(err.to_string().contains("cut short"), "{err}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "a GET is repeatable: one retry"
    );
}

#[tokio::test]
async fn a_write_whose_answer_is_cut_is_not_repeated() {
    let (address, served) = cutting_server().await;
    let client = Client::new(&address).unwrap();
    let err = client
        .config("apps/http")
        .post(&serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    assert!(err.to_string().contains("may have been applied"), "{err}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "a POST is never sent twice"
    );
}
