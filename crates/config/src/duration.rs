//! Durations as people write them: `500ms`, `10s`, `2m`, `1h`, and sums such as `1m30s`.

use jiff::SignedDuration;

/// The longest duration a rule may use; ACW windows are minutes, not days.
const MAX_MS: i64 = 24 * 60 * 60 * 1000;

pub(crate) fn parse(text: &str) -> Result<SignedDuration, String> {
    parse_within(text, MAX_MS, "24h")
}

/// [`parse`] with another upper bound (`longest` says it in words).
pub(crate) fn parse_within(text: &str, max_ms: i64, longest: &str) -> Result<SignedDuration, String> {
    let bad = || format!("invalid duration {text:?}: write e.g. `500ms`, `10s`, `2m`, `1m30s`");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let per_unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(per_unit)
            .and_then(|ms| total.checked_add(ms))
            .filter(|t| *t <= max_ms)
            .ok_or_else(|| format!("duration {text:?} is longer than {longest}"))?;
    }
    Ok(SignedDuration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_sums() {
        assert_eq!(parse("500ms").unwrap(), SignedDuration::from_millis(500));
        assert_eq!(parse("10s").unwrap(), SignedDuration::from_secs(10));
        assert_eq!(parse("1m30s").unwrap(), SignedDuration::from_secs(90));
        assert_eq!(parse("0s").unwrap(), SignedDuration::ZERO);
        for bad in ["", "10", "s", "10 s", "-5s", "1.5s", "10sec", "99999999999999999999s", "25h"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
