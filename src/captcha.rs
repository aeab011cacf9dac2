//! Captcha images (`/verify_code`) drawn with the `captcha` crate.
//!
//! The alphabet leaves out look-alikes (0/O, 1/l/I, 5/S, 2/Z, 8/B); answers are compared
//! case-insensitively. Challenges live in the store, so they are single-use across restarts (and
//! across instances sharing a database).

use captcha::filters::{Noise, Wave};
use rand::Rng;

/// Characters a captcha may show.
const ALPHABET: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'k', 'm', 'n', 'p', 'r', 't', 'w', 'x', 'y', '3', '4',
    '6', '7', '9',
];

/// Draw `answer` if given (tests' `fixed_answer`), else a random code of `len` characters.
/// Returns the answer (lower case) and the PNG.
pub fn generate(len: usize, answer: Option<&str>) -> Option<(String, Vec<u8>)> {
    let supported: Vec<char> = captcha::Captcha::new().supported_chars();
    let chars: Vec<char> = match answer {
        Some(a) => a.chars().collect(),
        None => {
            let mut rng = rand::thread_rng();
            (0..len)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
                .collect()
        }
    };
    let mut c = captcha::Captcha::new();
    for ch in &chars {
        if !supported.contains(ch) {
            return None;
        }
        c.set_chars(&[*ch]);
        c.add_char();
    }
    c.apply_filter(Noise::new(0.2))
        .apply_filter(Wave::new(2.0, 12.0))
        .view(220, 90);
    let png = c.as_png()?;
    Some((chars.iter().collect::<String>().to_lowercase(), png))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_pngs() {
        let (a, png) = generate(5, None).unwrap();
        assert_eq!(a.chars().count(), 5);
        assert!(a.chars().all(|c| ALPHABET.contains(&c)));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let (a, _) = generate(5, Some("abcde")).unwrap();
        assert_eq!(a, "abcde");
    }
}
