//! Moving tasks through their flows: the table's entries and every change to them that a
//! result, a failure or a removal causes, run under the table's lock.
//!
//! One event can ripple: a member's result ends the member, fills its slot in the parent's
//! join, completes the join, moves the parent on, and maybe fans it out again. The [`Walk`]
//! runs such ripples as a work list (no recursion, however deep the flow nests) and collects
//! what must happen once the lock is released: items to queue, leases to drop, cancels to
//! send.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{Dispatch, Holder, Hop, Outcome, TaskId};
use crate::flow::{Cursor, Node};
use crate::protocol::{
    encode_joined, JoinedPart, FLAG_EGRESS, FLAG_INGRESS, FLAG_JOINED, FLAG_REFERENCE,
};
use crate::refs::Lease;

/// What a task carries into its current step.
#[derive(Debug, Clone, Default)]
pub(super) struct Payload {
    /// The bytes a worker gets (inline, a store reference, or a joined container).
    pub bytes: Bytes,
    /// `FLAG_REFERENCE` or `FLAG_JOINED` for what `bytes` are, else 0.
    pub flags: u16,
    /// Still the task's original input (the request body): its items are INGRESS.
    pub original: bool,
    /// The store objects `bytes` name, shared with every other task reading them.
    pub leases: Vec<Arc<Lease>>,
}

impl Payload {
    /// A payload of the request body.
    pub fn original(bytes: Bytes) -> Self {
        Self { bytes, flags: 0, original: true, leases: Vec::new() }
    }

    /// An error message (or any inline bytes that hold no objects).
    pub fn message(bytes: impl Into<Bytes>) -> Self {
        Self { bytes: bytes.into(), ..Self::default() }
    }
}

/// Who gets a task's outcome.
pub(super) enum Reply {
    /// A client request (HTTP or an in-process call) waiting on this channel.
    Client(oneshot::Sender<Outcome>),
    /// A member of an ensemble: its outcome fills `slot` of `parent`'s join.
    Member { parent: TaskId, slot: usize },
}

/// An ensemble step in progress: the members still running and the outputs of the others.
pub(super) struct Join {
    /// Child task of each slot, `None` once it has delivered.
    children: Vec<Option<TaskId>>,
    /// Status and output of each delivered slot.
    parts: Vec<Option<(u16, Payload)>>,
    /// Slots still to deliver.
    left: usize,
    fail_fast: bool,
}

/// The table's view of one task.
pub(super) struct Entry {
    /// Where the task is in its flow.
    pub cursor: Cursor,
    /// Taken by whoever ends the task.
    pub reply: Option<Reply>,
    /// The link whose worker has the task in its batch in hand (set by `hold`, cleared by the
    /// worker's result): told when the task is abandoned so the worker can stop streaming for
    /// it, and given the task's leases if it is removed meanwhile.
    pub holder: Option<Arc<Holder>>,
    /// Where a streaming route's events go (None for plain routes and children).
    pub events: Option<mpsc::UnboundedSender<Outcome>>,
    /// The input of the step the task is in: held until that step is done with it (see the
    /// module docs of `tasks`), and empty while the task waits for its members.
    pub input: Payload,
    /// Set while the task waits for the members of an ensemble.
    join: Option<Join>,
}

impl Entry {
    /// A task at the start of `cursor`'s flow.
    pub fn new(
        cursor: Cursor,
        input: Payload,
        reply: Reply,
        events: Option<mpsc::UnboundedSender<Outcome>>,
    ) -> Self {
        Self { cursor, reply: Some(reply), holder: None, events, input, join: None }
    }
}

enum Work {
    /// Send the task to its current step, or end it when its flow is done.
    Proceed(TaskId),
    /// End the task with this status and payload (its output, or an error message).
    End { id: TaskId, status: u16, payload: Payload },
    /// A member's end, for its parent's join.
    Deliver { parent: TaskId, slot: usize, status: u16, payload: Payload },
}

/// What a walk leaves to do once the table is unlocked.
pub(super) struct Effects {
    /// Items to queue at stages.
    pub dispatches: Vec<Dispatch>,
    /// Leases no task holds any more: dropping them frees the objects nobody else shares.
    pub released: Vec<Arc<Lease>>,
    /// Held tasks that were abandoned, to report to their links.
    pub cancels: Vec<(Arc<Holder>, TaskId)>,
}

/// Changes to the table under its lock (see the module docs).
pub(super) struct Walk<'a> {
    entries: &'a mut HashMap<TaskId, Entry>,
    next_id: &'a AtomicU32,
    work: VecDeque<Work>,
    effects: Effects,
}

impl<'a> Walk<'a> {
    /// A walk over the locked `entries`, taking fresh ids from `next_id`.
    pub fn new(entries: &'a mut HashMap<TaskId, Entry>, next_id: &'a AtomicU32) -> Self {
        let effects = Effects { dispatches: Vec::new(), released: Vec::new(), cancels: Vec::new() };
        Self { entries, next_id, work: VecDeque::new(), effects }
    }

