//! What `/proc` says about a process or thread, e.g. whether it is asleep in a system call.
