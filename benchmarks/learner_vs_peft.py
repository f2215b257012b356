"""LoRA SFT speed: automem_jax's learner step vs transformers + peft (PyTorch eager, and torch.compile).

Same run, same model and weights, same LoRA (rank, alpha, target modules, no dropout), same batch shape,
dtype, loss masking (cross-entropy on the second half of each row, the "assistant" tokens, mean over
trained tokens) and optimizer (AdamW + global-norm clipping at 1.0). Each side does a warm-up step first
(compilation, reported separately), then ``--steps`` timed optimizer steps, ``--repeats`` times,
alternating sides; the median is kept. Tokens/s counts every token in the batch (rows x length).

    python benchmarks/learner_vs_peft.py                      # SmolLM2-135M (embedded GGUF), 2 x 256 tokens
    python benchmarks/learner_vs_peft.py --model tiny --rows 4 --length 256   # small random Qwen2 (fast, CI)
    python benchmarks/learner_vs_peft.py --no-compile          # skip the torch.compile figure

The last line printed is ``ratio=<ours tokens/s / peft eager tokens/s>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from torch_reference import torch_reference  # benchmarks/torch_reference.py, beside this script

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def resolve_model(name: str) -> str:
    if name == "tiny":
        from automem_jax.models.tiny import write_tiny_checkpoint

        d = Path(tempfile.mkdtemp(prefix="bench-tiny-")) / "qwen2"
        write_tiny_checkpoint(d, "qwen2", hidden_size=256, intermediate_size=704, num_layers=4, num_heads=8,
                              num_kv_heads=4, head_dim=32, tie_word_embeddings=True)  # fmt: skip
        return str(d)
    return name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m, tiny, an HF dir or a .gguf")
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--out", type=Path, default=None, help="write a JSON summary here")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    from automem_jax.learner.config import OptimConfig
    from automem_jax.learner.examples import Example, make_batch
    from automem_jax.learner.sft import SFTTrainer
    from automem_jax.models import LoraConfig, load_pretrained

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    name = resolve_model(args.model)
    jdtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    tdtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    R, T = args.rows, args.length
    tokens_per_step = R * T

    # ---- data: random ids, loss on the second half of every row
    model, _ = load_pretrained(name, LoraConfig(r=args.r, alpha=args.alpha, target_modules=tuple(TARGETS)), jdtype,
                               with_tokenizer=False)  # fmt: skip
    V = model.config.vocab_size
    rng = np.random.default_rng(0)
    ids = rng.integers(0, min(V, 32000), (R, T)).astype(np.int32)
    w = np.zeros(T, np.float32)
    w[T // 2 :] = 1.0
    exs = [Example(f"r{i}", ids[i], w.copy()) for i in range(R)]
    batch, _ = make_batch(exs, 0, rows=R, row_len=T, packing=False, bucket=T)
    arrays = batch.arrays()

    # ---- ours
    optim = OptimConfig(lr=args.lr, warmup_steps=0, schedule="constant", clip_norm=1.0, loss_chunk=512)
    trainer = SFTTrainer(model, optim, total_steps=10_000)
    t = time.perf_counter()
    r0 = trainer.step(arrays)
    ours_compile = time.perf_counter() - t
    ours_loss0 = r0.metrics["loss"]

    def run_ours() -> float:
        t = time.perf_counter()
        for _ in range(args.steps):
            trainer.step(arrays)  # returns host metrics: each step is complete when it returns
        return tokens_per_step * args.steps / (time.perf_counter() - t)

    # ---- transformers + peft
    tm = torch_reference(name, tdtype, attn_implementation="sdpa")
    tm.config.use_cache = False
    pm = get_peft_model(tm, PeftLoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=TARGETS,
                                           task_type="CAUSAL_LM"))  # fmt: skip
    pm.train()
    input_ids = torch.from_numpy(ids.astype(np.int64))
    # tokens T//2 .. T-1 are targets on both sides (HF shifts labels by one inside the loss, as we do)
    labels = input_ids.clone()
    labels[:, : T // 2] = -100

    def make_torch_step(m):
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

        def step():
            out = m(input_ids=input_ids, labels=labels)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(out.loss.detach())

        return step

    eager_step = make_torch_step(pm)
    t = time.perf_counter()
    peft_loss0 = eager_step()
    eager_warm = time.perf_counter() - t

    def run_torch(step) -> float:
        t = time.perf_counter()
        for _ in range(args.steps):
            step()
        return tokens_per_step * args.steps / (time.perf_counter() - t)

    ours, eager = [], []
    for _ in range(args.repeats):
        ours.append(run_ours())
        eager.append(run_torch(eager_step))

    compiled = None
    compile_s = None
    compile_err = None
    if not args.no_compile:
        try:
            cm = torch.compile(pm)
            cstep = make_torch_step(cm)
            t = time.perf_counter()
            cstep()
            compile_s = time.perf_counter() - t
            compiled = statistics.median(run_torch(cstep) for _ in range(args.repeats))
        except Exception as e:  # inductor needs a C++ toolchain; report instead of failing the benchmark
            compile_err = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"

    o, e = statistics.median(ours), statistics.median(eager)
    print(f"model {args.model}: {model.config.num_layers} layers, hidden {model.config.hidden_size}, vocab {V}; "
          f"LoRA r={args.r} alpha={args.alpha:g} on {len(TARGETS)} modules; batch {R} x {T} tokens, {args.dtype}, "
          f"loss on {T - T // 2} tokens per row")  # fmt: skip
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"initial loss: ours {ours_loss0:.5f}  peft {peft_loss0:.5f}  (same weights, B = 0: should agree)")
    print(f"ours (jax, jitted step):  {o:10.1f} tokens/s   (compile + first step {ours_compile:.1f}s; runs {[round(x) for x in ours]})")
    print(f"transformers+peft eager:  {e:10.1f} tokens/s   (first step {eager_warm:.1f}s; runs {[round(x) for x in eager]})")
    if compiled is not None:
        print(f"transformers+peft torch.compile: {compiled:10.1f} tokens/s   (compile + first step {compile_s:.1f}s); "
              f"ours / compiled = {o / compiled:.2f}x")  # fmt: skip
    elif compile_err:
        print(f"transformers+peft torch.compile: failed ({compile_err})")
    summary = {
        "model": args.model, "rows": R, "length": T, "r": args.r, "alpha": args.alpha, "dtype": args.dtype,
        "ours_tokens_per_s": o, "peft_eager_tokens_per_s": e, "peft_compile_tokens_per_s": compiled,
        "ours_compile_s": ours_compile, "torch_compile_s": compile_s, "initial_loss": [ours_loss0, peft_loss0],
        "ratio": o / e, "ratio_vs_compile": (o / compiled) if compiled else None,
    }  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    print(f"ratio={o / e:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
