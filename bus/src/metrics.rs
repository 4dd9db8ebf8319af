//! The contract's bus metrics, registered in a `prometheus::Registry` the binary serves.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::error::Result;

/// Latency buckets in seconds: sub-millisecond Redis round trips up to multi-second stalls.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Processing outcomes, the values of the `outcome` label of `mt5_events_processed_total`.
pub mod outcome {
    /// Acknowledged with no output.
    pub const ACKED: &str = "acked";
    /// Outputs written and acknowledged atomically.
    pub const EMITTED: &str = "emitted";
    /// Left pending for a later re-read.
    pub const RETRIED: &str = "retried";
    /// Moved to the dead letter stream.
    pub const DEAD_LETTERED: &str = "dead_lettered";
    /// The entry had been claimed by another consumer; nothing was written.
    pub const NOT_OWNER: &str = "not_owner";
}

/// Reclaim kinds, the values of the `kind` label of `mt5_reclaimed_total`.
pub mod reclaim_kind {
    /// Claimed from a consumer without a heartbeat.
    pub const DEAD_CONSUMER: &str = "dead_consumer";
    /// Claimed by `XAUTOCLAIM` after `min_idle`.
    pub const IDLE: &str = "idle";
}

/// Every bus metric. Cheap to clone (the vectors are reference-counted).
#[derive(Clone, Debug)]
pub struct BusMetrics {
    /// `mt5_stream_length{stream}`.
    pub stream_length: IntGaugeVec,
    /// `mt5_stream_group_lag{stream,group}`; absent when Redis reports the lag as nil.
    pub group_lag: IntGaugeVec,
    /// `mt5_stream_group_pending{stream,group}`.
    pub group_pending: IntGaugeVec,
    /// `mt5_events_published_total{stream}`.
    pub published: IntCounterVec,
    /// `mt5_publish_duration_seconds{stream}`.
    pub publish_duration: HistogramVec,
    /// `mt5_events_processed_total{stream,group,outcome}`.
    pub processed: IntCounterVec,
    /// `mt5_event_processing_duration_seconds{stream,group}`.
    pub processing_duration: HistogramVec,
    /// `mt5_event_e2e_latency_seconds{stream}`: handling time minus the entry id's milliseconds.
    pub e2e_latency: HistogramVec,
    /// `mt5_deadletter_total{stream,reason}`.
    pub deadletter: IntCounterVec,
    /// `mt5_reclaimed_total{stream,group,kind}`.
    pub reclaimed: IntCounterVec,
    /// `mt5_stream_trimmed_unacked_total{stream,group}`.
    pub trimmed_unacked: IntCounterVec,
    /// `mt5_consumers_alive{stream,group}`.
    pub consumers_alive: IntGaugeVec,
    /// `mt5_oldest_pending_age_seconds{stream,group}`.
    pub oldest_pending_age: IntGaugeVec,
    /// `mt5_consumer_group_missing_total{stream,group}`: a running consumer found its group gone
    /// (`NOGROUP`). Counted through [`BusMetrics::group_missing`]; the `ConsumerGroupMissing` alert
    /// fires on any increase.
    pub consumer_group_missing: IntCounterVec,
    /// `mt5_redis_failovers_total`: times this process found the master (sentinel mode) at
    /// another address than before.
    pub redis_failovers: IntCounter,
    /// `mt5_redis_master_info{addr}`: 1 for the master this process connects to (sentinel mode),
    /// 0 for the ones before it.
    pub redis_master_info: IntGaugeVec,
    /// `mt5_redis_connected_replicas`: the master's `connected_slaves`, refreshed with the stream
    /// gauges.
    pub redis_connected_replicas: IntGauge,
    /// `mt5_durability_wait_short_total{op}`: `WAIT`s that came back with fewer replicas than
    /// `bus.durability_replicas` (the write is then sent again).
    pub durability_wait_short: IntCounterVec,
}

