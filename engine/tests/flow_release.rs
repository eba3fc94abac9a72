//! The lifetime rule of arena objects in flows, through the task table over a real arena: a
//! payload fanned out to an ensemble's members is one set of objects read by all of them,
//! freed only when the last one is done with it (answered, or its link ended); joined member
//! outputs live until the step reading the join has answered; a switch's input lives until
//! its branch's first stage has answered. Whatever ends the task, nothing leaks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step is a failed test

use std::sync::Arc;

use bytes::Bytes;
use mosec_engine::config::{EnsembleStep, Step, SwitchStep};
use mosec_engine::flow::Flow;
use mosec_engine::protocol::{decode_joined, FLAG_JOINED, FLAG_REFERENCE};
use mosec_engine::refs::{StoreObject, Stores, STORE_ARENA};
use mosec_engine::tasks::{Advance, Answer, Dispatch, Holder, TaskId, TaskTable};
use shm::{Arena, Reference};
use tokio::sync::mpsc;

/// A table over a real arena in a scratch directory (removed on drop).
struct ArenaTable {
    table: TaskTable,
    arena: Arc<Arena>,
    dir: std::path::PathBuf,
}

impl ArenaTable {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mosec-flows-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let arena = Arc::new(Arena::create(&dir, 1 << 20).unwrap());
        let table = TaskTable::new(Arc::new(Stores::new(Some(arena.clone()), None)));
        Self { table, arena, dir }
    }

    /// A stage's output handed over as one arena object: the answer, and the object.
    fn output(&self, byte: u8) -> (Answer, Reference) {
        let mut draft = self.arena.alloc(4096).unwrap();
        draft.as_mut_slice().fill(byte);
        let reference = draft.seal().unwrap();
        let objects = vec![StoreObject::Arena(reference)];
        self.table.stores().adopt(&objects).unwrap();
        let mut payload = vec![STORE_ARENA, 1, 0];
        payload.extend_from_slice(&reference.to_bytes());
        let answer =
            Answer { status: 200, flags: FLAG_REFERENCE, payload: payload.into(), objects };
        (answer, reference)
    }

    fn live(&self, reference: &Reference) -> bool {
        self.arena.locate(reference).is_ok()
    }

    fn answer(&self, id: TaskId, answer: Answer) -> Vec<Dispatch> {
        match self.table.answer(id, answer) {
            Advance::Next(dispatches) => dispatches,
            Advance::Done => vec![],
        }
    }

    fn assert_nothing_left(&self) {
        assert!(self.table.is_empty(), "no task left");
        assert_eq!(self.arena.stats().objects, 0, "nothing leaked");
    }
}

