//! Getting a device (kept apart from using one, so tests and the browser can inject theirs):
//! `auto` takes wgpu's best hardware adapter and falls back to the CPU backend (`flex`) when
//! there is none — a software Vulkan (llvmpipe) is slower than `flex`, so `auto` skips it; ask
//! for `vulkan` explicitly to use it.

use burn::tensor::Device;
#[cfg(not(target_arch = "wasm32"))]
use burn::tensor::wgpu::{WgpuBackend, wgpu};

#[cfg(not(target_arch = "wasm32"))]
use crate::error::{Error, Result};

/// What the user asked for (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Cpu,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "vulkan" => Self::Vulkan,
            "metal" => Self::Metal,
            "dx12" => Self::Dx12,
            "cpu" => Self::Cpu,
            _ => {
                return Err(format!(
                    "unknown device `{s}` (auto, vulkan, metal, dx12, cpu)"
                ));
            }
        })
    }
}

/// An opened device and how to describe it.
#[derive(Clone)]
pub struct OpenedDevice {
    pub device: Device,
    /// e.g. `wgpu/Vulkan: llvmpipe (LLVM 15.0.6, 256 bits) [Cpu]` or `cpu (flex)`.
    pub description: String,
    /// True for a GPU backend (wgpu), false for the CPU backend.
    pub is_gpu: bool,
    /// Largest buffer one kernel may bind, in bytes: the adapter's
    /// min(maxStorageBufferBindingSize, maxBufferSize), which burn requests in full.
    pub max_binding: usize,
}

/// The CPU backend.
pub fn cpu() -> OpenedDevice {
    OpenedDevice {
        device: Device::flex(),
        description: "cpu (burn flex)".into(),
        is_gpu: false,
        max_binding: usize::MAX,
    }
}

/// Adapters wgpu can see for `backends`: (name, device type, backend).
#[cfg(not(target_arch = "wasm32"))]
pub fn adapters(backends: wgpu::Backends) -> Vec<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .map(|a| a.get_info())
        .collect()
}

/// Opens the device the user asked for. `log` receives human-readable notes (fallbacks).
#[cfg(not(target_arch = "wasm32"))]
pub fn open(choice: DeviceChoice, mut log: impl FnMut(&str)) -> Result<OpenedDevice> {
    let (api, backends) = match choice {
        DeviceChoice::Cpu => return Ok(cpu()),
        DeviceChoice::Vulkan => (WgpuBackend::Vulkan, wgpu::Backends::VULKAN),
        DeviceChoice::Metal => (WgpuBackend::Metal, wgpu::Backends::METAL),
        DeviceChoice::Dx12 => (WgpuBackend::Dx12, wgpu::Backends::DX12),
        DeviceChoice::Auto => {
            let hw = adapters(wgpu::Backends::PRIMARY)
                .into_iter()
                .filter(|a| a.device_type != wgpu::DeviceType::Cpu)
                .min_by_key(|a| match a.device_type {
                    wgpu::DeviceType::DiscreteGpu => 0,
                    wgpu::DeviceType::IntegratedGpu => 1,
                    _ => 2,
                });
            let Some(info) = hw else {
                log(
                    "no hardware GPU adapter found (only software or none); using the CPU backend. \
                     Pass --device vulkan to use a software Vulkan adapter anyway.",
                );
                return Ok(cpu());
            };
            let api = match info.backend {
                wgpu::Backend::Metal => WgpuBackend::Metal,
                wgpu::Backend::Dx12 => WgpuBackend::Dx12,
                _ => WgpuBackend::Vulkan,
            };
            (api, wgpu::Backends::from(info.backend))
        }
    };
    let found = adapters(backends);
    let Some(info) = found.first() else {
        return Err(Error::Device(format!(
            "no {choice:?} adapter found. On Linux without a GPU install Mesa's lavapipe \
             (`apt-get install mesa-vulkan-drivers`), or use --device cpu"
        )));
    };
    // burn initialises a wgpu runtime once per process; later opens reuse it.
    static OPENED: std::sync::Mutex<Vec<(wgpu::Backend, OpenedDevice)>> =
        std::sync::Mutex::new(Vec::new());
    let mut opened = OPENED
        .lock()
        .map_err(|_| Error::Device("device registry poisoned".into()))?;
    if let Some((_, d)) = opened.iter().find(|(b, _)| *b == info.backend) {
        return Ok(d.clone());
    }
    let max_binding = pollster::block_on(
        wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        })
        .enumerate_adapters(backends),
    )
    .first()
    .map_or(128 << 20, |a| {
        let l = a.limits();
        l.max_storage_buffer_binding_size.min(l.max_buffer_size) as usize
    });
    let device = Device::wgpu_options()
        .graphics_api(api)
        .init()
        .map_err(|e| Error::Device(format!("{choice:?}: {e}")))?;
    let d = OpenedDevice {
        device,
        description: format!(
            "wgpu/{:?}: {} [{:?}]",
            info.backend, info.name, info.device_type
        ),
        is_gpu: true,
        max_binding,
    };
    opened.push((info.backend, d.clone()));
    Ok(d)
}
