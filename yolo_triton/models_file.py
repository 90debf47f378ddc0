"""The models file: which ensembles to serve, each from its own weights, in one YAML mapping.

    YOLO_MODELS_FILE=models.yaml make serve

    ppe:          {weights: /weights/best.pt, conf: 0.4, max_batch_size: 64}
    ppe_eval:     {weights: /weights/best.pt, eval: true}
    yolov11_nano: {weights: yolo11n.pt}

Each key is an ensemble's name; `weights` (a .pt file, relative paths from the file's folder, or a
name Ultralytics downloads) is required; every other key is a field of contract.Variant under its
name there, with its default there (FIELDS lists them). `eval: true` starts from Ultralytics' `val`
settings (contract.EVALUATION_SETTINGS); keys given beside it win. The classes, their names and an
end-to-end (NMS-free) head come from the weights: inspect_weights, before anything is exported.
The built-in table (contract.BUILTIN_MODELS) is read by the same parse_models.

Every mistake is a ModelsFileError naming the file, the model and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from yolo_triton.contract import DETECTOR_SUFFIX, EVALUATION_SETTINGS, PREPROCESS_MODEL, STRIDE, Variant

TASKS = {
    "segment": "segmentation",
    "pose": "pose estimation",
    "obb": "oriented-box (OBB)",
    "classify": "classification",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class ModelsFileError(ValueError):
    """A models file (or the built-in table) asks for something that cannot be served."""


@dataclass(frozen=True)
class Field:
    kind: type  # int, float, bool, str or list (of ints)
    problem: Callable[[object], str | None] = lambda value: None  # what is wrong with a value of the right type


def _in(low, high, step: int = 1) -> Callable[[object], str | None]:
    def problem(value):
        if not low <= value <= high or (step > 1 and value % step):
            return (
                f"must be {'a multiple of ' + str(step) + ' ' if step > 1 else ''}from {low} to {high}, not {value!r}"
            )
        return None

    return problem


def _open_unit(value) -> str | None:
    return None if 0 < value < 1 else f"must be between 0 and 1 (exclusive), not {value!r}"


def _batch_sizes(value) -> str | None:
    if not value or any(type(b) is not int or b < 1 for b in value) or list(value) != sorted(set(value)):
        return f"must be a non-empty increasing list of positive integers, not {value!r}"
    return None


FIELDS: dict[str, Field] = {
    "weights": Field(str, lambda w: None if w.endswith(".pt") else f"must be a .pt file (PyTorch weights), not {w!r}"),
    "imgsz": Field(int, _in(STRIDE, 4096, STRIDE)),
    "max_detections": Field(int, _in(1, 1000)),
    "conf": Field(float, _open_unit),
    "iou": Field(float, lambda v: None if 0 < v <= 1 else f"must be above 0 and at most 1, not {v!r}"),
    "max_batch_size": Field(int, _in(1, 1024)),
    "preferred_batch_sizes": Field(list, _batch_sizes),
    "class_agnostic": Field(bool),
    "multi_label": Field(bool),
    "nms_free": Field(bool),
    "rect": Field(bool),
    "eval": Field(bool),
}
FROM_WEIGHTS = ("num_classes", "class_names")  # Variant fields a file cannot set


def _typed(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _name_problem(name) -> str | None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return (
            "is not a name Triton can serve: letters, digits, '_', '.' and '-', starting with a letter or "
            "digit, at most 100 characters"
        )
    if name == PREPROCESS_MODEL or name.startswith(f"{PREPROCESS_MODEL}_"):
        return f"clashes with the {PREPROCESS_MODEL} models the ensembles share"
    if name.endswith(DETECTOR_SUFFIX):
        return f"clashes with the detector models (every ensemble <name> has a <name>{DETECTOR_SUFFIX})"
    return None


def parse_models(data, source: str, folder: Path | None = None) -> dict[str, Variant]:
    """Name -> Variant (weights not yet inspected) from a models mapping; `source` names it in
    errors, `folder` is where relative weights paths start."""
    if not isinstance(data, dict) or not data:
        found = type(data).__name__ if data else "nothing"
        raise ModelsFileError(
            f"{source}: expected a mapping from ensemble names to their fields, e.g. "
            f"'ppe: {{weights: /weights/best.pt}}', not {found}"
        )
    variants, lowered = {}, {}
    for name, entry in data.items():
        where = f"{source}: model {name!r}"
        problem = _name_problem(name)
        if problem:
            raise ModelsFileError(f"{where}: the name {problem}")
        if name.lower() in lowered:
            raise ModelsFileError(
                f"{where}: the name clashes with {lowered[name.lower()]!r} (model folders differ only in case)"
            )
        lowered[name.lower()] = name
        if not isinstance(entry, dict):
            raise ModelsFileError(
                f"{where}: expected a mapping of fields such as '{{weights: best.pt}}', not {entry!r}"
            )
        for key, value in entry.items():
            if key in FROM_WEIGHTS:
                raise ModelsFileError(
                    f"{where}: key {key!r}: not a key of a models file: "
                    "the classes and their names come from the weights"
                )
            if key not in FIELDS:
                raise ModelsFileError(f"{where}: unknown key {key!r}; the keys are {', '.join(FIELDS)}")
            field = FIELDS[key]
            if not _typed(value, field.kind):
                raise ModelsFileError(
                    f"{where}: key {key!r}: must be "
                    f"{field.kind.__name__ if field.kind is not list else 'a list of integers'}, "
                    f"not {value!r}"
                )
            problem = field.problem(value)
            if problem:
                raise ModelsFileError(f"{where}: key {key!r}: {problem}")
        if "weights" not in entry:
            raise ModelsFileError(
                f"{where}: key 'weights' is missing: a .pt file or a name Ultralytics downloads (yolo11n.pt)"
            )
        if entry.get("rect") and entry.get("nms_free"):
            raise ModelsFileError(f"{where}: key 'rect': not with an end-to-end head (nms_free) yet")
        fields = {
            **(EVALUATION_SETTINGS if entry.get("eval") else {}),
            **{k: v for k, v in entry.items() if k != "eval"},
        }
        fields["weights"] = _weights_path(fields["weights"], folder)
        max_batch = fields.setdefault("max_batch_size", Variant.max_batch_size)
        preferred = fields.setdefault(
            "preferred_batch_sizes", sorted({b for b in Variant.preferred_batch_sizes if b <= max_batch} | {max_batch})
        )
        if preferred[-1] > max_batch:
            raise ModelsFileError(
                f"{where}: key 'preferred_batch_sizes': {preferred} goes past max_batch_size {max_batch}"
            )
        variants[name] = Variant(
            name=name,
            **{
                **fields,
                "preferred_batch_sizes": tuple(preferred),
                "conf": float(fields.get("conf", Variant.conf)),
                "iou": float(fields.get("iou", Variant.iou)),
            },
        )
    return variants


def _weights_path(weights: str, folder: Path | None) -> str:
    """A path (relative ones from the file's folder) or a bare name Ultralytics may download."""
    if folder is not None and ("/" in weights or (folder / weights).is_file()) and not Path(weights).is_absolute():
        return str((folder / weights).resolve())
    return weights


def load_models_file(path: str | Path) -> dict[str, Variant]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ModelsFileError(f"models file {path} does not exist")

    class UniqueKeys(yaml.SafeLoader):
        """YAML keeps the last of two equal keys silently: here it is an error."""

    def mapping(loader, node):
        keys = [loader.construct_object(k) for k, _ in node.value]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        if twice:
            raise ModelsFileError(
                f"{path}: {', '.join(map(repr, twice))} given twice (line {node.start_mark.line + 1})"
            )
        return loader.construct_mapping(node)

    UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        data = yaml.load(path.read_text(), Loader=UniqueKeys)
    except yaml.YAMLError as e:
        raise ModelsFileError(f"{path}: not valid YAML: {e}") from None
    return parse_models(data, str(path), path.parent)


def inspect_weights(v: Variant, source: str) -> Variant:
    """The variant completed from its weights (downloaded if a bare name): their local path, the
    head's number of classes and their names, and nms_free where the head is end-to-end. Refuses
    what is not a detection model."""
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update or hub checks
    where = f"{source}: model {v.name!r}: key 'weights'"
    if not Path(v.weights).is_file():
        from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

        if "/" in v.weights or v.weights not in GITHUB_ASSETS_NAMES:
            raise ModelsFileError(f"{where}: {v.weights} is neither a file nor a name Ultralytics downloads")
    from ultralytics import YOLO

    try:
        model = YOLO(v.weights)
    except Exception as e:  # a download that failed, a file that is not a checkpoint
        raise ModelsFileError(f"{where}: cannot load {v.weights}: {type(e).__name__}: {e}") from None
    if model.task != "detect":
        raise ModelsFileError(
            f"{where}: {v.weights} is a {TASKS.get(model.task, model.task)} model (task {model.task!r}), "
            "not a detection model: only detection weights can be served"
        )
    head = model.model.model[-1]
    names = tuple(str(model.names[i]) for i in range(len(model.names)))
    if getattr(head, "nc", len(names)) != len(names):
        raise ModelsFileError(
            f"{where}: the head of {v.weights} has {head.nc} classes but the weights name {len(names)}"
        )
    end_to_end = getattr(head, "one2one_cv2", None) is not None  # YOLO26's / YOLOv10's one-to-one branch
    if v.nms_free and not end_to_end:
        raise ModelsFileError(f"{source}: model {v.name!r}: key 'nms_free': the head of {v.weights} is not end-to-end")
    if v.rect and end_to_end:
        raise ModelsFileError(f"{source}: model {v.name!r}: key 'rect': not with an end-to-end head ({v.weights}) yet")
    return replace(
        v,
        weights=str(model.ckpt_path or v.weights),
        num_classes=len(names),
        class_names=names,
        nms_free=v.nms_free or end_to_end,
    )
