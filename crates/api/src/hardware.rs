//! What a node's `auto` settings (`device: auto`, `precision: auto`) resolve to.
//!
//! A cache key must say what ran. A param left to the machine would give one key to two
//! computations (CUDA in bfloat16 on one machine, the CPU in float32 on another), and a store
//! shared between them (S3, a Slurm cluster) would hand one's result to the other as a hit.
//! So the engine settles such params before it computes a key
//! ([`Declaration::settle`](crate::Declaration::settle)), for the [`Hardware`] the node will
//! run on, and the plugin runs with the settled params: the key covers the resolved device
//! and precision, and a node whose settled device is missing where it runs fails with a
//! message instead of computing something else under the key.

/// The environment variable that fixes what `device: auto` resolves to on this machine
/// (`cpu` or `cuda`), instead of looking for a GPU.
pub const AUTO_DEVICE_ENV: &str = "SCORCH_AUTO_DEVICE";

/// The class of machine a node runs on, as far as its `auto` params care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardware {
    /// Whether a CUDA device is there.
    pub cuda: bool,
}

/// `SCORCH_AUTO_DEVICE` names no device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCORCH_AUTO_DEVICE=`{value}`: expected `cpu` or `cuda` (what `device: auto` means here)")]
pub struct UnknownDevice {
    /// What it says.
    pub value: String,
}

impl Hardware {
    /// A machine without a GPU.
    pub const CPU: Self = Self { cuda: false };
    /// A machine with a CUDA device.
    pub const CUDA: Self = Self { cuda: true };

    /// This machine: [`AUTO_DEVICE_ENV`] when set, else whether the NVIDIA driver shows a
    /// device (`/dev/nvidia0`, …) that `CUDA_VISIBLE_DEVICES` does not hide. Reading files
    /// keeps this free of libtorch; a node whose key says `cuda` checks again when it runs.
    pub fn probe() -> Result<Self, UnknownDevice> {
        match std::env::var(AUTO_DEVICE_ENV) {
            Ok(v) => Self::named(&v).ok_or(UnknownDevice { value: v }),
            Err(_) => Ok(Self {
                cuda: nvidia_device_present()
                    && !cuda_hidden(std::env::var("CUDA_VISIBLE_DEVICES").ok()),
            }),
        }
    }

    /// `cpu` or `cuda`.
    pub fn named(name: &str) -> Option<Self> {
        match name.trim() {
            "cpu" => Some(Self::CPU),
            "cuda" => Some(Self::CUDA),
            _ => None,
        }
    }

    /// The device that `auto` means here: `cuda` or `cpu`.
    pub fn device(self) -> &'static str {
        if self.cuda { "cuda" } else { "cpu" }
    }
}

fn nvidia_device_present() -> bool {
    std::fs::read_dir("/dev").is_ok_and(|dir| {
        dir.flatten().any(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("nvidia"))
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

/// Whether `CUDA_VISIBLE_DEVICES` hides every device (set to nothing, or to `-1`).
fn cuda_hidden(visible: Option<String>) -> bool {
    visible.is_some_and(|v| {
        let v = v.trim();
        v.is_empty() || v.starts_with("-1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hidden_devices() {
        assert_eq!(Hardware::named("cuda"), Some(Hardware::CUDA));
        assert_eq!(Hardware::named(" cpu\n"), Some(Hardware::CPU));
        assert_eq!(Hardware::named("gpu"), None);
        assert_eq!(Hardware::CUDA.device(), "cuda");
        assert!(cuda_hidden(Some(String::new())));
        assert!(cuda_hidden(Some("-1".into())));
        assert!(!cuda_hidden(Some("0,1".into())));
        assert!(!cuda_hidden(None));
    }
}
