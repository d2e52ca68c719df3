//! One update, start to finish: classify, check the user's quota, download, match, answer.
//! Every failure becomes a friendly answer: the user never meets silence.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::card::{self, Pair};
use crate::i18n::{self, Lang};
use crate::input::{self, classify, Command, ImageFile, Input, InputRules};
use crate::matcher::{Matcher, MatcherError, PhotoMatch};
use crate::metrics::METRICS;
use crate::outbox::{Outbox, SendTimings};
use crate::prefs::Prefs;
use crate::reply::{self, FaceLine, LinkTemplate, PhotoCredit};
use crate::telegram::{
    self, ChatAction, Message, OutgoingBody, OutgoingMessage, PhotoSource, Sent, TelegramError, Update,
};
use crate::telemetry;
use crate::thumbs::{Celebrity, CelebrityCache, ThumbnailCache};
use crate::trace_context::TraceContext;
use crate::user_limit::UserLimiter;

/// Shared by all updates.
pub struct Bot {
    pub outbox: Outbox,
    pub matcher: Matcher,
    pub rules: InputRules,
    pub links: LinkTemplate,
    pub thumbs: ThumbnailCache,
    /// Celebrity thumbnails and credits for cards (and the plain reply's credit).
    pub celebrities: CelebrityCache,
    /// Who turned cards off.
    pub prefs: Prefs,
    /// Cards composed at once (CPU and a few MB each): one per core, so a burst of group
    /// photos cannot take the gateway past its memory limit.
    pub compose_slots: tokio::sync::Semaphore,
    pub users: UserLimiter,
    pub max_faces: u32,
}

/// How often a long matcher call renews the chat's "uploading photo" status (it lasts 5 s).
const CHAT_ACTION_RENEWAL: Duration = Duration::from_millis(4_500);

/// Why a card was due but a plain reply went instead (a metrics label).
type Fallback = &'static str;

/// Where one update's time went; the rest is the gateway's own overhead.
#[derive(Debug, Default)]
struct Timings {
    download: Duration,
    matcher: Duration,
    send: SendTimings,
}

/// What became of an update (a metrics label).
pub type Outcome = &'static str;

impl Bot {
    /// Handles one update completely (all answers sent or given up on). Never fails: by
    /// the time this returns, the update can be marked done.
    pub async fn handle(&self, update: Update) -> Outcome {
        let started = Instant::now();
        let chat_id = telegram::message(&update).map(|m| m.chat.id.0);
        let span = tracing::info_span!(
            "update",
            otel.name = "update",
            update_id = telegram::update_id(&update),
            chat_id,
            trace_id = tracing::field::Empty,
        );
        // The exported span's ids when OTLP is on, else our own: either way the matcher
        // gets a traceparent and the logs carry the trace id.
        let trace = telemetry::span_trace_context(&span).unwrap_or_else(TraceContext::new_root);
        span.record("trace_id", trace.trace_id());
        async move {
            let mut t = Timings::default();
            let outcome = match telegram::message(&update) {
                Some(msg) => self.handle_message(msg, &trace, &mut t).await,
                None => "ignored",
            };
            let total = started.elapsed();
            let overhead = total.saturating_sub(t.download).saturating_sub(t.matcher).saturating_sub(t.send.total());
            METRICS.update_handled(outcome, total, overhead);
            tracing::info!(
                outcome,
                total_ms = ms(total),
                download_ms = ms(t.download),
                matcher_ms = ms(t.matcher),
                flood_wait_ms = ms(t.send.waited),
                send_ms = ms(t.send.network),
                overhead_us = overhead.as_micros() as u64,
                "update handled"
            );
            outcome
        }
        .instrument(span)
        .await
    }

