include!("build/torch_rpath.rs");

fn main() {
    // Only the worker links libtorch; `scorch` itself must not load it (it starts in
    // milliseconds). Tests and examples may use tch directly.
    link_torch(&["-bin=scorch-worker", "-tests", "-examples"]);
}
