"""core.metrics against small cases whose expected numbers were worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from core.columns import EVAL_KEYS
from core.metrics import ensemble_loss, evaluation_metrics, reported_loss

# Two members, two examples, two classes.
#   member 1: [0.9, 0.1], [0.4, 0.6]     member 2: [0.6, 0.4], [0.8, 0.2]     labels: 0, 1
#   ensemble: [0.75, 0.25], [0.6, 0.4]  -> predicts 0, 0
P1 = [[0.9, 0.1], [0.4, 0.6]]
P2 = [[0.6, 0.4], [0.8, 0.2]]
LABELS = [0, 1]


def _two_member_case():
    return torch.tensor([P1, P2], dtype=torch.float64), torch.tensor(LABELS)


def test_keys_are_exactly_the_documented_ones():
    probs, labels = _two_member_case()
    out = evaluation_metrics(probs, labels)
    assert tuple(out) == EVAL_KEYS
    assert set(out) == {"acc", "loss", "ece", "brier", "member_acc", "disagreement", "kl"}
    assert all(isinstance(v, float) for v in out.values())


def test_hand_computed_two_member_case():
    probs, labels = _two_member_case()
    out = evaluation_metrics(probs, labels)
    # ensemble predicts 0 on both; only the first is right
    assert out["acc"] == pytest.approx(0.5)
    # NLL = -(ln 0.75 + ln 0.4) / 2 = (0.2876821 + 0.9162907) / 2
    assert out["loss"] == pytest.approx(0.6019864, abs=1e-6)
    # confidences 0.75 (right) and 0.6 (wrong) fall in different bins:
    # ECE = (|1 - 0.75| + |0 - 0.6|) / 2
    assert out["ece"] == pytest.approx(0.425, abs=1e-9)
    # Brier: ex1 (0.75-1)^2 + 0.25^2 = 0.125; ex2 0.6^2 + (0.4-1)^2 = 0.72; mean 0.4225
    assert out["brier"] == pytest.approx(0.4225, abs=1e-9)
    # member 1 right on both, member 2 right on one
    assert out["member_acc"] == pytest.approx(0.75)
    # members agree on example 1, disagree on example 2
    assert out["disagreement"] == pytest.approx(0.5)
    # KL(p1||p2): ex1 0.9 ln(0.9/0.6) + 0.1 ln(0.1/0.4) = 0.2262892
    #             ex2 0.4 ln(0.4/0.8) + 0.6 ln(0.6/0.2) = 0.3819085   -> mean 0.3040988
    # KL(p2||p1): ex1 0.6 ln(0.6/0.9) + 0.4 ln(0.4/0.1) = 0.3112387
    #             ex2 0.8 ln(0.8/0.4) + 0.2 ln(0.2/0.6) = 0.3347953   -> mean 0.3230170
    # mean over the two ordered pairs: 0.3135579
    assert out["kl"] == pytest.approx(0.3135579, abs=1e-6)


def test_kl_against_independent_formula_three_members():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 7, 4, generator=g, dtype=torch.float64), dim=2)
    labels = torch.randint(0, 4, (7,), generator=g)
    total = 0.0
    for a in range(3):
        for b in range(3):
            if a != b:
                per_ex = [
                    sum(
                        float(probs[a, i, c]) * math.log(float(probs[a, i, c] / probs[b, i, c]))
                        for c in range(4)
                    )
                    for i in range(7)
                ]
                total += sum(per_ex) / 7
    assert evaluation_metrics(probs, labels)["kl"] == pytest.approx(total / 6, rel=1e-9)


def test_single_member_has_zero_diversity_and_member_acc_equals_acc():
    probs = torch.tensor([P1], dtype=torch.float64)
    out = evaluation_metrics(probs, torch.tensor(LABELS))
    assert out["disagreement"] == 0.0
    assert out["kl"] == 0.0
    assert out["acc"] == out["member_acc"] == 1.0
    # NLL = -(ln 0.9 + ln 0.6) / 2
    assert out["loss"] == pytest.approx(-(math.log(0.9) + math.log(0.6)) / 2)


def test_disagreement_three_members():
    # member argmaxes: a = [0, 1, 2], b = [0, 1, 1], c = [1, 1, 1]
    # pairs: ab differ on 1/3, ac on 2/3, bc on 1/3 -> mean 4/9
    preds = [[0, 1, 2], [0, 1, 1], [1, 1, 1]]
    probs = torch.full((3, 3, 3), 0.1, dtype=torch.float64)
    for m, row in enumerate(preds):
        for i, c in enumerate(row):
            probs[m, i, c] = 0.8
    out = evaluation_metrics(probs, torch.tensor([0, 1, 2]))
    assert out["disagreement"] == pytest.approx(4 / 9)


def test_ece_with_two_examples_in_one_bin():
    # confidences 0.9 and 0.92 share bin (13/15, 14/15]; 0.7 and 0.55 are alone.
    probs = torch.tensor([[[0.9, 0.1], [0.08, 0.92], [0.3, 0.7], [0.45, 0.55]]])
    labels = torch.tensor([0, 0, 1, 0])  # correct: yes, no, yes, no
    # bin 14: |0.5 - 0.91| * 2/4 = 0.205; 0.7 bin: |1 - 0.7| / 4 = 0.075;
    # 0.55 bin: |0 - 0.55| / 4 = 0.1375  -> 0.4175
    assert evaluation_metrics(probs, labels)["ece"] == pytest.approx(0.4175, abs=1e-6)


def test_perfectly_confident_and_right_is_all_zero_errors():
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]] * 2)
    out = evaluation_metrics(probs, torch.tensor([0, 1]))
    assert out["acc"] == 1.0 and out["ece"] == 0.0 and out["brier"] == 0.0
    assert out["loss"] == pytest.approx(0.0, abs=1e-9)
    assert out["kl"] == pytest.approx(0.0, abs=1e-9)


def test_zero_probability_on_label_is_clamped_not_inf():
    probs = torch.tensor([[[1.0, 0.0]]])
    out = evaluation_metrics(probs, torch.tensor([1]))
    assert math.isfinite(out["loss"])
    assert out["loss"] == pytest.approx(-math.log(1e-12))


def test_ensemble_loss_is_mean_of_member_cross_entropies():
    # member 1 logits [0, ln 3] -> probs [0.25, 0.75]; member 2 [0, 0] -> [0.5, 0.5]; label 0
    logits = torch.tensor([[[0.0, math.log(3.0)]], [[0.0, 0.0]]])
    loss = ensemble_loss(logits, torch.tensor([0]))
    assert float(loss) == pytest.approx((math.log(4.0) + math.log(2.0)) / 2, abs=1e-6)


def test_ensemble_loss_every_member_sees_every_example_and_has_grad():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 4, generator=g, requires_grad=True)
    y = torch.randint(0, 4, (5,), generator=g)
    loss = ensemble_loss(logits, y)
    expected = sum(torch.nn.functional.cross_entropy(logits[m], y) for m in range(3)) / 3
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert (logits.grad.abs().sum(dim=(1, 2)) > 0).all()


@pytest.mark.parametrize(
    "probs, labels, match",
    [
        (torch.ones(2, 3) / 3, torch.zeros(2, dtype=torch.long), "members, examples, classes"),
        (torch.ones(1, 2, 3) / 3, torch.zeros(3, dtype=torch.long), "labels must be shaped"),
        (torch.ones(1, 2, 3) / 3, torch.tensor([0, 3]), "labels must lie in"),
    ],
)
def test_bad_inputs_are_clear_errors(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        evaluation_metrics(probs, labels)


def test_ensemble_loss_shape_errors():
    with pytest.raises(ValueError, match="members, batch, classes"):
        ensemble_loss(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be shaped"):
        ensemble_loss(torch.zeros(2, 4, 3), torch.zeros(3, dtype=torch.long))


def test_ensemble_loss_deep_sums_member_means_batch_and_single_average_them():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 5, 4, generator=g)
    y = torch.randint(0, 4, (5,), generator=g)
    members = [float(torch.nn.functional.cross_entropy(logits[m], y)) for m in range(3)]
    assert float(ensemble_loss(logits, y, "deep")) == pytest.approx(sum(members), rel=1e-6)
    assert float(ensemble_loss(logits, y, "batch")) == pytest.approx(sum(members) / 3, rel=1e-6)
    one = logits[:1]
    assert float(ensemble_loss(one, y, "single")) == pytest.approx(members[0], rel=1e-6)
    assert reported_loss(float(ensemble_loss(logits, y, "deep")), 3, "deep") == pytest.approx(
        sum(members) / 3, rel=1e-6
    )
    assert reported_loss(0.7, 3, "batch") == 0.7


def test_ensemble_loss_deep_gives_each_member_its_own_full_gradient():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 6, 5, generator=g, requires_grad=True)
    y = torch.randint(0, 5, (6,), generator=g)
    ensemble_loss(logits, y, "deep").backward()
    alone = logits.detach()[1].clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(alone, y).backward()
    torch.testing.assert_close(logits.grad[1], alone.grad)


def test_ensemble_loss_unknown_ensemble_is_refused():
    with pytest.raises(ValueError, match=r"ensemble='mc_dropout'"):
        ensemble_loss(torch.zeros(2, 4, 3), torch.zeros(4, dtype=torch.long), "mc_dropout")
