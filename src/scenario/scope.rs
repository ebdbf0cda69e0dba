//! The names a scenario binds, for the parser's checks: what each name is (an fd or a
//! process), which fds each process can see (its own, and those inherited at fork), and the
//! captured `$values`.

use std::collections::{HashMap, HashSet};

use super::ast::{Expect, Returns, Span};
use super::error::ParseError;

fn err(span: Span, message: String) -> ParseError {
    ParseError::new(span, message)
}

/// What a name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fd,
    Actor,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Fd => "an fd",
            Kind::Actor => "a process",
        }
    }
}

/// Names known so far: their kind, which fds each process can see, and captured values.
pub struct Scope {
    kinds: HashMap<String, Kind>,
    /// The process each actor is a thread of (named by its first actor).
    process: HashMap<String, String>,
    /// The fds each process can see: all its threads see the same.
    visible: HashMap<String, HashSet<String>>,
    pub captures: HashSet<String>,
}

impl Scope {
    pub fn new() -> Scope {
        let mut kinds = HashMap::new();
        kinds.insert("main".to_string(), Kind::Actor);
        let mut visible = HashMap::new();
        visible.insert("main".to_string(), HashSet::new());
        let mut process = HashMap::new();
        process.insert("main".to_string(), "main".to_string());
        Scope {
            kinds,
            process,
            visible,
            captures: HashSet::new(),
        }
    }

    pub fn check_actor(&self, name: &str, span: Span) -> Result<(), ParseError> {
        match self.kinds.get(name) {
            Some(Kind::Actor) => Ok(()),
            Some(Kind::Fd) => Err(err(
                span,
                format!("type mismatch: '{name}' is an fd, not a process"),
            )),
            None => Err(err(
                span,
                format!(
                    "undefined name '{name}': processes are main and those made by fork() = NAME \
                     or thread() = NAME"
                ),
            )),
        }
    }

    pub fn check_bindable(&self, name: &str, wanted: Kind, span: Span) -> Result<(), ParseError> {
        match self.kinds.get(name) {
            Some(&kind) if kind != wanted => Err(err(
                span,
                format!(
                    "type mismatch: '{name}' is already {}, it cannot also name {}",
                    kind.noun(),
                    wanted.noun()
                ),
            )),
            Some(Kind::Actor) => Err(err(span, format!("process '{name}' already exists"))),
            _ => Ok(()),
        }
    }

    fn process_of<'a>(&'a self, actor: &'a str) -> &'a str {
        self.process.get(actor).map_or(actor, String::as_str)
    }

    pub fn check_fd(&self, name: &str, actor: &str, span: Span) -> Result<(), ParseError> {
        let process = self.process_of(actor);
        if self.visible.get(process).is_some_and(|v| v.contains(name)) {
            return Ok(());
        }
        match self.kinds.get(name) {
            Some(Kind::Actor) => Err(err(
                span,
                format!("type mismatch: '{name}' is a process, not an fd"),
            )),
            Some(Kind::Fd) => Err(err(
                span,
                format!(
                    "undefined name '{name}' in process {actor} (another process made it after {actor} was forked)"
                ),
            )),
            None => Err(err(span, format!("undefined name '{name}'"))),
        }
    }

    /// Records a name for an fd the actor made (a pipe's or a socketpair's ends).
    pub fn bind_fd(&mut self, actor: &str, name: &str) {
        self.kinds.insert(name.to_string(), Kind::Fd);
        let process = self.process_of(actor).to_string();
        self.visible
            .entry(process)
            .or_default()
            .insert(name.to_string());
    }

    /// Records the names a step binds; `returns` is what its call returns.
    pub fn apply(&mut self, actor: &str, returns: Returns, expect: Option<&Expect>) {
        match (returns, expect) {
            (Returns::Actor, Some(Expect::Bind(child))) => {
                let inherited = self
                    .visible
                    .get(self.process_of(actor))
                    .cloned()
                    .unwrap_or_default();
                self.visible.insert(child.clone(), inherited);
                self.process.insert(child.clone(), child.clone());
                self.kinds.insert(child.clone(), Kind::Actor);
            }
            (Returns::Thread, Some(Expect::Bind(thread))) => {
                let process = self.process_of(actor).to_string();
                self.process.insert(thread.clone(), process);
                self.kinds.insert(thread.clone(), Kind::Actor);
            }
            (_, Some(Expect::Bind(name))) => self.bind_fd(actor, name),
            (_, Some(Expect::Capture(var))) => {
                self.captures.insert(var.clone());
            }
            _ => {}
        }
    }
}
