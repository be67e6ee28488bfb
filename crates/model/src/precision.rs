//! What a [`Precision`] means on a device: the kind the matrix products run in, and whether
//! the hardware has bfloat16 instructions (what the benchmarks report).

use scorch_spec::student::Precision;
use tch::{Device, Kind};

/// The compute kind of a precision on a device.
pub trait ComputeKind {
    /// The kind that the matrix products run in on `device`.
    fn compute_kind(self, device: Device) -> Kind;
}

impl ComputeKind for Precision {
    fn compute_kind(self, device: Device) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::Bf16 => Kind::BFloat16,
            // What `Precision::settle` gives: the engine settles `auto` before a node runs;
            // this is the same rule for a caller that did not.
            Self::Auto if device.is_cuda() => Kind::BFloat16,
            Self::Auto => Kind::Float,
        }
    }
}

/// Whether `device` runs bfloat16 matrix products natively: every CUDA device scorch supports,
/// and a CPU whose flags list `avx512_bf16` or `amx_bf16`.
pub fn native_bf16(device: Device) -> bool {
    match device {
        Device::Cpu => cpu_has_bf16(),
        _ => true,
    }
}

fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| cpu_flags_have_bf16(&info))
}

fn cpu_flags_have_bf16(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .take(1)
        .flat_map(|l| l.split_whitespace())
        .any(|f| f == "avx512_bf16" || f == "amx_bf16")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_bf16_on_cuda_and_f32_on_every_cpu() {
        assert!(cpu_flags_have_bf16(
            "processor : 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 sha_ni\n"
        ));
        assert!(cpu_flags_have_bf16("flags : fpu amx_bf16 amx_tile\n"));
        assert!(!cpu_flags_have_bf16("flags : fpu avx2 fma avx512f\n"));
        assert!(!cpu_flags_have_bf16("model name : bf16 avx512_bf16\n"));
        assert_eq!(Precision::F32.compute_kind(Device::Cuda(0)), Kind::Float);
        assert_eq!(Precision::Bf16.compute_kind(Device::Cpu), Kind::BFloat16);
        assert_eq!(
            Precision::Auto.compute_kind(Device::Cuda(0)),
            Kind::BFloat16
        );
        assert_eq!(Precision::Auto.compute_kind(Device::Cpu), Kind::Float);
        let mut p = Precision::Auto;
        p.settle("cpu");
        assert_eq!(p, Precision::F32);
        let mut p = Precision::Auto;
        p.settle("cuda");
        assert_eq!(p, Precision::Bf16);
    }

    #[test]
    fn spelled_in_lowercase_with_auto_left_out() {
        let p: Precision = serde_json::from_str("\"bf16\"").unwrap_or_default();
        assert_eq!(p, Precision::Bf16);
        assert!(serde_json::from_str::<Precision>("\"fp16\"").is_err());
        assert!(Precision::default().is_auto());
    }
}
