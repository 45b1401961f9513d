//! Per-block activation recomputation (`--recompute`) gives the same loss and adapter
//! gradients as keeping every activation, with and without adapter dropout (tiny model on the
//! CPU backend; the real model's memory numbers are in docs/memory.md).

mod common;

use anytune::data::jsonl::{Example, Sourced};
use anytune::data::{ChatTemplate, Message, TokenizeOptions, collate, tokenize};
use anytune::model::Llama;
use anytune::model::lora::LoraConfig;
use anytune::train::loss::{
    DEFAULT_LOGITS_CHUNK_BYTES, loss_and_grads_recomputed, loss_from_hidden,
};
use burn::tensor::{Device, Tensor};
use common::tiny::tiny_source;

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn check(dropout: f64) {
    let src = tiny_source(3);
    let t = ChatTemplate::new(src.chat_template.as_deref(), &src.tokenizer).unwrap();
    let toks: Vec<_> = (0..3)
        .map(|i| {
            let ex = Sourced {
                file: "mem".into(),
                line: i + 1,
                example: Example::Chat(vec![
                    Message::new("user", &format!("count {i} {}", "y".repeat(3 * i))),
                    Message::new("assistant", &format!("[{i}, {}]", i * 2)),
                ]),
            };
            let o = TokenizeOptions {
                max_seq_len: 128,
                train_on_prompt: false,
            };
            tokenize(&ex, &src.tokenizer, &t, o).unwrap()
        })
        .collect();
    let batch = collate(&toks.iter().collect::<Vec<_>>(), 0);
    let mut model = Llama::load(&src, &Device::flex()).unwrap();
    model.attach_lora(&LoraConfig {
        rank: 4,
        dropout,
        ..LoraConfig::default()
    });
    // Non-zero B so every gradient path carries signal.
    for (_, lin) in model.linears_mut() {
        if let Some(a) = lin.lora.as_mut() {
            a.b = (a.b.clone().inner().ones_like().mul_scalar(0.01))
                .detach()
                .autodiff()
                .require_grad();
        }
    }
    model.set_training(true);
    let seed = Some(99);

    // Keeping everything: the same blocks, the same per-block dropout seeds.
    let ids = model.ids_tensor(&batch.ids, batch.b, batch.t);
    let pos = model.positions(batch.b, batch.t, 0, Some(&batch.valid), seed);
    let mut x = model.embed_tokens(ids);
    for i in 0..model.blocks.len() {
        x = model.block(i, x, &pos, None);
    }
    let loss = loss_from_hidden(
        &model,
        &batch,
        model.final_norm(x),
        DEFAULT_LOGITS_CHUNK_BYTES,
    );
    let value = loss
        .clone()
        .inner()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()[0];
    let g = loss.backward();
    let kept: Vec<Vec<f32>> = model
        .adapters()
        .iter()
        .flat_map(|(_, a)| [host(a.a.grad(&g).unwrap()), host(a.b.grad(&g).unwrap())])
        .collect();

    let (loss_r, grads_r) =
        loss_and_grads_recomputed(&model, &batch, DEFAULT_LOGITS_CHUNK_BYTES, seed);
    let value_r = loss_r.into_data().try_into_vec::<f32>().unwrap()[0];
    let recomputed: Vec<Vec<f32>> = grads_r
        .into_iter()
        .flat_map(|(a, b)| [host(a), host(b)])
        .collect();
    assert_eq!(kept.len(), recomputed.len());
    let mut worst = 0f64;
    for (k, r) in kept.iter().zip(&recomputed) {
        assert!(
            k.iter().any(|x| *x != 0.0),
            "a gradient is all zero: the test would prove nothing"
        );
        worst = worst.max(common::rel_norm_err(k, r));
    }
    eprintln!(
        "dropout {dropout}: loss kept {value:.7} vs recomputed {value_r:.7}; \
         gradients worst relative norm error {worst:.2e} over {} tensors",
        kept.len()
    );
    assert!((value - value_r).abs() <= 1e-6 * value.abs().max(1.0));
    assert!(worst < 1e-5, "{worst}");
}

/// One test: burn's CPU RNG is process-global, so seeded dropout must not race another test.
#[test]
fn recomputed_gradients_equal_kept_ones() {
    check(0.0);
    check(0.2);
}
