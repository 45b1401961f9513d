//! The one table mapping Hugging Face tensor names to GGUF names (llama.cpp's
//! `convert_hf_to_gguf.py` / `gguf-py/gguf/tensor_mapping.py`), plus llama.cpp's row
//! permutation of the Q/K projections for its interleaved RoPE.

/// Per-block tensors: (GGUF suffix after `blk.{i}.`, HF suffix after `model.layers.{i}.`).
const BLOCK: &[(&str, &str)] = &[
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// Whole-model tensors: (GGUF name, HF name).
const GLOBAL: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// HF name -> GGUF name, `None` for names outside the table.
pub fn hf_to_gguf(hf: &str) -> Option<String> {
    if let Some(&(g, _)) = GLOBAL.iter().find(|(_, h)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (i, suffix) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    BLOCK
        .iter()
        .find(|(_, h)| *h == suffix)
        .map(|(g, _)| format!("blk.{i}.{g}"))
}

/// GGUF name -> HF name, `None` for names outside the table.
pub fn gguf_to_hf(g: &str) -> Option<String> {
    if let Some(&(_, h)) = GLOBAL.iter().find(|(gg, _)| *gg == g) {
        return Some(h.to_string());
    }
    let rest = g.strip_prefix("blk.")?;
    let (i, suffix) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    BLOCK
        .iter()
        .find(|(gg, _)| *gg == suffix)
        .map(|(_, h)| format!("model.layers.{i}.{h}"))
}

/// HF name of a per-block tensor.
pub fn layer(i: usize, hf_suffix: &str) -> String {
    format!("model.layers.{i}.{hf_suffix}")
}

/// For llama-architecture GGUF files: the number of heads whose rows llama.cpp permuted in
/// this tensor (`n_head` for Q, `n_head_kv` for K), or `None` when it is not permuted.
pub fn permuted_heads(gguf_name: &str, n_head: usize, n_head_kv: usize) -> Option<usize> {
    if gguf_name.ends_with(".attn_q.weight") {
        Some(n_head)
    } else if gguf_name.ends_with(".attn_k.weight") {
        Some(n_head_kv)
    } else {
        None
    }
}

/// Undoes llama.cpp's `LlamaModel.permute` on whole rows: GGUF row `h*hd + 2i + p` becomes HF
/// row `h*hd + p*hd/2 + i` (interleaved RoPE pairs -> HF's rotate-half halves). Works for any
/// row payload (f32 values or quantized blocks), `row_bytes` bytes per row.
pub fn unpermute_rows<T: Copy>(data: &[T], n_rows: usize, n_head: usize) -> Vec<T> {
    let row = data.len() / n_rows;
    let hd = n_rows / n_head;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..n_head {
        for p in 0..2 {
            for i in 0..hd / 2 {
                let src = h * hd + 2 * i + p;
                out.extend_from_slice(&data[src * row..(src + 1) * row]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for hf in [
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.layers.7.self_attn.q_proj.weight",
            "model.layers.29.mlp.down_proj.weight",
            "model.layers.0.self_attn.k_proj.bias",
        ] {
            let g = hf_to_gguf(hf).unwrap();
            assert_eq!(gguf_to_hf(&g).unwrap(), hf);
        }
        assert_eq!(
            hf_to_gguf("model.layers.3.mlp.up_proj.weight").unwrap(),
            "blk.3.ffn_up.weight"
        );
        assert_eq!(hf_to_gguf("model.layers.x.mlp.up_proj.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // 2 heads of dim 4, one value per row: llama.cpp's permute maps HF rows
        // [0,1,2,3 | 4,5,6,7] to [0,2,1,3 | 4,6,5,7].
        let gguf = [0, 2, 1, 3, 4, 6, 5, 7];
        assert_eq!(unpermute_rows(&gguf, 8, 2), vec![0, 1, 2, 3, 4, 5, 6, 7]);
    }
}
