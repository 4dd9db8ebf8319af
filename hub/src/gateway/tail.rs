//! The shared tail of a readable stream: one follower per stream reads what arrives, once, and
//! keeps the newest entries already encoded as a read answer's JSON; long-polls near the end of
//! the stream are answered from it, so N terminals cost one `XREAD` and one encoding per entry
//! instead of N of each.
//!
//! The tail holds a contiguous suffix of the stream: every entry with an id above `from`, up to
//! the last one read. A read whose `after` is below `from` (a client catching up from further
//! back), a read while the follower is disconnected, and a non-blocking read the tail cannot
//! answer with a full page all go to Redis as before. So a non-blocking answer from the tail is
//! the one Redis would give; a long-poll's may be the one Redis gave a moment earlier (while the
//! follower is one read behind), and the client's next poll goes on from it.

use std::collections::VecDeque;
use std::sync::RwLock;
use std::time::Duration;

use axum::body::Bytes;
use mt5_bus::query::{self, ReadOptions};
use mt5_bus::{sleep_or_cancel, Redis, StreamEntry, StreamId};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Entries one follower's `XREAD` asks for.
const FOLLOW_COUNT: usize = 1000;
/// How long the follower's `XREAD` blocks; an empty answer also checks the stream was not
/// recreated with lower ids.
const FOLLOW_BLOCK: Duration = Duration::from_millis(1000);
/// The wait before the follower connects again after an error.
const FOLLOW_RETRY: Duration = Duration::from_millis(500);

/// The held entries of one stream.
#[derive(Debug, Default)]
struct Held {
    /// Every entry of the stream with an id above `from`, up to the last of `entries`, is in
    /// `entries`. `None` until the follower has a starting point, and while it is not connected
    /// (reads then go to Redis).
    from: Option<StreamId>,
    /// `from` is kept across reconnects (the follower goes on from its last id); `live` says
    /// whether the follower is connected now.
    live: bool,
    entries: VecDeque<(StreamId, Bytes)>,
}

/// What the tail can say about the entries after an id.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    /// The entries after it (up to the count, possibly none yet), each encoded.
    Entries(Vec<(StreamId, Bytes)>),
    /// The tail does not cover it: ask Redis.
    Uncovered,
}

impl Held {
    /// The index of the first held entry after `after`; `None` when the tail does not cover it.
    fn start(&self, after: StreamId) -> Option<usize> {
        match self.from {
            Some(from) if self.live && after >= from => Some(self.entries.partition_point(|(id, _)| *id <= after)),
            _ => None,
        }
    }

    /// How many held entries come after `after`, without copying them; `None` when uncovered.
    fn count_after(&self, after: StreamId) -> Option<usize> {
        self.start(after).map(|start| self.entries.len() - start)
    }

    fn lookup(&self, after: StreamId, count: usize) -> Lookup {
        match self.start(after) {
            Some(start) => Lookup::Entries(self.entries.range(start..).take(count).cloned().collect()),
            None => Lookup::Uncovered,
        }
    }

    /// Appends entries read after the last held one (or after `from`), dropping the oldest
    /// beyond `capacity` (`from` moves up to the last one dropped).
    fn append(&mut self, entries: impl IntoIterator<Item = (StreamId, Bytes)>, capacity: usize) {
        self.entries.extend(entries);
        while self.entries.len() > capacity {
            if let Some((id, _)) = self.entries.pop_front() {
                self.from = Some(id);
            }
        }
    }

    /// The id the next read continues after.
    fn last(&self) -> Option<StreamId> {
        self.entries.back().map(|(id, _)| *id).or(self.from)
    }

    /// Forgets everything: the next connect starts from the stream's end again.
    fn reset(&mut self) {
        self.from = None;
        self.entries.clear();
    }
}

/// One stream's tail: the held entries and a signal for each append.
#[derive(Debug)]
pub(super) struct Tail {
    stream: String,
    capacity: usize,
    held: RwLock<Held>,
    /// The last held id, sent after each append: long-polls wait on it.
    appended: watch::Sender<Option<StreamId>>,
}

