//! How a trajectory becomes what a student trains on: its chat's turns, each marked with
//! whether it carries loss (the policy's own well-formed steps; never the system prompt, the
//! question or an observation), as token ids and a loss mask, or as the text a from-scratch
//! tokenizer learns from.

use scorch_agent::format::{Role, render_observation, render_step};
use scorch_tables::{Step, Trajectory};

use crate::ModelError;
use scorch_spec::student::ChatFormat;

use crate::chat::{ChatFormatExt, Turn};
use crate::spec::system_for;

/// The turns of a trajectory's chat, each with whether it carries loss: the system prompt,
/// the question, then each step (loss unless malformed or `scored(i, step)` says no) and its
/// observation.
fn turns_of(t: &Trajectory, scored: impl Fn(usize, &Step) -> bool) -> Vec<(Role, String, bool)> {
    let mut turns = vec![
        (Role::System, system_for(&t.task_id).to_owned(), false),
        (Role::User, t.question.clone(), false),
    ];
    for (i, s) in t.steps.iter().enumerate() {
        turns.push((
            Role::Assistant,
            render_step(s),
            !s.malformed && scored(i, s),
        ));
        if let Some(o) = &s.observation {
            turns.push((Role::User, render_observation(o), false));
        }
    }
    turns
}

/// The text a from-scratch tokenizer trains on for a trajectory.
pub fn chat_text(format: ChatFormat, t: &Trajectory) -> String {
    let turns = turns_of(t, |_, _| true);
    let turns: Vec<Turn<'_>> = turns
        .iter()
        .map(|(role, content, _)| Turn {
            role: role.as_str(),
            content,
        })
        .collect();
    format.training_text(&turns)
}

/// Token ids and loss mask of a trajectory in `format`.
pub fn encode_trajectory(
    tk: &tokenizers::Tokenizer,
    format: ChatFormat,
    t: &Trajectory,
) -> Result<(Vec<i64>, Vec<f32>), ModelError> {
    encode_trajectory_from(tk, format, t, 0)
}

/// Like [`encode_trajectory`], with the loss only on the steps after the first `start`.
pub fn encode_trajectory_from(
    tk: &tokenizers::Tokenizer,
    format: ChatFormat,
    t: &Trajectory,
    start: usize,
) -> Result<(Vec<i64>, Vec<f32>), ModelError> {
    encode_trajectory_where(tk, format, t, |i, _| i >= start)
}

/// Like [`encode_trajectory`], with the loss only on the steps that `scored(index, step)`
/// accepts (as SFT on DAgger's labels scores only the teacher's steps).
pub fn encode_trajectory_where(
    tk: &tokenizers::Tokenizer,
    format: ChatFormat,
    t: &Trajectory,
    scored: impl Fn(usize, &Step) -> bool,
) -> Result<(Vec<i64>, Vec<f32>), ModelError> {
    // Encode turn by turn so that a malformed assistant turn can be masked out.
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for (role, content, keep) in turns_of(t, scored) {
        let turn = Turn {
            role: role.as_str(),
            content: &content,
        };
        let (i, m) = format.encode(tk, std::slice::from_ref(&turn), false)?;
        ids.extend(i);
        mask.extend(m.into_iter().map(|x| if keep { x } else { 0.0 }));
    }
    Ok((ids, mask))
}
