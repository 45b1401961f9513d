//! Training: loss, optimizer, schedule, the loop, checkpoints.

pub mod checkpoint;
pub mod config;
pub mod loss;
pub mod optim;
pub mod plot;
pub mod schedule;
pub mod trainer;

pub use config::TrainConfig;
pub use trainer::{
    Checkpoint, Outcome, Progress, Reporter, StepStats, eval_loss_async, train_async,
};
#[cfg(not(target_arch = "wasm32"))]
pub use trainer::{eval_loss, train};
