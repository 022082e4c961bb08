//! Batch: gather encoded rows into spool segments, one segment per INSERT.
//!
//! A dedicated thread (file writes and fsync block) receives each request's rows from a bounded
//! queue and writes each group of requests to the open segment before any of them is answered:
//! a request hears 202 only once its rows are in the spool file, and 503 when they could not be
//! written (a full disk, a failing one). With `commit_interval` zero the group is also fsynced
//! first; otherwise fsync follows within the interval, so a machine crash (not a process crash:
//! written data is the kernel's) loses at most that much. A segment is sealed and handed to the
//! deliverer at `max_rows`, `max_bytes` or `max_delay`.
//!
//! After a write error the intake refuses events (503) and the batcher probes the disk every
//! [`PROBE_EVERY`]; once a new segment can be written, events are accepted again.
//!
//! The queue is bounded and so is the spool: when either is full, the request path answers 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{Gauge, Metrics};
use crate::settings::Reader;
use crate::spool::{SegmentWriter, Spool};

/// The rows of one accepted request, already RowBinary-encoded.
#[derive(Debug)]
pub struct Rows {
    pub count: u32,
    pub bytes: Vec<u8>,
    /// Answered once the rows are written (and fsynced, with a commit interval of zero);
    /// dropped unanswered when they could not be.
    pub written: Option<oneshot::Sender<()>>,
}

/// The `[batch]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Rows per segment (one INSERT).
    pub max_rows: usize,
    /// A segment is sealed this long after its first row at the latest.
    pub max_delay: Duration,
    /// Requests waiting for the batcher; beyond it, 429.
    pub queue_capacity: usize,
}

impl Settings {
    pub(crate) fn read(r: &mut Reader) -> Settings {
        Settings {
            max_rows: r.bounded("batch.max_rows", 50_000, 1, 1_000_000) as usize,
            max_delay: r.millis("batch.max_delay_ms", 1000, 1, 600_000),
            queue_capacity: r.bounded("batch.queue_capacity", 20_000, 1, 10_000_000) as usize,
        }
    }
}

/// When the batcher seals and commits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_rows: u64,
    pub max_bytes: u64,
    pub max_delay: Duration,
    /// Zero: fsync before answering. Otherwise a crash loses at most this much.
    pub commit_interval: Duration,
}

/// A segment never grows past this, whatever `batch.max_rows` says: it bounds the deliverer's
/// memory (it reads one segment at a time).
pub(crate) const MAX_SEGMENT_BYTES: u64 = 16 << 20;

impl Limits {
    pub fn new(batch: &Settings, spool: &crate::spool::Settings) -> Limits {
        Limits {
            max_rows: batch.max_rows as u64,
            max_bytes: MAX_SEGMENT_BYTES,
            max_delay: batch.max_delay,
            commit_interval: spool.commit_interval,
        }
    }
}

enum Message {
    Rows(Rows),
    Stop,
}

/// Why the intake refused rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Queue or spool full: retry later (429).
    Full,
    /// Shutting down, or the spool cannot be written (503).
    Unavailable,
}

/// The request path's end of the queue. `close` guarantees that no rows are accepted after the
/// batcher's last read: every offer that returned `Ok` is in the spool when the batcher exits.
#[derive(Debug)]
pub struct Intake {
    tx: Sender<Message>,
    spool: Arc<Spool>,
    closed: AtomicBool,
    offering: AtomicUsize,
    /// Set by the batcher while the spool cannot be written.
    failing: Arc<AtomicBool>,
}

