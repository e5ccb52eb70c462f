"""Jobs run after the jobs they depend on, inline or in worker processes, with the same results."""

import pytest

from shortcut_models.experiments.jobs import run_jobs

# job -> the jobs it needs; "x" is not among the jobs (counts as done)
NEEDS = {1: [], 2: [1], 3: [2, 1], 4: [], 5: [4, "x"]}


@pytest.mark.parametrize("workers", [1, 2])
def test_dependencies_come_first_and_results_are_kept(workers):
    order = []
    results = run_jobs(
        [5, 3, 2, 1, 4],
        key=lambda j: j,
        needs=lambda j: NEEDS[j],
        work=abs,  # a module-level function, so worker processes can run it
        workers=workers,
        on_done=lambda j, r: order.append(j),
    )
    assert results == {j: j for j in NEEDS}
    for job, needed in NEEDS.items():
        assert all(order.index(n) < order.index(job) for n in needed if n in NEEDS)


def test_a_circle_is_refused_and_a_failure_is_raised():
    with pytest.raises(ValueError, match="circle"):
        run_jobs([1, 2], key=lambda j: j, needs=lambda j: [3 - j], work=abs)
    with pytest.raises(TypeError):
        run_jobs(["a"], key=lambda j: j, needs=lambda j: [], work=abs)
