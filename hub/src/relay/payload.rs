//! The Alertmanager webhook payload, version 4 (`notify/webhook/webhook.go`). Unknown fields
//! are ignored: Alertmanager keeps adding some (`notification_reason` in 0.32, `routeLabels` in
//! 0.34).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Labels or annotations, sorted by name.
pub(crate) type Kv = BTreeMap<String, String>;

/// One webhook call: a group of alerts that Alertmanager notifies about together.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Notification {
    /// The payload version; `"4"` for every Alertmanager since 0.7.
    pub(crate) version: String,
    /// Identifies the alert group (route path plus group labels).
    #[serde(default)]
    pub(crate) group_key: String,
    /// Alerts dropped because of the receiver's `max_alerts`.
    #[serde(default)]
    pub(crate) truncated_alerts: u64,
    /// `firing` if any alert of the group fires, else `resolved`.
    pub(crate) status: Status,
    /// The receiver's name.
    #[serde(default)]
    pub(crate) receiver: String,
    /// The labels the group is formed by.
    #[serde(default)]
    pub(crate) group_labels: Kv,
    /// Labels every alert has.
    #[serde(default)]
    pub(crate) common_labels: Kv,
    /// Annotations every alert has.
    #[serde(default)]
    pub(crate) common_annotations: Kv,
    /// Alertmanager's own URL.
    #[serde(default, rename = "externalURL")]
    pub(crate) external_url: String,
    /// The alerts.
    pub(crate) alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Alert {
    /// Whether it fires or has resolved.
    pub(crate) status: Status,
    /// Its labels (`alertname`, `severity`, ...).
    #[serde(default)]
    pub(crate) labels: Kv,
    /// Its annotations (`summary`, `description`, ...).
    #[serde(default)]
    pub(crate) annotations: Kv,
    /// RFC 3339.
    #[serde(default)]
    pub(crate) starts_at: String,
    /// RFC 3339; on a firing alert a time in the future or the zero time `0001-01-01T00:00:00Z`,
    /// not "ended".
    #[serde(default)]
    pub(crate) ends_at: String,
    /// The rule's link (a Prometheus graph).
    #[serde(default, rename = "generatorURL")]
    pub(crate) generator_url: String,
    /// The alert's fingerprint (16 hex characters).
    #[serde(default)]
    pub(crate) fingerprint: String,
}

/// `firing` or `resolved`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// At least one alert fires.
    Firing,
    /// Every alert has resolved.
    Resolved,
}

impl Status {
    /// `FIRING` or `RESOLVED`, as titles show it.
    pub(crate) fn upper(self) -> &'static str {
        match self {
            Status::Firing => "FIRING",
            Status::Resolved => "RESOLVED",
        }
    }
}

/// Severities from highest to lowest; other values rank below them.
const SEVERITY_ORDER: &[&str] = &["critical", "error", "warning", "info"];

fn severity_rank(s: &str) -> usize {
    SEVERITY_ORDER
        .iter()
        .position(|k| k.eq_ignore_ascii_case(s))
        .unwrap_or(SEVERITY_ORDER.len())
}

impl Notification {
    /// Parses a webhook body.
    ///
    /// # Errors
    /// The JSON error (names the field and position), or a wrong `version`.
    pub(crate) fn parse(body: &[u8]) -> Result<Notification, String> {
        let n: Notification = serde_json::from_slice(body).map_err(|e| format!("invalid webhook payload: {e}"))?;
        if n.version != "4" {
            return Err(format!(
                "unsupported webhook payload version {:?} (expected \"4\")",
                n.version
            ));
        }
        Ok(n)
    }

    /// The notification's severity: `commonLabels.severity`, else the highest `severity` among
    /// its alerts, else none.
    pub(crate) fn severity(&self) -> Option<&str> {
        if let Some(s) = self.common_labels.get("severity") {
            return Some(s);
        }
        self.alerts
            .iter()
            .filter_map(|a| a.labels.get("severity").map(String::as_str))
            .min_by_key(|s| severity_rank(s))
    }

