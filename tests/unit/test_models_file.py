"""The models file (yolo_triton/models_file.py): each kind of mistake is one clear error naming the
file, the model and the key, raised before anything is exported; what a correct file gives."""

import os
import subprocess
import sys

import pytest
from conftest import weights_of

from yolo_triton.contract import BUILTIN_MODELS, EVALUATION_SETTINGS, VARIANTS, Variant
from yolo_triton.models_file import ModelsFileError, inspect_weights, load_models_file, parse_models
from yolo_triton.repository import write_repository
from yolo_triton.weights import resolve_models


@pytest.fixture
def write(tmp_path):
    def write(text: str):
        path = tmp_path / "models.yaml"
        path.write_text(text)
        return path

    return write


def error_of(path) -> str:
    with pytest.raises(ModelsFileError) as e:
        load_models_file(path)
    return str(e.value)


@pytest.mark.parametrize(
    "text, model, expected",
    [
        ("ppe: {weights: best.pt, confidence: 0.4}", "ppe", "unknown key 'confidence'; the keys are weights, imgsz,"),
        ("ppe: {weights: best.pt, conf: high}", "ppe", "key 'conf': must be float, not 'high'"),
        ("ppe: {weights: best.pt, conf: 1.5}", "ppe", "key 'conf': must be between 0 and 1 (exclusive), not 1.5"),
        (
            "ppe: {weights: best.pt, imgsz: 300}",
            "ppe",
            "key 'imgsz': must be a multiple of 32 from 32 to 4096, not 300",
        ),
        ("ppe: {weights: best.pt, max_batch_size: 0}", "ppe", "key 'max_batch_size': must be from 1 to 1024, not 0"),
        ("ppe: {weights: best.pt, max_batch_size: true}", "ppe", "key 'max_batch_size': must be int, not True"),
        (
            "ppe: {weights: best.pt, max_batch_size: 16, preferred_batch_sizes: [8, 32]}",
            "ppe",
            "key 'preferred_batch_sizes': [8, 32] goes past max_batch_size 16",
        ),
        (
            "ppe: {weights: best.pt, preferred_batch_sizes: [8, 4]}",
            "ppe",
            "must be a non-empty increasing list of positive integers",
        ),
        ("ppe: {weights: best.pt, eval: 'yes'}", "ppe", "key 'eval': must be bool, not 'yes'"),
        (
            "ppe: {weights: best.pt, rect: true, nms_free: true}",
            "ppe",
            "key 'rect': not with an end-to-end head (nms_free) yet",
        ),
        ("ppe: {weights: best.onnx}", "ppe", "key 'weights': must be a .pt file (PyTorch weights), not 'best.onnx'"),
        ("ppe: {conf: 0.4}", "ppe", "key 'weights' is missing"),
        (
            "ppe: {weights: best.pt, class_names: [a, b]}",
            "ppe",
            "key 'class_names': not a key of a models file: the classes",
        ),
        ("ppe: {weights: best.pt, num_classes: 3}", "ppe", "key 'num_classes': not a key of a models file"),
        ("ppe: best.pt", "ppe", "expected a mapping of fields such as '{weights: best.pt}', not 'best.pt'"),
        ("'my model': {weights: best.pt}", "my model", "the name is not a name Triton can serve"),
        ("preprocess_320: {weights: best.pt}", "preprocess_320", "clashes with the preprocess models"),
        ("ppe_detector: {weights: best.pt}", "ppe_detector", "clashes with the detector models"),
        (
            "ppe: {weights: best.pt}\nPPE: {weights: best.pt}",
            "PPE",
            "clashes with 'ppe' (model folders differ only in case)",
        ),
    ],
)
def test_each_mistake_names_the_file_the_model_and_the_key(write, text, model, expected):
    path = write(text)
    message = error_of(path)
    assert message.startswith(f"{path}: model {model!r}: ") and expected in message, message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ppe: {weights: a.pt}\nppe: {weights: b.pt}", "'ppe' given twice (line 1)"),
        ("ppe: {weights: [", "not valid YAML"),
        ("", "expected a mapping from ensemble names to their fields"),
        ("- ppe", "expected a mapping from ensemble names to their fields"),
    ],
)
def test_file_level_mistakes(write, text, expected):
    path = write(text)
    message = error_of(path)
    assert message.startswith(f"{path}: ") and expected in message, message


def test_a_correct_file(write, tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "best.pt").write_bytes(b"")
    models = load_models_file(
        write(
            "ppe: {weights: weights/best.pt, conf: 0.4, max_batch_size: 16}\n"
            "ppe_eval: {weights: weights/best.pt, eval: true, max_detections: 200}\n"
            "yolov11_nano: {weights: yolo11n.pt}\n"
        )
    )
    assert models["ppe"] == Variant(
        "ppe", str(tmp_path / "weights" / "best.pt"), max_batch_size=16, preferred_batch_sizes=(8, 16), conf=0.4
    )  # relative to the file; defaults
    assert models["ppe_eval"].multi_label and models["ppe_eval"].conf == EVALUATION_SETTINGS["conf"]
    assert models["ppe_eval"].max_detections == 200  # a key beside eval wins
    assert models["yolov11_nano"].weights == "yolo11n.pt"  # a name Ultralytics downloads stays a name


