//! The reply card: the sender's face and the celebrity's side by side, the same size and
//! aligned the same way (both are the matcher's aligned chips: the sender's from
//! `MatchRequest.return_chips`, the celebrity's from the gallery thumbnail), with the
//! percentage and the name drawn under them, and a credit line when the celebrity photo
//! needs one. A group photo gets one card with a row per matched face (up to the face
//! limit), numbered like the caption's lines.
//!
//! Text is drawn with `ab_glyph` in DejaVu Sans (Bitstream Vera licence, which allows
//! embedding; `assets/fonts/`), which covers Latin, Cyrillic and Greek. The fonts are
//! compiled into the binary, so the images need no font files.
//!
//! Privacy: the card holds the sender's face. It is built in memory, sent to the chat the
//! photo came from, and dropped; nothing here logs, stores or caches the sender's half.

use ab_glyph::{Font, FontRef, GlyphId, PxScale, ScaleFont};
use bytes::Bytes;
use fast_image_resize::{self as fir, ResizeAlg, ResizeOptions, Resizer};
use image::{Rgb, RgbImage};

static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Side of each face on the card. Chips are 160 px; Telegram shows a photo at up to
/// ~1280 px and a chat preview at ~320-400 px wide, where each face is then ~150 px.
pub const FACE: u32 = 320;
const MARGIN: u32 = 20;
const GAP: u32 = 12;
/// Card width: two faces, the gap between them and the margins.
pub const WIDTH: u32 = 2 * FACE + GAP + 2 * MARGIN;
const PERCENT_PX: f32 = 64.0;
const NAME_PX: f32 = 40.0;
/// Long names shrink down to this size, then are cut with an ellipsis.
const NAME_MIN_PX: f32 = 26.0;
const CREDIT_PX: f32 = 18.0;
const FOOTER_PX: f32 = 20.0;
const LINE_GAP: u32 = 8;

const BACKGROUND: Rgb<u8> = Rgb([24, 24, 32]);
const ACCENT: Rgb<u8> = Rgb([255, 200, 61]);
const TEXT: Rgb<u8> = Rgb([245, 245, 245]);
const MUTED: Rgb<u8> = Rgb([165, 165, 180]);
const JPEG_QUALITY: u8 = 88;
/// Rows on one card at most (fewer when credit lines make the rows taller: see
/// `TELEGRAM_MAX_SIDES`).
pub const MAX_ROWS: usize = 20;
/// sendPhoto refuses a photo whose width + height exceeds this.
const TELEGRAM_MAX_SIDES: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("a card needs at least one matched face")]
    Empty,
    #[error("cannot decode the {which} face chip: {source}")]
    Chip { which: &'static str, source: image::ImageError },
    #[error("cannot scale the {which} face chip: {detail}")]
    Resize { which: &'static str, detail: String },
    #[error("cannot encode the card: {0}")]
    Encode(jpeg_encoder::EncodingError),
    #[error("a card of {height} px is too tall to encode")]
    TooTall { height: u32 },
    #[error("the bundled font cannot be read")]
    Font,
}

/// One matched face: the two chips (JPEG, any size, square) and what to write under them.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The face's number in the caption ("2." for the second face from the left) when the
    /// caption numbers its faces, drawn before the percentage.
    pub number: Option<usize>,
    pub user_chip_jpeg: Bytes,
    pub celebrity_chip_jpeg: Bytes,
    pub name: String,
    /// Whole percent, as in the caption.
    pub percent: u32,
    /// "Photo: Author, CC BY-SA 4.0" when the celebrity photo's licence asks for credit.
    pub credit: Option<String>,
}

/// A composed card, JPEG.
#[derive(Debug, Clone)]
pub struct Card {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Where a row's parts are on the card (for tests and the docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLayout {
    /// Top of the two faces; the user's is at x = `MARGIN`, the celebrity's right of it.
    pub faces_top: u32,
    pub user_left: u32,
    pub celebrity_left: u32,
    /// Baselines' band: from the bottom of the faces to the end of the row.
    pub text_top: u32,
    pub bottom: u32,
}