    async fn handle_message(&self, msg: &Message, trace: &TraceContext, t: &mut Timings) -> Outcome {
        let lang = Lang::from_code(msg.from.as_ref().and_then(|u| u.language_code.as_deref()));
        match classify(msg, &self.rules) {
            Input::Ignore => "ignored",
            Input::Command(Command::Cards(choice)) => {
                let user = sender(msg);
                if let Some(on) = choice {
                    if let Err(e) = self.prefs.set_cards(user, on).await {
                        tracing::error!(error = %e, "could not save the cards setting");
                        self.say(msg, i18n::setting_not_saved(lang).to_owned(), t).await;
                        return "settings_error";
                    }
                    tracing::info!(cards = on, "cards setting changed");
                }
                let text = i18n::cards_setting(lang, self.prefs.cards(user), self.prefs.cards_available());
                self.say(msg, text.to_owned(), t).await;
                "settings"
            }
            Input::Command(_) => {
                self.say(msg, i18n::help(lang).to_owned(), t).await;
                "help"
            }
            Input::Text => {
                self.say(msg, i18n::send_a_photo(lang).to_owned(), t).await;
                "text"
            }
            Input::NotAnImage { mime } => {
                tracing::info!(?mime, "not an image");
                self.say(msg, i18n::not_an_image(lang).to_owned(), t).await;
                "not_image"
            }
            Input::TooLarge { size } => {
                tracing::info!(size, "file over the limit; not downloaded");
                self.say(msg, i18n::too_large(lang, self.limit_mb()), t).await;
                "too_large"
            }
            Input::Image(file) => self.handle_image(msg, lang, &file, trace, t).await,
        }
    }

    async fn handle_image(
        &self,
        msg: &Message,
        lang: Lang,
        file: &ImageFile,
        trace: &TraceContext,
        t: &mut Timings,
    ) -> Outcome {
        let user = sender(msg);
        if !self.users.allow(user) {
            METRICS.user_rate_limited();
            self.say(msg, i18n::rate_limited(lang).to_owned(), t).await;
            return "user_rate_limited";
        }
        let started = Instant::now();
        let (status_shown, downloaded) =
            tokio::join!(self.outbox.chat_action(msg.chat.id.0, ChatAction::UploadPhoto), self.download(file));
        t.download = started.elapsed();
        let image = match downloaded {
            Ok(bytes) => bytes,
            Err(TelegramError::FileTooLarge { size, .. }) => {
                tracing::info!(size, "file over the limit");
                self.say(msg, i18n::too_large(lang, self.limit_mb()), t).await;
                return "too_large";
            }
            Err(e) => {
                tracing::warn!(error = %e, "download failed");
                self.say(msg, i18n::download_failed(lang).to_owned(), t).await;
                return "download_failed";
            }
        };
        tracing::debug!(
            bytes = image.len(),
            file_unique_id = %file.file_unique_id,
            document = file.from_document,
            "downloaded"
        );
        // The sender's face chips are asked for only when they will be shown to them.
        let cards = self.prefs.cards(user);
        let started = Instant::now();
        let call = self.matcher.match_photo(image, self.max_faces, cards, trace);
        let result = self.keep_uploading_status(msg.chat.id.0, status_shown, call).await;
        t.matcher += started.elapsed();
        let found = match result {
            Ok(r) => r,
            Err(MatcherError::InvalidImage(why)) => {
                tracing::info!(reason = %why, "matcher refused the image");
                self.say(msg, i18n::bad_image(lang).to_owned(), t).await;
                return "bad_image";
            }
            Err(e @ MatcherError::Busy { .. }) => {
                tracing::warn!(error = %e, "matcher busy or down");
                self.say(msg, i18n::busy(lang).to_owned(), t).await;
                return "busy";
            }
            Err(e) => {
                tracing::error!(error = %e, "matcher call failed");
                self.say(msg, i18n::busy(lang).to_owned(), t).await;
                return "matcher_error";
            }
        };
        if found.faces.is_empty() {
            self.say(msg, i18n::no_face(lang).to_owned(), t).await;
            return "no_face";
        }
        self.answer_match(msg, lang, found, cards, trace, t).await;
        "match"
    }

