//! The hazards of teloxide-core 0.13 read from its source, each shown against the fake Bot
//! API server (tests/src/fake_telegram.rs: real HTTP on loopback, the Bot API's JSON), and
//! what the gateway does about it:
//! - `Bot` derives `Debug` with the token inside;
//! - error messages: its redaction covers a token in a reqwest URL only (and a short
//!   token only by dropping the URL), while an unparsable body is quoted in full;
//! - a 5xx answer makes it sleep 10 s before returning the error;
//! - no per-request timeout;
//! - getUpdates is parsed as a whole.
//!
//! `--nocapture` shows the figures measured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser as _;
use lookalike_e2e::fake_telegram::{FakeTelegram, Fault, Sender};
use lookalike_e2e::ports::free_port;
use serde_json::json;
use teloxide_core::requests::{Request as _, Requester as _};
use teloxide_core::types::UpdateKind;
use tg_gateway::flood::{FloodConfig, FloodControl};
use tg_gateway::outbox::{Outbox, SendTimings};
use tg_gateway::secret::BotToken;
use tg_gateway::telegram::{update_id, BotApi, OutgoingBody, OutgoingMessage};

/// A secret of 17 characters: teloxide-core cannot recognise it as a token in a URL and
/// drops the whole URL from its errors.
const SHORT: &str = "123456:short_Secret-part";
/// 35+ characters (like real tokens): teloxide-core writes `token:redacted` in the URL.
const LONG: &str = "7000000001:AAHe2e-SECRET_token_value_0123456789";

fn secret(token: &str) -> &str {
    token.split_once(':').map(|(_, s)| s).unwrap()
}

fn flood(rate: f64) -> FloodControl {
    FloodControl::new(FloodConfig { global_rate: rate, chat_interval: Duration::from_secs(1), group_per_minute: 20 })
}

fn api(tg: &FakeTelegram, token: &str, timeout: Duration) -> BotApi {
    BotApi::new(&tg.url(), BotToken::new(token).unwrap(), timeout).unwrap()
}

fn text(chat_id: i64, html: &str) -> OutgoingMessage {
    OutgoingMessage { chat_id, reply_to: None, body: OutgoingBody::Text { html: html.to_owned() } }
}

