"""``efm learner serve|status``: the Stage 2 learner service and a look at a running one."""
from __future__ import annotations

import argparse
import json

HELP = "the Stage 2 learner: receive practice episodes, run REINFORCE, serve policy versions"


def register(subparsers) -> None:
    parser = subparsers.add_parser("learner", help=HELP, description=HELP + ".")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    serve = commands.add_parser(
        "serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="run the learner's HTTP service",
        description="Serve the learner API of docs/stage2_contract.md. The first start with --run copies the "
                    "Stage 1 checkpoint, exports it as sft-0000 (or takes --initial-model) and makes it current; "
                    "later starts continue the directory (an update interrupted by a kill is redone). Several "
                    "GPUs: torchrun --nproc_per_node N -m efm_runtime.cli learner serve --sft-run RUN ... (rank 0 serves).")
    serve.add_argument("--dir", required=True, metavar="LEARNER_DIR", help="learner directory (created or continued)")
    # --sft-run: torchrun's argument parser takes a bare --run for an abbreviation of its own --run-path
    serve.add_argument("--run", "--sft-run", dest="run", default="", metavar="SFT_RUN",
                       help="Stage 1 run directory (first start only; write --sft-run under torchrun)")
    serve.add_argument("--initial-model", default="", metavar="DIR",
                       help="an existing `efm export` of --run to publish as sft-0000 instead of exporting again")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless robots reach it otherwise)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--token-file", default=None,
                       help="file holding the bearer token (default: LEARNER_DIR/token, created on first start)")
    serve.add_argument("--steps-per-update", type=int, default=2048, help="actions of the current version per update")
    serve.add_argument("--episodes-per-update", type=int, default=0,
                       help="update after this many episodes of the current version instead of "
                            "--steps-per-update (0 = count steps)")
    serve.add_argument("--sgd-steps", type=int, default=32,
                       help="minibatch steps per update (0 = one pass over the update's actions)")
    serve.add_argument("--batch-size", type=int, default=64)
    serve.add_argument("--lr", type=float, default=None, help="learning rate (default: the Stage 1 optimizer's)")
    serve.add_argument("--keep-stage1-momentum", action="store_true",
                       help="carry Stage 1's Adam momentum into the first update too (default: only its second "
                            "moment; the momentum follows the imitation loss and drowns the first REINFORCE update)")
    serve.add_argument("--gamma", type=float, default=0.9, help="discount of the REINFORCE returns")
    serve.add_argument("--seed", type=int, default=0)
    serve.set_defaults(handler=run_serve)

    status = commands.add_parser("status", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                 help="print a running learner's status")
    status.add_argument("--url", default="http://127.0.0.1:8765")
    status.add_argument("--token-file", required=True)
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=run_status)

    use = commands.add_parser("use", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                              help="make a version current: robots switch to it at their next episode boundary",
                              description="Roll the fleet back (or forward) to VERSION, e.g. the best one by "
                                          "held-out success after over-optimisation; `best` picks it. Training "
                                          "continues from that version's checkpoint.")
    use.add_argument("version", help="a published version (see `efm learner status`), or `best`")
    use.add_argument("--url", default="http://127.0.0.1:8765")
    use.add_argument("--token-file", required=True)
    use.set_defaults(handler=run_use)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_serve(args) -> int:
    from efm_runtime.errors import EfmUserError

    try:
        import uvicorn

        from .learner import Learner, LearnerError, LearnerSettings, follow
        from .learner_service import create_app, load_or_create_token
        from .learner_update import Distributed
    except ImportError as exc:
        raise EfmUserError(f"the learner needs the train extra ({exc}); pip install -e '.[train]'") from None
    distributed = Distributed.from_environment()
    try:
        if distributed and not distributed.leader:
            try:
                follow(distributed)
            except KeyboardInterrupt:   # torchrun forwards Ctrl-C to every rank; rank 0 reports it
                pass
            return 0
        try:
            settings = LearnerSettings(dir=args.dir, run=args.run, initial_model=args.initial_model,
                                       steps_per_update=args.steps_per_update,
                                       episodes_per_update=args.episodes_per_update, sgd_steps=args.sgd_steps,
                                       batch_size=args.batch_size, lr=args.lr, gamma=args.gamma, seed=args.seed,
                                       keep_stage1_momentum=args.keep_stage1_momentum)
            learner = Learner(settings, distributed=distributed)
            token, token_path = load_or_create_token(args.token_file, args.dir)
        except (LearnerError, ValueError, FileNotFoundError) as exc:
            raise EfmUserError(str(exc)) from None
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: serving on {args.host}: reachable from other machines (token required)")
        print(f"learner {args.dir}: current {learner.current}, token in {token_path}, "
              f"http://{args.host}:{args.port}/v1/status")
        try:
            uvicorn.run(create_app(learner, token), host=args.host, port=args.port, log_level="warning")
        finally:
            learner.close()
        return 0
    finally:
        if distributed:
            distributed.close()


def _request(args, method: str, path: str, body: dict | None = None) -> dict:
    """One authorised call to a running learner; errors name the URL and what to check."""
    import requests

    from efm_runtime.errors import EfmUserError

    try:
        token = open(args.token_file).read().strip()
    except OSError as exc:
        raise EfmUserError(f"--token-file {args.token_file}: {exc.strerror}; pass the learner's token file") from None
    url = args.url.rstrip("/") + path
    try:
        response = requests.request(method, url, headers={"Authorization": f"Bearer {token}"}, json=body, timeout=10)
    except requests.RequestException as exc:
        raise EfmUserError(f"{url}: no answer ({exc}); is `efm learner serve` running there?") from None
    if response.status_code != 200:
        raise EfmUserError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def run_use(args) -> int:
    from efm_runtime.errors import EfmUserError

    version = args.version
    if version == "best":
        version = _request(args, "GET", "/v1/status").get("best")
        if not version:
            raise EfmUserError("the learner has no best version yet: none has a held-out evaluation "
                               "(POST /v1/evaluations; efm self-improve posts them)")
    answer = _request(args, "POST", "/v1/current", {"version": version})
    print(f"current version is now {answer.get('current', version)}; robots switch at their next episode boundary")
    return 0


def run_status(args) -> int:
    status = _request(args, "GET", "/v1/status")
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(f"current {status['current']}, best {status['best']}, learner step {status['learner_step']}, "
          f"{'updating' if status['updating'] else 'idle'}; {status['episodes_total']} episodes; "
          f"{status.get('pending_steps', 0)}/{status.get('steps_per_update', '?')} steps toward the next update")
    for version, count in sorted(status["episodes_per_version"].items()):
        rate = status["success_rate_per_version"].get(version)
        evaluation = status["evaluations"].get(version)
        truth = f", evaluated {evaluation['success_rate']:.0%} of {evaluation['episodes']}" if evaluation else ""
        print(f"  {version}: {count} episodes, detector success {rate:.0%}{truth}")
    if status.get("last_error"):
        print(f"last update error: {status['last_error']}")
    return 0
