//! ONNX export of image classifiers through burn-onnx's experimental `OnnxExporter`: the
//! inference forward pass is traced on a capture device for batches of 1 and 2 and lowered
//! to an ONNX (opset 18) graph with the weights embedded and a dynamic batch axis. The input
//! is the normalised image batch `[batch, channels, height, width]`; the output the logits.

use burn::prelude::*;
use burn_onnx::export::{AxisSpec, InputSpec, OnnxExporter};

use crate::data::{DataSpec, Input};
use crate::model::Model;

/// The ONNX bytes of `model` (on a CPU device, not autodiff), or why it cannot be exported.
pub(crate) fn to_onnx<M: Model>(model: &M, spec: &DataSpec) -> Result<Vec<u8>, String> {
    let kind = M::KIND;
    let DataSpec::ImageClassification { input, .. } = spec else {
        return Err(format!(
            "ONNX export covers image classifiers; this model reads {}",
            spec.describe()
        ));
    };
    let device = Device::flex();
    let batch = |size: usize| {
        Tensor::<4>::zeros([size, input.channels, input.height, input.width], &device)
    };
    let axes = [InputSpec::new([
        AxisSpec::dynamic("batch"),
        AxisSpec::Static,
        AxisSpec::Static,
        AxisSpec::Static,
    ])];
    if model.scores(Input::Images(batch(1))).is_none() {
        return Err(format!(
            "ONNX export covers models over stoke's image input; a {kind} model takes inputs of its own"
        ));
    }
    OnnxExporter::new()
        .export_dynamic(model, batch(1), batch(2), &axes, |model: &M, images| {
            model
                .scores(Input::Images(images))
                .expect("checked above: the model takes images")
        })
        .map(|onnx| onnx.into_bytes())
        .map_err(|err| format!("burn-onnx cannot export this {kind}: {err}"))
}
