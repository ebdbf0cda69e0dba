//! Signals: dispositions, and the SIGINT/SIGTERM stop source shared by the tools.
