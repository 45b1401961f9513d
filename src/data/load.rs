//! Files -> tokenized train/hold-out sets, with every problem listed as `file:line: reason`.
//! Strict by default: any problem refuses the run (nothing silently dropped); `skip_invalid`
//! keeps the good examples and reports what was skipped.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::jsonl::{Problem, parse};
use super::template::ChatTemplate;
use super::tokenize::{TokenizeOptions, TokenizedExample, tokenize};
use crate::weights::Tokenizer;

/// Tokenized examples of one file plus its problems.
#[derive(Debug, Default)]
pub struct Loaded {
    pub examples: Vec<TokenizedExample>,
    pub problems: Vec<Problem>,
}

/// Parses and tokenizes the JSONL `text` of `file`.
pub fn load_text(
    text: &str,
    file: &str,
    tok: &Tokenizer,
    t: &ChatTemplate,
    o: TokenizeOptions,
) -> Loaded {
    let parsed = parse(text, file);
    let mut out = Loaded {
        problems: parsed.problems,
        ..Default::default()
    };
    for ex in &parsed.examples {
        match tokenize(ex, tok, t, o) {
            Ok(e) => out.examples.push(e),
            Err(p) => out.problems.push(p),
        }
    }
    out.problems.sort_by_key(|p| p.line);
    out
}

/// The message listing problems: up to 20, then a count.
pub fn describe_problems(problems: &[Problem]) -> String {
    let mut s: Vec<String> = problems.iter().take(20).map(|p| p.to_string()).collect();
    if problems.len() > 20 {
        s.push(format!("... and {} more", problems.len() - 20));
    }
    s.join("\n")
}

/// Splits off a seeded `share` of `examples` as the hold-out set (at least one when share > 0).
pub fn split(
    mut examples: Vec<TokenizedExample>,
    share: f64,
    seed: u64,
) -> (Vec<TokenizedExample>, Vec<TokenizedExample>) {
    if share <= 0.0 || examples.len() < 2 {
        return (examples, Vec::new());
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x005E_ED0F_E7A1);
    examples.shuffle(&mut rng);
    let n = ((examples.len() as f64 * share).round() as usize).clamp(1, examples.len() - 1);
    let eval = examples.split_off(examples.len() - n);
    (examples, eval)
}
