//! Processes: fork, exec, reaping, the parent-death signal, and moving an fd out of the way.