impl Drop for ArenaTable {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn inline(payload: &'static [u8]) -> Answer {
    Answer { status: 200, flags: 0, payload: Bytes::from_static(payload), objects: vec![] }
}

fn three_members(fail_fast: bool) -> Flow {
    let members = (1..=3).map(|stage| vec![Step::Stage(stage)]).collect();
    Flow::compile(&[
        Step::Stage(0),
        Step::Ensemble(EnsembleStep { members, fail_fast }),
        Step::Stage(4),
    ])
}

fn link() -> (Arc<Holder>, mpsc::UnboundedReceiver<TaskId>) {
    let (cancel, cancelled) = mpsc::unbounded_channel();
    (Holder::new(cancel), cancelled)
}

#[test]
fn a_payload_fanned_out_to_three_members_is_freed_after_the_third_answers() {
    let t = ArenaTable::new("fanout");
    let (root, _, mut rx) = t.table.submit(&three_members(false), Bytes::from_static(b"P"), None);
    let (output, input) = t.output(1);
    let members = t.answer(root, output);
    assert_eq!(members.len(), 3);
    // One payload for all three: the same reference, read in place by each.
    assert!(members.iter().all(|m| m.hop.flags & FLAG_REFERENCE != 0));
    assert!(members.windows(2).all(|pair| pair[0].payload == pair[1].payload));
    let links: Vec<_> = members.iter().map(|_| link()).collect();
    for (member, (holder, _)) in members.iter().zip(&links) {
        assert!(t.table.hold(member.task_id, holder));
    }
    assert_eq!(t.arena.stats().objects, 1, "stored once");
    // Each member hands over its own output object.
    let mut parts = Vec::new();
    for (index, member) in members.iter().enumerate() {
        let (output, part) = t.output(10 + index as u8);
        parts.push(part);
        assert!(t.live(&input), "freed before member {index} answered");
        let next = t.answer(member.task_id, output);
        t.table.batch_answered(&links[index].0);
        assert_eq!(next.is_empty(), index < 2);
    }
    assert!(!t.live(&input), "freed once the third member answered");
    // The join carries the members' references, held until the stage reading it answers.
    assert_eq!(t.table.len(), 1, "the members left the table");
    assert!(parts.iter().all(|part| t.live(part)));
    let (holder, _) = link();
    assert!(t.table.hold(root, &holder));
    assert_eq!(t.answer(root, inline(b"done")), vec![]);
    assert!(parts.iter().all(|part| !t.live(part)), "freed once the join's reader answered");
    assert_eq!(rx.try_recv().unwrap().body, Bytes::from_static(b"done"));
    t.table.remove(root);
    t.assert_nothing_left();
}

#[test]
fn joined_references_are_flagged_in_their_parts() {
    let t = ArenaTable::new("joined");
    let (root, _, _rx) = t.table.submit(&three_members(false), Bytes::from_static(b"P"), None);
    let members = t.answer(root, inline(b"x"));
    let (output, _) = t.output(3);
    t.answer(members[0].task_id, output);
    t.answer(members[1].task_id, inline(b"b"));
    let reader = t.answer(
        members[2].task_id,
        Answer { status: 503, flags: 0, payload: Bytes::from_static(b"full"), objects: vec![] },
    );
    assert_eq!(reader.len(), 1);
    assert_eq!(reader[0].hop.flags & (FLAG_JOINED | FLAG_REFERENCE), FLAG_JOINED);
    let parts = decode_joined(&reader[0].payload).unwrap();
    let flags: Vec<_> = parts.iter().map(|p| (p.status, p.flags)).collect();
    assert_eq!(flags, vec![(200, FLAG_REFERENCE), (200, 0), (503, 0)]);
    assert_eq!(parts[2].bytes, Bytes::from_static(b"full"));
    // The client leaves while the join waits in the queue: its objects go at once.
    t.table.remove(root);
    t.assert_nothing_left();
}

#[test]
fn members_cancelled_by_fail_fast_free_the_payload_when_their_workers_are_done() {
    let t = ArenaTable::new("failfast");
    let (root, _, mut rx) = t.table.submit(&three_members(true), Bytes::from_static(b"P"), None);
    let (output, input) = t.output(1);
    let members = t.answer(root, output);
    let (answered, mut told_answered) = link();
    let (dying, mut told_dying) = link();
    let (failing, _) = link();
    assert!(t.table.hold(members[0].task_id, &failing));
    assert!(t.table.hold(members[1].task_id, &answered));
    assert!(t.table.hold(members[2].task_id, &dying));
    let error =
        Answer { status: 422, flags: 0, payload: Bytes::from_static(b"bad"), objects: vec![] };
    assert_eq!(t.answer(members[0].task_id, error), vec![]);
    assert_eq!(rx.try_recv().unwrap().status, 422);
    assert_eq!(t.table.len(), 1, "the other members are gone");
    assert_eq!(told_answered.try_recv().unwrap(), members[1].task_id);
    assert_eq!(told_dying.try_recv().unwrap(), members[2].task_id);
    assert!(t.live(&input), "two workers still read it");
    // One answers anyway (its output is dropped), the other's link ends.
    let (late, late_output) = t.output(2);
    t.answer(members[1].task_id, late);
    assert!(!t.live(&late_output));
    t.table.batch_answered(&answered);
    assert!(t.live(&input), "one worker still reads it");
    t.table.link_ended(&dying);
    assert!(!t.live(&input));
    t.table.remove(root);
    t.assert_nothing_left();
}

#[test]
fn a_timeout_mid_ensemble_leaves_no_object_and_no_task() {
    let t = ArenaTable::new("timeout");
    let (root, _, _rx) = t.table.submit(&three_members(false), Bytes::from_static(b"P"), None);
    let (output, input) = t.output(1);
    let members = t.answer(root, output);
    let (holder, mut told) = link();
    assert!(t.table.hold(members[1].task_id, &holder));
    // The first member is done (its output waits in the join); the second is being read; the
    // third is still queued.
    let (output, part) = t.output(2);
    t.answer(members[0].task_id, output);
    t.table.remove(root); // the deadline passed
    assert!(t.table.is_empty(), "the task and its members are gone at once");
    assert_eq!(told.try_recv().unwrap(), members[1].task_id);
    assert!(!t.live(&part), "nobody reads a joined part that was never handed on");
    assert!(t.live(&input), "the second member's worker still reads the input");
    assert!(!t.table.hold(members[2].task_id, &holder), "a queued member is skipped");
    t.table.batch_answered(&holder);
    t.assert_nothing_left();
}

#[test]
fn a_switch_input_lives_until_the_branch_first_stage_answers() {
    let t = ArenaTable::new("switch");
    let branches = vec![vec![Step::Stage(2)], vec![Step::Stage(3), Step::Stage(4)]];
    let flow = Flow::compile(&[Step::Stage(0), Step::Switch(SwitchStep { chooser: 1, branches })]);
    let (id, _, mut rx) = t.table.submit(&flow, Bytes::from_static(b"P"), None);
    let (output, input) = t.output(1);
    let chooser = t.answer(id, output);
    assert_eq!(chooser[0].hop.stage, 1);
    let index = Answer {
        status: 200,
        flags: 0,
        payload: Bytes::copy_from_slice(&1u32.to_le_bytes()),
        objects: vec![],
    };
    let branch = t.answer(id, index);
    assert_eq!((branch[0].hop.stage, branch[0].payload.clone()), (3, chooser[0].payload.clone()));
    assert!(branch[0].hop.flags & FLAG_REFERENCE != 0);
    assert!(t.live(&input), "the branch reads it next");
    assert_eq!(t.answer(id, inline(b"q"))[0].hop.stage, 4);
    assert!(!t.live(&input), "freed once the branch's first stage answered");
    t.answer(id, inline(b"out"));
    assert_eq!(rx.try_recv().unwrap().status, 200);
    t.table.remove(id);
    t.assert_nothing_left();
}
