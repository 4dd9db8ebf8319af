//! Alertmanager notifications → one DingTalk markdown message.
//!
//! One notification gives one message: the title carries the status and the alert name
//! (`[FIRING:2] RedisPELTooHigh`), the text lists each alert with its labels, `summary` and
//! `description`, start (and end, once resolved) and a link to its source, then a link to
//! Alertmanager and the @-mentions. Several notifications queued behind the rate limit are
//! merged into one message with a section each. Text beyond `alerts.max_message_bytes` is cut
//! at an alert boundary with a note saying how many were left out.

use std::collections::BTreeSet;

use serde::Serialize;

use super::config::{AlertsConfig, MentionConfig};
use super::payload::{Alert, Notification, Status};

/// A DingTalk `markdown` message, as the robot's send API takes it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Message {
    /// Always `markdown`.
    pub(crate) msgtype: &'static str,
    /// Title and text.
    pub(crate) markdown: Markdown,
    /// Who is @-mentioned.
    pub(crate) at: At,
}

/// The `markdown` object.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Markdown {
    /// Shown in the session list and the notification.
    pub(crate) title: String,
    /// The body (DingTalk's Markdown subset).
    pub(crate) text: String,
}

/// The `at` object.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct At {
    /// Phone numbers.
    pub(crate) at_mobiles: Vec<String>,
    /// User ids.
    pub(crate) at_user_ids: Vec<String>,
    /// @all.
    pub(crate) is_at_all: bool,
}

/// Escapes the characters DingTalk's Markdown would read as emphasis or code.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '_' | '*' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether a timestamp is unset (Alertmanager's zero time).
fn is_zero_time(t: &str) -> bool {
    t.is_empty() || t.starts_with("0001-01-01")
}

/// `[FIRING:2] RedisPELTooHigh`.
fn headline(n: &Notification) -> String {
    let firing = n.alerts.iter().filter(|a| a.status == Status::Firing).count();
    let count = match n.status {
        Status::Firing => firing,
        Status::Resolved => n.alerts.len(),
    };
    format!("[{}:{count}] {}", n.status.upper(), n.alert_name())
}

/// One alert as a numbered block.
fn alert_block(i: usize, a: &Alert) -> String {
    let name = a.labels.get("alertname").map_or("alert", String::as_str);
    let mut out = format!("**{}. {}** ({})\n\n", i + 1, esc(name), a.status.upper());
    let labels: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    if !labels.is_empty() {
        out.push_str(&format!("- Labels: {}\n", labels.join(", ")));
    }
    for (key, shown) in [("summary", "Summary"), ("description", "Description")] {
        if let Some(v) = a.annotations.get(key) {
            out.push_str(&format!("- {shown}: {}\n", esc(v)));
        }
    }
    if !is_zero_time(&a.starts_at) {
        out.push_str(&format!("- Starts at: {}\n", a.starts_at));
    }
    // A firing alert's endsAt is only Prometheus's expiry estimate, not an end.
    if a.status == Status::Resolved && !is_zero_time(&a.ends_at) {
        out.push_str(&format!("- Ends at: {}\n", a.ends_at));
    }
    if !a.generator_url.is_empty() {
        out.push_str(&format!("- [Source]({})\n", a.generator_url));
    }
    out.push('\n');
    out
}

/// A piece of the text; optional pieces (alert blocks) may be left out to fit the size limit.
struct Piece {
    text: String,
    optional: bool,
}

fn fixed(text: String) -> Piece {
    Piece { text, optional: false }
}

/// The pieces of one notification's section; `level` is the heading's `#` count.
fn section(n: &Notification, level: usize) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut head = format!("{} {}\n\n", "#".repeat(level), esc(&headline(n)));
    if let Some(sev) = n.severity() {
        head.push_str(&format!("Severity: **{}**\n\n", esc(sev)));
    }
    pieces.push(fixed(head));
    for (i, a) in n.alerts.iter().enumerate() {
        pieces.push(Piece {
            text: alert_block(i, a),
            optional: true,
        });
    }
    if n.truncated_alerts > 0 {
        pieces.push(fixed(format!(
            "{} more alerts left out by Alertmanager (max_alerts).\n\n",
            n.truncated_alerts
        )));
    }
    if !n.external_url.is_empty() {
        pieces.push(fixed(format!("[Open in Alertmanager]({})\n\n", n.external_url)));
    }
    pieces
}

