//! `epollscope monitor`.
