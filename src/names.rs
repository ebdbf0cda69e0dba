//! The symbolic names of system-call constants, both ways: the trace formatter turns values into
//! names (`EPOLLIN|EPOLLET`, `SHUT_RD`) and the scenario parser turns names into values, from
//! the same tables, so what a trace prints a script can say.

/// A table of names and values, in the order strace prints them.
pub type Table = &'static [(&'static str, i32)];

pub const SOCK_TYPES: Table = &[
    ("SOCK_STREAM", libc::SOCK_STREAM),
    ("SOCK_DGRAM", libc::SOCK_DGRAM),
    ("SOCK_SEQPACKET", libc::SOCK_SEQPACKET),
];
/// The address families: the `AF_*` names scripts and traces use. The first name of a value
/// is the one printed (`AF_LOCAL` is another name for `AF_UNIX`).
pub const FAMILIES: Table = &[
    ("AF_UNIX", libc::AF_UNIX),
    ("AF_LOCAL", libc::AF_LOCAL),
    ("AF_INET", libc::AF_INET),
    ("AF_INET6", libc::AF_INET6),
];
/// The flag bits of socket()'s type and of accept4().
pub const SOCK_FLAGS: Table = &[
    ("SOCK_NONBLOCK", libc::SOCK_NONBLOCK),
    ("SOCK_CLOEXEC", libc::SOCK_CLOEXEC),
];
pub const SHUT_HOW: Table = &[
    ("SHUT_RD", libc::SHUT_RD),
    ("SHUT_WR", libc::SHUT_WR),
    ("SHUT_RDWR", libc::SHUT_RDWR),
];
pub const EPOLL_OPS: Table = &[
    ("EPOLL_CTL_ADD", libc::EPOLL_CTL_ADD),
    ("EPOLL_CTL_DEL", libc::EPOLL_CTL_DEL),
    ("EPOLL_CTL_MOD", libc::EPOLL_CTL_MOD),
];
pub const EPOLL_CREATE_FLAGS: Table = &[("EPOLL_CLOEXEC", libc::EPOLL_CLOEXEC)];
/// The flags of pipe2().
pub const PIPE_FLAGS: Table = &[
    ("O_NONBLOCK", libc::O_NONBLOCK),
    ("O_CLOEXEC", libc::O_CLOEXEC),
    ("O_DIRECT", libc::O_DIRECT),
];
/// The directory fds of openat().
pub const AT_DIRS: Table = &[("AT_FDCWD", libc::AT_FDCWD)];
/// The flags a scenario may open a file with: read-only ones.
pub const OPEN_FLAGS: Table = &[
    ("O_RDONLY", libc::O_RDONLY),
    ("O_NONBLOCK", libc::O_NONBLOCK),
    ("O_CLOEXEC", libc::O_CLOEXEC),
];
/// The flags of eventfd2().
pub const EFD_FLAGS: Table = &[
    ("EFD_SEMAPHORE", libc::EFD_SEMAPHORE),
    ("EFD_NONBLOCK", libc::EFD_NONBLOCK),
    ("EFD_CLOEXEC", libc::EFD_CLOEXEC),
];
/// The clocks a timerfd can count on.
pub const CLOCKS: Table = &[
    ("CLOCK_REALTIME", libc::CLOCK_REALTIME),
    ("CLOCK_MONOTONIC", libc::CLOCK_MONOTONIC),
    ("CLOCK_BOOTTIME", libc::CLOCK_BOOTTIME),
    ("CLOCK_REALTIME_ALARM", libc::CLOCK_REALTIME_ALARM),
    ("CLOCK_BOOTTIME_ALARM", libc::CLOCK_BOOTTIME_ALARM),
];
/// The flags of timerfd_create().
pub const TFD_FLAGS: Table = &[
    ("TFD_NONBLOCK", libc::TFD_NONBLOCK),
    ("TFD_CLOEXEC", libc::TFD_CLOEXEC),
];
/// The flags of timerfd_settime().
pub const TFD_SETTIME_FLAGS: Table = &[
    ("TFD_TIMER_ABSTIME", libc::TFD_TIMER_ABSTIME),
    ("TFD_TIMER_CANCEL_ON_SET", 2),
];
/// The flags of sendto() and recvfrom().
pub const MSG_FLAGS: Table = &[
    ("MSG_OOB", libc::MSG_OOB),
    ("MSG_PEEK", libc::MSG_PEEK),
    ("MSG_DONTROUTE", libc::MSG_DONTROUTE),
    ("MSG_TRUNC", libc::MSG_TRUNC),
    ("MSG_DONTWAIT", libc::MSG_DONTWAIT),
    ("MSG_WAITALL", libc::MSG_WAITALL),
    ("MSG_NOSIGNAL", libc::MSG_NOSIGNAL),
];
/// The event bits of poll(), in the order strace prints them.
pub const POLL_BITS: Table = &[
    ("POLLIN", libc::POLLIN as i32),
    ("POLLPRI", libc::POLLPRI as i32),
    ("POLLOUT", libc::POLLOUT as i32),
    ("POLLERR", libc::POLLERR as i32),
    ("POLLHUP", libc::POLLHUP as i32),
    ("POLLNVAL", libc::POLLNVAL as i32),
    ("POLLRDNORM", libc::POLLRDNORM as i32),
    ("POLLRDBAND", libc::POLLRDBAND as i32),
    ("POLLWRNORM", libc::POLLWRNORM as i32),
    ("POLLWRBAND", libc::POLLWRBAND as i32),
    // libc has no POLLMSG for Linux; the kernel's value.
    ("POLLMSG", 0x400),
    ("POLLRDHUP", libc::POLLRDHUP as i32),
];
/// The signals a scenario may send.
pub const SIGNALS: Table = &[("SIGUSR1", libc::SIGUSR1), ("SIGUSR2", libc::SIGUSR2)];
/// Socket option levels; the first name of a value is the one printed.
pub const SOCKOPT_LEVELS: Table = &[
    ("SOL_SOCKET", libc::SOL_SOCKET),
    ("SOL_TCP", libc::IPPROTO_TCP),
    ("IPPROTO_TCP", libc::IPPROTO_TCP),
    ("SOL_IPV6", libc::IPPROTO_IPV6),
    ("IPPROTO_IPV6", libc::IPPROTO_IPV6),
];
/// Socket options with their level (option numbers repeat across levels).
pub const SOCKOPTS: &[(&str, i32, i32)] = &[
    ("SO_REUSEADDR", libc::SOL_SOCKET, libc::SO_REUSEADDR),
    ("SO_REUSEPORT", libc::SOL_SOCKET, libc::SO_REUSEPORT),
    ("SO_RCVBUF", libc::SOL_SOCKET, libc::SO_RCVBUF),
    ("SO_SNDBUF", libc::SOL_SOCKET, libc::SO_SNDBUF),
    ("SO_LINGER", libc::SOL_SOCKET, libc::SO_LINGER),
    ("SO_INCOMING_CPU", libc::SOL_SOCKET, libc::SO_INCOMING_CPU),
    ("TCP_NODELAY", libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (
        "TCP_DEFER_ACCEPT",
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
    ),
    ("IPV6_V6ONLY", libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
];

/// The epoll event bits, in the order strace prints them.
const EPOLL_BITS: Table = &[
    ("EPOLLIN", libc::EPOLLIN),
    ("EPOLLPRI", libc::EPOLLPRI),
    ("EPOLLOUT", libc::EPOLLOUT),
    ("EPOLLERR", libc::EPOLLERR),
    ("EPOLLHUP", libc::EPOLLHUP),
    ("EPOLLRDNORM", libc::EPOLLRDNORM),
    ("EPOLLRDBAND", libc::EPOLLRDBAND),
    ("EPOLLWRNORM", libc::EPOLLWRNORM),
    ("EPOLLWRBAND", libc::EPOLLWRBAND),
    ("EPOLLMSG", libc::EPOLLMSG),
    ("EPOLLRDHUP", libc::EPOLLRDHUP),
    ("EPOLLEXCLUSIVE", libc::EPOLLEXCLUSIVE),
    ("EPOLLWAKEUP", libc::EPOLLWAKEUP),
    ("EPOLLONESHOT", libc::EPOLLONESHOT),
    ("EPOLLET", libc::EPOLLET),
];

/// The (first) name of a value, if it has one.
pub fn name(table: Table, value: i32) -> Option<&'static str> {
    table.iter().find(|(_, v)| *v == value).map(|(n, _)| *n)
}

/// The name of a value, or the number when it has none.
pub fn name_of(table: Table, value: i32) -> String {
    name(table, value).map_or_else(|| value.to_string(), str::to_string)
}

/// The value of a name.
pub fn value_of(table: Table, name: &str) -> Option<i32> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Flag bits as `A|B`, `0` for none, with the hex of bits that have no name.
pub fn flags_name(value: i32, table: Table) -> String {
    let value = value as u32;
    if value == 0 {
        return "0".into();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut rest = value;
    for &(name, bit) in table {
        let bit = bit as u32;
        if bit != 0 && value & bit == bit {
            parts.push(name.into());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// `EPOLLIN|EPOLLET`, `0`, or the hex of bits with no name.
pub fn epoll_events_name(events: u32) -> String {
    flags_name(events as i32, EPOLL_BITS)
}

/// Parses `EPOLLIN|EPOLLET` (the `EPOLL` prefix is optional, case-insensitive; `0` is none).
pub fn parse_epoll_events(text: &str) -> Result<u32, String> {
    let mut value = 0;
    for part in text.split('|').map(str::trim) {
        if part == "0" {
            continue;
        }
        let upper = part.to_ascii_uppercase();
        let full = if upper.starts_with("EPOLL") {
            upper
        } else {
            format!("EPOLL{upper}")
        };
        match value_of(EPOLL_BITS, &full) {
            Some(bit) => value |= bit as u32,
            None => return Err(format!("unknown epoll flag '{part}'")),
        }
    }
    Ok(value)
}

pub fn domain_name(domain: i32) -> String {
    name_of(FAMILIES, domain)
}

/// `SOCK_STREAM|SOCK_NONBLOCK`: the type in the low bits, flags above.
pub fn socket_type_name(ty: i32) -> String {
    let base = name_of(SOCK_TYPES, ty & 0xf);
    match flags_name(ty & !0xf, SOCK_FLAGS) {
        flags if flags == "0" => base,
        flags => format!("{base}|{flags}"),
    }
}

pub fn sockopt_level_name(level: i32) -> String {
    name_of(SOCKOPT_LEVELS, level)
}

pub fn sockopt_name(level: i32, option: i32) -> String {
    SOCKOPTS
        .iter()
        .find(|(_, l, o)| *l == level && *o == option)
        .map_or_else(|| option.to_string(), |(n, _, _)| (*n).to_string())
}

/// The errno called `name` (`"EAGAIN"`), if there is one.
pub fn errno_from_name(name: &str) -> Option<nix::errno::Errno> {
    // Aliases that name the same number print under the first name.
    match name {
        "EWOULDBLOCK" => return Some(nix::errno::Errno::EAGAIN),
        "EDEADLOCK" => return Some(nix::errno::Errno::EDEADLK),
        "ENOTSUP" => return Some(nix::errno::Errno::EOPNOTSUPP),
        _ if !name.starts_with('E') => return None,
        _ => {}
    }
    (1..4096)
        .map(nix::errno::Errno::from_raw)
        .find(|e| *e != nix::errno::Errno::UnknownErrno && format!("{e:?}") == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_its_value() {
        for table in [
            SOCK_TYPES,
            SOCK_FLAGS,
            SHUT_HOW,
            EPOLL_OPS,
            EPOLL_CREATE_FLAGS,
            EPOLL_BITS,
            PIPE_FLAGS,
            EFD_FLAGS,
            CLOCKS,
            TFD_FLAGS,
            TFD_SETTIME_FLAGS,
            MSG_FLAGS,
            POLL_BITS,
            SIGNALS,
        ] {
            for &(name, value) in table {
                assert_eq!(value_of(table, name), Some(value), "{name}");
                assert_eq!(name_of(table, value), name);
            }
        }
        for &(name, level, option) in SOCKOPTS {
            assert_eq!(sockopt_name(level, option), name);
        }
        assert_eq!(sockopt_level_name(libc::IPPROTO_TCP), "SOL_TCP");
        for &(name, value) in FAMILIES {
            assert_eq!(value_of(FAMILIES, name), Some(value), "{name}");
        }
        assert_eq!(domain_name(libc::AF_LOCAL), "AF_UNIX");
        assert_eq!(domain_name(libc::AF_INET6), "AF_INET6");
        assert_eq!(domain_name(libc::AF_NETLINK), "16");
    }

    #[test]
    fn flags_render_with_unknown_bits_in_hex() {
        assert_eq!(
            socket_type_name(libc::SOCK_STREAM | libc::SOCK_NONBLOCK),
            "SOCK_STREAM|SOCK_NONBLOCK"
        );
        assert_eq!(flags_name(0, SOCK_FLAGS), "0");
        assert_eq!(epoll_events_name(0x0800_0000), "0x8000000");
        assert_eq!(name_of(SHUT_HOW, 7), "7");
    }
}
