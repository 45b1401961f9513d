//! Loss masks derived from the model's own chat template: only assistant content and the
//! end-of-turn token that closes it carry loss; system/user turns, the template's headers and
//! the separator after the end-of-turn token do not. ChatML (SmolLM2) and Llama 3 templates,
//! multi-turn. (The real SmolLM2 mask is also checked token for token against PEFT's labels in
//! tests/parity.rs.)

mod common;

use anytune::data::jsonl::{Example, Sourced};
use anytune::data::{ChatTemplate, Message, TokenizeOptions, tokenize};
use anytune::weights::Tokenizer;
use common::tiny::{byte_tokenizer, tiny_tokenizer};

const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

fn conversation() -> Vec<Message> {
    vec![
        Message::new("system", "Be brief."),
        Message::new("user", "Hi"),
        Message::new("assistant", "Hello!"),
        Message::new("user", "2+2?"),
        Message::new("assistant", "4"),
    ]
}

/// The labelled tokens decoded, one string per contiguous run.
fn labelled_runs(
    tok: &Tokenizer,
    template: Option<&str>,
    train_on_prompt: bool,
) -> (Vec<String>, usize, usize) {
    let t = ChatTemplate::new(template, tok).unwrap();
    let ex = Sourced {
        file: "m.jsonl".into(),
        line: 1,
        example: Example::Chat(conversation()),
    };
    let e = tokenize(
        &ex,
        tok,
        &t,
        TokenizeOptions {
            max_seq_len: 512,
            train_on_prompt,
        },
    )
    .unwrap();
    let mut runs = Vec::new();
    let mut cur = Vec::new();
    for (id, l) in e.ids.iter().zip(&e.labels) {
        if *l {
            cur.push(*id);
        } else if !cur.is_empty() {
            runs.push(tok.decode(&cur).unwrap());
            cur.clear();
        }
    }
    if !cur.is_empty() {
        runs.push(tok.decode(&cur).unwrap());
    }
    (runs, e.labels.iter().filter(|&&l| l).count(), e.ids.len())
}

#[test]
fn chatml_labels_assistant_content_and_im_end_only() {
    let (runs, _, _) = labelled_runs(
        &tiny_tokenizer(),
        Some(anytune::data::template::CHATML),
        false,
    );
    assert_eq!(runs, vec!["Hello!<|im_end|>", "4<|im_end|>"]);
}

#[test]
fn llama3_labels_assistant_content_and_eot_only() {
    let specials = [
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ];
    let cfg = serde_json::json!({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"});
    let tok = byte_tokenizer(&specials, &cfg);
    let (runs, _, _) = labelled_runs(&tok, Some(LLAMA3), false);
    assert_eq!(runs, vec!["Hello!<|eot_id|>", "4<|eot_id|>"]);
}

#[test]
fn train_on_prompt_labels_everything() {
    let (runs, n, total) = labelled_runs(
        &tiny_tokenizer(),
        Some(anytune::data::template::CHATML),
        true,
    );
    assert_eq!(runs.len(), 1);
    assert_eq!(n, total);
}
