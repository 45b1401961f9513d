//! Validation: task metrics on generated answers (hold-out loss lives in `train::eval_loss`).

pub mod metrics;
pub mod tasks;
