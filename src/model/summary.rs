//! A Keras-style summary table: layer, output shape, parameters, forward MFLOPs per image.

use super::network::Network;
use crate::layers::dims;

pub fn summary(net: &Network) -> String {
    let mut rows = vec![("Layer".to_string(), "Output shape".to_string(), "Params".to_string(), "MFLOPs".to_string())];
    let input = net.spec().input;
    rows.push(("input".into(), format!("[{}, {}, {}]", input[0], input[1], input[2]), "0".into(), "-".into()));
    for layer in net.layers() {
        let params: usize = layer.params().iter().map(|p| p.value.len()).sum();
        let flops = layer.flops();
        let mflops = if flops > 0 { format!("{:.2}", flops as f64 / 1e6) } else { "-".into() };
        rows.push((layer.label().to_string(), format!("[{}]", dims(layer.output_shape())), params.to_string(), mflops));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(10);
    let w3 = rows.iter().map(|r| r.3.len()).max().unwrap_or(0);
    let rule = "-".repeat(w0 + w1 + w2 + w3 + 6);
    let mut out = format!("Model: {}\n{rule}\n", net.spec().name);
    for (k, (a, b, c, d)) in rows.iter().enumerate() {
        out.push_str(&format!("{a:<w0$}  {b:<w1$}  {c:>w2$}  {d:>w3$}\n"));
        if k == 0 {
            out.push_str(&format!("{rule}\n"));
        }
    }
    out.push_str(&format!(
        "{rule}\nTotal parameters: {}\nForward: {:.2} MFLOPs per image (a training step is about 3x)\n",
        net.num_params(),
        net.flops() as f64 / 1e6
    ));
    out
}
