"""``efm dataset info|view``: look at episode datasets (demos, practice, evaluation)."""
from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

HELP = "inspect episode datasets (rosbag2/MCAP folders)"


def register(subparsers) -> None:
    parser = subparsers.add_parser("dataset", help=HELP, description=HELP + ".")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    info = commands.add_parser("info", help="counts, success rate, lengths, instructions, size on disk",
                               description="Summarise a dataset directory; lists corrupt or unfinished episodes.")
    info.add_argument("dataset", help="dataset directory")
    info.add_argument("--instructions", type=int, default=10, help="how many of the commonest instructions to list")
    info.set_defaults(handler=run_info)
    view = commands.add_parser("view", help="render an episode to a video or a contact sheet",
                               description="Render an episode's camera frames so a person can look at it.",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    view.add_argument("episode", help="episode directory")
    view.add_argument("--out", required=True, help="x.mp4 (video at 10 fps) or x.png (contact sheet)")
    view.add_argument("--camera", default=None, help="camera name (default: the first one recorded)")
    view.add_argument("--frames", type=int, default=12, help="frames in a contact sheet")
    view.set_defaults(handler=run_view)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run_info(args) -> int:
    from efm_runtime.errors import EfmUserError

    from .episodes import summarize_dataset

    if not Path(args.dataset).is_dir():
        raise EfmUserError(f"{args.dataset}: no such dataset directory")
    summary = summarize_dataset(args.dataset)
    episodes = summary.episodes
    print(f"dataset {args.dataset}")
    print(f"  episodes      {len(episodes)}")
    if episodes:
        successes = sum(e.get("success") == "True" for e in episodes)
        steps = [int(e.get("steps", 0)) for e in episodes]
        print(f"  success rate  {successes / len(episodes):.1%} ({successes}/{len(episodes)})")
        print(f"  length        mean {statistics.mean(steps):.1f}, min {min(steps)}, max {max(steps)} policy steps")
        print(f"  environments  {dict(Counter(e.get('embodiment', '?') for e in episodes))}")
        print(f"  outcomes      {dict(Counter(e.get('outcome', '?') for e in episodes))}")
        print(f"  size on disk  {summary.size_bytes / 1e6:.1f} MB ({summary.size_bytes / 1e6 / len(episodes):.2f} MB/episode)")
        instructions = Counter(e.get("instruction", "") for e in episodes)
        print(f"  instructions  {len(instructions)} distinct; commonest:")
        for text, count in instructions.most_common(args.instructions):
            print(f"    {count:5d}  {text}")
    for path, why in summary.unreadable:
        print(f"  UNREADABLE    {path}: {why}")
    for path in summary.partial:
        print(f"  UNFINISHED    {path} (a killed run; removed when that episode is recorded again)")
    return 0


def run_view(args) -> int:
    import cv2
    import numpy as np

    from efm_runtime.errors import EfmUserError

    from .episodes import read_episode

    try:
        episode = read_episode(args.episode)
    except ValueError as exc:
        raise EfmUserError(str(exc)) from None
    if not episode.cameras:
        raise EfmUserError(f"{args.episode}: no camera frames recorded")
    camera = args.camera or episode.cameras[0]
    if camera not in episode.cameras:
        raise EfmUserError(f"{args.episode}: no camera '{camera}'; recorded: {', '.join(episode.cameras)}")
    frames = [frame for _, frame in episode.images(camera)]
    out = Path(args.out)
    title = episode.metadata.get("instruction", "")
    if out.suffix == ".png":
        picks = np.linspace(0, len(frames) - 1, min(args.frames, len(frames))).round().astype(int)
        tiles = [_label(frames[i], f"step {i}") for i in picks]
        columns = min(4, len(tiles))
        while len(tiles) % columns:
            tiles.append(np.zeros_like(tiles[0]))
        rows = [np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)]
        grid = np.vstack(rows)
        title_bar = _label(np.zeros((24, grid.shape[1], 3), np.uint8), f"{title} ({episode.metadata.get('outcome', '?')})",
                           scale=0.5, y=17)
        sheet = np.vstack([title_bar, grid])
        cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    elif out.suffix == ".mp4":
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
        if not writer.isOpened():
            raise EfmUserError(f"cannot write {out}: OpenCV has no MP4 encoder here; use a .png contact sheet")
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    else:
        raise EfmUserError(f"--out must end in .mp4 or .png, got {out.name}")
    print(f"{out}: {len(frames)} frames of camera '{camera}' from {args.episode}")
    return 0


def _label(frame, text: str, scale: float = 0.4, y: int = 14):
    import cv2

    frame = frame.copy()
    cv2.putText(frame, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return frame
