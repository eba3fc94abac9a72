//! A route's flow graph as the running engine walks it: the config's [`Step`]s compiled once
//! at start into shared nodes, and the [`Cursor`] that marks where one task is in them.
//!
//! A flow is a list of steps. A stage step runs one stage; an ensemble runs each member flow
//! on the same input (as a child task each: see `crate::tasks`) and continues with their
//! outputs joined; a switch runs its chooser stage, then the chosen branch flow on the
//! switch's own input, and continues after the switch. A linear route is a flow of stage
//! steps, walked exactly as the pipeline it used to be.
//!
//! Whether a stage's output leaves the engine (its item's EGRESS flag) depends only on where
//! the stage is in the graph, so it is decided here, once: a stage is egress when it ends a
//! *final* flow. The route's flow is final; so are the branches of a switch, and the members
//! of an ensemble, that end a final flow. A chooser never is (its output picks a branch and is
//! dropped). Whether an item is INGRESS depends on the payload (still the request body or
//! not), so the task table decides that as it goes.

use std::sync::Arc;

use crate::config::Step;

/// A flow: its steps, shared by every task that runs it (cloning is a reference count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow(Arc<[Node]>);

/// A compiled step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Run `stage`; `egress` when its output is (part of) the task's answer.
    Stage {
        /// Index of the stage.
        stage: usize,
        /// Whether the stage is egress here (see the module docs).
        egress: bool,
    },
    /// Run every member on the same input, then continue with their joined outputs.
    Ensemble {
        /// The member flows, in member (and slot) order.
        members: Arc<[Flow]>,
        /// End the task at the first member error instead of joining errors.
        fail_fast: bool,
    },
    /// Run `chooser`, then the branch its answer names, on the switch's input.
    Switch {
        /// Index of the chooser stage.
        chooser: usize,
        /// The branch flows, by index.
        branches: Arc<[Flow]>,
    },
}

impl Flow {
    /// Compiles a route's (validated) flow.
    pub fn compile(steps: &[Step]) -> Self {
        Self::build(steps, true)
    }

    /// A linear flow: `stages` in order, the last one egress.
    pub fn linear(stages: &[usize]) -> Self {
        let steps: Vec<Step> = stages.iter().copied().map(Step::Stage).collect();
        Self::compile(&steps)
    }

    fn build(steps: &[Step], last_is_final: bool) -> Self {
        let nodes = steps.iter().enumerate().map(|(index, step)| {
            let is_final = last_is_final && index + 1 == steps.len();
            let flows = |flows: &[Vec<Step>]| -> Arc<[Flow]> {
                flows.iter().map(|steps| Self::build(steps, is_final)).collect()
            };
            match step {
                Step::Stage(stage) => Node::Stage { stage: *stage, egress: is_final },
                Step::Ensemble(ensemble) => Node::Ensemble {
                    members: flows(&ensemble.members),
                    fail_fast: ensemble.fail_fast,
                },
                Step::Switch(switch) => {
                    Node::Switch { chooser: switch.chooser, branches: flows(&switch.branches) }
                }
            }
        });
        Self(nodes.collect())
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Node] {
        &self.0
    }

    /// Whether the flow is only stage steps (a pipeline).
    pub fn is_linear(&self) -> bool {
        self.0.iter().all(|node| matches!(node, Node::Stage { .. }))
    }
}

/// Where one task is in its flow: a stack of (flow, position), the innermost last. A switch
/// pushes its branch; a flow whose steps are all done is popped, and the task goes on in the
/// flow around it.
#[derive(Debug, Clone)]
pub struct Cursor {
    frames: Vec<(Flow, usize)>,
}

impl Cursor {
    /// A cursor at the first step of `flow`.
    pub fn new(flow: Flow) -> Self {
        Self { frames: vec![(flow, 0)] }
    }

    /// The step the task is at; `None` once its whole flow is done.
    pub fn current(&mut self) -> Option<Node> {
        while let Some((flow, position)) = self.frames.last() {
            if let Some(node) = flow.steps().get(*position) {
                return Some(node.clone());
            }
            self.frames.pop();
        }
        None
    }

    /// Moves past the current step.
    pub fn advance(&mut self) {
        if let Some((_, position)) = self.frames.last_mut() {
            *position += 1;
        }
    }

    /// Moves past the current step (a switch) into `branch`: the task runs the branch, then
    /// the step after the switch.
    pub fn enter(&mut self, branch: Flow) {
        self.advance();
        self.frames.push((branch, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnsembleStep, SwitchStep};

    fn stage(node: Option<Node>) -> (usize, bool) {
        match node {
            Some(Node::Stage { stage, egress }) => (stage, egress),
            other => panic!("not a stage: {other:?}"),
        }
    }

    #[test]
    fn a_linear_flow_is_a_pipeline_with_its_last_stage_egress() {
        let flow = Flow::linear(&[4, 5, 6]);
        assert!(flow.is_linear());
        let mut cursor = Cursor::new(flow);
        for expected in [(4, false), (5, false), (6, true)] {
            assert_eq!(stage(cursor.current()), expected);
            cursor.advance();
        }
        assert_eq!(cursor.current(), None);
    }

    #[test]
    fn egress_reaches_the_last_stages_of_final_members_and_branches() {
        let ensemble =
            |members: Vec<Vec<Step>>| Step::Ensemble(EnsembleStep { members, fail_fast: false });
        let switch = |chooser, branches| Step::Switch(SwitchStep { chooser, branches });
        let inner = ensemble(vec![vec![Step::Stage(1), Step::Stage(2)], vec![Step::Stage(3)]]);
        let flow =
            Flow::compile(&[switch(0, vec![vec![inner.clone()], vec![Step::Stage(4)]]), inner]);
        assert!(!flow.is_linear());
        let Node::Switch { branches, .. } = &flow.steps()[0] else { panic!() };
        // Not final: the switch is followed by another step.
        let Node::Ensemble { members, .. } = &branches[0].steps()[0] else { panic!() };
        assert_eq!(members[0].steps()[1], Node::Stage { stage: 2, egress: false });
        assert_eq!(branches[1].steps()[0], Node::Stage { stage: 4, egress: false });
        // Final: each member's last stage, and only that one.
        let Node::Ensemble { members, .. } = &flow.steps()[1] else { panic!() };
        assert_eq!(members[0].steps()[0], Node::Stage { stage: 1, egress: false });
        assert_eq!(members[0].steps()[1], Node::Stage { stage: 2, egress: true });
        assert_eq!(members[1].steps()[0], Node::Stage { stage: 3, egress: true });
    }

    #[test]
    fn a_branch_runs_then_the_step_after_its_switch() {
        let flow = Flow::compile(&[
            Step::Switch(SwitchStep {
                chooser: 0,
                branches: vec![vec![Step::Stage(1)], vec![Step::Stage(2), Step::Stage(3)]],
            }),
            Step::Stage(9),
        ]);
        let mut cursor = Cursor::new(flow);
        let Some(Node::Switch { chooser: 0, branches }) = cursor.current() else { panic!() };
        cursor.enter(branches[1].clone());
        assert_eq!(stage(cursor.current()), (2, false));
        cursor.advance();
        assert_eq!(stage(cursor.current()), (3, false));
        cursor.advance();
        assert_eq!(stage(cursor.current()), (9, true));
        cursor.advance();
        assert_eq!(cursor.current(), None);
    }
}
