use std::collections::BTreeMap;

use super::*;
use crate::trace::{Call, FdRef, Ret, Stability};

fn ev(pid: i32, t: u64, call: Call, ret: Ret) -> Event {
    Event {
        actor: String::new(),
        pid,
        time_us: t,
        dur_us: 1,
        call,
        ret,
        resumed: false,
        slept: false,
        stability: Stability::Stable,
    }
}

#[test]
fn local_accepts_are_counted_per_pid_and_unsteered_cpus_named() {
    let cpu = |fd: i32, incoming: i32, on: i32| Call::Builtin {
        name: "accept_cpu".into(),
        args: [fd, incoming, on]
            .iter()
            .map(|&num| FdRef { num, name: None })
            .collect(),
    };
    let events = vec![
        ev(
            7,
            1,
            Call::Note {
                text: "locality: SO_INCOMING_CPU steers cpu 0".into(),
            },
            Ret::value(0),
        ),
        ev(7, 2, cpu(5, 0, 0), Ret::value(1)),
        ev(7, 3, cpu(6, 0, 0), Ret::value(1)),
        ev(8, 4, cpu(5, 1, 0), Ret::value(0)),
        // Unknown CPUs are not measured.
        ev(8, 5, cpu(6, -1, 0), Ret::value(0)),
    ];
    let s = Summary::of(&events);
    assert_eq!(
        s.local_total(),
        Local {
            local: 2,
            measured: 3
        }
    );
    let text = s.render();
    assert!(
        text.contains("# local accepts per pid: 7:2/2 (100.0%) 8:0/1 (0.0%); all: 2/3 (66.7%)"),
        "{text}"
    );
    assert!(text.contains("no listener steered to cpu 1"), "{text}");
    assert!(compare_table(("a", &s), ("b", &s)).contains("2/3 (66.7%)"));
}

#[test]
fn merges_files_in_time_order_and_summarises() {
    let dir = std::env::temp_dir().join(format!("es-merge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fd = FdRef { num: 3, name: None };
    let a = [
        ev(
            10,
            5,
            Call::Listen {
                fd: fd.clone(),
                backlog: 8,
            },
            Ret::value(0),
        ),
        ev(
            10,
            30,
            Call::Accept4 {
                fd: fd.clone(),
                flags: 0,
            },
            Ret::Err {
                errno: Errno::EAGAIN,
            },
        ),
    ];
    let b = [
        ev(
            11,
            20,
            Call::Builtin {
                name: "listen_spawn".into(),
                args: vec![fd.clone()],
            },
            Ret::value(0),
        ),
        ev(
            11,
            25,
            Call::Accept4 {
                fd: fd.clone(),
                flags: 0,
            },
            Ret::value(4),
        ),
    ];
    for (pid, events) in [(10, &a[..]), (11, &b[..])] {
        let text: String = events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        // The last line cut short, then the zero tail of a mapped file.
        let mut bytes = (text + "{\"actor\":\"\",\"pi").into_bytes();
        bytes.extend([0u8; 100]);
        std::fs::write(dir.join(format!("trace.{pid}")), bytes).unwrap();
    }
    let (events, bad) = read_dir(&dir).unwrap();
    assert_eq!(bad, 2);
    let times: Vec<u64> = events.iter().map(|e| e.time_us).collect();
    assert_eq!(times, vec![5, 20, 25, 30]);
    let s = Summary::of(&events);
    assert_eq!(s.processes, 2);
    assert_eq!(s.accepts, BTreeMap::from([(11, 1)]));
    assert_eq!(s.listeners, BTreeMap::from([(10, 1), (11, 1)]));
    assert_eq!(s.eagain(), 1);
    assert_eq!(s.calls["listen_spawn"], 1);
    let text = s.render();
    assert!(text.contains("# accepts per pid: 11:1\n"), "{text}");
    assert!(
        text.contains("# calls: accept4=2 listen=1 listen_spawn=1\n"),
        "{text}"
    );
    let table = compare_table(("traced", &s), ("fastsocket", &s));
    assert!(table.contains("EAGAIN"), "{table}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ends_come_from_last_words_and_from_the_parents_waits() {
    let exit = |pid, code| {
        ev(
            pid,
            50,
            Call::Builtin {
                name: "exit".into(),
                args: vec![FdRef {
                    num: code,
                    name: None,
                }],
            },
            Ret::value(0),
        )
    };
    let reap = |by, who: i32, status| {
        ev(
            by,
            60,
            Call::Builtin {
                name: "waitpid".into(),
                args: vec![
                    FdRef {
                        num: -1,
                        name: None,
                    },
                    FdRef {
                        num: status,
                        name: None,
                    },
                ],
            },
            Ret::value(i64::from(who)),
        )
    };
    let close = |pid| {
        ev(
            pid,
            10,
            Call::Close {
                fd: FdRef { num: 3, name: None },
            },
            Ret::value(0),
        )
    };
    let events = [
        close(1),
        close(2),
        close(3),
        close(4),
        close(5),
        // 2 exits 3 (its own word, and its parent's wait agrees); 3 is killed by SIGKILL
        // and reaped; 4 says exit(256) (a parent sees 0); 5 is killed and nobody reaps it.
        exit(2, 3),
        reap(1, 2, 3 << 8),
        reap(1, 3, libc::SIGKILL),
        exit(4, 256),
        exit(1, 0),
    ];
    let s = Summary::of(&events);
    assert_eq!(s.ends[&1], End::Exited(0));
    assert_eq!(
        s.ends[&2],
        End::Reaped {
            by: 1,
            how: Ended::Code(3)
        }
    );
    assert_eq!(
        s.ends[&3],
        End::Reaped {
            by: 1,
            how: Ended::Signal(libc::SIGKILL)
        }
    );
    assert_eq!(s.ends[&4], End::Exited(0));
    assert_eq!(s.ends.get(&5), None);
    let text = s.render();
    assert!(
        text.contains(
            "# ended: 1 exit 0, 2 exit 3 (reaped by 1), 3 killed by SIGKILL (reaped by 1), \
             4 exit 0, 5 no exit record (killed or crashed, not reaped by a traced process)\n"
        ),
        "{text}"
    );
    assert_eq!(
        s.ends_by_kind(),
        "2x exit 0, 1x exit 3, 1x killed by SIGKILL, 1x no record"
    );
}

#[test]
fn a_line_cut_short_and_a_hole_between_lines_are_counted_not_fatal() {
    let good = serde_json::to_string(&ev(
        7,
        1,
        Call::Close {
            fd: FdRef { num: 3, name: None },
        },
        Ret::value(0),
    ))
    .unwrap();
    // A thread's reserved line never copied (zeros), another's complete, one cut short.
    let mut bytes = good.clone().into_bytes();
    bytes.push(b'\n');
    bytes.extend([0u8; 40]);
    bytes.extend(good.as_bytes());
    bytes.push(b'\n');
    bytes.extend(&good.as_bytes()[..good.len() / 2]);
    let lines: Vec<&[u8]> = lines(&bytes).collect();
    assert_eq!(lines.len(), 3);
    let parsed = lines
        .iter()
        .filter(|l| serde_json::from_slice::<Event>(l).is_ok())
        .count();
    assert_eq!(parsed, 2);
}
