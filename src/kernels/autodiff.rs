//! The fused ops under autodiff: each is one node of the graph whose backward is written out,
//! calling the inner backend's fused ops, instead of the chain of nodes burn would record.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::{BoolTensor, FloatTensor};
use burn::backend::{Autodiff, BackendTypes, Flex, TensorMetadata};
use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;

use super::{AttentionOptions, StokeOps, reference};

/// Adds each gradient that was computed to its parent's (a macro: the parents' node type is
/// not public).
macro_rules! register {
    ($backend:ty, $grads:expr, $parents:expr, $computed:expr) => {
        for (parent, grad) in $parents.into_iter().zip($computed) {
            if let (Some(parent), Some(grad)) = (parent, grad) {
                $grads.register::<$backend>(parent.id, grad);
            }
        }
    };
}

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

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        /// The gradient from the saved input.
        #[derive(Debug)]
        struct Gelu;

        impl<B: StokeOps> Backward<B, 1> for Gelu {
            type State = <B as BackendTypes>::FloatTensorPrimitive;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let x = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::fused_gelu_backward(x, grad)
                });
            }
        }

        let (x, node) = x.into_parts();
        let output = B::fused_gelu(x.clone());
        match Gelu.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x, output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn fused_max_pool2d(x: FloatTensor<Self>, kernel: [usize; 2]) -> FloatTensor<Self> {
        /// The gradient from the saved input (each window's maximum found again).
        #[derive(Debug)]
        struct MaxPool;

        impl<B: StokeOps> Backward<B, 1> for MaxPool {
            type State = (<B as BackendTypes>::FloatTensorPrimitive, [usize; 2]);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (x, kernel) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::fused_max_pool2d_backward(x, grad, kernel)
                });
            }
        }

        if !kernels_for::<B>(x.primitive()) {
            return Self::max_pool2d(x, kernel, kernel, [0, 0], [1, 1], false);
        }
        let (x, node) = x.into_parts();
        let output = B::fused_max_pool2d(x.clone(), kernel);
        match MaxPool.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, kernel), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        /// The gradients from the saved input and scale (the mean and deviation recomputed).
        #[derive(Debug)]
        struct LayerNorm;

        impl<B: StokeOps> Backward<B, 3> for LayerNorm {
            type State = (
                <B as BackendTypes>::FloatTensorPrimitive,
                <B as BackendTypes>::FloatTensorPrimitive,
                f64,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (x, gamma, epsilon) = ops.state;
                let (x_grad, gamma_grad, beta_grad) =
                    B::fused_layer_norm_backward(x, gamma, grad, epsilon);
                let computed = [x_grad, gamma_grad, beta_grad].map(Some);
                register!(B, grads, ops.parents, computed);
            }
        }

        if !kernels_for::<B>(x.primitive()) {
            return Self::layer_norm(x, gamma, Some(beta), epsilon);
        }
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        let output = B::fused_layer_norm(x.clone(), gamma.clone(), beta, epsilon);
        let prep = LayerNorm.prepare::<C>([x_node, gamma_node, beta_node]);
        match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, epsilon), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn fused_attention(
        qkv: FloatTensor<Self>,
        padding: BoolTensor<Self>,
        options: AttentionOptions,
    ) -> FloatTensor<Self> {
        /// The gradient from the saved input, output and log-sum-exps (scores recomputed).
        #[derive(Debug)]
        struct Attention;

        impl<B: StokeOps> Backward<B, 1> for Attention {
            type State = (
                <B as BackendTypes>::FloatTensorPrimitive,
                <B as BackendTypes>::BoolTensorPrimitive,
                <B as BackendTypes>::FloatTensorPrimitive,
                <B as BackendTypes>::FloatTensorPrimitive,
                AttentionOptions,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (qkv, padding, output, lse, options) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::fused_attention_backward(qkv, padding, output, lse, grad, options)
                });
            }
        }

        if !kernels_for::<B>(qkv.primitive()) {
            return reference::attention::<Self>(qkv, padding, &options);
        }
        let (qkv, node) = qkv.into_parts();
        match Attention.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (output, lse) =
                    B::fused_attention_forward(qkv.clone(), padding.clone(), options.clone());
                prep.finish((qkv, padding, output.clone(), lse, options), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_attention(qkv, padding, options)),
        }
    }

    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let output = B::fused_linear(x.clone(), weight.clone());
        match Linear
            .prepare::<C>([x_node, weight_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, weight), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
        }
    }

    fn fused_linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let (bias, bias_node) = bias.into_parts();
        let output = B::fused_linear_bias(x.clone(), weight.clone(), bias);
        let prep = Linear.prepare::<C>([x_node, weight_node, bias_node]);
        match prep.compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, weight), output),
            OpsKind::UnTracked(prep) => prep.finish(output),
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

/// Whether `B` runs stoke's kernels on tensors of `tensor`'s type, f32 on flex, and so has
/// the backward ops that only they implement.
fn kernels_for<B: StokeOps>(tensor: &B::FloatTensorPrimitive) -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>() && tensor.dtype() == DType::F32
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
        register!(B, grads, ops.parents, [x_grad, weight_grad, bias_grad]);
    }
}

/// A linear layer's node: its parents are the input, the weight and, with `N` = 3, the bias.
#[derive(Debug)]
struct Linear;

impl<B: StokeOps, const N: usize> Backward<B, N> for Linear {
    type State = (
        <B as BackendTypes>::FloatTensorPrimitive,
        <B as BackendTypes>::FloatTensorPrimitive,
    );

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let wanted = [0, 1, 2].map(|i| ops.parents.get(i).is_some_and(Option::is_some));
        let (x_grad, weight_grad, bias_grad) = B::fused_linear_backward(x, weight, grad, wanted);
        register!(B, grads, ops.parents, [x_grad, weight_grad, bias_grad]);
    }
}

/// What a convolution's backward pass needs: its input, its weight and its options.
type ConvState<B> = (
    <B as BackendTypes>::FloatTensorPrimitive,
    <B as BackendTypes>::FloatTensorPrimitive,
    ConvOptions<2>,
);
