//! Bounded waits: poll a condition until it holds or a deadline passes.
//!
//! This is the only place the test kit sleeps, and only between polls. A wait that times out
//! panics with what it was waiting for and the last thing it saw, so a failing test explains
//! itself.

use std::future::Future;
use std::time::Duration;

/// How long waits last unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time between polls.
const POLL_EVERY: Duration = Duration::from_millis(15);

/// Calls `check` until it returns `Ok(value)` or `timeout` passes; `Err(seen)` means "not
/// yet", with a description of what was seen. Panics on timeout, naming `what` and the last
/// thing seen.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
