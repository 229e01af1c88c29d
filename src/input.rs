//! Inputs: NumPy `.npy` arrays, PNG images and numeric CSV tables, and the
//! rule that turns an array into a batch of network inputs.

use std::io::Read;
use std::path::Path;

use ndarray::{Array2, ArrayD, IxDyn};

use crate::{Error, Result};

fn input_err(path: &Path, line: Option<usize>, message: impl Into<String>) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Reads an input file by extension: `.npy`, `.png`, `.csv` (or `.csv.gz`).
pub fn read_array(path: impl AsRef<Path>) -> Result<ArrayD<f64>> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.ends_with(".npy") {
        read_npy(path)
    } else if name.ends_with(".png") {
        read_png(path)
    } else if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        Ok(read_csv(path)?.into_dyn())
    } else {
        Err(input_err(
            path,
            None,
            "unknown input format: expected .npy, .png or .csv",
        ))
    }
}

/// Reads a NumPy `.npy` file (versions 1–3, C order, little-endian or
/// single-byte `u1/i1/u2/i2/u4/i4/u8/i8/f4/f8/b1`) into `f64`.
pub fn read_npy(path: impl AsRef<Path>) -> Result<ArrayD<f64>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npy(&bytes).map_err(|m| input_err(path, None, m))
}

fn parse_npy(bytes: &[u8]) -> std::result::Result<ArrayD<f64>, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes.get(start..start + hlen).ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let field = |key: &str| -> std::result::Result<&str, String> {
        let k = format!("'{key}':");
        let i = header
            .find(&k)
            .ok_or_else(|| format!("header has no '{key}'"))?;
        Ok(header[i + k.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("bad 'descr'")?;
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported; save with C order".into());
    }
    let shape_txt = field("shape")?;
    let shape_txt = shape_txt
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("bad 'shape'")?;
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension '{s}'"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let data = &bytes[start + hlen..];
    let (endian, ty) = descr.split_at(1);
    if endian == ">" {
        return Err(format!("big-endian dtype '{descr}' is not supported"));
    }
    macro_rules! read {
        ($t:ty) => {{
            let w = std::mem::size_of::<$t>();
            if data.len() < n * w {
                return Err(format!(
                    "data holds {} bytes, shape {:?} of '{descr}' needs {}",
                    data.len(),
                    shape,
                    n * w
                ));
            }
            data[..n * w]
                .chunks_exact(w)
                .map(|c| {
                    let mut b = [0u8; std::mem::size_of::<$t>()];
                    b.copy_from_slice(c);
                    <$t>::from_le_bytes(b) as f64
                })
                .collect::<Vec<f64>>()
        }};
    }
    let values = match ty {
        "u1" | "b1" => read!(u8),
        "i1" => read!(i8),
        "u2" => read!(u16),
        "i2" => read!(i16),
        "u4" => read!(u32),
        "i4" => read!(i32),
        "u8" => read!(u64),
        "i8" => read!(i64),
        "f4" => read!(f32),
        "f8" => read!(f64),
        _ => return Err(format!("unsupported dtype '{descr}'")),
    };
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| e.to_string())
}

