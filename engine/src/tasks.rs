//! The task table: every request in flight, where it is in its pipeline, and how to answer it.
//!
//! A task is created by the HTTP side, moves from stage to stage as worker results arrive, and
//! ends exactly once: with its last stage's output, with an error from any stage, or with an
//! engine-made error (timeout, worker died, draining). Whoever ends it takes its reply channel,
//! so a late result for an ended task finds nothing and is dropped.
//!
//! # When a task's store objects are released
//! A task holds the objects of its latest output, which are the input of the stage it is in.
//! The worker of that stage reads them in place, without pins (`shm` has none), so they must
//! not be freed while it may still read: from the moment a link puts the task in a BATCH
//! ([`TaskTable::hold`]) until that link's worker answers the batch ([`TaskTable::advance`]
//! for each of its tasks, then [`TaskTable::batch_answered`]) or the link ends
//! ([`TaskTable::link_ended`]). A task removed in that window (timeout, client gone, drain)
//! leaves the table at once, but its objects go to the link's [`Holder`] and are released only
//! at that answer or end. A task removed while no worker holds it releases them at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::{FLAG_EGRESS, FLAG_INGRESS};
use crate::refs::{StoreObject, Stores};

/// A task's identity on the worker link.
pub type TaskId = u32;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// HTTP status: 200 with the pipeline's output, or an error status.
    pub status: u16,
    /// The response body: output bytes, or the error message.
    pub body: Bytes,
}

impl Outcome {
    /// An engine-made error outcome.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self { status, body: Bytes::from(message.into()) }
    }
}

/// A pipeline: the stages a route's tasks pass through, in order.
pub type Pipeline = Arc<[usize]>;

/// Where to send a task next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// Index of the stage that must run next.
    pub stage: usize,
    /// `FLAG_INGRESS` / `FLAG_EGRESS` for that stage within this task's route.
    pub flags: u16,
}

/// A worker link as the task table sees it: where to report abandoned tasks, and the store
/// objects of abandoned tasks that the link's worker may still be reading.
pub struct Holder {
    /// Told the id of a held task whose client left or whose deadline passed.
    cancel: mpsc::UnboundedSender<TaskId>,
    /// Objects of tasks removed while in the link's batch in hand, released when the worker
    /// answers that batch; `None` once the link has ended (nobody reads them any more).
    deferred: Mutex<Option<Vec<StoreObject>>>,
}

impl Holder {
    /// A holder reporting abandoned tasks to `cancel`.
    pub fn new(cancel: mpsc::UnboundedSender<TaskId>) -> Arc<Self> {
        Arc::new(Self { cancel, deferred: Mutex::new(Some(Vec::new())) })
    }

    fn deferred(&self) -> MutexGuard<'_, Option<Vec<StoreObject>>> {
        // Every update is one push or take: a poisoned list is still consistent.
        self.deferred.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `objects` until the batch in hand is answered; gives them back when the link has
    /// ended already, so the caller releases them now.
    fn defer(&self, objects: Vec<StoreObject>) -> Option<Vec<StoreObject>> {
        match self.deferred().as_mut() {
            Some(deferred) => {
                deferred.extend(objects);
                None
            }
            None => Some(objects),
        }
    }
}

/// The table's view of one task.
struct Entry {
    /// The stages of the task's route.
    pipeline: Pipeline,
    /// Index into `pipeline` of the stage now holding the task.
    position: usize,
    /// Taken by whoever ends the task.
    reply: Option<oneshot::Sender<Outcome>>,
    /// The link whose worker has the task in its batch in hand (set by `hold`, cleared by the
    /// worker's result): told when the task is abandoned so the worker can stop streaming for
    /// it, and given the task's objects if it is removed meanwhile.
    holder: Option<Arc<Holder>>,
    /// Where a streaming route's events go (None for plain routes).
    events: Option<mpsc::UnboundedSender<Outcome>>,
    /// Store objects of the task's latest output (the input of the stage it is in), released
    /// when that stage's worker has answered for it, or when the task leaves the table (then
    /// through `holder` while a worker may still read them; see the module docs).
    held: Vec<StoreObject>,
}

/// What a stage's result means for its task.
#[derive(Debug, PartialEq, Eq)]
pub enum Advance {
    /// Run this stage next.
    Next(Hop),
    /// The task ended (answered now, or it had already ended).
    Done,
}

