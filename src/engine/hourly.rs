//! The limit on rollbacks started per hour (`limits.rollbacks_per_hour`): an exact sliding
//! window on the engine's clock. Only a start the database recorded counts: an approval that
//! could not be saved started nothing and takes nothing from the limit. The starts of the last
//! hour are read from the store at start, so a restart does not reset the limit.

use std::collections::VecDeque;
use std::time::Duration;

use crate::domain::rollback::Timestamp;
use crate::store::{Store, StoreError};

const HOUR: Duration = Duration::from_secs(3600);

/// When the rollbacks of the last hour started, oldest first.
#[derive(Debug)]
pub(in crate::engine) struct HourlyStarts {
    limit: usize,
    starts: VecDeque<Timestamp>,
}

impl HourlyStarts {
    fn new(limit: u32) -> HourlyStarts {
        HourlyStarts {
            limit: usize::try_from(limit).unwrap_or(usize::MAX).max(1),
            starts: VecDeque::new(),
        }
    }

    /// The limit, knowing the rollbacks started in the hour before `now` (before a restart).
    ///
    /// # Errors
    /// The store could not be read.
    pub(in crate::engine) async fn load(
        store: &Store,
        now: Timestamp,
        limit: u32,
    ) -> Result<HourlyStarts, StoreError> {
        let mut starts = HourlyStarts::new(limit);
        starts
            .starts
            .extend(store.started_since(now.minus(HOUR), limit).await?);
        Ok(starts)
    }

    /// Whether one more rollback may start at `now`; when not, how long until the oldest
    /// start of the last hour leaves it. Takes nothing: see [`HourlyStarts::started`].
    pub(in crate::engine) fn check(&mut self, now: Timestamp) -> Result<(), Duration> {
        let hour_ago = now.minus(HOUR);
        while self.starts.front().is_some_and(|&at| at <= hour_ago) {
            self.starts.pop_front();
        }
        if self.starts.len() < self.limit {
            return Ok(());
        }
        let oldest = self.starts.front().copied().unwrap_or(now);
        Err(Duration::from_millis(oldest.plus(HOUR).since(now)))
    }

    /// A rollback started at `now` (its start recorded).
    pub(in crate::engine) fn started(&mut self, now: Timestamp) {
        self.starts.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_start_in_any_hour_and_the_wait_is_until_the_oldest_leaves_it() {
        let start = Timestamp(1_700_000_000_000);
        let minute = Duration::from_secs(60);
        let mut starts = HourlyStarts::new(2);
        assert_eq!(starts.check(start), Ok(()));
        starts.started(start);
        let later = start.plus(10 * minute);
        assert_eq!(starts.check(later), Ok(()));
        starts.started(later);
        assert_eq!(starts.check(later), Err(50 * minute));
        // Checking takes nothing.
        assert_eq!(starts.check(later), Err(50 * minute));
        // An hour after the first, it has left the window; the second is still in it.
        let hour_on = start.plus(HOUR);
        assert_eq!(starts.check(hour_on), Ok(()));
        starts.started(hour_on);
        assert_eq!(starts.check(hour_on), Err(10 * minute));
    }
}