impl BusMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// [`crate::Error::Metrics`] when a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> Result<Self> {
        let m = Self::unregistered();
        registry.register(Box::new(m.stream_length.clone()))?;
        registry.register(Box::new(m.group_lag.clone()))?;
        registry.register(Box::new(m.group_pending.clone()))?;
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.publish_duration.clone()))?;
        registry.register(Box::new(m.processed.clone()))?;
        registry.register(Box::new(m.processing_duration.clone()))?;
        registry.register(Box::new(m.e2e_latency.clone()))?;
        registry.register(Box::new(m.deadletter.clone()))?;
        registry.register(Box::new(m.reclaimed.clone()))?;
        registry.register(Box::new(m.trimmed_unacked.clone()))?;
        registry.register(Box::new(m.consumers_alive.clone()))?;
        registry.register(Box::new(m.oldest_pending_age.clone()))?;
        registry.register(Box::new(m.consumer_group_missing.clone()))?;
        registry.register(Box::new(m.redis_failovers.clone()))?;
        registry.register(Box::new(m.redis_master_info.clone()))?;
        registry.register(Box::new(m.redis_connected_replicas.clone()))?;
        registry.register(Box::new(m.durability_wait_short.clone()))?;
        Ok(m)
    }

    /// Metrics that are not registered anywhere (tests, one-shot tools).
    pub fn unregistered() -> Self {
        BusMetrics {
            stream_length: gauge("mt5_stream_length", "Entries in the stream (XLEN).", &["stream"]),
            group_lag: gauge(
                "mt5_stream_group_lag",
                "Entries not yet delivered to the group; absent when Redis cannot tell.",
                &["stream", "group"],
            ),
            group_pending: gauge(
                "mt5_stream_group_pending",
                "Entries delivered to the group but not acknowledged (PEL size).",
                &["stream", "group"],
            ),
            published: counter(
                "mt5_events_published_total",
                "Events whose XADD returned an id.",
                &["stream"],
            ),
            publish_duration: histogram(
                "mt5_publish_duration_seconds",
                "Time to publish one event or one batch, including retries.",
                &["stream"],
            ),
            processed: counter(
                "mt5_events_processed_total",
                "Entries handled by a consumer, by outcome.",
                &["stream", "group", "outcome"],
            ),
            processing_duration: histogram(
                "mt5_event_processing_duration_seconds",
                "Handler time per entry.",
                &["stream", "group"],
            ),
            e2e_latency: histogram(
                "mt5_event_e2e_latency_seconds",
                "Handling time minus the input entry id's milliseconds.",
                &["stream"],
            ),
            deadletter: counter(
                "mt5_deadletter_total",
                "Entries moved to the dead letter stream, by reason.",
                &["stream", "reason"],
            ),
            reclaimed: counter(
                "mt5_reclaimed_total",
                "Pending entries claimed from dead or stuck consumers.",
                &["stream", "group", "kind"],
            ),
            trimmed_unacked: counter(
                "mt5_stream_trimmed_unacked_total",
                "Entries trimmed before the group acknowledged them.",
                &["stream", "group"],
            ),
            consumers_alive: gauge(
                "mt5_consumers_alive",
                "Consumers of the group with a live heartbeat.",
                &["stream", "group"],
            ),
            oldest_pending_age: gauge(
                "mt5_oldest_pending_age_seconds",
                "Age of the group's oldest pending entry (now minus its id's time).",
                &["stream", "group"],
            ),
            consumer_group_missing: counter(
                "mt5_consumer_group_missing_total",
                "Times a running consumer found its group missing (NOGROUP); the group is never recreated silently.",
                &["stream", "group"],
            ),
            redis_failovers: IntCounter::with_opts(Opts::new(
                "mt5_redis_failovers_total",
                "Times the master (sentinel mode) was found at another address than before.",
            ))
            .expect("valid metric"),
            redis_master_info: gauge(
                "mt5_redis_master_info",
                "1 for the master this process uses (sentinel mode), 0 for earlier ones.",
                &["addr"],
            ),
            redis_connected_replicas: IntGauge::with_opts(Opts::new(
                "mt5_redis_connected_replicas",
                "Replicas connected to the master (INFO replication connected_slaves).",
            ))
            .expect("valid metric"),
            durability_wait_short: counter(
                "mt5_durability_wait_short_total",
                "WAITs answered by fewer replicas than bus.durability_replicas (the write is sent again).",
                &["op"],
            ),
        }
    }

    /// Records that the master of a sentinel topology is at `addr`: a change of address from a
    /// known one counts a failover. `previous` is what this process knew before.
    pub(crate) fn master_seen(&self, previous: Option<&str>, addr: &str) {
        if let Some(prev) = previous {
            if prev != addr {
                self.redis_failovers.inc();
                self.redis_master_info.with_label_values(&[prev]).set(0);
            }
        }
        self.redis_master_info.with_label_values(&[addr]).set(1);
    }
}

