"""Faithfulness of CAM maps on the face network: score-callable targets in the metrics (against the class-index
path and a hand computation), the faces and their targets, the evaluation against the metrics called directly,
the bootstrap interval of a mean, and the eval-cam-face command."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hdm.bench.cam import random_map
from hdm.bench.face_cam import evaluate_faces, face_samples, markdown, summarize_faces
from hdm.bench.stats import mean_ci
from hdm.cam import GradCAM, SimilarityTarget
from hdm.cam import metrics as M
from hdm.cam.faces import FACE_LAYERS
from hdm.cli import main
from hdm.data.samples import sample_images
from hdm.errors import BadArgument
from hdm.faces import FaceEmbedder


class Softmaxed:
    """A class index's softmax probability, written as a score callable."""

    def __init__(self, c):
        self.c = c

    def __call__(self, output):
        return F.softmax(output, dim=0)[self.c]


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder.from_pretrained()


@pytest.fixture(scope="module")
def images():
    return sample_images()


@pytest.fixture(scope="module")
def samples(embedder, images, one_torch_thread):
    return face_samples(embedder, images)


def test_a_score_callable_gives_what_the_class_index_gives(small_cnn):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    cams = torch.rand(3, 16, 16, dtype=torch.float64)
    model = small_cnn.float()
    x, cams = x.float(), cams.float()
    by_index = M.deletion_insertion(model, x, cams, [0, 2, 1], steps=4)
    by_callable = M.deletion_insertion(model, x, cams, [Softmaxed(0), Softmaxed(2), 1], steps=4)
    for a, b in zip(by_index, by_callable):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(M.drop_and_increase(model, x, cams, [0, 2, 1]),
                               M.drop_and_increase(model, x, cams, [Softmaxed(0), Softmaxed(2), Softmaxed(1)]),
                               rtol=1e-6)
    with pytest.raises(BadArgument, match="2 targets for 3 images"):
        M.deletion_insertion(model, x, cams, [0, 1], steps=4)
    with pytest.raises(BadArgument, match="class index or a score callable"):
        M.deletion_insertion(model, x, cams, [0, 1, "cat"], steps=4)


class MeanOfPixel(torch.nn.Module):
    """Output: the values of channel c at pixel (0, 0), one per channel: shows what deletion put there."""

    def forward(self, x):
        return x[:, :, 0, 0]


def test_deletion_fills_the_deleted_pixels_with_the_given_colour():
    x = torch.ones(1, 3, 4, 4)
    cams = torch.zeros(1, 4, 4)
    cams[0, 0, 0] = 1.0  # pixel (0, 0) ranks first: deleted from step k = 1 of 16 on
    red = lambda out: out[0]  # noqa: E731  the red value at pixel (0, 0)
    deletion, _ = M.deletion_insertion(MeanOfPixel(), x, cams, [red], steps=16, fill=(0.25, 0.5, 0.75))
    # the curve: 1 at k=0, then 0.25 for k=1..16; trapezoid on [0, 1] with 16 intervals
    curve = np.array([1.0] + [0.25] * 16)
    assert deletion[0] == pytest.approx(((curve[1:] + curve[:-1]) / 2).mean())
    green = lambda out: out[1]  # noqa: E731
    deletion, _ = M.deletion_insertion(MeanOfPixel(), x, cams, [green], steps=16, fill=0.5)
    curve = np.array([1.0] + [0.5] * 16)
    assert deletion[0] == pytest.approx(((curve[1:] + curve[:-1]) / 2).mean())


def test_mean_ci_by_hand():
    assert vars(mean_ci([2.0, 2.0, 2.0])) == {"mean": 2.0, "lo": 2.0, "hi": 2.0, "n": 3}
    a = np.array([0.0, 1.0, 3.0, np.nan])
    r = mean_ci(a, n_boot=500, seed=3)
    idx = np.random.default_rng(3).integers(0, 3, size=(500, 3))
    means = a[:3][idx].mean(axis=1)
    assert (r.mean, r.n) == (pytest.approx(4 / 3), 3)
    assert (r.lo, r.hi) == (pytest.approx(np.percentile(means, 2.5)), pytest.approx(np.percentile(means, 97.5)))
    with pytest.raises(ValueError, match="no values"):
        mean_ci([np.nan])


