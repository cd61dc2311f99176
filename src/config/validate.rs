//! Range and consistency checks the types alone cannot express. Each problem is returned as
//! (key path, what was expected), so the loader can locate it.

use super::schema::{
    AugmentConfig, DatasetKind, ExperimentConfig, ImageDataConfig, ModelConfig, OptimizerConfig,
    SchedulerConfig, TabularDataConfig, TabularTask, TextDataConfig, TokenizerKind,
};

type Problems = Vec<(String, String)>;

pub fn validate(config: &ExperimentConfig) -> Problems {
    let mut problems = Problems::new();
    let mut check = |ok: bool, key: &str, message: String| {
        if !ok {
            problems.push((key.to_string(), message));
        }
    };

    let name = &config.run.name;
    check(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.'),
        "run.name",
        format!("\"{name}\" must be letters, digits, '-', '_' or '.', not starting with '.'"),
    );

    validate_follow(&config.follow, &mut check);
    let data = &config.data;
    check(
        (0.0..1.0).contains(&data.valid_fraction),
        "data.valid_fraction",
        format!(
            "must be at least 0 and below 1, got {}",
            data.valid_fraction
        ),
    );
    check(
        (0.0..1.0).contains(&data.test_fraction),
        "data.test_fraction",
        format!("must be at least 0 and below 1, got {}", data.test_fraction),
    );
    check(
        data.limit != Some(0),
        "data.limit",
        "must be at least 1 (leave it out to use every sample)".into(),
    );
    let image_dataset = data.dataset.is_image();
    let text_dataset = data.dataset.is_text();
    let tabular = data.dataset == DatasetKind::Tabular;
    for (key, given, applies) in [
        ("data.image", data.image.is_some(), image_dataset),
        ("data.text", data.text.is_some(), text_dataset),
        ("data.tokenizer", data.tokenizer.is_some(), text_dataset),
        ("data.tabular", data.tabular.is_some(), tabular),
    ] {
        check(
            !given || applies,
            key,
            format!(
                "does not apply to dataset = \"{}\"; remove the table",
                data.dataset.name()
            ),
        );
    }
    check(
        !data.dataset.needs_path() || !data.path.as_os_str().is_empty(),
        "data.path",
        format!("is required for dataset = \"{}\"", data.dataset.name()),
    );
    if let Some(image) = data.image.as_ref().filter(|_| image_dataset) {
        validate_image(image, &data.dataset, &mut check);
    }
    if let Some(augment) = &data.augment {
        check(
            matches!(
                data.dataset,
                DatasetKind::ImageFolder | DatasetKind::ImageParquet
            ),
            "data.augment",
            format!(
                "applies to dataset = \"image-folder\" or \"image-parquet\", not \"{}\"",
                data.dataset.name()
            ),
        );
        validate_augment(augment, &mut check);
    }
    if let Some(text) = data.text.as_ref().filter(|_| text_dataset) {
        validate_text(text, &mut check);
    }
    if tabular {
        validate_tabular(data.tabular.as_ref(), &mut check);
    }
    if let Some(tokenizer) = data.tokenizer.as_ref().filter(|_| text_dataset) {
        check(
            tokenizer.kind == TokenizerKind::Char
                || tokenizer.kind == TokenizerKind::File
                || tokenizer.vocab_size >= 32,
            "data.tokenizer.vocab_size",
            format!("must be at least 32, got {}", tokenizer.vocab_size),
        );
        check(
            tokenizer.kind != TokenizerKind::File || !tokenizer.path.as_os_str().is_empty(),
            "data.tokenizer.path",
            "is required with kind = \"file\": a Hugging Face tokenizer.json".into(),
        );
    }
    if let Some(Err(detail)) = data.memory_budget.as_deref().map(super::parse_bytes) {
        check(false, "data.memory_budget", detail);
    }
    check(
        data.shuffle_buffer.is_none() || data.dataset.is_streamed(),
        "data.shuffle_buffer",
        format!(
            "applies to sharded datasets only, not dataset = \"{}\" (which is shuffled whole in memory)",
            data.dataset.name()
        ),
    );
    check(
        data.shuffle_buffer != Some(0),
        "data.shuffle_buffer",
        "must be at least 1 record".into(),
    );
    check(
        data.prefetch > 0,
        "data.prefetch",
        "must be at least 1".into(),
    );

    validate_model(&config.model, &mut check);
    validate_optimizer(&config.optimizer, &mut check);
    validate_scheduler(&config.scheduler, config.optimizer.lr(), &mut check);

    let train = &config.train;
    check(
        train.epochs > 0,
        "train.epochs",
        "must be at least 1".into(),
    );
    check(
        train.batch_size > 0,
        "train.batch_size",
        "must be at least 1".into(),
    );
    check(
        train.top_k.is_none_or(|k| k >= 2),
        "train.top_k",
        "must be at least 2 (top-1 accuracy is the accuracy)".into(),
    );
    check(
        train.overfit_batches != Some(0),
        "train.overfit_batches",
        "must be at least 1 (leave it out to train on the whole split)".into(),
    );
    check(
        train.grad_accum_steps > 0,
        "train.grad_accum_steps",
        "must be at least 1 (1: no accumulation)".into(),
    );
    check(
        train.eval_batch_size > 0,
        "train.eval_batch_size",
        "must be at least 1".into(),
    );
    check(
        train.max_steps != Some(0),
        "train.max_steps",
        "must be at least 1 (leave it out to train every epoch)".into(),
    );
    check(
        train.eval_every != Some(0),
        "train.eval_every",
        "must be at least 1 (leave it out to validate at epoch ends only)".into(),
    );
    check(
        train.log_every > 0,
        "train.log_every",
        "must be at least 1".into(),
    );
    if let Some(norm) = train.grad_clip_norm {
        check(
            norm > 0.0 && norm.is_finite(),
            "train.grad_clip_norm",
            format!("must be above 0, got {norm}"),
        );
    }

    if let Some(early) = &train.early_stopping {
        check(
            early.patience > 0,
            "train.early_stopping.patience",
            "must be at least 1".into(),
        );
        check(
            early.min_delta >= 0.0,
            "train.early_stopping.min_delta",
            "must be at least 0".into(),
        );
    }

    let checkpoint = &config.checkpoint;
    check(
        checkpoint.keep_last > 0,
        "checkpoint.keep_last",
        "must be at least 1".into(),
    );
    check(
        checkpoint.every_steps != Some(0),
        "checkpoint.every_steps",
        "must be at least 1 (leave it out to save at epoch ends only)".into(),
    );

    let eval = &config.eval;
    check(
        !(eval.slice_by.is_some() && eval.slice_file.is_some()),
        "eval.slice_file",
        "slice by a field (eval.slice_by) or by a file of attributes, not both".into(),
    );
    check(
        eval.slice_by
            .as_ref()
            .is_none_or(|field| !field.trim().is_empty()),
        "eval.slice_by",
        "must name a field of the records".into(),
    );
    if let Some(field) = &eval.slice_by {
        let sliceable = match &config.data.dataset {
            DatasetKind::TextClassification => true,
            DatasetKind::ImageFolder => field == "folder",
            _ => false,
        };
        check(
            sliceable,
            "eval.slice_by",
            format!(
                "a {} dataset cannot be sliced by \"{field}\": text-classification records by \
                 any of their fields, image-folder sets by \"folder\" (or eval.slice_file)",
                config.data.dataset.name()
            ),
        );
    }
    check(
        eval.slice_file.is_none() || config.data.dataset == DatasetKind::ImageFolder,
        "eval.slice_file",
        "names image files, so it slices image-folder data only".into(),
    );
    problems
}

