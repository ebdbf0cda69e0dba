//! The classic-BPF reuseport program steers a connection to the listener of the CPU that
//! processes it: listeners joined in CPU order, a client pinned to each CPU in turn (loopback
//! connections are processed on the connecting thread's CPU), and the connection must be
//! queued on that CPU's listener, every time.

use std::net::TcpStream;

use epollscope::addr::SockAddr;
use epollscope::sys::{self, cpu};

fn reuseport_listener(port: u16) -> i32 {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0).unwrap();
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1).unwrap();
    let addr = SockAddr::ip(format!("127.0.0.1:{port}").parse().unwrap());
    sys::bind(fd, &sys::RawAddr::from(&addr)).unwrap();
    sys::listen(fd, 16).unwrap();
    fd
}

#[test]
fn the_program_queues_each_connection_on_its_cpus_listener() {
    if std::fs::read_to_string("/sys/class/net/lo/queues/rx-0/rps_cpus")
        .is_ok_and(|m| m.trim().chars().any(|c| c != '0' && c != ','))
    {
        eprintln!("skipped: RPS is set on lo, so loopback packets may be processed elsewhere");
        return;
    }
    let cpus = cpu::allowed_cpus().unwrap();
    let first = reuseport_listener(0);
    let port = sys::getsockname(first).unwrap().port().unwrap();
    let mut listeners = vec![first];
    for _ in 1..cpus.len() {
        listeners.push(reuseport_listener(port));
    }
    let pairs: Vec<(u32, u32)> = cpus
        .iter()
        .enumerate()
        .map(|(k, &c)| (u32::try_from(c).unwrap(), u32::try_from(k).unwrap()))
        .collect();
    cpu::attach_reuseport_cbpf(first, &cpu::cpu_steering_program(&pairs)).unwrap();
    for round in 0..3 {
        for (k, &c) in cpus.iter().enumerate() {
            let _client = std::thread::spawn(move || {
                cpu::pin_to(c).unwrap();
                TcpStream::connect(("127.0.0.1", port)).unwrap()
            })
            .join()
            .unwrap();
            for (j, &l) in listeners.iter().enumerate() {
                let got = sys::accept4_raw(l, None, 0);
                if j == k {
                    let conn = got.unwrap_or_else(|e| panic!("round {round} cpu {c}: {e}"));
                    assert_eq!(cpu::incoming_cpu(conn), Some(c as i32));
                    sys::close(conn).unwrap();
                } else {
                    assert_eq!(
                        got,
                        Err(nix::errno::Errno::EAGAIN),
                        "cpu {c} on listener {j}"
                    );
                }
            }
        }
    }
    for l in listeners {
        sys::close(l).unwrap();
    }
}
