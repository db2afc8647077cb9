"""Learner update throughput: samples/s of the REINFORCE SGD steps, and the wall time of a whole update.

An update = read the practice episodes (decode JPEG, fit frames), frozen-backbone features once per frame
(cached path), ``sgd_steps`` minibatches of ``batch_size``, then the export of the new version. Episodes are
synthetic (random frames, tokens and rewards) but shaped exactly as the model expects, so every phase does
its real work. Prints medians over ``--repeats``; never passes or fails on time.

    python bench/learner_update.py                           # tiny scratch model (trainable backbone, no cache)
    python bench/learner_update.py --run /work/runs/lt_b32   # a real `small` Stage 1 run (frozen backbone)
    python bench/learner_update.py --run RUN --steps 2048 --sgd-steps 32 --batch-size 64   # the paper's update
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))


def write_episodes(out: Path, total_steps: int, episode_steps: int, config, tokenizers, frame_size, seed=0):
    from practice_episodes import write_practice_episode

    rng = np.random.default_rng(seed)
    action = tokenizers.action
    paths, written = [], 0
    while written < total_steps:
        steps = min(episode_steps, total_steps - written)
        tokens = rng.integers(0, action.bins, (steps, action.tokens_per_chunk))
        rewards = rng.normal(0.0, 1.0, steps)
        paths.append(write_practice_episode(
            out, f"bench-{len(paths):04d}", "sft-0000", tokens, rewards, embodiment=config.embodiment,
            camera=config.cameras[0], seed=int(rng.integers(1 << 30)), frame_size=frame_size,
            action_dim=action.action_dim, horizon=action.horizon))
        written += steps
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="", help="Stage 1 run directory (default: a tiny scratch model)")
    parser.add_argument("--steps", type=int, default=512, help="practice steps in the update (paper: 2048)")
    parser.add_argument("--episode-steps", type=int, default=64, help="steps per synthetic episode")
    parser.add_argument("--sgd-steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frame-size", type=int, nargs=2, default=(180, 320), metavar=("H", "W"),
                        help="recorded camera frame size (LanguageTable: 180 320)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--export", action="store_true", help="also time the export of the updated policy")
    args = parser.parse_args()

    import torch

    from efm_policy.model import load_policy
    from efm_policy.text import InstructionEncoder
    from efm_trainer.learner_update import UpdatePlan, run_update
    from efm_trainer.sft import _atomic_torch_save

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.run:
            run = Path(args.run)
        else:
            from tiny_model import tiny_checkpoint
            run = tiny_checkpoint(tmp / "run")
        model, _ = load_policy(str(run))
        config, tokenizers = model.config, model.tokenizers
        del model
        started = time.perf_counter()
        paths = write_episodes(tmp / "episodes", args.steps, args.episode_steps, config, tokenizers,
                               tuple(args.frame_size))
        print(f"model: {run} ({config.backbone}, cameras {list(config.cameras)}, history {config.history}, "
              f"image {config.image_size}, trainable vision blocks {config.trainable_vision_blocks}); "
              f"{len(paths)} synthetic episodes, {args.steps} steps written in {time.perf_counter() - started:.1f} s")
        instruction = "push the red moon to the blue cube"
        embedding = InstructionEncoder().encode([instruction])[0].tolist()
        results = []
        for repeat in range(args.repeats):
            plan = UpdatePlan(version=f"bench-{repeat}", parent="sft-0000", parent_checkpoint=str(run / "checkpoint.pt"),
                              episodes=[p.name for p in paths], episode_dirs=[str(p) for p in paths],
                              learner_step=repeat, sgd_steps=args.sgd_steps, batch_size=args.batch_size,
                              gamma=0.9, seed=0, lr=None, instruction_embeddings={instruction: embedding})
            model, optimizer, metrics = run_update(plan, None, log=lambda _: None)
            if args.export:
                from efm_policy.export import export_model
                from efm_policy.model import checkpoint_state

                checkpoint = tmp / "checkpoints" / f"{plan.version}.pt"
                checkpoint.parent.mkdir(exist_ok=True)
                _atomic_torch_save(checkpoint_state(model, 0, optimizer.state_dict()), checkpoint)
                began = time.perf_counter()
                export_model(checkpoint, tmp / "versions" / plan.version, version=plan.version, text_encoder=False,
                             log=lambda _: None)
                metrics["export_s"] = round(time.perf_counter() - began, 3)
            results.append(metrics)
            print(f"  repeat {repeat}: " + ", ".join(f"{k} {metrics[k]}" for k in
                                                   ("load_s", "features_s", "sgd_s", "sgd_samples_per_s", "update_s")
                                                   + (("export_s",) if args.export else ())))

    def median(key):
        return statistics.median(r[key] for r in results)

    print(f"device {results[0]['device']}, {torch.get_num_threads()} torch threads; "
          f"update of {args.steps} steps, {args.sgd_steps} x {args.batch_size} SGD (medians of {len(results)}):")
    print(f"  read episodes  {median('load_s'):8.2f} s   ({args.steps / median('load_s'):.0f} steps/s)")
    print(f"  features       {median('features_s'):8.2f} s   (frozen backbone once per frame; 0 when it trains)")
    print(f"  SGD            {median('sgd_s'):8.2f} s   ({median('sgd_samples_per_s'):.0f} samples/s)")
    print(f"  whole update   {median('update_s'):8.2f} s   (with the log-prob diagnostics before and after)")
    if args.export:
        print(f"  export         {median('export_s'):8.2f} s")


if __name__ == "__main__":
    main()