    async fn answer_match(
        &self,
        msg: &Message,
        lang: Lang,
        found: PhotoMatch,
        cards: bool,
        trace: &TraceContext,
        t: &mut Timings,
    ) {
        // Left to right and at most `max_faces`: the matcher's contract.
        let PhotoMatch { gallery_version: gallery, faces } = found;
        let lines: Vec<Option<FaceLine>> = faces
            .iter()
            .map(|f| {
                f.candidates.first().map(|c| FaceLine {
                    name: c.name.clone(),
                    alias: c.alias.clone(),
                    identity_id: c.identity_id,
                    similarity_percent: c.similarity_percent,
                })
            })
            .collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(l) = line {
                tracing::info!(
                    face = i,
                    name = %l.name,
                    identity_id = l.identity_id,
                    similarity = l.similarity_percent,
                    "match"
                );
            }
        }
        let caption = reply::caption(lang, &lines, &self.links);
        if cards {
            let chips: Vec<bytes::Bytes> = faces.into_iter().map(|f| f.chip_jpeg).collect();
            match self.answer_with_card(msg, &gallery, chips, &lines, &caption, trace, t).await {
                Ok(()) => return,
                Err(reason) => {
                    tracing::warn!(reason, "no card for this match; answering with the celebrity's photo");
                    METRICS.reply_form(&format!("fallback_{reason}"));
                }
            }
        } else {
            METRICS.reply_form("plain");
        }
        self.answer_plain(msg, &gallery, &lines, caption, trace, t).await;
    }

    /// The card: the sender's face beside each celebrity's. Sent to this chat only; the
    /// card and the chips are dropped once sent. `Err` says why a plain reply is due
    /// instead (nothing was sent then).
    #[allow(clippy::too_many_arguments)]
    async fn answer_with_card(
        &self,
        msg: &Message,
        gallery: &str,
        chips: Vec<bytes::Bytes>,
        lines: &[Option<FaceLine>],
        caption: &str,
        trace: &TraceContext,
        t: &mut Timings,
    ) -> Result<(), Fallback> {
        // Every celebrity shown, fetched at once (most come from the cache).
        let mut ids: Vec<u32> = lines.iter().flatten().map(|l| l.identity_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let fetched =
            futures_util::future::join_all(ids.iter().map(|&id| self.celebrity_timed(gallery, id, trace))).await;
        t.matcher += fetched.iter().map(|(_, d)| *d).max().unwrap_or_default();
        let celebrities: Vec<(u32, Arc<Celebrity>)> = ids
            .iter()
            .zip(fetched)
            .map(|(&id, (c, _))| c.map(|c| (id, c)))
            .collect::<Option<_>>()
            .ok_or("no_thumbnail")?;
        let numbered = lines.len() > 1;
        let mut pairs = Vec::with_capacity(lines.len());
        let mut credits = Vec::new();
        for (i, (chip, line)) in chips.into_iter().zip(lines).enumerate() {
            let Some(line) = line else { continue };
            if chip.is_empty() {
                return Err("no_chip");
            }
            if !card::covers(&line.name) {
                // The font cannot draw this name (e.g. a script it lacks): the caption can.
                return Err("name_not_drawable");
            }
            let Some((_, celebrity)) = celebrities.iter().find(|(id, _)| *id == line.identity_id) else {
                return Err("no_thumbnail");
            };
            credits.extend(celebrity.credit.as_ref());
            pairs.push(Pair {
                number: numbered.then_some(i + 1),
                user_chip_jpeg: chip,
                celebrity_chip_jpeg: celebrity.thumbnail_jpeg.clone(),
                name: line.name.clone(),
                percent: reply::percent(line.similarity_percent),
                credit: celebrity.credit.as_ref().and_then(PhotoCredit::card_line),
            });
        }
        // Each celebrity photo shown is credited once in the caption (linked).
        let caption = reply::with_credits(caption.to_owned(), credits);
        if pairs.is_empty() {
            return Err("no_match");
        }
        let footer = self.rules.bot_username.as_ref().map(|u| format!("@{u}"));
        let Ok(slot) = self.compose_slots.acquire().await else { return Err("compose_failed") };
        let started = Instant::now();
        // CPU work (two JPEG decodes, scaling, text, a JPEG encode per card): off the
        // async workers.
        let composed = tokio::task::spawn_blocking(move || card::compose(&pairs, footer.as_deref())).await;
        drop(slot);
        let composed = match composed {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "card not composed");
                return Err("compose_failed");
            }
            Err(e) => {
                tracing::error!(error = %e, "card task failed");
                return Err("compose_failed");
            }
        };
        let compose_time = started.elapsed();
        METRICS.card_composed(compose_time);
        tracing::debug!(
            compose_ms = compose_time.as_secs_f64() * 1000.0,
            bytes = composed.jpeg.len(),
            width = composed.width,
            height = composed.height,
            "card composed"
        );
        let upload = PhotoSource::Upload { bytes: composed.jpeg.into(), file_name: "lookalike.jpg".into() };
        match self.send(msg, photo(msg, upload, &caption), t).await {
            Ok(_) => METRICS.reply_form("card"),
            // Telegram refused the picture itself (e.g. its dimensions): the plain reply
            // still reaches the user.
            Err(e) if e.is_bad_request() => {
                tracing::warn!(error = %e, "card refused by Telegram");
                return Err("card_refused");
            }
            Err(e) => tracing::warn!(error = %e, "answer not delivered"),
        }
        Ok(())
    }

    /// The celebrity's photo with the caption; the thumbnail's Telegram file_id is reused
    /// once uploaded.
    async fn answer_plain(
        &self,
        msg: &Message,
        gallery: &str,
        lines: &[Option<FaceLine>],
        caption: String,
        trace: &TraceContext,
        t: &mut Timings,
    ) {
        // The thumbnail shown is the first (leftmost) face's celebrity.
        let Some(first) = lines.iter().flatten().next() else {
            self.say(msg, caption, t).await;
            return;
        };
        let id = first.identity_id;
        let Some(celebrity) = self.celebrity(gallery, id, trace, t).await else {
            self.say(msg, caption, t).await;
            return;
        };
        let caption = reply::with_credits(caption, celebrity.credit.as_ref());
        if let Some(file_id) = self.thumbs.get(gallery, id) {
            METRICS.thumbnail_cache(true);
            match self.send(msg, photo(msg, PhotoSource::FileId(file_id), &caption), t).await {
                Ok(_) => return,
                Err(e) if e.is_bad_file_id() => {
                    tracing::warn!(identity_id = id, error = %e, "cached thumbnail id refused; uploading again");
                    self.thumbs.forget(gallery, id);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "answer not delivered");
                    return;
                }
            }
        } else {
            METRICS.thumbnail_cache(false);
        }
        let upload =
            PhotoSource::Upload { bytes: celebrity.thumbnail_jpeg.clone(), file_name: format!("{}.jpg", first.alias) };
        match self.send(msg, photo(msg, upload, &caption), t).await {
            Ok(Sent { largest_photo: Some(file_id) }) => self.thumbs.put(gallery, id, file_id),
            Ok(Sent { largest_photo: None }) => tracing::warn!("sendPhoto answered without the photo's sizes"),
            Err(e) => tracing::warn!(error = %e, "answer not delivered"),
        }
    }

    /// A celebrity's thumbnail and photo credit: from the cache, else from the matcher
    /// (GetIdentity). `None` (logged) when the matcher has none to give.
    async fn celebrity(&self, gallery: &str, id: u32, trace: &TraceContext, t: &mut Timings) -> Option<Arc<Celebrity>> {
        let (c, took) = self.celebrity_timed(gallery, id, trace).await;
        t.matcher += took;
        c
    }

    /// `celebrity`, with the time spent asking the matcher.
    async fn celebrity_timed(
        &self,
        gallery: &str,
        id: u32,
        trace: &TraceContext,
    ) -> (Option<Arc<Celebrity>>, Duration) {
        if let Some(c) = self.celebrities.get(gallery, id) {
            return (Some(c), Duration::ZERO);
        }
        let started = Instant::now();
        let identity = self.matcher.identity(id, trace).await;
        let took = started.elapsed();
        let found = match identity {
            // Identity ids hold within one gallery: a replica already on another gallery
            // (a rollout between Match and GetIdentity) would show someone else.
            Ok(i) if i.gallery_version != gallery => {
                tracing::warn!(
                    identity_id = id,
                    matched_in = gallery,
                    answered_from = %i.gallery_version,
                    "GetIdentity answered from another gallery version; answering in text"
                );
                None
            }
            Ok(i) if !i.thumbnail_jpeg.is_empty() => {
                let c = Arc::new(Celebrity { thumbnail_jpeg: i.thumbnail_jpeg, credit: i.credit });
                self.celebrities.put(gallery, id, c.clone());
                Some(c)
            }
            Ok(_) => {
                tracing::warn!(identity_id = id, "identity has no thumbnail; answering in text");
                None
            }
            Err(e) => {
                tracing::warn!(identity_id = id, error = %e, "GetIdentity failed; answering in text");
                None
            }
        };
        (found, took)
    }

    /// Awaits `work`, renewing the chat's "uploading photo" status while it lasts (Telegram
    /// shows a status for 5 s): a photo waiting out a matcher outage still looks alive.
    async fn keep_uploading_status<T>(
        &self,
        chat_id: i64,
        shown: bool,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        let mut next = Instant::now() + if shown { CHAT_ACTION_RENEWAL } else { Duration::from_millis(200) };
        // The renewal in progress, polled beside the work so a slow Bot API never delays it.
        let mut renewal: Option<std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>> = None;
        loop {
            tokio::select! {
                out = &mut work => return out,
                shown = async {
                    match renewal.as_mut() {
                        Some(r) => r.await,
                        None => std::future::pending().await,
                    }
                }, if renewal.is_some() => {
                    renewal = None;
                    // Chat actions take a global send slot only when one is free: when many
                    // photos wait together, a skipped renewal is tried again shortly, at a
                    // random moment so they do not all collide again.
                    next = if shown {
                        next + CHAT_ACTION_RENEWAL
                    } else {
                        Instant::now() + Duration::from_millis(fastrand::u64(50..400))
                    };
                }
                _ = tokio::time::sleep_until(next), if renewal.is_none() => {
                    renewal = Some(Box::pin(self.outbox.chat_action(chat_id, ChatAction::UploadPhoto)));
                    // Counted from when the status was asked for, not from its answer.
                    next = Instant::now();
                }
            }
        }
    }

    async fn download(&self, file: &ImageFile) -> Result<bytes::Bytes, TelegramError> {
        let api = self.outbox.api();
        let info = api.get_file(&file.file_id).await?;
        if let Some(size) = input::announced_size(&info.meta) {
            if size > self.rules.max_file_bytes {
                return Err(TelegramError::FileTooLarge { size, limit: self.rules.max_file_bytes });
            }
        }
        if info.path.is_empty() {
            return Err(TelegramError::NoFilePath);
        }
        api.download(&info.path, self.rules.max_file_bytes).await
    }

    async fn say(&self, msg: &Message, html: String, t: &mut Timings) {
        let out = OutgoingMessage { chat_id: msg.chat.id.0, reply_to: Some(msg.id), body: OutgoingBody::Text { html } };
        if let Err(e) = self.send(msg, out, t).await {
            tracing::warn!(error = %e, "answer not delivered");
        }
    }

    async fn send(&self, msg: &Message, out: OutgoingMessage, t: &mut Timings) -> Result<Sent, TelegramError> {
        self.outbox.send(&out, input::is_group(msg), &mut t.send).await
    }

    fn limit_mb(&self) -> u64 {
        self.rules.max_file_bytes / (1024 * 1024)
    }
}