impl BusMetrics {
    /// Creates every counter series a consumer of `group` on `stream` can touch, at 0, so
    /// dashboards, `rate()` and `increase()` see them before the first event (a missing series
    /// reads as "no data", not as zero): processed by outcome, dead letters by reason, reclaims
    /// by kind, trimmed-unacked, group-missing.
    pub fn init_consumer_series(&self, stream: &str, group: &str) {
        for o in [
            outcome::ACKED,
            outcome::EMITTED,
            outcome::RETRIED,
            outcome::DEAD_LETTERED,
            outcome::NOT_OWNER,
        ] {
            self.processed.with_label_values(&[stream, group, o]);
        }
        use crate::consumer::DeadLetterReason as R;
        for r in [R::Malformed, R::Unsupported, R::MaxDeliveries, R::Handler] {
            self.deadletter.with_label_values(&[stream, r.as_str()]);
        }
        for k in [reclaim_kind::DEAD_CONSUMER, reclaim_kind::IDLE] {
            self.reclaimed.with_label_values(&[stream, group, k]);
        }
        self.trimmed_unacked.with_label_values(&[stream, group]);
        self.consumer_group_missing.with_label_values(&[stream, group]);
    }

    /// Counts one `NOGROUP` seen by a running consumer of `group` on `stream`
    /// (`mt5_consumer_group_missing_total`). The consumer then stops with
    /// [`crate::Error::GroupMissing`] instead of recreating the group.
    pub fn group_missing(&self, stream: &str, group: &str) {
        self.consumer_group_missing.with_label_values(&[stream, group]).inc();
    }
}

impl Default for BusMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition is valid")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition is valid")
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)
        .expect("static metric definition is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first sighting of a master is not a failover; a new address is, once; the old
    /// address's info drops to 0.
    #[test]
    fn a_master_change_counts_one_failover() {
        let m = BusMetrics::unregistered();
        let info = |a: &str| m.redis_master_info.with_label_values(&[a]).get();
        m.master_seen(None, "a:1");
        assert_eq!((m.redis_failovers.get(), info("a:1")), (0, 1));
        m.master_seen(Some("a:1"), "a:1");
        assert_eq!(m.redis_failovers.get(), 0);
        m.master_seen(Some("a:1"), "b:2");
        assert_eq!((m.redis_failovers.get(), info("a:1"), info("b:2")), (1, 0, 1));
    }

    #[test]
    fn every_contract_metric_is_registered_once() {
        let registry = Registry::new();
        let m = BusMetrics::register(&registry).unwrap();
        m.published.with_label_values(&["s"]).inc();
        m.processed.with_label_values(&["s", "g", outcome::ACKED]).inc();
        m.stream_length.with_label_values(&["s"]).set(3);
        let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_string()).collect();
        for n in [
            "mt5_events_published_total",
            "mt5_events_processed_total",
            "mt5_stream_length",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        assert!(
            BusMetrics::register(&registry).is_err(),
            "double registration must fail"
        );
    }

    /// A `NOGROUP` seen by a running consumer shows as one increase of
    /// `mt5_consumer_group_missing_total`, the series the `ConsumerGroupMissing` alert watches.
    #[test]
    fn a_missing_group_is_counted_per_stream_and_group() {
        let reg = Registry::new();
        let m = BusMetrics::register(&reg).unwrap();
        m.init_consumer_series("s", "g");
        m.group_missing("s", "g");
        let text = prometheus::TextEncoder::new().encode_to_string(&reg.gather()).unwrap();
        assert!(
            text.contains(r#"mt5_consumer_group_missing_total{group="g",stream="s"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn consumer_series_exist_at_zero_before_the_first_event() {
        let m = BusMetrics::unregistered();
        m.init_consumer_series("s", "g");
        assert_eq!(m.deadletter.with_label_values(&["s", "max_deliveries"]).get(), 0);
        assert_eq!(
            m.processed
                .get_metric_with_label_values(&["s", "g", outcome::NOT_OWNER])
                .unwrap()
                .get(),
            0
        );
        let reg = Registry::new();
        let m = BusMetrics::register(&reg).unwrap();
        m.init_consumer_series("s", "g");
        let text = prometheus::TextEncoder::new().encode_to_string(&reg.gather()).unwrap();
        for series in [
            r#"mt5_deadletter_total{reason="handler",stream="s"} 0"#,
            r#"mt5_reclaimed_total{group="g",kind="idle",stream="s"} 0"#,
            r#"mt5_stream_trimmed_unacked_total{group="g",stream="s"} 0"#,
            r#"mt5_events_processed_total{group="g",outcome="emitted",stream="s"} 0"#,
            r#"mt5_consumer_group_missing_total{group="g",stream="s"} 0"#,
        ] {
            assert!(text.contains(series), "{series} in\n{text}");
        }
    }
}
