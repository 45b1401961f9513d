//! Shared helpers for integration tests: where the real model and the reference live.
#![allow(dead_code)]

pub mod tiny;

use std::path::PathBuf;

/// The real test model (SmolLM2-135M-Instruct Q4_1). `scripts/test.sh` fetches it and sets
/// `ANYTUNE_MODEL`; without it we look in `models/`. Missing model = failing test, not a skip.
pub fn model_path() -> PathBuf {
    let p = std::env::var_os("ANYTUNE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "{} not found: run scripts/fetch-model.sh (or scripts/test.sh)",
        p.display()
    );
    p
}

/// The same model converted to a Hugging Face float32 checkpoint by
/// `../shared/reference/gguf_to_safetensors.py` (scripts/test.sh writes it, `ANYTUNE_HF_MODEL`).
pub fn hf_model_dir() -> PathBuf {
    let p = std::env::var_os("ANYTUNE_HF_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m-hf")
        });
    assert!(
        p.join("model.safetensors").exists(),
        "{} has no model.safetensors: run scripts/test.sh (it converts the GGUF with the reference script)",
        p.display()
    );
    p
}

/// `../shared/reference` (read-only reference material), or `ANYTUNE_REFERENCE`.
pub fn reference_dir() -> PathBuf {
    std::env::var_os("ANYTUNE_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"))
}

/// Golden numbers from Hugging Face transformers (tests/fixtures/golden.json, a copy of
/// ../shared/reference/golden.json made by make_golden.py).
pub fn golden() -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The wgpu device under test (`ANYTUNE_TEST_WGPU`, default vulkan); `None` = skip, unless
/// `ANYTUNE_REQUIRE_WGPU=1` (our CI) turns a missing adapter into a failure.
pub fn wgpu() -> Option<anytune::device::OpenedDevice> {
    let choice: anytune::device::DeviceChoice = std::env::var("ANYTUNE_TEST_WGPU")
        .unwrap_or_else(|_| "vulkan".into())
        .parse()
        .unwrap();
    match anytune::device::open(choice, |m| eprintln!("{m}")) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("ANYTUNE_REQUIRE_WGPU").is_ok_and(|v| v == "1") => panic!("{e}"),
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// ‖other − reference‖ / ‖reference‖ in f64 (the gradient comparisons of every test).
pub fn rel_norm_err(reference: &[f32], other: &[f32]) -> f64 {
    assert_eq!(reference.len(), other.len());
    let diff: f64 = reference
        .iter()
        .zip(other)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = reference
        .iter()
        .map(|x| (*x as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    diff / norm.max(1e-30)
}