/// Writes an `f32` array as a version-1 `.npy` file.
pub fn write_npy_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    let path = path.as_ref();
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// Reads a PNG image as `[H, W]` (grey) or `[H, W, 3]` (colour; alpha is
/// dropped), with values 0–255.
pub fn read_png(path: impl AsRef<Path>) -> Result<ArrayD<f64>> {
    let path = path.as_ref();
    let img =
        image::open(path).map_err(|e| input_err(path, None, format!("not a readable PNG: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if img.color().has_color() {
        let rgb = img.to_rgb8();
        let v: Vec<f64> = rgb.as_raw().iter().map(|&b| b as f64).collect();
        ArrayD::from_shape_vec(IxDyn(&[h, w, 3]), v)
            .map_err(|e| input_err(path, None, e.to_string()))
    } else {
        let g = img.to_luma8();
        let v: Vec<f64> = g.as_raw().iter().map(|&b| b as f64).collect();
        ArrayD::from_shape_vec(IxDyn(&[h, w]), v).map_err(|e| input_err(path, None, e.to_string()))
    }
}

/// Reads a numeric CSV table (comma-separated, no header, every row the same
/// length; a `.gz` file is decompressed). Errors name the line.
pub fn read_csv(path: impl AsRef<Path>) -> Result<Array2<f64>> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut s)
            .map_err(|e| input_err(path, None, format!("gzip: {e}")))?;
        s
    } else {
        String::from_utf8(raw).map_err(|_| input_err(path, None, "not UTF-8 text"))?
    };
    let mut values = Vec::new();
    let mut width = None;
    let mut rows = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut n = 0;
        for field in line.split(',') {
            let f = field.trim();
            let v: f64 = f
                .parse()
                .map_err(|_| input_err(path, Some(i + 1), format!("'{f}' is not a number")))?;
            values.push(v);
            n += 1;
        }
        match width {
            None => width = Some(n),
            Some(w) if w != n => {
                return Err(input_err(
                    path,
                    Some(i + 1),
                    format!("row has {n} fields, earlier rows have {w}"),
                ))
            }
            _ => {}
        }
        rows += 1;
    }
    let w = width.ok_or_else(|| input_err(path, None, "no data rows"))?;
    Array2::from_shape_vec((rows, w), values).map_err(|e| input_err(path, None, e.to_string()))
}

fn squeezed(shape: &[usize]) -> Vec<usize> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

/// Turns an array into a batch of flattened samples for a network whose
/// sample shape is `sample`:
///
/// * `arr` has the sample's shape, up to axes of extent 1 → one sample;
/// * `arr` is `[N, …]` with the rest the sample's shape up to axes of extent 1 → N samples;
/// * `arr` is a table `[N, len]` whose rows have the sample's size (a CSV
///   dataset) → N samples, one flattened sample per row;
/// * with `reshape`, any array whose size is a multiple of the sample size,
///   read row-major (e.g. a `[28, 28]` image for a `[1, 784, 1]` input).
///
/// Anything else is a shape error that names both shapes.
pub fn to_batch(arr: &ArrayD<f64>, sample: &[usize], reshape: bool) -> Result<Array2<f64>> {
    let per: usize = sample.iter().product();
    let flat: Vec<f64> = arr.iter().copied().collect();
    let fits = squeezed(arr.shape()) == squeezed(sample)
        || (arr.ndim() >= 1 && squeezed(&arr.shape()[1..]) == squeezed(sample))
        || (arr.ndim() == 2 && arr.shape()[1] == per)
        || (reshape && per > 0 && flat.len() % per == 0);
    if !fits || per == 0 || flat.is_empty() {
        return Err(Error::Shape(format!(
            "input of shape {:?} does not fit the network's input {:?} (nor [N, ...] of it){}",
            arr.shape(),
            sample,
            if reshape {
                String::new()
            } else {
                format!("; with the reshape option any array of a multiple of {per} elements is read row-major")
            }
        )));
    }
    let n = flat.len() / per;
    Array2::from_shape_vec((n, per), flat).map_err(|e| Error::Shape(e.to_string()))
}

/// Converts images from `[N, H, W, C]` / `[H, W, C]` to `[N, C, H, W]` / `[C, H, W]`.
pub fn hwc_to_chw(arr: &ArrayD<f64>) -> Result<ArrayD<f64>> {
    let perm: Vec<usize> = match arr.ndim() {
        3 => vec![2, 0, 1],
        4 => vec![0, 3, 1, 2],
        r => {
            return Err(Error::Shape(format!(
                "HWC to CHW needs an array of rank 3 or 4, got rank {r} {:?}",
                arr.shape()
            )))
        }
    };
    Ok(arr
        .view()
        .permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned())
}

