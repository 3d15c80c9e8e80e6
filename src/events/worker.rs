//! One sink's delivery loop, and the task that applies operators' requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::state::{self, DeadLetter, Op, Progress, Request};
use super::{Delivery, Env, Sink, Tail, Trigger, message};
use crate::audit::{AuditAction, AuditEvent, Outcome, Record};

/// Events of one sink held in memory; the rest wait in the audit files.
const WINDOW: usize = 1000;
/// Deliveries in flight per sink.
const CONCURRENCY: usize = 8;
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Progress is saved at most this often (and at stop): a crash redelivers at most this much.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// How often operators' request files are looked for.
const REQUEST_POLL: Duration = Duration::from_millis(500);

const DEPTH: &str = "gatehouse_events_outbox_depth";
const DELIVERED: &str = "gatehouse_events_delivered_total";
const FAILED: &str = "gatehouse_events_failed_attempts_total";
const GIVEN_UP: &str = "gatehouse_events_given_up_total";
const LATENCY: &str = "gatehouse_events_delivery_seconds";

/// A request for one worker, with where its outcome goes.
pub(super) type Control = (Request, oneshot::Sender<String>);

struct Pending {
    record: Record,
    trigger: Trigger,
    attempts: u32,
    next_at: Instant,
    deadline: SystemTime,
    inflight: bool,
    last_error: String,
}

/// Which map an event lives in: the window (by seq), or dead letters being retried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Window(u64),
    Retry(u64),
}

pub(super) struct Worker {
    sink: Arc<Sink>,
    progress: Progress,
    env: Arc<Env>,
    tail: Option<Tail>,
    window: BTreeMap<u64, Pending>,
    retries: BTreeMap<u64, Pending>,
    dead: Vec<DeadLetter>,
    dirty: bool,
    last_save: Instant,
}

