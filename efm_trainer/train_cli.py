"""``efm train sft``: Stage 1 supervised fine-tuning on rosbag2/MCAP episode folders."""
from __future__ import annotations

import argparse

HELP = "train the policy (Stage 1: supervised fine-tuning on demonstrations)"


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help=HELP, description=HELP + ".")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    sft = commands.add_parser(
        "sft", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="behavioural cloning + steps-to-go on successful episodes",
        description="Fine-tune the EFM policy on episode folders: cross-entropy on action tokens plus "
                    "cross-entropy on binned steps to go (hindsight: the goal is the instruction the episode "
                    "achieved). Re-running the same command on the same --out continues from its last "
                    "checkpoint; raising --max-steps trains further.")
    sft.add_argument("--data", nargs="+", required=True, metavar="DIR",
                     help="dataset folders (or single episode folders) recorded by `efm demos` or a robot")
    sft.add_argument("--out", required=True, metavar="RUN", help="run directory (created, or continued)")
    sft.add_argument("--backbone", choices=("small", "scratch", "hf"), default="small",
                     help="small: pretrained EfficientNet-Lite0 + MiniLM; scratch: same, random init; "
                          "hf: transformers vision tower from --hf-path")
    sft.add_argument("--hf-path", default="", help="local transformers checkpoint (SigLIP or PaliGemma) for --backbone hf")
    sft.add_argument("--max-steps", type=int, default=3000, help="optimizer steps to train to")
    sft.add_argument("--batch-size", type=int, default=64)
    sft.add_argument("--lr", type=float, default=3e-4)
    sft.add_argument("--bc-weight", type=float, default=1.0, help="weight of the action-token loss")
    sft.add_argument("--steps-to-go-weight", type=float, default=1.0, help="weight of the steps-to-go loss")
    sft.add_argument("--val-fraction", type=float, default=0.1, help="share of episodes held out for validation")
    sft.add_argument("--cameras", nargs="*", default=[], help="cameras the policy sees (default: all recorded)")
    sft.add_argument("--history", type=int, default=2, help="frames per camera (current + earlier)")
    sft.add_argument("--image-size", type=int, nargs=2, default=(96, 160), metavar=("H", "W"),
                     help="frames are resized to this before the backbone")
    sft.add_argument("--trainable-vision-blocks", type=int, default=None,
                     help="last backbone blocks to fine-tune (-1 all; default 0 for small/hf, which lets "
                          "features be cached, and all for scratch)")
    sft.add_argument("--token-pool", type=int, default=2,
                     help="average backbone tokens N x N before fusion (1 keeps the full grid: slower, finer)")
    sft.add_argument("--vision-blocks", type=int, choices=(5, 8, 11), default=11,
                     help="EfficientNet-Lite0 blocks kept: 11 and 8 give a stride-16 grid, 5 a finer stride-8 one")
    sft.add_argument("--action-bins", type=int, default=256)
    sft.add_argument("--steps-to-go-bins", type=int, default=50)
    sft.add_argument("--eval-every", type=int, default=250, help="steps between validations")
    sft.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints")
    sft.add_argument("--seed", type=int, default=0)
    sft.set_defaults(handler=run_sft)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_sft(args) -> int:
    from efm_runtime.errors import EfmUserError

    try:
        from .sft import RunError, SFTRun, SFTSettings
        from .sft_data import DatasetError
    except ImportError as exc:
        raise EfmUserError(f"training needs the train extra ({exc}); pip install -e '.[train]'") from None
    settings = SFTSettings(
        data=list(args.data), out=args.out, backbone=args.backbone, hf_path=args.hf_path, max_steps=args.max_steps,
        batch_size=args.batch_size, lr=args.lr, bc_weight=args.bc_weight, steps_to_go_weight=args.steps_to_go_weight,
        val_fraction=args.val_fraction, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        seed=args.seed, action_bins=args.action_bins, steps_to_go_bins=args.steps_to_go_bins, history=args.history,
        image_size=tuple(args.image_size), cameras=list(args.cameras),
        trainable_vision_blocks=args.trainable_vision_blocks, token_pool=args.token_pool, vision_blocks=args.vision_blocks)
    try:
        run = SFTRun(settings)
        final = run.train()
    except (RunError, DatasetError, FileNotFoundError) as exc:
        raise EfmUserError(str(exc)) from None
    summary = ", ".join(f"{k} {v:.4g}" for k, v in final.items())
    print(f"{args.out}: step {run.step} saved ({summary or 'no validation episodes'})")
    print(f"next: efm eval value {args.out} --episodes DIR --out value.png; efm export {args.out} --out MODEL_DIR")
    return 0
