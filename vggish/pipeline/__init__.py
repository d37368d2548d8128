"""From inputs to results: the one source of examples (:mod:`.source`: any input -> decode ->
mono -> 16 kHz -> log-mel examples, in chunks, limits checked first), the one packer of examples
into model batches (:mod:`.packer`), the driver that runs sources through the packer and the
model to one result per input (:mod:`.driver`), and the options every surface shares
(:mod:`.options`).
"""
