//! The overhead floor: configs/mnist-mlp.toml's model and optimizer (stoke's own, on its
//! fused kernels) stepped by a minimal hand-written burn loop: no data pipeline (batches are
//! made before timing), no metrics, scheduler or logging. `stoke bench configs/mnist-mlp.toml`
//! against this shows what the trainer's loop costs on top of the same computation.
//!
//!     cargo bench --bench raw_burn_mlp -- [--backend flex|ndarray] [--steps 200] [--warmup 10]

use std::path::Path;
use std::time::Instant;

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::GradientsParams;
use stoke::backend;
use stoke::config::{self, BackendChoice, CpuBackend};
use stoke::data::{BatchStream, DeviceBatch, StreamPlan, Targets, epoch_order};
use stoke::model::Mlp;
use stoke::train::{Experiment, Held, build_optimizer, seed_step};

/// The same allocator as the stoke binary, so the comparison measures the loop alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let choice = match flag("--backend").as_deref().unwrap_or("flex") {
        "flex" => BackendChoice::Flex,
        "ndarray" => BackendChoice::Ndarray,
        other => panic!("--backend flex or ndarray, not {other}"),
    };

    let config = config::load(Path::new("configs/mnist-mlp.toml"), &[]).expect("the config");
    let selected = backend::select(choice, CpuBackend::Flex).expect("a CPU backend");
    let experiment = Experiment::prepare(config, selected, None).expect("MNIST");
    let config = &experiment.config;
    let device = experiment.backend.device.clone().autodiff();
    // The same model stoke trains, initialised the same way, taken out of its box.
    let net = experiment.new_model(&device).expect("the model");
    let mut model: Mlp = net
        .as_any()
        .downcast_ref::<Held<Mlp>>()
        .expect("configs/mnist-mlp.toml is an MLP")
        .model
        .clone();
    let mut optimizer = build_optimizer(&config.optimizer, &config.train);
    let loss = CrossEntropyLoss::new(None, &device);
    let train = &experiment.splits.train;
    let plan = StreamPlan {
        order: epoch_order(train, config.run.seed, 0),
        batch_size: config.train.batch_size,
        pass_size: config.train.batch_size,
        first: 0,
        workers: 0,
        prefetch: 1,
    };
    let context = experiment.batch_context(&device, Some(0));
    let batches: Vec<DeviceBatch> = BatchStream::new(train.data.clone(), plan, context)
        .take(16)
        .map(|mut passes| passes.pop().unwrap().take().expect("image batches"))
        .collect();

    let mut started = Instant::now();
    let mut last = 0.0;
    for step in 0..warmup + steps {
        if step == warmup {
            started = Instant::now();
        }
        seed_step(&device, config.run.seed, step);
        let batch = &batches[step % batches.len()];
        let stoke::data::Input::Images(images) = batch.input.clone() else {
            unreachable!("MNIST gives images")
        };
        let Targets::Classes(targets) = batch.targets.clone() else {
            unreachable!("MNIST gives classes")
        };
        let logits = model.logits(images);
        let value = loss.forward(logits, targets);
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optimizer.step(config.optimizer.lr(), model, grads);
        if step + 1 == warmup + steps {
            last = value.into_scalar::<f32>() as f64; // waits for the device
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let batch = config.train.batch_size;
    println!(
        "{{\"model\":\"mlp\",\"loop\":\"raw\",\"backend\":\"{}\",\"batch_size\":{batch},\"steps\":{steps},\"samples_per_s\":{:.1},\"step_ms\":{:.3},\"last_loss\":{last:.4}}}",
        experiment.backend.name,
        (steps * batch) as f64 / elapsed,
        1000.0 * elapsed / steps as f64
    );
}
