//! Tesla's two text rewrites of `V` values, matching its Go code: legacy location text and
//! scientific notation.

/// Go's `fmt.Sscanf(s, "(%f %1s, %f %1s)")` followed by the N/S/E/W check: a space in the
/// format needs one or more spaces in the input (or its end), verbs skip leading spaces,
/// and text after `)` is ignored.
pub(crate) fn parse_location(s: &str) -> Option<(f64, f64)> {
    let rest = s.strip_prefix('(')?;
    let (lat, rest) = scan_float(rest)?;
    let (lat_q, rest) = scan_char(format_space(rest)?)?;
    let rest = format_space(rest.strip_prefix(',')?)?;
    let (lon, rest) = scan_float(rest)?;
    let (lon_q, rest) = scan_char(format_space(rest)?)?;
    rest.strip_prefix(')')?;
    let lat = match lat_q {
        'N' => lat,
        'S' => -lat,
        _ => return None,
    };
    let lon = match lon_q {
        'E' => lon,
        'W' => -lon,
        _ => return None,
    };
    Some((lat, lon))
}

fn is_space(c: char) -> bool {
    c.is_whitespace() && c != '\n'
}

fn format_space(s: &str) -> Option<&str> {
    let trimmed = s.trim_start_matches(is_space);
    (s.is_empty() || trimmed.len() < s.len()).then_some(trimmed)
}

fn scan_char(s: &str) -> Option<(char, &str)> {
    let s = s.trim_start_matches(is_space);
    let c = s.chars().next()?;
    Some((c, &s[c.len_utf8()..]))
}

/// Go's `%f` token: `nan`, or sign, `inf`, or digits, fraction and exponent.
fn scan_float(s: &str) -> Option<(f64, &str)> {
    let s = s.trim_start_matches(is_space);
    let b = s.as_bytes();
    let starts = |i: usize, word: &str| {
        b.get(i..i + 3)
            .is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    };
    let mut i = 0;
    if starts(0, "nan") {
        i = 3;
    } else {
        if matches!(b.first(), Some(b'+' | b'-')) {
            i = 1;
        }
        if starts(i, "inf") {
            i += 3;
        } else {
            let digits = |i: &mut usize| {
                while b.get(*i).is_some_and(u8::is_ascii_digit) {
                    *i += 1;
                }
            };
            digits(&mut i);
            if b.get(i) == Some(&b'.') {
                i += 1;
                digits(&mut i);
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                digits(&mut i);
            }
        }
    }
    let value = s[..i].parse::<f64>().ok()?;
    Some((value, &s[i..]))
}

/// Tesla's scientific-notation rewrite: text matching
/// `^[+-]?(\d*\.\d+|\d+\.\d*)([eE][+-]?\d+)$` whose float32 parse is finite becomes
/// `%.5f` of that float32.
pub(crate) fn fixed_point(s: &str) -> Option<String> {
    if !is_scientific(s) {
        return None;
    }
    let v = s.parse::<f32>().ok().filter(|v| v.is_finite())?;
    Some(format!("{:.5}", f64::from(v)))
}

fn is_scientific(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let count = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_digits = count(&mut i);
    if b.get(i) != Some(&b'.') {
        return false;
    }
    i += 1;
    let frac_digits = count(&mut i);
    if int_digits + frac_digits == 0 || !matches!(b.get(i), Some(b'e' | b'E')) {
        return false;
    }
    i += 1;
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    count(&mut i) > 0 && i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_text_follows_go_sscanf() {
        assert_eq!(
            parse_location("(37.412374 N, 122.145867 W)"),
            Some((37.412374, -122.145867))
        );
        assert_eq!(parse_location("(1.5 S, 2 E)"), Some((-1.5, 2.0)));
        assert_eq!(parse_location("(1 N,   2 E) trailing"), Some((1.0, 2.0)));
        assert_eq!(parse_location("(  1 N, 2 E)"), Some((1.0, 2.0)));
        assert_eq!(
            parse_location("(1N, 2E)"),
            None,
            "format spaces need input spaces"
        );
        assert_eq!(parse_location("(1 N,2 E)"), None);
        assert_eq!(parse_location("(1 X, 2 E)"), None);
        assert_eq!(parse_location("(1 N, 2 E"), None);
        assert_eq!(parse_location(" (1 N, 2 E)"), None);
        assert_eq!(parse_location("(abc N, 2 E)"), None);
        assert_eq!(parse_location(""), None);
    }

    #[test]
    fn scientific_text_becomes_fixed_point_of_its_float32() {
        assert_eq!(fixed_point("1.5e-3").as_deref(), Some("0.00150"));
        assert_eq!(fixed_point("-3.75e-1").as_deref(), Some("-0.37500"));
        assert_eq!(fixed_point("1.5E+1").as_deref(), Some("15.00000"));
        assert_eq!(fixed_point(".5e1").as_deref(), Some("5.00000"));
        assert_eq!(fixed_point("5.e1").as_deref(), Some("50.00000"));
        assert_eq!(fixed_point("1.25e-3").as_deref(), Some("0.00125"));
        assert_eq!(fixed_point("1.0e-50").as_deref(), Some("0.00000"));
        assert_eq!(fixed_point("1.0e50"), None, "out of float32 range");
        assert_eq!(fixed_point("1e5"), None, "needs a decimal point");
        assert_eq!(fixed_point("1.5"), None, "needs an exponent");
        assert_eq!(fixed_point(".e1"), None);
        assert_eq!(fixed_point("1.5e"), None);
        assert_eq!(fixed_point("1.5e3 "), None);
        assert_eq!(fixed_point("٣.5e1"), None, "ASCII digits only");
    }
}
