//! `convnet visualize`: pictures of a trained network's first-layer filters and of what each
//! conv and pool layer outputs for one image.

use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

use convnet::data::read_image;
use convnet::model::network::argmax;
use convnet::ops::softmax::softmax;
use convnet::train::Checkpoint;
use convnet::viz::activations::{write_activations_png, ActivationScale};
use convnet::viz::filters::{first_conv_weight, write_filters_png};
use convnet::viz::grid::Tile;
use convnet::Tensor;

/// Draw a trained network: its first-layer filters, or its activations for one image.
#[derive(Args)]
pub struct VisualizeArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    Filters(FiltersArgs),
    Activations(ActivationsArgs),
}

const FILTERS_ABOUT: &str = "\
Draw the kernels of the network's first convolution: the small patterns (edges, blobs, colour
contrasts) that its first layer responds to. The weight is [kh, kw, C_in, C_out]; each of the
C_out filters is one tile, upscaled with nearest-neighbour sampling so each weight is a sharp
square, labelled with its output channel.

Values: each filter is scaled to its own range, over all its input channels together: its
smallest weight is black, its largest white (so the tiles show shapes, not which filter is
strongest; the note in the picture gives the range of all weights).
Channels: with 3 input channels a filter is one RGB tile (channels 0, 1, 2 as red, green,
blue). Otherwise every input channel is its own grayscale tile, one row per filter: channels are
shown side by side rather than averaged, so nothing cancels out.

Example: convnet visualize filters --model runs/fashion-mnist/best.safetensors filters.png";

/// Draw the first convolution's kernels as a labelled grid of tiles.
#[derive(Args)]
#[command(long_about = FILTERS_ABOUT)]
struct FiltersArgs {
    /// A checkpoint written by `convnet train`.
    #[arg(long)]
    model: PathBuf,
    /// The PNG to write.
    #[arg(value_name = "OUT.png")]
    out: PathBuf,
}

const ACTIVATIONS_ABOUT: &str = "\
Run one image through the network and draw what every conv and pool layer outputs: each
channel of a layer's output [H, W, C] is one grayscale tile, labelled with its channel, under a
heading with the layer, its shape and its range of values. The input comes first, as the network
sees it (resized to the model's input and converted to its channels, before normalisation), and
the prediction is noted under the title. A conv followed by a relu is shown after the relu.

Early layers look like filtered copies of the image (edges, light and dark parts); deeper
layers are smaller and more abstract, and some channels stay dark (nothing they look for is
there). Pooling keeps the strongest response of each window at half the size.

Grey levels are linear from 0 (black; or the most negative value, for a conv without relu) to
the largest value (white). --scale channel (the default) takes the largest value of each channel,
so every channel's pattern shows, weak ones too; --scale layer takes the largest value of the
whole layer for all its channels, so strong, weak and dead channels can be told apart. The
heading of each layer gives its range of values. An all-zero (dead) channel is black.

Example: convnet visualize activations --model runs/fashion-mnist/best.safetensors boot.png act.png";

#[derive(Clone, Copy, ValueEnum)]
enum ScaleArg {
    Channel,
    Layer,
}

/// Draw every conv and pool layer's output channels for one image.
#[derive(Args)]
#[command(long_about = ACTIVATIONS_ABOUT)]
struct ActivationsArgs {
    /// A checkpoint written by `convnet train`.
    #[arg(long)]
    model: PathBuf,
    /// The image to run through the network (PNG or JPEG, any size).
    image: PathBuf,
    /// The PNG to write.
    #[arg(value_name = "OUT.png")]
    out: PathBuf,
    /// Grey levels per channel (each stretched to its own largest value) or per layer (one
    /// range for all its channels).
    #[arg(long, value_enum, default_value = "channel")]
    scale: ScaleArg,
}

pub fn run(args: VisualizeArgs) -> convnet::Result<()> {
    match args.what {
        What::Filters(a) => filters(a),
        What::Activations(a) => activations(a),
    }
}

fn filters(args: FiltersArgs) -> convnet::Result<()> {
    let ck = Checkpoint::load(&args.model)?;
    let net = ck.network()?;
    let (layer, weight) = first_conv_weight(&net)
        .ok_or_else(|| convnet::Error::invalid("visualize filters", format!("{} has no conv2d layer", ck.config.model.name)))?;
    let title = format!("First-layer filters of {} ({layer}, after {} epochs)", ck.config.model.name, ck.meta.epoch);
    write_filters_png(&weight, &title, &args.out)?;
    println!("wrote {} ({layer}, weight {:?})", args.out.display(), weight.shape());
    Ok(())
}

fn activations(args: ActivationsArgs) -> convnet::Result<()> {
    let ck = Checkpoint::load(&args.model)?;
    let mut net = ck.network()?;
    let [h, w, c] = ck.config.model.input;
    ck.meta.normalization.validate(c).map_err(|e| convnet::Error::Checkpoint { path: args.model.clone(), detail: e.to_string() })?;
    let img = read_image(&args.image, Some((h, w)), c)?;
    crate::image_notes(&args.image, &img);
    let pixels = img.pixels;
    let mut x = Tensor::zeros(&[1, h, w, c]);
    ck.meta.normalization.apply(&pixels, x.data_mut());
    let trace = net.forward_trace(&x)?;
    let mut notes = Vec::new();
    if let Some((_, logits)) = trace.last() {
        let probs = softmax(logits)?;
        let best = argmax(probs.data());
        let name = ck.meta.class_names.get(best).map_or("?", |s| s.as_str());
        notes.push(format!("prediction: {name} ({:.1}%)", 100.0 * probs.data()[best]));
    }
    let file = args.image.file_name().map_or_else(|| args.image.display().to_string(), |n| n.to_string_lossy().into_owned());
    let title = format!("Activations of {} for {file}", ck.config.model.name);
    let input = Tile::new(w, h, c, pixels, "")?;
    let scale = match args.scale {
        ScaleArg::Layer => ActivationScale::Layer,
        ScaleArg::Channel => ActivationScale::Channel,
    };
    write_activations_png(&input, &trace, &title, &notes, scale, &args.out)?;
    if let Some(n) = notes.first() {
        println!("{n}");
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
