//! The task table: every request in flight, where it is in its route's flow, and how to
//! answer it.
//!
//! A task is created by a client request (HTTP or an in-process call), moves from step to
//! step of its flow as worker results arrive (`crate::flow`), and ends exactly once: with its
//! flow's output, with an error from any stage, or with an engine-made error (timeout, worker
//! died, draining). Whoever ends it takes its reply, so a late result for an ended task finds
//! nothing and is dropped.
//!
//! # Flows
//! A stage step queues the task at its stage. A switch queues it at the chooser; the
//! chooser's answer (a little-endian `u32`) picks the branch, which then runs on the switch's
//! own input. An ensemble runs each member flow as a **child task**: an entry of its own, with
//! its own id on the worker link, no capacity permit and no deadline of its own; it ends by
//! delivering its outcome to its slot in the parent's join instead of to a client. When every
//! slot is filled, the parent goes on with the JOINED container (`crate::protocol`); with
//! `fail_fast`, the first member error ends the parent at once and its other members are
//! removed like abandoned tasks. Removing a task removes its children, so a client request
//! that times out or whose client leaves never leaves a child behind; a child failed by its
//! worker's death is a member error like any other.
//!
//! # When a task's store objects are released
//! A task holds the objects of its current input (the output of the step before), in
//! [`Lease`]s shared with every other task reading the same objects: the members of one
//! ensemble share its input, and the objects are freed when the last of them lets go. The
//! worker of a stage reads them in place, without pins (`shm` has none), so a task's share
//! must not be dropped while that worker may still read: from the moment a link puts the task
//! in a BATCH ([`TaskTable::hold`]) until that link's worker answers the batch
//! ([`TaskTable::answer`] for each of its tasks, then [`TaskTable::batch_answered`]) or the
//! link ends ([`TaskTable::link_ended`]). A task removed in that window (timeout, client gone,
//! drain, a fail-fast sibling) leaves the table at once, but its leases go to the link's
//! [`Holder`] and are dropped only at that answer or end. A task removed while no worker
//! holds it drops them at once. A switch's input stays held through the chooser until the
//! branch's first stage has answered; the members' outputs, joined, are held by the parent
//! until the step that reads the joined container has answered.

mod holder;
#[cfg(test)]
mod tests;
mod walk;

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use holder::Holder;
use walk::{Effects, Entry, Payload, Reply, Walk};

use crate::flow::{Cursor, Flow};
use crate::protocol::FLAG_REFERENCE;
use crate::refs::{Lease, StoreObject, Stores};

/// A task's identity on the worker link.
pub type TaskId = u32;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// HTTP status: 200 with the flow's output, or an error status.
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

/// A pipeline: the stages of a linear route, in order.
pub type Pipeline = Arc<[usize]>;

/// Where to send a task next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// Index of the stage that must run next.
    pub stage: usize,
    /// The item's flags at that stage: `FLAG_INGRESS` / `FLAG_EGRESS` for where it is in the
    /// route, `FLAG_REFERENCE` / `FLAG_JOINED` for what its payload is.
    pub flags: u16,
}

/// An item to queue: a task, the stage it goes to, and its payload there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// The task (a client request or one of its ensemble members).
    pub task_id: TaskId,
    /// The stage and the item's flags.
    pub hop: Hop,
    /// The stage's input.
    pub payload: Bytes,
}

/// A worker's result for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 200, or the error status.
    pub status: u16,
    /// `FLAG_REFERENCE` when the payload is a store reference.
    pub flags: u16,
    /// The output, or the error message.
    pub payload: Bytes,
    /// The store objects the payload references, adopted already.
    pub objects: Vec<StoreObject>,
}

/// What a result (or a failure) means for the tasks of its request.
#[derive(Debug, PartialEq, Eq)]
pub enum Advance {
    /// Queue these items (the task's next stage; an ensemble's members; a parent going on).
    Next(Vec<Dispatch>),
    /// Nothing to queue: the task ended, waits for other members, or had ended already.
    Done,
}

impl Advance {
    fn from_dispatches(dispatches: Vec<Dispatch>) -> Self {
        if dispatches.is_empty() {
            Self::Done
        } else {
            Self::Next(dispatches)
        }
    }
}

