//! Ceilings on the resource settings a tenant may choose: memory per sort or
//! hash (`work_mem`, `hash_mem_multiplier`, ...) and the timeouts an operator
//! relies on (`statement_timeout`, ...). A value over its ceiling, or `0`
//! for a timeout (which disables it), is refused wherever it is given: `SET`,
//! `SET LOCAL`, `set_config()` and startup parameters.
//!
//! Input: setting values as untrusted client text. Only a strict subset of
//! what PostgreSQL accepts is read (a decimal number and one of its units);
//! anything else for a limited setting is refused, never guessed at.

use std::collections::BTreeMap;

/// How a setting's value is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Measure {
    /// Bytes; a number without a unit counts `base` bytes.
    Memory { base: f64 },
    /// Microseconds; a number without a unit counts `base` microseconds. Zero
    /// disables the timeout.
    Timeout { base: f64 },
    /// A plain number.
    Plain,
}

const KB: f64 = 1024.0;
const MS: f64 = 1000.0;

/// The settings a ceiling may be set on, with PostgreSQL's base units.
const LIMITABLE: &[(&str, Measure)] = &[
    ("work_mem", Measure::Memory { base: KB }),
    ("maintenance_work_mem", Measure::Memory { base: KB }),
    ("logical_decoding_work_mem", Measure::Memory { base: KB }),
    ("temp_buffers", Measure::Memory { base: 8.0 * KB }),
    ("hash_mem_multiplier", Measure::Plain),
    ("statement_timeout", Measure::Timeout { base: MS }),
    ("lock_timeout", Measure::Timeout { base: MS }),
    ("idle_in_transaction_session_timeout", Measure::Timeout { base: MS }),
    ("idle_session_timeout", Measure::Timeout { base: MS }),
];

/// The ceilings in force when the configuration names none: PostgreSQL's
/// defaults are 4MB, 64MB and 2.0, so ordinary tuning stays possible while
/// one query cannot take gigabytes of the shared server's memory.
pub const DEFAULT_LIMITS: &[(&str, &str)] = &[
    ("work_mem", "64MB"),
    ("maintenance_work_mem", "256MB"),
    ("logical_decoding_work_mem", "256MB"),
    ("temp_buffers", "64MB"),
    ("hash_mem_multiplier", "4"),
];

#[derive(Debug, Clone)]
struct Ceiling {
    name: &'static str,
    measure: Measure,
    /// In bytes, microseconds or plain units.
    max: f64,
    /// As the operator wrote it, for messages.
    shown: String,
}

/// The configured ceilings, by setting name.
#[derive(Debug, Clone, Default)]
pub struct SettingLimits {
    ceilings: Vec<Ceiling>,
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    /// Over the ceiling, or a timeout disabled.
    Exceeds { name: String, max: String },
    /// Not a value the proxy can compare (or not a constant).
    Unreadable { name: String, max: String },
}

impl SettingLimits {
    /// Builds the ceilings from `[guard.setting_limits]` (name to value);
    /// `None` takes [`DEFAULT_LIMITS`]. An empty map sets no ceiling.
    pub fn new(configured: Option<&BTreeMap<String, String>>) -> Result<SettingLimits, String> {
        let defaults: BTreeMap<String, String> = DEFAULT_LIMITS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let map = configured.unwrap_or(&defaults);
        let mut ceilings = Vec::new();
        for (raw_name, value) in map {
            let Some((name, measure)) = LIMITABLE.iter().find(|(n, _)| n.eq_ignore_ascii_case(raw_name)) else {
                let known: Vec<&str> = LIMITABLE.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "guard.setting_limits: no ceiling can be set on {raw_name:?} (known: {})",
                    known.join(", ")
                ));
            };
            let max = read(*measure, value)
                .filter(|v| *v > 0.0)
                .ok_or_else(|| format!("guard.setting_limits.{name}: {value:?} is not a positive value with a unit"))?;
            ceilings.push(Ceiling {
                name,
                measure: *measure,
                max,
                shown: value.trim().to_owned(),
            });
        }
        Ok(SettingLimits { ceilings })
    }

    fn ceiling(&self, name: &str) -> Option<&Ceiling> {
        self.ceilings.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Whether `name` has a ceiling.
    pub fn is_limited(&self, name: &str) -> bool {
        self.ceiling(name).is_some()
    }

    /// Checks a value a client asks for; `None` is a value that is not a
    /// constant (a parameter or an expression), refused for limited settings.
    pub fn check(&self, name: &str, value: Option<&str>) -> Result<(), LimitError> {
        let Some(c) = self.ceiling(name) else {
            return Ok(());
        };
        let unreadable = || LimitError::Unreadable {
            name: c.name.to_owned(),
            max: c.shown.clone(),
        };
        let v = read(c.measure, value.ok_or_else(unreadable)?).ok_or_else(unreadable)?;
        let disables = matches!(c.measure, Measure::Timeout { .. }) && v == 0.0;
        if disables || v > c.max {
            return Err(LimitError::Exceeds {
                name: c.name.to_owned(),
                max: c.shown.clone(),
            });
        }
        Ok(())
    }
}

