//! Small helpers: reading tensors back without blocking (the browser cannot block; natively
//! `block_on` drives the same futures), atomic directory writes.

use burn::tensor::Tensor;

/// A tensor's values on the host, awaited (never blocks the browser's thread).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> crate::error::Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(|e| crate::error::Error::Device(format!("readback: {e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| crate::error::Error::Device(format!("readback: {e:?}")))
}

/// Runs a future to completion on this thread (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

#[cfg(not(target_arch = "wasm32"))]
use crate::error::{Error, Result};

/// Writes `files` into `dir` so that `dir` either appears complete or not at all: everything
/// goes to a sibling temp directory that is renamed into place (an old `dir` is replaced).
#[cfg(not(target_arch = "wasm32"))]
pub fn write_dir_atomic(dir: &std::path::Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    for (f, bytes) in files {
        let p = tmp.join(f);
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
    }
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
