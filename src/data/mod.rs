//! Data: JSONL examples -> chat template -> token ids with a loss mask -> padded batches.

pub mod batch;
pub mod jsonl;
pub mod load;
pub mod template;
pub mod tokenize;

pub use batch::{Batch, collate, epoch_batches};
pub use jsonl::{Example, Format, Problem, Sourced};
pub use template::{ChatTemplate, Message};
pub use tokenize::{TokenizeOptions, TokenizedExample, tokenize};
