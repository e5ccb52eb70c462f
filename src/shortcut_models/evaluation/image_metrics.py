"""Metrics of generated samples: which one a model gets, and how each is built.

- ``swd`` (2-D toys): sliced Wasserstein distance between K samples and K fresh data points; the
  floor is the SWD between two independent data sets of K points. The checkerboard also reports the
  fraction of samples on filled squares.
- ``fd-digits`` (digits): Fréchet distance in the feature space of the digits CNN, samples vs the
  train split (1,497 images); floor: test split (300) vs train split. Conditional models also get
  the class accuracy of their samples under that CNN's classifier.
- ``fid`` (images): Fréchet distance of Inception-v3 pool features against reference statistics
  (``shortcut ref-stats``); no floor unless one is given.
- ``fd-dinov2`` (images, on request): the same in the CLS features of a DINOv2 ViT (the official
  ``dinov2_vitl14_pretrain.pth``, a local file: ``--dinov2-weights``; nothing is downloaded), against
  statistics made with ``shortcut ref-stats --metric fd-dinov2``.

Statistics files record their feature space (``extractor``); a file made in another one is refused.

Measures of the sample set added on request (``shortcut eval --metrics fid,is,kid,prc``), in the same
feature space as the Fréchet distance (Inception-v3 for fid, the digits CNN for fd-digits, DINOv2 for
fd-dinov2): ``is`` the Inception Score of the classifier's logits (not with fd-dinov2: DINOv2 has no
classifier), ``kid`` the Kernel Inception Distance and
``prc`` improved precision and recall against the reference features (the digits train split, or the
features a statistics file keeps: ``shortcut ref-stats`` keeps 10,000).

On digits, ``nn1`` adds a measure of another kind, independent of the digits CNN: the leave-one-out
1-nearest-neighbour two-sample test in pixel space (``metrics/one_nn.py``) between the first
n = min(K, 1,497) samples and n train images (evenly spaced rows of the split: all of them when K >= 1,497).
Columns: ``nn1_accuracy`` (0.5: indistinguishable from the data, 1: fully separable, below 0.5: copies
of train images), ``nn1_accuracy_floor`` (the test split against each fifth of the train split, rows
i, i + 5, ..., averaged over the five), and the two sides: ``nn1_real_accuracy`` (share of the train
images whose nearest neighbour is a train image: high when the samples miss or blur parts of the data,
or are noisy) and ``nn1_sample_accuracy`` (the same for the samples: high when they sit apart from
the data, e.g. blurred). Its noise: the floor's five values spread over 0.49 to 0.55 (300 images a
side); with 1,497 a side the binomial standard error is about 0.01.
Statistics are accumulated in float64 batch by batch, so K can be tens of thousands; under torchrun
they are summed over processes (:func:`reduce_feature_stats`).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..config import EVAL_METRICS
from ..data.digits import load_digits
from ..data.folder import UnreadableImage, check_resolution, load_image, scan_folder
from ..errors import UserError, first_line
from ..metrics.digits_net import load_digits_feature_net
from ..metrics.dinov2 import OFFICIAL_WEIGHTS, DinoV2Features
from ..metrics.frechet import FeatureStats, ReferenceStats, frechet_distance_from_stats
from ..metrics.inception import InceptionFeatures, WeightsUnavailable, inception_weights_cache
from ..metrics.one_nn import one_nn_accuracies, one_nn_accuracy

METRICS = EVAL_METRICS  # the names --metric and eval_metric accept
FEATURE_SPACES = {
    "fid": "Inception-v3 (fid)",
    "fd-dinov2": "DINOv2 (fd-dinov2)",
    "fd-digits": "digits CNN (fd-digits)",
}  # what statistics files record as their ``extractor``
SET_METRICS = ("is", "kid", "prc", "nn1")  # measures of the whole sample set, on request (shortcut eval --metrics)
FEATURE_MEASURES = ("is", "kid", "prc")  # those computed from the features (nn1 reads the images)


def metric_key(metric: str) -> str:
    """Column name of a metric in tables and files ('fd-digits' -> 'fd_digits')."""
    return metric.replace("-", "_")


def default_metric(data: str, is_image: bool) -> str:
    """The metric 'auto' means for a model trained on ``data``: swd for vectors, fd-digits for digits, else fid."""
    if not is_image:
        return "swd"
    return "fd-digits" if data == "digits" else "fid"


@dataclass
class ImageMetric:
    """A feature extractor with its reference statistics, optional floor and optional classifier.

    ``classifier`` gives class logits for the class accuracy of conditional samples (digits);
    ``logits`` gives the logits the Inception Score uses; ``joint`` computes features and those
    logits in one pass where the network allows it. ``extras`` are the set measures requested
    (:data:`SET_METRICS`); KID and precision/recall compare with ``reference.features``, the 1-NN
    test (nn1, digits) with ``real_images`` (pixels in [-1, 1]), its floor being ``nn1_floor``.
    """

    name: str
    extractor: Callable[[torch.Tensor], torch.Tensor]
    reference: ReferenceStats
    floor: float | None = None
    classifier: Callable[[torch.Tensor], torch.Tensor] | None = None
    logits: Callable[[torch.Tensor], torch.Tensor] | None = None
    joint: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    extras: tuple[str, ...] = ()
    real_images: torch.Tensor | None = None
    nn1_floor: float | None = None

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features of ``images``, and the Inception-Score logits when ``is`` was requested."""
        if "is" not in self.extras:
            return self.extractor(images), None
        if self.joint is not None:
            return self.joint(images)
        return self.extractor(images), self.logits(images)


