"""How much does the policy use its camera? SFT twice on the same data and settings, once with every
frozen-backbone feature zeroed, and print validation BC loss at equal steps.

    python bench/sft_image_ablation.py --data data/lt [--steps 1000] [--out /tmp/ablation]

If zeroing the image barely changes the loss, the policy is acting from proprio and the instruction
alone. Needs a run-sized dataset; trains with 32 action bins and lr 1e-3 (the settings of
bench/RESULTS_stage1.md, run B). Prints figures; nothing passes or fails.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from efm_trainer.sft import SFTRun, SFTSettings


def validation_bc(data: list[str], out: Path, steps: int, zero_images: bool) -> list[tuple[int, float]]:
    settings = SFTSettings(data=data, out=str(out), max_steps=steps, eval_every=max(steps // 4, 1),
                           checkpoint_every=10 * steps, action_bins=32, lr=1e-3)
    run = SFTRun(settings, log=lambda _: None)
    if zero_images:
        run.features = torch.zeros_like(run.features)
    curve = []
    while run.step < steps:
        run.train(max_steps=min(run.step + settings.eval_every, steps))
        curve.append((run.step, run.evaluate()["val_bc_loss"]))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default="/tmp/efm-image-ablation")
    args = parser.parse_args()
    with_images = validation_bc(args.data, Path(args.out) / "images", args.steps, zero_images=False)
    without = validation_bc(args.data, Path(args.out) / "zeroed", args.steps, zero_images=True)
    print("step   val BC with images   with images zeroed   difference")
    for (step, a), (_, b) in zip(with_images, without):
        print(f"{step:5d}   {a:18.4f}   {b:18.4f}   {b - a:+10.4f}")


if __name__ == "__main__":
    main()