fn record_time(r: &Record) -> SystemTime {
    time::OffsetDateTime::parse(&r.ts, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .unwrap_or_else(|_| SystemTime::now())
}

/// Exponential backoff with jitter: 1 s, 2 s, 4 s ... up to [`MAX_BACKOFF`], each drawn from
/// its upper half so that many failed events do not come back at the same instant.
fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

impl Worker {
    pub(super) fn new(sink: Sink, progress: Progress, env: Arc<Env>) -> Self {
        let tail = Tail::new(&env.audit_dir, progress.cursor, &sink.actions());
        let dead = state::load_dead(&env.dir, &sink.name).unwrap_or_else(|e| {
            tracing::error!(sink = %sink.name, error = %e, "cannot read the dead letters");
            Vec::new()
        });
        Self {
            sink: Arc::new(sink),
            progress,
            env,
            tail: Some(tail),
            window: BTreeMap::new(),
            retries: BTreeMap::new(),
            dead,
            dirty: false,
            last_save: Instant::now(),
        }
    }

    pub(super) async fn run(mut self, mut ctl: mpsc::Receiver<Control>) {
        let mut written = self.env.audit.written();
        let mut inflight = FuturesUnordered::new();
        let stop = self.env.stop.clone();
        loop {
            self.fill().await;
            self.launch(&mut inflight);
            if self.dirty && self.last_save.elapsed() >= SAVE_EVERY {
                self.save();
            }
            metrics::gauge!(DEPTH, "sink" => self.sink.name.clone())
                .set((self.window.len() + self.retries.len()) as f64);
            let wake = self
                .window
                .values()
                .chain(self.retries.values())
                .filter(|p| !p.inflight)
                .map(|p| p.next_at)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let save_at = self.last_save + SAVE_EVERY;
            tokio::select! {
                _ = stop.cancelled() => break,
                Some((slot, result)) = inflight.next(), if !inflight.is_empty() => {
                    self.finished(slot, result).await;
                }
                Ok(()) = written.changed() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = tokio::time::sleep_until(save_at.into()), if self.dirty => {}
                Some((req, reply)) = ctl.recv() => {
                    let outcome = self.apply(&req).await;
                    let _ = reply.send(outcome);
                }
            }
        }
        // Deliveries still in flight are dropped unsettled: sent again at the next start.
        self.save();
    }

    /// Reads new matching records into the window.
    async fn fill(&mut self) {
        while self.window.len() < WINDOW {
            let Some(mut tail) = self.tail.take() else {
                return;
            };
            let room = WINDOW - self.window.len();
            let (tail, read) = match tokio::task::spawn_blocking(move || {
                let r = tail.read(room);
                (tail, r)
            })
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(sink = %self.sink.name, error = %e, "event reader failed");
                    return;
                }
            };
            let last_seq = tail.last_seq;
            self.tail = Some(tail);
            let batch = match read {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(sink = %self.sink.name, error = %e, "cannot read the audit log for events");
                    return;
                }
            };
            if let Some((from, to)) = batch.gap {
                let detail = format!(
                    "{}: audit records {from} to {to} were removed before their events were delivered; any events among them are lost",
                    self.sink.name
                );
                tracing::error!("{detail}");
                self.audit(AuditEvent::new(AuditAction::Event, Outcome::Error).detail(detail));
            }
            let now = Instant::now();
            for r in batch.records {
                if self.progress.done.contains(&r.seq) {
                    continue;
                }
                let Some(trigger) = self.sink.trigger_for(&r) else {
                    continue;
                };
                let deadline = record_time(&r) + self.sink.max_age;
                self.window.insert(
                    r.seq,
                    Pending {
                        record: r,
                        trigger,
                        attempts: 0,
                        next_at: now,
                        deadline,
                        inflight: false,
                        last_error: "expired before the first attempt".into(),
                    },
                );
            }
            self.advance(last_seq);
            if !batch.more {
                return;
            }
        }
    }

    /// Moves the cursor as far as the settled events allow.
    fn advance(&mut self, read_upto: u64) {
        let cursor = match self.window.keys().next() {
            Some(first) => first - 1,
            None => read_upto,
        };
        if cursor > self.progress.cursor {
            self.progress.cursor = cursor;
            self.progress.done = self.progress.done.split_off(&(cursor + 1));
            self.dirty = true;
        }
    }

    fn launch(
        &mut self,
        inflight: &mut FuturesUnordered<futures::future::BoxFuture<'static, (Slot, Delivery)>>,
    ) {
        let now = Instant::now();
        let now_wall = SystemTime::now();
        let mut expired = Vec::new();
        let maps = [(&mut self.window, false), (&mut self.retries, true)];
        for (map, retry) in maps {
            for (seq, p) in map.iter_mut() {
                if inflight.len() >= CONCURRENCY {
                    break;
                }
                if p.inflight || p.next_at > now {
                    continue;
                }
                let slot = if retry {
                    Slot::Retry(*seq)
                } else {
                    Slot::Window(*seq)
                };
                if now_wall >= p.deadline {
                    expired.push(slot);
                    continue;
                }
                p.inflight = true;
                p.attempts += 1;
                let sink = self.sink.clone();
                let transport = self.env.transport.clone();
                let id = message::event_id(&p.record);
                let body = message::body(&p.record, p.trigger);
                inflight.push(Box::pin(async move {
                    let ts = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    // The key signs; it never leaves this process.
                    let sig = message::signature(sink.secret.expose(), &id, ts, &body);
                    let headers = vec![
                        ("content-type", "application/cloudevents+json".to_string()),
                        ("webhook-id", id),
                        ("webhook-timestamp", ts.to_string()),
                        ("webhook-signature", sig),
                        (
                            "user-agent",
                            concat!("gatehouse/", env!("CARGO_PKG_VERSION")).into(),
                        ),
                    ];
                    let r = transport.post(&sink.url, headers, body, sink.timeout).await;
                    (slot, r)
                })
                    as futures::future::BoxFuture<'static, (Slot, Delivery)>);
            }
        }
        for slot in expired {
            self.give_up(slot);
        }
    }

    fn take(&mut self, slot: Slot) -> Option<Pending> {
        match slot {
            Slot::Window(s) => self.window.remove(&s),
            Slot::Retry(s) => self.retries.remove(&s),
        }
    }

    fn get(&mut self, slot: Slot) -> Option<&mut Pending> {
        match slot {
            Slot::Window(s) => self.window.get_mut(&s),
            Slot::Retry(s) => self.retries.get_mut(&s),
        }
    }

    async fn finished(&mut self, slot: Slot, result: Delivery) {
        let name = self.sink.name.clone();
        let Some(p) = self.get(slot) else {
            return; // purged meanwhile
        };
        p.inflight = false;
        let err = match result {
            Ok(status) if (200..300).contains(&status) => None,
            Ok(status) => Some(format!("HTTP {status}")),
            Err(e) => Some(e),
        };
        match err {
            None => {
                let Some(p) = self.take(slot) else { return };
                let age = SystemTime::now()
                    .duration_since(record_time(&p.record))
                    .unwrap_or_default();
                metrics::counter!(DELIVERED, "sink" => name.clone()).increment(1);
                metrics::histogram!(LATENCY, "sink" => name.clone()).record(age.as_secs_f64());
                let detail = format!(
                    "{name}: {} {} delivered (attempt {}, {} ms after the record){}",
                    p.trigger.as_str(),
                    message::event_id(&p.record),
                    p.attempts,
                    age.as_millis(),
                    if matches!(slot, Slot::Retry(_)) {
                        ", retried by an operator"
                    } else {
                        ""
                    }
                );
                self.audit(self.event_about(&p.record, Outcome::Ok, detail));
                if matches!(slot, Slot::Retry(_)) {
                    let id = message::event_id(&p.record);
                    self.dead.retain(|d| d.id != id);
                    self.save_dead();
                }
                self.settled(slot);
            }
            Some(e) => {
                metrics::counter!(FAILED, "sink" => name.clone()).increment(1);
                tracing::debug!(sink = %name, error = %e, "event delivery failed");
                let give_up = SystemTime::now() >= p.deadline;
                p.last_error = e;
                p.next_at = Instant::now() + backoff(p.attempts);
                if give_up {
                    self.give_up(slot);
                }
            }
        }
    }

    fn give_up(&mut self, slot: Slot) {
        let Some(p) = self.take(slot) else { return };
        let name = &self.sink.name;
        metrics::counter!(GIVEN_UP, "sink" => name.clone()).increment(1);
        let id = message::event_id(&p.record);
        let detail = format!(
            "{name}: {} {id} given up after {} attempts: {}",
            p.trigger.as_str(),
            p.attempts,
            p.last_error
        );
        tracing::warn!("{detail}");
        self.audit(self.event_about(&p.record, Outcome::Error, detail));
        let letter = DeadLetter {
            id: id.clone(),
            attempts: p.attempts,
            last_error: p.last_error,
            gave_up_at: crate::audit::record::now_ts(),
            record: p.record,
        };
        self.dead.retain(|d| d.id != id);
        self.dead.push(letter);
        self.save_dead();
        self.settled(slot);
    }

    /// Bookkeeping after an event left the window (delivered or given up).
    fn settled(&mut self, slot: Slot) {
        match slot {
            Slot::Window(seq) => {
                self.progress.done.insert(seq);
                self.dirty = true;
                let read = self.tail.as_ref().map_or(seq, |t| t.last_seq);
                self.advance(read);
            }
            // A retried dead letter: removed when delivered, replaced when given up again.
            Slot::Retry(_) => {}
        }
    }

    fn event_about(&self, r: &Record, outcome: Outcome, detail: String) -> AuditEvent {
        let mut ev = AuditEvent::new(AuditAction::Event, outcome).detail(detail);
        ev.path = r.path.clone();
        ev.user = r.user.clone();
        ev
    }

    fn audit(&self, ev: AuditEvent) {
        self.env.audit.record_detached(ev);
    }

    fn save(&mut self) {
        match state::save_progress(&self.env.dir, &self.sink.name, &self.progress) {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::error!(sink = %self.sink.name, error = %e, "cannot save event delivery progress")
            }
        }
        self.last_save = Instant::now();
    }

    fn save_dead(&self) {
        if let Err(e) = state::save_dead(&self.env.dir, &self.sink.name, &self.dead) {
            tracing::error!(sink = %self.sink.name, error = %e, "cannot save the dead letters");
        }
    }

    async fn apply(&mut self, req: &Request) -> String {
        let name = self.sink.name.clone();
        let wanted = |id: &str| req.ids.is_empty() || req.ids.iter().any(|i| i == id);
        let outcome = match req.op {
            Op::Retry => {
                let now = Instant::now();
                let deadline = SystemTime::now() + self.sink.max_age;
                let mut n = 0;
                for d in self.dead.iter().filter(|d| wanted(&d.id)) {
                    let Some(trigger) = self.sink.trigger_for(&d.record) else {
                        continue;
                    };
                    n += 1;
                    self.retries.insert(
                        d.record.seq,
                        Pending {
                            record: d.record.clone(),
                            trigger,
                            attempts: 0,
                            next_at: now,
                            deadline,
                            inflight: false,
                            last_error: d.last_error.clone(),
                        },
                    );
                }
                format!("{name}: {n} dead letters queued for delivery")
            }
            Op::PurgeDead => {
                let before = self.dead.len();
                self.dead.retain(|d| !wanted(&d.id));
                self.retries
                    .retain(|_, p| !wanted(&message::event_id(&p.record)));
                self.save_dead();
                format!("{name}: {} dead letters purged", before - self.dead.len())
            }
            Op::PurgePending => {
                let n = self.window.len();
                self.window.clear();
                // Skip whatever the files still hold.
                let mut skipped = 0;
                while let Some(mut tail) = self.tail.take() {
                    let r = tokio::task::spawn_blocking(move || {
                        let r = tail.read(100_000);
                        (tail, r)
                    })
                    .await;
                    let Ok((tail, Ok(batch))) = r else { break };
                    skipped += batch
                        .records
                        .iter()
                        .filter(|r| self.sink.trigger_for(r).is_some())
                        .count();
                    self.tail = Some(tail);
                    if !batch.more {
                        break;
                    }
                }
                let read = self.tail.as_ref().map_or(0, |t| t.last_seq);
                self.progress.done.clear();
                self.advance(read);
                self.save();
                format!("{name}: {} pending events purged", n + skipped)
            }
        };
        self.audit(
            AuditEvent::new(AuditAction::Event, Outcome::Ok)
                .detail(format!("{outcome} (operator request)")),
        );
        outcome
    }
}

/// Applies operators' request files as they appear (and those filed while the gateway was down).
pub(super) async fn requests(env: Arc<Env>, controls: Vec<(String, mpsc::Sender<Control>)>) {
    loop {
        for (path, req) in state::pending_requests(&env.dir) {
            let targets: Vec<_> = controls
                .iter()
                .filter(|(n, _)| req.sink.as_deref().is_none_or(|s| s == n))
                .collect();
            let mut lines = Vec::new();
            if targets.is_empty() {
                lines.push(format!(
                    "no sink named {:?}",
                    req.sink.as_deref().unwrap_or("")
                ));
            }
            for (_, tx) in targets {
                let (otx, orx) = oneshot::channel();
                if tx.send((req.clone(), otx)).await.is_ok()
                    && let Ok(line) = orx.await
                {
                    lines.push(line);
                }
            }
            state::finish_request(&path, &lines.join("\n"));
        }
        tokio::select! {
            _ = env.stop.cancelled() => return,
            _ = tokio::time::sleep(REQUEST_POLL) => {}
        }
    }
}
