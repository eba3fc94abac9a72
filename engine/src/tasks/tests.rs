//! The task table's own tests: linear pipelines (as before flows) and flows.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::config::{EnsembleStep, Step, SwitchStep};
use crate::protocol::{decode_joined, FLAG_EGRESS, FLAG_INGRESS, FLAG_JOINED};

fn pipeline(stages: &[usize]) -> Pipeline {
    stages.to_vec().into()
}

/// One item to queue.
fn dispatch(task_id: TaskId, stage: usize, flags: u16, payload: &[u8]) -> Dispatch {
    Dispatch { task_id, hop: Hop { stage, flags }, payload: Bytes::copy_from_slice(payload) }
}

fn next(task_id: TaskId, stage: usize, flags: u16, payload: &[u8]) -> Advance {
    Advance::Next(vec![dispatch(task_id, stage, flags, payload)])
}

fn ok(payload: &'static [u8]) -> Answer {
    Answer { status: 200, flags: 0, payload: Bytes::from_static(payload), objects: vec![] }
}

fn error(status: u16, message: &'static [u8]) -> Answer {
    Answer { status, flags: 0, payload: Bytes::from_static(message), objects: vec![] }
}

fn ensemble(members: Vec<Vec<Step>>, fail_fast: bool) -> Step {
    Step::Ensemble(EnsembleStep { members, fail_fast })
}

fn switch(chooser: usize, branches: Vec<Vec<Step>>) -> Step {
    Step::Switch(SwitchStep { chooser, branches })
}

fn branch(index: u32) -> Answer {
    Answer {
        status: 200,
        flags: 0,
        payload: Bytes::copy_from_slice(&index.to_le_bytes()),
        objects: vec![],
    }
}

/// Status, flags and bytes of each part of a joined container.
fn parts(joined: &Bytes) -> Vec<(u16, u16, Bytes)> {
    decode_joined(joined).unwrap().into_iter().map(|p| (p.status, p.flags, p.bytes)).collect()
}

/// The tasks and payloads of items to queue.
fn queued(advance: Advance) -> Vec<Dispatch> {
    match advance {
        Advance::Next(dispatches) => dispatches,
        Advance::Done => vec![],
    }
}

#[test]
fn a_task_walks_its_pipeline_then_ends() {
    let table = TaskTable::default();
    let (id, first, mut rx) = table.create(pipeline(&[4, 5, 6]), None);
    assert_eq!(first, Hop { stage: 4, flags: FLAG_INGRESS });
    assert_eq!(table.advance(id, 200, Bytes::new(), vec![]), next(id, 5, 0, b""));
    assert_eq!(table.advance(id, 200, Bytes::new(), vec![]), next(id, 6, FLAG_EGRESS, b""));
    assert_eq!(table.advance(id, 200, Bytes::from_static(b"out"), vec![]), Advance::Done);
    assert_eq!(rx.try_recv().unwrap(), Outcome { status: 200, body: Bytes::from_static(b"out") });
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

#[test]
fn an_ensemble_joins_its_members_in_member_order() {
    let table = TaskTable::default();
    let flow = Flow::compile(&[
        ensemble(vec![vec![Step::Stage(1)], vec![Step::Stage(2), Step::Stage(3)]], false),
        Step::Stage(4),
    ]);
    let (root, first, mut rx) = table.submit(&flow, Bytes::from_static(b"P"), None);
    let (a, b) = (first[0].task_id, first[1].task_id);
    assert!(a != root && b != root && a != b);
    // Both members read the request body: INGRESS; neither is the answer.
    assert_eq!(first, vec![dispatch(a, 1, FLAG_INGRESS, b"P"), dispatch(b, 2, FLAG_INGRESS, b"P")]);
    assert_eq!(table.len(), 3);
    assert_eq!(table.answer(b, ok(b"b1")), next(b, 3, 0, b"b1"));
    // The second member finishes last but keeps its slot.
    assert_eq!(table.answer(b, ok(b"B")), Advance::Done);
    let joined = queued(table.answer(a, ok(b"A")));
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0].task_id, root);
    assert_eq!(joined[0].hop, Hop { stage: 4, flags: FLAG_JOINED | FLAG_EGRESS });
    let expected = vec![(200, 0, Bytes::from_static(b"A")), (200, 0, Bytes::from_static(b"B"))];
    assert_eq!(parts(&joined[0].payload), expected);
    assert_eq!(table.len(), 1, "finished members leave the table");
    assert_eq!(table.answer(root, ok(b"out")), Advance::Done);
    assert_eq!(rx.try_recv().unwrap(), Outcome { status: 200, body: Bytes::from_static(b"out") });
    table.remove(root);
    assert!(table.is_empty());
}

