//! The one task that talks to DingTalk: it takes queued notifications, keeps within the
//! robot's rate limit (a sliding 60 s window of `alerts.rate_limit_per_minute` requests,
//! retries included), merges whatever queued up while the window was full into one message,
//! and retries transient failures with capped exponential backoff. When DingTalk says the robot
//! is throttled anyway (another sender shares it), it pauses for `alerts.throttle_pause_ms`
//! instead of retrying into the throttle.
//!
//! Each webhook call waits for its notification's [`Delivery`]. A call that gave up (its
//! timeout, or Alertmanager hung up) closes its reply channel, and a notification whose reply
//! channel is closed before it is sent is skipped (`expired`): Alertmanager retries it, so
//! skipping it avoids a duplicate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::AlertsConfig;
use super::dingtalk::{SendError, Transport};
use super::metrics::{RelayMetrics, EXPIRED, FAILED, MERGED, RETRIED, SENT};
use super::payload::Notification;
use super::render::render;

/// DingTalk's rate limit window.
const WINDOW: Duration = Duration::from_secs(60);

/// The outcome a webhook call waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// DingTalk accepted the message (`errcode` 0).
    Delivered {
        /// Whether the notification went out merged with others.
        merged: bool,
    },
    /// Delivery failed; `reason` never holds the token or secret.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

/// One queued notification and where its outcome goes.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) notification: Notification,
    pub(crate) reply: oneshot::Sender<Delivery>,
}

/// The request times of the last minute.
#[derive(Debug)]
struct Window {
    limit: usize,
    sent: VecDeque<Instant>,
}

impl Window {
    fn new(limit: u32) -> Self {
        Window {
            limit: limit as usize,
            sent: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            self.sent.pop_front();
        }
    }

    /// Requests that may go out now.
    fn free(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.limit.saturating_sub(self.sent.len())
    }

    /// How long until a request may go out (zero: now).
    fn wait(&mut self, now: Instant) -> Duration {
        if self.free(now) > 0 {
            return Duration::ZERO;
        }
        self.sent
            .front()
            .map_or(Duration::ZERO, |t| (*t + WINDOW).saturating_duration_since(now))
    }

    fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

/// The sending task's state.
pub(crate) struct Sender<T> {
    jobs: mpsc::Receiver<Job>,
    /// Taken from `jobs`, waiting for their turn (oldest first).
    held: VecDeque<Job>,
    transport: Arc<T>,
    cfg: AlertsConfig,
    metrics: RelayMetrics,
    window: Window,
    /// Until when DingTalk throttles the robot (after errcode 130101 or 90030).
    paused_until: Option<Instant>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("held", &self.held.len())
            .field("window", &self.window)
            .field("paused_until", &self.paused_until)
            .finish_non_exhaustive()
    }
}

/// Why a send loop stopped early.
struct Cancelled;

impl<T: Transport> Sender<T> {
    pub(crate) fn new(jobs: mpsc::Receiver<Job>, transport: T, cfg: AlertsConfig, metrics: RelayMetrics) -> Self {
        let window = Window::new(cfg.rate_limit_per_minute);
        Sender {
            jobs,
            held: VecDeque::new(),
            transport: Arc::new(transport),
            cfg,
            metrics,
            window,
            paused_until: None,
        }
    }

