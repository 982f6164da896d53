"""`governor train` says how each stage ended when it did not simply end on its last planned epoch."""

from governor.cli.train import stage_notes
from governor.runtime.training import StageOutcome


def test_a_stage_that_kept_an_earlier_epoch_or_needed_more_or_missed_its_floor_is_named():
    stages = (
        StageOutcome(k=1, epochs_run=5, kept_epoch=5, accuracy=None, floor=None),  # k = 1: no floor
        StageOutcome(k=2, epochs_run=5, kept_epoch=5, accuracy=0.93, floor=0.90),  # as planned: silent
        StageOutcome(k=3, epochs_run=5, kept_epoch=3, accuracy=0.95, floor=0.93),
        StageOutcome(k=4, epochs_run=7, kept_epoch=7, accuracy=0.96, floor=0.95),
        StageOutcome(k=5, epochs_run=10, kept_epoch=8, accuracy=0.94, floor=0.96),
    )
    notes = stage_notes(stages, epochs=5)
    assert notes == [
        "k=3: kept epoch 3 of 5 (95.00%, floor 93.00%); the later epochs scored lower on the validation split",
        "k=4: needed 7 epochs, 2 more than --epochs, to reach its floor 95.00% (96.00%)",
        "k=5: 94.00% after 10 epochs, below its floor 96.00% (k=4's): more groups are not more accurate there; "
        "train longer (--epochs)",
    ]