def test_faces_and_their_targets(embedder, images, samples):
    assert [s.reference for s in samples] == ["own descriptor"] * 2
    assert all(np.array_equal(s.target, s.descriptor) for s in samples)
    twice = face_samples(embedder, {**images, "copy": next(iter(images.values()))})
    assert len(twice) == 2  # the same picture under another name counts once
    a, b = images
    paired = face_samples(embedder, images, {a: b})
    assert [s.reference.rsplit(" (distance", 1)[0] for s in paired] == [f"same person: {b}", f"same person: {a}"]
    np.testing.assert_array_equal(paired[0].target, paired[1].descriptor)
    with pytest.raises(BadArgument, match="not among the images"):
        face_samples(embedder, images, {a: "nobody.jpg"})


def test_evaluation_equals_the_metrics_called_directly(embedder, samples, one_torch_thread):
    methods = {"Grad-CAM (last stage)": lambda x, t: GradCAM(embedder, [FACE_LAYERS[-1]])(x, t)}
    result = evaluate_faces(embedder, samples, methods, steps=4, progress=False)
    x = torch.from_numpy(np.stack([s.chip for s in samples])).permute(0, 3, 1, 2).float() / 255
    own = [SimilarityTarget(torch.from_numpy(s.target), cosine=False) for s in samples]
    cams = torch.from_numpy(GradCAM(embedder, [FACE_LAYERS[-1]])(x, own))

    def cosine(i):  # the score, written out: the cosine of the descriptor with the face's own one
        r = torch.from_numpy(samples[i].target)
        return lambda out: (out @ r) / (out.norm() * r.norm())
    fill = (embedder.network.input_mean / 255).tolist()
    deletion, insertion = M.deletion_insertion(embedder, x, cams, [cosine(0), cosine(1)], steps=4, fill=fill)
    values = result.values["Grad-CAM (last stage)"]
    np.testing.assert_allclose(values["deletion"], deletion, rtol=1e-5)
    np.testing.assert_allclose(values["insertion"], insertion, rtol=1e-5)
    assert np.all(values["road"] == (values["road_lerf"] - values["road_morf"]) / 2)
    assert np.all(deletion < 1) and np.all(insertion <= 1 + 1e-6)  # cosine starts (deletion) or ends at 1
    text = markdown(summarize_faces(result, reference="Grad-CAM (last stage)", n_boot=100), ["# faces"],
                    list(zip(result.names, result.references)))
    mean = values["deletion"].mean()
    assert f"| Grad-CAM (last stage) | {mean:.3f} [" in text and "2 faces:" in text
    with pytest.raises(BadArgument, match="no face"):
        evaluate_faces(embedder, [], methods)


def test_a_flat_face_map_takes_the_random_floors_pixel_order(embedder, samples, one_torch_thread):
    methods = {"nothing": lambda x, t: np.zeros((len(x), *x.shape[-2:]), np.float32), "random 0": random_map(0)}
    result = evaluate_faces(embedder, samples, methods, steps=4, road_percentiles=(50,), progress=False)
    assert result.values["nothing"]["flat"].tolist() == [1.0, 1.0]
    assert result.values["random 0"]["flat"].tolist() == [0.0, 0.0]
    for key in ("deletion", "insertion", "road"):
        np.testing.assert_allclose(result.values["nothing"][key], result.values["random 0"][key], err_msg=key)


def test_eval_cam_face_command(tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# one person\nastronaut.png\n")
    assert main(["eval-cam-face", "--pairs", str(pairs), "--steps", "2"]) == 2
    assert "line 2: give two photo names" in capsys.readouterr().err
    out, table = tmp_path / "faces.csv", tmp_path / "faces.md"
    assert main(["eval-cam-face", "--steps", "2", "--bootstrap", "50", "--road-percentiles", "50", "--no-score-cam",
                 "--csv", str(out), "--out", str(table)]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "face,method,deletion,insertion,road,road_morf,road_lerf,flat" and len(rows) == 1 + 2 * 12
    assert "CAM faithfulness on a real network" in table.read_text()