fn validate_image(
    image: &ImageDataConfig,
    dataset: &DatasetKind,
    check: &mut impl FnMut(bool, &str, String),
) {
    check(
        image.size.iter().all(|&side| side > 0),
        "data.image.size",
        format!("sides must be at least 1, got {:?}", image.size),
    );
    check(
        matches!(
            dataset,
            DatasetKind::ImageFolder | DatasetKind::ImageParquet
        ) || image.color.channels() == 1,
        "data.image.color",
        format!("{} images are grayscale; remove the key", dataset.name()),
    );
    let channels = image.color.channels();
    for (key, values) in [
        ("data.image.mean", &image.mean),
        ("data.image.std", &image.std),
    ] {
        check(
            values.is_empty() || values.len() == channels,
            key,
            format!(
                "needs one value per channel ({channels}), got {}",
                values.len()
            ),
        );
    }
    check(
        image.mean.is_empty() == image.std.is_empty(),
        "data.image.std",
        "data.image.mean and data.image.std are given together or not at all".into(),
    );
    check(
        image.std.iter().all(|&s| s > 0.0),
        "data.image.std",
        "values must be above 0".into(),
    );
    if let Some(crop_pct) = image.crop_pct {
        check(
            crop_pct > 0.0 && crop_pct <= 1.0,
            "data.image.crop_pct",
            format!(
                "must be above 0 and at most 1 (timm's ImageNet value is 0.875), got {crop_pct}"
            ),
        );
        check(
            matches!(
                dataset,
                DatasetKind::ImageFolder | DatasetKind::ImageParquet
            ),
            "data.image.crop_pct",
            format!(
                "applies to image-folder and image-parquet data, not {}",
                dataset.name()
            ),
        );
    }
    check(
        image.max_upscale >= 1.0,
        "data.image.max_upscale",
        format!(
            "is how many times an image's shorter side may be enlarged, at least 1; got {}",
            image.max_upscale
        ),
    );
}

