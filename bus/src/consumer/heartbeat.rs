//! Liveness: the heartbeat key, and the idle time of the entries a consumer holds.
//!
//! A consumer holds entries from its read until their decisions are written. While it does, the
//! heartbeat refreshes their idle time so the idle reclaim leaves them alone: entries queued
//! behind others in the batch, entries whose handler started less than the handler timeout ago,
//! and entries decided but not yet written (a settle being retried). An entry whose handler has
//! run past the timeout is let go.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::connection::Redis;
use crate::error::Result;
use crate::id::StreamId;
use crate::reply::id_list;
use crate::retry::sleep_or_cancel;
use crate::script::Scripts;

/// Where a held entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flight {
    /// Read; its handler has not started.
    Queued,
    /// Its handler started then.
    Running(Instant),
    /// Decided; its settle has not been written yet.
    Decided,
    /// Deleted from the stream (trimmed) while held: the heartbeat found it gone from the PEL.
    Gone,
}

/// The entries a consumer holds, shared with its heartbeat. A std mutex: never held across an
/// await.
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlight(Arc<Mutex<HashMap<StreamId, Flight>>>);

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<StreamId, Flight>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is used as it is.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `id` as being in `state`. A `Gone` entry stays gone.
    pub(crate) fn set(&self, id: StreamId, state: Flight) {
        match self.lock().entry(id) {
            Entry::Occupied(e) if matches!(e.get(), Flight::Gone) => {}
            Entry::Occupied(mut e) => {
                e.insert(state);
            }
            Entry::Vacant(e) => {
                e.insert(state);
            }
        }
    }

    /// Marks every id as queued.
    pub(crate) fn queue(&self, ids: impl IntoIterator<Item = StreamId>) {
        let mut m = self.lock();
        for id in ids {
            m.insert(id, Flight::Queued);
        }
    }

    /// Whether the heartbeat found `id` deleted from the stream.
    pub(crate) fn is_gone(&self, id: StreamId) -> bool {
        self.lock().get(&id) == Some(&Flight::Gone)
    }

    /// Forgets `ids`.
    pub(crate) fn remove(&self, ids: impl IntoIterator<Item = StreamId>) {
        let mut m = self.lock();
        for id in ids {
            m.remove(&id);
        }
    }

    /// Held entries whose idle time is to be refreshed now.
    fn to_touch(&self, handler_timeout: Duration) -> Vec<StreamId> {
        let mut ids: Vec<StreamId> = self
            .lock()
            .iter()
            .filter(|(_, f)| match f {
                Flight::Queued | Flight::Decided => true,
                Flight::Running(started) => started.elapsed() < handler_timeout,
                Flight::Gone => false,
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn mark_gone(&self, ids: &[StreamId]) {
        let mut m = self.lock();
        for id in ids {
            if let Some(f) = m.get_mut(id) {
                *f = Flight::Gone;
            }
        }
    }
}

/// What a heartbeat writes and refreshes.
#[derive(Debug, Clone)]
pub(crate) struct Beat {
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) key: String,
    pub(crate) ttl_ms: u64,
    pub(crate) handler_timeout: Duration,
    pub(crate) in_flight: InFlight,
}

impl Beat {
    /// Writes or refreshes the heartbeat key (a script allowed under OOM, so a consumer can start
    /// and stay alive while Redis is out of memory).
    pub(crate) async fn write_key(&self, conn: &mut MultiplexedConnection) -> Result<()> {
        let s = &Scripts::get().heartbeat;
        let cmd = s.cmd(&[self.key.as_str()], self.ttl_ms);
        let _: i64 = s.run(conn, &cmd).await?;
        Ok(())
    }

    /// One beat: the key and the idle time of held entries, sent together (one round trip on
    /// the multiplexed connection, the key first): a beat that waited for one reply before
    /// sending the other took two round trips, which under 300 ms of latency outlasted a 1 s TTL.
    pub(crate) async fn beat(&self, conn: &mut MultiplexedConnection) -> Result<()> {
        let ids = self.in_flight.to_touch(self.handler_timeout);
        if ids.is_empty() {
            return self.write_key(conn).await;
        }
        let s = &Scripts::get().touch_pending;
        let mut cmd = s.cmd(&[self.stream.as_str()], (&self.group, &self.consumer));
        cmd.arg(&ids);
        let mut touch_conn = conn.clone();
        let (key, touched) = tokio::join!(self.write_key(conn), s.run::<Value, _>(&mut touch_conn, &cmd));
        key?;
        let v = touched?;
        let gone: Vec<StreamId> = id_list(&v).iter().filter_map(|id| id.parse().ok()).collect();
        if !gone.is_empty() {
            tracing::warn!(stream = %self.stream, group = %self.group, count = gone.len(), "Entries held by this consumer were trimmed before they were acknowledged.");
            self.in_flight.mark_gone(&gone);
        }
        Ok(())
    }

    /// Beats every `every` on a connection of its own until `stop` fires. Runs inside the
    /// consumer's `run` future, never as a detached task: a dropped consumer stops beating.
    /// Beats start `every` apart whatever a beat takes (measured from one beat's start to the
    /// next), so the key's refresh period does not grow with the round-trip time.
    pub(crate) async fn run(self, client: Redis, every: Duration, stop: CancellationToken) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut rate = FixedRate::new(every);
        while rate.tick(&stop).await {
            if conn.is_none() {
                let timeout = Duration::from_millis(client.config().response_timeout_ms);
                conn = client.multiplexed(timeout).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                if let Err(e) = self.beat(c).await {
                    tracing::warn!(consumer = %self.consumer, error = %e, "Heartbeat failed; retrying.");
                    if e.is_connection_dropped() {
                        conn = None;
                    }
                }
            }
        }
    }
}

