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

/// A file name safe on every file system for a Commons title: "File:Tom Hanks (2019).jpg" with
/// extension `jpg` -> "Tom_Hanks_2019.jpg". Letters, digits, '-' and '_' are kept (at most 120
/// characters of them), anything else becomes '_'.
pub fn file_name_for(title: &str, ext: &str) -> String {
    let bare = title.strip_prefix("File:").unwrap_or(title);
    let stem = match bare.rfind('.') {
        Some(i) if i > 0 => &bare[..i],
        _ => bare,
    };
    let mut out = String::new();
    for c in stem.chars() {
        if out.chars().count() >= 120 {
            break;
        }
        if c.is_alphanumeric() || c == '-' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_');
    let out = if out.is_empty() { "photo" } else { out };
    format!("{out}.{ext}")
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
        assert_eq!(file_name_for("File:Tom Hanks (2019).jpg", "jpg"), "Tom_Hanks_2019.jpg");
        assert_eq!(file_name_for("File:Zoë Saldaña.tif", "png"), "Zoë_Saldaña.png");
        assert_eq!(file_name_for("File:..jpg", "jpg"), "photo.jpg");
        assert_eq!(file_name_for("File:a/b\\c:d.JPG", "jpg"), "a_b_c_d.jpg");
    }
}
