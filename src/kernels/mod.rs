//! Our own GPU kernels. The frozen base of a quantized GGUF stays in its block format on the
//! device and is dequantized inside WGSL matmul / gather kernels (`shaders/`), in the forward
//! and in the input-gradient of the backward, so an 8B Q4_K_M model needs ~4.7 GB instead of
//! ~32 GB of f32. On the CPU backend the same layers use the reference twin: the CPU
//! dequantizer (`gguf::quant`) and a plain matmul.
//!
//! The CPU backend has its own fused element-wise ops (`cpu_ops`, row kernels in `cpu`): one
//! pass per op with a hand-written backward instead of burn's chain of single ops.

pub mod autodiff;
pub mod cpu;
pub mod cpu_ops;
pub mod layout;
pub mod ops;
pub mod quant_weight;

pub use layout::QuantType;
pub use quant_weight::QuantWeight;

/// A WGSL source from `shaders/` by file stem. Embedded at compile time so the browser build
/// carries them too.
pub fn shader(name: &str) -> &'static str {
    match name {
        "quant_matmul" => include_str!("../../shaders/quant_matmul.wgsl"),
        "quant_gather" => include_str!("../../shaders/quant_gather.wgsl"),
        "dequant_q8_0" => include_str!("../../shaders/dequant_q8_0.wgsl"),
        "dequant_q4_0" => include_str!("../../shaders/dequant_q4_0.wgsl"),
        "dequant_q4_1" => include_str!("../../shaders/dequant_q4_1.wgsl"),
        "dequant_q4_k" => include_str!("../../shaders/dequant_q4_k.wgsl"),
        "dequant_q6_k" => include_str!("../../shaders/dequant_q6_k.wgsl"),
        _ => panic!("no shader named `{name}` in shaders/"),
    }
}

/// Whether `device` runs our WGSL kernels (a CubeCL runtime: wgpu natively or WebGPU).
pub fn supports_kernels(device: &burn::tensor::Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        burn::backend::DispatchDevice::Cube(_)
    )
}