    /// Delivers queued notifications until `cancel` fires. Then it refuses new ones and drops
    /// the queued ones: their webhook calls answer 503 and Alertmanager retries them.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let _ = self.work(&cancel).await;
        self.jobs.close();
        let mut dropped = self.held.len();
        self.held.clear();
        while self.jobs.try_recv().is_ok() {
            dropped += 1;
        }
        self.metrics.add(EXPIRED, dropped);
        tracing::debug!(dropped, "The DingTalk sender stopped.");
    }

    async fn work(&mut self, cancel: &CancellationToken) -> Result<(), Cancelled> {
        loop {
            if self.held.is_empty() {
                let first = tokio::select! {
                    job = self.jobs.recv() => match job {
                        Some(job) => job,
                        None => return Ok(()),
                    },
                    () = cancel.cancelled() => return Err(Cancelled),
                };
                self.held.push_back(first);
            }
            // Wait for our turn (room in the window, the end of a throttle pause), collecting
            // what arrives meanwhile.
            loop {
                while let Ok(job) = self.jobs.try_recv() {
                    self.held.push_back(job);
                }
                self.drop_expired();
                let wait = self.turn_wait(Instant::now());
                if self.held.is_empty() || wait.is_zero() {
                    break;
                }
                tracing::debug!(
                    queued = self.held.len(),
                    wait_ms = wait.as_millis() as u64,
                    "DingTalk rate limit reached or robot throttled; queueing."
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    Some(job) = self.jobs.recv() => self.held.push_back(job),
                    () = cancel.cancelled() => return Err(Cancelled),
                }
            }
            if self.held.is_empty() {
                continue;
            }
            if self.held.len() <= self.window.free(Instant::now()) {
                // Room for a message each: send the oldest. The rest go round the loop again,
                // so they merge if its retries used up the room, wait out a throttle pause it
                // ran into, and are skipped if their callers gave up meanwhile.
                if let Some(job) = self.held.pop_front() {
                    let result = self.deliver(std::slice::from_ref(&job.notification), cancel).await;
                    self.reply(vec![job], result, false);
                }
            } else {
                let batch: Vec<Job> = self.held.drain(..).collect();
                let notifications: Vec<Notification> = batch.iter().map(|j| j.notification.clone()).collect();
                tracing::info!(
                    notifications = batch.len(),
                    "DingTalk rate limit reached; merging the queued notifications into one message."
                );
                let result = self.deliver(&notifications, cancel).await;
                self.reply(batch, result, true);
            }
            if cancel.is_cancelled() {
                return Err(Cancelled);
            }
        }
    }

    /// How long until a request may go out: room in the window, and the end of a pause.
    fn turn_wait(&mut self, now: Instant) -> Duration {
        let pause = self
            .paused_until
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        self.window.wait(now).max(pause)
    }

    /// Stops sending for `alerts.throttle_pause_ms` after DingTalk throttled the robot.
    fn pause(&mut self) {
        let pause = Duration::from_millis(self.cfg.throttle_pause_ms);
        if pause.is_zero() {
            return;
        }
        self.paused_until = Some(Instant::now() + pause);
        tracing::warn!(
            pause_ms = self.cfg.throttle_pause_ms,
            "DingTalk throttles the robot; pausing deliveries (notifications queue meanwhile)."
        );
    }

    fn drop_expired(&mut self) {
        let before = self.held.len();
        self.held.retain(|j| !j.reply.is_closed());
        let expired = before - self.held.len();
        if expired > 0 {
            self.metrics.add(EXPIRED, expired);
            tracing::warn!(
                expired,
                "Notifications waited too long for DingTalk; Alertmanager will retry them."
            );
        }
    }

    fn reply(&self, jobs: Vec<Job>, result: Result<(), SendError>, merged: bool) {
        let n = jobs.len();
        let delivery = match &result {
            Ok(()) => {
                self.metrics.add(if merged { MERGED } else { SENT }, n);
                Delivery::Delivered { merged }
            }
            Err(e) => {
                self.metrics.add(FAILED, n);
                tracing::warn!(error = %e, notifications = n, "Could not deliver to DingTalk.");
                Delivery::Failed { reason: e.to_string() }
            }
        };
        for job in jobs {
            let _ = job.reply.send(delivery.clone());
        }
    }

    /// Sends one message for `notifications`, retrying transient failures with capped
    /// exponential backoff; every attempt waits for room in the window. A throttled robot is
    /// not retried: the message fails and sending pauses. After cancellation no new attempt
    /// starts.
    async fn deliver(&mut self, notifications: &[Notification], cancel: &CancellationToken) -> Result<(), SendError> {
        let msg = render(notifications, &self.cfg);
        let mut delay = Duration::from_millis(self.cfg.retry_initial_ms);
        let max_delay = Duration::from_millis(self.cfg.retry_max_ms);
        let mut attempt = 1;
        loop {
            let wait = self.turn_wait(Instant::now());
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancel.cancelled() => return Err(SendError::Transient("the relay is shutting down".into())),
                }
            }
            self.window.record(Instant::now());
            // An attempt in flight is not cancelled: it is bounded by the request timeout, and
            // dropping it would leave unknown whether the message went out.
            let err = match self.transport.send(&msg).await {
                Ok(()) => {
                    tracing::info!(title = %msg.markdown.title, attempt, "Delivered to DingTalk.");
                    return Ok(());
                }
                Err(e) => e,
            };
            if err.is_throttled() {
                self.pause();
                return Err(err);
            }
            if !err.is_transient() || attempt >= self.cfg.max_attempts {
                return Err(err);
            }
            tracing::warn!(error = %err, attempt, delay_ms = delay.as_millis() as u64, "DingTalk delivery failed; retrying.");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Err(err),
            }
            self.metrics.add(RETRIED, 1);
            attempt += 1;
            delay = (delay * 2).min(max_delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::relay::payload::tests::sample;
    use crate::relay::render::Message;

    /// Records messages and answers from a script (then `Ok`).
    #[derive(Default)]
    struct Fake {
        sent: Mutex<Vec<(Instant, Message)>>,
        script: Mutex<VecDeque<Result<(), SendError>>>,
    }

    impl Transport for Arc<Fake> {
        fn send(&self, msg: &Message) -> impl std::future::Future<Output = Result<(), SendError>> + Send {
            self.sent.lock().unwrap().push((Instant::now(), msg.clone()));
            let answer = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
            async move { answer }
        }
    }

    fn cfg(limit: u32) -> AlertsConfig {
        AlertsConfig {
            rate_limit_per_minute: limit,
            max_attempts: 3,
            retry_initial_ms: 100,
            retry_max_ms: 150,
            ..AlertsConfig::default()
        }
    }

    fn start(
        cfg: AlertsConfig,
        fake: &Arc<Fake>,
    ) -> (
        mpsc::Sender<Job>,
        RelayMetrics,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel(100);
        let metrics = RelayMetrics::unregistered().unwrap();
        let cancel = CancellationToken::new();
        let sender = Sender::new(rx, fake.clone(), cfg, metrics.clone());
        let task = tokio::spawn(sender.run(cancel.clone()));
        (tx, metrics, cancel, task)
    }

    async fn submit(tx: &mpsc::Sender<Job>, name: &str) -> oneshot::Receiver<Delivery> {
        let mut n = sample();
        n.common_labels.insert("alertname".into(), name.into());
        let (reply, rx) = oneshot::channel();
        tx.send(Job { notification: n, reply }).await.unwrap();
        rx
    }

    /// Within the limit each notification is a message; beyond it the queued ones wait for
    /// the window and go out merged into one message, nothing dropped.
    #[tokio::test(start_paused = true)]
    async fn over_the_rate_limit_notifications_queue_and_merge() {
        let fake = Arc::new(Fake::default());
        let (tx, metrics, cancel, task) = start(cfg(2), &fake);
        let t0 = Instant::now();
        let a = submit(&tx, "A").await;
        assert_eq!(a.await.unwrap(), Delivery::Delivered { merged: false });
        let b = submit(&tx, "B").await;
        assert_eq!(b.await.unwrap(), Delivery::Delivered { merged: false });
        let rest = [submit(&tx, "C").await, submit(&tx, "D").await, submit(&tx, "E").await];
        for rx in rest {
            assert_eq!(rx.await.unwrap(), Delivery::Delivered { merged: true });
        }
        let sent = fake.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 3, "two single messages and one merged");
        assert!(sent[2].0 - t0 >= WINDOW, "the merged message waited for the window");
        let title = &sent[2].1.markdown.title;
        assert!(
            title.starts_with("[3 notifications]") && title.contains('C') && title.contains('E'),
            "{title}"
        );
        assert_eq!((metrics.count(SENT), metrics.count(MERGED)), (2, 3));
        cancel.cancel();
        task.await.unwrap();
    }

    /// Transient failures are retried with backoff; a permanent one fails at once.
    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let fake = Arc::new(Fake::default());
        fake.script.lock().unwrap().extend([
            Err(SendError::Transient("HTTP 502".into())),
            Err(SendError::Transient("HTTP 503".into())),
            Ok(()),
            Err(SendError::Permanent("errcode 310000".into())),
            Err(SendError::Transient("1".into())),
            Err(SendError::Transient("2".into())),
            Err(SendError::Transient("3".into())),
        ]);
        let (tx, metrics, cancel, task) = start(cfg(20), &fake);
        assert_eq!(
            submit(&tx, "A").await.await.unwrap(),
            Delivery::Delivered { merged: false }
        );
        assert_eq!(metrics.count(RETRIED), 2);
        let failed = submit(&tx, "B").await.await.unwrap();
        assert!(
            matches!(failed, Delivery::Failed { ref reason } if reason.contains("310000")),
            "{failed:?}"
        );
        let failed = submit(&tx, "C").await.await.unwrap();
        assert!(
            matches!(failed, Delivery::Failed { ref reason } if reason == "3"),
            "{failed:?}"
        );
        assert_eq!(metrics.count(RETRIED), 4);
        assert_eq!((metrics.count(SENT), metrics.count(FAILED)), (1, 2));
        assert_eq!(fake.sent.lock().unwrap().len(), 7);
        cancel.cancel();
        task.await.unwrap();
    }

    /// A throttled robot is not retried into the throttle: the message fails at once, nothing
    /// is sent during `throttle_pause_ms`, and what queued meanwhile goes out after it.
    #[tokio::test(start_paused = true)]
    async fn a_throttled_robot_pauses_deliveries_instead_of_retrying() {
        let fake = Arc::new(Fake::default());
        fake.script
            .lock()
            .unwrap()
            .push_back(Err(SendError::Throttled("errcode 130101".into())));
        let mut c = cfg(20);
        c.throttle_pause_ms = 600_000;
        let (tx, metrics, cancel, task) = start(c, &fake);
        let t0 = Instant::now();
        let failed = submit(&tx, "A").await.await.unwrap();
        assert!(
            matches!(failed, Delivery::Failed { ref reason } if reason.contains("130101")),
            "{failed:?}"
        );
        assert_eq!(fake.sent.lock().unwrap().len(), 1, "not retried at once");
        let (b, c) = (submit(&tx, "B").await, submit(&tx, "C").await);
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert_eq!(fake.sent.lock().unwrap().len(), 1, "nothing sent during the pause");
        assert_eq!(b.await.unwrap(), Delivery::Delivered { merged: false });
        assert_eq!(c.await.unwrap(), Delivery::Delivered { merged: false });
        let sent = fake.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 3);
        assert!(sent[1].0 - t0 >= Duration::from_secs(600), "sent after the pause");
        assert_eq!(
            (metrics.count(FAILED), metrics.count(RETRIED), metrics.count(SENT)),
            (1, 0, 2)
        );
        cancel.cancel();
        task.await.unwrap();
    }

    /// Notifications queued behind one whose retries used up the window go out merged.
    #[tokio::test(start_paused = true)]
    async fn notifications_behind_retries_that_fill_the_window_are_merged() {
        let fake = Arc::new(Fake::default());
        fake.script.lock().unwrap().extend([
            Err(SendError::Transient("HTTP 502".into())),
            Err(SendError::Transient("HTTP 502".into())),
        ]);
        let (tx, metrics, cancel, task) = start(cfg(3), &fake);
        // Queue all three before the sender runs: A's three attempts fill the window of 3.
        let (a, b, c) = (submit(&tx, "A").await, submit(&tx, "B").await, submit(&tx, "C").await);
        assert_eq!(a.await.unwrap(), Delivery::Delivered { merged: false });
        assert_eq!(b.await.unwrap(), Delivery::Delivered { merged: true });
        assert_eq!(c.await.unwrap(), Delivery::Delivered { merged: true });
        let sent = fake.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 4, "three attempts for A, one merged message for B and C");
        assert!(sent[3].1.markdown.title.starts_with("[2 notifications]"));
        assert_eq!((metrics.count(SENT), metrics.count(MERGED)), (1, 2));
        cancel.cancel();
        task.await.unwrap();
    }

    /// A notification whose webhook call gave up before its turn is not sent.
    #[tokio::test(start_paused = true)]
    async fn notifications_given_up_on_are_skipped() {
        let fake = Arc::new(Fake::default());
        let (tx, metrics, cancel, task) = start(cfg(1), &fake);
        submit(&tx, "A").await.await.unwrap();
        let b = submit(&tx, "B").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(b);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(fake.sent.lock().unwrap().len(), 1);
        assert_eq!(metrics.count(EXPIRED), 1);
        cancel.cancel();
        task.await.unwrap();
    }

    /// The window counts the requests of the last 60 s.
    #[test]
    fn the_window_frees_a_slot_60_s_after_each_request() {
        let t0 = Instant::now();
        let mut w = Window::new(2);
        assert_eq!(w.free(t0), 2);
        w.record(t0);
        w.record(t0 + Duration::from_secs(10));
        assert_eq!(w.wait(t0 + Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(w.free(t0 + Duration::from_secs(60)), 1);
        assert_eq!(w.wait(t0 + Duration::from_secs(60)), Duration::ZERO);
    }
}
