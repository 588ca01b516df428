//! The `Range` header, as much of RFC 9110 as a media download needs: one byte range.

use std::ops::Range;

#[derive(Debug, PartialEq, Eq)]
pub enum Requested {
    /// No usable Range header (absent, malformed, several ranges): send the whole object.
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, size: u64) -> Requested {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Requested::Whole;
    };
    if spec.contains(',') {
        return Requested::Whole;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Requested::Whole;
    };
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.is_empty(), end.is_empty()) {
        (true, true) => return Requested::Whole,
        // Suffix: the last N bytes.
        (true, false) => match end.parse::<u64>() {
            Ok(0) => return Requested::Unsatisfiable,
            Ok(n) => size.saturating_sub(n)..size,
            Err(_) => return Requested::Whole,
        },
        (false, _) => {
            let Ok(first) = start.parse::<u64>() else {
                return Requested::Whole;
            };
            let last = match end.is_empty() {
                true => size.saturating_sub(1),
                false => match end.parse::<u64>() {
                    Ok(last) if last >= first => last.min(size.saturating_sub(1)),
                    _ => return Requested::Whole,
                },
            };
            if first >= size {
                return Requested::Unsatisfiable;
            }
            first..last + 1
        }
    };
    if range.is_empty() {
        return Requested::Unsatisfiable;
    }
    Requested::Part(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_of_a_single_range() {
        assert_eq!(parse(Some("bytes=0-9"), 100), Requested::Part(0..10));
        assert_eq!(parse(Some("bytes=90-"), 100), Requested::Part(90..100));
        assert_eq!(parse(Some("bytes=-10"), 100), Requested::Part(90..100));
        assert_eq!(parse(Some("bytes=-1000"), 100), Requested::Part(0..100));
        assert_eq!(parse(Some("bytes=50-1000"), 100), Requested::Part(50..100));
    }

    #[test]
    fn what_cannot_be_served() {
        assert_eq!(parse(Some("bytes=100-"), 100), Requested::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), Requested::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-1,5-6"), 100), Requested::Whole);
        assert_eq!(parse(Some("items=0-1"), 100), Requested::Whole);
        assert_eq!(parse(Some("bytes=5-1"), 100), Requested::Whole);
        assert_eq!(parse(None, 100), Requested::Whole);
    }
}