/// Every task in flight. Cheap to share: clone the `Arc`.
pub struct TaskTable {
    entries: Mutex<HashMap<TaskId, Entry>>,
    /// Next id to try; ids wrap and skip ones still in use.
    next_id: AtomicU32,
    /// Number of tasks in the table, watched by the drain.
    count: watch::Sender<usize>,
    /// Where held objects go when released.
    stores: Arc<Stores>,
}

impl Default for TaskTable {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

fn hop(pipeline: &Pipeline, position: usize) -> Hop {
    let mut flags = 0;
    if position == 0 {
        flags |= FLAG_INGRESS;
    }
    if position + 1 == pipeline.len() {
        flags |= FLAG_EGRESS;
    }
    Hop { stage: pipeline[position], flags }
}

impl TaskTable {
    /// An empty table releasing objects into `stores`.
    pub fn new(stores: Arc<Stores>) -> Self {
        Self {
            entries: Mutex::default(),
            next_id: AtomicU32::new(1),
            count: watch::channel(0).0,
            stores,
        }
    }

    /// The stores objects are released into.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated (every update is a
        // single insert/remove/field write), so a poisoned lock is still safe to use.
        self.entries.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Adds a task at the start of `pipeline` (which must not be empty); `events` receives its
    /// stream events when its route streams.
    ///
    /// Returns its id, its first hop and the receiver of its outcome.
    pub fn create(
        &self,
        pipeline: Pipeline,
        events: Option<mpsc::UnboundedSender<Outcome>>,
    ) -> (TaskId, Hop, oneshot::Receiver<Outcome>) {
        let (reply, receiver) = oneshot::channel();
        let first = hop(&pipeline, 0);
        let mut entries = self.lock();
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if !entries.contains_key(&id) {
                break id;
            }
        };
        entries.insert(
            id,
            Entry {
                pipeline,
                position: 0,
                reply: Some(reply),
                holder: None,
                events,
                held: Vec::new(),
            },
        );
        self.count.send_replace(entries.len());
        (id, first, receiver)
    }

    /// Removes a task, whether or not it has ended; called once its HTTP side is done with it.
    /// A task abandoned while a worker holds it is reported to that worker's link. The store
    /// objects it still holds are released now when no worker holds the task; otherwise that
    /// worker may be reading them, and they are released when it answers its batch or its link
    /// ends.
    pub fn remove(&self, id: TaskId) {
        let mut entries = self.lock();
        let Some(entry) = entries.remove(&id) else {
            return;
        };
        self.count.send_replace(entries.len());
        let now = match &entry.holder {
            // Deferred while the table is still locked: the holder's `advance` for this task
            // cannot run in between, so `batch_answered` after it always finds the objects.
            Some(holder) => holder.defer(entry.held),
            None => Some(entry.held),
        };
        drop(entries);
        if let (Some(_), Some(holder)) = (entry.reply, entry.holder) {
            // The link may be gone already; then there is no one left to tell.
            let _ = holder.cancel.send(id);
        }
        if let Some(objects) = now {
            self.stores.release(objects, false);
        }
    }

    /// Releases the objects of tasks removed while in `holder`'s batch in hand: its worker has
    /// answered that batch (call after `advance` for each of the batch's results), so nobody
    /// reads them any more.
    pub fn batch_answered(&self, holder: &Holder) {
        let deferred = holder.deferred().as_mut().map(std::mem::take).unwrap_or_default();
        // Like `advance`'s consumed input: the worker ran, and deleted its Redis keys itself.
        self.stores.release(deferred, true);
    }

    /// The link of `holder` has ended (its worker exited, broke the protocol, or the engine is
    /// stopping): releases what it deferred, and from now on its tasks release at once.
    pub fn link_ended(&self, holder: &Holder) {
        let deferred = holder.deferred().take().unwrap_or_default();
        // The worker may have died before reading its Redis keys: delete them.
        self.stores.release(deferred, false);
    }

    /// Whether the task is still waiting for an answer.
    pub fn is_pending(&self, id: TaskId) -> bool {
        self.lock().get(&id).is_some_and(|entry| entry.reply.is_some())
    }

