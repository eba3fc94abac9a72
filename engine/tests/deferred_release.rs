//! The lifetime rule of arena inputs, through the task table's public API over a real arena:
//! an input handed to a worker in a BATCH is not freed before that worker has answered the
//! batch or its link has ended, whatever happens to its task meanwhile (ARCHITECTURE.md,
//! section 4); an input nobody holds is freed at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step is a failed test

use std::sync::Arc;

use bytes::Bytes;
use mosec_engine::refs::{StoreObject, Stores};
use mosec_engine::tasks::{Advance, Holder, Outcome, Pipeline, TaskId, TaskTable};
use shm::{Arena, Reference};
use tokio::sync::{mpsc, oneshot};

fn pipeline(stages: &[usize]) -> Pipeline {
    stages.to_vec().into()
}

/// A table over a real arena in a scratch directory (removed on drop), for release tests.
struct ArenaTable {
    table: TaskTable,
    arena: Arc<Arena>,
    dir: std::path::PathBuf,
}

impl ArenaTable {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mosec-tasks-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let arena = Arc::new(Arena::create(&dir, 1 << 20).unwrap());
        let table = TaskTable::new(Arc::new(Stores::new(Some(arena.clone()), None)));
        Self { table, arena, dir }
    }

    /// An adopted object filled with `byte`, as a stage's output hands it over.
    fn output(&self, byte: u8) -> Vec<StoreObject> {
        let mut draft = self.arena.alloc(4096).unwrap();
        draft.as_mut_slice().fill(byte);
        let objects = vec![StoreObject::Arena(draft.seal().unwrap())];
        self.table.stores().adopt(&objects).unwrap();
        objects
    }

    /// A task of a two-stage route whose first stage handed over one object: the task now
    /// holds it as the second stage's input.
    fn task_at_second_stage(&self) -> (TaskId, Reference, oneshot::Receiver<Outcome>) {
        let (id, _, rx) = self.table.create(pipeline(&[0, 1]), None);
        let output = self.output(7);
        let StoreObject::Arena(input) = output[0] else { unreachable!() };
        assert!(matches!(self.table.advance(id, 200, Bytes::new(), output), Advance::Next(_)));
        (id, input, rx)
    }

    fn live(&self, input: &Reference) -> bool {
        self.arena.locate(input).is_ok()
    }
}

impl Drop for ArenaTable {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn an_input_removed_while_its_worker_reads_it_lives_until_the_batch_is_answered() {
    let t = ArenaTable::new("answered");
    let (cancel, mut cancelled) = mpsc::unbounded_channel();
    let link = Holder::new(cancel);
    let (id, input, _rx) = t.task_at_second_stage();
    assert!(t.table.hold(id, &link));
    // The request times out (or its client leaves) while the worker reads its input.
    t.table.remove(id);
    assert!(t.table.is_empty(), "the task itself is gone at once");
    assert_eq!(cancelled.try_recv().unwrap(), id, "its worker is told");
    assert!(t.live(&input), "the input outlives the task while its worker may read it");
    // Meanwhile other requests allocate: none of them gets the input's space.
    let others: Vec<_> = (0..8).map(|i| t.output(i)).collect();
    let reused =
        |o: &Vec<StoreObject>| matches!(o[0], StoreObject::Arena(r) if r.offset == input.offset);
    assert!(!others.iter().any(reused));
    // The worker answers: the late result is discarded (its output freed), then the batch
    // is done and the input goes.
    let late = t.output(9);
    assert_eq!(t.table.advance(id, 200, Bytes::new(), late), Advance::Done);
    assert!(t.live(&input), "not before the whole batch is answered");
    t.table.batch_answered(&link);
    assert!(!t.live(&input));
    for objects in others {
        t.table.stores().release(objects, true);
    }
    assert_eq!(t.arena.stats().objects, 0, "nothing leaked");
}

#[test]
fn an_input_held_by_a_link_that_ends_is_released_with_it() {
    let t = ArenaTable::new("ended");
    let (cancel, _cancelled) = mpsc::unbounded_channel();
    let link = Holder::new(cancel);
    let (drained, drained_input, mut drained_rx) = t.task_at_second_stage();
    let (later, later_input, _later_rx) = t.task_at_second_stage();
    assert!(t.table.hold(drained, &link) && t.table.hold(later, &link));
    // The drain fails the task, then its HTTP side removes it: the worker still reads.
    assert_eq!(t.table.fail_all(&Outcome::error(503, "draining")), 2);
    assert_eq!(drained_rx.try_recv().unwrap().status, 503);
    t.table.remove(drained);
    assert!(t.live(&drained_input));
    // The worker dies: its link ends, and what it was reading is released.
    t.table.link_ended(&link);
    assert!(!t.live(&drained_input));
    // A task the ended link still names (it was failed with the batch) goes at once.
    assert!(t.live(&later_input));
    t.table.remove(later);
    assert!(!t.live(&later_input));
    assert_eq!(t.arena.stats().objects, 0);
}

#[test]
fn an_input_nobody_holds_is_released_at_once() {
    let t = ArenaTable::new("unheld");
    let (cancel, _cancelled) = mpsc::unbounded_channel();
    let link = Holder::new(cancel);
    // Queued, never handed to a worker.
    let (queued, queued_input, _rx1) = t.task_at_second_stage();
    t.table.remove(queued);
    assert!(!t.live(&queued_input));
    // Answered by its worker after the task had ended (failed, not yet removed): the
    // answer ends the hold, so the removal frees at once, without waiting for the link.
    let (ended, ended_input, _rx2) = t.task_at_second_stage();
    assert!(t.table.hold(ended, &link));
    t.table.fail(ended, Outcome::error(408, "timeout"));
    assert_eq!(t.table.advance(ended, 200, Bytes::new(), vec![]), Advance::Done);
    t.table.remove(ended);
    assert!(!t.live(&ended_input));
    assert_eq!(t.arena.stats().objects, 0);
    t.table.batch_answered(&link);
    t.table.link_ended(&link);
}
