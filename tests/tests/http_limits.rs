//! The server's connections are bounded: a client that sends its headers
//! too slowly (or nothing at all) is closed after the header timeout, while
//! other requests keep being served, and a cap on open connections holds.

use reqwest::{Method, StatusCode};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use taskhost_tests::server::Server;

fn address(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

/// Waits until the server closes `stream` (EOF or reset); how long it took.
fn closed_within(mut stream: TcpStream, limit: Duration) -> Duration {
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            // A 408 or similar before the close is fine.
            Ok(_) => {}
        }
        assert!(start.elapsed() < limit, "still open after {limit:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_others_are_served() {
    let s = Server::start_with(
        None,
        &["--header-timeout", "1s", "--max-connections", "4"],
        None,
    );
    // Half a request line and one header, then silence.
    let mut slow = TcpStream::connect(address(&s)).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let (status, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "served while a slow client waits");
    let slow = std::thread::spawn(move || closed_within(slow, Duration::from_secs(10)));

    // Connections that send nothing hold slots only until the timeout:
    // with all four taken, a fifth request is still served.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(address(&s)).expect("connect"))
        .collect();
    let (status, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for stream in idle {
        closed_within(stream, Duration::from_secs(10));
    }
    slow.join().expect("slow client thread");

    // A keep-alive connection left idle after a request is closed too.
    let mut kept = TcpStream::connect(address(&s)).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = [0u8; 512];
    let n = kept.read(&mut answer).expect("the answer");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    closed_within(kept, Duration::from_secs(10));
    assert!(s.memory_kib().0 > 0, "the server is still up");
}
