//! Captcha images (`/verify_code`): the `captcha` crate's glyphs, composed and encoded here.
//!
//! The alphabet leaves out look-alikes (0/O, 1/l/I, 5/S, 2/Z, 8/B); answers are compared
//! case-insensitively. Challenges live in the store, so they are single-use across restarts (and
//! across instances sharing a database).
//!
//! Drawing a whole image with the crate costs milliseconds: every `Captcha::new` parses its font
//! (JSON with base64 PNGs), each character is decoded from PNG again, the noise and wave filters
//! run over a 400×300 canvas, and the result is deflated by lodepng. Here each glyph is drawn by
//! the crate once (its own PNG, decoded by the small inflater below) and kept; an image is then
//! composed directly at its final 220×90 size with the same placement, noise (20 %), wave
//! (2 periods per 400 px, amplitude 12 px) and centring as the crate's pipeline, and written as a
//! 2-bit grayscale PNG with stored deflate blocks (no compression work). The answer and the noise
//! come from the thread's CSPRNG, as before.

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

/// Just enough PNG: decoding what lodepng writes for the glyphs (any bit depth and color type
/// without interlacing), and writing grayscale (1 to 8 bits) with stored deflate blocks.
mod png {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

    fn crc32(parts: &[&[u8]]) -> u32 {
        static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
        let t = TABLE.get_or_init(|| {
            let mut t = [0u32; 256];
            for (n, e) in t.iter_mut().enumerate() {
                let mut c = n as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xedb8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
                *e = c;
            }
            t
        });
        let mut c = 0xffff_ffffu32;
        for p in parts {
            for b in *p {
                c = t[((c ^ *b as u32) & 0xff) as usize] ^ (c >> 8);
            }
        }
        c ^ 0xffff_ffff
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for chunk in data.chunks(5552) {
            for x in chunk {
                a += *x as u32;
                b += a;
            }
            a %= 65521;
            b %= 65521;
        }
        (b << 16) | a
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
    }

