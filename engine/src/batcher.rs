//! Per-stage queues and the dynamic batcher.
//!
//! Each stage has one multi-consumer queue; every worker link of the stage pulls its own batches
//! from it. A batch closes when it holds `max_batch_size` items or `max_wait` after its first
//! item arrived, whichever comes first ([`collect`]); a stage that does not wait for batches,
//! and a stage whose `forward` takes one item, takes what is queued when its worker is free, its
//! share of it ([`take_queued`]). [`Batching`] says which a stage does.

use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use tokio::time::{timeout_at, Instant};

use crate::config::StageConfig;
use crate::tasks::TaskId;

/// How a stage's links take their batches from its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// mosec's dynamic batching ([`collect`]): up to `max_batch_size` items within `max_wait`,
    /// for one `forward` call.
    Collect,
    /// What is queued when the worker is free ([`take_queued`]), at most `most` items, none
    /// waiting for another. `forward_per_item`: the worker runs `forward` once per item (an
    /// unbatched mosec stage), so each item has its own forward timeout.
    Queued { most: usize, forward_per_item: bool },
}

/// The most items one hop hands a worker whose `forward` takes one item (`max_batch_size` 1).
/// Its worker still calls `forward` once per item and answers them together: many small
/// requests then cost one hop (one wake-up and one read and write on each side) instead of
/// one each, which is most of what a small request costs. [`ItemCost`] keeps the wait this
/// adds to about the engine's `queued_batch_work_ms`.
pub const UNBATCHED_HOP_ITEMS: usize = 64;

impl Batching {
    /// The batching of a stage; `streams`: it is the last stage of a streaming route.
    ///
    /// A stage that waits for batches of more than one item batches as mosec does. One whose
    /// `forward` takes one item is handed what is queued (up to [`UNBATCHED_HOP_ITEMS`]), unless
    /// it streams: a stream runs as long as its client reads, so the items behind it would wait
    /// for all of it instead of for a free worker. A stage that does not wait for batches is
    /// handed what is queued up to `max_batch_size`, for one `forward` call.
    pub fn of(config: &StageConfig, streams: bool) -> Self {
        match (config.wait_for_batch, config.max_batch_size) {
            (false, most) => Self::Queued { most, forward_per_item: false },
            (true, 1) if !streams => {
                Self::Queued { most: UNBATCHED_HOP_ITEMS, forward_per_item: true }
            }
            (true, _) => Self::Collect,
        }
    }

    /// How many `forward` calls a batch of `items` items is (each has the stage's timeout).
    pub fn forward_calls(self, items: usize) -> usize {
        match self {
            Self::Queued { forward_per_item: true, .. } => items,
            _ => 1,
        }
    }
}

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
    /// Back on the queue because a worker failed while it held this item among others: it
    /// goes to a worker on its own this time ([`take_queued`]), so that an item that kills its
    /// worker fails alone and the others are served.
    pub alone: bool,
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

