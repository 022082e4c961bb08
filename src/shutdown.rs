//! One way to stop: a [`Shutdown`] that every background job and server loop watches, fired
//! once by its [`Trigger`]; and [`every`], the loop that runs a job periodically until then.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Fires the shutdown. Dropping it fires it too, so a job never outlives its owner.
#[derive(Debug)]
pub(crate) struct Trigger(watch::Sender<bool>);

/// Completes once the shutdown has fired; cheap to clone, one per job.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub(crate) fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Waits until the shutdown fires (or its trigger is gone).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn fired(&self) -> bool {
        *self.0.borrow()
    }
}

/// When the first run of a periodic job happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Right away.
    Now,
    /// After one period: the caller has just done the work itself.
    AfterPeriod,
}

/// Runs `job` every `period` until `shutdown` fires. A run in progress is finished, never cut.
pub async fn every<F, Fut>(period: Duration, first: First, shutdown: Shutdown, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let stop = shutdown.wait();
    let mut stop = std::pin::pin!(stop);
    if first == First::AfterPeriod {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = &mut stop => return,
        }
    }
    loop {
        job().await;
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn runs_periodically_until_the_shutdown_fires() {
        let (trigger, shutdown) = channel();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let job = tokio::spawn(every(
            Duration::from_secs(10),
            First::Now,
            shutdown.clone(),
            move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "at 0, 10 and 20 s");
        assert!(!shutdown.fired());
        trigger.fire();
        job.await.unwrap();
        assert!(shutdown.fired());
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn after_period_waits_first_and_a_dropped_trigger_stops_too() {
        let (trigger, shutdown) = channel();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let job = tokio::spawn(every(
            Duration::from_secs(10),
            First::AfterPeriod,
            shutdown,
            move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        drop(trigger);
        job.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }
}
