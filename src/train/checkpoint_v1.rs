//! Reading checkpoints of format 1 (`convnet-checkpoint-1`, written before the model spec and
//! the run were kept apart). Two things differ from today's format:
//! - the metadata holds the whole config as one JSON entry, "config", in the config file's
//!   layout, instead of "model" and "run";
//! - inside a residual block, tensor names took their index from the block's built layers, not
//!   from its config list, so a relu folded into the conv before it shifted the later ones: the
//!   second conv of `[conv2d, relu, conv2d, relu]` in block 2 was "2.residual.1.conv2d.weight"
//!   and is now "2.residual.2.conv2d.weight"; and a projection shortcut was
//!   `<block>.residual.shortcut.weight`, now `<block>.residual.shortcut.conv2d.weight`.
//!   Top-level names are the same in both (they always used config indexes).
//!
//! Such a file is read by renaming its tensors (and its optimiser state, `optim.<name>.m`, ...)
//! to today's names, found by walking the model's plan as the old builder numbered it.

use std::collections::HashMap;

use crate::config::Config;
use crate::model::{LayerPlan, PlannedOp};

pub(crate) const FORMAT: &str = "convnet-checkpoint-1";

/// The config of the "config" metadata entry.
pub(crate) fn config(json: &str) -> serde_json::Result<Config> {
    serde_json::from_str(json)
}

/// `tensors` with every name of format 1 renamed to today's; names that match no layer (there
/// should be none) are kept as they are, and are reported missing or left over as usual.
pub(crate) fn rename_tensors<T>(plan: &[LayerPlan], tensors: HashMap<String, T>) -> HashMap<String, T> {
    let mut prefixes = Vec::new();
    old_prefixes(plan, "", true, &mut prefixes);
    // Longest first: a block's own prefix "3.residual." is a prefix of its layers' prefixes.
    prefixes.sort_by_key(|(old, _)| std::cmp::Reverse(old.len()));
    tensors
        .into_iter()
        .map(|(name, value)| {
            let (optim, param) = match name.strip_prefix("optim.") {
                Some(rest) => ("optim.", rest),
                None => ("", name.as_str()),
            };
            let renamed = prefixes.iter().find_map(|(old, new)| param.strip_prefix(old.as_str()).map(|role| format!("{optim}{new}{role}")));
            (renamed.unwrap_or(name), value)
        })
        .collect()
}

/// (old prefix, today's prefix) of every layer of `plan` and of its blocks' layers, the old one
/// as format 1 numbered it: config indexes at the top, built-layer indexes inside blocks.
fn old_prefixes(plan: &[LayerPlan], path: &str, top: bool, out: &mut Vec<(String, String)>) {
    for (built, layer) in plan.iter().enumerate() {
        let index = if top { layer.index } else { built };
        out.push((format!("{path}{index}.{}.", layer.kind()), layer.param_prefix.clone()));
        if let PlannedOp::Residual { body, shortcut } = &layer.op {
            let block = format!("{path}{index}.residual.");
            old_prefixes(body, &block, false, out);
            if let Some(s) = shortcut {
                out.push((format!("{block}shortcut."), s.param_prefix.clone()));
            }
        }
    }
}
