"""How many mutations share a transaction adapts to conflicts (worker/mutations.py ``GroupSize``)."""

from django_scheduled_actions.worker.mutations import MUTATIONS_PER_COMMIT, GroupSize


def test_each_conflict_halves_the_group_down_to_one_job():
    group = GroupSize()
    sizes = []
    for _ in range(6):
        group.conflicted()
        sizes.append(group.now)
    assert sizes == [8, 4, 2, 1, 1, 1]


def test_full_commits_grow_it_back_one_job_each_up_to_the_limit():
    group = GroupSize()
    group.conflicted(), group.conflicted()  # 4
    group.committed(4), group.committed(5)
    assert group.now == 6
    group.committed(2)  # fewer were waiting: no sign that more would commit together
    assert group.now == 6
    for _ in range(20):
        group.committed(group.now)
    assert group.now == MUTATIONS_PER_COMMIT


def test_from_one_job_a_commit_lets_two_share_the_next():
    group = GroupSize(most=16)
    for _ in range(4):
        group.conflicted()
    group.committed(1)
    assert group.now == 2
