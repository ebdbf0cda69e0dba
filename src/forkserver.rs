//! The forking epoll server behind `epoll-listen-fork`: waiters, per-event children, reports.
