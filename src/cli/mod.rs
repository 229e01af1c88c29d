//! Subcommands beyond the verification core, one file per family.

pub mod attack;
pub mod attribute;
pub mod explain;
pub mod robustness;

/// The entry of a `(name, value)` table whose name is `s` (any case), or an
/// error naming `what` and listing the names.
pub(crate) fn by_name<T: Copy>(table: &[(&str, T)], s: &str, what: &str) -> anyhow::Result<T> {
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            anyhow::anyhow!("unknown {what} '{s}': use {}", names.join(", "))
        })
}

/// The name of `v` in a `(name, value)` table.
pub(crate) fn name_in<T: PartialEq>(table: &[(&'static str, T)], v: &T) -> &'static str {
    table.iter().find(|(_, e)| e == v).map_or("?", |(n, _)| n)
}
