//! Bind tokens: the random single-use tokens `/get_bind_token` issues and `/set_user_banding`
//! redeems, in their two forms (24 base64url characters, or 8 digits for typing).

use base64::Engine;
use rand::Rng;

/// Random bytes of a token in the default form.
const TOKEN_BYTES: usize = 18;
/// Digits of a token in the `digits` form.
pub const DIGITS: usize = 8;

/// A token in the default form: 144 random bits, base64url without padding.
pub fn new_token() -> String {
    let mut b = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill(&mut b[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A token in the `digits` form: 8 uniformly random decimal digits.
pub fn new_digits() -> String {
    let n: u32 = rand::rngs::OsRng.gen_range(0..100_000_000);
    format!("{n:0width$}", width = DIGITS)
}

/// Whether `s` has the shape of a bind token of either form (so that anything else is refused
/// before the database is asked).
pub fn plausible(s: &str) -> bool {
    let n = s.len();
    (n == DIGITS && s.bytes().all(|c| c.is_ascii_digit()))
        || (n == 24
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_random_and_recognized() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(plausible(&a));
        let d = new_digits();
        assert_eq!(d.len(), 8);
        assert!(d.bytes().all(|c| c.is_ascii_digit()));
        assert!(plausible(&d));
        assert!(!plausible("1234567"));
        assert!(!plausible("abc/def"));
        assert!(!plausible(&format!("{a}x")));
    }
}