#[test]
fn no_struct_holding_the_token_prints_it() {
    for token in [SHORT, LONG] {
        // The hazard: teloxide-core's own `Bot` shows the token in full.
        let raw = format!("{:?}", teloxide_core::Bot::new(token));
        assert!(raw.contains(secret(token)), "teloxide-core's Debug changed: {raw}");

        let t = BotToken::new(token).unwrap();
        let api = BotApi::new("http://127.0.0.1:9", t.clone(), Duration::from_secs(11)).unwrap();
        let outbox = Outbox::new(api.clone(), flood(30.0));
        let config =
            tg_gateway::config::Args::parse_from(["tg-gateway", "--telegram-bot-token", token]).validate().unwrap();
        for shown in [format!("{api:?}"), format!("{outbox:?}"), format!("{config:?}"), format!("{t:?} {t}")] {
            assert!(!shown.contains(secret(token)), "{shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_carry_the_token_short_or_long() {
    for token in [SHORT, LONG] {
        let t = BotToken::new(token).unwrap();
        // Connection refused: a reqwest error, which teloxide-core redacts itself.
        let closed = BotApi::new(&format!("http://127.0.0.1:{}", free_port()), t.clone(), Duration::from_secs(5));
        let e = closed.unwrap().get_me().await.unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(secret(token)), "{shown}");
        assert!(e.is_transient());
        eprintln!("connection refused, {}-character secret: {e}", secret(token).len());

        // A proxy's error page quoting the request path: teloxide-core's error quotes it.
        let tg = FakeTelegram::start(token).await.unwrap();
        tg.inject("getMe", None, Fault::HtmlEchoingPath);
        let bot = teloxide_core::Bot::new(token).set_api_url(tg.url().parse().unwrap());
        let raw = bot.get_me().send().await.unwrap_err().to_string();
        assert!(raw.contains(secret(token)), "the hazard: {raw}");
        tg.inject("getMe", None, Fault::HtmlEchoingPath);
        let e = api(&tg, token, Duration::from_secs(5)).get_me().await.unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(secret(token)), "{shown}");
        assert!(shown.contains("<token>"), "{shown}");
        assert!(e.is_transient(), "an HTML page is not the Bot API's answer: safe to try again");
        eprintln!("HTML page echoing the path: teloxide-core says {raw:.160}...; the gateway says {e:.160}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_pauses_its_chat_for_teloxides_10_s_and_nothing_else() {
    let tg = FakeTelegram::start(LONG).await.unwrap();
    let outbox = Outbox::new(api(&tg, LONG, Duration::from_secs(30)), flood(30.0));
    tg.inject("sendMessage", Some(1), Fault::ServerError);
    let started = Instant::now();
    let send = |chat: i64, html: &'static str, after_ms: u64| {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            let mut t = SendTimings::default();
            outbox.send(&text(chat, html), false, &mut t).await.map(|_| started.elapsed())
        })
    };
    let first = send(1, "first", 0);
    let other = send(2, "other chat", 100);
    let second = send(1, "second", 200);
    let other_at = other.await.unwrap().unwrap();
    let first_at = first.await.unwrap().unwrap();
    let second_at = second.await.unwrap().unwrap();
    let calls = tg.calls_of("sendMessage");
    let to_1: Vec<_> = calls.iter().filter(|c| c.chat_id() == Some(1)).collect();
    assert_eq!(to_1.iter().map(|c| c.status).collect::<Vec<_>>(), [500, 200, 200], "{}", tg.format_log());
    assert_eq!(to_1[1].text(), "first", "the chat's order is kept");
    let retry_gap = (to_1[1].at - to_1[0].answered_at).as_secs_f64();
    eprintln!(
        "5xx: the retry went {retry_gap:.2} s after the 500 (teloxide-core's pause); the chat's first message \
         answered at {:.2} s, its second at {:.2} s; another chat at {:.2} s",
        first_at.as_secs_f64(),
        second_at.as_secs_f64(),
        other_at.as_secs_f64()
    );
    // teloxide-core's pause is there, and it is the whole wait: the outbox's own backoff
    // (0.5 s) is counted from the attempt's start, not added after it.
    assert!(retry_gap >= 9.9, "{retry_gap}");
    assert!(retry_gap < 10.4, "backoff added on top of the client's pause: {retry_gap}");
    // It holds that chat only: another chat is answered at once.
    assert!(other_at < Duration::from_secs(2), "{other_at:?}");
    assert!(second_at >= first_at + Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_has_its_own_deadline_and_a_late_send_is_not_repeated() {
    let tg = FakeTelegram::start(LONG).await.unwrap();
    let api = api(&tg, LONG, Duration::from_secs(1));
    tg.inject("getMe", None, Fault::Delay(Duration::from_secs(5)));
    let t0 = Instant::now();
    let e = api.get_me().await.unwrap_err();
    let took = t0.elapsed();
    assert!(e.may_have_arrived(), "{e}");
    assert!(took < Duration::from_secs(2), "no deadline of its own: {took:?}");
    eprintln!("getMe with a 5 s answer and a 1 s deadline: {e} after {:.2} s", took.as_secs_f64());

    // A send whose answer is late: Telegram carries it out anyway, so it is not sent again.
    let outbox = Outbox::new(api, flood(30.0));
    tg.inject("sendMessage", Some(5), Fault::Delay(Duration::from_secs(3)));
    let mut t = SendTimings::default();
    assert!(outbox.send(&text(5, "late"), false, &mut t).await.is_err());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delivered: Vec<_> = tg.delivered().into_iter().filter(|c| c.chat_id() == Some(5)).collect();
    assert_eq!(delivered.len(), 1, "{}", tg.format_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_update_in_a_batch_is_kept_by_id_and_the_batch_is_read() {
    let tg = FakeTelegram::start(LONG).await.unwrap();
    let api = api(&tg, LONG, Duration::from_secs(5));
    let good = |chat| tg.push(tg.text_message(Sender::private(chat), "/start"));
    let first = good(1);
    // A chat of a kind teloxide-core's types do not know: the whole message is rejected.
    // (A document with an unparsable mime_type is not: it comes out as an empty message.)
    let bad = tg.push_raw(json!({"message": {"message_id": 9, "date": 1_700_000_000,
        "chat": {"id": 2, "type": "a_new_kind_of_chat"}, "text": "/start"}}));
    let last = good(3);
    let batch = api.get_updates(None, Duration::ZERO, 100).await.unwrap();
    let ids: Vec<i64> = batch.updates.iter().map(update_id).collect();
    assert_eq!(ids, [first["update_id"].as_i64().unwrap(), bad, last["update_id"].as_i64().unwrap()]);
    assert!(matches!(batch.updates[1].kind, UpdateKind::Error(_)), "{:?}", batch.updates[1]);
    assert!(matches!(batch.updates[2].kind, UpdateKind::Message(_)));

    // An update id teloxide-core's u32 cannot hold fails the whole batch in teloxide-core...
    let huge = tg.push_raw(json!({"update_id": 5_000_000_000_i64, "message": {}}));
    let bot = teloxide_core::Bot::new(LONG).set_api_url(tg.url().parse().unwrap());
    let raw = bot.get_updates().send().await.unwrap_err();
    assert!(matches!(raw, teloxide_core::RequestError::InvalidJson { .. }), "{raw}");
    // ...and is read update by update here: the good ones kept, the bad one's id reported.
    let batch = api.get_updates(None, Duration::ZERO, 100).await.unwrap();
    assert_eq!(batch.updates.len(), 3);
    assert_eq!(batch.unreadable, [huge]);
}
