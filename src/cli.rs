//! Conventions every binary follows: a one-line error naming what went wrong and exit code 2
//! for bad input or failed set-up; 0 when the experiment ran, whatever the kernel did.

use std::process::ExitCode;

/// Exit code for bad arguments and set-up failures (clap uses the same for usage errors).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Turns a tool's result into its exit code, printing `tool: error: ...` on one line.
pub fn finish(tool: &str, result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` joins the context chain on one line: "binding /tmp/x: address in use".
            eprintln!("{tool}: error: {err:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Call first in every binary's main: a closed stdout pipe (`tool | head`) ends the program
/// quietly, as for any Unix filter, instead of panicking in `println!`.
pub fn init() {
    crate::sys::signal::default_sigpipe();
}
