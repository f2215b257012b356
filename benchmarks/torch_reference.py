"""The baseline model for the benchmarks that compare with transformers: a ``transformers`` causal LM holding
exactly the weights our loader reads (an HF directory as is; a GGUF file dequantised the same way)."""

from __future__ import annotations

from typing import Any


def torch_reference(name_or_path: str, dtype: Any = None, *, attn_implementation: str | None = None) -> Any:
    """The transformers model for ``name_or_path`` (anything ``load_pretrained`` accepts), in ``dtype``
    (default float32), in train mode as ``from_pretrained`` leaves it; call ``.eval()`` for inference."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from automem_jax.models.weights import read_gguf, resolve

    dtype = dtype or torch.float32
    kind, path = resolve(name_or_path)
    if kind == "hf":
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **extra)
    cfg, tensors = read_gguf(path)
    families = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    cls_cfg, cls = families[cfg["model_type"]]
    model = cls(cls_cfg(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
    model.tie_weights()
    return model.to(dtype)
