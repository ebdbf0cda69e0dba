//! The rules of the model: what the man pages promise, one entry per rule, each paraphrased
//! and cited by page and section. Every judgement the model makes names one of these.

/// One documented promise (or one documented silence).
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// A short stable name, used in explanations and tests.
    pub id: &'static str,
    /// Man page and section, e.g. `epoll_ctl(2) ERRORS`.
    pub cite: &'static str,
    /// What the page says, in our words.
    pub text: &'static str,
}

macro_rules! rules {
    ($($name:ident = $id:literal, $cite:literal, $text:literal;)*) => {
        $(pub static $name: Rule = Rule { id: $id, cite: $cite, text: $text };)*
        /// Every rule, for listings and the README.
        pub static ALL: &[&Rule] = &[$(&$name),*];
    };
}

rules! {
    SOCKET_NEW_FD = "socket-new-fd", "socket(2) RETURN VALUE",
        "a successful socket() returns a new file descriptor";
    BAD_FD = "ebadf", "close(2), epoll_ctl(2), read(2) ... ERRORS",
        "a call on a number that is not an open file descriptor fails with EBADF";
    FD_MAYBE_REUSED = "fd-reused", "open(2) DESCRIPTION, fork(2)",
        "a closed fd number may have been taken by a newer fd (open(2): the lowest free number) or by one the model cannot see (the runner's own, after a fork)";
    NOT_MODELLED = "not-modelled", "(none)",
        "the model has no rule for this call or state: unspecified (not modelled)";
    NOT_A_SOCKET = "enotsock", "bind(2), listen(2), accept(2), connect(2), shutdown(2) ERRORS",
        "a socket call on an fd that is not a socket fails with ENOTSOCK";
    BIND_OK = "bind-ok", "bind(2) DESCRIPTION",
        "bind() assigns a fresh address to a socket that has none";
    BIND_INVAL = "bind-einval", "bind(2) ERRORS",
        "bind() on a socket that is already bound fails with EINVAL";
    BIND_IN_USE = "bind-eaddrinuse", "bind(2) ERRORS, unix(7) ERRORS, socket(7) SO_REUSEPORT",
        "binding an address another socket holds fails with EADDRINUSE, unless every holder set SO_REUSEPORT (IP only)";
    LISTEN_OK = "listen-ok", "listen(2) DESCRIPTION",
        "listen() marks a bound (or, for IP, unbound: an ephemeral port) stream socket passive";
    LISTEN_BACKLOG = "listen-backlog", "listen(2) DESCRIPTION and NOTES",
        "the backlog bounds the queue of pending connections; what happens beyond it is protocol-specific";
    CONNECT_QUEUED = "connect-queued", "connect(2) DESCRIPTION, listen(2) DESCRIPTION",
        "a stream connect to a listening address with room in its backlog succeeds and queues one pending connection";
    CONNECT_REFUSED = "connect-refused", "connect(2) ERRORS, unix(7) ERRORS",
        "connect to an address nobody listens on fails: ECONNREFUSED (unix: ENOENT when the socket file does not exist)";
    CONNECT_ISCONN = "connect-eisconn", "connect(2) ERRORS",
        "connect on an already connected socket fails with EISCONN";
    CONNECT_NONBLOCK_TCP = "connect-einprogress", "connect(2) ERRORS (EINPROGRESS)",
        "a non-blocking TCP connect may complete at once or return EINPROGRESS";
    ACCEPT_FIRST = "accept-first", "accept(2) DESCRIPTION",
        "accept() takes the first connection on the queue and returns a new fd for it";
    ACCEPT_EAGAIN = "accept-eagain", "accept(2) DESCRIPTION and ERRORS",
        "with an empty queue a non-blocking accept fails with EAGAIN; a blocking one waits";
    ACCEPT_INVAL = "accept-einval", "accept(2) ERRORS",
        "accept on a socket that is not listening fails with EINVAL";
    CLOSE_OK = "close-ok", "close(2) DESCRIPTION",
        "close() frees the fd; the open file description lives until its last fd is closed";
    DUP_NEW_FD = "dup-new-fd", "dup(2) DESCRIPTION",
        "dup() returns a new fd referring to the same open file description";
    DUP2_TARGET = "dup2-target", "dup(2) DESCRIPTION",
        "dup2() makes the target number refer to the same open file description and returns it";
    SHUTDOWN_OK = "shutdown-ok", "shutdown(2) DESCRIPTION and ERRORS",
        "shutdown() of a connected socket succeeds; of an unconnected one it fails with ENOTCONN";
    READ_DATA = "read-data", "read(2) DESCRIPTION, recv(2) RETURN VALUE",
        "read() returns the bytes queued (at most count); 0 when the peer shut down its sending side and nothing is left";
    READ_EAGAIN = "read-eagain", "read(2) ERRORS",
        "a non-blocking read with nothing to read fails with EAGAIN";
    READ_ENOTCONN = "read-enotconn", "read(2) ERRORS, recv(2) ERRORS",
        "reading a stream socket that is not connected fails (ENOTCONN, or EINVAL for a listener)";
    WRITE_DATA = "write-data", "write(2) DESCRIPTION, socket(7)",
        "a small write to a connected stream socket whose peer is open is accepted whole";
    WRITE_EPIPE = "write-epipe", "write(2) ERRORS, send(2) ERRORS",
        "writing after shutdown(SHUT_WR) fails with EPIPE; an unconnected socket gives ENOTCONN or EPIPE";
    PEER_CLOSE_UNREAD = "peer-close-unread", "tcp(7), unix(7) (silent)",
        "what the peer sees when a socket is closed with unread data is not documented (TCP resets in practice)";
    EPOLL_CREATE = "epoll-create", "epoll_create(2) DESCRIPTION",
        "epoll_create1() with 0 or EPOLL_CLOEXEC returns a new epoll fd";
    EPOLL_CREATE_FLAGS = "epoll-create1-einval", "epoll_create(2) ERRORS",
        "epoll_create1() with a flag other than EPOLL_CLOEXEC fails with EINVAL";
    CTL_ADD = "ctl-add", "epoll_ctl(2) DESCRIPTION",
        "EPOLL_CTL_ADD registers (file, fd) with the events; MOD changes them; DEL removes the registration";
    CTL_EEXIST = "ctl-eexist", "epoll_ctl(2) ERRORS",
        "ADD of an fd already registered fails with EEXIST";
    CTL_ENOENT = "ctl-enoent", "epoll_ctl(2) ERRORS",
        "MOD or DEL of an fd not registered fails with ENOENT";
    CTL_EINVAL = "ctl-einval", "epoll_ctl(2) ERRORS",
        "EINVAL when epfd is not an epoll fd, fd is epfd itself, op is unknown, or EPOLLEXCLUSIVE is used with MOD or on an exclusive registration";
    CTL_ELOOP = "ctl-eloop", "epoll_ctl(2) ERRORS",
        "ELOOP when adding an epoll fd to a set would make a cycle of epoll sets";
    CTL_NESTING = "ctl-eloop-depth", "epoll_ctl(2) ERRORS",
        "ELOOP when adding an epoll fd would nest epoll instances deeper than 5 (instances or links: the page does not say which)";
    CTL_EBADF = "ctl-ebadf", "epoll_ctl(2) ERRORS",
        "EBADF when epfd or fd is not an open fd";
    CTL_ERRORS_ANY = "ctl-errors-unordered", "epoll_ctl(2) ERRORS",
        "when several error conditions hold, the page does not say which one is reported";
    CLOSE_REMOVES = "close-removes", "epoll(7) Questions and answers (Q6)",
        "a registration goes away when every fd referring to its open file description is closed, not before";
    WAIT_LT = "wait-lt", "epoll(7) Level-triggered and edge-triggered",
        "level-triggered: epoll_wait reports a registration whenever its file is ready for the requested events";
    WAIT_ET = "wait-et", "epoll(7) Level-triggered and edge-triggered",
        "edge-triggered: a registration is reported when its file becomes ready; no new report until something changes";
    WAIT_ET_MORE = "wait-et-more-input", "epoll(7) Level-triggered and edge-triggered (silent)",
        "whether new input on a file that is already ready counts as a new edge is not said: 0 or 1 report are both allowed";
    WAIT_ADD_READY = "wait-add-ready", "epoll(7), epoll_ctl(2) (silent)",
        "whether registering an already-ready file edge-triggered produces an edge is not said";
    WAIT_ONESHOT = "wait-oneshot", "epoll_ctl(2) EPOLLONESHOT",
        "after one report a EPOLLONESHOT registration is disabled until EPOLL_CTL_MOD re-arms it";
    WAIT_MAXEVENTS = "wait-maxevents", "epoll_wait(2) DESCRIPTION and ERRORS",
        "epoll_wait returns at most maxevents ready registrations (which ones is not said); maxevents <= 0 is EINVAL";
    WAIT_NOT_EPOLL = "wait-einval", "epoll_wait(2) ERRORS",
        "epoll_wait on an fd that is not an epoll fd fails with EINVAL (EBADF if it is not an fd)";
    WAIT_MASK = "wait-mask", "epoll_ctl(2) DESCRIPTION (the event bits)",
        "the reported mask holds the ready requested events; EPOLLERR and EPOLLHUP are always reported";
    WAIT_BLOCKING = "wait-blocking", "epoll_wait(2) DESCRIPTION",
        "a blocking epoll_wait returns once a registration is ready; with several ready, up to maxevents";
    READY_LISTENER = "ready-listener", "accept(2) NOTES, socket(7) (I/O events)",
        "a listening socket is readable exactly when a connection is pending";
    READY_STREAM = "ready-stream", "socket(7) (I/O events), epoll_ctl(2) EPOLLRDHUP",
        "a connected stream socket is readable with data or after the peer shut down writing (then EPOLLRDHUP too), writable while it may send";
    READY_UNSPECIFIED = "ready-unspecified", "socket(7) (silent)",
        "the readiness of an unconnected, shut-down or reset socket is not documented";
    WAKE_ONE_ACCEPT = "wake-accept", "accept(2) DESCRIPTION",
        "each pending connection is taken by exactly one blocked accept; which one is not said";
    WAKE_HERD = "wake-herd", "epoll(7), epoll_wait(2)",
        "an event wakes at least one waiter whose epoll set reports it; without EPOLLEXCLUSIVE any number up to all of them";
    WAKE_EXCLUSIVE = "wake-exclusive", "epoll_ctl(2) EPOLLEXCLUSIVE",
        "with EPOLLEXCLUSIVE one or more of the waiting epoll fds receive the event";
    WAKE_NONE = "wake-none", "epoll_wait(2), accept(2) DESCRIPTION",
        "a blocked call does not return while nothing it waits for has happened";
    WAKE_WHICH = "wake-which", "epoll(7), accept(2) (silent)",
        "which of several waiters returns (FIFO, LIFO) is not said";
    DRAIN = "drain", "accept(2) (the runner's drain built-in)",
        "drain accepts and closes what is queued: the queue length";
    NOT_STREAM = "not-stream", "socket(7), unix(7), udp(7) (message sockets)",
        "datagram and seqpacket sockets keep message boundaries and addresses; the model follows only stream sockets: their results are unspecified";
    PIPE_NEW = "pipe-new", "pipe(2) DESCRIPTION and ERRORS",
        "pipe() and pipe2() with flags among O_NONBLOCK, O_CLOEXEC, O_DIRECT make a read end and a write end; another flag is EINVAL";
    PIPE_NOTIFICATION = "pipe-notification", "pipe(2) DESCRIPTION (O_NOTIFICATION_PIPE)",
        "O_NOTIFICATION_PIPE needs a kernel built with watch queues: whether it is accepted is not fixed";
    PIPE_READ = "pipe-read", "pipe(7) I/O on pipes and FIFOs, read(2) RETURN VALUE",
        "a read returns queued bytes (1 up to count); on an empty pipe it returns 0 (end of file) once every write end is closed, else fails with EAGAIN (O_NONBLOCK) or blocks";
    PIPE_WRITE = "pipe-write", "pipe(7) PIPE_BUF and Pipe capacity",
        "a write is taken whole while what was written since the pipe was last empty stays within PIPE_BUF (a pipe holds at least one page); past that it may block, be partial or fail with EAGAIN";
    PIPE_EPIPE = "pipe-epipe", "pipe(7) I/O on pipes and FIFOs",
        "a write with every read end closed raises SIGPIPE; the runner's actors ignore it, so the write fails with EPIPE";
    PIPE_WRONG_END = "pipe-wrong-end", "read(2), write(2) ERRORS (EBADF)",
        "reading a pipe's write end or writing its read end fails with EBADF: the fd is not open for that";
    READY_PIPE = "ready-pipe", "poll(2) POLLHUP and POLLERR, pipe(7)",
        "a read end is readable with data and hung up (POLLHUP) once every writer is gone; a write end is writable while the pipe is empty and in error (POLLERR) once every reader is gone";
    SOCKETPAIR_OK = "socketpair-ok", "socketpair(2) DESCRIPTION, unix(7)",
        "socketpair(AF_UNIX, type, 0) makes two sockets connected to each other; a stream pair behaves as a connection";
    SOCKETPAIR_DOMAIN = "socketpair-domain", "socketpair(2) DESCRIPTION and ERRORS",
        "on Linux only AF_UNIX (and AF_TIPC) make pairs: another family fails (EAFNOSUPPORT, EOPNOTSUPP or EPROTONOSUPPORT)";
    EVENTFD_NEW = "eventfd-new", "eventfd(2) DESCRIPTION and ERRORS",
        "eventfd2() with flags among EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC returns a new fd whose counter starts at the initial value; another flag is EINVAL";
    EVENTFD_READ = "eventfd-read", "eventfd(2) read(2)",
        "a read of 8 bytes or more returns 8: the counter, then reset to 0 (with EFD_SEMAPHORE: 1, the counter decremented); a zero counter fails with EAGAIN (non-blocking) or blocks; fewer than 8 bytes is EINVAL";
    EVENTFD_WRITE = "eventfd-write", "eventfd(2) write(2)",
        "a write of 8 bytes adds their value to the counter and returns 8; fewer than 8 bytes or the value 0xffffffffffffffff is EINVAL; a sum past 0xfffffffffffffffe fails with EAGAIN (non-blocking) or blocks";
    READY_EVENTFD = "ready-eventfd", "eventfd(2) poll(2), select(2) (and similar)",
        "an eventfd is readable while its counter is above 0 and writable while 1 can be added without blocking";
    EPOLL_CREATE_SIZE = "epoll-create-size", "epoll_create(2) DESCRIPTION and ERRORS",
        "epoll_create(size) ignores a positive size and returns a new epoll fd; a size of 0 or less is EINVAL";
    TIMERFD_NEW = "timerfd-new", "timerfd_create(2) DESCRIPTION and ERRORS",
        "timerfd_create() on CLOCK_REALTIME, CLOCK_MONOTONIC or CLOCK_BOOTTIME with flags among TFD_NONBLOCK, TFD_CLOEXEC returns a new disarmed timer; another clock or flag is EINVAL (the _ALARM clocks need CAP_WAKE_ALARM)";
    TIMERFD_SETTIME = "timerfd-settime", "timerfd_create(2) timerfd_settime() and ERRORS",
        "timerfd_settime() arms the timer (a non-zero it_value) or disarms it and returns 0; a tv_nsec outside 0..999999999, an unknown flag or an fd that is not a timerfd is EINVAL";
    TIMERFD_READ = "timerfd-read", "timerfd_create(2) read(2)",
        "a read of 8 bytes or more returns 8 once an expiration occurred; with none it fails with EAGAIN (non-blocking) or blocks until the next; fewer than 8 bytes is EINVAL";
    TIMERFD_TIME = "timerfd-time", "timerfd_create(2) (time-dependent)",
        "when an armed timer expires depends on time, which the model does not follow: its readiness and what a non-blocking read returns are not fixed";
    OPENAT_FS = "openat-fs", "open(2) (depends on the file system)",
        "whether a path opens, and what the file is (regular, device, fifo: which decides how it polls), depend on the file system";
    CTL_EPERM = "ctl-eperm", "epoll_ctl(2) ERRORS (EPERM)",
        "a file that does not support epoll (a regular file, a directory) cannot be registered: EPERM; what an opened path is the model does not know";
    SEND_CONNECTED = "send-connected", "send(2), recv(2) DESCRIPTION",
        "on a connected stream socket sendto() is write() (its address ignored, or EISCONN) and recvfrom() is read(); MSG_DONTWAIT makes one call non-blocking";
    SEND_ENOTSOCK = "send-enotsock", "send(2), recv(2) ERRORS",
        "sendto() or recvfrom() on an fd that is not a socket fails with ENOTSOCK";
    POLL_REVENTS = "poll-revents", "poll(2) DESCRIPTION",
        "poll() returns how many entries got revents: the requested events that are ready plus POLLERR and POLLHUP (always), POLLNVAL for an fd that is not open, nothing for a negative fd; with none ready it waits for one or the timeout";
    POLL_EINVAL = "poll-einval", "poll(2) ERRORS",
        "ppoll() with a negative timeout fails with EINVAL";
    TIMESPEC_INVALID = "timespec-invalid", "poll(2), epoll_wait(2) (silent)",
        "a timeout whose tv_nsec is outside 0..999999999 (or, for epoll_pwait2, negative): the pages name no outcome";
    SIGNAL_EINTR = "signal-eintr", "signal(7) Interruption of system calls and library functions by signal handlers",
        "the runner's actors catch SIGUSR1 and SIGUSR2 with a handler installed without SA_RESTART: a blocked epoll_wait, poll, read or accept it interrupts fails with EINTR";
    KILL_OK = "kill-ok", "kill(2) RETURN VALUE and ERRORS",
        "sending a valid signal to a live process (or one thread: tgkill) of the same user returns 0; an invalid signal is EINVAL";
    KILL_DEFAULT = "kill-default-action", "signal(7) Standard signals",
        "a signal the actors do not catch takes its default action (often death): what the process holds becomes unknown";
    THREAD_SHARES = "thread-shares-fds", "clone(2) CLONE_FILES, pthread_create(3)",
        "a new thread shares its process's fd table: an fd one thread makes or closes is made or closed for all";
    WAKE_READ = "wake-read", "read(2), pipe(7)",
        "a blocked read returns once data or end of file arrives (another reader may take it first), not before";
    WAKE_POLL = "wake-poll", "poll(2) DESCRIPTION",
        "a blocked poll returns as soon as one of its fds is ready: while one is, it is not blocked";
    FORK = "fork", "fork(2) DESCRIPTION",
        "the child gets a copy of the parent's fds, referring to the same open file descriptions";
    AGGREGATE = "aggregate", "(sum of the steps above)",
        "an aggregate is determined when every value it combines is";
    REUSEPORT = "reuseport", "socket(7) SO_REUSEPORT",
        "with SO_REUSEPORT the kernel spreads incoming connections over the group; how is not said";
    SETSOCKOPT = "setsockopt", "socket(7) Socket options, setsockopt(2)",
        "setting a known option on a socket succeeds";
    RESOURCES = "resource-limit", "fork(2), socket(2), accept(2) ... ERRORS (EAGAIN, ENOMEM, EMFILE, ENFILE, ENOBUFS)",
        "a call may fail when a process, memory or fd limit is hit; the model assumes none is, so such a failure is unspecified";
    FASTSOCKET_SPAWN = "fastsocket-spawn", "Fastsocket: libfsocket's listen_spawn, the per-core local listen table",
        "under the fast path, a process other than the one that called listen that registers the listener in an epoll set gets its own local listen socket under the same fd; connections to the address are then spread over the local sockets (and the shared one) by the CPU that receives them; the emulation retires a shared listener with nothing queued (its readiness is then unspecified)";
    PLANTED = "planted-wrong-rule", "(a deliberately wrong rule planted by a test)",
        "textbook EPOLLET: a second connection to a listener whose first is unaccepted is never reported";
}
