//! End-to-end: the real `tg-gateway` and `matcher` processes (real models, a small real
//! gallery) against the fake Telegram Bot API server. Assertions are about semantics and
//! about rates measured from the fake server's call log, with generous timeouts: these
//! run on a slow, shared 2-core machine.
//!
//! Needs the binaries: `cargo build --workspace --bins && cargo test --workspace`.
//! `E2E_ECHO_LOGS=1` echoes the processes' output; `--nocapture` shows the reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use lookalike_e2e::fake_telegram::{Call, FakeTelegram, Fault, PhotoArg, Sender, BOT_USERNAME};
use lookalike_e2e::fixtures::{
    assert_no_token, face, jpeg_variant, load_image, max_in_window, photo_sizes, serial, Gateway, GatewayOptions,
    Matcher, KIT_QUERY, OBAMA_CREDIT_AUTHOR, OBAMA_CREDIT_LICENSE, OBAMA_CREDIT_SOURCE, OBAMA_QUERY, TOKEN,
};
use lookalike_e2e::procs::{binary, free_port, Logs, Process};
use lookalike_proto::v1 as pb;
use serde_json::Value;

const REPLY_TIMEOUT: Duration = Duration::from_secs(180);

fn to_chat(calls: &[Call], chat: i64) -> Vec<Call> {
    calls.iter().filter(|c| c.chat_id() == Some(chat)).cloned().collect()
}

fn delivered_to(calls: &[Call], chat: i64) -> Vec<Call> {
    to_chat(calls, chat).into_iter().filter(Call::is_delivered_message).collect()
}

async fn reply_to(tg: &FakeTelegram, chat: i64) -> Call {
    let ok = tg.wait_until(REPLY_TIMEOUT, |c| !delivered_to(c, chat).is_empty()).await;
    assert!(ok, "no answer to chat {chat}; call log:\n{}", tg.format_log());
    delivered_to(&tg.calls(), chat).remove(0)
}

/// "— 87%" -> 87.
fn percent(caption: &str) -> Option<u32> {
    let after = caption.split("— ").nth(1)?;
    after.split('%').next()?.trim().parse().ok()
}

/// The value of the series `name{labels}` in a Prometheus text page, whatever the order its
/// labels are written in.
fn series(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let inner = if rest.is_empty() { "" } else { rest.strip_prefix('{')?.strip_suffix('}')? };
        let mut found: Vec<(&str, &str)> =
            inner.split(',').filter(|p| !p.is_empty()).filter_map(|p| p.split_once('=')).collect();
        found.iter_mut().for_each(|(_, v)| *v = v.trim_matches('"'));
        found.sort_unstable();
        let mut wanted = labels.to_vec();
        wanted.sort_unstable();
        (found == wanted).then(|| value.parse().ok()).flatten()
    })
}

