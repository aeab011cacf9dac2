//! Captcha images (`/verify_code`): the `captcha` crate's glyphs, composed and encoded here.
//!
//! The alphabet leaves out look-alikes (0/O, 1/l/I, 5/S, 2/Z, 8/B); answers are compared
//! case-insensitively. Challenges live in the store, so they are single-use across restarts (and
//! across instances sharing a database).
//!
//! Drawing a whole image with the crate costs milliseconds: every `Captcha::new` parses its font
//! (JSON with base64 PNGs), each character is decoded from PNG again, the noise and wave filters
//! run over a 400×300 canvas, and the result is deflated by lodepng. Here each glyph is drawn by
//! the crate once (its own PNG, decoded with the `png` crate) and kept; an image is then composed
//! directly at its final 220×90 size with the same placement, noise (20 %), wave (2 periods per
//! 400 px, amplitude 12 px) and centring as the crate's pipeline, and written as a 2-bit grayscale
//! PNG with the fastest compression. The answer and the noise come from the thread's CSPRNG.

use std::collections::HashMap;
use std::sync::OnceLock;

use rand::{Rng, RngCore};

/// Characters a captcha may show.
const ALPHABET: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'k', 'm', 'n', 'p', 'r', 't', 'w', 'x', 'y', '3', '4',
    '6', '7', '9',
];

/// The image size.
const W: usize = 220;
const H: usize = 90;
/// The crate's canvas, on which glyphs start at x = CANVAS_W / 4 around y = CANVAS_H / 2.
const CANVAS_W: i64 = 400;
const CANVAS_H: i64 = 300;
/// `Noise::new(0.2)`: a byte below this is a black pixel (51/256 ≈ 0.2).
const NOISE_BELOW: u8 = 51;
/// Bits per pixel of the PNG: 4 gray levels keep the glyphs' anti-aliased edges and make a
/// 5 KB image without compressing (the crate's lodepng output was about as large).
const DEPTH: usize = 2;
/// `Wave::new(2.0, 12.0)`.
const WAVE_PERIODS: f64 = 2.0;
const WAVE_AMP: f64 = 12.0;

/// One glyph of the crate's font: gray levels, row-major.
struct Glyph {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

/// Every glyph the crate's font has, drawn once.
fn glyphs() -> &'static HashMap<char, Glyph> {
    static GLYPHS: OnceLock<HashMap<char, Glyph>> = OnceLock::new();
    GLYPHS.get_or_init(|| {
        captcha::Captcha::new()
            .supported_chars()
            .into_iter()
            .filter_map(|c| draw_glyph(c).map(|g| (c, g)))
            .collect()
    })
}

/// Let the crate draw `c` alone and cut it out exactly (its text area is the glyph's box).
fn draw_glyph(c: char) -> Option<Glyph> {
    let mut cap = captcha::Captcha::new();
    cap.set_chars(&[c]);
    cap.add_char();
    let mut a = cap.text_area();
    a.right += 1;
    a.bottom += 1;
    cap.extract(a);
    let (w, h, px) = png::decode_gray(&cap.as_png()?)?;
    Some(Glyph { w, h, px })
}

/// Draw `answer` if given (tests' `fixed_answer`), else a random code of `len` characters.
/// Returns the answer (lower case) and the PNG.
pub fn generate(len: usize, answer: Option<&str>) -> Option<(String, Vec<u8>)> {
    let glyphs = glyphs();
    let mut rng = rand::thread_rng();
    let chars: Vec<char> = match answer {
        Some(a) => a.chars().collect(),
        None => (0..len)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
            .collect(),
    };
    let mut placed = Vec::with_capacity(chars.len());
    // The crate's text area: glyphs go left to right, each starting on the previous one's last
    // column, each centred on the area's current vertical middle.
    let left = CANVAS_W / 4;
    let (mut right, mut top, mut bottom) = (CANVAS_W / 4, CANVAS_H / 2, CANVAS_H / 2);
    for ch in &chars {
        let g = glyphs.get(ch)?;
        let (gw, gh) = (g.w as i64, g.h as i64);
        let x = right;
        let y = (bottom + top) / 2 - gh / 2;
        placed.push((x, y, g));
        top = top.min(y);
        right = x + gw - 1;
        bottom = bottom.max(y + gh - 1);
    }
    // `view(220, 90)`: the crop centred on the text area.
    let vl = (right + left) / 2 - W as i64 / 2;
    let vt = (bottom + top) / 2 - H as i64 / 2;
    let mut noise = vec![0u8; W * H];
    rng.fill_bytes(&mut noise);
    let mut img = vec![255u8; W * H];
    for ox in 0..W {
        let x = vl + ox as i64;
        // Wave: the canvas column x moves up by f; what ends above or below the canvas is gone.
        let f = ((x as f64 * 2.0 * std::f64::consts::PI * WAVE_PERIODS / CANVAS_W as f64).sin()
            * WAVE_AMP) as i64;
        let col: Vec<&(i64, i64, &Glyph)> = placed
            .iter()
            .filter(|(gx, _, g)| x >= *gx && x < gx + g.w as i64)
            .collect();
        for oy in 0..H {
            let ys = vt + oy as i64 + f;
            if !(0..CANVAS_H).contains(&ys) || !(0..CANVAS_W).contains(&x) {
                continue;
            }
            let i = oy * W + ox;
            if noise[i] < NOISE_BELOW {
                img[i] = 0;
                continue;
            }
            // The last glyph drawn over a pixel wins (its white background included).
            for (gx, gy, g) in col.iter().rev() {
                if ys >= *gy && ys < gy + g.h as i64 {
                    img[i] = g.px[(ys - gy) as usize * g.w + (x - gx) as usize];
                    break;
                }
            }
        }
    }
    let png = png::encode_gray(W, H, &img, DEPTH);
    Some((chars.iter().collect::<String>().to_lowercase(), png))
}