/// Ticks every `every`, the first tick `every` from its creation; the period runs from one tick
/// to the next, whatever the caller does in between (work longer than `every` is followed by
/// the next tick at once).
struct FixedRate {
    every: Duration,
    next: tokio::time::Instant,
}

impl FixedRate {
    fn new(every: Duration) -> Self {
        FixedRate {
            every,
            next: tokio::time::Instant::now() + every,
        }
    }

    /// Waits for the next tick; `false` once `stop` fires.
    async fn tick(&mut self, stop: &CancellationToken) -> bool {
        let wait = self.next.saturating_duration_since(tokio::time::Instant::now());
        if sleep_or_cancel(wait, stop).await.is_err() {
            return false;
        }
        self.next = tokio::time::Instant::now() + self.every;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId::new(ms, 0)
    }

    /// The heartbeat's period does not grow with the time a beat takes: beats that take 40 % of
    /// the period still start one period apart (they used to start 1.4 periods apart, and under
    /// 300 ms of latency a 1 s heartbeat key lapsed: the chaos row `4 latency` then saw a live
    /// consumer's entries reclaimed).
    #[tokio::test(start_paused = true)]
    async fn beats_start_one_period_apart_however_long_a_beat_takes() {
        let every = Duration::from_millis(250);
        let stop = CancellationToken::new();
        let mut starts = Vec::new();
        let t0 = tokio::time::Instant::now();
        let mut rate = FixedRate::new(every);
        while rate.tick(&stop).await {
            starts.push(t0.elapsed());
            if starts.len() == 4 {
                stop.cancel();
            }
            tokio::time::sleep(every.mul_f64(0.4)).await;
        }
        assert_eq!(starts, [250, 500, 750, 1000].map(Duration::from_millis));
    }

    #[test]
    fn queued_decided_and_recent_entries_are_touched_and_overdue_ones_let_go() {
        let f = InFlight::default();
        let timeout = Duration::from_millis(50);
        f.queue([id(1), id(2), id(3), id(4)]);
        f.set(id(2), Flight::Running(Instant::now()));
        f.set(id(3), Flight::Decided);
        f.set(id(4), Flight::Running(Instant::now() - Duration::from_millis(60)));
        assert_eq!(f.to_touch(timeout), vec![id(1), id(2), id(3)]);
    }

    #[test]
    fn an_entry_queued_behind_a_long_batch_is_still_touched() {
        // Defect 3: entries used to be stamped with the batch start, so one waiting behind
        // handlers that took longer than the timeout in total was let go while never started.
        let f = InFlight::default();
        f.queue([id(1)]);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(f.to_touch(Duration::from_millis(1)), vec![id(1)]);
    }

    /// Settled entries are forgotten: the heartbeat stops touching them and the map does not
    /// grow with every entry the consumer ever held.
    #[test]
    fn removed_entries_are_no_longer_touched() {
        let f = InFlight::default();
        f.queue([id(1), id(2), id(3)]);
        f.remove([id(1), id(3)]);
        assert_eq!(f.to_touch(Duration::from_secs(1)), vec![id(2)]);
        f.remove([id(2)]);
        assert!(f.lock().is_empty());
    }

    #[test]
    fn a_gone_entry_stays_gone_and_is_not_touched() {
        let f = InFlight::default();
        f.queue([id(1)]);
        f.mark_gone(&[id(1)]);
        f.set(id(1), Flight::Decided);
        assert!(f.is_gone(id(1)));
        assert!(f.to_touch(Duration::from_secs(1)).is_empty());
    }
}
