//! Benchmark baseline for `socket-connect`: the tightest loop that opens N loopback TCP
//! connections (blocking `TcpStream::connect`, one after another, all kept open), and the
//! accept sink both are measured against.
//!
//! ```text
//! connect_loop sink          listen on 127.0.0.1:0, print the port, accept and close forever
//! connect_loop PORT COUNT    connect COUNT times to 127.0.0.1:PORT, print the elapsed time
//! ```
//!
//! The sink closes each accepted socket at once, so the server side closes first and the
//! TIME_WAIT state lands on the sink's port, never on the client's ephemeral ports.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Instant;

use epollscope::net::{ListenOptions, listen_on, raise_nofile_limit};
use epollscope::{SockAddr, Tracer, sys};

fn sink() -> anyhow::Result<()> {
    let mut tracer = Tracer::new("sink");
    let any = SockAddr::ip(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0));
    // somaxconn (4096 here) caps it anyway; a short backlog would drop SYNs and time runs out.
    let options = ListenOptions {
        backlog: 65535,
        ..ListenOptions::default()
    };
    let listener = listen_on(&mut tracer, "L", &any, options)?;
    let port = listener.addr.port().unwrap_or(0);
    let mut out = std::io::stdout();
    writeln!(out, "{port}")?;
    out.flush()?;
    loop {
        match sys::accept4(listener.fd, libc::SOCK_CLOEXEC) {
            Ok((fd, _peer)) => {
                let _ = sys::close(fd);
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::ECONNABORTED) => {}
            Err(e) => anyhow::bail!("accept: {e}"),
        }
    }
}

fn connect_loop(port: u16, count: u64) -> anyhow::Result<()> {
    // stdio and nothing else: if the limit still falls short, connect says EMFILE.
    raise_nofile_limit(count + 3);
    let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let mut held = Vec::with_capacity(count as usize);
    let began = Instant::now();
    for i in 0..count {
        let stream =
            TcpStream::connect(addr).map_err(|e| anyhow::anyhow!("connect #{i} to {addr}: {e}"))?;
        held.push(stream);
    }
    let elapsed = began.elapsed().as_secs_f64();
    println!(
        "connect_loop: {count} connected to {addr} in {elapsed:.6} s ({:.0} connects/s)",
        count as f64 / elapsed
    );
    drop(held);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [mode] if mode == "sink" => sink(),
        [port, count] => match (port.parse(), count.parse()) {
            (Ok(port), Ok(count)) => connect_loop(port, count),
            _ => Err(anyhow::anyhow!("PORT and COUNT must be numbers")),
        },
        _ => Err(anyhow::anyhow!(
            "usage: connect_loop sink | connect_loop PORT COUNT"
        )),
    };
    epollscope::cli::finish("connect_loop", result.map(|()| ExitCode::SUCCESS))
}