/// PNG through the `png` crate: decoding the crate's glyph images to gray levels, and writing
/// low-depth grayscale with the fastest compression.
mod png {
    use png::{BitDepth, ColorType, Compression, Decoder, Encoder, FilterType, Transformations};

    /// A grayscale PNG of `w`×`h` pixels with `depth` (1, 2, 4 or 8) bits per pixel; gray levels
    /// are rounded to the nearest one the depth has.
    pub fn encode_gray(w: usize, h: usize, px: &[u8], depth: usize) -> Vec<u8> {
        let per_byte = 8 / depth;
        let max = (1u16 << depth) - 1;
        let mut packed = Vec::with_capacity(w.div_ceil(per_byte) * h);
        for row in px.chunks(w) {
            for group in row.chunks(per_byte) {
                let mut b = 0u8;
                for (k, v) in group.iter().enumerate() {
                    let level = ((*v as u16 * max + 127) / 255) as u8;
                    b |= level << (8 - depth * (k + 1));
                }
                packed.push(b);
            }
        }
        let bit_depth = match depth {
            1 => BitDepth::One,
            2 => BitDepth::Two,
            4 => BitDepth::Four,
            _ => BitDepth::Eight,
        };
        let mut out = Vec::with_capacity(packed.len() + 128);
        let mut e = Encoder::new(&mut out, w as u32, h as u32);
        e.set_color(ColorType::Grayscale);
        e.set_depth(bit_depth);
        e.set_compression(Compression::Fast);
        e.set_filter(FilterType::NoFilter);
        let written = e
            .write_header()
            .and_then(|mut wr| wr.write_image_data(&packed));
        written.expect("encoding an in-memory image of the right size cannot fail");
        out
    }

    /// Width, height and gray levels (0–255) of any non-interlaced PNG.
    pub fn decode_gray(bytes: &[u8]) -> Option<(usize, usize, Vec<u8>)> {
        let mut d = Decoder::new(bytes);
        d.set_transformations(Transformations::normalize_to_color8());
        let mut r = d.read_info().ok()?;
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).ok()?;
        let n = info.color_type.samples();
        let px = buf[..info.buffer_size()]
            .chunks(n)
            .map(|p| match info.color_type {
                ColorType::Rgb | ColorType::Rgba => {
                    ((p[0] as u16 + p[1] as u16 + p[2] as u16) / 3) as u8
                }
                _ => p[0],
            })
            .collect();
        Some((info.width as usize, info.height as usize, px))
    }
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

    #[test]
    fn every_letter_has_a_glyph_and_unknown_ones_fail() {
        for c in ALPHABET {
            let g = &glyphs()[c];
            assert!(g.w > 3 && g.h > 3, "{c}");
            // Some ink, some paper.
            assert!(
                g.px.iter().any(|p| *p < 128) && g.px.iter().any(|p| *p > 128),
                "{c}"
            );
        }
        assert!(generate(5, Some("ab€de")).is_none());
    }

    #[test]
    fn images_decode_and_show_the_glyphs() {
        let (_, png) = generate(5, Some("abcde")).unwrap();
        let (w, h, px) = png::decode_gray(&png).unwrap();
        assert_eq!((w, h), (W, H));
        let black = px.iter().filter(|p| **p == 0).count() as f64 / px.len() as f64;
        // 20 % noise plus the glyphs' ink, not a blank or a black image.
        assert!((0.2..0.6).contains(&black), "{black}");
        // Two draws of the same answer differ (fresh noise).
        let (_, png2) = generate(5, Some("abcde")).unwrap();
        assert_ne!(png, png2);
    }

    #[test]
    fn decodes_the_crate_s_pngs_and_round_trips() {
        let mut c = captcha::Captcha::new();
        c.add_chars(3).view(120, 60);
        let (w, h, px) = png::decode_gray(&c.as_png().unwrap()).unwrap();
        assert_eq!((w, h), (120, 60));
        let again = png::decode_gray(&png::encode_gray(w, h, &px, 8)).unwrap();
        assert_eq!(again, (w, h, px.clone()));
        let (_, _, two) = png::decode_gray(&png::encode_gray(w, h, &px, 2)).unwrap();
        for (a, b) in px.iter().zip(&two) {
            assert!([0, 85, 170, 255].contains(b) && (*a as i16 - *b as i16).abs() <= 43);
        }
    }
}