    /// A grayscale PNG of `w`×`h` pixels with `depth` (1, 2, 4 or 8) bits per pixel; gray levels
    /// are rounded to the nearest one the depth has.
    pub fn encode_gray(w: usize, h: usize, px: &[u8], depth: usize) -> Vec<u8> {
        let per_byte = 8 / depth;
        let max = (1u16 << depth) - 1;
        let mut raw = Vec::with_capacity((w.div_ceil(per_byte) + 1) * h);
        for row in px.chunks(w) {
            raw.push(0); // filter: none
            if depth == 8 {
                raw.extend_from_slice(row);
                continue;
            }
            for group in row.chunks(per_byte) {
                let mut b = 0u8;
                for (k, v) in group.iter().enumerate() {
                    let level = ((*v as u16 * max + 127) / 255) as u8;
                    b |= level << (8 - depth * (k + 1));
                }
                raw.push(b);
            }
        }
        let mut z = Vec::with_capacity(raw.len() + raw.len() / 65535 * 5 + 16);
        z.extend_from_slice(&[0x78, 0x01]);
        let blocks = raw.chunks(65535).count();
        for (i, block) in raw.chunks(65535).enumerate() {
            z.push((i + 1 == blocks) as u8);
            let n = block.len() as u16;
            z.extend_from_slice(&n.to_le_bytes());
            z.extend_from_slice(&(!n).to_le_bytes());
            z.extend_from_slice(block);
        }
        z.extend_from_slice(&adler32(&raw).to_be_bytes());
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend_from_slice(&(w as u32).to_be_bytes());
        ihdr.extend_from_slice(&(h as u32).to_be_bytes());
        ihdr.extend_from_slice(&[depth as u8, 0, 0, 0, 0]); // grayscale, deflate, adaptive, none
        let mut out = Vec::with_capacity(z.len() + 64);
        out.extend_from_slice(SIGNATURE);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &z);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    /// Width, height and gray level (0 black … 255 white) of every pixel.
    pub fn decode_gray(png: &[u8]) -> Option<(usize, usize, Vec<u8>)> {
        let mut rest = png.strip_prefix(SIGNATURE)?;
        let (mut hdr, mut idat, mut plte) = (None, Vec::new(), Vec::new());
        while rest.len() >= 12 {
            let n = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
            let kind = &rest[4..8];
            let data = rest.get(8..8 + n)?;
            match kind {
                b"IHDR" => hdr = Some(data.to_vec()),
                b"PLTE" => plte = data.to_vec(),
                b"IDAT" => idat.extend_from_slice(data),
                _ => {}
            }
            rest = rest.get(12 + n..)?;
        }
        let hdr = hdr?;
        let w = u32::from_be_bytes(hdr[0..4].try_into().ok()?) as usize;
        let h = u32::from_be_bytes(hdr[4..8].try_into().ok()?) as usize;
        let (depth, color, interlace) = (hdr[8] as usize, hdr[9], hdr[12]);
        if interlace != 0 || w == 0 || h == 0 || w > 4096 || h > 4096 {
            return None;
        }
        let channels = match color {
            0 | 3 => 1,
            2 => 3,
            4 => 2,
            6 => 4,
            _ => return None,
        };
        let bits = channels * depth;
        let stride = (w * bits).div_ceil(8);
        let bpp = bits.div_ceil(8).max(1);
        let raw = super::inflate::zlib(&idat)?;
        if raw.len() < (stride + 1) * h {
            return None;
        }
        let mut cur = vec![0u8; stride];
        let mut prev = vec![0u8; stride];
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
            let filter = line[0];
            for i in 0..stride {
                let a = if i >= bpp { cur[i - bpp] as i16 } else { 0 };
                let b = prev[i] as i16;
                let c = if i >= bpp { prev[i - bpp] as i16 } else { 0 };
                let pred = match filter {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) / 2,
                    4 => {
                        let p = a + b - c;
                        let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                        if pa <= pb && pa <= pc {
                            a
                        } else if pb <= pc {
                            b
                        } else {
                            c
                        }
                    }
                    _ => return None,
                };
                cur[i] = line[1 + i].wrapping_add(pred as u8);
            }
            for x in 0..w {
                let sample = |ch: usize| -> u16 {
                    let bit = (x * channels + ch) * depth;
                    match depth {
                        16 => cur[bit / 8] as u16,
                        8 => cur[bit / 8] as u16,
                        _ => {
                            let v = (cur[bit / 8] >> (8 - depth - bit % 8)) & ((1 << depth) - 1);
                            v as u16
                        }
                    }
                };
                let scale = |v: u16| -> u16 {
                    if depth >= 8 {
                        v
                    } else {
                        v * 255 / ((1 << depth) - 1)
                    }
                };
                let gray = match color {
                    0 | 4 => scale(sample(0)),
                    2 | 6 => (scale(sample(0)) * 3 + scale(sample(1)) * 6 + scale(sample(2))) / 10,
                    _ => {
                        let i = sample(0) as usize * 3;
                        let p = plte.get(i..i + 3)?;
                        (p[0] as u16 * 3 + p[1] as u16 * 6 + p[2] as u16) / 10
                    }
                };
                out.push(gray.min(255) as u8);
            }
            std::mem::swap(&mut cur, &mut prev);
        }
        Some((w, h, out))
    }
}