def test_the_builtin_table_is_a_models_file():
    assert parse_models(BUILTIN_MODELS, "built-in") == VARIANTS
    assert VARIANTS["yolov11_nano_eval"].multi_label and VARIANTS["yolov26_nano"].nms_free


@pytest.fixture(scope="module")
def other_tasks(tmp_path_factory):
    """Weights of every task that is not detection, built from Ultralytics' model yaml (offline)."""
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("tasks")
    made = {}
    for task, cfg in (
        ("segment", "yolo11n-seg.yaml"),
        ("pose", "yolo11n-pose.yaml"),
        ("obb", "yolo11n-obb.yaml"),
        ("classify", "yolo11n-cls.yaml"),
    ):
        made[task] = folder / f"{task}.pt"
        YOLO(cfg).save(made[task])
    return made


@pytest.mark.parametrize(
    "task, words",
    [
        ("segment", "segmentation"),
        ("pose", "pose estimation"),
        ("obb", "oriented-box (OBB)"),
        ("classify", "classification"),
    ],
)
def test_weights_of_other_tasks_are_refused(other_tasks, task, words):
    with pytest.raises(ModelsFileError) as e:
        inspect_weights(Variant("mine", str(other_tasks[task])), "models.yaml")
    assert str(e.value) == (
        f"models.yaml: model 'mine': key 'weights': {other_tasks[task]} is a {words} model "
        f"(task {task!r}), not a detection model: only detection weights can be served"
    )


def test_weights_that_are_neither_file_nor_download():
    for weights in ("/nowhere/best.pt", "yolo99z.pt"):
        with pytest.raises(
            ModelsFileError, match=f"models.yaml: model 'mine': key 'weights': {weights} is neither a file nor a name"
        ):
            inspect_weights(Variant("mine", weights), "models.yaml")


def test_classes_and_end_to_end_head_come_from_the_weights(tmp_path):
    from custom_weights import make_custom_weights  # tests/fixtures, on the path by conftest

    pets = inspect_weights(
        Variant("pets", str(make_custom_weights(weights_of("yolov8_nano"), tmp_path / "pets.pt"))), "f"
    )
    assert (pets.num_classes, pets.class_names, pets.nms_free) == (3, ("pedestrian", "vehicle", "pet"), False)
    yolo26 = inspect_weights(Variant("mine", str(weights_of("yolov26_nano"))), "f")  # no nms_free in the file
    assert yolo26.nms_free and yolo26.num_classes == 80 and yolo26.class_names[:2] == ("person", "bicycle")
    with pytest.raises(ModelsFileError, match="key 'nms_free': the head of .* is not end-to-end"):
        inspect_weights(Variant("mine", str(weights_of("yolov8_nano")), nms_free=True), "f")


def test_nothing_is_exported_when_one_model_is_wrong(other_tasks, tmp_path):
    good = Variant("good", str(weights_of("yolov8_nano")))
    with pytest.raises(ModelsFileError, match="'bad': key 'weights': .* is a segmentation model"):
        write_repository(tmp_path / "repo", {"good": good, "bad": Variant("bad", str(other_tasks["segment"]))})
    assert not (tmp_path / "repo").exists()


def test_models_file_excludes_the_other_variables(tmp_path):
    with pytest.raises(
        ModelsFileError, match="YOLO_MODELS_FILE names the models and their weights: unset YOLO_WEIGHTS"
    ):
        resolve_models({"YOLO_MODELS_FILE": "models.yaml", "YOLO_WEIGHTS": "best.pt"})


def test_repository_command_exits_with_the_error(write, tmp_path):
    path = write("ppe: {weights: best.pt, confidence: 0.4}")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "yolo_triton.repository",
            "--out",
            str(tmp_path / "repo"),
            "--target",
            "onnxruntime-cpu",
        ],
        env={**os.environ, "YOLO_MODELS_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [error_of(path)], run.stderr
    assert not (tmp_path / "repo").exists()


def test_make_serve_exits_with_the_error_of_a_models_file(write, tmp_path):
    """`make serve` (python -m yolo_triton.serve) with a wrong models file: its one line, status 2,
    nothing exported, no server started."""
    path = write("ppe: {weights: /nowhere/best.pt}")
    run = subprocess.run(
        [sys.executable, "-m", "yolo_triton.serve", "--repository", str(tmp_path / "repo")],
        env={**os.environ, "YOLO_MODELS_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip().splitlines() == [
        f"{path}: model 'ppe': key 'weights': /nowhere/best.pt is neither a file nor a name Ultralytics downloads"
    ]
    assert not (tmp_path / "repo").exists()
