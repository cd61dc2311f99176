//! The overhead floor: the MLP of configs/mnist-mlp.toml trained by a minimal hand-written
//! burn loop (no stoke: no data pipeline, metrics, scheduler or logging), on batches made
//! before timing. `stoke bench configs/mnist-mlp.toml` against this shows what stoke's loop
//! costs.
//!
//!     cargo bench --bench raw_burn_mlp -- [--backend flex|ndarray] [--steps 200] [--warmup 10]

use std::time::Instant;

use burn::nn::loss::CrossEntropyLoss;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;

/// The same allocator as the stoke binary, so the comparison measures the loop alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 128;

#[derive(Module, Debug)]
struct Mlp {
    hidden: Vec<Linear>,
    output: Linear,
    dropout: Dropout,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            hidden: vec![
                LinearConfig::new(784, 512).init(device),
                LinearConfig::new(512, 256).init(device),
            ],
            output: LinearConfig::new(256, 10).init(device),
            dropout: DropoutConfig::new(0.2).init(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self
            .hidden
            .iter()
            .fold(x, |x, layer| self.dropout.forward(relu(layer.forward(x))));
        self.output.forward(x)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let steps: usize = flag("--steps").map_or(200, |s| s.parse().expect("--steps N"));
    let warmup: usize = flag("--warmup").map_or(10, |s| s.parse().expect("--warmup N"));
    let backend = flag("--backend").unwrap_or_else(|| "flex".into());
    #[allow(deprecated)] // ndarray is deprecated upstream; compared here as stoke offers it.
    let device = match backend.as_str() {
        "flex" => Device::flex(),
        "ndarray" => Device::ndarray(),
        other => panic!("--backend flex or ndarray, not {other}"),
    }
    .autodiff();
    device.seed(0);

    let mut model = Mlp::new(&device);
    let mut optimizer = AdamConfig::new().init();
    let loss = CrossEntropyLoss::new(None, &device);
    let batches: Vec<(Tensor<2>, Tensor<1, Int>)> = (0..16)
        .map(|i| {
            let images = Tensor::random([BATCH, 784], Distribution::Normal(0.0, 1.0), &device);
            let labels: Vec<i64> = (0..BATCH).map(|j| ((i * 7 + j * 3) % 10) as i64).collect();
            let labels = Tensor::from_data(TensorData::new(labels, [BATCH]), &device);
            (images, labels)
        })
        .collect();

    let mut started = Instant::now();
    let mut last = 0.0;
    for step in 0..warmup + steps {
        if step == warmup {
            started = Instant::now();
        }
        let (images, labels) = batches[step % batches.len()].clone();
        let value = loss.forward(model.forward(images), labels);
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optimizer.step(1e-3, model, grads);
        if step + 1 == warmup + steps {
            last = value.into_scalar::<f32>() as f64; // waits for the device
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"model\":\"mlp\",\"loop\":\"raw burn\",\"backend\":\"{backend}\",\"batch_size\":{BATCH},\"steps\":{steps},\"samples_per_s\":{:.1},\"step_ms\":{:.3},\"last_loss\":{last:.4}}}",
        (steps * BATCH) as f64 / elapsed,
        1000.0 * elapsed / steps as f64
    );
}