impl Tail {
    /// The tail of `stream`, holding at most `capacity` entries (at least 1).
    pub(super) fn new(stream: String, capacity: usize) -> Self {
        Tail {
            stream,
            capacity: capacity.max(1),
            held: RwLock::new(Held::default()),
            appended: watch::channel(None).0,
        }
    }

    pub(super) fn stream(&self) -> &str {
        &self.stream
    }

    fn held(&self) -> std::sync::RwLockReadGuard<'_, Held> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.held.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn held_mut(&self) -> std::sync::RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entries after `after`, at most `count`, waiting until `deadline` for the first one
    /// when none is held yet (or until `cancel`). `Uncovered` when the tail cannot answer (also
    /// when its follower disconnects during the wait), and when a read that must not wait finds
    /// fewer than `count`: Redis may have what the follower has not read yet, and a client that
    /// just had a publish acknowledged must find it (a full page is the one Redis would give,
    /// since the tail holds a contiguous run of the stream).
    ///
    /// A long-poll short of `count` waits up to `linger` after its first entry (never past
    /// `deadline`) for more to join it: under a stream of single events it then answers with
    /// several instead of one, and its client polls less often. A full page answers at once.
    pub(super) async fn read(
        &self,
        after: StreamId,
        count: usize,
        deadline: tokio::time::Instant,
        linger: Duration,
        cancel: &CancellationToken,
    ) -> Lookup {
        let mut appended = self.appended.subscribe();
        let wait = deadline > tokio::time::Instant::now();
        // The end of the linger, from the first time entries were found.
        let mut lingering: Option<tokio::time::Instant> = None;
        loop {
            // The entries are counted on every wake and copied out only for the answer: a
            // lingering long-poll is woken by each append while its page fills.
            let until = {
                let held = self.held();
                match held.count_after(after) {
                    None => return Lookup::Uncovered,
                    Some(n) if n >= count => return held.lookup(after, count),
                    // Short of `count`, the held entries may end before the stream does (the
                    // follower is one read behind a publish that was just acknowledged): only
                    // Redis knows, and a read that must not wait has no next poll to catch up
                    // in.
                    Some(_) if !wait => return Lookup::Uncovered,
                    Some(0) => deadline,
                    Some(_) if linger.is_zero() => return held.lookup(after, count),
                    Some(_) => {
                        let now = tokio::time::Instant::now();
                        let end = *lingering.get_or_insert_with(|| (now + linger).min(deadline));
                        if now >= end {
                            return held.lookup(after, count);
                        }
                        end
                    }
                }
            };
            tokio::select! {
                r = tokio::time::timeout_at(until, appended.changed()) => match r {
                    Ok(Ok(())) => {}
                    // The linger is over: answer with what is held.
                    Err(_) if lingering.is_some() => {}
                    // The deadline passed: nothing arrived.
                    Err(_) => return Lookup::Entries(Vec::new()),
                    // The tail is gone (cannot happen while `self` lives).
                    Ok(Err(_)) => return Lookup::Uncovered,
                },
                () = cancel.cancelled() => return Lookup::Entries(Vec::new()),
            }
        }
    }

    /// The follower is no longer connected: the tail answers nothing, and the long-polls parked
    /// on it are woken to find that out and go to Redis. Left parked, they would answer "nothing
    /// arrived" at their deadline, whatever Redis held or whether it was there at all.
    fn went_down(&self) {
        self.held_mut().live = false;
        self.appended.send_modify(|_| ());
    }

