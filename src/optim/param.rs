//! One parameter tensor as the optimiser sees it: its values (updated in place), the gradient of
//! the loss with respect to them, and whether weight decay applies.
//!
//! The optimiser keeps its per-parameter state (momentum, Adam moments) by position, so the model
//! must pass the same list, in the same order and with the same sizes, on every step. Names are
//! used to label that state in checkpoints (`<name>.m`, `<name>.v`, `<name>.momentum`) and in
//! error messages, so they must be unique.

#[derive(Debug)]
pub struct Param<'a> {
    /// Unique name, e.g. "conv1.weight".
    pub name: &'a str,
    /// The values, updated in place by `Optimizer::step`.
    pub value: &'a mut [f32],
    /// dLoss/dvalue, the same length as `value`.
    pub grad: &'a [f32],
    /// Whether weight decay applies: true for weights; false for biases and normalisation
    /// parameters, which decay would only pull towards zero without regularising anything.
    pub decay: bool,
    /// Multiplies the step's learning rate for this parameter (a param group's `lr_scale`);
    /// 0 freezes it for the step: neither it nor its optimiser state changes.
    pub lr_scale: f32,
    /// Multiplies the optimiser's weight decay for this parameter.
    pub weight_decay_scale: f32,
}

impl<'a> Param<'a> {
    /// A parameter with the optimiser's own settings (both scales 1).
    pub fn new(name: &'a str, value: &'a mut [f32], grad: &'a [f32], decay: bool) -> Param<'a> {
        Param { name, value, grad, decay, lr_scale: 1.0, weight_decay_scale: 1.0 }
    }
}
