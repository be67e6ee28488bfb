include!("../../build/torch_rpath.rs");

fn main() {
    link_torch(&[""]);
}