/// Reads `[0-9]+(.[0-9]+)?` followed by an optional unit of `measure`
/// (PostgreSQL's unit names, which are case-sensitive), with surrounding
/// spaces; the amount in bytes, microseconds or plain units.
fn read(measure: Measure, value: &str) -> Option<f64> {
    let v = value.trim_matches(|c: char| c.is_ascii_whitespace());
    let number_end = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (number, unit) = v.split_at(number_end);
    let mut parts = number.splitn(2, '.');
    let int = parts.next()?;
    let frac = parts.next();
    if int.is_empty() || frac.is_some_and(|f| f.is_empty() || f.contains('.')) {
        return None;
    }
    if number.len() > 20 {
        return None;
    }
    let n: f64 = number.parse().ok()?;
    let unit = unit.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let scale = match measure {
        Measure::Plain => match unit {
            "" => 1.0,
            _ => return None,
        },
        Measure::Memory { base } => match unit {
            "" => base,
            "B" => 1.0,
            "kB" => KB,
            "MB" => KB * KB,
            "GB" => KB * KB * KB,
            "TB" => KB * KB * KB * KB,
            _ => return None,
        },
        Measure::Timeout { base } => match unit {
            "" => base,
            "us" => 1.0,
            "ms" => MS,
            "s" => MS * MS,
            "min" => 60.0 * MS * MS,
            "h" => 3600.0 * MS * MS,
            "d" => 86_400.0 * MS * MS,
            _ => return None,
        },
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> SettingLimits {
        let map = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        SettingLimits::new(Some(&map)).unwrap()
    }

    #[test]
    fn defaults_cap_memory_and_leave_timeouts_alone() {
        let l = SettingLimits::new(None).unwrap();
        assert!(l.check("work_mem", Some("64MB")).is_ok());
        assert!(l.check("WORK_MEM", Some("65536")).is_ok());
        assert!(l.check("work_mem", Some("65537")).is_err());
        assert!(l.check("work_mem", Some("600MB")).is_err());
        assert!(l.check("work_mem", Some("1GB")).is_err());
        assert!(l.check("hash_mem_multiplier", Some("4")).is_ok());
        assert!(l.check("hash_mem_multiplier", Some("1000")).is_err());
        assert!(l.check("statement_timeout", Some("0")).is_ok());
        assert!(l.check("search_path", Some("anything")).is_ok());
    }

    #[test]
    fn timeouts_cannot_be_lifted_or_disabled() {
        let l = limits(&[("statement_timeout", "30s")]);
        for ok in ["30s", "30000", "500ms", " 0.5 min ", "0.5min", "29999999us"] {
            assert!(l.check("statement_timeout", Some(ok)).is_ok(), "{ok}");
        }
        for bad in ["0", "31s", "1h", "30001"] {
            assert_eq!(
                l.check("statement_timeout", Some(bad)),
                Err(LimitError::Exceeds {
                    name: "statement_timeout".into(),
                    max: "30s".into()
                }),
                "{bad}"
            );
        }
        // Forms the proxy does not read are refused, not guessed at.
        for odd in ["0x10", "1e3", "30S", "-1", "1.2.3", "", "default", "30 sec"] {
            assert!(
                matches!(
                    l.check("statement_timeout", Some(odd)),
                    Err(LimitError::Unreadable { .. })
                ),
                "{odd}"
            );
        }
        assert!(matches!(
            l.check("statement_timeout", None),
            Err(LimitError::Unreadable { .. })
        ));
    }

    #[test]
    fn configuration_is_validated() {
        let bad = |k: &str, v: &str| {
            let map = [(k.to_owned(), v.to_owned())].into_iter().collect();
            SettingLimits::new(Some(&map)).unwrap_err()
        };
        assert!(bad("search_path", "1").contains("no ceiling can be set"));
        assert!(bad("work_mem", "lots").contains("not a positive value"));
        assert!(bad("work_mem", "0").contains("not a positive value"));
        let none = SettingLimits::new(Some(&BTreeMap::new())).unwrap();
        assert!(none.check("work_mem", Some("100GB")).is_ok());
    }
}
