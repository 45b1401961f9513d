//! The Llama decoder: token embedding -> N x (RMSNorm, GQA attention with RoPE, RMSNorm,
//! SwiGLU) -> RMSNorm -> output head (tied to the embedding or not). Loaded from any
//! `ModelSource`; runs on whatever `Device` the tensors were put on.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::ModelConfig;
use super::layers::{Linear, apply_rope, attention, attention_bias, rms_norm, rope_tables, swiglu};
use super::lora::{LoraAdapter, LoraConfig, init_rng};
use crate::error::{Error, Result};
use crate::weights::names::layer;
use crate::weights::{HostTensor, ModelSource, WeightSource};

/// One decoder block.
#[derive(Clone)]
pub struct Block {
    pub attn_norm: Tensor<1>,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub mlp_norm: Tensor<1>,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

/// Keys and values of every layer for the tokens seen so far.
#[derive(Default)]
pub struct KvCache {
    /// Per layer: (k, v), each [B, Hkv, S, Dh].
    layers: Vec<(Tensor<4>, Tensor<4>)>,
    /// S: tokens already cached.
    pub len: usize,
}

/// The whole model.
#[derive(Clone)]
pub struct Llama {
    pub config: ModelConfig,
    /// [V, D]
    pub embed: Tensor<2>,
    pub blocks: Vec<Block>,
    pub norm: Tensor<1>,
    /// Untied output head, Wᵀ [D, V]; `None` when tied to `embed`.
    pub head: Option<Tensor<2>>,
    /// RoPE inverse frequencies, Dh / 2 of them.
    pub inv_freq: Vec<f64>,
    pub device: Device,
}

/// Fetches `name` and checks its shape.
fn fetch(w: &dyn WeightSource, name: &str, shape: &[usize]) -> Result<HostTensor> {
    let t = w
        .get(name)?
        .ok_or_else(|| Error::tensor(name, "missing from the checkpoint"))?;
    if t.shape != shape {
        return Err(Error::tensor(
            name,
            format!("shape {:?}, expected {shape:?}", t.shape),
        ));
    }
    Ok(t)
}

fn upload_1d(t: HostTensor, device: &Device) -> Tensor<1> {
    let n = t.data.len();
    Tensor::from_data(TensorData::new(t.data, [n]), device)
}

fn upload_2d(t: HostTensor, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(t.data, [t.shape[0], t.shape[1]]), device)
}

/// A frozen linear from an HF weight [out, in] (+ optional bias [out]).
fn linear(
    w: &dyn WeightSource,
    name: &str,
    out: usize,
    inp: usize,
    bias: bool,
    device: &Device,
) -> Result<Linear> {
    let weight = fetch(w, &format!("{name}.weight"), &[out, inp])?;
    let bias = if bias {
        Some(upload_1d(
            fetch(w, &format!("{name}.bias"), &[out])?,
            device,
        ))
    } else {
        None
    };
    Ok(Linear {
        w_t: upload_2d(weight, device).transpose(),
        bias,
        lora: None,
    })
}