struct Fonts {
    bold: FontRef<'static>,
    regular: FontRef<'static>,
}

fn fonts() -> Result<Fonts, CardError> {
    Ok(Fonts {
        bold: FontRef::try_from_slice(BOLD).map_err(|_| CardError::Font)?,
        regular: FontRef::try_from_slice(REGULAR).map_err(|_| CardError::Font)?,
    })
}

fn line_height(font: &FontRef<'_>, px: f32) -> u32 {
    let s = font.as_scaled(PxScale::from(px));
    (s.ascent() - s.descent()).ceil() as u32
}

/// Height of one row: faces, percent, name, and the credit line if any.
fn row_height(f: &Fonts, credit: bool) -> u32 {
    let mut h = FACE + LINE_GAP + line_height(&f.bold, PERCENT_PX) + line_height(&f.bold, NAME_PX);
    if credit {
        h += line_height(&f.regular, CREDIT_PX);
    }
    h + MARGIN
}

/// The rows' positions for these pairs, and the card's height.
pub fn layout(pairs: &[Pair], footer: bool) -> Result<(Vec<RowLayout>, u32), CardError> {
    let f = fonts()?;
    Ok(layout_with(&f, pairs, footer))
}

fn layout_with(f: &Fonts, pairs: &[Pair], footer: bool) -> (Vec<RowLayout>, u32) {
    let mut y = MARGIN;
    let mut rows = Vec::with_capacity(pairs.len());
    for p in pairs {
        let h = row_height(f, p.credit.is_some());
        rows.push(RowLayout {
            faces_top: y,
            user_left: MARGIN,
            celebrity_left: MARGIN + FACE + GAP,
            text_top: y + FACE,
            bottom: y + h,
        });
        y += h;
    }
    if footer {
        y += line_height(&f.regular, FOOTER_PX);
    }
    (rows, y)
}

/// Composes the card. `footer` (e.g. "@LookalikeBot") is written small at the bottom so a
/// forwarded card says where it came from.
pub fn compose(pairs: &[Pair], footer: Option<&str>) -> Result<Card, CardError> {
    if pairs.is_empty() {
        return Err(CardError::Empty);
    }
    let f = fonts()?;
    // Telegram wants width + height <= 10000: as many rows as fit (the caption still names
    // every face), and never more than MAX_ROWS.
    let mut shown = pairs.len().min(MAX_ROWS);
    let (mut rows, mut height) = layout_with(&f, &pairs[..shown], footer.is_some());
    while shown > 1 && WIDTH + height > TELEGRAM_MAX_SIDES {
        shown -= 1;
        (rows, height) = layout_with(&f, &pairs[..shown], footer.is_some());
    }
    let pairs = &pairs[..shown];
    let mut card = RgbImage::from_pixel(WIDTH, height, BACKGROUND);
    for (p, row) in pairs.iter().zip(&rows) {
        let user = face(&p.user_chip_jpeg, "user's")?;
        let celebrity = face(&p.celebrity_chip_jpeg, "celebrity's")?;
        image::imageops::replace(&mut card, &user, i64::from(row.user_left), i64::from(row.faces_top));
        image::imageops::replace(&mut card, &celebrity, i64::from(row.celebrity_left), i64::from(row.faces_top));
        let mut y = row.text_top + LINE_GAP;
        let percent = match p.number {
            Some(n) => format!("{n}. {}%", p.percent),
            None => format!("{}%", p.percent),
        };
        y = draw_centred(&mut card, &f.bold, PERCENT_PX, PERCENT_PX, &percent, y, ACCENT);
        y = draw_centred(&mut card, &f.bold, NAME_PX, NAME_MIN_PX, &p.name, y, TEXT);
        if let Some(credit) = &p.credit {
            draw_centred(&mut card, &f.regular, CREDIT_PX, CREDIT_PX * 0.8, credit, y, MUTED);
        }
    }
    if let Some(footer) = footer {
        let y = height - line_height(&f.regular, FOOTER_PX) - MARGIN / 2;
        draw_centred(&mut card, &f.regular, FOOTER_PX, FOOTER_PX, footer, y, MUTED);
    }
    let mut jpeg = Vec::with_capacity(64 * 1024 * pairs.len());
    let h16 = u16::try_from(height).map_err(|_| CardError::TooTall { height })?;
    let w16 = u16::try_from(WIDTH).map_err(|_| CardError::TooTall { height })?;
    jpeg_encoder::Encoder::new(&mut jpeg, JPEG_QUALITY)
        .encode(card.as_raw(), w16, h16, jpeg_encoder::ColorType::Rgb)
        .map_err(CardError::Encode)?;
    Ok(Card { jpeg, width: WIDTH, height })
}