    /// The `alertname`: the common one, else the distinct names joined by `, `.
    pub(crate) fn alert_name(&self) -> String {
        if let Some(name) = self
            .common_labels
            .get("alertname")
            .or_else(|| self.group_labels.get("alertname"))
        {
            return name.clone();
        }
        let mut names: Vec<&str> = Vec::new();
        for a in &self.alerts {
            if let Some(n) = a.labels.get("alertname") {
                if !names.contains(&n.as_str()) {
                    names.push(n);
                }
            }
        }
        if names.is_empty() {
            "alert".to_string()
        } else {
            names.join(", ")
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A payload as Alertmanager 0.25 sends it (plus a newer field), for the tests here and in
    /// `render`.
    pub(crate) const SAMPLE: &str = r#"{
      "receiver": "dingtalk-critical",
      "status": "firing",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "RedisPELTooHigh", "group": "news-filter-group", "severity": "critical", "stream": "mt5:events:news_raw"},
          "annotations": {"summary": "Pending entries above 100", "description": "news-filter-group holds 250 pending entries."},
          "startsAt": "2026-01-02T03:04:05.678Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=mt5_stream_group_pending+%3E+100",
          "fingerprint": "c0ffee0123456789"
        },
        {
          "status": "firing",
          "labels": {"alertname": "RedisPELTooHigh", "group": "other", "severity": "warning", "stream": "mt5:events:x"},
          "annotations": {"summary": "Pending entries above 100"},
          "startsAt": "2026-01-02T03:05:00Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "",
          "fingerprint": "0123456789abcdef"
        }
      ],
      "groupLabels": {"alertname": "RedisPELTooHigh"},
      "commonLabels": {"alertname": "RedisPELTooHigh"},
      "commonAnnotations": {"summary": "Pending entries above 100"},
      "externalURL": "http://alertmanager:9093",
      "version": "4",
      "groupKey": "{}:{alertname=\"RedisPELTooHigh\"}",
      "truncatedAlerts": 0,
      "notification_reason": "first notification"
    }"#;

    pub(crate) fn sample() -> Notification {
        Notification::parse(SAMPLE.as_bytes()).unwrap()
    }

    /// Every documented field is read; unknown ones are ignored.
    #[test]
    fn a_version_4_payload_parses() {
        let n = sample();
        assert_eq!(n.status, Status::Firing);
        assert_eq!(n.receiver, "dingtalk-critical");
        assert_eq!(n.external_url, "http://alertmanager:9093");
        assert_eq!(n.alerts.len(), 2);
        assert_eq!(n.alerts[0].fingerprint, "c0ffee0123456789");
        assert!(n.alerts[0].generator_url.starts_with("http://prometheus:9090/graph"));
        assert_eq!(n.alert_name(), "RedisPELTooHigh");
    }

    /// Without a common severity the highest among the alerts counts.
    #[test]
    fn severity_is_the_common_one_else_the_highest() {
        let mut n = sample();
        assert_eq!(n.severity(), Some("critical"));
        n.common_labels.insert("severity".into(), "info".into());
        assert_eq!(n.severity(), Some("info"));
        n.common_labels.clear();
        n.alerts.iter_mut().for_each(|a| {
            a.labels.remove("severity");
        });
        assert_eq!(n.severity(), None);
    }

    /// Garbage and other versions are refused with a reason.
    #[test]
    fn bad_payloads_are_refused() {
        assert!(Notification::parse(b"not json").unwrap_err().contains("invalid"));
        assert!(Notification::parse(b"{}").is_err());
        let v3 = SAMPLE.replace(r#""version": "4""#, r#""version": "3""#);
        assert!(Notification::parse(v3.as_bytes()).unwrap_err().contains("version"));
    }
}