impl Intake {
    pub(crate) fn offer(&self, rows: Rows) -> Result<(), Refused> {
        // Announce the offer before checking `closed`; `close` sets `closed` before waiting for
        // announced offers to finish. SeqCst orders the two pairs of operations.
        self.offering.fetch_add(1, Ordering::SeqCst);
        let result = if self.closed.load(Ordering::SeqCst) || self.failing.load(Ordering::Relaxed) {
            Err(Refused::Unavailable)
        } else if self.spool.is_full() {
            Err(Refused::Full)
        } else {
            match self.tx.try_send(Message::Rows(rows)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => Err(Refused::Full),
                Err(TrySendError::Disconnected(_)) => Err(Refused::Unavailable),
            }
        };
        self.offering.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Refuses further rows and tells the batcher to seal and stop once it has read the rest.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.offering.load(Ordering::SeqCst) != 0 {
            tokio::task::yield_now().await;
        }
        let tx = self.tx.clone();
        let _ = tokio::task::spawn_blocking(move || tx.send(Message::Stop)).await;
    }

    /// Requests waiting for the batcher.
    pub fn depth(&self) -> usize {
        self.tx.len()
    }

    /// Gauges for `/metrics`.
    pub(crate) fn gauges(&self, out: &mut Vec<Gauge>) {
        out.push(Gauge {
            name: "glimpse_queue_depth",
            help: "Requests waiting for the batcher.",
            value: self.depth() as f64,
        });
    }
}

/// Creates the queue and starts the batcher thread. Sealed segment numbers go to `sealed`;
/// the thread ends after `Intake::close`, having sealed its last segment.
pub fn start(
    spool: Arc<Spool>,
    next_seq: u64,
    capacity: usize,
    settings: Limits,
    sealed: mpsc::UnboundedSender<u64>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Intake, std::thread::JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let failing = Arc::new(AtomicBool::new(false));
    let batcher = Batcher {
        spool: spool.clone(),
        settings,
        sealed,
        metrics,
        failing: failing.clone(),
        next_seq,
        open: None,
        waiting: Vec::new(),
        seal_at: None,
        sync_at: None,
        waiting_rows: 0,
    };
    let thread = std::thread::Builder::new()
        .name("glimpse-batcher".into())
        .spawn(move || batcher.run(rx))?;
    let intake = Intake {
        tx,
        spool,
        closed: AtomicBool::new(false),
        offering: AtomicUsize::new(0),
        failing,
    };
    Ok((intake, thread))
}

struct Batcher {
    spool: Arc<Spool>,
    settings: Limits,
    sealed: mpsc::UnboundedSender<u64>,
    metrics: Arc<Metrics>,
    failing: Arc<AtomicBool>,
    next_seq: u64,
    open: Option<SegmentWriter>,
    /// Requests of the group being gathered, answered once it is written.
    waiting: Vec<oneshot::Sender<()>>,
    /// Rows of the group being gathered, for the lost-rows count if it cannot be written.
    waiting_rows: u64,
    seal_at: Option<Instant>,
    /// When written rows are fsynced (commit interval above zero).
    sync_at: Option<Instant>,
}

/// How often a failing spool is tried again.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(200);

impl Batcher {
    fn run(mut self, rx: Receiver<Message>) {
        let mut probe_at = None;
        loop {
            let wake = [self.sync_at, self.seal_at, probe_at]
                .into_iter()
                .flatten()
                .min();
            let message = match wake {
                Some(at) => rx.recv_deadline(at),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match message {
                Ok(Message::Rows(rows)) => {
                    self.append(rows);
                    // Take whatever else is already queued: one write for the whole group. No
                    // pause to gather more: every request of the group waits for this write, and
                    // the next group gathers while it runs.
                    let mut stop = false;
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            Message::Rows(rows) => self.append(rows),
                            Message::Stop => {
                                stop = true;
                                break;
                            }
                        }
                    }
                    self.write_group();
                    if stop {
                        break;
                    }
                }
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if self.sync_at.is_some_and(|t| t <= now) {
                self.sync();
            }
            if self.seal_at.is_some_and(|t| t <= now) {
                self.seal();
            }
            probe_at = if self.failing.load(Ordering::Relaxed) {
                if probe_at.is_some_and(|t| t <= now) {
                    self.probe();
                }
                Some(probe_at.filter(|t| *t > now).unwrap_or(now + PROBE_EVERY))
            } else {
                None
            };
        }
        // Anything sent before `Stop` was read above; `close` lets nothing in after it.
        while let Ok(Message::Rows(rows)) = rx.try_recv() {
            self.append(rows);
        }
        self.write_group();
        self.seal();
    }

