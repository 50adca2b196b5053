//! Accepting connections: a slot under `max_connections` first, then `accept`, and a back-off
//! instead of an exit when `accept` fails.
//!
//! I/O. Taking the slot before `accept` leaves clients over the cap in the kernel's backlog,
//! holding no descriptor of ours, so the cap is reached before the descriptor limit.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The listener and its connection slots.
pub(super) struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    backoff: Backoff,
}

impl Acceptor {
    pub(super) fn new(listener: TcpListener, max_connections: usize) -> Self {
        Acceptor {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            backoff: Backoff::default(),
        }
    }

    /// The next connection and its slot, released when the permit drops.
    ///
    /// Waits for a free slot, then for a client. A failed `accept` (out of descriptors,
    /// `EMFILE`; out of memory; a connection aborted in the backlog) is logged without client
    /// data and retried after a back-off, as Go's `http.Server.Serve` does. Cancel-safe: a
    /// slot taken but not used is given back when the future drops.
    pub(super) async fn next(&mut self) -> (TcpStream, OwnedSemaphorePermit) {
        // The semaphore is never closed, so acquiring cannot fail; waiting forever would be
        // the only other answer.
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("connection slots are never closed");
        loop {
            match self.listener.accept().await {
                Ok((stream, _peer)) => {
                    self.backoff.reset();
                    return (stream, slot);
                }
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(
                        cause = %e,
                        retry_in_ms = delay.as_millis() as u64,
                        "accept failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Go's accept back-off: 5 ms, doubling up to 1 s, reset by a successful accept.
#[derive(Debug, Default)]
struct Backoff {
    last: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn next_delay(&mut self) -> Duration {
        let delay = self
            .last
            .map_or(Self::FIRST, |last| (last * 2).min(Self::MAX));
        self.last = Some(delay);
        delay
    }

    fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5ms_to_1s_and_resets_like_go_serve() {
        let mut b = Backoff::default();
        let ms: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(5));
    }
}
