//! The read plan: what a consumer reads next. Pure bookkeeping, no Redis.
//!
//! Order of reads: after a (re)connect the own PEL is walked first (one entry per read, from the
//! start); then entries queued for a re-read by id (reclaimed entries, kept in id order as they
//! arrive, then retries as they fall due); then new entries. An id leaves the plan only when its read succeeded, so an error
//! reply or a dropped connection never strands it.

use std::collections::HashMap;
use std::time::Instant;

use crate::id::StreamId;

/// The next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// The first own pending entry after this id (the own-PEL walk).
    OwnPelAfter(StreamId),
    /// Exactly this id, if still pending on us.
    Id(StreamId),
    /// New entries (`>`).
    New,
}

/// What is left to read besides new entries.
#[derive(Debug, Clone)]
pub(crate) struct ReadPlan {
    /// `Some(cursor)` while the own PEL is walked after a (re)connect: the last id read.
    own_pel: Option<StreamId>,
    /// Ids to re-read, first first; no duplicates.
    reread: Vec<StreamId>,
    /// Entries waiting to be retried, with when they are due. They stay pending on us meanwhile.
    retries: HashMap<StreamId, Instant>,
}

impl Default for ReadPlan {
    fn default() -> Self {
        ReadPlan {
            own_pel: Some(StreamId::MIN),
            reread: Vec::new(),
            retries: HashMap::new(),
        }
    }
}

impl ReadPlan {
    /// After a (re)connect: walk the own PEL from the start; it covers every queued re-read and
    /// scheduled retry (they are all pending on us), so those are dropped.
    pub(crate) fn on_connect(&mut self) {
        *self = ReadPlan::default();
    }

    /// The next read at `now`; due retries join the re-read queue.
    pub(crate) fn next(&mut self, now: Instant) -> Read {
        if let Some(cursor) = self.own_pel {
            return Read::OwnPelAfter(cursor);
        }
        let mut due: Vec<StreamId> = self
            .retries
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        for id in due {
            self.retries.remove(&id);
            if !self.reread.contains(&id) {
                self.reread.push(id);
            }
        }
        match self.reread.first() {
            Some(id) => Read::Id(*id),
            None => Read::New,
        }
    }

    /// The own-PEL walk read `id` (`None`: the walk found nothing more and is over). That read
    /// counted its delivery, so it is not re-read by id again.
    pub(crate) fn own_pel_read(&mut self, id: Option<StreamId>) {
        match id {
            Some(id) => {
                self.own_pel = Some(id);
                self.reread.retain(|r| *r != id);
                self.retries.remove(&id);
            }
            None => self.own_pel = None,
        }
    }

    /// A re-read of `id` was made (whether or not the entry was still ours).
    pub(crate) fn id_read(&mut self, id: StreamId) {
        self.reread.retain(|r| *r != id);
    }

    /// Schedules a retry of `id` at `at`.
    pub(crate) fn retry_at(&mut self, id: StreamId, at: Instant) {
        self.reread.retain(|r| *r != id);
        self.retries.insert(id, at);
    }

    /// Entries claimed into this consumer: re-read them (the queue kept in id order), unless
    /// the own-PEL walk will (it has not reached them yet) or they are already scheduled.
    pub(crate) fn claimed(&mut self, ids: impl IntoIterator<Item = StreamId>) {
        for id in ids {
            let walk_reads_it = self.own_pel.is_some_and(|cursor| id > cursor);
            if walk_reads_it || self.retries.contains_key(&id) || self.reread.contains(&id) {
                continue;
            }
            self.reread.push(id);
        }
        self.reread.sort_unstable();
    }

    /// Whether nothing is left to read but new entries.
    pub(crate) fn is_idle(&self) -> bool {
        self.own_pel.is_none() && self.reread.is_empty() && self.retries.is_empty()
    }

