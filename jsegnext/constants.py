"""Conventions shared by the data, the loss and the metrics."""

#: Label value of the pixels no loss or metric counts (mmsegmentation's; a dataset may set its own
#: ``ignore_index``, which the trainer's loss and the evaluator then use).
IGNORE_INDEX = 255
