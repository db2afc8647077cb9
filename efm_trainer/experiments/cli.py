"""``efm experiment scaling|pretraining|overoptimisation``: the paper's claims, reproduced in simulation."""
from __future__ import annotations

import argparse
import signal

HELP = "reproduce the paper's claims in simulation (self-improvement vs more demos, pretraining, over-optimisation)"
RESUME = ("Re-running the same command resumes: finished arms are kept, an interrupted one continues from "
          "its last checkpoint. Results: OUT/report/ (report.md, a PNG per claim, results.csv per episode).")


def register(subparsers) -> None:
    parser = subparsers.add_parser("experiment", help=HELP, description=HELP + ".")
    commands = parser.add_subparsers(title="experiments", metavar="EXPERIMENT")
    scaling = commands.add_parser(
        "scaling", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Stage 1 + 10%%/20%% practice episodes against Stage 1 on 2x, 4x, 8x the demos",
        description="Per training seed: Stage 1 on --unit demos (1x), Stage 2 self-improvement from it after "
                    "--practice-fraction and twice that many practice episodes, and Stage 1 alone on 2x, 4x and 8x "
                    "the demos; all evaluated on the same held-out scenes by ground-truth success. " + RESUME)
    _common(scaling, "runs/experiments/scaling")
    scaling.add_argument("--unit", type=int, default=100, help="demos of 1x")
    scaling.add_argument("--multiples", type=int, nargs="+", default=[2, 4, 8], help="demo multiples of Stage 1 alone")
    scaling.add_argument("--practice-fraction", type=float, default=0.1,
                         help="practice episodes per learner update, as a fraction of 1x (two updates)")
    scaling.add_argument("--seeds", type=int, default=3, help="training seeds")
    scaling.add_argument("--sft-steps", type=int, default=1000,
                         help="Stage 1 optimizer steps at 1x and 2x; from 2x on they grow with the demos (x m/2)")
    scaling.add_argument("--sft-max-steps", type=int, default=3000, help="the most Stage 1 steps of any arm")
    scaling.set_defaults(handler=run_scaling)
    pretraining = commands.add_parser(
        "pretraining", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="the same Stage 1 + Stage 2 pipeline with the small (pretrained) and scratch backbones",
        description="Per training seed, one efm self-improve run with the pretrained `small` backbone and one with "
                    "`scratch` (same network, random initialisation, trained end to end), for the policy and the "
                    "reward model alike; ground-truth success after Stage 1 and after 10%% and 20%% practice, "
                    "and each reward model's held-out error. Scratch trains the whole backbone, so frames are "
                    "cut after 5 blocks and batches are 32 (both arms alike). " + RESUME)
    _common(pretraining, "runs/experiments/pretraining")
    pretraining.add_argument("--demos", type=int, default=100, help="Stage 1 demos")
    pretraining.add_argument("--seeds", type=int, default=1, help="training seeds")
    pretraining.add_argument("--sft-steps", type=int, default=1000, help="Stage 1 optimizer steps of both arms")
    pretraining.add_argument("--image-size", type=int, nargs=2, default=[96, 160], metavar=("H", "W"))
    pretraining.add_argument("--vision-blocks", type=int, default=5, choices=(5, 8, 11))
    pretraining.set_defaults(handler=run_pretraining)
    over = commands.add_parser(
        "overoptimisation", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Stage 2 past its peak: ground truth, detector precision/recall, and which version rules keep",
        description="One efm self-improve run with many updates; every version evaluated on two disjoint "
                    "held-out sets (A: what the learner's best rule sees, B: what judges the rules); the success "
                    "detector scored against the simulator's truth recorded with every practice episode; "
                    "selection rules that need no ground truth (detector alone, occasional human labels, a "
                    "false-alarm stop) compared with the best-by-evaluation rule. " + RESUME)
    _common(over, "runs/experiments/overoptimisation")
    over.add_argument("--demos", type=int, default=100, help="Stage 1 demos")
    over.add_argument("--seed", type=int, default=0, help="training seed")
    over.add_argument("--sft-steps", type=int, default=1000, help="Stage 1 optimizer steps")
    over.add_argument("--updates", type=int, default=10, help="learner updates (versions after Stage 1)")
    over.add_argument("--episodes-per-update", type=int, default=10, help="practice episodes per update")
    over.add_argument("--rl-lr", type=float, default=0.0, help="Stage 2 learning rate (0 = Stage 1's)")
    over.add_argument("--label-every", type=int, default=4,
                      help="one practice episode in this many gets a simulated human label")
    over.set_defaults(handler=run_overoptimisation)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _common(parser, default_out: str) -> None:
    parser.add_argument("--env", default="language_table", choices=("language_table", "aloha"))
    parser.add_argument("--task", default="separate", help="task family of demos, practice and evaluation")
    parser.add_argument("--out", default=default_out, help="experiment directory")
    parser.add_argument("--cache", default="~/.cache/efm", help="oracle demos and backbone features, shared")
    parser.add_argument("--eval-episodes", type=int, default=50, help="held-out scenes every arm is evaluated on")
    parser.add_argument("--eval-workers", type=int, default=2, help="evaluation processes (same results)")
    parser.add_argument("--max-steps", type=int, default=100, help="policy steps of a practice or evaluation episode")
    parser.add_argument("--robots", type=int, default=2, help="simulated robots practising in parallel")


def _handle_signals() -> None:
    # Ctrl-C or SIGTERM stop the arm in hand in order (robots, then the learner); finished arms stay
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt()))


def run_scaling(args) -> int:
    from .scaling import ScalingConfig, run_scaling as run

    _handle_signals()
    config = ScalingConfig(env=args.env, task=args.task, unit=args.unit, multiples=tuple(args.multiples),
                           practice_fraction=args.practice_fraction, seeds=args.seeds,
                           eval_episodes=args.eval_episodes, eval_workers=args.eval_workers, max_steps=args.max_steps,
                           sft_steps=args.sft_steps, sft_max_steps=args.sft_max_steps, robots=args.robots,
                           cache=args.cache)
    report = run(config, args.out)
    print(f"report: {report}\n")
    print(report.read_text())
    return 0


def run_pretraining(args) -> int:
    from .pretraining import PretrainingConfig, run_pretraining as run

    _handle_signals()
    config = PretrainingConfig(env=args.env, task=args.task, demos=args.demos, seeds=args.seeds,
                               sft_steps=args.sft_steps, image_size=tuple(args.image_size),
                               vision_blocks=args.vision_blocks, eval_episodes=args.eval_episodes,
                               eval_workers=args.eval_workers, max_steps=args.max_steps, robots=args.robots,
                               cache=args.cache)
    report = run(config, args.out)
    print(f"report: {report}\n")
    print(report.read_text())
    return 0


def run_overoptimisation(args) -> int:
    from .overoptimisation import OveroptimisationConfig, run_overoptimisation as run

    _handle_signals()
    config = OveroptimisationConfig(env=args.env, task=args.task, demos=args.demos, seed=args.seed,
                                    sft_steps=args.sft_steps, episodes_per_update=args.episodes_per_update,
                                    updates=args.updates, rl_lr=args.rl_lr, eval_episodes=args.eval_episodes,
                                    eval_workers=args.eval_workers, label_every=args.label_every,
                                    max_steps=args.max_steps, robots=args.robots, cache=args.cache)
    report = run(config, args.out)
    print(f"report: {report}\n")
    print(report.read_text())
    return 0