    /// Makes every scheduled retry due at `now`.
    pub(crate) fn expire_retries(&mut self, now: Instant) {
        for at in self.retries.values_mut() {
            *at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId::new(ms, 0)
    }

    fn walked(plan: &mut ReadPlan) {
        plan.own_pel_read(None);
    }

    #[test]
    fn a_new_plan_walks_the_own_pel_from_the_start_then_reads_new_entries() {
        let mut p = ReadPlan::default();
        let now = Instant::now();
        assert_eq!(p.next(now), Read::OwnPelAfter(StreamId::MIN));
        p.own_pel_read(Some(id(5)));
        assert_eq!(p.next(now), Read::OwnPelAfter(id(5)));
        p.own_pel_read(None);
        assert_eq!(p.next(now), Read::New);
        assert!(p.is_idle());
    }

    #[test]
    fn a_failed_read_leaves_the_id_in_the_plan() {
        let mut p = ReadPlan::default();
        walked(&mut p);
        p.claimed([id(3)]);
        let now = Instant::now();
        // The read of id 3 failed (no call to id_read): it is asked for again.
        assert_eq!(p.next(now), Read::Id(id(3)));
        assert_eq!(p.next(now), Read::Id(id(3)));
        p.id_read(id(3));
        assert_eq!(p.next(now), Read::New);
    }

    #[test]
    fn retries_are_re_read_when_due_in_id_order() {
        let mut p = ReadPlan::default();
        walked(&mut p);
        let now = Instant::now();
        p.retry_at(id(9), now);
        p.retry_at(id(2), now);
        p.retry_at(id(5), now + Duration::from_secs(60));
        assert!(!p.is_idle());
        assert_eq!(p.next(now), Read::Id(id(2)));
        p.id_read(id(2));
        assert_eq!(p.next(now), Read::Id(id(9)));
        p.id_read(id(9));
        assert_eq!(p.next(now), Read::New);
        p.expire_retries(now);
        assert_eq!(p.next(now), Read::Id(id(5)));
    }

    #[test]
    fn claimed_entries_ahead_of_the_own_pel_walk_are_left_to_it() {
        let mut p = ReadPlan::default();
        p.own_pel_read(Some(id(4)));
        p.claimed([id(2), id(4), id(7)]);
        // 7 lies ahead of the walk, which reads it; 2 lies behind it and 4 is where it stands
        // (read before the claim; the walk goes on after it): both are queued.
        p.own_pel_read(Some(id(7)));
        p.own_pel_read(None);
        let now = Instant::now();
        assert_eq!(p.next(now), Read::Id(id(2)));
        p.id_read(id(2));
        assert_eq!(p.next(now), Read::Id(id(4)));
        p.id_read(id(4));
        assert_eq!(p.next(now), Read::New);
    }

    #[test]
    fn an_entry_the_walk_read_is_not_read_again_by_id() {
        let mut p = ReadPlan::default();
        p.claimed([]);
        let now = Instant::now();
        p.retry_at(id(3), now);
        p.own_pel_read(Some(id(3)));
        p.own_pel_read(None);
        assert_eq!(p.next(now), Read::New);
    }

    #[test]
    fn due_retries_are_read_after_the_reclaimed_entries_already_queued() {
        let mut p = ReadPlan::default();
        walked(&mut p);
        let now = Instant::now();
        p.retry_at(id(3), now + Duration::from_secs(60));
        p.claimed([id(5), id(4)]);
        p.expire_retries(now);
        assert_eq!(p.next(now), Read::Id(id(4)));
        p.id_read(id(4));
        assert_eq!(p.next(now), Read::Id(id(5)));
        p.id_read(id(5));
        assert_eq!(p.next(now), Read::Id(id(3)));
    }

    #[test]
    fn a_scheduled_retry_is_not_queued_again_by_a_reclaim() {
        let mut p = ReadPlan::default();
        walked(&mut p);
        let now = Instant::now();
        p.retry_at(id(3), now + Duration::from_secs(60));
        p.claimed([id(3)]);
        assert_eq!(p.next(now), Read::New);
    }

    #[test]
    fn a_reconnect_starts_the_walk_over_and_forgets_the_queue() {
        let mut p = ReadPlan::default();
        walked(&mut p);
        p.claimed([id(3)]);
        p.retry_at(id(4), Instant::now());
        p.on_connect();
        assert_eq!(p.next(Instant::now()), Read::OwnPelAfter(StreamId::MIN));
        p.own_pel_read(None);
        assert!(p.is_idle());
    }
}
