//! `convnet predict`: top-5 classes of images under a checkpoint.

use clap::Args;
use std::path::PathBuf;

use convnet::data::read_image;
use convnet::ops::softmax::softmax;
use convnet::ops::Precision;
use convnet::train::Checkpoint;
use convnet::Tensor;

/// Classify PNG or JPEG images of any size: each is resized to the model's input, converted to
/// its channels (RGB or grayscale, with a note on stderr) and normalised as in training; prints
/// the top-5 classes. Other formats, and images over 50 megapixels, are refused.
#[derive(Args)]
pub struct PredictArgs {
    /// A checkpoint written by `convnet train`.
    #[arg(long)]
    model: PathBuf,
    /// Print one JSON object per image instead (for scripts): {"image", "top5": [{"class",
    /// "name", "probability"}], "logits", "probabilities"}, every class's numbers in full
    /// float32 precision.
    #[arg(long)]
    json: bool,
    /// The precision of the products: f32, bf16, bf16-tiles or bf16-winograd [default: the
    /// checkpoint's train.precision, as the model was trained].
    #[arg(long)]
    precision: Option<Precision>,
    /// Images to classify.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct Ranked<'a> {
    class: usize,
    name: &'a str,
    probability: f32,
}

#[derive(serde::Serialize)]
struct Prediction<'a> {
    image: String,
    top5: Vec<Ranked<'a>>,
    logits: &'a [f32],
    probabilities: &'a [f32],
}

pub fn run(args: PredictArgs) -> convnet::Result<()> {
    let ck = Checkpoint::load(&args.model)?;
    let mut net = ck.network()?;
    if let Some(p) = args.precision {
        net.set_precision(p);
    }
    convnet::ops::precision::announce(net.precision());
    let [h, w, c] = ck.config.model.input;
    for path in &args.images {
        let img = read_image(path, Some((h, w)), c)?;
        crate::image_notes(path, &img);
        let mut x = Tensor::zeros(&[1, h, w, c]);
        ck.meta.normalization.apply(&img.pixels, x.data_mut());
        let logits = net.predict(&x)?;
        let probs = softmax(&logits)?;
        let mut ranked: Vec<(usize, f32)> = probs.data().iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let name = |class: usize| ck.meta.class_names.get(class).map_or("?", |s| s.as_str());
        if args.json {
            let top5 = ranked.iter().take(5).map(|&(class, probability)| Ranked { class, name: name(class), probability }).collect();
            let line = Prediction { image: path.display().to_string(), top5, logits: logits.data(), probabilities: probs.data() };
            println!("{}", serde_json::to_string(&line).expect("plain data serialises"));
            continue;
        }
        println!("{}:", path.display());
        for &(class, p) in ranked.iter().take(5) {
            println!("  {:6.2}%  {}", 100.0 * p, name(class));
        }
    }
    Ok(())
}
