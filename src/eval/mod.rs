//! Validation: task metrics on generated answers, the forgetting check (hold-out loss lives in
//! `train::eval_loss`).

#[cfg(not(target_arch = "wasm32"))]
pub mod forgetting;
pub mod metrics;
pub mod report;
pub mod tasks;
