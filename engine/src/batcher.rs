//! Per-stage queues and the dynamic batcher.
//!
//! Each stage has one multi-consumer queue; every worker link of the stage pulls its own batches
//! from it. A batch closes when it holds `max_batch_size` items or `max_wait` after its first
//! item arrived, whichever comes first ([`collect`]); a stage that does not wait for batches
//! takes what is queued when its worker is free, its share of it ([`take_queued`]).

use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use tokio::time::{timeout_at, Instant};

use crate::tasks::TaskId;

/// A task waiting in a stage's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The task.
    pub task_id: TaskId,
    /// `FLAG_INGRESS` / `FLAG_EGRESS` for this stage within the task's route.
    pub flags: u16,
    /// The stage's input: the HTTP body or the previous stage's output.
    pub payload: Bytes,
    /// The request id, passed to the worker for its logs.
    pub request_id: Bytes,
}

/// A stage's queue: the sending end shared by HTTP and the links of earlier stages, the
/// receiving end shared by this stage's links.
#[derive(Debug, Clone)]
pub struct StageQueue {
    /// Where new items go.
    pub sender: Sender<Queued>,
    /// Where this stage's links take items from.
    pub receiver: Receiver<Queued>,
}

impl Default for StageQueue {
    fn default() -> Self {
        // Unbounded: the engine bounds work in flight with its capacity semaphore instead, so a
        // hop between stages can never block a link.
        let (sender, receiver) = async_channel::unbounded();
        Self { sender, receiver }
    }
}

impl StageQueue {
    /// Enqueues an item; the queue only closes at shutdown, when dropping it is right.
    pub fn push(&self, item: Queued) {
        let _ = self.sender.try_send(item);
    }
}

/// Fills `batch` (which must start empty) with the next batch from `receiver`.
///
/// Items are pushed into the caller's vector as they arrive, so if this future is cancelled (the
/// link noticed its worker died) the caller still holds every item already taken and can put
/// them back. Returns when the batch is full, its wait has passed, or the queue closed, with
/// the instant the first item arrived (`None` when the queue closed empty).
pub async fn collect(
    receiver: &Receiver<Queued>,
    batch: &mut Vec<Queued>,
    max_batch_size: usize,
    max_wait: Duration,
) -> Option<Instant> {
    let first = receiver.recv().await.ok()?;
    batch.push(first);
    let opened = Instant::now();
    let deadline = opened + max_wait;
    while batch.len() < max_batch_size {
        // Take whatever is already queued without touching the timer.
        match receiver.try_recv() {
            Ok(item) => {
                batch.push(item);
                continue;
            }
            Err(async_channel::TryRecvError::Closed) => break,
            Err(async_channel::TryRecvError::Empty) => {}
        }
        match timeout_at(deadline, receiver.recv()).await {
            Ok(Ok(item)) => batch.push(item),
            Ok(Err(_)) | Err(_) => break, // queue closed, or the wait passed
        }
    }
    Some(opened)
}

/// The payload bytes past which [`take_queued`] takes no more items: it is for many small
/// items, and large ones gain nothing from sharing a frame (they would only wait for each
/// other and make the frame big).
pub const QUEUED_BATCH_BYTES: usize = 1 << 20;

/// The work, in the worker's expected time, one [`take_queued`] batch may hold: its items'
/// results come back together, so the first one waits for the others' work, by at most this
/// much when the items cost what the ones before them did.
pub const QUEUED_BATCH_WORK: Duration = Duration::from_millis(2);

/// What one item of a stage that takes what is queued costs its worker, as measured so far:
/// how many items the next batch may take within [`QUEUED_BATCH_WORK`].
///
/// The estimate is an average weighted 1/8 to the newest batch: a scheduling hiccup moves it
/// little, while one item far slower than the budget (a second where items took microseconds)
/// is enough to hand the next ones over one at a time, as a plain stage would. Nothing
/// measured yet means one item at a time.
#[derive(Debug, Default, Clone, Copy)]
pub struct ItemCost {
    per_item: Option<Duration>,
}

