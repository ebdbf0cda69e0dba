//! One event as one strace-like line: what the rendering puts before the call (actor or
//! pid, time of day), the call, its return, and the duration.

use std::fmt::Write as _;

use super::renderer::Renderer;
use super::{Call, Event, Ret, Stability};

/// Which values a rendering shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    /// Role names, no time or pid: stable across runs.
    Symbolic,
    /// Real numbers, pid, time of day and duration.
    Raw,
}

/// How to render events: which values, and whether to say which actor made each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub rendering: Rendering,
    pub actors: bool,
}

impl Format {
    pub const SYMBOLIC: Format = Format {
        rendering: Rendering::Symbolic,
        actors: false,
    };
    pub const RAW: Format = Format {
        rendering: Rendering::Raw,
        actors: false,
    };

    pub fn with_actors(self, actors: bool) -> Format {
        Format { actors, ..self }
    }
}

impl Event {
    /// Renders the event as one strace-like line (no trailing newline); `None` when the
    /// symbolic rendering leaves it out (see [`Stability`]).
    pub fn render_line(&self, format: Format) -> Option<String> {
        if format.rendering == Rendering::Symbolic && self.stability == Stability::Hidden {
            return None;
        }
        Some(self.render(format))
    }

    /// Renders the event as one strace-like line (no trailing newline).
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        if let Call::Note { text } = &self.call {
            out.push_str("# ");
            out.push_str(text);
            return out;
        }
        match format.rendering {
            Rendering::Symbolic => {
                if format.actors {
                    let _ = write!(out, "[{}] ", self.actor);
                }
            }
            Rendering::Raw => {
                if format.actors {
                    let _ = write!(out, "[pid {:>6}] ", self.pid);
                }
                out.push_str(&time_of_day(self.time_us));
                out.push(' ');
            }
        }
        let pattern = match (&self.stability, format.rendering) {
            (Stability::Pattern(p), Rendering::Symbolic) => Some(p.as_str()),
            _ => None,
        };
        let r = Renderer {
            rendering: format.rendering,
            hide_outputs: pattern.is_some() || self.ret == Ret::Unfinished,
        };
        if self.resumed {
            out.push_str("<... resumed> ");
        }
        r.call(&mut out, &self.call);
        match (pattern, &self.ret) {
            (_, Ret::Unfinished) => out.push_str(" <unfinished ...>"),
            (Some(p), _) => {
                out.push_str(" = ");
                out.push_str(p);
            }
            (None, ret) => {
                out.push_str(" = ");
                r.ret(&mut out, ret);
                if let (
                    Call::Sys {
                        detail: Some(detail),
                        ..
                    },
                    Ret::Ok { .. },
                ) = (&self.call, ret)
                {
                    out.push_str(" (");
                    r.part(&mut out, detail);
                    out.push(')');
                }
            }
        }
        if format.rendering == Rendering::Raw && self.ret != Ret::Unfinished {
            let _ = write!(
                out,
                " <{}.{:06}>",
                self.dur_us / 1_000_000,
                self.dur_us % 1_000_000
            );
        }
        out
    }
}

/// Renders a whole trace, one line per event.
pub fn render_all(events: &[Event], format: Format) -> String {
    let mut out = String::new();
    for line in events.iter().filter_map(|e| e.render_line(format)) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `HH:MM:SS.micros` (UTC), as `strace -tt` prints it.
fn time_of_day(time_us: u64) -> String {
    let secs = time_us / 1_000_000;
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        time_us % 1_000_000
    )
}
