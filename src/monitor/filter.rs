//! A BPF-like flow filter, as mOS binds to a monitoring socket: `tcp`, `[src|dst] host ADDR`,
//! `[src|dst] net ADDR/LEN`, `[src|dst] port N`, `[src|dst] portrange A-B`, combined with
//! `and`/`&&`, `or`/`||`, `not`/`!` and parentheses (and binds tighter than or).
//!
//! A filter is checked per packet on its addresses, so a flow matches in both directions when
//! the expression is symmetric (`host`, `port`), as with tcpdump.

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

use super::packet::Segment;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct FilterError(String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Prim {
    Tcp,
    Net(IpAddr, u8),
    Ports(u16, u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Test(Dir, Prim),
}

/// A parsed filter expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    root: Node,
    text: String,
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let spaced = text
            .replace('(', " ( ")
            .replace(')', " ) ")
            .replace("&&", " and ")
            .replace("||", " or ")
            .replace('!', " not ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        if tokens.is_empty() {
            return Err(FilterError("empty expression".into()));
        }
        let mut p = Parser { tokens, at: 0 };
        let root = p.or()?;
        if let Some(t) = p.peek() {
            return Err(FilterError(format!("unexpected '{t}'")));
        }
        Ok(Filter {
            root,
            text: text.to_string(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, seg: &Segment) -> bool {
        eval(&self.root, seg.src, seg.dst)
    }
}

fn eval(node: &Node, src: SocketAddr, dst: SocketAddr) -> bool {
    match node {
        Node::And(a, b) => eval(a, src, dst) && eval(b, src, dst),
        Node::Or(a, b) => eval(a, src, dst) || eval(b, src, dst),
        Node::Not(a) => !eval(a, src, dst),
        Node::Test(dir, prim) => {
            let hit = |addr: SocketAddr| match prim {
                Prim::Tcp => true,
                Prim::Net(net, len) => in_net(addr.ip(), *net, *len),
                Prim::Ports(lo, hi) => (*lo..=*hi).contains(&addr.port()),
            };
            match dir {
                Dir::Src => hit(src),
                Dir::Dst => hit(dst),
                Dir::Any => hit(src) || hit(dst),
            }
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    let (a, b, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let len = u32::from(len).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (a >> shift) == (b >> shift)
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.at).copied()
    }
    fn next(&mut self, what: &str) -> Result<&'a str, FilterError> {
        let t = self
            .peek()
            .ok_or_else(|| FilterError(format!("expected {what} at the end")))?;
        self.at += 1;
        Ok(t)
    }

    fn or(&mut self) -> Result<Node, FilterError> {
        let mut left = self.and()?;
        while self.peek() == Some("or") {
            self.at += 1;
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, FilterError> {
        let mut left = self.unary()?;
        while self.peek() == Some("and") {
            self.at += 1;
            left = Node::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, FilterError> {
        match self.next("an expression")? {
            "not" => Ok(Node::Not(Box::new(self.unary()?))),
            "(" => {
                let inner = self.or()?;
                match self.next("')'")? {
                    ")" => Ok(inner),
                    t => Err(FilterError(format!("expected ')', found '{t}'"))),
                }
            }
            t => {
                self.at -= 1;
                self.primitive(t)
            }
        }
    }

    fn primitive(&mut self, first: &str) -> Result<Node, FilterError> {
        self.at += 1;
        let (dir, kw) = match first {
            "src" => (Dir::Src, self.next("host, net, port or portrange")?),
            "dst" => (Dir::Dst, self.next("host, net, port or portrange")?),
            kw => (Dir::Any, kw),
        };
        let prim = match kw {
            "tcp" if dir == Dir::Any => Prim::Tcp,
            "host" => {
                let v = self.next("an address")?;
                let ip: IpAddr = v
                    .parse()
                    .map_err(|_| FilterError(format!("bad host address '{v}'")))?;
                Prim::Net(ip, 128)
            }
            "net" => {
                let v = self.next("a network")?;
                let (a, l) = v.split_once('/').unwrap_or((v, ""));
                let ip: IpAddr = a
                    .parse()
                    .map_err(|_| FilterError(format!("bad network '{v}'")))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len = if l.is_empty() {
                    max
                } else {
                    l.parse::<u8>()
                        .ok()
                        .filter(|&n| n <= max)
                        .ok_or_else(|| FilterError(format!("bad prefix length in '{v}'")))?
                };
                Prim::Net(ip, len)
            }
            "port" => {
                let p = port(self.next("a port")?)?;
                Prim::Ports(p, p)
            }
            "portrange" => {
                let v = self.next("a port range")?;
                let (a, b) = v
                    .split_once('-')
                    .ok_or_else(|| FilterError(format!("bad port range '{v}' (want A-B)")))?;
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(FilterError(format!("empty port range '{v}'")));
                }
                Prim::Ports(a, b)
            }
            t => return Err(FilterError(format!("unknown primitive '{t}'"))),
        };
        Ok(Node::Test(dir, prim))
    }
}

fn port(s: &str) -> Result<u16, FilterError> {
    s.parse()
        .map_err(|_| FilterError(format!("bad port '{s}' (want a number 0-65535)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(src: &str, dst: &str) -> Segment<'static> {
        Segment {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq: 0,
            ack: 0,
            flags: 0,
            window: 0,
            payload: b"",
        }
    }

    #[test]
    fn primitives_and_precedence() {
        let s = seg("10.1.2.3:40000", "192.168.0.9:80");
        let yes = [
            "tcp",
            "host 10.1.2.3",
            "src host 10.1.2.3",
            "dst port 80",
            "port 40000",
            "net 10.0.0.0/8",
            "dst net 192.168.0.0/16",
            "portrange 79-81",
            "src portrange 39000-41000 and dst port 80",
            "port 1 or port 80",
            "not port 1",
            "port 1 or port 2 or (host 10.1.2.3 && !port 3)",
            "port 1 and port 2 or port 80",
        ];
        for e in yes {
            assert!(Filter::parse(e).unwrap().matches(&s), "{e}");
        }
        let no = [
            "dst host 10.1.2.3",
            "src port 80",
            "net 11.0.0.0/8",
            "port 80 and port 81",
            "host ::1",
            "port 80 and (port 1 or port 2)",
        ];
        for e in no {
            assert!(!Filter::parse(e).unwrap().matches(&s), "{e}");
        }
        assert!(
            Filter::parse("host ::1")
                .unwrap()
                .matches(&seg("[::1]:1", "[::1]:2"))
        );
    }

    #[test]
    fn errors_name_the_problem() {
        for (e, msg) in [
            ("", "empty expression"),
            ("port", "expected a port at the end"),
            ("port x", "bad port 'x' (want a number 0-65535)"),
            ("host 1.2.3", "bad host address '1.2.3'"),
            ("portrange 9-1", "empty port range '9-1'"),
            ("(port 1", "expected ')' at the end"),
            ("port 1 port 2", "unexpected 'port'"),
            ("udp", "unknown primitive 'udp'"),
            ("net 10.0.0.0/33", "bad prefix length in '10.0.0.0/33'"),
        ] {
            assert_eq!(Filter::parse(e).unwrap_err().to_string(), msg);
        }
    }
}
