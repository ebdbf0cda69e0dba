//! Conventions every binary follows, in one place: [`main`] parses the command line and runs
//! the tool, printing any error as one `tool: error: ...` line; exit code 2 for bad input
//! (clap's own usage errors included) or failed set-up; 0 when the experiment ran, whatever
//! the kernel did. The value parsers give every binary the same words for the same mistakes.

use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::time::Duration;

use crate::addr::Family;

/// Exit code for bad arguments and set-up failures.
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

/// Call first in every binary's main (done by [`main`]): a closed stdout pipe (`tool | head`)
/// ends the program quietly, as for any Unix filter, instead of panicking in `println!`.
pub fn init() {
    crate::sys::signal::default_sigpipe();
}

/// The whole main of a binary: parses `A` from the command line and runs `run` with it.
/// `--help`/`--version` print and exit 0; any usage error is one line and exit 2.
pub fn main<A: clap::Parser>(
    tool: &str,
    run: impl FnOnce(A) -> anyhow::Result<ExitCode>,
) -> ExitCode {
    init();
    // Hidden: `tool __generate-docs DIR` writes the man page and completions (crate::docs).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().take(4).collect();
    if let [_, arg, dir] = &argv[..]
        && arg == crate::docs::GENERATE_ARG
    {
        let written = crate::docs::generate(tool, command::<A>(), std::path::Path::new(dir));
        return finish(
            tool,
            written
                .map(|_| ExitCode::SUCCESS)
                .map_err(anyhow::Error::msg),
        );
    }
    let parsed = command::<A>()
        .try_get_matches()
        .and_then(|matches| A::from_arg_matches(&matches));
    match parsed {
        Ok(args) => finish(tool, run(args)),
        Err(e) => usage_error(tool, &e),
    }
}

/// The clap command of `A`, with negative numbers taken as values in every subcommand, so
/// that `--count -1` is an invalid value rather than an unexpected argument.
pub fn command<A: clap::CommandFactory>() -> clap::Command {
    fn numbers_are_values(cmd: clap::Command) -> clap::Command {
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        let mut cmd = cmd.allow_negative_numbers(true);
        for name in names {
            cmd = cmd.mut_subcommand(name, numbers_are_values);
        }
        cmd
    }
    numbers_are_values(A::command())
}

/// Prints a clap error the tools' way; help and version are not errors.
pub fn usage_error(tool: &str, e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a subcommand is required".to_string()
    } else {
        one_line(&e.to_string())
    };
    eprintln!("{tool}: error: {text} (see --help)");
    ExitCode::from(EXIT_BAD_INPUT)
}

/// clap's report on one line: everything before the usage, tips after a `;`.
fn one_line(report: &str) -> String {
    let mut out = String::new();
    for line in report.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let line = line.strip_prefix("error: ").unwrap_or(line);
        if !out.is_empty() {
            out.push_str(if line.starts_with("tip:") { "; " } else { " " });
        }
        out.push_str(line);
    }
    if out.is_empty() {
        out.push_str("bad arguments");
    }
    out
}

/// A socket family (`unix`, `inet`, `inet6` and their aliases) as a clap value parser.
pub fn family(text: &str) -> Result<Family, String> {
    text.parse::<Family>().map_err(|e| e.to_string())
}

/// A whole number in `range`, as a clap value parser: `count(1..=10)`.
pub fn count(range: RangeInclusive<u64>) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |text: &str| match text.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        Ok(n) if n < *range.start() => Err(format!(
            "'{text}' is not a whole number of at least {}",
            range.start()
        )),
        Ok(_) => Err(format!("'{text}' is more than {}", range.end())),
        Err(_) if *range.start() >= 1 => Err(format!(
            "'{text}' is not a whole number of at least {}",
            range.start()
        )),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// Like [`count`], for a size held in a `usize`.
pub fn count_usize(range: RangeInclusive<u64>) -> impl Fn(&str) -> Result<usize, String> + Clone {
    let parse = count(range);
    move |text: &str| {
        let n = parse(text)?;
        usize::try_from(n).map_err(|_| format!("'{text}' is too large for this machine"))
    }
}

/// The longest duration a flag accepts: far beyond any run, small enough for every timer.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Seconds, fractions allowed (`2`, `0.5`), positive and at most [`MAX_DURATION`].
pub fn duration_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("invalid duration '{text}': expected seconds, e.g. 2 or 0.5"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "invalid duration '{text}': expected a positive number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_range_checked_with_the_same_words() {
        let c = count(1..=10);
        assert_eq!(c("3"), Ok(3));
        assert_eq!(
            c("0"),
            Err("'0' is not a whole number of at least 1".into())
        );
        assert_eq!(
            c("-1"),
            Err("'-1' is not a whole number of at least 1".into())
        );
        assert_eq!(c("11"), Err("'11' is more than 10".into()));
        assert_eq!(count(0..=5)("x"), Err("'x' is not a whole number".into()));
    }

    #[test]
    fn durations_are_positive_finite_and_bounded() {
        assert_eq!(duration_secs("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "inf", "NaN", "1e300", "soon"] {
            assert!(duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clap_reports_become_one_line() {
        let report = "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as \
                      a value, use '-- --bogus'\n\nUsage: x [OPTIONS]\n\nFor more information, \
                      try '--help'.\n";
        assert_eq!(
            one_line(report),
            "unexpected argument '--bogus' found; tip: to pass '--bogus' as a value, use '-- --bogus'"
        );
        let missing = "error: the following required arguments were not provided:\n  \
                       <FAMILY>\n\nUsage: x <FAMILY>\n";
        assert_eq!(
            one_line(missing),
            "the following required arguments were not provided: <FAMILY>"
        );
    }
}
