//! The params that every kind running agent episodes shares (rollout, eval, correct, rl):
//! the turn limit, the device and the python tool's boundary, declared once.

/// Declare a params struct with the episode fields appended: `turn_limit`, `device`,
/// `sandbox` and `tool_workers`, with one doc, default and serialisation each. (A flattened struct would say
/// it more plainly, but serde cannot combine `flatten` with `deny_unknown_fields`.)
macro_rules! episode_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($fields)*
            /// Most turns per episode (the plan included); unset, each task's own limit (a
            /// built-in task: its op count + 3; other suites: 8).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub turn_limit: Option<u32>,
            /// `auto`, `cpu` or `cuda`.
            #[serde(default = "crate::policy::default_device")]
            pub device: String,
            /// The python tool's boundary: `bwrap` (the default; where it cannot be set up,
            /// the tool refuses to run) or `none` (no boundary; the node records
            /// `python_unsandboxed`).
            #[serde(default, skip_serializing_if = "scorch_agent::python::Sandbox::is_default")]
            pub sandbox: scorch_agent::python::Sandbox,
            /// Tool calls run at once, each on a blocking thread (unset: the machine's cores;
            /// raise it for tools that wait rather than compute). It changes no result.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub tool_workers: Option<usize>,
        }
    };
}

pub(crate) use episode_params;
