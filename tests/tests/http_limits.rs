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

/// 2,000 connections from one address (127.0.0.2) that send nothing do not
/// keep a client at another (127.0.0.1) out: the first address holds at
/// most its per-peer share (here 64) and the rest are closed at once, so
/// the global cap (1,024) is never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peers_idle_connections_do_not_keep_another_out() {
    let s = Server::start_with(
        None,
        &[
            "--header-timeout",
            "30s",
            "--max-connections-per-peer",
            "64",
        ],
        None,
    );
    let target: std::net::SocketAddr = address(&s).parse().expect("address");
    let mut held = Vec::new();
    for _ in 0..2000 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("address"))
            .expect("bind 127.0.0.2");
        if let Ok(stream) = socket.connect(target).await {
            held.push(stream);
        }
    }
    let started = Instant::now();
    let (status, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "another address is served");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served at once, not after the header timeout: {:?}",
        started.elapsed()
    );
    // Of the 2,000, the server kept at most 64 open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut open = 0;
    for stream in &held {
        let mut buf = [0u8; 1];
        match stream.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            _ => {}
        }
    }
    assert!(open <= 64, "{open} connections of one address kept open");
    assert!(open > 0, "its first connections are kept");
}

/// A body that trickles in (a byte a second after its headers) is cut with
/// 408 `body_too_slow` once it falls below the minimum rate (after its
/// 10-second grace), long before the request timeout; a whole body sent at
/// once is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_cut_at_the_minimum_rate() {
    let s = Server::start(None);
    let token = s.admin("acme");
    let mut slow = TcpStream::connect(address(&s)).expect("connect");
    let head = format!(
        "POST /v1/executions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
    );
    slow.write_all(head.as_bytes()).expect("write");
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        let mut answer = Vec::new();
        slow.set_read_timeout(Some(Duration::from_millis(1000)))
            .expect("timeout");
        while started.elapsed() < Duration::from_secs(30) {
            let _ = slow.write_all(b" ");
            let mut buf = [0u8; 512];
            match slow.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => break,
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    });
    let (status, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "others are served meanwhile");
    let (answer, took) = trickle.join().expect("trickle");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_too_slow"), "{answer}");
    assert!(took < Duration::from_secs(20), "cut after {took:?}");
}
