//! Outputs: LoRA adapters in Hugging Face PEFT format.

pub mod peft;
