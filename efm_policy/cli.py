"""``efm export`` and ``efm eval value|policy``: from a training run to a model a robot runs, and
the numbers that say whether it is any good."""
from __future__ import annotations

import argparse
import json

EXPORT_HELP = "export a training run to an ONNX model directory for the robots"
EVAL_HELP = "evaluate a run (value landscape) or an exported policy (success rate in simulation)"


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export", help=EXPORT_HELP, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=EXPORT_HELP + ": policy.onnx (action logits), reward.onnx (the steps-to-go head), "
                    "instruction embeddings, the MiniLM text encoder and a manifest with sha256 of every file. "
                    "Fails, writing nothing, when ONNX Runtime and torch disagree on the same inputs.")
    export.add_argument("run", help="run directory of `efm train sft` (or a checkpoint.pt)")
    export.add_argument("--out", required=True, metavar="MODEL_DIR", help="new model directory")
    export.add_argument("--version", default=None, help="policy version name (default: RUN-stepN)")
    export.add_argument("--instructions", nargs="*", default=[],
                        help="extra instructions to embed in the table besides the training ones")
    export.add_argument("--no-text-encoder", dest="text_encoder", action="store_false",
                        help="leave out the 90 MB text encoder: only table instructions can then be given")
    export.set_defaults(handler=run_export)

    evaluate = subparsers.add_parser("eval", help=EVAL_HELP, description=EVAL_HELP + ".")
    commands = evaluate.add_subparsers(title="commands", metavar="COMMAND")
    value = commands.add_parser(
        "value", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="plot predicted steps-to-go against the truth along held-out episodes",
        description="Plot d(o,g) from the run's steps-to-go head against the true steps to go along episodes "
                    "the run did not train on: the landscape Stage 2 turns into rewards.")
    value.add_argument("run", help="run directory")
    value.add_argument("--episodes", nargs="+", required=True, metavar="DIR", help="episode folders (held-out ones are used)")
    value.add_argument("--out", required=True, help="PNG to write")
    value.add_argument("--max-episodes", type=int, default=12)
    value.set_defaults(handler=run_value)
    policy = commands.add_parser(
        "policy", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="success rate of an exported policy on seeded simulated episodes",
        description="Run an exported policy in simulation on seeded scenes and score ground-truth success.")
    policy.add_argument("model_dir", help="exported model directory")
    policy.add_argument("--env", default="language_table")
    policy.add_argument("--task", default="block2block", help="task family ('' = any)")
    policy.add_argument("--episodes", type=int, default=50)
    policy.add_argument("--first-seed", type=int, default=1_000_001, help="seeds first..first+episodes-1 (demos use 1..)")
    policy.add_argument("--sample", action="store_true", help="sample actions (temperature) instead of greedy")
    policy.add_argument("--temperature", type=float, default=1.0)
    policy.add_argument("--max-policy-steps", type=int, default=None,
                        help="end an episode after this many policy steps (default: the environment's limit)")
    policy.add_argument("--workers", type=int, default=1,
                        help="evaluate in this many processes (same results; use the machine's cores)")
    policy.add_argument("--json", default=None, help="also write the summary and every episode to this file")
    policy.set_defaults(handler=run_policy)
    evaluate.set_defaults(handler=lambda args: evaluate.print_help() or 2)


def run_export(args) -> int:
    from efm_runtime.errors import EfmUserError

    try:
        from .export import export_model
        from .manifest import ModelDirError
    except ImportError as exc:
        raise EfmUserError(f"export needs the train extra ({exc}); pip install -e '.[train]'") from None
    try:
        manifest = export_model(args.run, args.out, version=args.version, extra_instructions=args.instructions,
                                text_encoder=args.text_encoder)
    except (ModelDirError, FileNotFoundError) as exc:
        raise EfmUserError(str(exc)) from None
    size = sum((manifest.directory / name).stat().st_size for name in manifest.files) / 1e6
    print(f"{args.out}: version {manifest.version} ({manifest.embodiment}, {len(manifest.files)} files, {size:.1f} MB)")
    return 0


def run_value(args) -> int:
    from efm_runtime.errors import EfmUserError

    from efm_trainer.value_eval import value_landscape

    try:
        result = value_landscape(args.run, args.episodes, args.out, args.max_episodes)
    except (ValueError, FileNotFoundError) as exc:
        raise EfmUserError(str(exc)) from None
    print(f"{args.out}: {result['episodes']} held-out episodes, {result['states']} states, steps-to-go MAE "
          f"{result['steps_to_go_mae']:.2f}, correlation {result['correlation']:.3f}")
    return 0


def run_policy(args) -> int:
    from dataclasses import asdict

    from tqdm import tqdm

    from efm_runtime.errors import EfmUserError

    from .evaluate import evaluate_policy, summarize
    from .manifest import ModelDirError

    bar = tqdm(total=args.episodes, desc="eval", unit="ep")
    wins = []

    def on_episode(result) -> None:
        wins.append(result.success)
        bar.update(1)
        bar.set_postfix(success=f"{sum(wins) / len(wins):.0%}")

    try:
        results = evaluate_policy(args.model_dir, args.env, args.task, args.episodes, args.first_seed,
                                  greedy=not args.sample, temperature=args.temperature, on_episode=on_episode,
                                  max_policy_steps=args.max_policy_steps, log=bar.write, workers=args.workers)
    except (ModelDirError, ValueError) as exc:
        raise EfmUserError(str(exc)) from None
    finally:
        bar.close()
    summary = summarize(results)
    print(f"{args.model_dir}: success {summary['successes']}/{summary['episodes']} = {summary['success_rate']:.1%} "
          f"on {args.env} {args.task or 'any'} seeds {args.first_seed}..{args.first_seed + args.episodes - 1} "
          f"({'sampled' if args.sample else 'greedy'})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"summary": summary, "episodes": [asdict(r) for r in results]}, handle, indent=2)
    return 0