/// A chip scaled to the card's face size. Chips are square; a non-square one is fitted
/// to the square (it would be a bug upstream, not worth failing the reply for).
fn face(jpeg: &[u8], which: &'static str) -> Result<RgbImage, CardError> {
    let chip = image::load_from_memory(jpeg).map_err(|source| CardError::Chip { which, source })?.to_rgb8();
    if chip.dimensions() == (FACE, FACE) {
        return Ok(chip);
    }
    let mut out = RgbImage::new(FACE, FACE);
    let bicubic = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(fir::FilterType::CatmullRom));
    Resizer::new().resize(&chip, &mut out, &bicubic).map_err(|e| CardError::Resize { which, detail: e.to_string() })?;
    Ok(out)
}

/// Glyphs of `text` laid out on one line at `px`, with kerning: (glyph, x offset) and width.
fn shape(font: &FontRef<'_>, px: f32, text: &str) -> (Vec<(GlyphId, f32)>, f32) {
    let s = font.as_scaled(PxScale::from(px));
    let mut x = 0.0;
    let mut prev: Option<GlyphId> = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars().filter(|c| !c.is_control()) {
        let id = s.glyph_id(c);
        // A character the font lacks is left out rather than drawn as a box.
        if id.0 == 0 {
            continue;
        }
        if let Some(p) = prev {
            x += s.kern(p, id);
        }
        glyphs.push((id, x));
        x += s.h_advance(id);
        prev = Some(id);
    }
    (glyphs, x)
}

/// Draws `text` centred on the card's width with its top at `top`, shrinking from `px` to
/// `min_px` to fit, then cutting it with an ellipsis; returns the next line's top.
fn draw_centred(
    card: &mut RgbImage,
    font: &FontRef<'_>,
    px: f32,
    min_px: f32,
    text: &str,
    top: u32,
    colour: Rgb<u8>,
) -> u32 {
    let room = (WIDTH - 2 * MARGIN) as f32;
    let mut size = px;
    let (mut glyphs, mut width) = shape(font, size, text);
    while width > room && size > min_px {
        size = (size - 2.0).max(min_px);
        (glyphs, width) = shape(font, size, text);
    }
    if width > room {
        let mut chars: Vec<char> = text.chars().collect();
        while width > room && !chars.is_empty() {
            chars.pop();
            let cut: String = chars.iter().collect::<String>().trim_end().to_owned() + "…";
            (glyphs, width) = shape(font, size, &cut);
        }
    }
    let scale = PxScale::from(size);
    let s = font.as_scaled(scale);
    let left = (WIDTH as f32 - width) / 2.0;
    let baseline = top as f32 + s.ascent();
    for (id, x) in glyphs {
        let glyph = id.with_scale_and_position(scale, ab_glyph::point(left + x, baseline));
        let Some(outline) = font.outline_glyph(glyph) else { continue };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, coverage| {
            let x = bounds.min.x as i64 + i64::from(gx);
            let y = bounds.min.y as i64 + i64::from(gy);
            let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y)) else { return };
            if x < card.width() && y < card.height() {
                let px = card.get_pixel_mut(x, y);
                let a = coverage.clamp(0.0, 1.0);
                for (dst, src) in px.0.iter_mut().zip(colour.0) {
                    *dst = (f32::from(src) * a + f32::from(*dst) * (1.0 - a)).round() as u8;
                }
            }
        });
    }
    top + (s.ascent() - s.descent()).ceil() as u32
}