impl ItemCost {
    /// Notes that a batch of `items` took `elapsed`.
    pub fn note(&mut self, elapsed: Duration, items: usize) {
        let sample = elapsed / u32::try_from(items.max(1)).unwrap_or(u32::MAX);
        self.per_item = Some(match self.per_item {
            Some(known) => (known * 7 + sample) / 8,
            None => sample,
        });
    }

    /// How many items the next batch may take (at least 1, at most `max_batch_size`).
    pub fn limit(&self, max_batch_size: usize) -> usize {
        let Some(per_item) = self.per_item else {
            return 1;
        };
        let fits = QUEUED_BATCH_WORK.as_nanos() / per_item.as_nanos().max(1);
        usize::try_from(fits).unwrap_or(usize::MAX).clamp(1, max_batch_size.max(1))
    }
}

/// Fills `batch` (which must start empty) with what is queued once an item is there, without
/// waiting for more: at most `max_batch_size` items, at most this link's share of the queue
/// (the items queued divided among the stage's `workers`, rounded up, so that a burst is
/// spread over the stage's workers instead of taken by the first free one), and no more once
/// the payloads reach [`QUEUED_BATCH_BYTES`].
///
/// For a stage whose worker runs its items one by one: many small items then cost one hop to
/// the worker, not one each, and an idle queue adds no wait. Returns as [`collect`] does.
pub async fn take_queued(
    receiver: &Receiver<Queued>,
    batch: &mut Vec<Queued>,
    max_batch_size: usize,
    workers: usize,
) -> Option<Instant> {
    let first = receiver.recv().await.ok()?;
    batch.push(first);
    let opened = Instant::now();
    let share = (receiver.len() + 1).div_ceil(workers.max(1));
    let mut bytes = batch[0].payload.len();
    while batch.len() < max_batch_size.min(share) && bytes < QUEUED_BATCH_BYTES {
        match receiver.try_recv() {
            Ok(item) => {
                bytes += item.payload.len();
                batch.push(item);
            }
            Err(_) => break, // empty or closed: the batch is what was there
        }
    }
    Some(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(task_id: TaskId) -> Queued {
        Queued { task_id, flags: 0, payload: Bytes::new(), request_id: Bytes::new() }
    }

    #[tokio::test(start_paused = true)]
    async fn closes_when_full_without_waiting() {
        let queue = StageQueue::default();
        (0..5).for_each(|i| queue.push(item(i)));
        let start = Instant::now();
        let mut batch = Vec::new();
        collect(&queue.receiver, &mut batch, 4, Duration::from_secs(10)).await;
        assert_eq!(batch.iter().map(|q| q.task_id).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn closes_at_max_wait_after_the_first_item() {
        let queue = StageQueue::default();
        let sender = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sender.push(item(1));
            tokio::time::sleep(Duration::from_millis(5)).await;
            sender.push(item(2));
            tokio::time::sleep(Duration::from_millis(50)).await;
            sender.push(item(3));
        });
        let start = Instant::now();
        let mut batch = Vec::new();
        collect(&queue.receiver, &mut batch, 8, Duration::from_millis(10)).await;
        // The wait starts at the first item (t=100ms), not at the call.
        assert_eq!(batch.iter().map(|q| q.task_id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(start.elapsed(), Duration::from_millis(110));
    }

    #[tokio::test(start_paused = true)]
    async fn batch_of_one_never_waits() {
        let queue = StageQueue::default();
        queue.push(item(9));
        queue.push(item(10));
        let mut batch = Vec::new();
        collect(&queue.receiver, &mut batch, 1, Duration::from_secs(1)).await;
        assert_eq!(batch, vec![item(9)]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_keeps_items_already_taken() {
        let queue = StageQueue::default();
        queue.push(item(1));
        let mut batch = Vec::new();
        let cancelled = tokio::time::timeout(
            Duration::from_millis(5),
            collect(&queue.receiver, &mut batch, 8, Duration::from_secs(1)),
        )
        .await;
        assert!(cancelled.is_err());
        assert_eq!(batch, vec![item(1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn taking_what_is_queued_never_waits_and_leaves_the_other_workers_their_share() {
        let queue = StageQueue::default();
        (0..7).for_each(|i| queue.push(item(i)));
        let start = Instant::now();
        let mut first = Vec::new();
        take_queued(&queue.receiver, &mut first, 32, 2).await;
        // 7 queued for 2 workers: this one takes 4; of the 3 left, the next takes 2.
        assert_eq!(first.iter().map(|q| q.task_id).collect::<Vec<_>>(), [0, 1, 2, 3]);
        let mut second = Vec::new();
        take_queued(&queue.receiver, &mut second, 32, 2).await;
        assert_eq!(second.iter().map(|q| q.task_id).collect::<Vec<_>>(), [4, 5]);
        let mut third = Vec::new();
        take_queued(&queue.receiver, &mut third, 32, 2).await;
        assert_eq!(third.iter().map(|q| q.task_id).collect::<Vec<_>>(), [6]);
        assert_eq!(start.elapsed(), Duration::ZERO);
        (0..5).for_each(|i| queue.push(item(10 + i)));
        let mut capped = Vec::new();
        take_queued(&queue.receiver, &mut capped, 2, 1).await;
        assert_eq!(capped.iter().map(|q| q.task_id).collect::<Vec<_>>(), [10, 11]);
    }

    #[tokio::test(start_paused = true)]
    async fn taking_what_is_queued_stops_once_the_payloads_are_large() {
        let queue = StageQueue::default();
        let sized = |task_id, len| Queued { payload: Bytes::from(vec![0; len]), ..item(task_id) };
        queue.push(sized(0, QUEUED_BATCH_BYTES / 2));
        queue.push(sized(1, QUEUED_BATCH_BYTES / 2));
        queue.push(sized(2, 10));
        queue.push(sized(3, 10));
        let mut batch = Vec::new();
        take_queued(&queue.receiver, &mut batch, 32, 1).await;
        assert_eq!(batch.iter().map(|q| q.task_id).collect::<Vec<_>>(), [0, 1]);
        queue.push(sized(4, 3 * QUEUED_BATCH_BYTES));
        let mut small_then_large = Vec::new();
        take_queued(&queue.receiver, &mut small_then_large, 32, 1).await;
        assert_eq!(small_then_large.iter().map(|q| q.task_id).collect::<Vec<_>>(), [2, 3, 4]);
    }

    #[test]
    fn the_measured_item_cost_sizes_the_next_batch_cautiously() {
        let mut cost = ItemCost::default();
        assert_eq!(cost.limit(64), 1, "nothing measured: one at a time");
        cost.note(Duration::from_micros(100), 5); // 20 us an item: 100 fit in 2 ms
        assert_eq!(cost.limit(64), 64);
        cost.note(Duration::from_millis(3), 1); // a hiccup: still many
        assert!(cost.limit(64) > 1);
        cost.note(Duration::from_secs(4), 1); // one slow item: one at a time at once
        assert_eq!(cost.limit(64), 1);
        cost.note(Duration::from_micros(20), 1); // fast again: the estimate comes down slowly
        assert_eq!(cost.limit(64), 1);
        for _ in 0..200 {
            cost.note(Duration::from_micros(20), 1);
        }
        assert_eq!(cost.limit(64), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_queue_ends_the_batch() {
        let queue = StageQueue::default();
        queue.push(item(1));
        queue.sender.close();
        let mut batch = Vec::new();
        collect(&queue.receiver, &mut batch, 8, Duration::from_secs(1)).await;
        assert_eq!(batch, vec![item(1)]);
        let mut empty = Vec::new();
        assert!(collect(&queue.receiver, &mut empty, 8, Duration::from_secs(1)).await.is_none());
        assert!(empty.is_empty());
    }
}
