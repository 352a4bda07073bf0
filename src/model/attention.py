"""PyTorch's fused attention for backbones whose transformers class has none: MPNet (eager attention in
transformers 5.23, `MPNetModel._supports_sdpa` is False) runs through `scaled_dot_product_attention` with its
relative-position bias and padding mask passed as one additive mask, on CUDA. Same outputs and gradients as eager
(tests/test_attention.py). bench/attention.py, 12 x 768 at 16 x 512 in bf16 on an H100: 226 training rows/s and
5.9 GB against eager's 163 rows/s and 8.2 GB. On a CPU it stays eager: the bias learns (relative_attention_bias), and
PyTorch's CPU kernels fall back to the math path for a mask that needs a gradient, which trained slower than eager
(0.76 vs 0.84 rows/s at 8 x 512 on a 2-core AMD EPYC)."""
import types

from torch.nn import functional as F


def fused_pays(hidden_states):
    return hidden_states.is_cuda


def mpnet_sdpa_forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
    """MPNetSelfAttention.forward with the softmax(QK^T/sqrt(d) + bias + mask)V product fused by PyTorch."""
    if output_attentions or not fused_pays(hidden_states):
        return self.eager_forward(hidden_states, attention_mask, position_bias, output_attentions, **kwargs)
    shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
    q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))
    bias = position_bias
    if attention_mask is not None:
        bias = attention_mask if bias is None else bias + attention_mask
    dropout = self.dropout.p if self.training else 0.0
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype),
                                             dropout_p=dropout)
    context = context.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size)
    return (self.o(context),)


def use_fused_attention(model):
    """Switches every MPNet self-attention block in `model` to `mpnet_sdpa_forward`; other models (which pick SDPA
    through transformers themselves) are left as they are. Returns how many blocks were switched."""
    from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention
    switched = 0
    for module in model.modules():
        if isinstance(module, MPNetSelfAttention) and not hasattr(module, "eager_forward"):
            module.eager_forward = module.forward
            module.forward = types.MethodType(mpnet_sdpa_forward, module)
            switched += 1
    return switched


def uses_fused_attention(model):
    return any(hasattr(m, "eager_forward") for m in model.modules())