impl Llama {
    /// Builds the model on `device` from a checkpoint (weights dequantized to f32). The base is
    /// frozen: it lives outside autodiff whatever `device` says; only adapters are tracked.
    pub fn load(src: &ModelSource, device: &Device) -> Result<Llama> {
        let device = &device.clone().without_autodiff();
        let c = &src.config;
        let w = src.weights.as_ref();
        let (d, f, dh) = (c.hidden_size, c.intermediate_size, c.head_dim);
        let (qd, kvd) = (c.num_heads * dh, c.num_kv_heads * dh);
        let mut blocks = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let l = |s: &str| layer(i, s);
            let norm = |s: &str| fetch(w, &l(s), &[d]).map(|t| upload_1d(t, device));
            blocks.push(Block {
                attn_norm: norm("input_layernorm.weight")?,
                q: linear(w, &l("self_attn.q_proj"), qd, d, c.attention_bias, device)?,
                k: linear(w, &l("self_attn.k_proj"), kvd, d, c.attention_bias, device)?,
                v: linear(w, &l("self_attn.v_proj"), kvd, d, c.attention_bias, device)?,
                o: linear(w, &l("self_attn.o_proj"), d, qd, false, device)?,
                mlp_norm: norm("post_attention_layernorm.weight")?,
                gate: linear(w, &l("mlp.gate_proj"), f, d, false, device)?,
                up: linear(w, &l("mlp.up_proj"), f, d, false, device)?,
                down: linear(w, &l("mlp.down_proj"), d, f, false, device)?,
            });
        }
        let embed = upload_2d(
            fetch(w, "model.embed_tokens.weight", &[c.vocab_size, d])?,
            device,
        );
        let head = if c.tie_word_embeddings {
            None
        } else {
            Some(upload_2d(fetch(w, "lm_head.weight", &[c.vocab_size, d])?, device).transpose())
        };
        Ok(Llama {
            config: c.clone(),
            embed,
            blocks,
            norm: upload_1d(fetch(w, "model.norm.weight", &[d])?, device),
            head,
            inv_freq: c.inv_freq(w.rope_freq_factors()?.as_deref()),
            device: device.clone(),
        })
    }

    /// Token ids to a [B, T] int tensor.
    pub fn ids_tensor(&self, ids: &[u32], b: usize, t: usize) -> Tensor<2, Int> {
        let v: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Tensor::from_data(TensorData::new(v, [b, t]), &self.device)
    }

    /// Hidden states after the final norm.
    ///
    /// `valid[b]` is the number of real (non-padding) tokens of row b, for right-padded batches.
    /// With a cache, the new tokens follow the `cache.len` cached ones.
    ///
    /// # Shapes
    /// ids [B, T] -> [B, T, D]
    pub fn hidden(
        &self,
        ids: Tensor<2, Int>,
        valid: Option<&[usize]>,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let c = &self.config;
        let [b, t] = ids.dims();
        let (h, hkv, dh) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let offset = cache.as_ref().map_or(0, |kv| kv.len);
        let s = offset + t;
        let mut x =
            self.embed
                .clone()
                .select(0, ids.reshape([b * t]))
                .reshape([b, t, c.hidden_size]);
        let (cos, sin) = rope_tables(&self.inv_freq, offset, t, &self.device);
        // A single new token with no padding sees every cached key: no mask needed.
        let bias = (t > 1 || valid.is_some())
            .then(|| attention_bias(b, h / hkv, t, s, offset, valid, &self.device));
        for (i, blk) in self.blocks.iter().enumerate() {
            let a = rms_norm(x.clone(), &blk.attn_norm, c.rms_norm_eps);
            let q = blk
                .q
                .forward(a.clone())
                .reshape([b, t, h, dh])
                .swap_dims(1, 2); // [B, H, T, Dh]
            let k = blk
                .k
                .forward(a.clone())
                .reshape([b, t, hkv, dh])
                .swap_dims(1, 2); // [B, Hkv, T, Dh]
            let v = blk.v.forward(a).reshape([b, t, hkv, dh]).swap_dims(1, 2);
            let q = apply_rope(q, &cos, &sin);
            let mut k = apply_rope(k, &cos, &sin);
            let mut v = v;
            if let Some(kv) = cache.as_deref_mut() {
                if let Some((pk, pv)) = kv.layers.get(i) {
                    k = Tensor::cat(vec![pk.clone(), k], 2); // [B, Hkv, S, Dh]
                    v = Tensor::cat(vec![pv.clone(), v], 2);
                }
                if kv.layers.len() > i {
                    kv.layers[i] = (k.clone(), v.clone());
                } else {
                    kv.layers.push((k.clone(), v.clone()));
                }
            }
            let attn = attention(q, k, v, bias.clone());
            x = x + blk.o.forward(attn);
            let m = rms_norm(x.clone(), &blk.mlp_norm, c.rms_norm_eps);
            x = x + swiglu(m, &blk.gate, &blk.up, &blk.down);
        }
        if let Some(kv) = cache {
            kv.len = s;
        }
        rms_norm(x, &self.norm, c.rms_norm_eps)
    }

    /// Output head on hidden states.
    ///
    /// # Shapes
    /// h [N, D] -> logits [N, V]
    pub fn logits(&self, h: Tensor<2>) -> Tensor<2> {
        match &self.head {
            Some(w_t) => h.matmul(w_t.clone()),
            None => h.matmul(self.embed.clone().transpose()),
        }
    }

    /// Logits at every position.
    ///
    /// # Shapes
    /// ids [B, T] -> [B, T, V]
    pub fn forward(&self, ids: Tensor<2, Int>, valid: Option<&[usize]>) -> Tensor<3> {
        let h = self.hidden(ids, valid, None);
        let [b, t, d] = h.dims();
        self.logits(h.reshape([b * t, d]))
            .reshape([b, t, self.config.vocab_size])
    }

    /// Feeds `ids` (batch 1) through the cache and returns the logits of the last position.
    ///
    /// # Shapes
    /// -> [V]
    pub fn step(&self, ids: &[u32], cache: &mut KvCache) -> Tensor<1> {
        let t = ids.len();
        let h = self.hidden(self.ids_tensor(ids, 1, t), None, Some(cache));
        let d = self.config.hidden_size;
        let last = h.narrow(1, t - 1, 1).reshape([1, d]);
        self.logits(last).reshape([self.config.vocab_size])
    }
}