    /// Runs the work queued so far and hands over what is left to do outside the lock.
    pub fn finish(mut self) -> Effects {
        while let Some(work) = self.work.pop_front() {
            match work {
                Work::Proceed(id) => self.step(id),
                Work::End { id, status, payload } => self.end_now(id, status, payload),
                Work::Deliver { parent, slot, status, payload } => {
                    self.deliver(parent, slot, status, payload)
                }
            }
        }
        self.effects
    }

    /// The table itself, for changes that ripple into nothing (a holder cleared, a lookup).
    pub fn entries(&mut self) -> &mut HashMap<TaskId, Entry> {
        self.entries
    }

    /// Adds a task under a fresh id (ids wrap and skip ones still in use).
    pub fn insert(&mut self, entry: Entry) -> TaskId {
        let id = loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if !self.entries.contains_key(&id) {
                break id;
            }
        };
        self.entries.insert(id, entry);
        id
    }

    /// Queues sending the task on to its current step.
    pub fn proceed(&mut self, id: TaskId) {
        self.work.push_back(Work::Proceed(id));
    }

    /// Queues ending the task with `status` and `payload`.
    pub fn end(&mut self, id: TaskId, status: u16, payload: Payload) {
        self.work.push_back(Work::End { id, status, payload });
    }

    /// A worker answered the task's current step (the holder is already cleared).
    pub fn answered(&mut self, id: TaskId, status: u16, output: Payload) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return self.effects.released.extend(output.leases);
        };
        if entry.reply.is_none() || entry.join.is_some() {
            // Ended already, or not waiting for a worker: a late or stray result.
            return self.effects.released.extend(output.leases);
        }
        match entry.cursor.current() {
            Some(Node::Stage { .. }) => {
                // The stage has read its input: nobody else reads this task's share of it.
                let consumed = std::mem::take(&mut entry.input);
                consumed.leases.iter().for_each(|lease| lease.mark_consumed());
                self.effects.released.extend(consumed.leases);
                if status == 200 {
                    entry.input = output;
                    entry.cursor.advance();
                    self.proceed(id);
                } else {
                    self.effects.released.extend(output.leases);
                    self.end(id, status, Payload::message(output.bytes));
                }
            }
            Some(Node::Switch { branches, .. }) => {
                // The chooser's output only picks the branch; the input stays held for the
                // branch's first stage.
                let chosen = choose(&output, branches.len());
                self.effects.released.extend(output.leases);
                if status != 200 {
                    return self.end(id, status, Payload::message(output.bytes));
                }
                match chosen {
                    Ok(index) => {
                        entry.cursor.enter(branches[index].clone());
                        self.proceed(id);
                    }
                    Err(message) => self.end(id, 500, Payload::message(message)),
                }
            }
            Some(Node::Ensemble { .. }) | None => self.effects.released.extend(output.leases),
        }
    }

    /// Removes the task and, with it, every task below it (its ensemble's members, theirs).
    /// Leases of a removed task a worker may still be reading go to that worker's link;
    /// a removed task that was still pending and held is reported to its link.
    pub fn discard(&mut self, id: TaskId) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            let Some(entry) = self.entries.remove(&id) else {
                continue;
            };
            if let Some(join) = entry.join {
                stack.extend(join.children.into_iter().flatten());
                let parts = join.parts.into_iter().flatten();
                self.effects.released.extend(parts.flat_map(|(_, part)| part.leases));
            }
            let leases = entry.input.leases;
            // Deferred under the table's lock: the holder's `answered` for this task cannot
            // run in between, so `batch_answered` after it always finds the leases.
            match &entry.holder {
                Some(holder) => {
                    self.effects.released.extend(holder.defer(leases).unwrap_or_default())
                }
                None => self.effects.released.extend(leases),
            }
            if let (Some(_), Some(holder)) = (entry.reply, entry.holder) {
                self.effects.cancels.push((holder, id));
            }
        }
    }

    fn step(&mut self, id: TaskId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.reply.is_none() {
            return;
        }
        let (stage, egress) = match entry.cursor.current() {
            None => {
                let output = std::mem::take(&mut entry.input);
                return self.end(id, 200, output);
            }
            Some(Node::Stage { stage, egress }) => (stage, egress),
            Some(Node::Switch { chooser, .. }) => (chooser, false),
            Some(Node::Ensemble { members, fail_fast }) => {
                // The members share the input; the parent keeps no share of it.
                let input = std::mem::take(&mut entry.input);
                let n = members.len();
                let mut children = Vec::with_capacity(n);
                for (slot, member) in members.iter().enumerate() {
                    let reply = Reply::Member { parent: id, slot };
                    let child = self.insert(Entry::new(
                        Cursor::new(member.clone()),
                        input.clone(),
                        reply,
                        None,
                    ));
                    children.push(Some(child));
                    self.proceed(child);
                }
                let parts = std::iter::repeat_with(|| None).take(n).collect();
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.join = Some(Join { children, parts, left: n, fail_fast });
                }
                if n == 0 {
                    self.complete_join(id);
                }
                return;
            }
        };
        let input = &entry.input;
        let mut flags = input.flags;
        if input.original {
            flags |= FLAG_INGRESS;
        }
        if egress {
            flags |= FLAG_EGRESS;
        }
        let dispatch =
            Dispatch { task_id: id, hop: Hop { stage, flags }, payload: input.bytes.clone() };
        self.effects.dispatches.push(dispatch);
    }

    /// Ends the task: its client gets the outcome, or its parent the member's part. A task
    /// waiting for members has them removed (a fail-fast error, a drain).
    fn end_now(&mut self, id: TaskId, status: u16, payload: Payload) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return self.effects.released.extend(payload.leases);
        };
        let Some(reply) = entry.reply.take() else {
            return self.effects.released.extend(payload.leases);
        };
        if let Some(join) = entry.join.take() {
            for child in join.children.into_iter().flatten() {
                self.discard(child);
            }
            let parts = join.parts.into_iter().flatten();
            self.effects.released.extend(parts.flat_map(|(_, part)| part.leases));
        }
        match reply {
            Reply::Client(sender) => {
                // The receiver may be gone (client left); nothing else to do then. The task
                // stays in the table, holding what a worker may still read, until removed.
                let _ = sender.send(Outcome { status, body: payload.bytes });
                // An answered task needs no store objects (an egress stage answers with bytes).
                self.effects.released.extend(payload.leases);
            }
            Reply::Member { parent, slot } => {
                // Nobody waits on a member but its parent: it leaves the table now.
                self.discard(id);
                self.work.push_back(Work::Deliver { parent, slot, status, payload });
            }
        }
    }

    fn deliver(&mut self, parent: TaskId, slot: usize, status: u16, payload: Payload) {
        let Some(entry) = self.entries.get_mut(&parent) else {
            return self.effects.released.extend(payload.leases);
        };
        let Some(join) = entry.join.as_mut().filter(|_| entry.reply.is_some()) else {
            return self.effects.released.extend(payload.leases);
        };
        let (Some(child), Some(part)) = (join.children.get_mut(slot), join.parts.get_mut(slot))
        else {
            return self.effects.released.extend(payload.leases);
        };
        *child = None;
        if status != 200 && join.fail_fast {
            // Before anything else: the other members must not run on.
            return self.work.push_front(Work::End { id: parent, status, payload });
        }
        if part.is_none() {
            join.left -= 1;
        }
        if let Some((_, replaced)) = part.replace((status, payload)) {
            self.effects.released.extend(replaced.leases);
        }
        if join.left == 0 {
            self.complete_join(parent);
        }
    }

    /// Every member has delivered: the parent goes on with the joined container, holding
    /// every part's leases until the step that reads it is done.
    fn complete_join(&mut self, parent: TaskId) {
        let Some(entry) = self.entries.get_mut(&parent) else {
            return;
        };
        let Some(join) = entry.join.take() else {
            return;
        };
        let parts: Vec<(u16, Payload)> = join.parts.into_iter().flatten().collect();
        let joined: Vec<JoinedPart> = parts
            .iter()
            .map(|(status, part)| JoinedPart {
                status: *status,
                flags: part.flags,
                bytes: part.bytes.clone(),
            })
            .collect();
        let leases = parts.into_iter().flat_map(|(_, part)| part.leases);
        match encode_joined(&joined) {
            Ok(bytes) => {
                entry.input = Payload {
                    bytes,
                    flags: FLAG_JOINED,
                    original: false,
                    leases: leases.collect(),
                };
                entry.cursor.advance();
                self.proceed(parent);
            }
            Err(err) => {
                self.effects.released.extend(leases);
                let message = format!("inference internal error: {err}");
                self.work.push_front(Work::End {
                    id: parent,
                    status: 500,
                    payload: Payload::message(message),
                });
            }
        }
    }
}

/// The branch a chooser's output names: a little-endian `u32` below `branches`.
fn choose(output: &Payload, branches: usize) -> Result<usize, String> {
    if output.flags & FLAG_REFERENCE != 0 {
        return Err("inference internal error: switch chooser answered a store reference, \
                    not a u32 branch index"
            .into());
    }
    let Ok(raw) = <[u8; 4]>::try_from(output.bytes.as_ref()) else {
        return Err(format!(
            "inference internal error: switch chooser answered {} bytes, not a u32 branch index",
            output.bytes.len()
        ));
    };
    let index = u32::from_le_bytes(raw);
    usize::try_from(index).ok().filter(|&index| index < branches).ok_or_else(|| {
        format!("inference internal error: switch chose branch {index} of {branches}")
    })
}