/// Whether the bundled fonts draw every character of `text` (no missing-glyph boxes).
pub fn covers(text: &str) -> bool {
    let Ok(f) = fonts() else { return false };
    text.chars().filter(|c| !c.is_whitespace() && !c.is_control()).all(|c| f.bold.glyph_id(c).0 != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A square chip of one colour with a darker square in the middle (a "face").
    fn chip(colour: [u8; 3]) -> Bytes {
        let mut img = RgbImage::from_pixel(160, 160, Rgb(colour));
        for y in 50..110 {
            for x in 50..110 {
                img.put_pixel(x, y, Rgb([colour[0] / 3, colour[1] / 3, colour[2] / 3]));
            }
        }
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
        out.into()
    }

    fn pair(user: &Bytes, celebrity: &Bytes, name: &str, percent: u32, credit: Option<&str>) -> Pair {
        Pair {
            number: None,
            user_chip_jpeg: user.clone(),
            celebrity_chip_jpeg: celebrity.clone(),
            name: name.into(),
            percent,
            credit: credit.map(Into::into),
        }
    }

    fn mean(img: &RgbImage, x0: u32, y0: u32, w: u32, h: u32) -> [f64; 3] {
        let mut sum = [0f64; 3];
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                for (s, v) in sum.iter_mut().zip(img.get_pixel(x, y).0) {
                    *s += f64::from(v);
                }
            }
        }
        sum.map(|s| s / f64::from(w * h))
    }

    /// Rows of `img` between y0 and y1 holding text-bright pixels (ink), as a height.
    fn ink_rows(img: &RgbImage, y0: u32, y1: u32) -> u32 {
        (y0..y1.min(img.height())).filter(|&y| (0..img.width()).any(|x| img.get_pixel(x, y).0[1] > 150)).count() as u32
    }

    #[test]
    fn one_pair_puts_each_face_in_its_half_with_the_text_below() {
        let (user, celeb) = (chip([200, 40, 40]), chip([40, 40, 200]));
        let pair = pair(&user, &celeb, "Barack Obama", 87, None);
        let card = compose(std::slice::from_ref(&pair), None).unwrap();
        let img = image::load_from_memory(&card.jpeg).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (card.width, card.height));
        let (rows, height) = layout(&[pair], false).unwrap();
        assert_eq!(height, card.height);
        let r = rows[0];
        // The outer band of each face (outside its dark middle) keeps the chip's colour.
        let u = mean(&img, r.user_left + 10, r.faces_top + 10, 60, 60);
        let c = mean(&img, r.celebrity_left + 10, r.faces_top + 10, 60, 60);
        assert!(u[0] > 170.0 && u[2] < 70.0, "user's half {u:?}");
        assert!(c[2] > 170.0 && c[0] < 70.0, "celebrity's half {c:?}");
        // Text was drawn below the faces, and nothing above them.
        assert!(ink_rows(&img, r.text_top, r.bottom) > 40);
        assert_eq!(ink_rows(&img, 0, r.faces_top), 0);
    }

    #[test]
    fn legible_at_telegrams_preview_size() {
        let (user, celeb) = (chip([120, 120, 120]), chip([90, 90, 90]));
        let pair = pair(&user, &celeb, "HHHHHHHH", 88, None);
        let card = compose(std::slice::from_ref(&pair), None).unwrap();
        let img = image::load_from_memory(&card.jpeg).unwrap().to_rgb8();
        // A chat shows a photo ~320 px wide on a phone (Telegram's "m" size).
        let preview_w = 320;
        let preview_h = card.height * preview_w / card.width;
        let small = image::imageops::resize(&img, preview_w, preview_h, image::imageops::FilterType::Triangle);
        let (rows, _) = layout(&[pair], false).unwrap();
        let scale = |v: u32| v * preview_w / card.width;
        let f = fonts().unwrap();
        let name_top = rows[0].text_top + LINE_GAP + line_height(&f.bold, PERCENT_PX);
        // Capital letters of the name, and the percentage, at least 11 px tall in the preview
        // (a phone's body text is ~10-11 px at this scale).
        let name = ink_rows(&small, scale(name_top), scale(rows[0].bottom));
        let percent = ink_rows(&small, scale(rows[0].text_top), scale(name_top));
        assert!(name >= 11, "the name is {name} px tall in the preview");
        assert!(percent >= 16, "the percentage is {percent} px tall in the preview");
    }

    #[test]
    fn cyrillic_names_have_glyphs_and_long_names_fit() {
        assert!(covers("Владимир Высоцкий"));
        assert!(covers("Penélope Cruz · Ελληνικά"));
        assert!(!covers("漢字"), "a script the font lacks is reported");
        let (user, celeb) = (chip([120, 120, 120]), chip([90, 90, 90]));
        let long = "Владимир Семёнович Высоцкий Александр Сергеевич Пушкин";
        let pair = pair(&user, &celeb, long, 5, Some("Photo: A"));
        let card = compose(&[pair], Some("@LookalikeBot")).unwrap();
        let img = image::load_from_memory(&card.jpeg).unwrap().to_rgb8();
        // Nothing drawn into the side margins: the name was shrunk and cut to fit.
        let margin_ink = (0..img.height())
            .filter(|&y| {
                (0..MARGIN - 4).any(|x| img.get_pixel(x, y).0[1] > 150 || img.get_pixel(WIDTH - 1 - x, y).0[1] > 150)
            })
            .count();
        assert_eq!(margin_ink, 0);
    }

    #[test]
    fn a_group_gets_one_row_per_face_and_credit_lines_add_height() {
        let chips: Vec<Bytes> = (0..3).map(|i| chip([60 * i + 60, 100, 100])).collect();
        let pairs: Vec<Pair> =
            chips.iter().enumerate().map(|(i, c)| Pair { number: Some(i + 1), ..pair(c, c, "A", 50, None) }).collect();
        let card = compose(&pairs, None).unwrap();
        let (rows, h) = layout(&pairs, false).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(card.height, h);
        assert!(rows.windows(2).all(|w| w[1].faces_top >= w[0].bottom));
        let img = image::load_from_memory(&card.jpeg).unwrap().to_rgb8();
        for (row, c) in rows.iter().zip(0..) {
            let m = mean(&img, row.user_left + 10, row.faces_top + 10, 30, 30);
            assert!((m[0] - f64::from(60 * c + 60)).abs() < 12.0, "row {c}: {m:?}");
        }
        let with_credit = Pair { credit: Some("Photo: X, CC BY 4.0".into()), ..pairs[0].clone() };
        let (_, h2) = layout(&[with_credit], false).unwrap();
        let (_, h1) = layout(&pairs[..1], false).unwrap();
        assert!(h2 > h1);
        assert!(matches!(compose(&[], None), Err(CardError::Empty)));
        let broken = Pair { user_chip_jpeg: Bytes::from_static(b"not a jpeg"), ..pairs[0].clone() };
        assert!(matches!(compose(&[broken], None), Err(CardError::Chip { which: "user's", .. })));
    }

    #[test]
    fn many_credited_rows_stay_within_telegrams_size_limit() {
        let c = chip([90, 90, 90]);
        let pairs: Vec<Pair> = (0..20)
            .map(|i| Pair { number: Some(i + 1), ..pair(&c, &c, "A", 50, Some("Photo: X, CC BY-SA 4.0")) })
            .collect();
        let card = compose(&pairs, Some("@Bot")).unwrap();
        assert!(card.width + card.height <= TELEGRAM_MAX_SIDES, "{}x{}", card.width, card.height);
        let (_, all) = layout(&pairs, true).unwrap();
        assert!(card.width + all > TELEGRAM_MAX_SIDES, "the test must need the cap");
        let uncredited: Vec<Pair> = pairs.iter().map(|p| Pair { credit: None, ..p.clone() }).collect();
        let (rows, h) = layout(&uncredited, true).unwrap();
        assert_eq!(rows.len(), 20);
        assert!(card.width + h <= TELEGRAM_MAX_SIDES);
    }
}