fn validate_augment(augment: &AugmentConfig, check: &mut impl FnMut(bool, &str, String)) {
    let [low, high] = augment.crop_scale;
    check(
        0.0 < low && low <= high && high <= 1.0,
        "data.augment.crop_scale",
        format!(
            "must be [low, high] with 0 < low <= high <= 1, got {:?}",
            augment.crop_scale
        ),
    );
    let [low, high] = augment.crop_ratio;
    check(
        0.0 < low && low <= high,
        "data.augment.crop_ratio",
        format!(
            "must be [low, high] with 0 < low <= high, got {:?}",
            augment.crop_ratio
        ),
    );
    check(
        (0.0..=1.0).contains(&augment.hflip),
        "data.augment.hflip",
        format!("is a probability, from 0 to 1; got {}", augment.hflip),
    );
    for (key, value) in [
        ("brightness", augment.brightness),
        ("contrast", augment.contrast),
        ("saturation", augment.saturation),
    ] {
        check(
            (0.0..=1.0).contains(&value),
            &format!("data.augment.{key}"),
            format!("is how far a factor may stray from 1, from 0 to 1; got {value}"),
        );
    }
    check(
        (0.0..=0.5).contains(&augment.hue),
        "data.augment.hue",
        format!(
            "is how far the hue may turn, as a share of the colour circle from 0 to 0.5; got {}",
            augment.hue
        ),
    );
    for (key, value) in [
        ("mixup_alpha", augment.mixup_alpha),
        ("cutmix_alpha", augment.cutmix_alpha),
    ] {
        check(
            value >= 0.0 && value.is_finite(),
            &format!("data.augment.{key}"),
            format!("is Beta(α, α)'s α, above 0 (0: off); got {value}"),
        );
    }
    for (key, value) in [
        ("mix_prob", augment.mix_prob),
        ("switch_prob", augment.switch_prob),
    ] {
        check(
            (0.0..=1.0).contains(&value),
            &format!("data.augment.{key}"),
            format!("is a probability, from 0 to 1; got {value}"),
        );
    }
    check(
        (1..=16).contains(&augment.rand_ops),
        "data.augment.rand_ops",
        format!(
            "is how many RandAugment operations each sample goes through, from 1 to 16; got {}",
            augment.rand_ops
        ),
    );
    check(
        augment.rand_magnitude <= 30,
        "data.augment.rand_magnitude",
        format!(
            "is RandAugment's strength, a bin from 0 to 30; got {}",
            augment.rand_magnitude
        ),
    );
}