    /// Records that a worker link is about to hand the task to its worker; false when the task
    /// is no longer pending (its client left or it timed out while queued), so the link skips
    /// it. From now until the worker's result (or the link's end) the task's objects outlive a
    /// removal.
    pub fn hold(&self, id: TaskId, link: &Arc<Holder>) -> bool {
        match self.lock().get_mut(&id) {
            Some(entry) if entry.reply.is_some() => {
                entry.holder = Some(Arc::clone(link));
                true
            }
            _ => false,
        }
    }

    /// Passes a stream event to the task's client; ignored for plain routes and ended tasks.
    pub fn stream_event(&self, id: TaskId, status: u16, payload: Bytes) {
        let entries = self.lock();
        if let Some(events) = entries.get(&id).and_then(|entry| entry.events.as_ref()) {
            let _ = events.send(Outcome { status, body: payload });
        }
    }

    /// Applies a stage's result: success moves the task on, anything else ends it.
    ///
    /// `output` lists the store objects the result references (already adopted); the task
    /// holds them from now on, and the objects of its previous output, consumed by this
    /// stage, are released.
    pub fn advance(
        &self,
        id: TaskId,
        status: u16,
        payload: Bytes,
        output: Vec<StoreObject>,
    ) -> Advance {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&id) else {
            drop(entries);
            self.stores.release(output, false);
            return Advance::Done;
        };
        // The worker has answered: even for an ended task, nobody reads its input any more, so
        // its removal may release it at once.
        entry.holder = None;
        if entry.reply.is_none() {
            drop(entries);
            self.stores.release(output, false);
            return Advance::Done;
        }
        let consumed = std::mem::take(&mut entry.held);
        let advance = if status == 200 && entry.position + 1 < entry.pipeline.len() {
            entry.position += 1;
            entry.held = output;
            Advance::Next(hop(&entry.pipeline, entry.position))
        } else {
            if let Some(reply) = entry.reply.take() {
                // The receiver may be gone (client left); nothing else to do then.
                let _ = reply.send(Outcome { status, body: payload });
            }
            // An answered task needs no store objects (an egress stage answers with bytes).
            drop(entries);
            self.stores.release(output, false);
            self.stores.release(consumed, true);
            return Advance::Done;
        };
        drop(entries);
        self.stores.release(consumed, true);
        advance
    }

    /// Ends one task with an engine-made outcome, if it has not ended yet.
    pub fn fail(&self, id: TaskId, outcome: Outcome) {
        if let Some(reply) = self.lock().get_mut(&id).and_then(|entry| entry.reply.take()) {
            let _ = reply.send(outcome);
        }
    }

    /// Ends every pending task with the same outcome; returns how many were ended.
    pub fn fail_all(&self, outcome: &Outcome) -> usize {
        let mut ended = 0;
        for entry in self.lock().values_mut() {
            if let Some(reply) = entry.reply.take() {
                let _ = reply.send(outcome.clone());
                ended += 1;
            }
        }
        ended
    }

    /// Number of tasks in the table.
    pub fn len(&self) -> usize {
        *self.count.borrow()
    }

    /// Whether no task is in the table.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A watch on the number of tasks, for waiting until the table drains.
    pub fn watch_len(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }
}

/// Removes its task from the table when dropped: the HTTP handler holds one, so a client that
/// disconnects (its handler future dropped) or a timeout never leaves an entry behind.
pub struct TaskGuard {
    table: Arc<TaskTable>,
    /// The guarded task.
    pub id: TaskId,
}

