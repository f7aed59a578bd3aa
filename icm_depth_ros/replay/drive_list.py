"""replay_fleet's DRIVE arguments -> the list of bags to evaluate.

Each argument is one of:
- a rosbag2 folder (it holds ``metadata.yaml``) or a ROS 1 ``.bag`` file: that drive;
- any other folder: every rosbag2 folder and ``.bag`` file below it (a rosbag2 folder is not searched
  further), in sorted path order;
- any other file: a list, one path per line (blank lines and lines starting with ``#`` ignored), each a bag
  or a folder as above; relative paths are relative to the list's folder.

A drive named twice is evaluated once (first place kept). Anything that does not exist or holds no bag
raises ``DriveListError`` naming the argument (and the list file and line).
"""
from __future__ import annotations

from pathlib import Path


class DriveListError(ValueError):
    """A DRIVE argument that names no bag."""


def is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix == ".bag")


def bags_below(folder: Path) -> list[Path]:
    """Every rosbag2 folder and .bag file under ``folder``, sorted; rosbag2 folders are not entered."""
    found = []
    for entry in sorted(folder.iterdir()):
        if is_bag(entry):
            found.append(entry)
        elif entry.is_dir():
            found.extend(bags_below(entry))
    return found


def resolve_drives(arguments: list[str]) -> list[Path]:
    """DRIVE arguments -> bag paths, in argument order, each once."""
    drives: list[Path] = []
    for argument in arguments:
        drives.extend(_expand(Path(argument), f"DRIVE {argument!r}"))
    unique, seen = [], set()
    for drive in drives:
        key = drive.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(drive)
    if not unique:
        raise DriveListError("no DRIVE given: name bags, folders holding bags, or a text file listing them")
    return unique


def _expand(path: Path, where: str, listed: bool = False) -> list[Path]:
    if not path.exists():
        raise DriveListError(f"{where}: {path} does not exist")
    if is_bag(path):
        return [path]
    if path.is_dir():
        found = bags_below(path)
        if not found:
            raise DriveListError(f"{where}: folder {path} holds no bag (no rosbag2 folder with metadata.yaml, "
                                 "no .bag file)")
        return found
    if listed:
        raise DriveListError(f"{where}: {path} is neither a bag nor a folder (lists do not nest)")
    return _read_list(path)


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise DriveListError(f"DRIVE {str(path)!r}: not a bag, a folder or a text list of drives "
                             "(a ROS 1 bag must end in .bag)") from None
    drives = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        listed = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        drives.extend(_expand(listed, f"{path} line {number}", listed=True))
    if not drives:
        raise DriveListError(f"DRIVE list {path} names no drive")
    return drives
