//! Learning-rate schedules: linear warm-up, then constant, linear decay to 0, or cosine to 0
//! (the shapes of transformers' `get_*_schedule_with_warmup`).

use serde::{Deserialize, Serialize};

/// Decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Self::Constant),
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            _ => Err(format!("unknown schedule `{s}` (constant, linear, cosine)")),
        }
    }
}

/// Learning rate for optimizer step `step` (0-based) of `total`.
pub fn lr_at(schedule: Schedule, base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / decay_steps).min(1.0);
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => base * (1.0 - progress),
        Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(lr_at(Schedule::Constant, 1.0, 5, 0, 10), 1.0);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 0, 2, 10), 0.5);
        assert_eq!(lr_at(Schedule::Linear, 1.0, 6, 2, 10), 0.5);
        assert!((lr_at(Schedule::Cosine, 1.0, 2, 2, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(Schedule::Cosine, 1.0, 6, 2, 10) - 0.5).abs() < 1e-12);
    }
}