    /// Adds a request's rows to the open segment's buffer; they reach the file with the group.
    fn append(&mut self, rows: Rows) {
        if self.open.is_none() && !self.open_segment() {
            self.metrics.spool_lost_rows.add(u64::from(rows.count));
            return; // dropping `written` answers the request 503
        }
        let Some(w) = self.open.as_mut() else { return };
        w.append(rows.count, &rows.bytes);
        self.waiting_rows += u64::from(rows.count);
        if let Some(ack) = rows.written {
            self.waiting.push(ack);
        }
        if w.rows() >= self.settings.max_rows || w.len() >= self.settings.max_bytes {
            // A full segment goes now, with the part of the group it holds.
            self.write_group();
            self.seal();
        }
    }

    fn open_segment(&mut self) -> bool {
        match self.spool.create(self.next_seq) {
            Ok(w) => {
                self.next_seq += 1;
                self.open = Some(w);
                self.seal_at = Some(Instant::now() + self.settings.max_delay);
                true
            }
            Err(e) => {
                // A file may have been created before the error; its number is not reused.
                self.next_seq += 1;
                self.fail(&e);
                false
            }
        }
    }

    /// Writes the gathered group (and fsyncs it with a commit interval of zero), then answers
    /// its requests: 202 when written, 503 (their sender dropped) when not.
    fn write_group(&mut self) {
        let Some(w) = self.open.as_mut() else {
            self.waiting.clear();
            return;
        };
        let written = if self.settings.commit_interval.is_zero() {
            w.commit()
        } else {
            w.write()
        };
        match written {
            Ok(n) => {
                self.spool.grew(n);
                for ack in self.waiting.drain(..) {
                    let _ = ack.send(());
                }
                if !self.settings.commit_interval.is_zero() && self.sync_at.is_none() {
                    self.sync_at = Some(Instant::now() + self.settings.commit_interval);
                }
            }
            Err(e) => {
                // The file was cut back to its last complete group, so nothing of this one is
                // delivered; its requests hear 503 and may retry.
                self.waiting.clear();
                self.metrics.spool_lost_rows.add(self.waiting_rows);
                self.fail(&e);
                self.seal();
            }
        }
        self.waiting_rows = 0;
    }

    /// Makes written rows durable (commit interval above zero).
    fn sync(&mut self) {
        self.sync_at = None;
        let Some(w) = self.open.as_mut() else { return };
        if let Err(e) = w.sync() {
            // Already answered 202: the rows are written, but the disk did not confirm them.
            self.fail(&e);
            self.seal();
        }
    }

    /// Closes the open segment and hands it to the deliverer.
    fn seal(&mut self) {
        if let Some(w) = self.open.as_mut()
            && let Err(e) = w.finish()
        {
            self.fail(&e);
        }
        self.sync_at = None;
        self.seal_at = None;
        if let Some(w) = self.open.take()
            && self.sealed.send(w.seq).is_err()
        {
            tracing::warn!(
                segment = w.seq,
                "deliverer gone; segment stays in the spool for the next start"
            );
        }
    }

    /// After a failure: whether a new segment can be written and synced now; if so, it becomes
    /// the open segment and events are accepted again.
    fn probe(&mut self) {
        if self.open.is_none() && !self.open_segment() {
            return;
        }
        let Some(w) = self.open.as_mut() else { return };
        match w.commit() {
            Ok(n) => {
                self.spool.grew(n);
                self.failing.store(false, Ordering::Relaxed);
                tracing::info!("the spool can be written again; accepting events");
            }
            Err(e) => {
                tracing::debug!(error = %e, "spool still not writable");
                // The probe's segment holds no rows: delete it rather than deliver it.
                if let Some(w) = self.open.take() {
                    let _ = self.spool.remove(w.seq);
                }
                self.seal_at = None;
                self.sync_at = None;
            }
        }
    }