def feature_stats(extractor, images: torch.Tensor, batch_size: int = 1024, keep: int = 0) -> FeatureStats:
    stats = FeatureStats(keep=keep)
    for chunk in images.split(batch_size):
        stats.update(extractor(chunk))
    return stats


def digits_metric(device: str | torch.device = "cpu") -> ImageMetric:
    """fd-digits: reference = train split, floor = FD(test split, train split); with the train images and
    the floor of the 1-NN test (nn1, when requested)."""
    net = load_digits_feature_net(device=device)
    images = load_digits("train")[0]
    test_images = load_digits("test")[0]
    train = feature_stats(net.features, images.to(device), keep=len(images))  # every train feature: KID, prc
    test = feature_stats(net.features, test_images.to(device))
    return ImageMetric(
        "fd-digits",
        net.features,
        train.reference(),
        frechet_distance_from_stats(test, train),
        classifier=net.logits,
        logits=net.logits,
        real_images=images,
        nn1_floor=sum(one_nn_accuracy(test_images, images[i::5]) for i in range(5)) / 5,
    )


def evenly_spaced(rows: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``rows`` spread evenly over it, first and last included (all of them when n >= len)."""
    if n >= len(rows):
        return rows
    return rows[torch.linspace(0, len(rows) - 1, n).round().long()]


def nn1_measures(samples: torch.Tensor, metric: ImageMetric) -> dict[str, float]:
    """The 1-NN test of ``samples`` (images) against ``metric.real_images``: nn1_accuracy (with its floor),
    nn1_sample_accuracy and nn1_real_accuracy, on the first n samples and n evenly spaced real images."""
    real = evenly_spaced(metric.real_images, min(len(samples), len(metric.real_images)))
    on_samples, on_real = one_nn_accuracies(samples, real)
    out = {"nn1_accuracy": (on_samples + on_real) / 2}
    if metric.nn1_floor is not None:
        out["nn1_accuracy_floor"] = metric.nn1_floor
    out.update(nn1_sample_accuracy=on_samples, nn1_real_accuracy=on_real)
    return out


def fid_extractor(weights: str | None, device: str | torch.device = "cpu"):
    """Inception-v3 features; a missing weights file or package is a UserError (one line)."""
    try:
        return InceptionFeatures(weights=weights or "download", device=device)
    except WeightsUnavailable as exc:
        raise UserError(
            f"fid needs the Inception weights, and {exc}: pass --inception-weights FILE "
            f"(eval_inception_weights=FILE in training), the file {inception_weights_cache().name} fetched by hand "
            "(docs/pretrained.md)"
        ) from None
    except (FileNotFoundError, ImportError) as exc:
        raise UserError(first_line(exc)) from None
    except (pickle.UnpicklingError, ValueError, RuntimeError) as exc:  # weights_only refusal, damaged file
        raise UserError(f"cannot load Inception weights {weights}: {first_line(exc)}") from None


def dinov2_extractor(weights: str | None, device: str | torch.device = "cpu") -> DinoV2Features:
    """DINOv2 features from a local weights file; no file, a missing or a wrong one is a UserError (one line)."""
    if not weights:
        raise UserError(
            f"fd-dinov2 needs the DINOv2 weights: pass --dinov2-weights FILE (eval_dinov2_weights=FILE in training), "
            f"the official {OFFICIAL_WEIGHTS} fetched by hand (docs/pretrained.md); nothing is downloaded"
        )
    try:
        return DinoV2Features(weights=weights, device=device)
    except FileNotFoundError as exc:
        raise UserError(first_line(exc)) from None
    except (pickle.UnpicklingError, ValueError, RuntimeError, OSError) as exc:  # weights_only refusal, wrong file
        raise UserError(f"cannot load DINOv2 weights {weights}: {first_line(exc)}") from None


def feature_extractor(metric: str, weights: str | None, device: str | torch.device = "cpu"):
    """The network of ``metric`` ("fid" or "fd-dinov2") with its ``weights`` (a UserError when they fail)."""
    if metric == "fd-dinov2":
        return dinov2_extractor(weights, device)
    return fid_extractor(weights, device)


def load_reference_stats(ref_stats: str | None, metric: str) -> ReferenceStats:
    """The statistics file ``ref_stats`` for ``metric``; a UserError when it is missing, unreadable or made
    in another feature space (a file that records none is taken as Inception's, as other tools write)."""
    if not ref_stats:
        raise UserError(
            f"metric {metric} needs reference statistics (--ref-stats or eval_ref_stats; make them with "
            f"`shortcut ref-stats --metric {metric}`)"
        )
    if not Path(ref_stats).is_file():
        raise UserError(f"reference statistics not found: {ref_stats} (make them with `shortcut ref-stats`)")
    try:  # numpy refuses pickled objects (allow_pickle=False): arrays only
        reference = ReferenceStats.load_npz(ref_stats)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read reference statistics {ref_stats}: {first_line(exc)}") from None
    recorded = reference.extractor or "fid"
    if recorded != metric:
        space = FEATURE_SPACES.get(recorded, repr(recorded))
        raise UserError(
            f"{ref_stats} holds statistics of {space} features, not {FEATURE_SPACES[metric]} ones; make them "
            f"with `shortcut ref-stats --metric {metric}`"
        )
    return reference


def _feature_metric(name: str, ref_stats: str | None, weights: str | None, device) -> ImageMetric:
    reference = load_reference_stats(ref_stats, name)
    extractor = feature_extractor(name, weights, device)
    if reference.mu.shape[0] != extractor.dim:
        raise UserError(
            f"{ref_stats} holds {reference.mu.shape[0]}-d features, the {name} network {extractor.dim}-d "
            "ones: make the statistics with the same weights file"
        )
    joint = extractor.features_and_logits if name == "fid" else None
    return ImageMetric(name, extractor, reference, joint=joint)


def fid_metric(ref_stats: str | None, weights: str | None, device: str | torch.device = "cpu") -> ImageMetric:
    """fid: Inception features against a saved ``mu``/``sigma`` file."""
    return _feature_metric("fid", ref_stats, weights, device)


def dinov2_metric(ref_stats: str | None, weights: str | None, device: str | torch.device = "cpu") -> ImageMetric:
    """fd-dinov2: DINOv2 CLS features (a local weights file) against statistics made in that space."""
    return _feature_metric("fd-dinov2", ref_stats, weights, device)


def build_metric(
    name: str,
    data: str,
    is_image: bool,
    ref_stats: str | None = None,
    inception_weights: str | None = None,
    device: str | torch.device = "cpu",
    extras: tuple[str, ...] = (),
    dinov2_weights: str | None = None,
) -> ImageMetric | None:
    """The metric ``name`` ('auto' picks one) for a model trained on ``data``; None for 'swd' (2-D data).

    ``extras``: set measures (:data:`SET_METRICS`) to add. Everything a metric needs (the digits CNN,
    Inception or DINOv2 weights, reference statistics and features) is loaded here, so a missing piece is one
    UserError before any sample is generated.
    """
    name = default_metric(data, is_image) if name == "auto" else name
    unknown = [e for e in extras if e not in SET_METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r}; choose from {', '.join((*METRICS, *SET_METRICS))}")
    if name == "swd":
        if is_image:
            raise UserError("metric swd is for 2-D data; use fd-digits or fid for images")
        if extras:
            raise UserError(f"{', '.join(extras)} measure images; 2-D data has swd only")
        return None
    if not is_image:
        raise UserError(f"metric {name} is for images; use swd for 2-D data")
    if "nn1" in extras and name != "fd-digits":
        raise UserError(
            "nn1 (the 1-nearest-neighbour test in pixels) compares with the digits train images: it goes with "
            "fd-digits on digits models"
        )
    if name == "fd-digits":
        if data != "digits":
            raise UserError(f"metric fd-digits compares with the digits data set; this model is trained on {data!r}")
        metric = digits_metric(device)
    elif name == "fd-dinov2":
        if "is" in extras:
            raise UserError(
                "the Inception Score (is) needs Inception-v3's classifier: it goes with fid, not fd-dinov2 "
                "(kid and prc work in DINOv2 features)"
            )
        metric = dinov2_metric(ref_stats, dinov2_weights, device)
    else:
        metric = fid_metric(ref_stats, inception_weights, device)
    if {"kid", "prc"} & set(extras) and metric.reference.features is None:
        raise UserError(
            f"kid and prc compare with reference features, which {ref_stats} does not keep; make the statistics "
            "again with `shortcut ref-stats` (it keeps 10,000) or `ref-stats --convert FILE --recompute`"
        )
    metric.extras = tuple(dict.fromkeys(extras))
    return metric


def reduce_feature_stats(stats: FeatureStats) -> FeatureStats:
    """The statistics of the union of every process's features (float64 sums, one all-reduce)."""
    if distributed.world_size() == 1:
        return stats
    dim = distributed.max_int(stats.dim or 0)
    if stats.dim is None:  # this process kept no sample
        stats = FeatureStats(dim, device=stats.device)
    count, total, outer = stats.state_tensors()
    summed = distributed.all_reduce(torch.cat([count[None], total, outer.flatten()]))
    return FeatureStats.from_state_tensors(
        summed[0], summed[1 : 1 + dim], summed[1 + dim :].view(dim, dim), stats.device
    )


def folder_feature_stats(
    folder: str,
    resolution: int,
    weights: str | None,
    device: str = "cpu",
    num: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
    keep: int = 0,
    metric: str = "fid",
) -> FeatureStats:
    """Statistics of an image folder (ADM center crop to ``resolution``) in the features of ``metric``
    ("fid": Inception, "fd-dinov2": DINOv2 with ``weights``); unreadable files skipped.

    ``keep``: also keep the first ``keep`` feature vectors (for KID and precision/recall)."""
    try:
        check_resolution(resolution)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    items = [path for path, _ in scan_folder(folder)[0]][:num]  # the folder first: no download for a typo
    if not items:
        raise UserError(f"no images found in {folder}")
    extractor = feature_extractor(metric, weights, device)
    stats, batch, skipped = FeatureStats(keep=keep), [], 0
    for path in tqdm(items, desc="ref-stats", unit="img", disable=not progress):
        try:
            batch.append(load_image(path, resolution))
        except UnreadableImage:
            skipped += 1
            continue
        if len(batch) == batch_size:
            stats.update(extractor(torch.stack(batch)))
            batch = []
    if batch:
        stats.update(extractor(torch.stack(batch)))
    if stats.count < 2:
        raise UserError(f"{folder}: fewer than 2 readable images ({skipped} unreadable)")
    return stats
