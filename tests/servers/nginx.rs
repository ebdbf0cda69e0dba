//! nginx with a master process and [`WORKERS`] workers, on a free loopback port, from a
//! configuration of our own in the server's directory (Debian: `apt-get install nginx-light`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{Failure, Server, create_dir, free_port, write};

pub const WORKERS: usize = 4;

/// Every step of a request (connect, write, read) gives up after this.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Marks a [`Server`] as nginx.
pub enum Kind {}

pub type Nginx = Server<Kind>;

/// nginx from PATH or the usual sbin directories.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"])
        .map(|d| Path::new(d).join("nginx"))
        .find(|p| p.is_file())
}

/// What nginx is configured for.
#[derive(Clone, Copy)]
pub enum Serving {
    /// Telling workers apart: each answer is the pid of the worker that served it; requests
    /// are logged, and the error log says what nginx did (level info).
    Pids,
    /// A load: a fixed answer, no access log, warnings only, and a backlog and connection
    /// limit for one client per CPU making connections as fast as it can.
    Load,
}

impl Nginx {
    /// Starts nginx serving on a free loopback port with its files in `dir` (created, with a
    /// `trace` directory for the shim); `env` sets its environment (the shim's variables).
    pub fn start(
        dir: PathBuf,
        serving: Serving,
        env: impl FnOnce(&mut Command),
    ) -> Result<Nginx, Failure> {
        let binary = binary().ok_or_else(|| {
            Failure("nginx is not installed (apt-get install nginx-light)".into())
        })?;
        let port = free_port()?;
        create_dir(&dir.join("trace"))?;
        let d = dir.display();
        let (level, connections, access_log, backlog, answer) = match serving {
            Serving::Pids => ("info", 256, format!("{d}/access.log"), "", "$pid"),
            Serving::Load => ("warn", 1024, "off".to_string(), " backlog=4096", "ok"),
        };
        let conf = format!(
            "worker_processes {WORKERS};\n\
             daemon off;\n\
             master_process on;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log {level};\n\
             events {{ worker_connections {connections}; }}\n\
             http {{\n\
               access_log {access_log};\n\
               client_body_temp_path {d}/body;\n\
               keepalive_timeout 0;\n\
               server {{ listen 127.0.0.1:{port}{backlog}; location / {{ return 200 \"{answer}\\n\"; }} }}\n\
             }}\n"
        );
        write(&dir.join("nginx.conf"), &conf)?;
        let mut cmd = Command::new(binary);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"));
        env(&mut cmd);
        Server::spawn("nginx", cmd, dir, port)
    }

    /// The workers' pids.
    pub fn workers(&self) -> Vec<i32> {
        self.children()
    }

    /// One HTTP/1.0 request on a new connection: the body of nginx's 200 answer.
    pub fn request(&self) -> Result<String, Failure> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port()));
        let io = |step: &str, e: std::io::Error| Failure(format!("{step}: {e}"));
        let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| io("connect", e))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| io("timeouts", e))?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .map_err(|e| io("write", e))?;
        let mut resp = Vec::with_capacity(256);
        s.read_to_end(&mut resp).map_err(|e| io("read", e))?;
        let text = String::from_utf8_lossy(&resp);
        match text.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
            _ => Err(Failure(format!("response {text:?}"))),
        }
    }
}
