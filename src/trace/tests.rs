use super::*;

fn fd(num: i32, name: &str) -> FdRef {
    FdRef {
        num,
        name: Some(name.into()),
    }
}

fn event(call: Call, ret: Ret) -> Event {
    Event {
        actor: "main".into(),
        pid: 4242,
        time_us: 1_700_000_000_123_456,
        dur_us: 12,
        call,
        ret,
        resumed: false,
        slept: false,
        stability: Stability::Stable,
    }
}

#[test]
fn epoll_ctl_renders_like_strace_in_both_renderings() {
    let e = event(
        Call::EpollCtl {
            epfd: fd(4, "E"),
            op: libc::EPOLL_CTL_ADD,
            fd: fd(3, "L"),
            event: Some(EpollEv {
                events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                data: 3,
                data_name: Some("L".into()),
            }),
        },
        Ret::value(0),
    );
    assert_eq!(
        e.render(Format::SYMBOLIC),
        "epoll_ctl(E, EPOLL_CTL_ADD, L, {events=EPOLLIN|EPOLLET, data={u64=L}}) = 0"
    );
    assert_eq!(
        e.render(Format::RAW.with_actors(true)),
        "[pid   4242] 22:13:20.123456 epoll_ctl(4, EPOLL_CTL_ADD, 3, \
         {events=EPOLLIN|EPOLLET, data={u64=3}}) = 0 <0.000012>"
    );
}

#[test]
fn epoll_wait_and_errors() {
    let wait = event(
        Call::EpollWait {
            epfd: fd(4, "E"),
            events: vec![EpollEv {
                events: libc::EPOLLIN as u32,
                data: 3,
                data_name: Some("L".into()),
            }],
            maxevents: 16,
            timeout: 0,
            pwait: false,
        },
        Ret::value(1),
    );
    assert_eq!(
        wait.render(Format::SYMBOLIC),
        "epoll_wait(E, [{events=EPOLLIN, data={u64=L}}], 16, 0) = 1"
    );
    let accept = event(
        Call::Accept4 {
            fd: fd(3, "L"),
            flags: libc::SOCK_NONBLOCK,
        },
        Ret::Err {
            errno: Errno::EAGAIN,
        },
    );
    assert_eq!(
        accept.render(Format::SYMBOLIC),
        "accept4(L, ..., SOCK_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable)"
    );
}

#[test]
fn addresses_use_aliases_only_when_symbolic() {
    let e = event(
        Call::Connect {
            fd: fd(5, "C1"),
            addr: AddrRef {
                addr: SockAddr::ip("127.0.0.1:40123".parse().unwrap()),
                len: 16,
                alias: Some("PORT".into()),
            },
        },
        Ret::Err {
            errno: Errno::EINPROGRESS,
        },
    );
    assert_eq!(
        e.render(Format::SYMBOLIC),
        "connect(C1, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr(\"127.0.0.1\")}, 16) \
         = -1 EINPROGRESS (Operation now in progress)"
    );
    assert!(e.render(Format::RAW).contains("htons(40123)"));
}

#[test]
fn events_round_trip_through_json() {
    let e = event(
        Call::Socket {
            domain: libc::AF_UNIX,
            ty: libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
            protocol: 0,
        },
        Ret::Err {
            errno: Errno::EMFILE,
        },
    );
    let json = serde_json::to_string(&e).unwrap();
    assert!(json.contains("\"call\":\"socket\""), "{json}");
    assert!(json.contains("\"errno\":\"EMFILE\""), "{json}");
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    assert_eq!(
        e.render(Format::SYMBOLIC),
        "socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK, 0) = -1 EMFILE (Too many open files)"
    );
}

#[test]
fn background_calls_and_varying_outcomes() {
    let call = Call::EpollWait {
        epfd: fd(4, "E"),
        events: vec![EpollEv {
            events: libc::EPOLLIN as u32,
            data: 3,
            data_name: Some("L".into()),
        }],
        maxevents: 16,
        timeout: -1,
        pwait: false,
    };
    let mut started = event(call.clone(), Ret::Unfinished);
    started.actor = "w1".into();
    assert_eq!(
        started.render(Format::SYMBOLIC.with_actors(true)),
        "[w1] epoll_wait(E, [...], 16, -1) <unfinished ...>"
    );
    let mut done = event(call, Ret::value(1));
    done.resumed = true;
    done.stability = Stability::Pattern("0..1".into());
    assert_eq!(
        done.render(Format::SYMBOLIC),
        "<... resumed> epoll_wait(E, [...], 16, -1) = 0..1"
    );
    assert!(
        done.render(Format::RAW)
            .contains("[{events=EPOLLIN, data={u64=3}}], 16, -1) = 1")
    );
    done.stability = Stability::Hidden;
    assert_eq!(done.render_line(Format::SYMBOLIC), None);
    assert!(done.render_line(Format::RAW).is_some());
    let note = event(
        Call::Note {
            text: "woken(w1, w2) = 1".into(),
        },
        Ret::value(0),
    );
    assert_eq!(note.render(Format::SYMBOLIC), "# woken(w1, w2) = 1");
}

#[test]
fn flags_parse_and_render() {
    let v = parse_epoll_events("in|ET|EPOLLRDHUP").unwrap();
    assert_eq!(epoll_events_name(v), "EPOLLIN|EPOLLRDHUP|EPOLLET");
    assert_eq!(epoll_events_name(0x10), "EPOLLHUP");
    assert_eq!(epoll_events_name(0x0800_0000), "0x8000000");
    assert!(parse_epoll_events("IN|BOGUS").is_err());
    assert_eq!(quote_bytes(b"hi\n\x01"), "\"hi\\n\\1\"");
}
