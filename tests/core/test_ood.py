"""core.ood (scores, AUROC, FPR95 on hand-computed examples) and core.data.ood (the OOD sets)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import columns as C
from core.data import FASHION_MNIST_DIR, DataNotFoundError, load_ood
from core.data.ood import FASHION_MNIST_TEST, read_idx_images
from core.ood import auroc, confidence_scores, fpr_at_tpr, ood_metrics


def test_auroc_hand_computed_with_ties():
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    # pairs (id, ood): (2,1)>, (2,2)=, (2,3)<, (3,1)>, (3,2)>, (3,3)= -> (3 + 2 * 0.5) / 6
    assert auroc([2, 3], [1, 2, 3]) == pytest.approx(4 / 6)
    assert auroc([1, 1, 1], [1, 1]) == 0.5
    assert math.isnan(auroc([], [1.0]))


def test_fpr95_hand_computed():
    id_scores = torch.arange(1, 21, dtype=torch.float64)  # 1..20: 95% of 20 is 19 -> t = 2
    assert fpr_at_tpr(id_scores, torch.tensor([0.0, 1.0, 2.0, 3.0])) == 0.5  # 2 and 3 >= 2
    assert fpr_at_tpr(id_scores, torch.tensor([0.0, 1.9])) == 0.0
    # ties at the threshold are accepted: all ID equal -> every OOD score equal to it counts
    assert fpr_at_tpr(torch.ones(10), torch.tensor([1.0, 0.5])) == 0.5
    # 10 ID scores: ceil(9.5) = 10th largest, the minimum
    assert fpr_at_tpr(torch.arange(10.0), torch.tensor([-1.0, 0.0])) == 0.5


def test_scores_of_known_distributions():
    k = 4
    uniform = torch.full((2, 1, k), 1 / k)
    onehot = torch.zeros(2, 1, k)
    onehot[:, :, 0] = 1
    disagree = torch.zeros(2, 1, k)
    disagree[0, 0, 0] = disagree[1, 0, 1] = 1
    s = {name: confidence_scores(p) for name, p in (("u", uniform), ("o", onehot), ("d", disagree))}
    assert s["u"]["msp"].item() == 0.25 and s["o"]["msp"].item() == 1.0
    assert s["u"]["entropy"].item() == pytest.approx(-math.log(4))
    assert s["o"]["entropy"].item() == 0.0
    # members agree (uniform or one-hot): MI 0; two confident members disagreeing: MI = log 2
    assert s["u"]["mi"].item() == pytest.approx(0.0, abs=1e-12)
    assert s["o"]["mi"].item() == 0.0
    assert s["d"]["mi"].item() == pytest.approx(-math.log(2))
    assert math.isnan(confidence_scores(onehot[:1])["mi"].item())


def test_ood_metrics_names_and_a_separable_case():
    g = torch.Generator().manual_seed(0)
    confident = torch.softmax(torch.randn(3, 50, 10, generator=g) * 0.1 + 8 * torch.eye(10)[0], -1)
    flat = torch.softmax(torch.randn(3, 40, 10, generator=g) * 0.1, -1)
    out = ood_metrics(confident, flat)
    assert set(out) == set(C.OOD_METRICS)
    assert out[C.ood_metric("auroc", "msp")] == 1.0 and out[C.ood_metric("fpr95", "msp")] == 0.0
    assert out[C.ood_metric("auroc", "entropy")] == 1.0


def test_fashion_mnist_from_debians_package():
    if not (FASHION_MNIST_DIR / FASHION_MNIST_TEST).is_file():
        pytest.skip(f"{FASHION_MNIST_DIR} missing: apt-get install dataset-fashion-mnist")
    raw = read_idx_images(FASHION_MNIST_DIR / FASHION_MNIST_TEST)
    assert raw.shape == (10000, 28, 28) and raw.dtype == torch.uint8
    x = load_ood("fashion_mnist", None, (32, 32), 3)
    assert x.shape == (10000, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], x[:, 2])
    # bilinear resizing keeps the mean brightness (Fashion-MNIST: about 73 of 255)
    assert abs(x.double().mean().item() - raw.double().mean().item()) < 0.5
    assert 60 < raw.double().mean().item() < 85


def test_idx_reader_and_resizing_on_a_made_file(tmp_path):
    arr = np.zeros((3, 28, 28), dtype=np.uint8)
    arr[1] = 200
    arr[2, :, 14:] = 100
    header = np.array([2051, 3, 28, 28], dtype=">i4").tobytes()
    with gzip.open(tmp_path / FASHION_MNIST_TEST, "wb") as f:
        f.write(header + arr.tobytes())
    x = load_ood("fashion_mnist", str(tmp_path), (32, 32), 3)
    assert x.shape == (3, 3, 32, 32)
    assert (x[0] == 0).all() and (x[1] == 200).all()
    assert (x[2, :, :, :15] == 0).all() and (x[2, :, :, 17:] == 100).all()


def test_image_folder_and_missing_data_is_a_clear_one_line_error(tmp_path):
    folder = tmp_path / "svhn" / "test" / "a"
    folder.mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(folder / f"{i}.png")
    x = load_ood("imagefolder", str(tmp_path / "svhn"), (32, 32), 3)
    assert x.shape == (5, 3, 32, 32)
    assert sorted(x[:, 0, 0, 0].tolist()) == [0, 10, 20, 30, 40]
    with pytest.raises(DataNotFoundError, match="dataset-fashion-mnist") as e:
        load_ood("fashion_mnist", str(tmp_path / "nowhere"), (32, 32), 3)
    assert "\n" not in str(e.value)
    with pytest.raises(DataNotFoundError, match="ood_dir"):
        load_ood("imagefolder", str(Path(tmp_path) / "nothing"), (32, 32), 3)