#[test]
fn fail_fast_ends_the_task_at_the_first_member_error_and_cancels_the_rest() {
    let table = TaskTable::default();
    let flow = Flow::compile(&[
        Step::Stage(0),
        ensemble(vec![vec![Step::Stage(1)], vec![Step::Stage(2)], vec![Step::Stage(3)]], true),
    ]);
    let (root, _, mut rx) = table.submit(&flow, Bytes::from_static(b"P"), None);
    let members = queued(table.answer(root, ok(b"x")));
    // Not the request body any more; each member's only stage is the answer.
    assert!(members.iter().all(|d| d.hop.flags == FLAG_EGRESS && d.payload == "x"));
    let (cancel, mut cancelled) = mpsc::unbounded_channel();
    let link = Holder::new(cancel);
    for member in &members {
        assert!(table.hold(member.task_id, &link));
    }
    assert_eq!(table.answer(members[0].task_id, ok(b"fine")), Advance::Done);
    assert_eq!(table.answer(members[1].task_id, error(422, b"bad")), Advance::Done);
    assert_eq!(rx.try_recv().unwrap(), Outcome { status: 422, body: Bytes::from_static(b"bad") });
    assert_eq!(table.len(), 1, "the other members are gone at once");
    assert_eq!(cancelled.try_recv().unwrap(), members[2].task_id, "and their workers told");
    assert!(cancelled.try_recv().is_err());
    assert!(!table.is_pending(members[2].task_id));
    // Its late answer changes nothing.
    assert_eq!(table.answer(members[2].task_id, ok(b"late")), Advance::Done);
    table.remove(root);
    assert!(table.is_empty());
}

#[test]
fn without_fail_fast_errors_fill_their_slots_of_the_answer() {
    let table = TaskTable::default();
    let flow = Flow::compile(&[ensemble(vec![vec![Step::Stage(1)], vec![Step::Stage(2)]], false)]);
    let (_, members, mut rx) = table.submit(&flow, Bytes::from_static(b"P"), None);
    assert!(members.iter().all(|d| d.hop.flags == FLAG_INGRESS | FLAG_EGRESS));
    assert_eq!(table.answer(members[0].task_id, error(422, b"bad")), Advance::Done);
    // A member whose worker died is a member error like any other.
    let died = Outcome::error(500, "worker exited");
    assert_eq!(table.fail(members[1].task_id, died), Advance::Done);
    let outcome = rx.try_recv().unwrap();
    assert_eq!(outcome.status, 200);
    let expected =
        vec![(422, 0, Bytes::from_static(b"bad")), (500, 0, Bytes::from_static(b"worker exited"))];
    assert_eq!(parts(&outcome.body), expected);
}

#[test]
fn a_switch_runs_the_chosen_branch_on_its_own_input() {
    let table = TaskTable::default();
    let flow = Flow::compile(&[switch(
        0,
        vec![vec![Step::Stage(1)], vec![Step::Stage(2), Step::Stage(3)]],
    )]);
    let (id, first, mut rx) = table.submit(&flow, Bytes::from_static(b"P"), None);
    assert_eq!(first, vec![dispatch(id, 0, FLAG_INGRESS, b"P")]);
    // The branch gets P, still the request body, not the chooser's output.
    assert_eq!(table.answer(id, branch(1)), next(id, 2, FLAG_INGRESS, b"P"));
    assert_eq!(table.answer(id, ok(b"q")), next(id, 3, FLAG_EGRESS, b"q"));
    assert_eq!(table.answer(id, ok(b"out")), Advance::Done);
    assert_eq!(rx.try_recv().unwrap().body, Bytes::from_static(b"out"));
    table.remove(id);

    let refused = |answer: Answer| {
        let (id, _, mut rx) = table.submit(&flow, Bytes::from_static(b"P"), None);
        assert_eq!(table.answer(id, answer), Advance::Done);
        let outcome = rx.try_recv().unwrap();
        table.remove(id);
        (outcome.status, String::from_utf8(outcome.body.to_vec()).unwrap())
    };
    let expected = "inference internal error: switch chose branch 2 of 2";
    assert_eq!(refused(branch(2)), (500, expected.to_owned()));
    assert_eq!(refused(error(422, b"no branch")), (422, "no branch".to_owned()));
    assert_eq!(refused(ok(b"1")).0, 500);
    assert!(table.is_empty());
}