impl TaskGuard {
    /// Guards `id` in `table`.
    pub fn new(table: Arc<TaskTable>, id: TaskId) -> Self {
        Self { table, id }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(stages: &[usize]) -> Pipeline {
        stages.to_vec().into()
    }

    #[test]
    fn a_task_walks_its_pipeline_then_ends() {
        let table = TaskTable::default();
        let (id, first, mut rx) = table.create(pipeline(&[4, 5, 6]), None);
        assert_eq!(first, Hop { stage: 4, flags: FLAG_INGRESS });
        assert_eq!(
            table.advance(id, 200, Bytes::new(), vec![]),
            Advance::Next(Hop { stage: 5, flags: 0 })
        );
        assert_eq!(
            table.advance(id, 200, Bytes::new(), vec![]),
            Advance::Next(Hop { stage: 6, flags: FLAG_EGRESS })
        );
        assert_eq!(table.advance(id, 200, Bytes::from_static(b"out"), vec![]), Advance::Done);
        assert_eq!(
            rx.try_recv().unwrap(),
            Outcome { status: 200, body: Bytes::from_static(b"out") }
        );
        assert!(!table.is_pending(id));
        table.remove(id);
        assert!(table.is_empty());
    }

    #[test]
    fn a_single_stage_is_both_ingress_and_egress() {
        let table = TaskTable::default();
        let (_, first, _) = table.create(pipeline(&[0]), None);
        assert_eq!(first.flags, FLAG_INGRESS | FLAG_EGRESS);
    }

    #[test]
    fn an_error_skips_the_remaining_stages() {
        let table = TaskTable::default();
        let (id, _, mut rx) = table.create(pipeline(&[0, 1, 2]), None);
        assert_eq!(table.advance(id, 422, Bytes::from_static(b"bad"), vec![]), Advance::Done);
        assert_eq!(rx.try_recv().unwrap().status, 422);
        // A late result for the ended task changes nothing.
        assert_eq!(table.advance(id, 200, Bytes::new(), vec![]), Advance::Done);
    }

    #[test]
    fn ids_are_unique_and_guards_clean_up() {
        let table = Arc::new(TaskTable::default());
        let mut ids = std::collections::HashSet::new();
        let guards: Vec<_> = (0..100)
            .map(|_| {
                let (id, _, _) = table.create(pipeline(&[0]), None);
                assert!(ids.insert(id));
                TaskGuard::new(table.clone(), id)
            })
            .collect();
        assert_eq!(table.len(), 100);
        drop(guards);
        assert!(table.is_empty());
    }

    #[test]
    fn wrapped_ids_skip_those_in_use() {
        let table = TaskTable::default();
        table.next_id.store(u32::MAX, Ordering::Relaxed);
        let (a, _, _) = table.create(pipeline(&[0]), None);
        table.next_id.store(u32::MAX, Ordering::Relaxed);
        let (b, _, _) = table.create(pipeline(&[0]), None);
        assert_eq!(a, u32::MAX);
        assert_ne!(a, b);
    }

    #[test]
    fn abandoning_a_held_task_tells_its_link() {
        let table = TaskTable::default();
        let (cancel, mut cancelled) = mpsc::unbounded_channel();
        let link = Holder::new(cancel);
        let (held, _, _held_rx) = table.create(pipeline(&[0]), None);
        let (answered, _, _answered_rx) = table.create(pipeline(&[0]), None);
        assert!(table.hold(held, &link));
        assert!(table.hold(answered, &link));
        assert_eq!(table.advance(answered, 200, Bytes::new(), vec![]), Advance::Done);
        table.remove(answered);
        table.remove(held);
        assert_eq!(cancelled.try_recv().unwrap(), held);
        assert!(cancelled.try_recv().is_err(), "an answered task is not cancelled");
        assert!(!table.hold(held, &link), "a removed task cannot be held");
    }

    #[test]
    fn stream_events_reach_streaming_tasks_only() {
        let table = TaskTable::default();
        let (events, mut received) = mpsc::unbounded_channel();
        let (streaming, _, _rx1) = table.create(pipeline(&[0]), Some(events));
        let (plain, _, _rx2) = table.create(pipeline(&[0]), None);
        table.stream_event(streaming, 200, Bytes::from_static(b"tok"));
        table.stream_event(plain, 200, Bytes::from_static(b"lost"));
        assert_eq!(received.try_recv().unwrap().body, Bytes::from_static(b"tok"));
        assert!(received.try_recv().is_err());
    }

    #[test]
    fn fail_all_answers_every_pending_task_once() {
        let table = TaskTable::default();
        let mut receivers: Vec<_> = (0..3).map(|_| table.create(pipeline(&[0]), None).2).collect();
        assert_eq!(table.fail_all(&Outcome::error(503, "draining")), 3);
        assert_eq!(table.fail_all(&Outcome::error(503, "draining")), 0);
        for rx in &mut receivers {
            assert_eq!(rx.try_recv().unwrap().status, 503);
        }
    }
}
