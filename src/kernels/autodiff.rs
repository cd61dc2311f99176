//! The fused ops under autodiff: each is one node of the graph whose backward is written out,
//! calling the inner backend's fused ops, instead of the chain of nodes burn would record.

use burn::backend::Autodiff;
use burn::backend::BackendTypes;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::tensor::ops::ConvOptions;

use super::StokeOps;

impl<B: StokeOps, C: CheckpointStrategy> StokeOps for Autodiff<B, C> {
    fn fused_dropout(x: FloatTensor<Self>, key: u64, prob: f64) -> FloatTensor<Self> {
        /// The gradient is masked as the input was: the mask is recomputed from its key.
        #[derive(Debug)]
        struct Dropout;

        impl<B: StokeOps> Backward<B, 1> for Dropout {
            type State = (u64, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (key, prob) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::fused_dropout(grad, key, prob)
                });
            }
        }

        let (primitive, node) = x.into_parts();
        match Dropout.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                prep.finish((key, prob), B::fused_dropout(primitive, key, prob))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_dropout(primitive, key, prob)),
        }
    }

    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let output = B::fused_conv2d(x.clone(), weight.clone(), options.clone());
        let prep = Conv2d.prepare::<C>([x_node, weight_node]);
        match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, weight, options), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn fused_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let (bias, bias_node) = bias.into_parts();
        let output = B::fused_conv2d_bias(x.clone(), weight.clone(), bias, options.clone());
        let prep = Conv2d.prepare::<C>([x_node, weight_node, bias_node]);
        match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, weight, options), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }
}

/// A convolution's node: its parents are the input, the weight and, with `N` = 3, the bias.
#[derive(Debug)]
struct Conv2d;

impl<B: StokeOps, const N: usize> Backward<B, N> for Conv2d {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, options) = ops.state;
        let wanted = [0, 1, 2].map(|i| ops.parents.get(i).is_some_and(Option::is_some));
        let (x_grad, weight_grad, bias_grad) =
            B::fused_conv2d_backward(x, weight, grad, options, wanted);
        for (parent, grad) in ops
            .parents
            .into_iter()
            .zip([x_grad, weight_grad, bias_grad])
        {
            if let (Some(parent), Some(grad)) = (parent, grad) {
                grads.register::<B>(parent.id, grad);
            }
        }
    }
}

/// What a convolution's backward pass needs: its input, its weight and its options.
type ConvState<B> = (
    <B as BackendTypes>::FloatTensorPrimitive,
    <B as BackendTypes>::FloatTensorPrimitive,
    ConvOptions<2>,
);
