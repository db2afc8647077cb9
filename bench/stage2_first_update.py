"""Replay one learner update with different optimizer starts and print how it moved log pi of the practice
actions with positive and with negative returns (REINFORCE should raise the first and lower the second).

    python bench/stage2_first_update.py LEARNER_DIR --version rl-0001 [--sgd-steps N]

Starts compared: Stage 1's Adam state as is (the paper carries it), the same with its first moment at zero
(efm's default for the first update), a fresh Adam at Stage 1's learning rate, and Stage 1's state at a
10x lower learning rate. Each replay trains from the parent's checkpoint on the same episodes and
minibatches, so only the optimizer start differs. Nothing is written to the learner directory.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("learner_dir")
    parser.add_argument("--version", default="rl-0001", help="the update to replay (its parent's episodes)")
    parser.add_argument("--sgd-steps", type=int, default=0, help="0: one pass over the samples, as the learner")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import efm_trainer.learner_update as update
    from efm_policy.text import InstructionEncoder

    root = Path(args.learner_dir)
    state = json.loads((root / "state.json").read_text())
    if args.version not in state["updates"]:
        raise SystemExit(f"{root}: no update {args.version}; made: {', '.join(state['updates']) or 'none'}")
    made = state["updates"][args.version]
    records = {e: json.loads((root / "episodes" / f"{e}.json").read_text()) for e in made["episodes"]}
    steps = sum(r["steps"] for r in records.values())
    instructions = sorted({r["instruction"] for r in records.values()})
    embeddings = {t: row.tolist() for t, row in zip(instructions, InstructionEncoder().encode(instructions))}
    checkpoint = root / "checkpoints" / f"{made['parent']}.pt"
    stage1_lr = update.load_policy(checkpoint)[1]["optimizer"]["param_groups"][0]["lr"]
    settings = json.loads((root / "settings.json").read_text())

    def plan(**changes) -> update.UpdatePlan:
        return update.UpdatePlan(
            version=args.version, parent=made["parent"], parent_checkpoint=str(checkpoint),
            episodes=made["episodes"], episode_dirs=[str(root / "episodes" / e) for e in made["episodes"]],
            learner_step=made["learner_step"] - (args.sgd_steps or -(-steps // args.batch_size)),
            sgd_steps=args.sgd_steps or -(-steps // args.batch_size), batch_size=args.batch_size,
            gamma=settings.get("gamma", 0.9), seed=settings.get("seed", 0), instruction_embeddings=embeddings,
            **changes)

    original = update.build_optimizer
    starts = {
        "Stage 1 Adam state as is": (plan(), None),
        "first moment at zero (default)": (plan(reset_momentum=True), None),
        "fresh Adam, Stage 1 lr": (plan(lr=stage1_lr), lambda model, state, lr, reset: original(model, {}, lr)),
        "Stage 1 state, lr / 10": (plan(lr=stage1_lr / 10), None),
    }
    print(f"{args.version} from {made['parent']}: {len(made['episodes'])} episodes, {steps} actions, "
          f"Stage 1 lr {stage1_lr:g}")
    print(f"{'optimizer start':34s} {'positive-return log pi change':>30s} {'negative-return':>16s}")
    for name, (the_plan, builder) in starts.items():
        update.build_optimizer = builder or original
        try:
            _, _, metrics = update.run_update(the_plan, log=lambda _m: None)
        finally:
            update.build_optimizer = original
        print(f"{name:34s} {metrics['log_prob_change_positive_return']:+30.3f} "
              f"{metrics['log_prob_change_negative_return']:+16.3f}")


if __name__ == "__main__":
    main()
