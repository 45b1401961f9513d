//! Training: loss, optimizer, schedule, the loop, checkpoints.

pub mod loss;
pub mod optim;
pub mod schedule;