fn sorted_stats(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    if v.is_empty() {
        return (0, 0, 0);
    }
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.95), v[v.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_and_document_get_name_similarity_link_and_thumbnail() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let matcher = Matcher::start(None).await?;
    // The plain reply (celebrity thumbnail + caption); cards have their own test below.
    let gw = Gateway::start(&tg, &matcher.url(), GatewayOptions::default().arg("--cards", "false")).await?;

    // A photo as Telegram sends it: four sizes. The 800 px one is the smallest >= 640.
    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[90, 320, 800, 1280])?;
    let expected_file = sizes[2].0.file_id.clone();
    tg.push(tg.photo_message(Sender::private(1001), &sizes));
    let reply = reply_to(&tg, 1001).await;
    assert_eq!(reply.method, "sendPhoto", "{}", tg.format_log());
    let caption = reply.text();
    assert!(caption.starts_with("You look like <b>Barack Obama</b> — "), "{caption}");
    let pct = percent(&caption).expect("a similarity percentage");
    assert!((1..=100).contains(&pct), "{caption}");
    assert!(caption.contains("https://en.wikipedia.org/wiki/Barack_Obama"), "{caption}");
    assert_eq!(reply.str_param("parse_mode").as_deref(), Some("HTML"));
    match &reply.photo {
        Some(PhotoArg::Upload(jpeg)) => {
            assert!(jpeg.starts_with(&[0xFF, 0xD8]), "thumbnail is not a JPEG")
        }
        other => panic!("expected a thumbnail upload, got {other:?}"),
    }
    let get_files = tg.calls_of("getFile");
    assert_eq!(get_files.len(), 1);
    assert_eq!(get_files[0].str_param("file_id").as_deref(), Some(expected_file.as_str()));
    let actions = to_chat(&tg.calls_of("sendChatAction"), 1001);
    assert!(actions.iter().any(|c| c.str_param("action").as_deref() == Some("upload_photo")));

    // The same celebrity again, for a Russian speaker: the thumbnail's file_id is reused.
    let uploaded_id = reply.response["result"]["photo"]
        .as_array()
        .and_then(|p| p.iter().max_by_key(|s| s["width"].as_i64()))
        .and_then(|s| s["file_id"].as_str())
        .unwrap()
        .to_owned();
    tg.push(tg.photo_message(Sender::private(1002).lang("ru"), &sizes));
    let reply = reply_to(&tg, 1002).await;
    assert_eq!(reply.photo, Some(PhotoArg::FileId(uploaded_id)));
    assert!(reply.text().starts_with("Вы похожи на <b>Barack Obama</b> — "), "{}", reply.text());

    // An image sent as a file (document), JPEG by mime type.
    let kit = tg.add_file(std::fs::read(face(KIT_QUERY))?, None);
    tg.push(tg.document_message(Sender::private(1003), &kit, "image/jpeg", "kit.jpg"));
    let reply = reply_to(&tg, 1003).await;
    assert!(reply.text().starts_with("You look like <b>Kit Harington</b>"), "{}", reply.text());
    assert!(reply.text().contains("https://en.wikipedia.org/wiki/Kit_Harington"));

    // /start and /help, by language.
    tg.push(tg.text_message(Sender::private(1004).lang("ru"), "/start"));
    assert!(reply_to(&tg, 1004).await.text().contains("Пришлите селфи"));
    tg.push(tg.text_message(Sender::private(1005), "/help"));
    assert!(reply_to(&tg, 1005).await.text().contains("Send me a selfie"));

    let metrics = gw.metrics().await?;
    assert!(metrics.contains("tg_gateway_updates_total{outcome=\"match\"} 3"), "{metrics}");
    assert!(metrics.contains("tg_gateway_thumbnail_cache_total{result=\"hit\"}"), "{metrics}");
    gw.assert_no_token();

    // The report: one full exchange (the first photo).
    let lines = gw.process.logs.lines();
    let end = lines.iter().position(|l| l.contains("update handled")).map_or(lines.len(), |i| i + 1);
    let first = &lines[..end];
    eprintln!("=== fake Telegram call log ===\n{}", tg.format_log());
    eprintln!("=== gateway log ===\n{}", first.join("\n"));
    let (p50, p95, max) = sorted_stats(gw.overheads_us());
    eprintln!("gateway overhead per update (µs): p50={p50} p95={p95} max={max}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_face_group_photo_non_image_oversized_and_broken_files() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let matcher = Matcher::start(None).await?;
    let gw = Gateway::start(&tg, &matcher.url(), GatewayOptions::default()).await?;

    let coffee = photo_sizes(&tg, &face("scenes/coffee.png"), &[320, 600])?;
    tg.push(tg.photo_message(Sender::private(2001), &coffee));
    let group = photo_sizes(&tg, &face("scenes/group-t1.jpg"), &[320, 800, 1280])?;
    tg.push(tg.photo_message(Sender::private(2002), &group));
    let pdf = tg.add_file(b"%PDF-1.4\n%fake\n".to_vec(), None);
    tg.push(tg.document_message(Sender::private(2003), &pdf, "application/pdf", "cv.pdf"));
    let huge = tg.add_file(vec![0xFF, 0xD8, 0xFF], Some(25 * 1024 * 1024));
    tg.push(tg.document_message(Sender::private(2004), &huge, "image/jpeg", "huge.jpg"));
    let broken = tg.add_file(b"this is not really a jpeg".repeat(40), None);
    tg.push(tg.document_message(Sender::private(2005), &broken, "image/jpeg", "broken.jpg"));
    tg.push(tg.text_message(Sender::private(2006), "hello?"));

    let no_face = reply_to(&tg, 2001).await;
    assert_eq!(no_face.method, "sendMessage");
    assert!(no_face.text().contains("could not find a face"), "{}", no_face.text());
    assert!(no_face.text().contains("face the camera"));

    let group_reply = reply_to(&tg, 2002).await;
    let caption = group_reply.text();
    assert!(caption.contains("faces, left to right:"), "{caption}");
    let lines = caption.lines().filter(|l| l.contains("<a href=")).count();
    assert!(lines >= 2, "one line per face expected: {caption}");
    assert!(caption.contains("1. <a href=") && caption.contains("2. <a href="), "{caption}");

    assert!(reply_to(&tg, 2003).await.text().contains("I can only read photos"));
    assert!(reply_to(&tg, 2004).await.text().contains("too big"));
    assert!(
        !tg.calls_of("getFile").iter().any(|c| c.str_param("file_id").as_deref() == Some(huge.file_id.as_str())),
        "an over-limit file was fetched"
    );
    assert!(reply_to(&tg, 2005).await.text().contains("could not read this image"));
    assert!(reply_to(&tg, 2006).await.text().contains("Send me a photo"));
    for chat in 2001..=2006 {
        assert_eq!(delivered_to(&tg.calls(), chat).len(), 1, "chat {chat}");
    }
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_300_chats_respects_flood_limits_and_answers_each_once() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let matcher = Matcher::start(None).await?;
    // The matcher answers ~10 photos/s on 2 shared cores, below Telegram's 30/s: to have
    // the send budget (not the matcher) set the pace, the bot's budget is 10/s shared by 2
    // replicas, so this replica may send 5/s.
    let (global, replicas) = (10.0, 2.0);
    let rate = global / replicas;
    let gw = Gateway::start(
        &tg,
        &matcher.url(),
        GatewayOptions::default()
            .arg("--global-rate", global)
            .arg("--replicas", replicas)
            .arg("--matcher-timeout-ms", 60_000),
    )
    .await?;

    // A few different photos (800 px is what the gateway picks), reused across chats
    // the way Telegram reuses file ids of forwarded photos.
    let mut photos = Vec::new();
    for rel in [OBAMA_QUERY, KIT_QUERY, "tg1280/Joe_Biden/1.jpg", "tg1280/Rose_Leslie/1.jpg"] {
        photos.push(photo_sizes(&tg, &face(rel), &[320, 800])?);
    }
    let chats: Vec<i64> = (0..300).map(|i| 10_000 + i).collect();
    for (i, chat) in chats.iter().enumerate() {
        tg.push(tg.photo_message(Sender::private(*chat), &photos[i % photos.len()]));
    }
    let done = tg
        .wait_until(Duration::from_secs(900), |calls| {
            let mut answered = std::collections::HashSet::new();
            for c in calls.iter().filter(|c| c.is_delivered_message()) {
                answered.insert(c.chat_id());
            }
            answered.len() >= chats.len()
        })
        .await;
    assert!(done, "not every chat was answered; {} deliveries", tg.delivered().len());
    // Time for any duplicate to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let calls = tg.calls();
    let mut per_chat: HashMap<i64, Vec<f64>> = HashMap::new();
    for c in calls.iter().filter(|c| c.is_delivered_message()) {
        per_chat.entry(c.chat_id().unwrap()).or_default().push(c.at.as_secs_f64());
    }
    for chat in &chats {
        let n = per_chat.get(chat).map_or(0, Vec::len);
        assert_eq!(n, 1, "chat {chat} got {n} answers");
    }
    let messages: Vec<f64> = calls
        .iter()
        .filter(|c| c.method == "sendMessage" || c.method == "sendPhoto")
        .map(|c| c.at.as_secs_f64())
        .collect();
    let all_sends: Vec<f64> = calls.iter().filter(|c| c.is_send()).map(|c| c.at.as_secs_f64()).collect();
    let max_msgs = max_in_window(&messages, 1.0);
    let max_sends = max_in_window(&all_sends, 1.0);
    let span = messages.iter().cloned().fold(f64::MIN, f64::max) - messages.iter().cloned().fold(f64::MAX, f64::min);
    let (p50, p95, max) = sorted_stats(gw.overheads_us());
    let photos_sent = calls.iter().filter(|c| c.method == "sendPhoto").count();
    eprintln!(
        "burst: {} messages ({} photos) in {:.1}s = {:.1}/s average; max in any 1 s window: \
         {} messages, {} sends incl. chat actions; gateway overhead µs p50={} p95={} max={}",
        messages.len(),
        photos_sent,
        span,
        messages.len() as f64 / span.max(1e-9),
        max_msgs,
        max_sends,
        p50,
        p95,
        max
    );
    // GCRA spacing allows `rate` per second; +1 for a send landing exactly on a window edge
    // after loopback/scheduler jitter.
    assert!(max_msgs <= rate as usize + 1, "message rate exceeded: {max_msgs} in 1 s");
    assert!(max_sends <= rate as usize + 1, "send rate exceeded: {max_sends} in 1 s");
    // And the bot uses its budget: the flood control grants 97 % of the rate; all sends
    // (answers and the best-effort chat actions that fill the free slots) keep up with it.
    let send_span =
        all_sends.iter().cloned().fold(f64::MIN, f64::max) - all_sends.iter().cloned().fold(f64::MAX, f64::min);
    let pace = (all_sends.len() as f64 - 1.0) / send_span.max(1e-9);
    eprintln!("burst: all sends {:.2}/s over {send_span:.1} s (allowed {rate}/s)", pace);
    assert!(pace >= rate * 0.97 * 0.85, "the bot sent {pace:.2}/s of the {rate}/s it may");
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_429_is_retried_after_retry_after_and_5xx_and_slow_answers_survive() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    // No matcher needed: text commands only. The shortest Bot API deadline allowed (it must
    // outlast teloxide-core's 10 s pause after a 5xx), so the slow answer below passes it.
    let timeout = 11;
    let gw = Gateway::start(
        &tg,
        &format!("http://127.0.0.1:{}", free_port()),
        GatewayOptions::default().arg("--telegram-timeout-secs", timeout),
    )
    .await?;

    tg.inject("sendMessage", Some(3001), Fault::TooManyRequests { retry_after: 3 });
    tg.inject("sendMessage", Some(3002), Fault::ServerError);
    // Answered 2 s after the gateway's deadline: the request was carried out (the fake, like
    // Telegram, delivers it anyway) but the gateway cannot know.
    tg.inject("sendMessage", Some(3003), Fault::Delay(Duration::from_secs(timeout + 2)));
    for chat in [3001, 3002, 3003] {
        tg.push(tg.text_message(Sender::private(chat), "/help"));
    }
    // Four commands in a row from one chat: answers at least a second apart.
    for _ in 0..4 {
        tg.push(tg.text_message(Sender::private(3004), "/help"));
    }
    let ok = tg
        .wait_until(REPLY_TIMEOUT, |c| {
            [3001, 3002, 3003].iter().all(|chat| !delivered_to(c, *chat).is_empty()) && delivered_to(c, 3004).len() == 4
        })
        .await;
    assert!(ok, "{}", tg.format_log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = tg.calls();

    let flood = to_chat(&calls, 3001);
    let sends: Vec<&Call> = flood.iter().filter(|c| c.method == "sendMessage").collect();
    assert_eq!(sends.len(), 2, "one 429, one retry: {}", tg.format_log());
    assert_eq!(sends[0].status, 429);
    assert_eq!(sends[1].status, 200);
    let gap = (sends[1].at - sends[0].answered_at).as_secs_f64();
    assert!(gap >= 3.0, "retried {gap:.3}s after the 429, before retry_after=3");
    eprintln!("429 retry_after=3: retried {gap:.3}s after the 429 answer");

    let failed = to_chat(&calls, 3002);
    assert_eq!(failed.iter().filter(|c| c.status == 500).count(), 1);
    assert_eq!(delivered_to(&calls, 3002).len(), 1);
    assert_eq!(delivered_to(&calls, 3003).len(), 1, "a slow answer must not be sent twice");
    // The deadline was passed (not merely approached) and the send was not repeated.
    assert_eq!(to_chat(&calls, 3003).iter().filter(|c| c.method == "sendMessage").count(), 1, "{}", tg.format_log());
    let gave_up = gw.process.logs.lines().iter().any(|l| l.contains("no answer in time") && l.contains("chat_id=3003"));
    assert!(gave_up, "the gateway's deadline was not reached:\n{}", gw.process.logs.text());

    let same_chat: Vec<f64> = delivered_to(&calls, 3004).iter().map(|c| c.at.as_secs_f64()).collect();
    for w in same_chat.windows(2) {
        // 1 s minus a little loopback/scheduler jitter on the fake server's side.
        assert!(w[1] - w[0] >= 0.95, "two answers to one chat {:.3}s apart", w[1] - w[0]);
    }
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_answers_correct_updates_and_refuses_forged_ones() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let matcher = Matcher::start(None).await?;
    let port = free_port();
    let secret = "e2e_webhook-SECRET_42";
    let gw = Gateway::start(
        &tg,
        &matcher.url(),
        GatewayOptions { ready_log: "webhook server listening", ..Default::default() }
            .arg("--mode", "webhook")
            .arg("--webhook-listen", format!("127.0.0.1:{port}"))
            .arg("--webhook-url", "https://bot.example.test/telegram/webhook")
            .arg("--webhook-secret", secret),
    )
    .await?;
    assert!(tg.wait_until(Duration::from_secs(30), |_| tg.webhook().is_some()).await);
    let hook = tg.webhook().unwrap();
    assert_eq!(hook.url, "https://bot.example.test/telegram/webhook");
    assert_eq!(hook.secret_token.as_deref(), Some(secret));
    assert_eq!(hook.allowed_updates, Some(serde_json::json!(["message"])));
    assert_eq!(hook.max_connections, Some(40));

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/telegram/webhook");
    let post = |update: Value, secret: Option<&str>| {
        let mut r = http.post(&url).json(&update);
        if let Some(s) = secret {
            r = r.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        r.send()
    };

    let forged = tg.make_update(tg.text_message(Sender::private(4001), "/start"));
    assert_eq!(post(forged.clone(), Some("wrong-secret")).await?.status(), 401);
    assert_eq!(post(forged, None).await?.status(), 401);

    let good = tg.make_update(tg.text_message(Sender::private(4002), "/start"));
    assert_eq!(post(good.clone(), Some(secret)).await?.status(), 200);
    // Telegram re-sending the same update: acknowledged, not answered again.
    assert_eq!(post(good, Some(secret)).await?.status(), 200);

    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[320, 800])?;
    let photo = tg.make_update(tg.photo_message(Sender::private(4003), &sizes));
    assert_eq!(post(photo, Some(secret)).await?.status(), 200);
    // The 200 comes after the update was handled.
    let calls = tg.calls();
    assert_eq!(delivered_to(&calls, 4002).len(), 1);
    let reply = delivered_to(&calls, 4003);
    assert_eq!(reply.len(), 1, "{}", tg.format_log());
    assert!(reply[0].text().contains("Barack Obama"));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = tg.calls();
    assert!(to_chat(&calls, 4001).is_empty(), "a forged update was processed");
    assert_eq!(delivered_to(&calls, 4002).len(), 1);
    assert!(tg.calls_of("getUpdates").is_empty(), "webhook mode must not poll");
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matcher_down_gets_a_busy_answer_and_recovers() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let mut matcher = Matcher::start(None).await?;
    let port = matcher.port;
    // A short wait for the matcher, so the "busy" answer comes within the test's patience.
    let opts = GatewayOptions::default().arg("--matcher-retry-deadline-secs", 5);
    let gw = Gateway::start(&tg, &matcher.url(), opts).await?;
    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[320, 800])?;

    tg.push(tg.photo_message(Sender::private(5001), &sizes));
    assert_eq!(reply_to(&tg, 5001).await.method, "sendPhoto");

    matcher.stop().await;
    tg.push(tg.photo_message(Sender::private(5002), &sizes));
    let busy = reply_to(&tg, 5002).await;
    assert_eq!(busy.method, "sendMessage");
    assert!(busy.text().contains("try again in a minute"), "{}", busy.text());

    let _matcher = Matcher::start(Some(port)).await?;
    tg.push(tg.photo_message(Sender::private(5003), &sizes));
    let back = reply_to(&tg, 5003).await;
    assert_eq!(back.method, "sendPhoto", "{}", tg.format_log());
    assert!(back.text().contains("Barack Obama"));
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_restart_mid_burst_loses_nothing_and_repeats_nothing() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let matcher = Matcher::start(None).await?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("gateway-state.json");
    // Few slots, so most of the burst is still queued when the restart comes.
    let opts = || GatewayOptions::default().arg("--state-file", state.display()).arg("--max-in-flight", 4);
    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[320, 800])?;

    // Graceful restart (SIGTERM): in-flight work finishes, nothing lost, nothing repeated.
    let mut gw = Gateway::start(&tg, &matcher.url(), opts()).await?;
    let chats: Vec<i64> = (0..40).map(|i| 60_000 + i).collect();
    for chat in &chats {
        tg.push(tg.photo_message(Sender::private(*chat), &sizes));
    }
    assert!(tg.wait_until(REPLY_TIMEOUT, |c| c.iter().filter(|c| c.is_delivered_message()).count() >= 8).await);
    let status = gw.process.terminate(Duration::from_secs(90)).await;
    assert!(status.is_some_and(|s| s.success()), "graceful exit expected: {status:?}");
    let before = tg.delivered().len();
    assert!(before < chats.len(), "the restart should happen mid-burst");
    assert!(gw.process.logs.contains("finishing updates in progress"));
    gw.assert_no_token();

    let gw2 = Gateway::start(&tg, &matcher.url(), opts()).await?;
    let all =
        tg.wait_until(Duration::from_secs(300), |c| chats.iter().all(|chat| !delivered_to(c, *chat).is_empty())).await;
    assert!(all, "updates lost across the restart:\n{}", tg.format_log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = tg.calls();
    for chat in &chats {
        assert_eq!(delivered_to(&calls, *chat).len(), 1, "chat {chat} answered twice");
    }
    eprintln!("restart: {before} of {} answered before SIGTERM, the rest after", chats.len());

    // Crash (SIGKILL) mid-burst: at-least-once, nothing lost.
    let mut gw2 = gw2;
    let crash_chats: Vec<i64> = (0..20).map(|i| 61_000 + i).collect();
    for chat in &crash_chats {
        tg.push(tg.photo_message(Sender::private(*chat), &sizes));
    }
    let target = tg.delivered().len() + 3;
    assert!(tg.wait_until(REPLY_TIMEOUT, |c| c.iter().filter(|c| c.is_delivered_message()).count() >= target).await);
    gw2.process.kill().await;
    let killed_at = tg.elapsed();
    gw2.assert_no_token();
    let _gw3 = Gateway::start(&tg, &matcher.url(), opts()).await?;
    let all = tg
        .wait_until(Duration::from_secs(300), |c| crash_chats.iter().all(|chat| !delivered_to(c, *chat).is_empty()))
        .await;
    assert!(all, "updates lost across a crash:\n{}", tg.format_log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = tg.calls();
    let repeated: Vec<i64> = crash_chats.iter().filter(|c| delivered_to(&calls, **c).len() > 1).copied().collect();
    eprintln!("crash: all {} answered; {} answered twice (in flight at SIGKILL)", crash_chats.len(), repeated.len());
    // What at-least-once allows: an answer given before the kill whose completion was not
    // yet in the state file is given again, once, after the restart. That is at most the 4
    // updates in flight (--max-in-flight) plus those that finished while the state writer
    // was writing (at most the other 4 slots): 8. Nothing else is repeated.
    assert!(repeated.len() <= 8, "{} repeats: {repeated:?}", repeated.len());
    for chat in &repeated {
        let answers = delivered_to(&calls, *chat);
        assert_eq!(answers.len(), 2, "chat {chat} answered {} times", answers.len());
        assert!(answers[0].at <= killed_at, "chat {chat}: the first answer came after the kill");
        assert!(answers[1].at > killed_at, "chat {chat}: repeated before the kill");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_reaches_the_logs() -> anyhow::Result<()> {
    let _serial = serial().await;
    // Bot API unreachable: every call fails and is logged with its error.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let logs = Logs::default();
    let mut cmd = tokio::process::Command::new(binary("tg-gateway")?);
    cmd.env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("TELEGRAM_API_URL", &closed)
        .env("GATEWAY_METRICS_LISTEN", format!("127.0.0.1:{}", free_port()))
        // Span export on, to an unreachable collector: must neither break nor leak.
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{}", free_port()))
        .env("RUST_LOG", "debug");
    let mut p = Process::spawn("gateway", cmd, logs.clone())?;
    p.wait_for_log("exporting spans over OTLP", Duration::from_secs(30)).await?;
    p.wait_for_log("Bot API call failed", Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.terminate(Duration::from_secs(10)).await;
    assert_no_token(&logs);

    // A malformed token is refused without being printed.
    let logs = Logs::default();
    let mut cmd = tokio::process::Command::new(binary("tg-gateway")?);
    cmd.env("TELEGRAM_BOT_TOKEN", "not a token AAHe2e-SECRET_token_value_0123456789")
        .env("GATEWAY_METRICS_LISTEN", format!("127.0.0.1:{}", free_port()));
    let mut p = Process::spawn("gateway", cmd, logs.clone())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = p.try_exit() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "gateway did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(logs.contains("invalid configuration"), "{}", logs.text());
    assert_no_token(&logs);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_300_commands_is_sent_at_the_default_30_per_second() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    // Commands need no matcher: the default budget (30/s) alone sets the pace.
    let gw = Gateway::start(&tg, &format!("http://127.0.0.1:{}", free_port()), GatewayOptions::default()).await?;
    let chats: Vec<i64> = (0..300).map(|i| 20_000 + i).collect();
    for chat in &chats {
        tg.push(tg.text_message(Sender::private(*chat), "/start"));
    }
    let done =
        tg.wait_until(Duration::from_secs(300), |c| c.iter().filter(|c| c.is_delivered_message()).count() >= 300).await;
    assert!(done, "{} of 300 answered", tg.delivered().len());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = tg.calls();
    for chat in &chats {
        assert_eq!(delivered_to(&calls, *chat).len(), 1, "chat {chat}");
    }
    let sends: Vec<f64> = calls.iter().filter(|c| c.is_send()).map(|c| c.at.as_secs_f64()).collect();
    let max = max_in_window(&sends, 1.0);
    let span = sends.iter().cloned().fold(f64::MIN, f64::max) - sends.iter().cloned().fold(f64::MAX, f64::min);
    eprintln!(
        "command burst: {} sends in {:.2}s = {:.1}/s average; max in any 1 s window: {max}",
        sends.len(),
        span,
        (sends.len() as f64 - 1.0) / span
    );
    assert!(max <= 31, "{max} sends in one second");
    assert!((sends.len() as f64 - 1.0) / span <= 30.0 * 1.01);
    // And it reaches the pace it may: 97 % of 30/s is granted, less a margin for a loaded
    // machine waking the sender late.
    assert!(
        (sends.len() as f64 - 1.0) / span >= 30.0 * 0.97 * 0.85,
        "only {:.1}/s of 30/s",
        (sends.len() as f64 - 1.0) / span
    );
    assert!(max >= 25, "no second reached the allowed pace: at most {max} sends in one");
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_photo_limit_answers_the_excess_without_the_matcher() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let matcher = Matcher::start(None).await?;
    let gw = Gateway::start(&tg, &matcher.url(), GatewayOptions::default().arg("--user-photos-per-minute", 2)).await?;
    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[320, 800])?;
    for _ in 0..3 {
        tg.push(tg.photo_message(Sender::private(7001), &sizes));
    }
    assert!(tg.wait_until(REPLY_TIMEOUT, |c| delivered_to(c, 7001).len() >= 3).await, "{}", tg.format_log());
    let replies = delivered_to(&tg.calls(), 7001);
    assert_eq!(replies.iter().filter(|c| c.method == "sendPhoto").count(), 2);
    assert!(replies.iter().any(|c| c.text().contains("wait a minute")), "{}", tg.format_log());
    assert_eq!(tg.calls_of("getFile").len(), 2, "the third photo must not be fetched");
    let metrics = gw.metrics().await?;
    assert!(metrics.contains("tg_gateway_user_rate_limited_total 1"), "{metrics}");
    assert_eq!(
        series(&metrics, "tg_gateway_matcher_calls_total", &[("method", "Match"), ("code", "Ok")]),
        Some(2.0),
        "{metrics}"
    );
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_matcher_replicas_share_the_load_and_cover_for_each_other() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let a = Matcher::start(None).await?;
    let mut b = Matcher::start(None).await?;
    let list = format!("{},{}", a.url(), b.url());
    let gw = Gateway::start(&tg, &list, GatewayOptions::default()).await?;
    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[320, 800])?;
    let first: Vec<i64> = (8001..=8006).collect();
    for chat in &first {
        tg.push(tg.photo_message(Sender::private(*chat), &sizes));
    }
    assert!(tg.wait_until(REPLY_TIMEOUT, |c| first.iter().all(|ch| !delivered_to(c, *ch).is_empty())).await);
    let served = |url: &str| {
        gw.process
            .logs
            .lines()
            .iter()
            .filter(|l| l.contains("matcher call method=\"Match\"") && l.contains(url) && l.contains("code=Ok"))
            .count()
    };
    let (na, nb) = (served(&a.url()), served(&b.url()));
    eprintln!("round-robin over 2 replicas: {na} + {nb} Match calls");
    assert!(na >= 1 && nb >= 1, "both replicas should serve: a={na} b={nb}");

    // One replica gone: calls that land on it are retried on the other; nobody sees "busy".
    b.stop().await;
    let second: Vec<i64> = (8011..=8014).collect();
    for chat in &second {
        tg.push(tg.photo_message(Sender::private(*chat), &sizes));
    }
    assert!(tg.wait_until(REPLY_TIMEOUT, |c| second.iter().all(|ch| !delivered_to(c, *ch).is_empty())).await);
    for chat in &second {
        let r = delivered_to(&tg.calls(), *chat);
        assert_eq!(r[0].method, "sendPhoto", "chat {chat}: {}", r[0].text());
    }
    gw.assert_no_token();
    Ok(())
}

/// The card's layout (gateway/src/card.rs), as a reader of the picture sees it: 692 px wide;
/// each row has the sender's face at x 20 and the celebrity's at x 352, both 320 x 320, the
/// first row's faces at y 20; a row is 452 px (faces, percentage, name, margin), and the
/// footer (the bot's @username) adds 20 px under the last row, after a 20 px top margin.
const CARD_WIDTH: u32 = 692;
const CARD_FACE: u32 = 320;
const CARD_USER_X: u32 = 20;
const CARD_CELEBRITY_X: u32 = 352;
const CARD_TOP: u32 = 20;
const CARD_ROW: u32 = 452;
const CARD_FOOTER: u32 = 20;
/// A row whose celebrity photo needs credit has one more line.
const CARD_CREDIT: u32 = 18;

fn rgb(jpeg: &[u8]) -> image::RgbImage {
    image::load_from_memory(jpeg).expect("a decodable image").to_rgb8()
}

/// One face square of a card, scaled back to the chips' 160 px.
fn card_face(card: &image::RgbImage, x: u32, y: u32) -> image::RgbImage {
    let crop = image::imageops::crop_imm(card, x, y, CARD_FACE, CARD_FACE).to_image();
    image::imageops::resize(&crop, 160, 160, image::imageops::FilterType::Triangle)
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.as_raw().len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_is_a_card_of_both_faces_and_cards_off_gives_the_plain_reply() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let matcher = Matcher::start(None).await?;
    let dir = tempfile::tempdir()?;
    let prefs = dir.path().join("prefs.json");
    let gw =
        Gateway::start(&tg, &matcher.url(), GatewayOptions::default().arg("--prefs-file", prefs.display())).await?;

    // The gateway downloads the 800 px variant (the smallest >= 640): the reference chip is
    // the matcher's for those very bytes.
    let (variant, ..) = jpeg_variant(&load_image(&face(OBAMA_QUERY))?, 800)?;
    let mut client = pb::matcher_client::MatcherClient::connect(matcher.url()).await?;
    let direct = client
        .r#match(pb::MatchRequest {
            query: Some(pb::match_request::Query::Image(variant.into())),
            faces: pb::FaceSelection::All as i32,
            max_faces: 5,
            return_chips: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let user_chip = rgb(&direct.faces[0].chip_jpeg);
    let top = direct.faces[0].candidates[0].clone();
    assert_eq!(top.name, "Barack Obama");
    let thumbnail = rgb(&client
        .get_identity(pb::GetIdentityRequest { identity_id: top.identity_id, omit_thumbnail: false })
        .await?
        .into_inner()
        .thumbnail_jpeg);

    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[90, 320, 800, 1280])?;
    tg.push(tg.photo_message(Sender::private(3001), &sizes));
    let reply = reply_to(&tg, 3001).await;
    assert_eq!(reply.method, "sendPhoto", "{}", tg.format_log());
    assert!(reply.text().starts_with("You look like <b>Barack Obama</b> — "), "{}", reply.text());
    // The test catalog credits Obama's gallery photos (CC BY-SA): linked in the caption, a
    // credit line on the card.
    let credit = format!(
        "📷 <a href=\"{OBAMA_CREDIT_SOURCE}\">{OBAMA_CREDIT_AUTHOR}</a>, \
         <a href=\"https://creativecommons.org/licenses/by-sa/4.0\">{OBAMA_CREDIT_LICENSE}</a>"
    );
    assert!(reply.text().ends_with(&credit), "{}", reply.text());
    let Some(PhotoArg::Upload(card)) = &reply.photo else { panic!("expected a card upload, got {:?}", reply.photo) };
    let card = rgb(card);
    assert_eq!(
        card.dimensions(),
        (CARD_WIDTH, CARD_TOP + CARD_ROW + CARD_CREDIT + CARD_FOOTER),
        "one face: one row, with the photo credit"
    );
    let user_half = card_face(&card, CARD_USER_X, CARD_TOP);
    let celebrity_half = card_face(&card, CARD_CELEBRITY_X, CARD_TOP);
    let user_vs_chip = mean_abs_diff(&user_half, &user_chip);
    let celebrity_vs_thumb = mean_abs_diff(&celebrity_half, &thumbnail);
    let user_vs_thumb = mean_abs_diff(&user_half, &thumbnail);
    eprintln!(
        "card {}x{}: sender's half vs sender's chip {user_vs_chip:.2}, celebrity's half vs thumbnail \
         {celebrity_vs_thumb:.2}, sender's half vs thumbnail {user_vs_thumb:.2} (mean abs diff per channel)",
        card.width(),
        card.height()
    );
    assert!(user_vs_chip < 6.0, "the left half is not the sender's face: {user_vs_chip:.2}");
    assert!(celebrity_vs_thumb < 6.0, "the right half is not the celebrity's: {celebrity_vs_thumb:.2}");
    assert!(user_vs_thumb > 3.0 * user_vs_chip.max(1.0), "the halves are told apart: {user_vs_thumb:.2}");
    // The percentage and the name are drawn under the faces (bright text on the dark card).
    let text_rows = (CARD_TOP + CARD_FACE..CARD_TOP + CARD_ROW)
        .filter(|&y| (0..CARD_WIDTH).any(|x| card.get_pixel(x, y).0[1] > 150))
        .count();
    assert!(text_rows > 60, "text under the faces: {text_rows} rows");
    let credit_rows = (CARD_TOP + CARD_ROW - 20..CARD_TOP + CARD_ROW + CARD_CREDIT)
        .filter(|&y| (0..CARD_WIDTH).any(|x| card.get_pixel(x, y).0[1] > 120))
        .count();
    assert!(credit_rows >= 8, "the credit line is drawn: {credit_rows} rows");

    // A group photo: one card, a row per face (up to the face limit), numbered like the caption.
    let group = photo_sizes(&tg, &face("scenes/group-t1.jpg"), &[320, 800, 1280])?;
    tg.push(tg.photo_message(Sender::private(3002), &group));
    let reply = reply_to(&tg, 3002).await;
    // Numbered face lines ("2. <a href=...>Name</a> — 40%"), not the credit lines.
    let faces = reply.text().lines().filter(|l| l.contains(". <a href=") && l.contains('%')).count() as u32;
    assert!(faces >= 2, "{}", reply.text());
    let Some(PhotoArg::Upload(card)) = &reply.photo else { panic!("expected a card upload, got {:?}", reply.photo) };
    // Rows whose celebrity photo is credited (Obama's, in the test catalog) are taller.
    let credited = reply.text().lines().filter(|l| l.contains(">Barack Obama</a> — ")).count() as u32;
    assert_eq!(
        rgb(card).dimensions(),
        (CARD_WIDTH, CARD_TOP + faces * CARD_ROW + credited * CARD_CREDIT + CARD_FOOTER)
    );

    // /cards off: the plain reply (the celebrity's thumbnail, the same caption), kept in the
    // prefs file; other users still get cards.
    tg.push(tg.text_message(Sender::private(3001), "/cards off"));
    let ok = tg.wait_until(REPLY_TIMEOUT, |c| delivered_to(c, 3001).len() >= 2).await;
    assert!(ok, "{}", tg.format_log());
    assert!(delivered_to(&tg.calls(), 3001)[1].text().contains("Cards are off"));
    let stored: Value = serde_json::from_slice(&std::fs::read(&prefs)?)?;
    assert_eq!(stored["cards_off"], serde_json::json!([3001]), "{stored}");
    tg.push(tg.photo_message(Sender::private(3001), &sizes));
    let ok = tg.wait_until(REPLY_TIMEOUT, |c| delivered_to(c, 3001).len() >= 3).await;
    assert!(ok, "{}", tg.format_log());
    let plain = delivered_to(&tg.calls(), 3001).remove(2);
    assert_eq!(plain.method, "sendPhoto");
    assert!(plain.text().starts_with("You look like <b>Barack Obama</b> — "), "{}", plain.text());
    assert!(plain.text().ends_with(&credit), "the plain reply credits the photo too: {}", plain.text());
    match &plain.photo {
        Some(PhotoArg::Upload(jpeg)) => assert_eq!(rgb(jpeg), thumbnail, "the plain reply is the thumbnail itself"),
        other => panic!("expected the thumbnail upload, got {other:?}"),
    }
    let metrics = gw.metrics().await?;
    assert!(metrics.contains("tg_gateway_cards_total{form=\"card\"} 2"), "{metrics}");
    assert!(metrics.contains("tg_gateway_cards_total{form=\"plain\"} 1"), "{metrics}");
    // The card holds the sender's face: never in the logs (as bytes or base64 JPEG).
    let logs = gw.process.logs.text();
    assert!(!logs.contains("255, 216, 255") && !logs.contains("/9j/"), "image bytes in the gateway log");
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matcher_down_for_10_s_costs_a_wait_not_a_refusal() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let mut matcher = Matcher::start(None).await?;
    let port = matcher.port;
    // The defaults: 45 s of retries, 32 waiting photos at most.
    let gw = Gateway::start(&tg, &matcher.url(), GatewayOptions::default()).await?;
    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[320, 800])?;
    matcher.stop().await;
    let chats: Vec<i64> = (0..12).map(|i| 9_000 + i).collect();
    for chat in &chats {
        tg.push(tg.photo_message(Sender::private(*chat), &sizes));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(tg.delivered().is_empty(), "nobody is answered while the matcher is down:\n{}", tg.format_log());
    let _matcher = Matcher::start(Some(port)).await?;
    let all = tg.wait_until(REPLY_TIMEOUT, |c| chats.iter().all(|chat| !delivered_to(c, *chat).is_empty())).await;
    assert!(all, "{}", tg.format_log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = tg.calls();
    for chat in &chats {
        let replies = delivered_to(&calls, *chat);
        assert_eq!(replies.len(), 1, "chat {chat}: {replies:?}");
        assert_eq!(replies[0].method, "sendPhoto", "chat {chat} got {}", replies[0].text());
        assert!(replies[0].text().contains("Barack Obama"), "{}", replies[0].text());
        // The "uploading photo" status was renewed while the photo waited.
        let actions = to_chat(&calls, *chat).iter().filter(|c| c.method == "sendChatAction").count();
        assert!(actions >= 2, "chat {chat}: {actions} chat actions");
    }
    let metrics = gw.metrics().await?;
    assert!(!metrics.contains("tg_gateway_matcher_shed_total{"), "nobody was shed: {metrics}");
    assert!(metrics.contains("tg_gateway_matcher_waiting 0"), "{metrics}");
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matcher_down_past_the_deadline_gets_one_polite_refusal_each_and_the_breaker_sheds() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let mut matcher = Matcher::start(None).await?;
    let opts = GatewayOptions::default().arg("--matcher-retry-deadline-secs", 6).arg("--matcher-max-waiting", 3);
    let gw = Gateway::start(&tg, &matcher.url(), opts).await?;
    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[320, 800])?;
    matcher.stop().await;
    let chats: Vec<i64> = (0..8).map(|i| 9_100 + i).collect();
    let pushed = tg.elapsed().as_secs_f64();
    for chat in &chats {
        tg.push(tg.photo_message(Sender::private(*chat), &sizes));
    }
    let all = tg.wait_until(REPLY_TIMEOUT, |c| chats.iter().all(|chat| !delivered_to(c, *chat).is_empty())).await;
    assert!(all, "{}", tg.format_log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = tg.calls();
    let mut waited = Vec::new();
    for chat in &chats {
        let replies = delivered_to(&calls, *chat);
        assert_eq!(replies.len(), 1, "chat {chat}: exactly one answer, got {replies:?}");
        assert!(replies[0].text().contains("try again in a minute"), "{}", replies[0].text());
        waited.push(replies[0].at.as_secs_f64() - pushed);
    }
    // Three photos waited out the deadline; the others were answered at once (the breaker).
    let slow = waited.iter().filter(|&&w| w >= 5.0).count();
    let fast = waited.iter().filter(|&&w| w < 3.0).count();
    eprintln!("matcher down: seconds to the busy answer per photo: {waited:.1?}");
    assert_eq!(slow, 3, "{waited:?}");
    assert_eq!(fast, chats.len() - 3, "{waited:?}");
    let metrics = gw.metrics().await?;
    assert!(metrics.contains("tg_gateway_matcher_shed_total{method=\"Match\"} 5"), "{metrics}");
    gw.assert_no_token();
    Ok(())
}

/// Polls a probe until it answers `status` (or fails the test after `within`).
async fn probe_until(gw: &Gateway, path: &str, status: u16, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (code, body) = gw.probe(path).await.expect("probe");
        if code == status {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} stayed {code} (wanted {status}): {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_follow_telegram_the_matcher_and_a_stuck_loop() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let mut matcher = Matcher::start(None).await?;
    let opts = GatewayOptions::default()
        .arg("--poll-timeout-secs", 1)
        .arg("--ready-max-poll-age-secs", 4)
        .arg("--live-max-loop-age-secs", 4)
        .arg("--max-in-flight", 1)
        .arg("--matcher-retry-deadline-secs", 2);
    let gw = Gateway::start(&tg, &matcher.url(), opts).await?;
    assert_eq!(gw.probe("/healthz").await?.0, 200);
    let body = probe_until(&gw, "/readyz", 200, Duration::from_secs(10)).await;
    assert!(body.contains("\"ready\":true"), "{body}");
    assert_eq!(gw.probe("/livez").await?.0, 200);

    // Telegram failing: no successful getUpdates for longer than the limit -> not ready, then
    // ready again once it answers.
    for _ in 0..6 {
        tg.inject("getUpdates", None, Fault::ServerError);
    }
    let body = probe_until(&gw, "/readyz", 503, Duration::from_secs(30)).await;
    assert!(body.contains("getUpdates"), "{body}");
    assert_eq!(gw.probe("/livez").await?.0, 200, "a failing Telegram is not a stuck loop");
    probe_until(&gw, "/readyz", 200, Duration::from_secs(60)).await;

    // A stuck loop: the only slot is held by an update whose answer hangs, and the next
    // update waits for it -> not live; live again when the slot frees.
    tg.inject("sendMessage", Some(7001), Fault::Delay(Duration::from_secs(9)));
    tg.push(tg.text_message(Sender::private(7001), "hello?"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    tg.push(tg.text_message(Sender::private(7002), "hello?"));
    let body = probe_until(&gw, "/livez", 503, Duration::from_secs(15)).await;
    assert!(body.contains("poll loop"), "{body}");
    probe_until(&gw, "/livez", 200, Duration::from_secs(30)).await;

    // The matcher down: a photo finds it unavailable -> not ready (the matcher check says so).
    matcher.stop().await;
    let sizes = photo_sizes(&tg, &face(OBAMA_QUERY), &[320, 800])?;
    tg.push(tg.photo_message(Sender::private(7003), &sizes));
    let body = probe_until(&gw, "/readyz", 503, Duration::from_secs(30)).await;
    assert!(body.contains("unavailable"), "{body}");
    assert!(reply_to(&tg, 7003).await.text().contains("try again in a minute"));
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_gets_its_per_minute_limit_and_a_private_chat_does_not() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    // Commands only: no matcher needed. Two messages per minute to a group (the default is
    // 20), so the third waits a minute.
    let gw = Gateway::start(
        &tg,
        &format!("http://127.0.0.1:{}", free_port()),
        GatewayOptions::default().arg("--group-per-minute", 2),
    )
    .await?;
    let group = Sender::group(-100_500, 8_101);
    let private = Sender::private(8_102);
    for _ in 0..3 {
        tg.push(tg.text_message(group, &format!("/help@{BOT_USERNAME}")));
        tg.push(tg.text_message(private, "/help"));
    }
    let ok = tg
        .wait_until(Duration::from_secs(150), |c| {
            delivered_to(c, -100_500).len() == 3 && delivered_to(c, 8_102).len() == 3
        })
        .await;
    assert!(ok, "{}", tg.format_log());
    let calls = tg.calls();
    let at = |chat| delivered_to(&calls, chat).iter().map(|c| c.at.as_secs_f64()).collect::<Vec<f64>>();
    let (g, p) = (at(-100_500), at(8_102));
    eprintln!("group limit 2/min: group answers at {g:.2?} s, private chat's at {p:.2?} s");
    assert!(g[1] - g[0] >= 0.95, "one message per second to a chat, groups too: {g:?}");
    assert!(g[2] - g[0] >= 59.9, "a third message to the group within a minute: {g:?}");
    assert!(p[2] - p[0] < 10.0, "the private chat was held to the group limit: {p:?}");
    gw.assert_no_token();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_the_types_reject_is_acknowledged_and_logged_and_the_others_answered() -> anyhow::Result<()> {
    let _serial = serial().await;
    let tg = FakeTelegram::start(TOKEN).await?;
    let gw = Gateway::start(&tg, &format!("http://127.0.0.1:{}", free_port()), GatewayOptions::default()).await?;
    tg.push(tg.text_message(Sender::private(8_201), "/start"));
    tg.push(tg.text_message(Sender::private(8_203), "/start"));
    // Last in its batch, so the offset can only pass it if it is acknowledged: a chat of a
    // kind teloxide-core's types do not know (the whole message is rejected).
    let bad = tg.push_raw(serde_json::json!({"message": {"message_id": 9, "date": 1_700_000_000,
        "chat": {"id": 8_202, "type": "a_new_kind_of_chat"},
        "from": {"id": 8_202, "is_bot": false, "first_name": "U"}, "text": "/start"}}));
    let answered = tg
        .wait_until(REPLY_TIMEOUT, |c| !delivered_to(c, 8_201).is_empty() && !delivered_to(c, 8_203).is_empty())
        .await;
    assert!(answered, "{}", tg.format_log());
    let confirmed = tg.wait_until(Duration::from_secs(30), |_| tg.confirmed() > bad).await;
    assert!(confirmed, "the offset did not move past the rejected update ({bad}): {}", tg.confirmed());
    // Not fetched again and again.
    let polls = tg.calls_of("getUpdates").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let more = tg.calls_of("getUpdates").len() - polls;
    assert!(more <= 2, "{more} getUpdates calls in 3 s:\n{}", tg.format_log());
    let logged = gw
        .process
        .logs
        .lines()
        .iter()
        .any(|l| l.contains("update the Bot API types reject") && l.contains(&format!("update_id={bad}")));
    assert!(logged, "{}", gw.process.logs.text());
    assert!(to_chat(&tg.calls(), 8_202).is_empty(), "the rejected update was handled");
    gw.assert_no_token();
    Ok(())
}
