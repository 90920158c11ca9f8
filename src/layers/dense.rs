//! Fully connected layer: y = x W + b, or y = x W without a bias. Shapes: x `[N, in]` ->
//! y `[N, out]`; W `[in, out]`, b `[out]`. See `ops::dense` for the formulas.

use super::{check_backward, check_input, Layer, Mode, Param};
use crate::error::{Error, Result};
use crate::ops::dense::{dense_backward_into, dense_forward_into};
use crate::ops::Precision;
use crate::tensor::Tensor;

pub struct DenseLayer {
    name: String,
    input: Vec<usize>,
    output: Vec<usize>,
    pub weight: Param,
    /// None for a layer without a bias.
    pub bias: Option<Param>,
    /// The products' precision (`Layer::set_precision`).
    precision: Precision,
    y: Tensor,
    dx: Tensor,
}

impl DenseLayer {
    /// `input` must be `[features]`: a flatten layer goes before a dense layer on images.
    pub fn new(name: String, input: &[usize], weight: Param, bias: Option<Param>) -> Result<DenseLayer> {
        let (fin, fout) = weight.value.dims2(&name)?;
        if input != [fin] {
            return Err(Error::shape(&name, format!("input [{fin}] (put a flatten layer before dense on images)"), format!("{input:?}")));
        }
        Ok(DenseLayer {
            name,
            input: input.to_vec(),
            output: vec![fout],
            weight,
            bias,
            precision: Precision::F32,
            y: Tensor::empty(),
            dx: Tensor::empty(),
        })
    }
}

impl Layer for DenseLayer {
    fn kind(&self) -> &'static str {
        "dense"
    }
    fn label(&self) -> &str {
        &self.name
    }
    fn output_shape(&self) -> &[usize] {
        &self.output
    }
    fn forward(&mut self, x: &Tensor, _mode: Mode) -> Result<()> {
        check_input(&self.name, x, &self.input)?;
        dense_forward_into(x, &self.weight.value, self.bias.as_ref().map(|b| &b.value), self.precision, &mut self.y)
    }
    fn output(&self) -> &Tensor {
        &self.y
    }
    fn backward(&mut self, x: &Tensor, dy: &Tensor, need_input_grad: bool) -> Result<()> {
        check_backward(&self.name, x, &self.y, dy)?;
        let dx = if need_input_grad { Some(&mut self.dx) } else { None };
        let db = self.bias.as_mut().map(|b| &mut b.grad);
        dense_backward_into(x, &self.weight.value, dy, self.precision, dx, &mut self.weight.grad, db)
    }
    fn input_grad(&self) -> &Tensor {
        &self.dx
    }
    fn backward_reads_output(&self) -> bool {
        false
    }
    fn buffers_mut(&mut self) -> Option<(&mut Tensor, &mut Tensor)> {
        Some((&mut self.y, &mut self.dx))
    }
    fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }
    fn params(&self) -> Vec<&Param> {
        std::iter::once(&self.weight).chain(self.bias.as_ref()).collect()
    }
    fn params_mut(&mut self) -> Vec<&mut Param> {
        std::iter::once(&mut self.weight).chain(self.bias.as_mut()).collect()
    }
    fn flops(&self) -> u64 {
        2 * self.weight.value.len() as u64
    }
}
