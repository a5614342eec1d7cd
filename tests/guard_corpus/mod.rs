//! Loader for the guard's statement corpora (`must_pass.sql`, `attacks.sql`).
//!
//! Shared by the pure guard tests and the through-the-proxy tests: include it
//! with `mod guard_corpus;` from any file in `tests/`. Each case starts with a
//! header line `-- @case <name> [class N] [code XXXXX] [rewrite] [hex]`; the
//! body is every following line up to the next header, with trailing
//! whitespace removed. `[hex]` bodies are hex digits (whitespace ignored) so
//! input that is not valid UTF-8 can be written down.

#![allow(dead_code)]

/// What the guard must answer for a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Forwarded unchanged.
    Allow,
    /// Forwarded after tenant-scoping (LISTEN/NOTIFY/UNLISTEN).
    Rewrite,
    /// Refused with this SQLSTATE.
    Deny(String),
}

/// One corpus entry.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique name, used in test failure messages.
    pub name: String,
    /// The threat-model class (1-8) an attack belongs to; `None` for must-pass.
    pub class: Option<u8>,
    /// The exact message body (Query text or Parse query string).
    pub sql: Vec<u8>,
    /// The expected verdict.
    pub expect: Expect,
}

impl Case {
    /// The body as text, when it is valid UTF-8 (every case but `[hex]` ones).
    pub fn sql_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.sql).ok()
    }
}

const MUST_PASS: &str = include_str!("must_pass.sql");
const ATTACKS: &str = include_str!("attacks.sql");

/// Statements that must pass (Allow, or Rewrite where marked).
pub fn must_pass() -> Vec<Case> {
    parse(MUST_PASS, false)
}

/// Attempts that must be refused.
pub fn attacks() -> Vec<Case> {
    parse(ATTACKS, true)
}

fn parse(text: &str, attacks: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut current: Option<(Header, Vec<&str>)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("-- @case ") {
            if let Some((h, body)) = current.take() {
                cases.push(finish(h, &body, attacks));
            }
            current = Some((header(rest), Vec::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    if let Some((h, body)) = current.take() {
        cases.push(finish(h, &body, attacks));
    }
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate case names in corpus");
    cases
}

struct Header {
    name: String,
    class: Option<u8>,
    code: Option<String>,
    rewrite: bool,
    hex: bool,
}

fn header(rest: &str) -> Header {
    let mut words = rest.split_whitespace();
    let name = words.next().unwrap_or_default().to_owned();
    assert!(!name.is_empty(), "corpus case without a name");
    let tags: Vec<&str> = words.collect();
    let tags = tags.join(" ");
    let mut h = Header {
        name,
        class: None,
        code: None,
        rewrite: false,
        hex: false,
    };
    for tag in tags.split('[').filter_map(|t| t.split(']').next()) {
        let tag = tag.trim();
        if let Some(n) = tag.strip_prefix("class ") {
            h.class = n.trim().parse().ok();
            assert!(h.class.is_some(), "bad class in case {}", h.name);
        } else if let Some(c) = tag.strip_prefix("code ") {
            h.code = Some(c.trim().to_owned());
        } else if tag == "rewrite" {
            h.rewrite = true;
        } else if tag == "hex" {
            h.hex = true;
        } else {
            assert!(tag.is_empty(), "unknown tag [{tag}] in case {}", h.name);
        }
    }
    h
}

fn finish(h: Header, body: &[&str], attacks: bool) -> Case {
    let text = body.join("\n");
    let text = text.trim_end();
    let sql = if h.hex {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(digits.len() % 2 == 0, "odd hex in case {}", h.name);
        digits
            .chunks(2)
            .map(|pair| {
                let s = std::str::from_utf8(pair).unwrap_or("zz");
                u8::from_str_radix(s, 16).unwrap_or_else(|_| panic!("bad hex in case {}", h.name))
            })
            .collect()
    } else {
        text.as_bytes().to_vec()
    };
    let expect = if attacks {
        Expect::Deny(h.code.unwrap_or_else(|| "42501".to_owned()))
    } else if h.rewrite {
        Expect::Rewrite
    } else {
        Expect::Allow
    };
    Case {
        name: h.name,
        class: h.class,
        sql,
        expect,
    }
}