fn validate_follow(follow: &super::FollowConfig, check: &mut impl FnMut(bool, &str, String)) {
    check(
        follow.poll_s > 0.0 && follow.poll_s.is_finite(),
        "follow.poll_s",
        format!(
            "is seconds between looks at the directory, above 0; got {}",
            follow.poll_s
        ),
    );
    check(
        follow.idle_exit_s >= 0.0 && follow.idle_exit_s.is_finite(),
        "follow.idle_exit_s",
        format!(
            "is seconds without a new shard before stopping (0: never); got {}",
            follow.idle_exit_s
        ),
    );
    check(
        follow.passes >= 1,
        "follow.passes",
        "is how many passes each new shard gets, at least 1".into(),
    );
    check(
        (0.0..1.0).contains(&follow.replay.fraction),
        "follow.replay.fraction",
        format!(
            "is the share of each batch replayed, at least 0 and below 1; got {}",
            follow.replay.fraction
        ),
    );
    check(
        follow.replay.capacity >= 1,
        "follow.replay.capacity",
        "is how many past records the reservoir keeps, at least 1".into(),
    );
    check(
        follow.gate.tolerance >= 0.0 && follow.gate.tolerance.is_finite(),
        "follow.gate.tolerance",
        format!(
            "is how much worse a candidate may be, at least 0; got {}",
            follow.gate.tolerance
        ),
    );
}

fn validate_tabular(table: Option<&TabularDataConfig>, check: &mut impl FnMut(bool, &str, String)) {
    let Some(table) = table else {
        check(
            false,
            "data.tabular",
            "is required with dataset = \"tabular\": the numeric, categorical and target columns"
                .into(),
        );
        return;
    };
    check(
        !table.numeric.is_empty() || !table.categorical.is_empty(),
        "data.tabular",
        "names no feature column: list them in numeric and categorical".into(),
    );
    check(
        !table.targets.is_empty(),
        "data.tabular.targets",
        "names no target column".into(),
    );
    let patterns = table.targets.iter().any(|t| t.contains(['*', '?']));
    check(
        table.task != TabularTask::Classification || table.targets.len() == 1 || patterns,
        "data.tabular.targets",
        format!(
            "a classification has one target column (its class), got {}",
            table.targets.len()
        ),
    );
}

fn validate_text(text: &TextDataConfig, check: &mut impl FnMut(bool, &str, String)) {
    check(
        text.max_length >= 1,
        "data.text.max_length",
        "must be at least 1".into(),
    );
    check(
        text.context_length >= 2,
        "data.text.context_length",
        "must be at least 2".into(),
    );
    check(
        text.stride != Some(0),
        "data.text.stride",
        "must be at least 1 (leave it out for context_length)".into(),
    );
    check(
        !text.text_field.is_empty(),
        "data.text.text_field",
        "must name a field".into(),
    );
}

fn validate_model(model: &ModelConfig, check: &mut impl FnMut(bool, &str, String)) {
    let is_name = |prefix: &str| {
        !prefix.is_empty()
            && prefix.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    };
    for prefix in model.freeze.iter().chain(model.lr_by_prefix.keys()) {
        check(
            is_name(prefix),
            "model",
            format!(
                "\"{prefix}\" is not a parameter prefix (names of letters, digits and _ joined by dots, e.g. \"layers.0\")"
            ),
        );
    }
    for (prefix, lr) in &model.lr_by_prefix {
        check(
            *lr > 0.0 && lr.is_finite(),
            &format!("model.lr_by_prefix.{prefix}"),
            format!("must be a positive learning rate, got {lr}"),
        );
    }
    check(
        matches!(model.init_checkpoint.as_str(), "best" | "last" | "latest")
            || model
                .init_checkpoint
                .strip_prefix("step-")
                .is_some_and(|n| n.parse::<usize>().is_ok()),
        "model.init_checkpoint",
        format!(
            "must be best, last or step-<N>, got \"{}\"",
            model.init_checkpoint
        ),
    );
}

