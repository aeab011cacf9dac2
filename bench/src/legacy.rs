//! The captcha as the service drew it before this benchmark (the `captcha` crate's whole
//! pipeline: font parsed per image, filters on its 400×300 canvas, lodepng), kept to show the
//! before/after figures side by side in every run.

use captcha::filters::{Noise, Wave};
use rand::Rng;

const ALPHABET: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'k', 'm', 'n', 'p', 'r', 't', 'w', 'x', 'y', '3', '4',
    '6', '7', '9',
];

pub fn generate(len: usize) -> Option<(String, Vec<u8>)> {
    let supported: Vec<char> = captcha::Captcha::new().supported_chars();
    let mut rng = rand::thread_rng();
    let chars: Vec<char> = (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
        .collect();
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