    /// Follows the stream until `cancel`: connects, starts from the stream's end (or goes on
    /// from the last held id after a reconnect), and appends what each `XREAD` returns, encoded
    /// by `encode`. Errors are logged and retried; while disconnected the tail answers nothing.
    pub(super) async fn follow(
        &self,
        redis: &Redis,
        response_timeout: Duration,
        encode: impl Fn(StreamEntry) -> Bytes,
        cancel: &CancellationToken,
    ) {
        let opts = ReadOptions::count(FOLLOW_COUNT).block(FOLLOW_BLOCK);
        while !cancel.is_cancelled() {
            let r = async {
                let mut conn = redis.connect_with_timeout(FOLLOW_BLOCK + response_timeout).await?;
                let held_last = self.held().last();
                let mut after = match held_last {
                    Some(id) => id,
                    None => parse_id(&query::last_generated_id(&mut conn, &self.stream).await?)?,
                };
                {
                    let mut held = self.held_mut();
                    held.from.get_or_insert(after);
                    held.live = true;
                }
                loop {
                    let from = after.to_string();
                    let entries = tokio::select! {
                        r = query::read_after(&mut conn, &self.stream, &from, &opts) => r?,
                        () = cancel.cancelled() => return Ok(()),
                    };
                    if entries.is_empty() {
                        // Recreated with lower ids: what is held is no longer a suffix of it.
                        let end = parse_id(&query::last_generated_id(&mut conn, &self.stream).await?)?;
                        if end < after {
                            tracing::warn!(stream = %self.stream, "The stream was recreated; the gateway's tail starts again from its end.");
                            self.held_mut().reset();
                            return Err(mt5_bus::Error::UnexpectedReply {
                                command: "XREAD",
                                detail: "the stream's last id went back".into(),
                            });
                        }
                        continue;
                    }
                    let encoded: Vec<(StreamId, Bytes)> = entries
                        .into_iter()
                        .filter_map(|e| Some((e.id.parse().ok()?, encode(e))))
                        .collect();
                    if let Some((last, _)) = encoded.last() {
                        after = *last;
                        self.held_mut().append(encoded, self.capacity);
                        self.appended.send_replace(Some(after));
                    }
                }
            }
            .await;
            self.went_down();
            match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, "The gateway's tail follower failed; reads go to Redis until it reconnects.");
                }
            }
            if sleep_or_cancel(FOLLOW_RETRY, cancel).await.is_err() {
                return;
            }
        }
    }
}

