//! VNN-COMP instance lists (`instances.csv`).
//!
//! One instance per line, no header: `onnx_path,vnnlib_path,timeout_seconds`.
//! Fields are trimmed, blank lines are skipped, the last line may lack its
//! newline, and relative paths are resolved against the folder that holds the
//! CSV file (absolute paths are kept as they are).

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One verification instance: a network, a property and a time limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The ONNX network, resolved against the CSV's folder.
    pub onnx: PathBuf,
    /// The VNN-LIB property, resolved against the CSV's folder.
    pub vnnlib: PathBuf,
    /// The time limit in seconds (finite and positive).
    pub timeout_s: f64,
    /// The 1-based line of the CSV this instance came from.
    pub line: usize,
}

/// Reads an instance list. A line without exactly three fields, with an empty
/// path, or with a timeout that is not a positive finite number is an
/// [`Error::Input`] naming the line. The files themselves are not opened.
pub fn read_instances(path: impl AsRef<Path>) -> Result<Vec<Instance>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_instances(&text, path)
}

/// Parses the text of an instance list read from `csv` (which names it in
/// errors and anchors relative paths).
fn parse_instances(text: &str, csv: &Path) -> Result<Vec<Instance>> {
    let folder = csv.parent().unwrap_or_else(|| Path::new(""));
    let bad = |line: usize, message: String| Error::Input {
        path: csv.to_path_buf(),
        line: Some(line),
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (k, raw) in text.lines().enumerate() {
        let line = k + 1;
        let row = raw.trim();
        if row.is_empty() {
            continue;
        }
        let fields: Vec<&str> = row.split(',').map(str::trim).collect();
        let [onnx, vnnlib, timeout] = fields.as_slice() else {
            return Err(bad(
                line,
                format!(
                    "expected 3 comma-separated fields (onnx,vnnlib,timeout), found {}",
                    fields.len()
                ),
            ));
        };
        if onnx.is_empty() || vnnlib.is_empty() {
            return Err(bad(line, "empty path".to_string()));
        }
        let timeout_s = match timeout.parse::<f64>() {
            Ok(t) if t.is_finite() && t > 0.0 => t,
            _ => {
                return Err(bad(
                    line,
                    format!("timeout `{timeout}` is not a positive number of seconds"),
                ))
            }
        };
        out.push(Instance {
            onnx: folder.join(onnx),
            vnnlib: folder.join(vnnlib),
            timeout_s,
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_resolves_paths() {
        let text = "\u{feff}onnx/a.onnx, vnnlib/p.vnnlib ,116\r\n\n  \n\
                    /abs/b.onnx,/abs/q.vnnlib.gz,300.5";
        let got = parse_instances(text, Path::new("/data/bench/instances.csv")).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].onnx, Path::new("/data/bench/onnx/a.onnx"));
        assert_eq!(got[0].vnnlib, Path::new("/data/bench/vnnlib/p.vnnlib"));
        assert_eq!((got[0].timeout_s, got[0].line), (116.0, 1));
        assert_eq!(got[1].onnx, Path::new("/abs/b.onnx"));
        assert_eq!(got[1].vnnlib, Path::new("/abs/q.vnnlib.gz"));
        assert_eq!((got[1].timeout_s, got[1].line), (300.5, 4));
        // A bare file name resolves against the current folder.
        let got = parse_instances("a.onnx,p.vnnlib,1\n", Path::new("instances.csv")).unwrap();
        assert_eq!(got[0].onnx, Path::new("a.onnx"));
        assert!(parse_instances("", Path::new("x.csv")).unwrap().is_empty());
    }

    #[test]
    fn bad_rows_name_the_line() {
        let cases = [
            ("a,b,1\na,b\n", 2, "found 2"),
            ("a,b,1,2", 1, "found 4"),
            ("\n\na,b,soon", 3, "timeout `soon`"),
            ("a,b,-5", 1, "positive"),
            ("a,b,0", 1, "positive"),
            ("a,b,inf", 1, "positive"),
            ("a,b,NaN", 1, "positive"),
            (",b,1", 1, "empty path"),
        ];
        for (text, want, needle) in cases {
            match parse_instances(text, Path::new("i.csv")) {
                Err(Error::Input {
                    line: Some(line),
                    message,
                    ..
                }) => {
                    assert_eq!(line, want, "{text:?}");
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                }
                other => panic!("{text:?}: expected an input error, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = read_instances("/nonexistent/instances.csv").unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