/// Every task in flight. Cheap to share: clone the `Arc`.
pub struct TaskTable {
    entries: Mutex<HashMap<TaskId, Entry>>,
    /// Next id to try; ids wrap and skip ones still in use.
    next_id: AtomicU32,
    /// Number of tasks in the table (children included), watched by the drain.
    count: watch::Sender<usize>,
    /// Where held objects go when released.
    stores: Arc<Stores>,
}

impl Default for TaskTable {
    fn default() -> Self {
        Self::new(Arc::default())
    }
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
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, Entry>> {
        // A panic under this lock (a bug) can at worst leave one request's tasks stuck until
        // its guard removes them; refusing every later request would be worse, so a poisoned
        // lock is used as it is.
        self.entries.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Runs `change` on the locked table, then what it rippled into; afterwards, unlocked,
    /// reports abandoned tasks to their links and drops released leases. Returns the items
    /// to queue.
    fn walk<R>(&self, change: impl FnOnce(&mut Walk<'_>) -> R) -> (R, Vec<Dispatch>) {
        let mut entries = self.lock();
        let mut walk = Walk::new(&mut entries, &self.next_id);
        let result = change(&mut walk);
        let Effects { dispatches, released, cancels } = walk.finish();
        let len = entries.len();
        self.count.send_if_modified(|count| std::mem::replace(count, len) != len);
        drop(entries);
        for (holder, id) in cancels {
            // The link may be gone already; then there is no one left to tell.
            let _ = holder.cancel.send(id);
        }
        drop(released);
        (result, dispatches)
    }

    /// Adds a client task running `flow` on `payload` (the request body); `events` receives
    /// its stream events when its route streams.
    ///
    /// Returns its id, the items to queue (one for a flow that starts with a stage; one per
    /// member for one that starts with an ensemble) and the receiver of its outcome.
    pub fn submit(
        &self,
        flow: &Flow,
        payload: Bytes,
        events: Option<mpsc::UnboundedSender<Outcome>>,
    ) -> (TaskId, Vec<Dispatch>, oneshot::Receiver<Outcome>) {
        self.submit_input(flow, payload, None, events)
    }

    /// [`Self::submit`] for a request whose payload may be a store reference (an in-process
    /// caller's input): `stored` is the lease on the objects it names, adopted already, which
    /// the task holds from now on like any stage's output.
    pub fn submit_input(
        &self,
        flow: &Flow,
        payload: Bytes,
        stored: Option<Arc<Lease>>,
        events: Option<mpsc::UnboundedSender<Outcome>>,
    ) -> (TaskId, Vec<Dispatch>, oneshot::Receiver<Outcome>) {
        let (reply, receiver) = oneshot::channel();
        let mut input = Payload::original(payload);
        if let Some(lease) = stored {
            input.flags = FLAG_REFERENCE;
            input.leases.push(lease);
        }
        let entry = Entry::new(Cursor::new(flow.clone()), input, Reply::Client(reply), events);
        let (id, dispatches) = self.walk(|walk| {
            let id = walk.insert(entry);
            walk.proceed(id);
            id
        });
        (id, dispatches, receiver)
    }

    /// Adds a task at the start of a linear `pipeline` (which must not be empty) whose input
    /// the caller queues itself at the returned hop: the pipeline form of [`Self::submit`].
    pub fn create(
        &self,
        pipeline: Pipeline,
        events: Option<mpsc::UnboundedSender<Outcome>>,
    ) -> (TaskId, Hop, oneshot::Receiver<Outcome>) {
        let (id, dispatches, receiver) =
            self.submit(&Flow::linear(&pipeline), Bytes::new(), events);
        // A linear flow starts with exactly one stage; an empty one has ended already.
        let first = dispatches.first().map_or(Hop { stage: 0, flags: 0 }, |dispatch| dispatch.hop);
        (id, first, receiver)
    }

    /// Removes a task, whether or not it has ended, and every member task below it; called
    /// once its client side is done with it. A task abandoned while a worker holds it is
    /// reported to that worker's link. The leases it still holds are dropped now when no worker
    /// holds the task; otherwise that worker may be reading them, and they are dropped when it
    /// answers its batch or its link ends.
    pub fn remove(&self, id: TaskId) {
        self.walk(|walk| walk.discard(id));
    }

    /// Drops the leases of tasks removed while in `holder`'s batch in hand: its worker has
    /// answered that batch (call after `answer` for each of the batch's results), so it reads
    /// them no more.
    pub fn batch_answered(&self, holder: &Holder) {
        let deferred = holder.answered();
        // Like an answered stage's input: the worker ran, and deleted its Redis keys itself.
        deferred.iter().for_each(|lease| lease.mark_consumed());
    }

    /// The link of `holder` has ended (its worker exited, broke the protocol, or the engine is
    /// stopping): drops what it deferred (the worker may have died before reading its Redis
    /// keys: they are deleted), and from now on its tasks release at once.
    pub fn link_ended(&self, holder: &Holder) {
        drop(holder.end());
    }

    /// Whether the task is still waiting for an answer.
    pub fn is_pending(&self, id: TaskId) -> bool {
        self.lock().get(&id).is_some_and(|entry| entry.reply.is_some())
    }

    /// Records that a worker link is about to hand the task to its worker; false when the task
    /// is no longer pending (its client left, it timed out while queued, its ensemble was
    /// cancelled), so the link skips it. From now until the worker's result (or the link's
    /// end) the task's objects outlive a removal.
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

    /// [`Self::answer`] for a result that is a store reference exactly when it names objects.
    pub fn advance(
        &self,
        id: TaskId,
        status: u16,
        payload: Bytes,
        output: Vec<StoreObject>,
    ) -> Advance {
        let flags = if output.is_empty() { 0 } else { FLAG_REFERENCE };
        self.answer(id, Answer { status, flags, payload, objects: output })
    }

    /// Applies a worker's result for the task's current step: success moves the task on (to
    /// its next stage, the chosen branch, or its end, which may move its parent on), anything
    /// else ends it. The worker's hold on the task ends here.
    ///
    /// The result's objects are held from now on (as the next step's input); the task's share
    /// of the input this stage read is dropped, except a switch's input, which the chosen
    /// branch reads next.
    pub fn answer(&self, id: TaskId, answer: Answer) -> Advance {
        let Answer { status, flags, payload, objects } = answer;
        let leases = Lease::new(&self.stores, objects).into_iter().collect();
        let carried = if status == 200 { flags & FLAG_REFERENCE } else { 0 };
        let output = Payload { bytes: payload, flags: carried, original: false, leases };
        let ((), dispatches) = self.walk(|walk| {
            if let Some(entry) = walk.entries().get_mut(&id) {
                // The worker has answered: even for an ended task, nobody reads its input
                // any more, so its removal may release it at once.
                entry.holder = None;
            }
            walk.answered(id, status, output);
        });
        Advance::from_dispatches(dispatches)
    }

    /// Ends one task with an engine-made outcome, if it has not ended yet. A member task's
    /// outcome goes to its parent's join, which may move the parent on: queue what this
    /// returns.
    pub fn fail(&self, id: TaskId, outcome: Outcome) -> Advance {
        let ((), dispatches) = self.walk(|walk| {
            if walk.entries().get(&id).is_some_and(|entry| entry.reply.is_some()) {
                walk.end(id, outcome.status, Payload::message(outcome.body));
            }
        });
        Advance::from_dispatches(dispatches)
    }

    /// Ends every pending client task with the same outcome (their member tasks are removed);
    /// returns how many were ended.
    pub fn fail_all(&self, outcome: &Outcome) -> usize {
        let (ended, _) = self.walk(|walk| {
            let clients: Vec<TaskId> = walk
                .entries()
                .iter()
                .filter(|(_, entry)| matches!(entry.reply, Some(Reply::Client(_))))
                .map(|(&id, _)| id)
                .collect();
            for &id in &clients {
                walk.end(id, outcome.status, Payload::message(outcome.body.clone()));
            }
            clients.len()
        });
        ended
    }

    /// Number of tasks in the table, member tasks included.
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

/// Removes its task from the table when dropped: the client side holds one, so a client that
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
