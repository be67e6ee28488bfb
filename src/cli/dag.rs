//! `scorch dag`: the workflow's DAG as Mermaid or Graphviz text (the report draws it too).

use scorch_engine::workflow::Workflow;

use super::DagFormat;

pub(super) fn draw(wf: &Workflow, format: DagFormat) -> String {
    let graph = wf.graph();
    match format {
        DagFormat::Mermaid => graph.mermaid(),
        DagFormat::Dot => graph.dot(&wf.name),
    }
}
