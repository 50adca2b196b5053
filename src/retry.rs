//! The time budget of one request and bounded retries inside it.
//!
//! Quay waits 10 s for an answer; Lambda may have less left. Every cluster call runs under a
//! [`Budget`], and [`retrying`] retries transient failures (429, 5xx, broken connections)
//! only while the wait still fits, honouring the server's `Retry-After`. When it does not fit,
//! the error is returned at once so the caller can answer 5xx and let Quay retry later.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::ClusterError;

/// A deadline for everything one request does.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    deadline: Instant,
}

/// Time kept back to write the answer after the last cluster call.
const ANSWER_MARGIN: Duration = Duration::from_millis(150);

impl Budget {
    /// A budget of `timeout` from now.
    pub fn new(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
        }
    }

    /// A budget of `timeout`, shortened so it ends before `remaining` (the Lambda's time left)
    /// minus a margin to answer.
    pub fn within(timeout: Duration, remaining: Option<Duration>) -> Self {
        let limit = remaining
            .map(|r| r.saturating_sub(ANSWER_MARGIN))
            .map_or(timeout, |r| r.min(timeout));
        Self::new(limit)
    }

    /// Time left.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A budget ending `reserve` earlier, but leaving at least half of the time left: the
    /// cluster's share when something must still happen after it (queueing what it could not
    /// take).
    pub fn ending_before(&self, reserve: Duration) -> Self {
        let reserve = reserve.min(self.remaining() / 2);
        Self {
            deadline: self.deadline.checked_sub(reserve).unwrap_or(self.deadline),
        }
    }

    /// Runs `fut` until it completes or the budget ends (`None`).
    pub async fn finish<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::time::timeout_at(self.deadline, fut).await.ok()
    }

    /// Runs `fut` to completion or until the budget ends ([`ClusterError::Timeout`]).
    ///
    /// # Errors
    /// The future's own error, or [`ClusterError::Timeout`].
    pub async fn run<T>(
        &self,
        fut: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(result) => result,
            Err(_) => Err(ClusterError::Timeout),
        }
    }
}

/// The wait before attempt `attempt + 1` when the server gave no `Retry-After`:
/// 100 ms, 200 ms, 400 ms … capped at 2 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(2))
}

/// Runs `op` up to `max_attempts` times within `budget`, retrying transient errors.
///
/// # Errors
/// The last error: a non-transient one at once, a transient one when attempts or time ran out.
pub async fn retrying<T, F, Fut>(
    budget: &Budget,
    max_attempts: u32,
    mut op: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClusterError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match budget.run(op()).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if !err.is_transient() || attempt >= max_attempts || err == ClusterError::Timeout {
            return Err(err);
        }
        let wait = err.retry_after().unwrap_or_else(|| backoff(attempt - 1));
        if wait + ANSWER_MARGIN >= budget.remaining() {
            return Err(err);
        }
        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, cause = %crate::cause::Chain(&err), "retrying cluster call");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(1600));
        assert_eq!(backoff(9), Duration::from_secs(2));
    }

    #[test]
    fn budget_ends_before_the_lambda_does() {
        let b = Budget::within(Duration::from_secs(8), Some(Duration::from_secs(3)));
        assert!(b.remaining() <= Duration::from_secs(3) - ANSWER_MARGIN);
        let b = Budget::within(Duration::from_secs(8), None);
        assert!(b.remaining() > Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserve_shortens_the_budget_but_leaves_half() {
        let whole = Budget::new(Duration::from_secs(8));
        let cluster = whole.ending_before(Duration::from_secs(1));
        assert_eq!(cluster.remaining(), Duration::from_secs(7));
        let short = Budget::new(Duration::from_secs(1)).ending_before(Duration::from_secs(1));
        assert_eq!(short.remaining(), Duration::from_millis(500));
        assert_eq!(whole.finish(async { 7 }).await, Some(7));
        assert_eq!(cluster.finish(std::future::pending::<()>()).await, None);
        assert_eq!(whole.remaining(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_honouring_retry_after() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = retrying(&Budget::new(Duration::from_secs(8)), 3, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(ClusterError::Throttled {
                    retry_after: Some(Duration::from_secs(2)),
                }),
                1 => Err(ClusterError::Status {
                    code: 503,
                    message: String::new(),
                }),
                _ => Ok("done"),
            }
        })
        .await;
        assert_eq!(result, Ok("done"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(
            started.elapsed() >= Duration::from_millis(2100),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_and_exhausted_attempts_stop_at_once() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retrying(&Budget::new(Duration::from_secs(8)), 3, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ClusterError::NotFound)
        })
        .await;
        assert_eq!(result, Err(ClusterError::NotFound));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retrying(&Budget::new(Duration::from_secs(8)), 2, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ClusterError::Transport(crate::cause::Cause::new("reset")))
        })
        .await;
        assert!(matches!(result, Err(ClusterError::Transport(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_longer_than_the_budget_gives_up_immediately() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = retrying(&Budget::new(Duration::from_secs(2)), 5, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ClusterError::Throttled {
                retry_after: Some(Duration::from_secs(30)),
            })
        })
        .await;
        assert!(matches!(result, Err(ClusterError::Throttled { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_call_times_out_at_the_deadline() {
        let result: Result<(), _> = Budget::new(Duration::from_secs(1))
            .run(std::future::pending())
            .await;
        assert_eq!(result, Err(ClusterError::Timeout));
    }
}