/// Per-channel normalisation of a batch of samples, `x ← (x − mean_c) / std_c`,
/// as image networks trained on normalised pixels expect.
///
/// `x` is `[N, input_len]` with each row laid out as `shape` (one sample's
/// shape, batch first when it has one): the channel axis is the one after a
/// leading batch axis of size 1 (`[1, C, H, W]`, `[1, C, L]`), else the first.
/// `mean` and `std` hold one value for every channel, or one for all; every
/// `std` must be positive and finite.
pub fn normalise(x: &mut Array2<f64>, shape: &[usize], mean: &[f64], std: &[f64]) -> Result<()> {
    let dims: &[usize] = match shape {
        [1, rest @ ..] if !rest.is_empty() => rest,
        s => s,
    };
    let channels = dims.first().copied().unwrap_or(1).max(1);
    let per = x.ncols() / channels;
    if per * channels != x.ncols() {
        return Err(Error::Shape(format!(
            "samples of {} values cannot be split into {channels} channels",
            x.ncols()
        )));
    }
    let expand = |v: &[f64], name: &str| -> Result<Vec<f64>> {
        match v.len() {
            1 => Ok(vec![v[0]; channels]),
            n if n == channels => Ok(v.to_vec()),
            n => Err(Error::InvalidArgument(format!(
                "--{name} has {n} values; the input {shape:?} has {channels} channels (give {channels} or 1)"
            ))),
        }
    };
    let mean = expand(mean, "mean")?;
    let std = expand(std, "std")?;
    if let Some(bad) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(Error::InvalidArgument(format!(
            "--std {bad} is not a positive finite number"
        )));
    }
    if let Some(bad) = mean.iter().find(|m| !m.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "--mean {bad} is not finite"
        )));
    }
    for mut row in x.rows_mut() {
        for (c, chunk) in row
            .as_slice_mut()
            .expect("a standard-layout batch")
            .chunks_mut(per)
            .enumerate()
        {
            for v in chunk {
                *v = (*v - mean[c]) / std[c];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_roundtrip_f32() {
        let dir = std::env::temp_dir().join(format!("nnx-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        write_npy_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.5, -6.0]).unwrap();
        let a = read_npy(&p).unwrap();
        assert_eq!(a.shape(), &[2, 3]);
        assert_eq!(a[[1, 1]], 5.5);
        assert_eq!(a[[1, 2]], -6.0);
    }

    #[test]
    fn npy_errors_are_messages_not_panics() {
        assert!(parse_npy(b"hello").is_err());
        assert!(parse_npy(b"\x93NUMPY\x01\x00\x05\x00{'de").is_err());
        let mut bad = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }\n";
        bad.extend_from_slice(&(h.len() as u16).to_le_bytes());
        bad.extend_from_slice(h.as_bytes());
        bad.extend_from_slice(&[0u8; 8]); // one f64 where four are announced
        let e = parse_npy(&bad).unwrap_err();
        assert!(e.contains("needs 32"), "{e}");
    }

    #[test]
    fn batching_rules() {
        let img = ArrayD::zeros(IxDyn(&[28, 28]));
        assert_eq!(
            to_batch(&img, &[1, 1, 28, 28], false).unwrap().dim(),
            (1, 784)
        );
        assert!(to_batch(&img, &[1, 784, 1], false).is_err());
        assert_eq!(to_batch(&img, &[1, 784, 1], true).unwrap().dim(), (1, 784));
        let many = ArrayD::zeros(IxDyn(&[5, 28, 28]));
        assert_eq!(
            to_batch(&many, &[1, 1, 28, 28], false).unwrap().dim(),
            (5, 784)
        );
        let table = ArrayD::zeros(IxDyn(&[100, 784]));
        assert_eq!(
            to_batch(&table, &[1, 1, 28, 28], false).unwrap().dim(),
            (100, 784)
        );
        let v = ArrayD::zeros(IxDyn(&[3]));
        assert_eq!(to_batch(&v, &[1], false).unwrap().dim(), (3, 1));
    }

    #[test]
    fn normalise_per_channel() {
        let mut x = Array2::from_shape_vec((1, 6), vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0]).unwrap();
        normalise(&mut x, &[1, 3, 1, 2], &[1.0, 2.0, 3.0], &[0.5]).unwrap();
        assert!(x.iter().all(|v| *v == 0.0));
        let mut y = Array2::from_shape_vec((2, 2), vec![1.0, 3.0, 5.0, 7.0]).unwrap();
        normalise(&mut y, &[1, 2], &[1.0], &[2.0]).unwrap();
        assert_eq!(y.as_slice().unwrap(), &[0.0, 1.0, 2.0, 3.0]);
        assert!(normalise(&mut y, &[1, 2], &[1.0, 2.0, 3.0], &[1.0]).is_err());
        assert!(normalise(&mut y, &[1, 2], &[0.0], &[0.0]).is_err());
    }
}
