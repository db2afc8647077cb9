"""Policy sync: the robot follows the learner's ``current`` version (docs/stage2_contract.md).

:meth:`PolicySync.check_once` polls ``GET /v1/versions``; when ``current`` is not the version this robot
runs, it fills ``<models_dir>/<version>.partial/`` file by file: a file whose sha256 equals one of a
model already on disk (the robot's ``model_dir`` or ``<models_dir>/*/``) is copied locally, the rest is
downloaded, each checked against the sha256 and size the learner listed. Then every file is verified
against the downloaded manifest (:func:`efm_policy.manifest.read_manifest`), the version name, the
embodiment, tokenizers and input (cameras, image size, proprio) are compared with the robot's own
model, and only then is the folder renamed to ``<models_dir>/<version>/`` and handed over as a
:class:`NewModel` (the bridge node publishes ``policy_version`` and calls ``load_policy``).

A corrupt or incomplete download is deleted and tried again at a later poll; the old model keeps
running meanwhile. A version for another model (spec mismatch) is refused once, with an error, and not
downloaded again. Network failures are said once per outage.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from efm_policy.manifest import MANIFEST, ModelDirError, read_manifest, sha256_file

from .episodes import _fsync
from .uploader import LearnerClient, model_spec, spec_differences

Log = Callable[[str, str], None]
PARTIAL = ".partial"


class SyncStopped(RuntimeError):
    """The learner refuses this robot (token) or is not a learner: polling more cannot help."""


@dataclass(frozen=True)
class NewModel:
    version: str
    model_dir: Path
    manifest_sha256: str
    embodiment: str
    learner_step: int


class PolicySync:
    def __init__(self, client: LearnerClient, models_dir: str | Path, robot_model_dir: str | Path,
                 log: Log | None = None) -> None:
        self.client = client
        self.models_dir = Path(models_dir)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.robot_model_dir = Path(robot_model_dir)
        self.robot_spec = model_spec(robot_model_dir)
        self.version = read_manifest(robot_model_dir, verify=False).version  # what this robot runs (or was given)
        self._log = log or (lambda level, text: None)
        self.refused: dict[str, str] = {}   # version -> why it will never be loaded here
        self.failures = 0                   # downloads that failed verification (retried)
        self.stopped: str | None = None
        self._outage = False
        for stale in self.models_dir.glob(f"*{PARTIAL}"):  # left by a killed download
            shutil.rmtree(stale, ignore_errors=True)

    # ---- one poll -------------------------------------------------------------------------------
    def check_once(self) -> NewModel | None:
        """Poll the learner once; returns the new verified model to hand over, or None."""
        if self.stopped:
            return None
        try:
            listing = self._get_json("/v1/versions")
            current = str(listing.get("current") or "")
            if not current or current == self.version or current in self.refused:
                return None
            entry = next((v for v in listing.get("versions", []) if v.get("version") == current), None)
            if entry is None:
                raise ValueError(f"GET /v1/versions names current {current!r} but does not list it")
            model = self._install(entry)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if not self._outage:
                self._outage = True
                self._log("warning", f"policy sync: learner at {self.client.base_url} unavailable "
                                     f"({type(exc).__name__}); keeping {self.version}, trying again every poll")
            return None
        except _Refused:  # said when found; never tried again
            return None
        except SyncStopped as exc:
            self.stopped = str(exc)
            self._log("error", f"policy sync stopped: {exc}")
            return None
        except (ModelDirError, OSError, ValueError, KeyError) as exc:
            self.failures += 1
            self._log("error", f"policy sync: could not install the learner's current version: {exc}; keeping "
                               f"{self.version}, trying again at the next poll")
            return None
        if self._outage:
            self._outage = False
            self._log("info", f"policy sync: learner at {self.client.base_url} reachable again")
        if model is not None:
            self.version = model.version
        return model

    def run(self, stop: threading.Event, on_new_model: Callable[[NewModel], None], poll_s: float) -> None:
        """Poll every ``poll_s`` until ``stop`` is set (on a worker thread)."""
        while not stop.is_set():
            try:
                model = self.check_once()
                if model is not None:
                    on_new_model(model)
            except Exception as exc:  # a bug or a disk error must not end the sync for good
                self._log("error", f"policy sync failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            stop.wait(poll_s)

    # ---- install one version ----------------------------------------------------------------------
    def _install(self, entry: dict) -> NewModel | None:
        version = str(entry["version"])
        if not version or "/" in version or version.startswith("."):
            raise ValueError(f"the learner names a version {version!r} that is not a plain folder name")
        final = self.models_dir / version
        if final.is_dir():  # downloaded before (e.g. then restarted): verified again, not fetched again
            try:
                return self._accept(final, entry)
            except ModelDirError as exc:
                self._log("warning", f"{final} is damaged ({exc}); downloading it again")
                shutil.rmtree(final)
        partial = self.models_dir / f"{version}{PARTIAL}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            files = {f["name"]: f for f in entry["files"]}
            files.setdefault(MANIFEST, {"name": MANIFEST, "sha256": entry["manifest_sha256"], "size": None})
            if files[MANIFEST]["sha256"] != entry["manifest_sha256"]:
                raise ValueError(f"version {version}: the listed manifest.json sha256 differs from manifest_sha256")
            local = self._local_files()
            copied, fetched = [], 0
            for name, spec in sorted(files.items()):
                if "/" in name or name.startswith("."):
                    raise ValueError(f"version {version} lists a file {name!r} that is not a plain name")
                target = partial / name
                if spec["sha256"] in local and _copy_verified(local[spec["sha256"]], target, spec["sha256"]):
                    copied.append(name)
                    continue
                fetched += self._download(version, name, target, spec)
            self._accept(partial, entry)
            for file in partial.iterdir():
                _fsync(file)
            os.rename(partial, final)
            _fsync(self.models_dir)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # never half a model under any name but .partial
            raise
        self._log("info", f"policy sync: {version} downloaded ({fetched / 1e6:.1f} MB), "
                          f"{len(copied)} files copied locally ({', '.join(copied) or 'none'}), verified")
        return self._new_model(final, entry)

    def _accept(self, directory: Path, entry: dict) -> NewModel:
        """Verify every file against the manifest and compare the model with the robot's own."""
        version = str(entry["version"])
        manifest = read_manifest(directory, verify=True)
        if manifest.version != version:
            raise ModelDirError(f"{directory}: the manifest says version {manifest.version!r}, the learner "
                                f"calls it {version!r}")
        actual = sha256_file(directory / MANIFEST)
        if actual != entry["manifest_sha256"]:
            raise ModelDirError(f"{directory / MANIFEST}: sha256 {actual}, the learner lists {entry['manifest_sha256']}")
        differences = spec_differences(self.robot_spec, model_spec(directory))
        if differences:
            why = (f"version {version} is for another model than this robot's {self.robot_model_dir} "
                   f"({'; '.join(differences)}); it will not be loaded")
            self.refused[version] = why
            self._log("error", f"policy sync: {why}")
            raise _Refused(why)
        return self._new_model(directory, entry)

    def _new_model(self, directory: Path, entry: dict) -> NewModel:
        manifest = read_manifest(directory, verify=False)
        return NewModel(manifest.version, directory, entry["manifest_sha256"], manifest.embodiment,
                        int(entry.get("learner_step") or 0))

    def _local_files(self) -> dict[str, Path]:
        """sha256 -> a file on disk with that content, from every complete model directory here."""
        found: dict[str, Path] = {}
        candidates = [self.robot_model_dir] + sorted(p for p in self.models_dir.iterdir()
                                                     if p.is_dir() and not p.name.endswith(PARTIAL))
        for directory in candidates:
            try:
                manifest = read_manifest(directory, verify=False)
            except ModelDirError:
                continue
            for name, sha in manifest.files.items():
                found.setdefault(sha, directory / name)
        return found

    def _download(self, version: str, name: str, target: Path, spec: dict) -> int:
        digest, size = hashlib.sha256(), 0
        with self.client.get(f"/v1/versions/{version}/files/{name}", stream=True) as response:
            self._raise_for(response, f"GET /v1/versions/{version}/files/{name}")
            with open(target, "wb") as out:
                for block in response.iter_content(1 << 20):
                    digest.update(block)
                    out.write(block)
                    size += len(block)
        if digest.hexdigest() != spec["sha256"] or (spec.get("size") is not None and size != int(spec["size"])):
            raise ModelDirError(f"{name} of {version} arrived corrupt ({size} bytes, sha256 {digest.hexdigest()}; "
                                f"the learner lists {spec.get('size')} bytes, sha256 {spec['sha256']})")
        return size

    def _get_json(self, path: str) -> dict:
        response = self.client.get(path)
        self._raise_for(response, f"GET {path}")
        return response.json()

    def _raise_for(self, response: requests.Response, what: str) -> None:
        if response.status_code == 401:
            raise SyncStopped(f"the learner at {self.client.base_url} refused the token (401): set the bridge's "
                              "token_file (or token) to the learner's token and restart the bridge")
        if response.status_code in (404, 405) and what == "GET /v1/versions":
            raise SyncStopped(f"{self.client.base_url} answered {response.status_code} to {what}: not an efm "
                              "learner (check learner_url)")
        if response.status_code >= 500:
            raise requests.ConnectionError(f"{what}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise ValueError(f"{what} answered {response.status_code}: {response.text[:200]}")


class _Refused(ModelDirError):
    """A verified model for another robot model: recorded in ``refused`` and never downloaded again."""


def _copy_verified(source: Path, target: Path, sha256: str) -> bool:
    """Copy a local file; True if the copy has the expected content (else the caller downloads it)."""
    try:
        shutil.copyfile(source, target)
    except OSError:
        return False
    if sha256_file(target) == sha256:
        return True
    target.unlink()
    return False