/// Who is mentioned for `n`: by its severity, and for resolved notifications only with
/// `alerts.mention_resolved`.
fn mentions_for<'a>(n: &Notification, cfg: &'a AlertsConfig) -> Option<&'a MentionConfig> {
    if n.status == Status::Resolved && !cfg.mention_resolved {
        return None;
    }
    let sev = n.severity()?;
    cfg.mentions
        .get(sev)
        .or_else(|| cfg.mentions.get(&sev.to_ascii_lowercase()))
}

/// The union of the mentions of `notifications`.
fn mentions(notifications: &[Notification], cfg: &AlertsConfig) -> At {
    let mut mobiles = BTreeSet::new();
    let mut users = BTreeSet::new();
    let mut all = false;
    for m in notifications.iter().filter_map(|n| mentions_for(n, cfg)) {
        mobiles.extend(m.mobiles.iter().cloned());
        users.extend(m.user_ids.iter().cloned());
        all |= m.at_all;
    }
    At {
        at_mobiles: mobiles.into_iter().collect(),
        at_user_ids: users.into_iter().collect(),
        is_at_all: all,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Joins `pieces` within `budget` bytes: every fixed piece, and optional ones in order while
/// they fit; a note says how many alerts were left out.
fn fit(pieces: Vec<Piece>, budget: usize) -> String {
    const NOTE_RESERVE: usize = 96;
    let fixed_len: usize = pieces.iter().filter(|p| !p.optional).map(|p| p.text.len()).sum();
    let mut room = budget.saturating_sub(fixed_len + NOTE_RESERVE);
    let mut out = String::new();
    let mut left_out = 0usize;
    let total: usize = pieces.iter().map(|p| p.text.len()).sum();
    let all_fit = total <= budget;
    for p in pieces {
        if p.optional && !all_fit {
            if left_out == 0 && p.text.len() <= room {
                room -= p.text.len();
            } else {
                left_out += 1;
                continue;
            }
        }
        out.push_str(&p.text);
    }
    if left_out > 0 {
        out.push_str(&format!(
            "{left_out} more alerts not shown (message size limit); see Alertmanager.\n\n"
        ));
    }
    // Only fixed pieces beyond the budget (a huge annotation in a heading) get here.
    cut(&out, budget).to_string()
}

/// Renders `notifications` (one, or several merged) as one message.
pub(crate) fn render(notifications: &[Notification], cfg: &AlertsConfig) -> Message {
    let at = mentions(notifications, cfg);
    let mut mention_line: Vec<String> = at
        .at_mobiles
        .iter()
        .chain(&at.at_user_ids)
        .map(|m| format!("@{m}"))
        .collect();
    if at.is_at_all && mention_line.is_empty() {
        mention_line.push("@all".to_string());
    }
    let mention_line = if mention_line.is_empty() {
        String::new()
    } else {
        format!("{}\n", mention_line.join(" "))
    };
    let budget = cfg.max_message_bytes.saturating_sub(mention_line.len());

    let (title, pieces) = match notifications {
        [one] => (headline(one), section(one, 3)),
        many => {
            let heads: Vec<String> = many.iter().map(headline).collect();
            let title = format!("[{} notifications] {}", many.len(), heads.join("; "));
            let mut pieces = vec![fixed(format!(
                "### {} notifications (merged: DingTalk rate limit)\n\n",
                many.len()
            ))];
            for (i, n) in many.iter().enumerate() {
                if i > 0 {
                    pieces.push(fixed("---\n\n".to_string()));
                }
                pieces.extend(section(n, 4));
            }
            (title, pieces)
        }
    };
    let mut text = fit(pieces, budget);
    text.push_str(&mention_line);
    Message {
        msgtype: "markdown",
        markdown: Markdown {
            title: cut(&title, 256).to_string(),
            text,
        },
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::payload::tests::sample;

    fn cfg_with_mentions() -> AlertsConfig {
        let mut cfg = AlertsConfig::default();
        let critical = cfg.mentions.get_mut("critical").unwrap();
        critical.mobiles = vec!["13800000000".into()];
        critical.user_ids = vec!["ops-lead".into()];
        cfg.mentions.get_mut("warning").unwrap().at_all = true;
        cfg
    }

    /// Title with status and name; every alert with labels, annotations, start and link; the
    /// Alertmanager link; mentions by severity in `at` and as `@<mobile>` in the text.
    #[test]
    fn a_firing_notification_renders_every_part() {
        let msg = render(&[sample()], &cfg_with_mentions());
        let json = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["msgtype"], "markdown");
        assert_eq!(msg.markdown.title, "[FIRING:2] RedisPELTooHigh");
        let text = &msg.markdown.text;
        for needle in [
            "### [FIRING:2] RedisPELTooHigh",
            "Severity: **critical**",
            "**1. RedisPELTooHigh** (FIRING)",
            "group=news-filter-group",
            "stream=mt5:events:news\\_raw",
            "- Summary: Pending entries above 100",
            "- Description: news-filter-group holds 250 pending entries.",
            "- Starts at: 2026-01-02T03:04:05.678Z",
            "- [Source](http://prometheus:9090/graph?g0.expr=mt5_stream_group_pending+%3E+100)",
            "**2. RedisPELTooHigh**",
            "[Open in Alertmanager](http://alertmanager:9093)",
            "@13800000000 @ops-lead",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(!text.contains("Ends at"), "a firing alert's endsAt is no end:\n{text}");
        assert!(!text.to_lowercase().contains("resolved"), "{text}");
        assert_eq!(json["at"]["atMobiles"], serde_json::json!(["13800000000"]));
        assert_eq!(json["at"]["atUserIds"], serde_json::json!(["ops-lead"]));
        assert_eq!(json["at"]["isAtAll"], false);
    }

    /// A resolved notification says so, shows the end, and mentions nobody by default.
    #[test]
    fn a_resolved_notification_shows_the_end_and_mentions_nobody_by_default() {
        let mut n = sample();
        n.status = Status::Resolved;
        for a in &mut n.alerts {
            a.status = Status::Resolved;
            a.ends_at = "2026-01-02T04:00:00Z".into();
        }
        let cfg = cfg_with_mentions();
        let msg = render(std::slice::from_ref(&n), &cfg);
        assert_eq!(msg.markdown.title, "[RESOLVED:2] RedisPELTooHigh");
        assert!(msg.markdown.text.contains("- Ends at: 2026-01-02T04:00:00Z"));
        assert_eq!(msg.at, At::default());
        assert!(!msg.markdown.text.contains('@'));
        let mut cfg = cfg;
        cfg.mention_resolved = true;
        assert_eq!(render(&[n], &cfg).at.at_mobiles, vec!["13800000000".to_string()]);
    }

    /// A warning notification @alls when configured so.
    #[test]
    fn mentions_follow_the_common_severity() {
        let mut n = sample();
        n.common_labels.insert("severity".into(), "warning".into());
        let msg = render(&[n], &cfg_with_mentions());
        assert!(msg.at.is_at_all);
        assert!(msg.at.at_mobiles.is_empty());
        assert!(msg.markdown.text.ends_with("@all\n"), "{}", msg.markdown.text);
    }

    /// Queued notifications merge into one message with a section each and every mention.
    #[test]
    fn merged_notifications_keep_every_section() {
        let a = sample();
        let mut b = sample();
        b.status = Status::Resolved;
        b.common_labels.insert("alertname".into(), "NewsAPIFailureRate".into());
        b.common_labels.insert("severity".into(), "warning".into());
        let mut cfg = cfg_with_mentions();
        cfg.mention_resolved = true;
        let msg = render(&[a, b], &cfg);
        assert_eq!(
            msg.markdown.title,
            "[2 notifications] [FIRING:2] RedisPELTooHigh; [RESOLVED:2] NewsAPIFailureRate"
        );
        assert!(msg.markdown.text.contains("#### [FIRING:2] RedisPELTooHigh"));
        assert!(msg.markdown.text.contains("#### [RESOLVED:2] NewsAPIFailureRate"));
        assert!(msg.at.is_at_all && msg.at.at_mobiles == vec!["13800000000".to_string()]);
    }

    /// A notification too large for one message is cut at an alert boundary, with a note.
    #[test]
    fn oversized_text_is_cut_with_a_note() {
        let mut n = sample();
        let template = n.alerts[0].clone();
        n.alerts = (0..400)
            .map(|i| {
                let mut a = template.clone();
                a.labels.insert("n".into(), i.to_string());
                a
            })
            .collect();
        let mut cfg = cfg_with_mentions();
        cfg.max_message_bytes = 5000;
        let msg = render(&[n], &cfg);
        let text = &msg.markdown.text;
        assert!(text.len() <= 5000, "{}", text.len());
        assert!(text.contains("more alerts not shown"), "{text}");
        assert!(text.contains("[Open in Alertmanager]"), "{text}");
        assert!(text.ends_with("@13800000000 @ops-lead\n"), "{text}");
    }
}
