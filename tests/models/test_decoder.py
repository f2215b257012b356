"""Decoder parity against transformers (PyTorch, CPU, float32) and the call contract."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from models_ref import hf_logits, hf_model, masked_max_diff

from automem_jax.models import (
    LoraConfig,
    LoRAParam,
    ModelConfig,
    UnsupportedModelError,
    build_model,
    load_pretrained,
    segment_positions,
)
from automem_jax.models.tiny import tiny_config
from automem_jax.models.weights import unpermute_llama_qk

TOL = 1e-4


def _ids(shape, seed=0, hi=5000):
    return np.random.default_rng(seed).integers(0, hi, size=shape)


@pytest.mark.parametrize("family", ["qwen2", "llama", "qwen3"])
def test_logits_match_transformers(tiny_dirs, family):
    model, _ = load_pretrained(tiny_dirs[family], with_tokenizer=False)
    ref = hf_model(tiny_dirs[family])
    ids = _ids((3, 13))
    mask = np.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, 9:] = 0  # right padding
    ours = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert ours.shape == (3, 13, model.config.vocab_size) and ours.dtype == jnp.float32
    assert masked_max_diff(ours, hf_logits(ref, ids, mask), mask) <= TOL


def test_gqa_grouping_matches_transformers(tmp_path):
    """4 query heads over 2 KV heads: catches a wrong head-to-group assignment (1 KV head would not)."""
    from automem_jax.models.tiny import write_tiny_checkpoint

    d = write_tiny_checkpoint(tmp_path / "gqa", "qwen2", num_heads=4, num_kv_heads=2, head_dim=16)
    model, _ = load_pretrained(d, with_tokenizer=False)
    ids = _ids((2, 10))
    mask = np.ones_like(ids)
    mask[0, :2] = 0
    got = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert masked_max_diff(got, hf_logits(hf_model(d), ids, mask), mask) <= TOL


def test_configs_cover_the_family_features(tiny_dirs):
    cfgs = {f: load_pretrained(d, with_tokenizer=False)[0].config for f, d in tiny_dirs.items()}
    assert cfgs["qwen2"].attention_bias and cfgs["qwen2"].num_kv_heads < cfgs["qwen2"].num_heads
    assert cfgs["llama"].tie_word_embeddings and not cfgs["llama"].attention_bias
    q3 = cfgs["qwen3"]
    assert q3.qk_norm and q3.head_dim * q3.num_heads != q3.hidden_size and not q3.tie_word_embeddings


def test_packed_segments_equal_separate_sequences(tiny_qwen2):
    model, _ = load_pretrained(tiny_qwen2, with_tokenizer=False)
    a, b = _ids((1, 5), 1), _ids((1, 4), 2)
    packed = np.concatenate([a, b, np.zeros((1, 3), int)], axis=1)
    seg = np.array([[1] * 5 + [2] * 4 + [0] * 3])
    np.testing.assert_array_equal(segment_positions(jnp.asarray(seg)), [[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0, 0]])
    out = np.asarray(model(jnp.asarray(packed), segment_ids=jnp.asarray(seg)))
    np.testing.assert_allclose(out[:, :5], model(jnp.asarray(a)), atol=TOL)
    np.testing.assert_allclose(out[:, 5:9], model(jnp.asarray(b)), atol=TOL)
    assert np.isfinite(out).all()  # padding rows too


def test_llama3_rope_scaling_matches_transformers(tmp_path):
    from automem_jax.models.tiny import write_tiny_checkpoint

    rs = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    d = write_tiny_checkpoint(tmp_path / "l3", "llama", rope_scaling=rs, rope_theta=500000.0)
    model, _ = load_pretrained(d, with_tokenizer=False)
    ids = _ids((1, 40))
    pos = np.arange(40)[None] * 5  # long positions exercise the scaled frequencies
    import torch

    ref = hf_model(d)
    with torch.no_grad():
        want = ref(torch.tensor(ids), position_ids=torch.tensor(pos)).logits.numpy()
    got = model(jnp.asarray(ids), positions=jnp.asarray(pos))
    assert np.abs(np.asarray(got) - want).max() <= TOL


def test_unsupported_rope_scaling_is_rejected():
    cfg = tiny_config("llama").to_hf()
    cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    with pytest.raises(UnsupportedModelError, match="yarn"):
        ModelConfig.from_hf(cfg)
    cfg = tiny_config("qwen2").to_hf() | {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}
    with pytest.raises(UnsupportedModelError):
        ModelConfig.from_hf(cfg)


def test_lora_split_only_lora_and_zero_init():
    cfg = tiny_config("qwen2", vocab_size=512)
    model = build_model(
        cfg, LoraConfig(r=4, alpha=8, target_modules=("q_proj", "v_proj", "down_proj")), rngs=0
    )
    _, lora, rest = nnx.split(model, LoRAParam, ...)
    flat = nnx.to_flat_state(lora)
    names = {(p[2], p[3], p[4]) for p, _ in flat}
    assert names == {
        (m, s, x)
        for m, s in (("self_attn", "q_proj"), ("self_attn", "v_proj"), ("mlp", "down_proj"))
        for x in ("lora_a", "lora_b")
    }
    assert all(isinstance(v, LoRAParam) for _, v in flat)
    assert not any(isinstance(v, LoRAParam) for _, v in nnx.to_flat_state(rest))
    for p, v in flat:
        if p[-1] == "lora_b":
            assert not np.any(np.asarray(v[...]))
        else:
            assert np.std(np.asarray(v[...])) > 0
    base = build_model(cfg, None, rngs=1)
    nnx.update(base, nnx.state(model, nnx.All(nnx.Param, nnx.Not(LoRAParam))))
    ids = jnp.asarray(_ids((1, 6), hi=512))
    np.testing.assert_allclose(model(ids), base(ids), atol=1e-6)  # B = 0: same function as the base


def test_lora_swap_does_not_recompile():
    cfg = tiny_config("llama", vocab_size=256)
    model = build_model(cfg, LoraConfig(r=2, alpha=4, target_modules="all"), rngs=0)
    traces = []

    @nnx.jit
    def fwd(m, ids):
        traces.append(1)
        return m(ids)

    ids = jnp.asarray(_ids((1, 5), hi=256))
    y0 = fwd(model, ids)
    lora = nnx.state(model, LoRAParam)
    new = jax.tree.map(lambda x: x + 0.3, lora)
    nnx.update(model, new)
    y1 = fwd(model, ids)
    assert len(traces) == 1
    assert np.abs(np.asarray(y1) - np.asarray(y0)).max() > 1e-3


def test_bfloat16_runs_close_to_float32(tiny_qwen2):
    m32, _ = load_pretrained(tiny_qwen2, with_tokenizer=False)
    m16, _ = load_pretrained(tiny_qwen2, dtype=jnp.bfloat16, with_tokenizer=False)
    assert m16.layers[0].self_attn.q_proj.kernel[...].dtype == jnp.bfloat16
    ids = jnp.asarray(_ids((2, 7)))
    a, b = np.asarray(m32(ids)), np.asarray(m16(ids))
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_unpermute_inverts_llama_cpp_permutation():
    n_head, d, hin = 3, 8, 5
    w = np.random.default_rng(0).standard_normal((n_head * d, hin))
    # llama.cpp convert_hf_to_gguf.permute
    permuted = w.reshape(n_head, 2, d // 2, hin).swapaxes(1, 2).reshape(w.shape)
    np.testing.assert_array_equal(unpermute_llama_qk(permuted, n_head), w)


def test_chunked_attention_matches_full_with_gradients():
    from automem_jax.models import set_attention_chunk

    cfg = tiny_config("qwen2", vocab_size=300, num_layers=1)
    model = build_model(cfg, LoraConfig(r=2, alpha=4), rngs=0, attn_chunk=None)
    ids = jnp.asarray(_ids((2, 37), hi=300))
    seg = jnp.asarray(np.array([[1] * 20 + [2] * 17, [1] * 30 + [0] * 7]))

    @nnx.jit
    def value_and_grad(m):
        loss = lambda m: jnp.mean(m(ids, segment_ids=seg)[..., :5] ** 2)  # noqa: E731
        return nnx.value_and_grad(loss, argnums=nnx.DiffState(0, LoRAParam))(m)

    full, g_full = value_and_grad(model)
    set_attention_chunk(model, 8)  # 37 = 4 chunks of 8 + a short one
    chunked, g_chunk = value_and_grad(model)
    np.testing.assert_allclose(chunked, full, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_chunk), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_lora_dropout_loaded_model_trains_stochastically(tiny_qwen2):
    from automem_jax.models import set_lora_dropout

    model, _ = load_pretrained(
        tiny_qwen2, lora=LoraConfig(r=4, alpha=8, dropout=0.5, target_modules="all"), with_tokenizer=False
    )
    lora = nnx.state(model, LoRAParam)
    nnx.update(model, jax.tree.map(lambda x: x + 0.3, lora))
    ids = jnp.asarray(_ids((1, 6)))
    fwd = nnx.jit(lambda m, x: m(x))
    assert np.array_equal(fwd(model, ids), fwd(model, ids))  # dropout off by default
    set_lora_dropout(model, True)
    a, b = fwd(model, ids), fwd(model, ids)
    assert not np.array_equal(a, b)  # the RNG stream advances between steps


def _reference_attention(qg, keys, values, q_slots, k_slots, q_seg, k_seg):
    """Masked grouped-query attention written out with numpy loops (the definition _attention implements)."""
    B, T, KV, G, D = qg.shape
    out = np.zeros(qg.shape, np.float64)
    for b, t, k, g in np.ndindex(B, T, KV, G):
        ok = (k_slots <= q_slots[t]) & (k_seg[b] == q_seg[b, t]) & (k_seg[b] != 0)
        if not ok.any():
            continue  # a padding query: zero output
        s = keys[b, k][ok] @ qg[b, t, k, g] / np.sqrt(D)
        p = np.exp(s - s.max())
        out[b, t, k, g] = (p / p.sum()) @ values[b, k][ok]
    return out


@pytest.mark.parametrize("T", [1, 3])  # a decode step and a short prefill
def test_attention_matches_a_reference_with_padding_and_segments(T):
    """Left padding, a second segment and a row with no visible key (which must output zero)."""
    from automem_jax.models import decoder as dec

    rng = np.random.default_rng(3)
    B, KV, G, S, D = 3, 2, 3, 12, 16
    qg = rng.standard_normal((B, T, KV, G, D)).astype(np.float32)
    keys = rng.standard_normal((B, KV, S, D)).astype(np.float32)
    values = rng.standard_normal((B, KV, S, D)).astype(np.float32)
    k_seg = np.array([[0] * 4 + [1] * 8, [1] * 5 + [2] * 7, [0] * 9 + [1] * 3], np.int32)
    q_seg = np.array([[1] * T, [2] * T, [0] * T], np.int32)  # the last row is padding: zero output
    q_slots, k_slots = np.arange(9, 9 + T, dtype=np.int32), np.arange(S, dtype=np.int32)
    got = dec._attention(*map(jnp.asarray, (qg, keys, values, q_slots, k_slots, q_seg, k_seg)), jnp.float32)
    assert got.shape == qg.shape
    np.testing.assert_allclose(got, _reference_attention(qg, keys, values, q_slots, k_slots, q_seg, k_seg),
                               atol=1e-6)
    assert not np.any(np.asarray(got[2]))
    assert np.all(np.abs(np.asarray(got[:2])).sum(axis=(1, 2, 3, 4)) > 0)