/// HF module names of a block's seven projections, in the order `linears`/`linears_mut` use.
const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

impl Block {
    /// The seven projections with their HF module names.
    fn linears(&self) -> [(&'static str, &Linear); 7] {
        let l = [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ];
        std::array::from_fn(|i| (PROJECTIONS[i], l[i]))
    }

    /// The seven projections with their HF module names, mutably.
    fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        [
            ("self_attn.q_proj", &mut self.q),
            ("self_attn.k_proj", &mut self.k),
            ("self_attn.v_proj", &mut self.v),
            ("self_attn.o_proj", &mut self.o),
            ("mlp.gate_proj", &mut self.gate),
            ("mlp.up_proj", &mut self.up),
            ("mlp.down_proj", &mut self.down),
        ]
    }
}

impl Llama {
    /// Every projection as (HF module path, layer), e.g. `model.layers.0.self_attn.q_proj`.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        self.blocks
            .iter_mut()
            .enumerate()
            .flat_map(|(i, b)| {
                b.linears_mut()
                    .map(|(n, l)| (format!("model.layers.{i}.{n}"), l))
            })
            .collect()
    }

    /// Every LoRA adapter as (HF module path, adapter), in layer order.
    pub fn adapters(&self) -> Vec<(String, &LoraAdapter)> {
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            for (n, l) in b.linears() {
                if let Some(a) = &l.lora {
                    out.push((format!("model.layers.{i}.{n}"), a));
                }
            }
        }
        out
    }

    /// Puts fresh adapters on the targeted projections (seeded A, zero B).
    pub fn attach_lora(&mut self, cfg: &LoraConfig) {
        let scale = LoraAdapter::scale(cfg.rank, cfg.alpha, cfg.rslora);
        let mut rng = init_rng(cfg.seed);
        let device = self.device.clone();
        for (name, lin) in self.linears_mut() {
            let module = name.rsplit('.').next().unwrap_or_default();
            if cfg.targets.iter().any(|t| t == module) {
                let [inp, out] = lin.w_t.dims();
                lin.lora = Some(LoraAdapter::init(
                    inp,
                    out,
                    cfg.rank,
                    scale,
                    cfg.dropout,
                    &mut rng,
                    &device,
                ));
            }
        }
    }

    /// Bytes held by the frozen base weights (f32 on the device).
    pub fn base_bytes(&self) -> usize {
        let lin = |l: &Linear| {
            l.w_t.dims().iter().product::<usize>() + l.bias.as_ref().map_or(0, |b| b.dims()[0])
        };
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                b.linears().into_iter().map(|(_, l)| lin(l)).sum::<usize>()
                    + 2 * self.config.hidden_size
            })
            .sum();
        let head = self.head.as_ref().map_or(0, |h| h.dims().iter().product());
        4 * (blocks + self.embed.dims().iter().product::<usize>() + head + self.config.hidden_size)
    }

    /// Bytes of the adapters (f32).
    pub fn adapter_bytes(&self) -> usize {
        self.adapters()
            .iter()
            .map(|(_, a)| {
                4 * (a.a.dims().iter().product::<usize>() + a.b.dims().iter().product::<usize>())
            })
            .sum()
    }

    /// Removes every adapter (back to the base model).
    pub fn detach_lora(&mut self) {
        for (_, lin) in self.linears_mut() {
            lin.lora = None;
        }
    }

    /// Makes adapters plain constants (no autodiff) for fast inference.
    pub fn freeze_adapters(&mut self) {
        for (_, lin) in self.linears_mut() {
            if let Some(a) = lin.lora.as_mut() {
                a.a = a.a.clone().inner();
                a.b = a.b.clone().inner();
            }
        }
    }

    /// Switches adapter dropout on (training) or off.
    pub fn set_training(&mut self, training: bool) {
        for (_, lin) in self.linears_mut() {
            if let Some(a) = lin.lora.as_mut() {
                a.training = training;
            }
        }
    }
}
