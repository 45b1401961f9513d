//! GGUF header, metadata and tensor-table parser over a byte slice (mmap natively, a JS
//! buffer in the browser). Versions 2 and 3, little-endian. Every count, length and offset
//! is checked against the bytes that are actually there before anything is allocated, so a
//! truncated or corrupted file yields `Error::Gguf` naming the byte offset and the problem.

use std::collections::BTreeMap;

use super::quant::GgmlType;
use super::value::Value;
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Deepest array-of-array nesting accepted (the spec allows nesting; real files use 1).
const MAX_ARRAY_DEPTH: u32 = 4;
const DEFAULT_ALIGNMENT: u64 = 32;

/// One entry of the tensor table, with its data range resolved to absolute file offsets.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Name verbatim from the file, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions as GGUF stores them: fastest-varying first (`[in, out]` for a matrix).
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Absolute byte offset of the tensor data in the file.
    pub offset: u64,
    /// Byte length of the tensor data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Shape in row-major order (slowest first), as PyTorch/HF and burn write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// This tensor's bytes inside the file's bytes (range validated at parse time).
    pub fn data<'a>(&self, file: &'a [u8]) -> Result<&'a [u8]> {
        let start = self.offset as usize;
        file.get(start..start + self.n_bytes as usize)
            .ok_or_else(|| Error::tensor(&self.name, "data lies outside the file"))
    }
}

/// A parsed GGUF file (metadata and tensor table; tensor bytes stay in the caller's buffer).
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// Name used in error messages (the path, or "model.gguf" in the browser).
    pub name: String,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset where the tensor-data section starts.
    pub data_offset: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Gguf {
            file: self.file.to_string(),
            offset: self.pos as u64,
            reason: reason.into(),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must be satisfiable by the remaining bytes at `min_item_size` each.
    fn count(&mut self, what: &str, min_item_size: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let max = self.remaining() as u64 / min_item_size.max(1) as u64;
        if n > max {
            return Err(self.err(format!(
                "{what} is {n}, but only {} bytes remain (corrupted count?)",
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let start = self.pos;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| Error::Gguf {
            file: self.file.to_string(),
            offset: start as u64,
            reason: format!("{what} is not valid UTF-8"),
        })
    }

    fn value(&mut self, ty: u32, depth: u32, key: &str) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("`{key}`: bool byte is {b}, not 0 or 1"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "`{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let item_ty = self.u32(key)?;
                let n = self.count(
                    key,
                    min_value_size(item_ty).ok_or_else(|| {
                        self.err(format!("`{key}`: unknown array item type {item_ty}"))
                    })?,
                )?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item_ty, depth + 1, key)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            t => return Err(self.err(format!("`{key}`: unknown value type {t}"))),
        })
    }
}

/// Smallest encoded size of a value of type `ty` (a string is at least its u64 length).
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

