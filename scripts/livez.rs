//! `headroom-livez`: the container image's health check. `GET /livez` on the proxy this
//! container runs; exit 0 on HTTP 200, 1 otherwise (what Docker's and podman's HEALTHCHECK and an
//! exec probe expect). The image has no shell and no curl, so this is a tiny std-only program,
//! compiled by `scripts/oci-image --proxy` with plain `rustc`.
//!
//! Address: `HEADROOM_LIVEZ_ADDR` (`host:port`) if set, else `HEADROOM_HOST` (loopback when it is
//! the unspecified address `0.0.0.0` or `::`) and `HEADROOM_PORT` (default 8787), the proxy's own
//! variables.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

fn target() -> Result<SocketAddr, String> {
    if let Ok(addr) = std::env::var("HEADROOM_LIVEZ_ADDR") {
        return addr
            .to_socket_addrs()
            .map_err(|e| format!("HEADROOM_LIVEZ_ADDR={addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("HEADROOM_LIVEZ_ADDR={addr}: no address"));
    }
    let host = std::env::var("HEADROOM_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let ip: IpAddr = host
        .trim()
        .parse()
        .map_err(|e| format!("HEADROOM_HOST={host}: {e}"))?;
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    let port = std::env::var("HEADROOM_PORT").unwrap_or_else(|_| "8787".into());
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|e| format!("HEADROOM_PORT={port}: {e}"))?;
    Ok(SocketAddr::new(ip, port))
}

fn check() -> Result<(), String> {
    let addr = target()?;
    let timeout = Duration::from_secs(4);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    // The status line is all that matters.
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("http://{addr}/livez answered {status:?}"))
    }
}

fn main() -> ExitCode {
    match check() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("headroom-livez: {e}");
            ExitCode::FAILURE
        }
    }
}