/// A small inflater (RFC 1950/1951), only for the glyph PNGs decoded once at start.
mod inflate {
    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
        buf: u32,
        n: u32,
    }

    impl Bits<'_> {
        fn bits(&mut self, need: u32) -> Option<u32> {
            while self.n < need {
                let b = *self.data.get(self.pos)? as u32;
                self.pos += 1;
                self.buf |= b << self.n;
                self.n += 8;
            }
            let v = self.buf & ((1u32 << need) - 1);
            self.buf >>= need;
            self.n -= need;
            Some(v)
        }
    }

    /// A canonical Huffman code: how many codes of each length, symbols by code.
    struct Huffman {
        counts: [u16; 16],
        symbols: Vec<u16>,
    }

    impl Huffman {
        fn new(lengths: &[u8]) -> Huffman {
            let mut counts = [0u16; 16];
            for l in lengths {
                counts[*l as usize] += 1;
            }
            counts[0] = 0;
            let mut offs = [0u16; 16];
            for i in 1..16 {
                offs[i] = offs[i - 1] + counts[i - 1];
            }
            let mut symbols = vec![0u16; lengths.len()];
            for (s, l) in lengths.iter().enumerate() {
                if *l != 0 {
                    symbols[offs[*l as usize] as usize] = s as u16;
                    offs[*l as usize] += 1;
                }
            }
            Huffman { counts, symbols }
        }

        fn decode(&self, b: &mut Bits) -> Option<u16> {
            let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
            for len in 1..16 {
                code |= b.bits(1)? as i32;
                let count = self.counts[len] as i32;
                if code - count < first {
                    return self.symbols.get((index + code - first) as usize).copied();
                }
                index += count;
                first += count;
                first <<= 1;
                code <<= 1;
            }
            None
        }
    }

    const LEN_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];

    /// Decompress a zlib stream (the checksum is not verified).
    pub fn zlib(data: &[u8]) -> Option<Vec<u8>> {
        // CMF: deflate; FLG without a preset dictionary.
        if data.len() < 2 || data[0] & 0x0f != 8 || data[1] & 0x20 != 0 {
            return None;
        }
        let mut b = Bits {
            data: &data[2..],
            pos: 0,
            buf: 0,
            n: 0,
        };
        let mut out = Vec::new();
        loop {
            let last = b.bits(1)?;
            match b.bits(2)? {
                0 => {
                    b.buf = 0;
                    b.n = 0;
                    let p = b.pos;
                    let len = u16::from_le_bytes(b.data.get(p..p + 2)?.try_into().ok()?) as usize;
                    out.extend_from_slice(b.data.get(p + 4..p + 4 + len)?);
                    b.pos = p + 4 + len;
                }
                1 => {
                    let mut l = [0u8; 288];
                    l[..144].fill(8);
                    l[144..256].fill(9);
                    l[256..280].fill(7);
                    l[280..].fill(8);
                    block(&mut b, &mut out, &Huffman::new(&l), &Huffman::new(&[5; 30]))?;
                }
                2 => {
                    let nlen = b.bits(5)? as usize + 257;
                    let ndist = b.bits(5)? as usize + 1;
                    let ncode = b.bits(4)? as usize + 4;
                    const ORDER: [usize; 19] = [
                        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                    ];
                    let mut cl = [0u8; 19];
                    for o in ORDER.iter().take(ncode) {
                        cl[*o] = b.bits(3)? as u8;
                    }
                    let clh = Huffman::new(&cl);
                    let mut lengths = Vec::with_capacity(nlen + ndist);
                    while lengths.len() < nlen + ndist {
                        let sym = clh.decode(&mut b)?;
                        match sym {
                            0..=15 => lengths.push(sym as u8),
                            16 => {
                                let prev = *lengths.last()?;
                                let n = 3 + b.bits(2)?;
                                lengths.extend(std::iter::repeat_n(prev, n as usize));
                            }
                            17 => {
                                let n = 3 + b.bits(3)?;
                                lengths.extend(std::iter::repeat_n(0, n as usize));
                            }
                            _ => {
                                let n = 11 + b.bits(7)?;
                                lengths.extend(std::iter::repeat_n(0, n as usize));
                            }
                        }
                    }
                    if lengths.len() > nlen + ndist {
                        return None;
                    }
                    let lit = Huffman::new(&lengths[..nlen]);
                    let dist = Huffman::new(&lengths[nlen..]);
                    block(&mut b, &mut out, &lit, &dist)?;
                }
                _ => return None,
            }
            if last == 1 {
                return Some(out);
            }
            if out.len() > 64 << 20 {
                return None;
            }
        }
    }

    fn block(b: &mut Bits, out: &mut Vec<u8>, lit: &Huffman, dist: &Huffman) -> Option<()> {
        loop {
            let sym = lit.decode(b)? as usize;
            match sym {
                0..=255 => out.push(sym as u8),
                256 => return Some(()),
                _ => {
                    let i = sym - 257;
                    let len =
                        *LEN_BASE.get(i)? as usize + b.bits(*LEN_EXTRA.get(i)? as u32)? as usize;
                    let d = dist.decode(b)? as usize;
                    let back =
                        *DIST_BASE.get(d)? as usize + b.bits(*DIST_EXTRA.get(d)? as u32)? as usize;
                    let start = out.len().checked_sub(back)?;
                    for k in 0..len {
                        let v = out[start + k];
                        out.push(v);
                    }
                }
            }
        }
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
    fn inflates_what_the_crate_deflates() {
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
