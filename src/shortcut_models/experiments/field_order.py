"""The field's order at scale against the study's order on digits, for the methods in both.

At scale: the one-step FID-50k on class-conditional ImageNet 256x256 (latent space) that each method's
paper reports for its largest network (lower is better). On digits: the study's mean FD at 1 step under
each method's own recipe at the largest budget. A pair of methods *agrees* when the one ahead at scale is
significantly ahead on digits, *disagrees* when it is significantly behind, and *cannot tell* when the two
are tied on digits (Welch's t-test over seeds, p < 0.05 after Holm's correction over the pairs of all the
study's methods at 1 step, as in the rankings).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from .study_plan import StudyPlan, method_title
from .study_scores import Column, Scores, column, pair_p, rank, verdict_in


@dataclass(frozen=True)
class PublishedScore:
    """A method's one-step FID-50k on ImageNet 256x256 as its paper reports it, the network and the paper."""

    fid: float
    network: str
    source: str


# Methods trained without a teacher run and without added representation losses. Decoupled MeanFlow (2.16)
# is left out: it fine-tunes a flow-matching model trained with REPA, another setting.
FIELD_ONE_STEP: dict[str, PublishedScore] = {
    "imf": PublishedScore(1.72, "XL/2", "improved MeanFlow (iMF), CVPR 2026"),
    "alpha-flow": PublishedScore(2.58, "DiT-XL/2+", "Zhang et al., ICLR 2026, AlphaFlow"),
    "esc": PublishedScore(2.85, "SiT-XL/2", "Lin et al., ICLR 2026, ESC"),
    "soflow": PublishedScore(2.96, "DiT-XL/2", "Luo et al. 2025, SoFlow (arXiv 2512.15657)"),
    "meanflow": PublishedScore(3.43, "DiT-XL/2", "Geng et al. 2025, Mean Flows for One-step Generative Modeling"),
    "imm": PublishedScore(7.77, "XL/2", "Zhou, Ermon & Song 2025, Inductive Moment Matching"),
    "shortcut": PublishedScore(10.6, "DiT-XL/2", "Frans et al., ICLR 2025, One Step Diffusion via Shortcut Models"),
}

# A pair's verdict on digits (the first of the pair is ahead at scale) -> what it says about the field's order
PAIR_WORDS = {"better": "agrees", "worse": "disagrees", "tie": "cannot tell"}


def field_pairs(scores: Scores, plan: StudyPlan) -> dict[str, list[tuple[str, str]]]:
    """The pairs (ahead at scale, behind at scale) of the methods scored on digits at 1 step that have a
    published score, grouped by 'agrees', 'disagrees' and 'cannot tell'."""
    family = column(scores, "fd_digits", "digits", plan.methods, "own", plan.steps, 1)
    p = pair_p(family)
    groups: dict[str, list[tuple[str, str]]] = {word: [] for word in PAIR_WORDS.values()}
    for ahead, behind in combinations(in_both(family), 2):
        groups[PAIR_WORDS[verdict_in(family, p, ahead, behind)]].append((ahead, behind))
    return groups


def in_both(family: Column) -> list[str]:
    """The methods of ``family`` with a published score, best first at scale."""
    return sorted((m for m in family if m in FIELD_ONE_STEP), key=lambda m: FIELD_ONE_STEP[m].fid)


def digits_order_text(family: Column, methods: list[str]) -> str:
    """'iMF (84.28 ± 29.03) ≈ MeanFlow (103.21 ± 20.96) > shortcut (...)', best first by mean FD: '>' a
    significant gap to the next, '≈' a tie (Holm's correction over the pairs of ``family``)."""
    ranked = rank({m: family[m] for m in methods}, family)
    parts = []
    for m, mean, ahead in ranked:
        parts += [f"{method_title(m)} ({mean.text()})", ">" if ahead else "≈"]
    return " ".join(parts[:-1])


def field_order_lines(scores: Scores, plan: StudyPlan) -> list[str]:
    """The paragraph 'Against the field's order at scale' (nothing when fewer than two methods are in both)."""
    family = column(scores, "fd_digits", "digits", plan.methods, "own", plan.steps, 1)
    both = in_both(family)
    if len(both) < 2:
        return []
    groups = field_pairs(scores, plan)
    count = sum(map(len, groups.values()))
    field = ", ".join(f"{method_title(m)} {FIELD_ONE_STEP[m].fid:g}" for m in both)
    return [
        "",
        "**Against the field's order at scale.** At scale (one-step FID-50k on class-conditional ImageNet "
        f"256x256, each paper's largest network, best first): {field}. On digits (FD at 1 step, own recipes, "
        f"{plan.steps} training steps, best first; '>' a gap beyond seed noise, '≈' a tie): "
        f"{digits_order_text(family, both)}. Of the {count} pair{'s' if count > 1 else ''}, "
        + "; ".join(_pairs_text(word, pairs) for word, pairs in groups.items())
        + ". Only the order is compared: the data, the networks and the training lengths differ by orders of "
        "magnitude.",
    ]


def _pairs_text(word: str, pairs: list[tuple[str, str]]) -> str:
    """'1 disagrees (ESC ahead of IMM at scale, behind on digits)', each pair named."""
    verb = {"agrees": "agree", "disagrees": "disagree", "cannot tell": "cannot tell"}[word] if len(pairs) != 1 else word
    if not pairs:
        return f"0 {verb}"
    if word == "agrees":
        return (
            f"{len(pairs)} {verb} ("
            + ", ".join(f"{method_title(a)} ahead of {method_title(b)}" for a, b in pairs)
            + ")"
        )
    if word == "disagrees":
        named = [f"{method_title(a)} ahead of {method_title(b)} at scale, behind on digits" for a, b in pairs]
        return f"{len(pairs)} {verb} ({'; '.join(named)})"
    return (
        f"{len(pairs)} {verb}, tied on digits ("
        + ", ".join(f"{method_title(a)} and {method_title(b)}" for a, b in pairs)
        + ")"
    )