/// What one item of a stage that takes what is queued costs its worker, as measured so far:
/// how many items the next batch may take within a budget of work (the engine's
/// `queued_batch_work_ms`, 2 ms: the first item's result waits for the others by about that).
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

    /// How many items the next batch may take within `budget` (at least 1, at most `most`).
    pub fn limit(&self, most: usize, budget: Duration) -> usize {
        let Some(per_item) = self.per_item else {
            return 1;
        };
        let fits = budget.as_nanos() / per_item.as_nanos().max(1);
        usize::try_from(fits).unwrap_or(usize::MAX).clamp(1, most.max(1))
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
///
/// An item marked [`Queued::alone`] is a batch on its own: taken first, nothing joins it;
/// met later, it ends the batch and waits in `set_aside` (the caller's, kept across calls),
/// which the next call takes first, so that it is not sent to the back of the queue again.
pub async fn take_queued(
    receiver: &Receiver<Queued>,
    batch: &mut Vec<Queued>,
    most: usize,
    workers: usize,
    set_aside: &mut Option<Queued>,
) -> Option<Instant> {
    let first = match set_aside.take() {
        Some(item) => item,
        None => receiver.recv().await.ok()?,
    };
    let alone = first.alone;
    batch.push(first);
    let opened = Instant::now();
    if alone {
        return Some(opened);
    }
    let share = (receiver.len() + 1).div_ceil(workers.max(1));
    let mut bytes = batch[0].payload.len();
    while batch.len() < most.min(share) && bytes < QUEUED_BATCH_BYTES {
        match receiver.try_recv() {
            Ok(item) if item.alone => {
                *set_aside = Some(item);
                break;
            }
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
        Queued { task_id, flags: 0, payload: Bytes::new(), request_id: Bytes::new(), alone: false }
    }

    /// Takes one batch of what is queued, for one of `workers` workers, `set_aside` its own.
    async fn take(
        queue: &StageQueue,
        most: usize,
        workers: usize,
        set_aside: &mut Option<Queued>,
    ) -> Vec<TaskId> {
        let mut batch = Vec::new();
        take_queued(&queue.receiver, &mut batch, most, workers, set_aside).await;
        batch.iter().map(|q| q.task_id).collect()
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
        let mut aside = None;
        // 7 queued for 2 workers: this one takes 4; of the 3 left, the next takes 2.
        assert_eq!(take(&queue, 32, 2, &mut aside).await, [0, 1, 2, 3]);
        assert_eq!(take(&queue, 32, 2, &mut aside).await, [4, 5]);
        assert_eq!(take(&queue, 32, 2, &mut aside).await, [6]);
        assert_eq!(start.elapsed(), Duration::ZERO);
        (0..5).for_each(|i| queue.push(item(10 + i)));
        assert_eq!(take(&queue, 2, 1, &mut aside).await, [10, 11]);
    }

    #[tokio::test(start_paused = true)]
    async fn taking_what_is_queued_stops_once_the_payloads_are_large() {
        let queue = StageQueue::default();
        let sized = |task_id, len| Queued { payload: Bytes::from(vec![0; len]), ..item(task_id) };
        queue.push(sized(0, QUEUED_BATCH_BYTES / 2));
        queue.push(sized(1, QUEUED_BATCH_BYTES / 2));
        queue.push(sized(2, 10));
        queue.push(sized(3, 10));
        queue.push(sized(4, 3 * QUEUED_BATCH_BYTES));
        let mut aside = None;
        assert_eq!(take(&queue, 32, 1, &mut aside).await, [0, 1]);
        assert_eq!(take(&queue, 32, 1, &mut aside).await, [2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_marked_alone_is_a_batch_of_its_own_and_keeps_its_turn() {
        let queue = StageQueue::default();
        let alone = |task_id| Queued { alone: true, ..item(task_id) };
        [item(0), item(1), alone(2), alone(3), item(4), item(5)]
            .into_iter()
            .for_each(|q| queue.push(q));
        let mut aside = None;
        // The batch ends before the first retried item, which waits aside for the next call.
        assert_eq!(take(&queue, 32, 1, &mut aside).await, [0, 1]);
        assert_eq!(aside.as_ref().map(|q| q.task_id), Some(2));
        queue.push(item(6)); // a newer item does not overtake it
        assert_eq!(take(&queue, 32, 1, &mut aside).await, [2]);
        assert_eq!(take(&queue, 32, 1, &mut aside).await, [3]);
        assert_eq!(take(&queue, 32, 1, &mut aside).await, [4, 5, 6]);
        assert!(aside.is_none());
    }

    #[test]
    fn a_stage_batches_unless_its_forward_takes_one_item_and_it_does_not_stream() {
        let stage = |max_batch_size, wait_for_batch| StageConfig {
            name: "S".into(),
            num: 1,
            max_batch_size,
            max_wait_time_ms: 10,
            wait_for_batch,
            forward_timeout_ms: 1000,
        };
        let per_item = Batching::Queued { most: UNBATCHED_HOP_ITEMS, forward_per_item: true };
        assert_eq!(Batching::of(&stage(1, true), false), per_item);
        assert_eq!(per_item.forward_calls(5), 5);
        assert_eq!(Batching::of(&stage(1, true), true), Batching::Collect);
        assert_eq!(Batching::of(&stage(8, true), false), Batching::Collect);
        assert_eq!(Batching::Collect.forward_calls(5), 1);
        let servlet = Batching::of(&stage(64, false), false);
        assert_eq!(servlet, Batching::Queued { most: 64, forward_per_item: false });
        assert_eq!(servlet.forward_calls(5), 1);
    }

    const BUDGET: Duration = Duration::from_millis(2);

    #[test]
    fn the_measured_item_cost_sizes_the_next_batch_cautiously() {
        let mut cost = ItemCost::default();
        assert_eq!(cost.limit(64, BUDGET), 1, "nothing measured: one at a time");
        cost.note(Duration::from_micros(100), 5); // 20 us an item: 100 fit in 2 ms
        assert_eq!(cost.limit(64, BUDGET), 64);
        cost.note(Duration::from_millis(3), 1); // a hiccup: still many
        assert!(cost.limit(64, BUDGET) > 1);
        cost.note(Duration::from_secs(4), 1); // one slow item: one at a time at once
        assert_eq!(cost.limit(64, BUDGET), 1);
        cost.note(Duration::from_micros(20), 1); // fast again: the estimate comes down slowly
        assert_eq!(cost.limit(64, BUDGET), 1);
        for _ in 0..200 {
            cost.note(Duration::from_micros(20), 1);
        }
        assert_eq!(cost.limit(64, BUDGET), 64);
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