#[test]
fn nested_flows_join_inside_joins() {
    let table = TaskTable::default();
    let inner = ensemble(vec![vec![Step::Stage(2)], vec![Step::Stage(3)]], false);
    let flow = Flow::compile(&[ensemble(
        vec![vec![switch(0, vec![vec![Step::Stage(1)], vec![inner]])], vec![Step::Stage(4)]],
        true,
    )]);
    let (root, first, mut rx) = table.submit(&flow, Bytes::from_static(b"P"), None);
    let (chooser, d) = (first[0].task_id, first[1].task_id);
    assert_eq!(
        first,
        vec![
            dispatch(chooser, 0, FLAG_INGRESS, b"P"),
            dispatch(d, 4, FLAG_INGRESS | FLAG_EGRESS, b"P")
        ]
    );
    let grandchildren = queued(table.answer(chooser, branch(1)));
    let all = FLAG_INGRESS | FLAG_EGRESS;
    assert_eq!(
        grandchildren.iter().map(|g| (g.hop, &g.payload[..])).collect::<Vec<_>>(),
        vec![(Hop { stage: 2, flags: all }, &b"P"[..]), (Hop { stage: 3, flags: all }, &b"P"[..]),]
    );
    assert_eq!(table.len(), 5);
    assert_eq!(table.answer(d, ok(b"D")), Advance::Done);
    assert_eq!(table.answer(grandchildren[1].task_id, ok(b"3")), Advance::Done);
    assert_eq!(table.answer(grandchildren[0].task_id, ok(b"2")), Advance::Done);
    let outcome = rx.try_recv().unwrap();
    let answer = parts(&outcome.body);
    assert_eq!((answer[0].0, answer[0].1), (200, FLAG_JOINED));
    assert_eq!(
        parts(&answer[0].2),
        vec![(200, 0, Bytes::from_static(b"2")), (200, 0, Bytes::from_static(b"3"))]
    );
    assert_eq!(answer[1], (200, 0, Bytes::from_static(b"D")));
    assert_eq!(table.len(), 1);
    table.remove(root);
    assert!(table.is_empty());
}

#[test]
fn removing_a_task_removes_its_members_and_tells_their_links() {
    let table = TaskTable::default();
    let inner = ensemble(vec![vec![Step::Stage(2)], vec![Step::Stage(3)]], false);
    let flow = Flow::compile(&[ensemble(vec![vec![Step::Stage(1)], vec![inner]], false)]);
    let (root, first, _rx) = table.submit(&flow, Bytes::from_static(b"P"), None);
    let (cancel, mut cancelled) = mpsc::unbounded_channel();
    let link = Holder::new(cancel);
    assert_eq!(first.len(), 3);
    assert_eq!(table.len(), 5);
    for member in &first[1..] {
        assert!(table.hold(member.task_id, &link));
    }
    table.remove(root);
    assert!(table.is_empty());
    let mut told: Vec<_> = std::iter::from_fn(|| cancelled.try_recv().ok()).collect();
    told.sort_unstable();
    assert_eq!(told, vec![first[1].task_id, first[2].task_id]);
    assert!(!table.hold(first[0].task_id, &link), "a removed member cannot be held");
}

#[test]
fn fail_all_counts_client_tasks_and_removes_their_members() {
    let table = TaskTable::default();
    let flow = Flow::compile(&[ensemble(vec![vec![Step::Stage(1)], vec![Step::Stage(2)]], false)]);
    let (root, members, mut rx) = table.submit(&flow, Bytes::from_static(b"P"), None);
    let (plain, _, _plain_rx) = table.create(pipeline(&[0]), None);
    assert_eq!(table.fail_all(&Outcome::error(503, "draining")), 2);
    assert_eq!(rx.try_recv().unwrap().status, 503);
    assert_eq!(table.len(), 2, "members removed, client tasks left for their guards");
    assert!(!table.is_pending(members[0].task_id));
    table.remove(root);
    table.remove(plain);
    assert!(table.is_empty());
}
