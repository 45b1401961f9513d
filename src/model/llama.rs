//! The Llama decoder: token embedding -> N x (RMSNorm, GQA attention with RoPE, RMSNorm,
//! SwiGLU) -> RMSNorm -> output head (tied to the embedding or not). Loaded from any
//! `ModelSource`; runs on whatever `Device` the tensors were put on.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::ModelConfig;
use super::layers::{
    BaseWeight, Linear, apply_rope, attention, attention_bias, rms_norm, rope_tables, swiglu,
};
use super::lora::{LoraAdapter, LoraConfig, init_rng};
use crate::error::{Error, Result};
use crate::kernels::{self, QuantWeight};
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

/// How the frozen base lives on the device (`--base-weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseWeights {
    /// Quantized GGUF matrices stay in their block format and are dequantized inside our WGSL
    /// kernels (GPU backends only; float tensors and other types are dequantized as usual).
    Keep,
    /// Everything dequantized to f32 at load.
    Dequantize,
}

impl std::str::FromStr for BaseWeights {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "keep" => Ok(Self::Keep),
            "dequantize" => Ok(Self::Dequantize),
            _ => Err(format!(
                "unknown base-weights mode `{s}` (keep, dequantize)"
            )),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub base: BaseWeights,
    /// Largest buffer a kernel may bind (the adapter's `maxStorageBufferBindingSize`); quantized
    /// matrices are split into row chunks below it.
    pub max_binding: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            base: BaseWeights::Dequantize,
            max_binding: 128 << 20,
        }
    }
}

/// The token embedding table [V, D], dense or quantized.
#[derive(Clone)]
pub enum Embedding {
    Dense(Tensor<2>),
    Quant(QuantWeight),
}

impl Embedding {
    /// [V, D]
    pub fn dims(&self) -> [usize; 2] {
        match self {
            Embedding::Dense(e) => e.dims(),
            Embedding::Quant(q) => [q.rows, q.cols],
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Embedding::Dense(e) => 4 * e.dims().iter().product::<usize>(),
            Embedding::Quant(q) => q.bytes(),
        }
    }
}

/// What every block of one forward shares.
pub struct Positions {
    /// [1, 1, T, Dh]
    pub cos: Tensor<4>,
    pub sin: Tensor<4>,
    /// [B, 1, G*T, S], or none when nothing is masked.
    pub bias: Option<Tensor<4>>,
    pub dropout_seed: Option<u64>,
}

/// The whole model.
#[derive(Clone)]
pub struct Llama {
    pub config: ModelConfig,
    pub embed: Embedding,
    pub blocks: Vec<Block>,
    pub norm: Tensor<1>,
    /// Untied output head ([D] -> [V]); `None` when tied to `embed`.
    pub head: Option<BaseWeight>,
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

/// A frozen [out, in] matrix: kept in its quantized blocks when `opts` say so and the kernels
/// read its type, else dequantized to f32 (Wᵀ).
fn base_weight(
    w: &dyn WeightSource,
    name: &str,
    out: usize,
    inp: usize,
    keep: Option<&LoadOptions>,
    device: &Device,
) -> Result<BaseWeight> {
    if let Some(q) = quantized(w, name, out, inp, keep, device)? {
        return Ok(BaseWeight::Quant(q));
    }
    Ok(BaseWeight::Dense(
        upload_2d(fetch(w, name, &[out, inp])?, device).transpose(),
    ))
}

/// `name` as a device `QuantWeight` when keeping is on and its type has a kernel.
fn quantized(
    w: &dyn WeightSource,
    name: &str,
    out: usize,
    inp: usize,
    keep: Option<&LoadOptions>,
    device: &Device,
) -> Result<Option<QuantWeight>> {
    let Some(opts) = keep else { return Ok(None) };
    let Some(q) = w.get_quantized(name)? else {
        return Ok(None);
    };
    if [q.rows, q.cols] != [out, inp] {
        return Err(Error::tensor(
            name,
            format!("shape [{}, {}], expected [{out}, {inp}]", q.rows, q.cols),
        ));
    }
    Ok(Some(QuantWeight::upload(
        q.qtype,
        q.rows,
        q.cols,
        &q.words,
        opts.max_binding,
        device,
    )))
}

/// A frozen linear from an HF weight [out, in] (+ optional bias [out]).
fn linear(
    w: &dyn WeightSource,
    name: &str,
    out: usize,
    inp: usize,
    bias: bool,
    keep: Option<&LoadOptions>,
    device: &Device,
) -> Result<Linear> {
    let weight = base_weight(w, &format!("{name}.weight"), out, inp, keep, device)?;
    let bias = if bias {
        Some(upload_1d(
            fetch(w, &format!("{name}.bias"), &[out])?,
            device,
        ))
    } else {
        None
    };
    Ok(Linear {
        weight,
        bias,
        lora: None,
    })
}

impl Llama {
    /// Builds the model on `device` from a checkpoint, weights dequantized to f32.
    pub fn load(src: &ModelSource, device: &Device) -> Result<Llama> {
        Self::load_with(src, device, &LoadOptions::default())
    }

