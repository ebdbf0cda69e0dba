//! Splits one scenario line into tokens with their columns. Scenarios are line-oriented, so
//! the lexer never crosses a newline; `#` starts a comment that runs to the end of the line.

use super::ast::Span;
use super::error::ParseError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A name, flag or keyword: `L`, `EPOLLIN`, `C$i`, `step_timeout`.
    Ident(String),
    /// `$name`: a captured value.
    Var(String),
    Int(i64),
    Str(Vec<u8>),
    /// `( ) [ ] { } , = | & : ?`
    Punct(char),
    /// `..`
    Range,
    /// `...`
    Ellipsis,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Var(s) => format!("'${s}'"),
            Tok::Int(i) => format!("'{i}'"),
            Tok::Str(_) => "a string".into(),
            Tok::Punct(c) => format!("'{c}'"),
            Tok::Range => "'..'".into(),
            Tok::Ellipsis => "'...'".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// Tokenises line `line_no` (1-based).
pub fn lex_line(text: &str, line_no: usize) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let span = Span {
            line: line_no,
            col: i + 1,
        };
        let err = |msg: String| ParseError::new(span, msg);
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        let tok = if c == '.' {
            let dots = chars[i..].iter().take_while(|&&d| d == '.').count();
            i += dots;
            match dots {
                2 => Tok::Range,
                3 => Tok::Ellipsis,
                n => return Err(err(format!("unexpected '{}'", ".".repeat(n)))),
            }
        } else if c == '"' {
            let (bytes, next) = lex_string(&chars, i, span)?;
            i = next;
            Tok::Str(bytes)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            let hex = chars[start..].starts_with(&['0', 'x']);
            if hex {
                i += 1;
            }
            // `5s` is the number 5 then the unit `s`, so stop at the first non-digit.
            while i < chars.len()
                && (chars[i].is_ascii_digit() || (hex && chars[i].is_ascii_hexdigit()))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let parsed = if let Some(hex) = word.strip_prefix("0x") {
                i64::from_str_radix(hex, 16).ok()
            } else {
                word.parse::<i64>().ok()
            };
            Tok::Int(parsed.ok_or_else(|| err(format!("invalid number '{word}'")))?)
        } else if c == '$' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if i == start {
                return Err(err("'$' must be followed by a name, as in $n".into()));
            }
            Tok::Var(chars[start..i].iter().collect())
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (is_ident_char(chars[i]) || chars[i] == '-') {
                i += 1;
            }
            Tok::Ident(chars[start..i].iter().collect())
        } else if "()[]{},=|&:?>".contains(c) {
            i += 1;
            Tok::Punct(c)
        } else {
            return Err(err(format!("unexpected character '{c}'")));
        };
        tokens.push(Token { tok, span });
    }
    Ok(tokens)
}

/// A cursor over one line's tokens.
pub struct Cursor<'a> {
    tokens: &'a [Token],
    pos: usize,
    /// Where the line ends, for "expected ... at end of line" errors.
    end: Span,
}

impl<'a> Cursor<'a> {
    pub fn new(tokens: &'a [Token]) -> Cursor<'a> {
        let end = tokens.last().map_or(Span { line: 1, col: 1 }, |t| Span {
            line: t.span.line,
            col: t.span.col + 1,
        });
        Cursor {
            tokens,
            pos: 0,
            end,
        }
    }

    pub fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    pub fn next(&mut self) -> Option<&'a Token> {
        let t = self.tokens.get(self.pos);
        self.pos += 1;
        t
    }

    pub fn span(&self) -> Span {
        self.peek().map_or(self.end, |t| t.span)
    }

    pub fn eat(&mut self, c: char) -> bool {
        if self.peek().is_some_and(|t| t.tok == Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect(&mut self, c: char, context: &str) -> Result<Span, ParseError> {
        let span = self.span();
        if self.eat(c) {
            Ok(span)
        } else {
            Err(ParseError::new(
                span,
                format!("expected '{c}' {context}, found {}", self.found()),
            ))
        }
    }

    pub fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "end of line".into(), |t| t.tok.describe())
    }

    pub fn ident(&mut self, what: &str) -> Result<(String, Span), ParseError> {
        let span = self.span();
        match self.next() {
            Some(Token {
                tok: Tok::Ident(name),
                ..
            }) => Ok((name.clone(), span)),
            _ => {
                self.pos -= 1;
                Err(ParseError::new(
                    span,
                    format!("expected {what}, found {}", self.found()),
                ))
            }
        }
    }
}

/// A C-style string: `\n \r \t \0 \\ \"` and `\xNN`.
fn lex_string(chars: &[char], start: usize, span: Span) -> Result<(Vec<u8>, usize), ParseError> {
    let mut bytes = Vec::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(ParseError::new(span, "unterminated string".into()));
        };
        i += 1;
        match c {
            '"' => return Ok((bytes, i)),
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err(ParseError::new(span, "unterminated string".into()));
                };
                i += 1;
                match e {
                    'n' => bytes.push(b'\n'),
                    'r' => bytes.push(b'\r'),
                    't' => bytes.push(b'\t'),
                    // Octal, as strace prints bytes: `\0`, `\1`, `\377`.
                    '0'..='7' => {
                        let mut value = u32::from(e) - u32::from('0');
                        let mut digits = 1;
                        while digits < 3 && chars.get(i).is_some_and(|c| ('0'..='7').contains(c)) {
                            value = value * 8 + (u32::from(chars[i]) - u32::from('0'));
                            i += 1;
                            digits += 1;
                        }
                        let byte = u8::try_from(value).map_err(|_| {
                            let at = Span {
                                line: span.line,
                                col: i - digits,
                            };
                            ParseError::new(at, format!("octal escape \\{value:o} is over \\377"))
                        })?;
                        bytes.push(byte);
                    }
                    '\\' => bytes.push(b'\\'),
                    '"' => bytes.push(b'"'),
                    'x' => {
                        let hex: String = chars.get(i..i + 2).unwrap_or(&[]).iter().collect();
                        let value = u8::from_str_radix(&hex, 16).map_err(|_| {
                            let at = Span {
                                line: span.line,
                                col: i + 1,
                            };
                            ParseError::new(at, "\\x needs two hex digits".into())
                        })?;
                        bytes.push(value);
                        i += 2;
                    }
                    other => {
                        let at = Span {
                            line: span.line,
                            col: i,
                        };
                        return Err(ParseError::new(at, format!("unknown escape '\\{other}'")));
                    }
                }
            }
            c => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}
