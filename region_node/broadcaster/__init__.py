"""The broadcaster role: the region's merged replica streamed to viewers as smoothed, capped frames.

``config`` (BroadcasterConfig), ``smoother`` (EMA-capped deltas that never overshoot the truth), ``frames``
(frame building and per-subscriber queues with lossless coalescing), ``core`` (ticks, subscribers, resume),
``service`` (the Broadcast servicer).
"""