    /// Builds the model on `device` from a checkpoint. The base is frozen: it lives outside
    /// autodiff whatever `device` says; only adapters are tracked. `BaseWeights::Keep` applies
    /// on devices that run our kernels; elsewhere (the CPU backend) the reference twin —
    /// dequantized f32 and plain matmuls — is used.
    pub fn load_with(src: &ModelSource, device: &Device, opts: &LoadOptions) -> Result<Llama> {
        let device = &device.clone().without_autodiff();
        let keep =
            (opts.base == BaseWeights::Keep && kernels::supports_kernels(device)).then_some(opts);
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
                q: linear(
                    w,
                    &l("self_attn.q_proj"),
                    qd,
                    d,
                    c.attention_bias,
                    keep,
                    device,
                )?,
                k: linear(
                    w,
                    &l("self_attn.k_proj"),
                    kvd,
                    d,
                    c.attention_bias,
                    keep,
                    device,
                )?,
                v: linear(
                    w,
                    &l("self_attn.v_proj"),
                    kvd,
                    d,
                    c.attention_bias,
                    keep,
                    device,
                )?,
                o: linear(w, &l("self_attn.o_proj"), d, qd, false, keep, device)?,
                mlp_norm: norm("post_attention_layernorm.weight")?,
                gate: linear(w, &l("mlp.gate_proj"), f, d, false, keep, device)?,
                up: linear(w, &l("mlp.up_proj"), f, d, false, keep, device)?,
                down: linear(w, &l("mlp.down_proj"), d, f, false, keep, device)?,
            });
        }
        let embed_name = "model.embed_tokens.weight";
        let embed = match quantized(w, embed_name, c.vocab_size, d, keep, device)? {
            Some(q) => Embedding::Quant(q),
            None => Embedding::Dense(upload_2d(fetch(w, embed_name, &[c.vocab_size, d])?, device)),
        };
        let head = if c.tie_word_embeddings {
            None
        } else {
            Some(base_weight(
                w,
                "lm_head.weight",
                c.vocab_size,
                d,
                keep,
                device,
            )?)
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
        let [b, t] = ids.dims();
        let offset = cache.as_ref().map_or(0, |kv| kv.len);
        let pos = self.positions(b, t, offset, valid, None);
        let mut x = self.embed_tokens(ids);
        for i in 0..self.blocks.len() {
            x = self.block(i, x, &pos, cache.as_deref_mut());
        }
        if let Some(kv) = cache {
            kv.len = offset + t;
        }
        self.final_norm(x)
    }

    /// Token embeddings.
    ///
    /// # Shapes
    /// ids [B, T] -> [B, T, D]
    pub fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let flat = ids.reshape([b * t]);
        match &self.embed {
            Embedding::Dense(e) => e.clone().select(0, flat),
            Embedding::Quant(q) => q.gather(flat),
        }
        .reshape([b, t, self.config.hidden_size])
    }

    /// RoPE tables and the attention mask for `t` new tokens after `offset` cached ones.
    /// `dropout_seed` re-seeds the device before every block, so a recomputed block draws the
    /// same adapter-dropout masks as its first forward.
    pub fn positions(
        &self,
        b: usize,
        t: usize,
        offset: usize,
        valid: Option<&[usize]>,
        dropout_seed: Option<u64>,
    ) -> Positions {
        let c = &self.config;
        let (cos, sin) = rope_tables(&self.inv_freq, offset, t, &self.device);
        // A single new token with no padding sees every cached key: no mask needed.
        let bias = (t > 1 || valid.is_some()).then(|| {
            attention_bias(
                b,
                c.num_heads / c.num_kv_heads,
                t,
                offset + t,
                offset,
                valid,
                &self.device,
            )
        });
        Positions {
            cos,
            sin,
            bias,
            dropout_seed,
        }
    }

    /// Decoder block `i`.
    ///
    /// # Shapes
    /// x [B, T, D] -> [B, T, D]
    pub fn block(
        &self,
        i: usize,
        x: Tensor<3>,
        pos: &Positions,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let c = &self.config;
        let blk = &self.blocks[i];
        let [b, t, _] = x.dims();
        let (h, hkv, dh) = (c.num_heads, c.num_kv_heads, c.head_dim);
        if let Some(seed) = pos.dropout_seed {
            self.device.seed(seed.wrapping_add(i as u64));
        }
        let a = rms_norm(x.clone(), &blk.attn_norm, c.rms_norm_eps);
        // RoPE in the projections' own [B, T, heads, Dh] layout, then heads before T.
        let q = apply_rope(
            blk.q.forward(a.clone()).reshape([b, t, h, dh]),
            &pos.cos,
            &pos.sin,
        )
        .swap_dims(1, 2); // [B, H, T, Dh]
        let mut k = apply_rope(
            blk.k.forward(a.clone()).reshape([b, t, hkv, dh]),
            &pos.cos,
            &pos.sin,
        )
        .swap_dims(1, 2); // [B, Hkv, T, Dh]
        let v = blk.v.forward(a).reshape([b, t, hkv, dh]).swap_dims(1, 2);
        let mut v = v;
        if let Some(kv) = cache {
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
        let attn = attention(q, k, v, pos.bias.clone());
        let x = x + blk.o.forward(attn);
        let m = rms_norm(x.clone(), &blk.mlp_norm, c.rms_norm_eps);
        x + swiglu(m, &blk.gate, &blk.up, &blk.down)
    }

    /// The final RMSNorm.
    pub fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        rms_norm(x, &self.norm, self.config.rms_norm_eps)
    }

    /// The adapters of block `i`, in `adapters()` order.
    pub fn block_adapters(&self, i: usize) -> Vec<&LoraAdapter> {
        self.blocks[i]
            .linears()
            .into_iter()
            .filter_map(|(_, l)| l.lora.as_ref())
            .collect()
    }

    /// Output head on hidden states.
    ///
    /// # Shapes
    /// h [N, D] -> logits [N, V]
    pub fn logits(&self, h: Tensor<2>) -> Tensor<2> {
        match (&self.head, &self.embed) {
            (Some(w), _) => w.forward(h),
            (None, Embedding::Dense(e)) => h.matmul(e.clone().transpose()),
            (None, Embedding::Quant(q)) => q.forward(h),
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
                let [inp, out] = lin.dims();
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

    /// Device bytes held by the frozen base weights (f32 or quantized blocks).
    pub fn base_bytes(&self) -> usize {
        let lin = |l: &Linear| l.weight.bytes() + l.bias.as_ref().map_or(0, |b| 4 * b.dims()[0]);
        let d = self.config.hidden_size;
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| b.linears().into_iter().map(|(_, l)| lin(l)).sum::<usize>() + 4 * 2 * d)
            .sum();
        let head = self.head.as_ref().map_or(0, BaseWeight::bytes);
        blocks + self.embed.bytes() + head + 4 * d
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