fn photo(msg: &Message, photo: PhotoSource, caption: &str) -> OutgoingMessage {
    OutgoingMessage {
        chat_id: msg.chat.id.0,
        reply_to: Some(msg.id),
        body: OutgoingBody::Photo { photo, caption_html: caption.to_owned() },
    }
}

/// Who sent the message (the chat, for messages without a sender, e.g. channel posts).
fn sender(msg: &Message) -> i64 {
    msg.from.as_ref().and_then(|u| i64::try_from(u.id.0).ok()).unwrap_or(msg.chat.id.0)
}

/// Handles `update` in a task of `tasks`, holding `permit` (a processing slot), and then
/// calls `done` with its id, also when the handler panicked: one poisonous update must not
/// hold an offset or a webhook slot forever. Shared by polling and webhook mode.
pub fn spawn_tracked(
    bot: &Arc<Bot>,
    tasks: &TaskTracker,
    update: Update,
    permit: OwnedSemaphorePermit,
    done: impl FnOnce(i64) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let bot = bot.clone();
    tasks.spawn(async move {
        let id = telegram::update_id(&update);
        METRICS.in_flight_add(1);
        // A separate task isolates a panic.
        if let Err(e) = tokio::spawn(async move { bot.handle(update).await }).await {
            tracing::error!(update_id = id, error = %e, "update handler failed");
        }
        done(id);
        METRICS.in_flight_add(-1);
        drop(permit);
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
