//! The edge-trigger probe behind `epoll-socket-test`: the seed experiment, traced.
