//! Tries to open a TCP connection. It imports wasi:sockets, which links, but
//! every socket operation is refused: the connect fails.
use std::io::Write;
use taskhost_sdk::{Context, Result, export_task};

fn connect(_ctx: &Context, _input: serde_json::Value) -> Result<()> {
    let mut stream = std::net::TcpStream::connect("127.0.0.1:9")?;
    stream.write_all(b"hello")?;
    Ok(())
}

export_task!(connect);
