//! Tokenized examples -> padded batches. Right padding with per-row valid lengths (the
//! attention mask); padding is never found by id (SmolLM2's pad id is its eos). Order: seeded
//! shuffle with length bucketing (similar lengths share a batch, less padding), or the file
//! order (`shuffle = false`, what the PEFT reference run uses).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::tokenize::TokenizedExample;

/// A batch ready for the model, still on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// [B, T] row-major, right-padded with `pad_id`.
    pub ids: Vec<u32>,
    pub b: usize,
    pub t: usize,
    /// Real tokens per row.
    pub valid: Vec<usize>,
    /// Flat positions (row*T + t) whose logits predict a labelled token ...
    pub positions: Vec<usize>,
    /// ... and those tokens.
    pub targets: Vec<u32>,
}

impl Batch {
    /// Non-padding tokens.
    pub fn n_tokens(&self) -> usize {
        self.valid.iter().sum()
    }
}

/// Pads `examples` into one batch.
pub fn collate(examples: &[&TokenizedExample], pad_id: u32) -> Batch {
    let b = examples.len();
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut ids = vec![pad_id; b * t];
    let (mut positions, mut targets) = (Vec::new(), Vec::new());
    for (r, e) in examples.iter().enumerate() {
        ids[r * t..r * t + e.ids.len()].copy_from_slice(&e.ids);
        for i in 1..e.ids.len() {
            if e.labels[i] {
                positions.push(r * t + i - 1);
                targets.push(e.ids[i]);
            }
        }
    }
    Batch {
        ids,
        b,
        t,
        valid: examples.iter().map(|e| e.ids.len()).collect(),
        positions,
        targets,
    }
}

/// The order of example indices for `epoch`: file order, or a seeded shuffle grouped into
/// length buckets of `batch_size` (buckets themselves shuffled).
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if !shuffle {
        return order.chunks(batch_size).map(|c| c.to_vec()).collect();
    }
    let mut rng =
        StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch));
    order.shuffle(&mut rng);
    // Sort within windows of 8 batches by length, then cut batches and shuffle them.
    let window = batch_size * 8;
    for w in order.chunks_mut(window) {
        w.sort_by_key(|&i| lengths[i]);
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(|c| c.to_vec()).collect();
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32], labels: &[bool]) -> TokenizedExample {
        TokenizedExample {
            ids: ids.to_vec(),
            labels: labels.to_vec(),
            file: "f".into(),
            line: 1,
        }
    }

    #[test]
    fn pads_right_and_shifts_targets() {
        let a = ex(&[5, 6, 7], &[false, true, true]);
        let b = ex(&[8, 2], &[false, true]);
        let batch = collate(&[&a, &b], 2);
        assert_eq!(batch.ids, vec![5, 6, 7, 8, 2, 2]);
        assert_eq!(batch.valid, vec![3, 2]);
        // logits at (0,0) predict 6, (0,1) predict 7, (1,0) predict 2 — the pad id 2 at (1,2) is not a target.
        assert_eq!(batch.positions, vec![0, 1, 3]);
        assert_eq!(batch.targets, vec![6, 7, 2]);
    }

    #[test]
    fn shuffle_is_seeded_and_covers_everything() {
        let lengths: Vec<usize> = (0..50).map(|i| (i * 37) % 91).collect();
        let a = epoch_batches(&lengths, 4, true, 1, 0);
        assert_eq!(a, epoch_batches(&lengths, 4, true, 1, 0));
        assert_ne!(a, epoch_batches(&lengths, 4, true, 1, 1));
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        assert_eq!(epoch_batches(&lengths, 4, false, 1, 0)[1], vec![4, 5, 6, 7]);
    }
}
