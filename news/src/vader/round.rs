//! Python's `round(x, ndigits)` for floats: the decimal nearest to the exact binary value of `x`
//! (ties to even), read back as the nearest double.

use std::fmt::Write as _;

/// `round(x, digits)` as CPython computes it, for `digits` in 0..=15.
pub(crate) fn py_round(x: f64, digits: u8) -> f64 {
    let scale = 10f64.powi(i32::from(digits));
    let scaled = x * scale;
    // `scaled` is within half an ulp of the exact product: unless it lies very near a tie, its
    // nearest integer is the exact product's, and integer / 10^digits is then the double nearest
    // to that decimal, as CPython's dtoa/strtod round trip gives.
    let distance_to_tie = (scaled - scaled.trunc()).abs() - 0.5;
    if distance_to_tie.abs() > 1e-6 || !scaled.is_finite() {
        return scaled.round_ties_even() / scale;
    }
    exact(x, digits)
}

/// The slow path near ties: std's formatting rounds the exact binary value, ties to even, like
/// CPython's `_Py_dg_dtoa` mode 3.
fn exact(x: f64, digits: u8) -> f64 {
    let mut buf = String::with_capacity(32);
    // Writing to a String cannot fail, and the decimal it writes always parses.
    let _ = write!(buf, "{x:.*}", usize::from(digits));
    buf.parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_even_on_the_exact_value() {
        // Exact binary ties (k/32): even digit wins.
        assert_eq!(py_round(0.03125, 4), 0.0312);
        assert_eq!(py_round(0.09375, 4), 0.0938);
        assert_eq!(py_round(-0.03125, 4), -0.0312);
        assert_eq!(py_round(0.0625, 3), 0.062);
        assert_eq!(py_round(0.1875, 3), 0.188);
        // Not ties: 0.00015 is stored just below, 0.00025 just above.
        assert_eq!(py_round(0.00015, 4), 0.0001);
        assert_eq!(py_round(2.675, 2), 2.67);
        assert_eq!(py_round(0.5719, 4), 0.5719);
        assert_eq!(py_round(-1.0, 4), -1.0);
        assert_eq!(py_round(0.0, 3), 0.0);
    }

    #[test]
    fn fast_and_exact_paths_agree_away_from_ties() {
        let mut x = -1.0_f64;
        while x <= 1.0 {
            assert_eq!(py_round(x, 4), exact(x, 4), "{x}");
            assert_eq!(py_round(x, 3), exact(x, 3), "{x}");
            x += 0.000_013_7;
        }
    }
}
