//! Stage 5 — batch: gather encoded rows into large batches, flushing at N rows or T ms.
//!
//! The queue in front is bounded: when it is full the request path answers 429 instead of
//! buffering without limit. The batcher itself holds at most one batch.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The rows of one accepted request, already RowBinary-encoded.
#[derive(Debug)]
pub struct Rows {
    pub count: u32,
    pub bytes: Vec<u8>,
}

/// A batch ready to insert.
#[derive(Debug, Clone)]
pub struct Batch {
    pub rows: usize,
    pub data: Bytes,
}

/// Runs until the intake channel closes or `stop` completes; then refuses further rows, flushes
/// everything already queued and returns.
pub async fn run(
    mut intake: mpsc::Receiver<Rows>,
    out: mpsc::Sender<Batch>,
    max_rows: usize,
    max_delay: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut pending: Vec<Rows> = Vec::with_capacity(1024);
    let mut current = Builder::default();
    let mut deadline = Instant::now();
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    loop {
        let flush_due = tokio::select! {
            n = intake.recv_many(&mut pending, 1024) => {
                if n == 0 {
                    break; // closed and drained
                }
                if current.rows == 0 {
                    deadline = Instant::now() + max_delay;
                }
                for r in pending.drain(..) {
                    current.push(r);
                }
                current.rows >= max_rows
            }
            () = tokio::time::sleep_until(deadline), if current.rows > 0 => true,
            () = &mut stop, if !stopping => {
                // Senders now fail fast; what is already queued is still received.
                stopping = true;
                intake.close();
                false
            }
        };
        if flush_due && out.send(current.take()).await.is_err() {
            return;
        }
    }
    if current.rows > 0 {
        let _ = out.send(current.take()).await;
    }
}

#[derive(Default)]
struct Builder {
    rows: usize,
    buf: Vec<u8>,
}

impl Builder {
    fn push(&mut self, r: Rows) {
        self.rows += r.count as usize;
        self.buf.extend_from_slice(&r.bytes);
    }

    fn take(&mut self) -> Batch {
        let rows = std::mem::take(&mut self.rows);
        Batch {
            rows,
            data: Bytes::from(std::mem::take(&mut self.buf)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u32) -> Rows {
        Rows {
            count: n,
            bytes: vec![n as u8; n as usize],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_at_size() {
        let (tx, rx) = mpsc::channel(100);
        let (btx, mut brx) = mpsc::channel(10);
        let task = tokio::spawn(run(
            rx,
            btx,
            5,
            Duration::from_secs(3600),
            std::future::pending(),
        ));
        for _ in 0..6 {
            tx.send(rows(1)).await.unwrap();
        }
        let b = brx.recv().await.unwrap();
        assert!(b.rows >= 5);
        drop(tx);
        let rest: usize = std::iter::from_fn(|| brx.try_recv().ok())
            .map(|b| b.rows)
            .sum();
        task.await.unwrap();
        let rest = rest
            + std::iter::from_fn(|| brx.try_recv().ok())
                .map(|b| b.rows)
                .sum::<usize>();
        assert_eq!(b.rows + rest, 6, "nothing lost on close");
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_at_time() {
        let (tx, rx) = mpsc::channel(100);
        let (btx, mut brx) = mpsc::channel(10);
        tokio::spawn(run(
            rx,
            btx,
            1000,
            Duration::from_millis(250),
            std::future::pending(),
        ));
        tx.send(rows(2)).await.unwrap();
        let start = Instant::now();
        let b = brx.recv().await.unwrap();
        assert_eq!(b.rows, 2);
        assert_eq!(b.data.len(), 2);
        assert!(start.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn close_flushes_remainder() {
        let (tx, rx) = mpsc::channel(100);
        let (btx, mut brx) = mpsc::channel(10);
        tx.send(rows(3)).await.unwrap();
        drop(tx);
        run(
            rx,
            btx,
            1000,
            Duration::from_secs(60),
            std::future::pending(),
        )
        .await;
        assert_eq!(brx.recv().await.unwrap().rows, 3);
        assert!(brx.recv().await.is_none());
    }

    #[tokio::test]
    async fn stop_refuses_new_rows_and_flushes_queued_ones() {
        let (tx, rx) = mpsc::channel(100);
        let (btx, mut brx) = mpsc::channel(10);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tx.send(rows(4)).await.unwrap();
        let task = tokio::spawn(run(rx, btx, 1000, Duration::from_secs(3600), async move {
            let _ = stop_rx.await;
        }));
        tokio::task::yield_now().await;
        stop_tx.send(()).unwrap();
        task.await.unwrap();
        assert!(tx.try_send(rows(1)).is_err(), "closed after stop");
        assert_eq!(brx.recv().await.unwrap().rows, 4);
    }
}
