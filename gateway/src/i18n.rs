//! The bot's words, in English and Russian (picked from the user's `language_code`).
//! Every text is HTML (the parse mode of all sends); dynamic parts are escaped by callers.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    /// Russian for `ru` (and `ru-RU` etc.), English otherwise.
    pub fn from_code(code: Option<&str>) -> Self {
        match code {
            Some(c) if c.to_ascii_lowercase().starts_with("ru") => Self::Ru,
            _ => Self::En,
        }
    }
}

pub fn help(lang: Lang) -> &'static str {
    match lang {
        Lang::En => {
            "👋 Send me a selfie and I will tell you which celebrity you look like.\n\n\
            Tips: face the camera, in good light, one face close up. Group photos work too: \
            I answer for each face, left to right.\n\n\
            I answer with a card of your face beside your celebrity's, sent only to the chat \
            where you sent the photo and never stored; /cards off sends the celebrity's photo \
            only, /cards on brings the cards back."
        }
        Lang::Ru => {
            "👋 Пришлите селфи, и я скажу, на какую знаменитость вы похожи.\n\n\
            Советы: смотрите в камеру, при хорошем свете, лицо крупно. Групповые фото тоже \
            подходят: отвечу для каждого лица слева направо.\n\n\
            Я отвечаю карточкой: ваше лицо рядом с лицом знаменитости — только в чат, куда \
            прислано фото, без сохранения; /cards off — присылать только фото знаменитости, \
            /cards on — снова карточки."
        }
    }
}

pub fn send_a_photo(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "Send me a photo with a face (as a photo, or as a JPEG, PNG or WebP file).",
        Lang::Ru => "Пришлите фото с лицом (как фото или как файл JPEG, PNG или WebP).",
    }
}

pub fn not_an_image(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "I can only read photos: send a picture, or a JPEG, PNG or WebP file.",
        Lang::Ru => "Я понимаю только фотографии: пришлите снимок или файл JPEG, PNG или WebP.",
    }
}

pub fn too_large(lang: Lang, limit_mb: u64) -> String {
    match lang {
        Lang::En => format!("This file is too big (the limit is {limit_mb} MB). Please send it as a photo instead."),
        Lang::Ru => format!("Файл слишком большой (предел {limit_mb} МБ). Пришлите его как фото."),
    }
}

pub fn no_face(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "I could not find a face in this photo 🤔\nTip: face the camera, in good light, with your face large in the frame.",
        Lang::Ru => "Не нашёл лица на этом фото 🤔\nСовет: смотрите прямо в камеру, при хорошем освещении, лицо крупным планом.",
    }
}

pub fn bad_image(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "I could not read this image. Please send another photo (JPEG, PNG or WebP).",
        Lang::Ru => "Не удалось прочитать изображение. Пришлите другое фото (JPEG, PNG или WebP).",
    }
}

pub fn busy(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "I am very busy right now 😅 Please try again in a minute.",
        Lang::Ru => "Сейчас я очень занят 😅 Попробуйте ещё раз через минуту.",
    }
}

pub fn download_failed(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "I could not download your photo from Telegram. Please send it again.",
        Lang::Ru => "Не удалось загрузить ваше фото из Telegram. Пришлите его ещё раз.",
    }
}

pub fn rate_limited(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "That is a lot of photos 🙂 Please wait a minute before sending more.",
        Lang::Ru => "Очень много фото 🙂 Подождите минуту, прежде чем присылать ещё.",
    }
}

/// "You look like <b>NAME</b> — 87%" (name already escaped).
pub fn you_look_like(lang: Lang, name_html: &str, percent: u32) -> String {
    match lang {
        Lang::En => format!("You look like <b>{name_html}</b> — {percent}%"),
        Lang::Ru => format!("Вы похожи на <b>{name_html}</b> — {percent}%"),
    }
}

pub fn faces_header(lang: Lang, n: usize) -> String {
    match lang {
        Lang::En => format!("{n} faces, left to right:"),
        Lang::Ru => format!("Лиц на фото: {n}, слева направо:"),
    }
}

pub fn no_match(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "no close match",
        Lang::Ru => "нет похожих",
    }
}

pub fn more_info(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "About",
        Lang::Ru => "Подробнее",
    }
}

/// The answer to `/cards ...`: the user's setting as it now is.
pub fn cards_setting(lang: Lang, on: bool, available: bool) -> &'static str {
    match (lang, available, on) {
        (Lang::En, false, _) => "Cards are turned off on this bot: I answer with the celebrity's photo.",
        (Lang::Ru, false, _) => "Карточки на этом боте выключены: я отвечаю фото знаменитости.",
        (Lang::En, true, true) => {
            "Cards are on: I answer with your face beside your celebrity's (sent only to this chat, \
            never stored). /cards off to get the celebrity's photo only."
        }
        (Lang::Ru, true, true) => {
            "Карточки включены: я отвечаю вашим лицом рядом с лицом знаменитости (только в этот чат, \
            без сохранения). /cards off — только фото знаменитости."
        }
        (Lang::En, true, false) => {
            "Cards are off: I answer with the celebrity's photo only. /cards on to bring them back."
        }
        (Lang::Ru, true, false) => "Карточки выключены: я присылаю только фото знаменитости. /cards on — вернуть их.",
    }
}

/// The bot could not record the choice (its settings file is not writable).
pub fn setting_not_saved(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "I could not save this setting right now. Please try again later.",
        Lang::Ru => "Не удалось сохранить настройку. Попробуйте позже.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_from_code() {
        assert_eq!(Lang::from_code(Some("ru")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("ru-RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("en")), Lang::En);
        assert_eq!(Lang::from_code(Some("de")), Lang::En);
        assert_eq!(Lang::from_code(None), Lang::En);
    }
}