    fn fail(&self, e: &std::io::Error) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %e, dir = %self.spool.dir().display(), "cannot write the spool; refusing events until it works again");
        }
        self.metrics.spool_errors.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u32) -> Rows {
        Rows {
            count: n,
            bytes: vec![n as u8; n as usize],
            written: None,
        }
    }

    fn setup(
        settings: Limits,
    ) -> (
        tempfile::TempDir,
        Arc<Spool>,
        Intake,
        std::thread::JoinHandle<()>,
        mpsc::UnboundedReceiver<u64>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 1 << 30).unwrap().0);
        let (stx, srx) = mpsc::unbounded_channel();
        let (intake, thread) = start(
            spool.clone(),
            1,
            100,
            settings,
            stx,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        (dir, spool, intake, thread, srx)
    }

    fn settings(max_rows: u64, max_delay_ms: u64, commit_ms: u64) -> Limits {
        Limits {
            max_rows,
            max_bytes: 1 << 30,
            max_delay: Duration::from_millis(max_delay_ms),
            commit_interval: Duration::from_millis(commit_ms),
        }
    }

    #[tokio::test]
    async fn seals_at_size_and_on_close_without_losing_rows() {
        let (_dir, spool, intake, thread, mut sealed) = setup(settings(5, 3_600_000, 200));
        for _ in 0..6 {
            intake.offer(rows(1)).unwrap();
        }
        let first = sealed.recv().await.unwrap();
        assert_eq!(spool.read(first).unwrap().rows, 5);
        intake.close().await;
        thread.join().unwrap();
        let second = sealed.recv().await.unwrap();
        assert_eq!(spool.read(second).unwrap().rows, 1, "nothing lost on close");
        assert_eq!(
            intake.offer(rows(1)),
            Err(Refused::Unavailable),
            "closed after stop"
        );
    }

    #[tokio::test]
    async fn seals_at_time() {
        let (_dir, spool, intake, _thread, mut sealed) = setup(settings(1000, 150, 50));
        let start = Instant::now();
        intake.offer(rows(2)).unwrap();
        let seq = sealed.recv().await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(150));
        let seg = spool.read(seq).unwrap();
        assert_eq!((seg.rows, seg.data.len()), (2, 2));
    }

    #[tokio::test]
    async fn commits_within_the_interval_before_sealing() {
        let (_dir, spool, intake, _thread, _sealed) = setup(settings(1000, 3_600_000, 50));
        intake.offer(rows(3)).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Not sealed, yet already on disk: a crash now would lose nothing.
        assert_eq!(spool.read(1).unwrap().rows, 3);
    }

    #[tokio::test]
    async fn fsync_before_ack() {
        let (_dir, spool, intake, _thread, _sealed) = setup(settings(1000, 3_600_000, 0));
        let (tx, rx) = oneshot::channel();
        let mut r = rows(4);
        r.written = Some(tx);
        intake.offer(r).unwrap();
        rx.await.expect("acknowledged once durable");
        assert_eq!(spool.read(1).unwrap().rows, 4);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_rows() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(dir.path(), 20).unwrap().0);
        let (stx, mut srx) = mpsc::unbounded_channel();
        let (intake, _t) = start(
            spool.clone(),
            1,
            100,
            settings(1, 3_600_000, 0),
            stx,
            Arc::new(Metrics::default()),
        )
        .unwrap();
        intake.offer(rows(9)).unwrap();
        srx.recv().await.unwrap();
        assert!(spool.is_full());
        assert_eq!(intake.offer(rows(1)), Err(Refused::Full));
    }
}
