//! PHP-FPM (a master and its pool of children) on a free loopback port, from a configuration
//! of our own in the server's directory, asked with `cgi-fcgi` (Debian: `apt-get install
//! php-fpm libfcgi-bin`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{Failure, Server, create_dir, free_port, write};

/// Marks a [`Server`] as php-fpm.
pub enum Kind {}

pub type Fpm = Server<Kind>;

/// php-fpm is installed versioned (`php-fpm8.2`) on Debian, plain elsewhere.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(PathBuf::from)
        .collect();
    dirs.iter().find_map(|d| {
        let mut found: Vec<PathBuf> = std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("php-fpm"))
                    && p.is_file()
            })
            .collect();
        found.sort();
        found.pop()
    })
}

pub fn cgi_fcgi() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/bin"])
        .map(|d| Path::new(d).join("cgi-fcgi"))
        .find(|p| p.is_file())
}

/// Why php-fpm cannot run here, if it cannot.
pub fn missing() -> Option<&'static str> {
    if binary().is_none() {
        Some("php-fpm is not installed (apt-get install php-fpm)")
    } else if cgi_fcgi().is_none() {
        Some("cgi-fcgi is not installed (apt-get install libfcgi-bin)")
    } else {
        None
    }
}

/// The pool's process manager.
#[derive(Clone, Copy, PartialEq)]
pub enum Pm {
    /// 4 children from the start.
    Static,
    /// 2 children at the start, 1 to 3 spare, 4 at most.
    Dynamic,
}

impl Fpm {
    /// Starts php-fpm serving on a free loopback port, with a script that answers with the
    /// pid of the child that runs it, its files in `dir` (created, with a `trace` directory
    /// for the shim); `env` sets its environment (the shim's variables).
    pub fn start(dir: PathBuf, pm: Pm, env: impl FnOnce(&mut Command)) -> Result<Fpm, Failure> {
        let binary = binary()
            .ok_or_else(|| Failure("php-fpm is not installed (apt-get install php-fpm)".into()))?;
        let port = free_port()?;
        create_dir(&dir.join("trace"))?;
        let pool = match pm {
            Pm::Static => "pm = static\npm.max_children = 4\n",
            Pm::Dynamic => {
                "pm = dynamic\npm.max_children = 4\npm.start_servers = 2\n\
                 pm.min_spare_servers = 1\npm.max_spare_servers = 3\n"
            }
        };
        let conf = format!(
            "[global]\npid = {d}/fpm.pid\nerror_log = {d}/error.log\ndaemonize = no\n\
             [www]\nlisten = 127.0.0.1:{port}\n{pool}",
            d = dir.display()
        );
        write(&dir.join("pool.conf"), &conf)?;
        write(&dir.join("pid.php"), "<?php echo getmypid();\n")?;
        let mut cmd = Command::new(binary);
        // -R: the tests may run as root; the pool then runs as root too, instead of refusing.
        cmd.args(["-F", "-R", "-y"]).arg(dir.join("pool.conf"));
        env(&mut cmd);
        Server::spawn("php-fpm", cmd, dir, port)
    }

    /// One FastCGI request (by `cgi-fcgi`, never under the shim): the pid of the child that
    /// answered it.
    pub fn request(&self) -> Result<i32, Failure> {
        let cgi_fcgi = cgi_fcgi().ok_or_else(|| {
            Failure("cgi-fcgi is not installed (apt-get install libfcgi-bin)".into())
        })?;
        let out = Command::new(cgi_fcgi)
            .args(["-bind", "-connect", &format!("127.0.0.1:{}", self.port())])
            .env("SCRIPT_FILENAME", self.dir().join("pid.php"))
            .env("REQUEST_METHOD", "GET")
            .env_remove("LD_PRELOAD")
            .output()
            .map_err(|e| Failure(format!("cgi-fcgi: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let body = text.rsplit("\r\n\r\n").next().unwrap_or("");
        body.trim()
            .parse()
            .map_err(|_| Failure(format!("unexpected answer {text:?}\n{}", self.log())))
    }
}
