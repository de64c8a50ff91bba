//! A budget of bytes shared by many tasks: what a frame of output costs before it is read
//! off the socket, and gives back once it has been shown.
//!
//! A task takes a [`Charge`] for a number of bytes before it holds them, waiting while the
//! budget is spent, and the bytes count until the charge is dropped. So memory held under a
//! budget is bounded by the budget, not by the number of tasks: a task that cannot be
//! charged does not read, and what it does not read waits in the kernel's socket buffer and
//! then at the sender (backpressure).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes that may be held at once, shared by clones.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

/// Bytes taken from a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub struct Charge {
    _permit: OwnedSemaphorePermit,
}

impl ByteBudget {
    /// A budget of `total` bytes (at least 1, at most `u32::MAX`).
    pub fn new(total: usize) -> ByteBudget {
        let total = total.clamp(1, u32::MAX as usize);
        ByteBudget {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The budget's size.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not taken right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Takes `bytes` from the budget, waiting until they are free. More than the whole
    /// budget takes all of it, rather than waiting for bytes that can never be free.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait takes nothing (but loses its place in the queue).
    pub async fn charge(&self, bytes: usize) -> Charge {
        let permits = u32::try_from(bytes.min(self.total)).expect("total fits a u32");
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(permits)
            .await
            .expect("the budget's semaphore is never closed");
        Charge { _permit: permit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_charge_holds_its_bytes_until_dropped() {
        let budget = ByteBudget::new(100);
        let first = budget.charge(60).await;
        assert_eq!(budget.available(), 40);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.charge(50).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "50 more bytes fit only after the first charge"
        );
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(budget.available(), 50);
        drop(second);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_takes_all_of_it() {
        let budget = ByteBudget::new(100);
        let all = budget.charge(1_000).await;
        assert_eq!(budget.available(), 0);
        drop(all);
        assert_eq!(budget.available(), 100);
    }
}
