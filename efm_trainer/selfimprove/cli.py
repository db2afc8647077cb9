"""``efm self-improve``: the main job, Stage 1 then Stage 2 in simulation, in one command."""
from __future__ import annotations

import signal

from .settings import QUICK, SelfImproveSettings

HELP = "run the whole recipe in simulation: demos, Stage 1 SFT, export, then robots practising (Stage 2)"


def register(subparsers) -> None:
    defaults = SelfImproveSettings()
    parser = subparsers.add_parser(
        "self-improve", help=HELP,
        description=HELP + ". Oracle demos are cached under --cache; Stage 1 trains in OUT/sft; the learner "
        "service runs on 127.0.0.1 and simulated robots (one process each: sim, policy, reward, episode manager, "
        "trainer bridge) practise until --practice-episodes are uploaded. Every new policy version is evaluated "
        "on held-out scenes by ground-truth success; OUT/report/ gets a plot and a table. Re-running the same "
        "command continues an interrupted run. --quick takes about 5 minutes on 2 CPU cores (a smoke run; "
        "figures from it are not an experiment).")
    parser.add_argument("--env", default=defaults.env, choices=("language_table", "aloha"), help=f"simulated embodiment (default {defaults.env})")
    parser.add_argument("--task", default=defaults.task, help=f"task family of demos, practice and evaluation (default {defaults.task})")
    parser.add_argument("--backbone", choices=("small", "scratch"), default=defaults.backbone,
                        help="policy and reward model backbone: small = ImageNet-pretrained EfficientNet-Lite0 + "
                             f"MiniLM, scratch = the same, randomly initialised (default {defaults.backbone})")
    parser.add_argument("--quick", action="store_true",
                        help="small everything: " + ", ".join(f"{k}={v}" for k, v in QUICK.items() if k != "quick"))
    parser.add_argument("--out", default=None, help="run directory (default runs/self_improve_<env>[_quick])")
    parser.add_argument("--cache", default=defaults.cache, help="where oracle demos are kept between runs")
    for name, help_text in (
            ("demos", "oracle demonstrations for Stage 1"), ("sft_steps", "Stage 1 optimizer steps"),
            ("robots", "simulated robots practising in parallel"),
            ("practice_episodes", "stop Stage 2 after this many practice episodes"),
            ("max_steps", "policy steps before a practice or evaluation episode times out"),
            ("steps_per_update", "on-policy steps of a version before each learner update"),
            ("episodes_per_update", "> 0: update after this many episodes of a version instead"),
            ("updates", "> 0: stop practising once this many updates are published"),
            ("seed", "training seed of Stage 1 and the learner"),
            ("eval_episodes", "held-out scenes each version is evaluated on"),
            ("success_threshold", "success detector s in steps to go; 0 = calibrate on held-out demos"),
            ("success_streak", "success detector k: consecutive steps at or under s"),
            ("max_wall_s", "stop practice after this many seconds; 0 = no limit"),
            ("port", "learner port on 127.0.0.1; 0 = a free one")):
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=None,
                            help=f"{help_text} (default {value}; --quick: {QUICK.get(name, value)})")
    parser.set_defaults(handler=run)


def settings_from_args(args) -> SelfImproveSettings:
    values = dict(QUICK) if args.quick else {}
    values.update(env=args.env, task=args.task, cache=args.cache, backbone=args.backbone)
    for name in ("demos", "sft_steps", "robots", "practice_episodes", "max_steps", "steps_per_update",
                 "episodes_per_update", "updates", "seed", "eval_episodes", "success_threshold", "success_streak", "max_wall_s", "port"):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    values["out"] = args.out or f"runs/self_improve_{args.env}{'_quick' if args.quick else ''}"
    return SelfImproveSettings(**values)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    from .pipeline import SelfImproveRun

    # Ctrl-C, and SIGTERM from a job runner, end the run in order: robots stopped (their spools keep what
    # was not uploaded), the learner stopped; a shell starting us in the background may ignore SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    settings = settings_from_args(args)
    report = SelfImproveRun(settings).run()
    print(f"report: {report}")
    print(report.read_text())
    return 0
