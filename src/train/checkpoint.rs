//! Checkpoints as bytes: the adapter (PEFT keys), AdamW moments, the best adapter so far, and
//! `state.json` (progress, optimizer step, the run's config). Written by the caller with
//! `util::write_dir_atomic`, so a kill mid-write leaves the previous checkpoint intact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::trainer::{Checkpoint, Progress};
use crate::error::{Error, Result};
use crate::export::peft::{from_safetensors, to_safetensors};

#[derive(Serialize, Deserialize)]
struct State {
    progress: Progress,
    optimizer_step: u64,
    config: TrainConfig,
}

/// The files of a checkpoint directory.
pub fn to_files(ck: &Checkpoint, cfg: &TrainConfig) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut moments = BTreeMap::new();
    for (i, (m, v)) in ck.moments.iter().enumerate() {
        moments.insert(format!("m.{i:05}"), (vec![m.len()], m.clone()));
        moments.insert(format!("v.{i:05}"), (vec![v.len()], v.clone()));
    }
    let state = State {
        progress: ck.progress.clone(),
        optimizer_step: ck.optimizer_step,
        config: cfg.clone(),
    };
    let mut files = vec![
        ("adapter_model.safetensors", to_safetensors(&ck.adapter)?),
        ("optimizer.safetensors", to_safetensors(&moments)?),
        (
            "state.json",
            serde_json::to_vec_pretty(&state).map_err(|e| Error::Config(e.to_string()))?,
        ),
    ];
    if let Some(best) = &ck.best_adapter {
        files.push(("best_adapter.safetensors", to_safetensors(best)?));
    }
    Ok(files)
}

/// Reads a checkpoint back; `read(name)` returns a file's bytes or `None` if absent.
pub fn from_files(
    dir: &str,
    read: impl Fn(&str) -> Result<Option<Vec<u8>>>,
) -> Result<(Checkpoint, TrainConfig)> {
    let need = |name: &str| -> Result<Vec<u8>> {
        read(name)?.ok_or_else(|| Error::Checkpoint {
            path: dir.into(),
            reason: format!("{name} is missing; not a checkpoint"),
        })
    };
    let state: State =
        serde_json::from_slice(&need("state.json")?).map_err(|e| Error::Checkpoint {
            path: format!("{dir}/state.json"),
            reason: e.to_string(),
        })?;
    let adapter = from_safetensors(&need("adapter_model.safetensors")?, dir)?;
    let opt = from_safetensors(&need("optimizer.safetensors")?, dir)?;
    let n = opt.len() / 2;
    let mut moments = Vec::with_capacity(n);
    for i in 0..n {
        let get = |k: String| {
            opt.get(&k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| Error::tensor(k, "missing from optimizer.safetensors"))
        };
        moments.push((get(format!("m.{i:05}"))?, get(format!("v.{i:05}"))?));
    }
    let best_adapter = match read("best_adapter.safetensors")? {
        Some(b) => Some(from_safetensors(&b, dir)?),
        None => None,
    };
    Ok((
        Checkpoint {
            progress: state.progress,
            adapter,
            moments,
            optimizer_step: state.optimizer_step,
            best_adapter,
        },
        state.config,
    ))
}

/// Reads a checkpoint directory from disk.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &std::path::Path) -> Result<(Checkpoint, TrainConfig)> {
    from_files(&dir.display().to_string(), |name| {
        let p = dir.join(name);
        if !p.exists() {
            return Ok(None);
        }
        std::fs::read(&p).map(Some).map_err(|e| Error::io(&p, e))
    })
}
