//! The one font the display uses, vendored (DejaVu Sans Mono Bold, Bitstream
//! Vera licence, `actors/fonts/DejaVu-LICENSE.txt`). System fonts are never
//! consulted, so every machine renders the same pixels.

use glyphon::cosmic_text::fontdb;
use glyphon::{Attrs, Family, FontSystem, Weight};

pub const FONT_BYTES: &[u8] = include_bytes!("../../fonts/DejaVuSansMono-Bold.ttf");
pub const FONT_FAMILY: &str = "DejaVu Sans Mono";

/// A font system holding only the vendored font.
pub fn font_system() -> FontSystem {
    let mut db = fontdb::Database::new();
    db.load_font_data(FONT_BYTES.to_vec());
    FontSystem::new_with_locale_and_db("en-US".into(), db)
}

pub fn attrs() -> Attrs<'static> {
    Attrs::new().family(Family::Name(FONT_FAMILY)).weight(Weight::BOLD)
}