fn validate_optimizer(optimizer: &OptimizerConfig, check: &mut impl FnMut(bool, &str, String)) {
    let lr = optimizer.lr();
    check(
        lr > 0.0 && lr.is_finite(),
        "optimizer.lr",
        format!("must be above 0, got {lr}"),
    );
    match optimizer {
        OptimizerConfig::Sgd(sgd) => {
            check(
                (0.0..1.0).contains(&sgd.momentum),
                "optimizer.momentum",
                format!("must be at least 0 and below 1, got {}", sgd.momentum),
            );
            check(
                (0.0..=1.0).contains(&sgd.dampening),
                "optimizer.dampening",
                format!("must be between 0 and 1, got {}", sgd.dampening),
            );
            check(
                !sgd.nesterov || (sgd.momentum > 0.0 && sgd.dampening == 0.0),
                "optimizer.nesterov",
                "needs momentum above 0 and dampening = 0".into(),
            );
            check(
                sgd.weight_decay >= 0.0,
                "optimizer.weight_decay",
                "must be at least 0".into(),
            );
        }
        OptimizerConfig::Adam(adam) | OptimizerConfig::Adamw(adam) => {
            for (key, beta) in [
                ("optimizer.beta1", adam.beta1),
                ("optimizer.beta2", adam.beta2),
            ] {
                check(
                    (0.0..1.0).contains(&beta),
                    key,
                    format!("must be at least 0 and below 1, got {beta}"),
                );
            }
            check(
                adam.epsilon > 0.0,
                "optimizer.epsilon",
                "must be above 0".into(),
            );
            check(
                adam.weight_decay >= 0.0,
                "optimizer.weight_decay",
                "must be at least 0".into(),
            );
        }
    }
}

fn validate_scheduler(
    scheduler: &SchedulerConfig,
    lr: f64,
    check: &mut impl FnMut(bool, &str, String),
) {
    // burn's linear (warm-up) and cosine schedulers take learning rates up to 1.
    let bounded = scheduler.warmup_steps() > 0 || matches!(scheduler, SchedulerConfig::Cosine(_));
    check(
        !bounded || lr <= 1.0,
        "optimizer.lr",
        format!("must be at most 1 with warm-up or a cosine schedule, got {lr}"),
    );
    match scheduler {
        SchedulerConfig::Constant(_) => {}
        SchedulerConfig::Step(step) => {
            check(
                step.step_size > 0,
                "scheduler.step_size",
                "must be at least 1".into(),
            );
            check(
                step.gamma > 0.0 && step.gamma <= 1.0,
                "scheduler.gamma",
                format!("must be above 0 and at most 1, got {}", step.gamma),
            );
        }
        SchedulerConfig::Cosine(cosine) => check(
            cosine.min_lr >= 0.0 && cosine.min_lr <= lr,
            "scheduler.min_lr",
            format!(
                "must be between 0 and optimizer.lr ({lr}), got {}",
                cosine.min_lr
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named_default() -> ExperimentConfig {
        let mut config = ExperimentConfig::default();
        config.run.name = "test".into();
        config
    }

    #[test]
    fn defaults_are_valid() {
        assert!(validate(&named_default()).is_empty());
    }

    #[test]
    fn out_of_range_values_are_named() {
        let mut config = named_default();
        config.train.batch_size = 0;
        config.data.valid_fraction = 1.5;
        let keys: Vec<String> = validate(&config).into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["data.valid_fraction", "train.batch_size"]);
    }

    #[test]
    fn slices_must_fit_the_dataset() {
        let mut config = named_default();
        config.data.dataset = DatasetKind::Mnist;
        config.eval.slice_by = Some("source".into());
        config.eval.slice_file = Some("sites.csv".into());
        let problems = validate(&config);
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            ["eval.slice_file", "eval.slice_by", "eval.slice_file"]
        );
        assert!(
            problems[1].1.contains("cannot be sliced by \"source\""),
            "{problems:?}"
        );
        config.data.dataset = DatasetKind::ImageFolder;
        config.eval.slice_by = Some("folder".into());
        config.eval.slice_file = None;
        let problems = validate(&config);
        assert!(
            problems.iter().all(|(key, _)| !key.starts_with("eval.")),
            "{problems:?}"
        );
    }
}
