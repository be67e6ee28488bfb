//! What a tool call costs: an episode's first python step (its interpreter started inside
//! the boundary: what every step would cost without a kept interpreter), a later step on the
//! interpreter the episode keeps, and the built-in calculator.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::python::{PythonOptions, PythonTool, Sandbox};
use crate::tool::{CalcTool, Tool};

/// What [`tools`] measured, in seconds (medians over the calls).
#[derive(Debug, Clone, Serialize)]
pub struct ToolReport {
    /// The boundary the python tool ran in.
    pub sandbox: String,
    /// Calls measured of each kind.
    pub calls: usize,
    /// An episode's first python step: the interpreter started inside the boundary, then
    /// the step (what each step would cost on a fresh interpreter).
    pub python_first_step_s: f64,
    /// A later step of the same episode, on the interpreter it keeps.
    pub python_kept_step_s: f64,
    /// A calculator step (in process).
    pub calc_step_s: f64,
}

/// The step every measurement runs: a little arithmetic and a print, as an agent's step.
const STEP: &str = "x = sum(range(100))\nprint(x)";

fn median(mut xs: Vec<Duration>) -> f64 {
    xs.sort();
    xs.get(xs.len() / 2).map_or(0.0, Duration::as_secs_f64)
}

/// Why the tool benchmark could not time its steps.
#[derive(Debug, thiserror::Error)]
pub enum ToolBenchError {
    /// The python tool could not start.
    #[error(transparent)]
    Start(#[from] crate::python::PythonError),
    /// A timed step did not give the expected answer.
    #[error("the step failed: {observation}")]
    Step {
        /// What the tool answered.
        observation: String,
    },
}

/// Time `calls` steps of each kind with the python tool in `sandbox`.
pub fn tools(sandbox: Sandbox, calls: usize) -> Result<ToolReport, ToolBenchError> {
    let options = PythonOptions {
        sandbox,
        ..PythonOptions::default()
    };
    let step = |tool: &mut dyn Tool| -> Result<Duration, ToolBenchError> {
        let t = Instant::now();
        let out = tool.execute(STEP);
        let took = t.elapsed();
        if out.failed || out.observation.trim() != "4950" {
            return Err(ToolBenchError::Step {
                observation: out.observation,
            });
        }
        Ok(took)
    };
    let first = (0..calls)
        .map(|_| step(&mut PythonTool::new(options.clone())?))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tool = PythonTool::new(options.clone())?;
    step(&mut tool)?;
    let kept = (0..calls)
        .map(|_| step(&mut tool))
        .collect::<Result<Vec<_>, _>>()?;
    let mut calc = CalcTool;
    let calc_times = (0..calls)
        .map(|_| {
            let t = Instant::now();
            let _ = calc.execute("4950 + 0");
            t.elapsed()
        })
        .collect();
    Ok(ToolReport {
        sandbox: format!("{sandbox:?}").to_lowercase(),
        calls,
        python_first_step_s: median(first),
        python_kept_step_s: median(kept),
        calc_step_s: median(calc_times),
    })
}
