//! PEFT adapter format: `adapter_config.json` + `adapter_model.safetensors` with keys
//! `base_model.model.{module}.lora_A.weight` [r, in] and `...lora_B.weight` [out, r]
//! (PEFT strips the `.default` adapter name on save; we accept both on load). What we write,
//! `PeftModel.from_pretrained` loads unchanged; what PEFT wrote, we load.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};
use serde_json::json;

use crate::error::{Error, Result};
use crate::model::Llama;
use crate::model::lora::{LoraAdapter, LoraConfig, trainable};
use crate::weights::safetensors::view_to_f32;

const PREFIX: &str = "base_model.model.";

/// Host copy of every adapter tensor: PEFT key -> (shape, values).
pub type AdapterTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

async fn to_host(t: &burn::tensor::Tensor<2>) -> Result<(Vec<usize>, Vec<f32>)> {
    let shape = t.dims().to_vec();
    Ok((shape, crate::util::read_f32(t.clone().inner()).await?))
}

/// Reads every adapter tensor back to the host under its PEFT key.
pub async fn adapter_tensors_async(model: &Llama) -> Result<AdapterTensors> {
    let mut out = BTreeMap::new();
    for (module, a) in model.adapters() {
        out.insert(
            format!("{PREFIX}{module}.lora_A.weight"),
            to_host(&a.a).await?,
        );
        out.insert(
            format!("{PREFIX}{module}.lora_B.weight"),
            to_host(&a.b).await?,
        );
    }
    Ok(out)
}

/// `adapter_tensors_async`, blocking (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn adapter_tensors(model: &Llama) -> Result<AdapterTensors> {
    crate::util::block_on(adapter_tensors_async(model))
}

/// Sets every adapter of `model` to the values in `t` (same keys as `adapter_tensors`).
pub fn restore(model: &mut Llama, t: &AdapterTensors) -> Result<()> {
    let device = model.device.clone();
    for (module, lin) in model.linears_mut() {
        let Some(a) = lin.lora.as_mut() else { continue };
        for (which, slot) in [("lora_A", &mut a.a), ("lora_B", &mut a.b)] {
            let key = format!("{PREFIX}{module}.{which}.weight");
            let (shape, v) = t
                .get(&key)
                .ok_or_else(|| Error::tensor(&key, "missing from the checkpoint"))?;
            if shape[..] != slot.dims()[..] {
                return Err(Error::tensor(
                    &key,
                    format!("shape {shape:?}, expected {:?}", slot.dims()),
                ));
            }
            *slot = trainable(v.clone(), [shape[0], shape[1]], &device);
        }
    }
    Ok(())
}

/// Parses safetensors bytes into host tensors (any F32/F16/BF16 keys).
pub fn from_safetensors(bytes: &[u8], path: &str) -> Result<AdapterTensors> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Checkpoint {
        path: path.into(),
        reason: e.to_string(),
    })?;
    st.iter()
        .map(|(k, v)| {
            Ok((
                k.to_string(),
                (v.shape().to_vec(), view_to_f32(k, v.dtype(), v.data())?),
            ))
        })
        .collect()
}

/// Serializes tensors as safetensors bytes (f32).
pub fn to_safetensors(tensors: &AdapterTensors) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, v))| {
            (
                k.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, s, b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::tensor(k, e.to_string()))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::tensor("adapter", e.to_string()))
}

/// `adapter_config.json` for `cfg`.
pub fn config_json(cfg: &LoraConfig, base_model: &str) -> String {
    let v = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "use_rslora": cfg.rslora,
        "target_modules": cfg.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Reads `adapter_config.json` text into a LoRA config.
pub fn parse_config(text: &str, path: &str) -> Result<LoraConfig> {
    let err = |r: String| Error::Checkpoint {
        path: path.into(),
        reason: r,
    };
    let j: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err(format!("invalid JSON: {e}")))?;
    if j["peft_type"] != "LORA" {
        return Err(err(format!(
            "peft_type is {}, only LORA is supported",
            j["peft_type"]
        )));
    }
    if j["use_dora"] == true {
        return Err(err("DoRA adapters are not supported".into()));
    }
    let rank = j["r"].as_u64().ok_or_else(|| err("`r` missing".into()))? as usize;
    let targets = match &j["target_modules"] {
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        serde_json::Value::String(s) => vec![s.clone()],
        _ => return Err(err("`target_modules` missing".into())),
    };
    Ok(LoraConfig {
        rank,
        alpha: j["lora_alpha"].as_f64().unwrap_or(rank as f64),
        dropout: j["lora_dropout"].as_f64().unwrap_or(0.0),
        rslora: j["use_rslora"].as_bool().unwrap_or(false),
        targets,
        seed: 0,
    })
}

/// Puts the adapter from safetensors `bytes` (PEFT keys) onto `model`'s targeted layers.
pub fn load_into(model: &mut Llama, cfg: &LoraConfig, bytes: &[u8], path: &str) -> Result<()> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Checkpoint {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let scale = LoraAdapter::scale(cfg.rank, cfg.alpha, cfg.rslora);
    let device = model.device.clone();
    let mut found = 0;
    for (module, lin) in model.linears_mut() {
        let get = |which: &str| -> Result<Option<(Vec<usize>, Vec<f32>)>> {
            for key in [
                format!("{PREFIX}{module}.{which}.weight"),
                format!("{PREFIX}{module}.{which}.default.weight"),
            ] {
                if let Ok(v) = st.tensor(&key) {
                    return Ok(Some((
                        v.shape().to_vec(),
                        view_to_f32(&key, v.dtype(), v.data())?,
                    )));
                }
            }
            Ok(None)
        };
        let (a, b) = (get("lora_A")?, get("lora_B")?);
        let ((sa, a), (sb, b)) = match (a, b) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => continue,
            _ => {
                return Err(Error::tensor(
                    module,
                    format!("{path}: has only one of lora_A / lora_B"),
                ));
            }
        };
        let [inp, out] = lin.dims();
        if sa != [cfg.rank, inp] || sb != [out, cfg.rank] {
            return Err(Error::tensor(
                module,
                format!(
                    "{path}: lora_A {sa:?} / lora_B {sb:?} do not fit a [{out}, {inp}] layer at rank {}",
                    cfg.rank
                ),
            ));
        }
        lin.lora = Some(LoraAdapter::from_host(
            a,
            b,
            inp,
            out,
            cfg.rank,
            scale,
            cfg.dropout,
            &device,
        ));
        found += 1;
    }
    if found == 0 {
        return Err(Error::Checkpoint {
            path: path.into(),
            reason: "no LoRA tensor matches this model's layers".into(),
        });
    }
    Ok(())
}

/// Loads a PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(model: &mut Llama, dir: &std::path::Path) -> Result<LoraConfig> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let cfg = parse_config(&text, &cfg_path.display().to_string())?;
    let st_path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| Error::io(&st_path, e))?;
    load_into(model, &cfg, &bytes, &st_path.display().to_string())?;
    Ok(cfg)
}

/// Writes a PEFT adapter directory atomically (temp dir, then rename).
#[cfg(not(target_arch = "wasm32"))]
pub fn save_dir(
    model: &Llama,
    cfg: &LoraConfig,
    base_model: &str,
    dir: &std::path::Path,
) -> Result<()> {
    let tensors = adapter_tensors(model)?;
    let files = [
        (
            "adapter_config.json",
            config_json(cfg, base_model).into_bytes(),
        ),
        ("adapter_model.safetensors", to_safetensors(&tensors)?),
    ];
    crate::util::write_dir_atomic(dir, &files)
}