fn parse_id(id: &str) -> mt5_bus::Result<StreamId> {
    id.parse().map_err(|_| mt5_bus::Error::UnexpectedReply {
        command: "XINFO STREAM",
        detail: format!("last-generated-id {id:?} is not an entry id"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId::new(ms, 0)
    }

    fn entry(ms: u64) -> (StreamId, Bytes) {
        (id(ms), Bytes::from(format!("e{ms}")))
    }

    fn live_from(from: u64) -> Held {
        Held {
            from: Some(id(from)),
            live: true,
            entries: VecDeque::new(),
        }
    }

    fn ids(l: &Lookup) -> Vec<u64> {
        match l {
            Lookup::Entries(e) => e.iter().map(|(id, _)| id.millis()).collect(),
            Lookup::Uncovered => panic!("uncovered"),
        }
    }

    #[test]
    fn answers_the_entries_after_an_id_it_covers_up_to_the_count() {
        let mut h = live_from(10);
        h.append([11, 12, 13, 14].map(entry), 100);
        assert_eq!(ids(&h.lookup(id(10), 100)), [11, 12, 13, 14]);
        assert_eq!(ids(&h.lookup(id(12), 100)), [13, 14]);
        assert_eq!(ids(&h.lookup(id(11), 2)), [12, 13]);
        // Between held ids (a bare `ms` is `ms-0`; 12-5 lies between 12-0 and 13-0).
        assert_eq!(ids(&h.lookup(StreamId::new(12, 5), 100)), [13, 14]);
        assert_eq!(ids(&h.lookup(id(14), 100)), Vec::<u64>::new());
        assert_eq!(ids(&h.lookup(id(99), 100)), Vec::<u64>::new());
        // What a lingering long-poll counts on each wake, without copying the entries.
        assert_eq!(h.count_after(id(10)), Some(4));
        assert_eq!(h.count_after(StreamId::new(12, 5)), Some(2));
        assert_eq!(h.count_after(id(99)), Some(0));
        assert_eq!(h.count_after(id(9)), None);
    }

    #[test]
    fn an_id_below_the_covered_range_goes_to_redis() {
        let mut h = live_from(10);
        h.append([11, 12].map(entry), 100);
        assert_eq!(h.lookup(id(9), 100), Lookup::Uncovered);
        assert_eq!(h.lookup(StreamId::MIN, 100), Lookup::Uncovered);
    }

    #[test]
    fn dropping_the_oldest_moves_the_covered_range_up() {
        let mut h = live_from(10);
        h.append([11, 12, 13, 14, 15].map(entry), 3);
        assert_eq!(h.from, Some(id(12)));
        assert_eq!(h.lookup(id(11), 100), Lookup::Uncovered);
        assert_eq!(ids(&h.lookup(id(12), 100)), [13, 14, 15]);
        assert_eq!(h.last(), Some(id(15)));
    }

    #[test]
    fn nothing_is_covered_before_a_start_or_while_disconnected() {
        let h = Held::default();
        assert_eq!(h.lookup(id(5), 100), Lookup::Uncovered);
        let mut h = live_from(10);
        h.append([11].map(entry), 100);
        h.live = false;
        assert_eq!(h.lookup(id(10), 100), Lookup::Uncovered);
        // A reconnect goes on from the last held id.
        assert_eq!(h.last(), Some(id(11)));
        h.reset();
        assert_eq!(h.last(), None);
    }

    /// A read that must not wait is answered from the tail only with a full page: fewer held
    /// entries than it asks for may end before the stream does (the follower has not read a
    /// just-acknowledged publish yet), so Redis answers it. A long-poll takes what is held.
    #[tokio::test(start_paused = true)]
    async fn a_non_blocking_read_short_of_its_count_goes_to_redis() {
        let tail = Tail::new("s".into(), 100);
        *tail.held_mut() = live_from(10);
        tail.held_mut().append([11, 12, 13].map(entry), 100);
        let cancel = CancellationToken::new();
        let now = after(Duration::ZERO);
        assert_eq!(tail.read(id(10), 10, now, NO_LINGER, &cancel).await, Lookup::Uncovered);
        assert_eq!(tail.read(id(11), 3, now, NO_LINGER, &cancel).await, Lookup::Uncovered);
        assert_eq!(ids(&tail.read(id(10), 3, now, NO_LINGER, &cancel).await), [11, 12, 13]);
        assert_eq!(ids(&tail.read(id(10), 2, now, NO_LINGER, &cancel).await), [11, 12]);
        let poll = after(Duration::from_secs(1));
        assert_eq!(
            ids(&tail.read(id(10), 10, poll, NO_LINGER, &cancel).await),
            [11, 12, 13]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_waits_for_the_next_append_and_a_zero_block_does_not() {
        let tail = Tail::new("s".into(), 100);
        *tail.held_mut() = live_from(10);
        let cancel = CancellationToken::new();
        assert_eq!(
            tail.read(id(10), 10, after(Duration::ZERO), NO_LINGER, &cancel).await,
            Lookup::Uncovered
        );
        let empty = tail
            .read(id(10), 10, after(Duration::from_millis(50)), NO_LINGER, &cancel)
            .await;
        assert_eq!(empty, Lookup::Entries(Vec::new()));
        let (found, ()) = tokio::join!(
            tail.read(id(10), 10, after(Duration::from_secs(5)), NO_LINGER, &cancel),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tail.held_mut().append([11, 12].map(entry), 100);
                tail.appended.send_replace(Some(id(12)));
            }
        );
        assert_eq!(ids(&found), [11, 12]);
    }

    /// A long-poll parked on the tail is woken when the follower disconnects and told to ask
    /// Redis, instead of answering "nothing arrived" at its deadline.
    #[tokio::test(start_paused = true)]
    async fn a_parked_long_poll_goes_to_redis_when_the_follower_disconnects() {
        let tail = Tail::new("s".into(), 100);
        *tail.held_mut() = live_from(10);
        let cancel = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let (found, ()) = tokio::join!(
            tail.read(id(10), 10, after(Duration::from_secs(5)), NO_LINGER, &cancel),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tail.went_down();
            }
        );
        assert_eq!(found, Lookup::Uncovered);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "woken at once, not at the deadline"
        );
    }

    /// A long-poll short of its count waits `linger` after its first entry for more, then
    /// answers with all that arrived in that time and no later one; entries held already start
    /// the linger at once.
    #[tokio::test(start_paused = true)]
    async fn a_long_poll_lingers_for_more_entries_after_its_first() {
        let tail = Tail::new("s".into(), 100);
        *tail.held_mut() = live_from(10);
        let linger = Duration::from_millis(2);
        let appends = [(20, 11), (21, 12), (30, 13)];
        let (found, answered) = read_while_appending(&tail, (10, 10), Duration::from_secs(5), linger, &appends).await;
        assert_eq!(found, [11, 12]);
        assert_eq!(
            answered,
            Duration::from_millis(22),
            "the first entry's time plus the linger"
        );
        let answer = read_while_appending(&tail, (11, 10), Duration::from_secs(5), linger, &[]).await;
        assert_eq!(answer, (vec![12, 13], linger));
    }

    /// A linger ends as soon as `count` entries are held (a full page answers at once), and
    /// never goes past the deadline; a read that must not wait does not linger.
    #[tokio::test(start_paused = true)]
    async fn a_linger_ends_with_a_full_page_or_the_deadline() {
        let linger = Duration::from_secs(1);
        let tail = Tail::new("s".into(), 100);
        *tail.held_mut() = live_from(10);
        append(&tail, 11);
        for block in [Duration::from_secs(5), Duration::ZERO] {
            let answer = read_while_appending(&tail, (10, 1), block, linger, &[]).await;
            assert_eq!(answer, (vec![11], Duration::ZERO));
        }
        let appends = [(10, 12), (15, 13), (20, 14)];
        let answer = read_while_appending(&tail, (11, 2), Duration::from_secs(5), linger, &appends).await;
        assert_eq!(answer, (vec![12, 13], Duration::from_millis(15)));
        let answer = read_while_appending(&tail, (14, 10), Duration::from_millis(50), linger, &[(40, 15)]).await;
        assert_eq!(answer, (vec![15], Duration::from_millis(50)));
    }

    /// A long-poll lingering for more entries when the follower disconnects goes to Redis: the
    /// held entries may no longer end where the stream does, and Redis has them all.
    #[tokio::test(start_paused = true)]
    async fn a_lingering_long_poll_goes_to_redis_when_the_follower_disconnects() {
        let tail = Tail::new("s".into(), 100);
        *tail.held_mut() = live_from(10);
        append(&tail, 11);
        let cancel = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let linger = Duration::from_secs(1);
        let (found, ()) = tokio::join!(
            tail.read(id(10), 10, after(Duration::from_secs(5)), linger, &cancel),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                append(&tail, 12);
                tokio::time::sleep(Duration::from_millis(20)).await;
                tail.went_down();
            }
        );
        assert_eq!(found, Lookup::Uncovered);
        assert_eq!(started.elapsed(), Duration::from_millis(40), "woken by the disconnect");
    }

    /// `tail.read` after entry `after` for `count` entries, blocking up to `block`, while
    /// `appends` (milliseconds from the start, entry) are appended: the ids it answered with,
    /// and when.
    async fn read_while_appending(
        tail: &Tail,
        (after_ms, count): (u64, usize),
        block: Duration,
        linger: Duration,
        appends: &[(u64, u64)],
    ) -> (Vec<u64>, Duration) {
        let cancel = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let read = async {
            let found = tail.read(id(after_ms), count, after(block), linger, &cancel).await;
            (ids(&found), started.elapsed())
        };
        let (answer, ()) = tokio::join!(read, async {
            for &(at_ms, e) in appends {
                tokio::time::sleep_until(started + Duration::from_millis(at_ms)).await;
                append(tail, e);
            }
        });
        answer
    }

    const NO_LINGER: Duration = Duration::ZERO;

    fn append(tail: &Tail, ms: u64) {
        tail.held_mut().append([entry(ms)], 100);
        tail.appended.send_replace(Some(id(ms)));
    }

    fn after(block: Duration) -> tokio::time::Instant {
        tokio::time::Instant::now() + block
    }
}