impl GgufFile {
    /// Parses the header, metadata and tensor table of `bytes` (the whole file).
    /// `name` is used in error messages.
    pub fn parse(bytes: &[u8], name: &str) -> Result<GgufFile> {
        let mut c = Cursor {
            bytes,
            pos: 0,
            file: name,
        };
        if c.take(4, "magic")? != MAGIC {
            return Err(Error::Gguf {
                file: name.into(),
                offset: 0,
                reason: "not a GGUF file (magic is not \"GGUF\")".into(),
            });
        }
        let version = c.u32("version")?;
        if version != 2 && version != 3 {
            return Err(c.err(format!(
                "unsupported GGUF version {version} (supported: 2, 3; big-endian files are not supported)"
            )));
        }
        // A tensor-table entry is at least: name len 8 + n_dims 4 + type 4 + offset 8.
        let n_tensors = c.count("tensor count", 24)?;
        // A metadata entry is at least: key len 8 + type 4 + 1 byte of value.
        let n_kv = c.count("metadata count", 13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32("metadata type")?;
            let v = c.value(ty, 0, &key)?;
            metadata.insert(key, v);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => return Err(c.err("general.alignment is not a power of two up to 1 MiB")),
            },
        };
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let tname = c.string("tensor name")?;
            let n_dims = c.u32("tensor n_dims")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.err(format!(
                    "tensor `{tname}`: {n_dims} dimensions (1..=4 allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64("tensor dim")?);
            }
            let ty = c.u32("tensor type")?;
            let dtype = GgmlType::from_id(ty)
                .ok_or_else(|| c.err(format!("tensor `{tname}`: unsupported ggml type {ty}")))?;
            let rel = c.u64("tensor offset")?;
            raw.push((tname, dims, dtype, rel, c.pos));
        }
        let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
        let file_len = bytes.len() as u64;
        let mut tensors = Vec::with_capacity(raw.len());
        for (tname, dims, dtype, rel, at) in raw {
            let bad = |reason: String| Error::Gguf {
                file: name.into(),
                offset: at as u64,
                reason: format!("tensor `{tname}`: {reason}"),
            };
            let n = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(format!("dims {dims:?} are zero or overflow")))?;
            if dims[0] % dtype.block_elems() as u64 != 0 {
                return Err(bad(format!(
                    "first dim {} is not a multiple of the {:?} block size {}",
                    dims[0],
                    dtype,
                    dtype.block_elems()
                )));
            }
            let n_bytes = (n / dtype.block_elems() as u64)
                .checked_mul(dtype.block_bytes() as u64)
                .ok_or_else(|| bad("byte size overflows".into()))?;
            if rel % alignment != 0 {
                return Err(bad(format!(
                    "data offset {rel} is not aligned to {alignment}"
                )));
            }
            let offset = data_offset
                .checked_add(rel)
                .filter(|o| o.checked_add(n_bytes).is_some_and(|end| end <= file_len))
                .ok_or_else(|| {
                    bad(format!(
                        "data [{rel}, +{n_bytes}) lies past the end of the file ({file_len} bytes; truncated?)"
                    ))
                })?;
            tensors.push(TensorInfo {
                name: tname,
                dims,
                dtype,
                offset,
                n_bytes,
            });
        }
        Ok(GgufFile {
            name: name.into(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }

    /// The tensor named `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A metadata value, or a `Metadata` error naming the missing key.
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata
            .get(key)
            .ok_or_else(|| self.meta_err(key, "missing"))
    }

    /// An unsigned integer metadata value.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.get(key)?;
        v.as_u64().ok_or_else(|| {
            self.meta_err(
                key,
                &format!("expected an integer, found {}", v.type_name()),
            )
        })
    }

    /// A float metadata value.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        v.as_f64().ok_or_else(|| {
            self.meta_err(key, &format!("expected a number, found {}", v.type_name()))
        })
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.get(key)?;
        v.as_str().ok_or_else(|| {
            self.meta_err(key, &format!("expected a string, found {}", v.type_name()))
        })
    }

    /// A metadata array whose items are all strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.get(key)?;
        let arr = v.as_array().ok_or_else(|| {
            self.meta_err(key, &format!("expected an array, found {}", v.type_name()))
        })?;
        arr.iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| self.meta_err(key, "array item is not a string"))
            })
            .collect()
    }

    pub(crate) fn meta_err(&self, key: &str, reason: &str) -> Error {
        Error::Metadata {
            file: self.name.clone(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a tiny but complete GGUF v3 file: every metadata type incl. a nested array,
    /// and two tensors (F32 and Q8_0).
    pub fn sample_file() -> Vec<u8> {
        let mut b = Vec::new();
        let s = |b: &mut Vec<u8>, x: &str| {
            b.extend((x.len() as u64).to_le_bytes());
            b.extend(x.as_bytes());
        };
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend(2u64.to_le_bytes()); // tensors
        b.extend(5u64.to_le_bytes()); // kv
        s(&mut b, "general.architecture");
        b.extend(8u32.to_le_bytes());
        s(&mut b, "llama");
        s(&mut b, "general.alignment");
        b.extend(4u32.to_le_bytes());
        b.extend(32u32.to_le_bytes());
        s(&mut b, "a.f");
        b.extend(6u32.to_le_bytes());
        b.extend(1.5f32.to_le_bytes());
        s(&mut b, "a.nested");
        b.extend(9u32.to_le_bytes());
        b.extend(9u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        for vals in [[1i32, 2], [3, 4]] {
            b.extend(5u32.to_le_bytes());
            b.extend(2u64.to_le_bytes());
            for v in vals {
                b.extend(v.to_le_bytes());
            }
        }
        s(&mut b, "a.flag");
        b.extend(7u32.to_le_bytes());
        b.push(1);
        s(&mut b, "t.f32");
        b.extend(1u32.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        s(&mut b, "t.q8");
        b.extend(2u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(32u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        for v in [1.0f32, -2.0, 3.0, 0.5] {
            b.extend(v.to_le_bytes());
        }
        b.resize(b.len() + 16, 0);
        b.extend(half::f16::from_f32(0.25).to_le_bytes());
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        b
    }

    #[test]
    fn parses_every_value_type_and_tensor_offsets() {
        let bytes = sample_file();
        let f = GgufFile::parse(&bytes, "t.gguf").unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(f.get_f64("a.f").unwrap(), 1.5);
        assert_eq!(f.metadata["a.flag"], Value::Bool(true));
        let nested = f.get("a.nested").unwrap().as_array().unwrap();
        assert_eq!(nested[1], Value::Array(vec![Value::I32(3), Value::I32(4)]));
        let t = f.tensor("t.f32").unwrap();
        let d = t.data(&bytes).unwrap();
        assert_eq!(f32::from_le_bytes(d[4..8].try_into().unwrap()), -2.0);
        let q = f.tensor("t.q8").unwrap();
        assert_eq!(q.shape(), vec![1, 32]);
        assert_eq!(q.n_bytes, 34);
        assert_eq!(q.offset, f.data_offset + 32);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample_file();
        for n in 0..bytes.len() {
            assert!(
                GgufFile::parse(&bytes[..n], "t.gguf").is_err(),
                "prefix {n} parsed"
            );
        }
    }

    #[test]
    fn huge_counts_are_refused_without_allocating() {
        let mut bytes = sample_file();
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes()); // kv count
        let e = GgufFile::parse(&bytes, "t.gguf").unwrap_err().to_string();
        assert!(e.contains("metadata count"), "{e}");
    }
}
