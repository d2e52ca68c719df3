//! Aliases: the URL-safe, unique key of a person (folder name under the photos directory).

/// "Tilda Swinton" or "Tilda_Swinton" -> "tilda-swinton": lowercase letters and digits kept,
/// every other run of characters becomes one '-', none at either end. The same rule as
/// `lookalike_engine::gallery::catalog::alias_for` (copied, not depended on: the engine crate
/// builds dlib, which this network-only tool does not need); `tests::same_as_engine` holds the
/// engine's own examples.
pub fn alias_for(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// A file name safe on every file system for a Commons title: "File:Tom Hanks 2019.jpg" with
/// extension `jpg` -> "Tom_Hanks_2019.jpg". Letters, digits, '-' and '_' are kept (at most 120
/// characters of them), anything else becomes '_'. When that loses information (other
/// characters replaced, the name cut, another extension), 8 hex digits of a hash of the title are
/// added, so two titles never share a file name: "File:Tom Hanks (2019).jpg" ->
/// "Tom_Hanks_2019-1b5a6f1c.jpg". The name depends on the title alone, not on the order of work.
pub fn file_name_for(title: &str, ext: &str) -> String {
    let bare = title.strip_prefix("File:").unwrap_or(title);
    let (stem, orig_ext) = match bare.rfind('.') {
        Some(i) if i > 0 => (&bare[..i], &bare[i + 1..]),
        _ => (bare, ""),
    };
    let mut out = String::new();
    let mut lossy = false;
    for c in stem.chars() {
        if out.chars().count() >= 120 {
            lossy = true;
            break;
        }
        if c.is_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        } else if c == ' ' {
            // Spaces and underscores are the same character in MediaWiki titles.
            out.push('_');
        } else {
            lossy = true;
            if !out.ends_with('_') {
                out.push('_');
            }
        }
    }
    let trimmed = out.trim_matches('_');
    lossy |= trimmed.len() != out.len() || !orig_ext.eq_ignore_ascii_case(ext);
    let base = if trimmed.is_empty() { "photo" } else { trimmed };
    if lossy {
        format!("{base}-{:08x}.{ext}", fnv1a(title))
    } else {
        format!("{base}.{ext}")
    }
}

/// FNV-1a, 32 bits: stable across runs and platforms (std's hasher is not).
fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_as_engine() {
        assert_eq!(alias_for("Tilda Swinton"), "tilda-swinton");
        assert_eq!(alias_for("Jean-Claude_Van_Damme"), "jean-claude-van-damme");
        assert_eq!(alias_for("Zoë  Saldaña!"), "zoë-saldaña");
        assert_eq!(alias_for("  Beyoncé "), "beyoncé");
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name_for("File:Tom Hanks 2019.jpg", "jpg"), "Tom_Hanks_2019.jpg");
        assert_eq!(file_name_for("File:Kit at Comic-Con.JPG", "jpg"), "Kit_at_Comic-Con.jpg");
        // Lossy names carry a hash of the title, so these two do not collide.
        let a = file_name_for("File:Tom Hanks (2019).jpg", "jpg");
        let b = file_name_for("File:Tom Hanks 2019!.jpg", "jpg");
        assert!(
            a.starts_with("Tom_Hanks_2019-") && a.ends_with(".jpg") && a.len() == "Tom_Hanks_2019-12345678.jpg".len()
        );
        assert_ne!(a, b);
        assert_ne!(file_name_for("File:X.tif", "jpg"), file_name_for("File:X.jpg", "jpg"));
        assert!(file_name_for("File:Zoë Saldaña.tif", "png").starts_with("Zoë_Saldaña-"));
        assert!(file_name_for("File:..jpg", "jpg").starts_with("photo-"));
        assert!(file_name_for("File:a/b\\c:d.JPG", "jpg").starts_with("a_b_c_d-"));
        assert_eq!(file_name_for(&format!("File:{}.jpg", "x".repeat(130)), "jpg").len(), 120 + 9 + 4);
    }
}
