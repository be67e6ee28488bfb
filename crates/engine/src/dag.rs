//! Graph algorithms over node indices: topological order, cycles, reachability, drawings.

/// Kahn's algorithm, ties broken by declaration order. `Err` carries one cycle, in order.
pub fn topo_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut indegree = vec![0usize; n];
    let mut users = vec![Vec::new(); n];
    for (node, ds) in deps.iter().enumerate() {
        for &d in ds {
            indegree[node] += 1;
            users[d].push(node);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &u in &users[next] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() == n {
        Ok(order)
    } else {
        Err(find_cycle(deps, &indegree))
    }
}

/// A cycle among the nodes left with a positive in-degree, as `[a, b, c]` meaning a→b→c→a
/// in data-flow order (each feeds the next).
fn find_cycle(deps: &[Vec<usize>], indegree: &[usize]) -> Vec<usize> {
    // Walk backwards along dependencies inside the stuck set until a node repeats.
    let Some(start) = (0..deps.len()).find(|&i| indegree[i] > 0) else {
        return Vec::new();
    };
    let mut seen = vec![usize::MAX; deps.len()];
    let mut path = Vec::new();
    let mut cur = start;
    loop {
        if seen[cur] != usize::MAX {
            let mut cycle = path[seen[cur]..].to_vec();
            cycle.reverse();
            return cycle;
        }
        seen[cur] = path.len();
        path.push(cur);
        match deps[cur].iter().copied().find(|&d| indegree[d] > 0) {
            Some(d) => cur = d,
            None => return Vec::new(),
        }
    }
}

/// `roots` and every node that depends on them, transitively.
pub fn descendants(deps: &[Vec<usize>], roots: &[usize]) -> Vec<bool> {
    let mut users = vec![Vec::new(); deps.len()];
    for (node, ds) in deps.iter().enumerate() {
        for &d in ds {
            users[d].push(node);
        }
    }
    let mut mark = vec![false; deps.len()];
    let mut stack: Vec<usize> = roots.to_vec();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut mark[n], true) {
            stack.extend(users[n].iter().copied());
        }
    }
    mark
}

/// `roots` and every node they depend on, transitively.
pub fn ancestors(deps: &[Vec<usize>], roots: &[usize]) -> Vec<bool> {
    let mut mark = vec![false; deps.len()];
    let mut stack: Vec<usize> = roots.to_vec();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut mark[n], true) {
            stack.extend(deps[n].iter().copied());
        }
    }
    mark
}

/// A workflow's graph as data: what drawings, reports and comparisons read (the scheduler
/// walks [`crate::workflow::Workflow::deps`]). Built by
/// [`crate::workflow::Workflow::graph`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// `(id, kind)` per node, in workflow (topological) order.
    pub nodes: Vec<(String, String)>,
    /// Per node: `(producer index, producer's output, this node's input)`.
    pub inputs: Vec<Vec<(usize, String, String)>>,
}

type NodeLine = fn(usize, &str, &str) -> String;
type EdgeLine = fn(usize, usize, &str) -> String;

impl Graph {
    /// Every edge as `(producer, consumer, producer's output)`, consumers in order.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize, &str)> {
        self.inputs.iter().enumerate().flat_map(|(to, ins)| {
            ins.iter()
                .map(move |(from, output, _)| (*from, to, output.as_str()))
        })
    }

    /// The graph as a Mermaid flowchart.
    pub fn mermaid(&self) -> String {
        self.draw(
            "flowchart TD\n".into(),
            |i, id, kind| format!("  n{i}[\"{id}<br/><i>{kind}</i>\"]\n"),
            |from, to, output| format!("  n{from} -->|{output}| n{to}\n"),
            "",
        )
    }

    /// The graph in Graphviz's dot language, named `name`.
    pub fn dot(&self, name: &str) -> String {
        self.draw(
            format!("digraph \"{}\" {{\n  rankdir=TB;\n", name.replace('"', "'")),
            |i, id, kind| format!("  n{i} [label=\"{id}\\n({kind})\", shape=box];\n"),
            |from, to, output| format!("  n{from} -> n{to} [label=\"{output}\"];\n"),
            "}\n",
        )
    }

    /// One walk over nodes and edges; the format only decides how each line looks.
    fn draw(&self, header: String, node: NodeLine, edge: EdgeLine, footer: &str) -> String {
        let mut out = header;
        for (i, (id, kind)) in self.nodes.iter().enumerate() {
            out.push_str(&node(i, &id.replace('"', "'"), kind));
        }
        for (from, to, output) in self.edges() {
            out.push_str(&edge(from, to, output));
        }
        out.push_str(footer);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_dependencies_then_declaration() {
        // 0 <- 2, 1 <- 2 ; 3 independent
        assert_eq!(
            topo_order(&[vec![], vec![], vec![0, 1], vec![]]),
            Ok(vec![0, 1, 2, 3])
        );
        assert_eq!(topo_order(&[vec![1], vec![]]), Ok(vec![1, 0]));
    }

    #[test]
    fn reports_a_cycle_in_flow_order() {
        // 0 feeds 1, 1 feeds 2, 2 feeds 0; 3 depends on the cycle.
        let deps = vec![vec![2], vec![0], vec![1], vec![2]];
        let cycle = topo_order(&deps).unwrap_err();
        assert_eq!(cycle.len(), 3);
        for w in 0..3 {
            let (a, b) = (cycle[w], cycle[(w + 1) % 3]);
            assert!(deps[b].contains(&a), "{a} must feed {b} in {cycle:?}");
        }
        assert_eq!(topo_order(&[vec![0]]).unwrap_err(), vec![0]);
    }

    #[test]
    fn a_graph_draws_every_node_and_edge_in_both_formats() {
        let g = Graph {
            nodes: vec![
                ("nums".into(), "numbers".into()),
                ("say \"hi\"".into(), "total".into()),
            ],
            inputs: vec![vec![], vec![(0, "table".into(), "table".into())]],
        };
        assert_eq!(g.edges().collect::<Vec<_>>(), vec![(0, 1, "table")]);
        let m = g.mermaid();
        assert!(m.starts_with("flowchart TD\n"));
        assert!(m.contains("n0[\"nums<br/><i>numbers</i>\"]"));
        assert!(m.contains("n0 -->|table| n1"));
        assert!(m.contains("say 'hi'"), "{m}");
        let d = g.dot("w\"f");
        assert!(d.starts_with("digraph \"w'f\" {"));
        assert!(d.contains("n0 -> n1 [label=\"table\"];"));
        assert!(d.trim_end().ends_with('}'));
    }

    #[test]
    fn descendants_follow_users() {
        let deps = vec![vec![], vec![0], vec![1], vec![]];
        assert_eq!(descendants(&deps, &[1]), vec![false, true, true, false]);
    }
}
