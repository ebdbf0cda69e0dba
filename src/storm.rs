//! Connect storms for `socket-connect`: N non-blocking connects on mio, paced and measured.
