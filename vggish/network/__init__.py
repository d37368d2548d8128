"""The network and how it runs: the ``nn.Module`` (:mod:`.model`) and AudioSet's PCA
postprocessing (:mod:`.postprocess`); the per-layer algorithms of the CPU (:mod:`.plans`,
:mod:`.winograd`); the backends that compute it, PyTorch or ONNX Runtime (:mod:`.backends`,
:mod:`.onnx`); what users hold, a :class:`~.runtime.Runtime`, built by :func:`~.loader.load_model`;
and the CPUs and threads it may use (:mod:`.cpus`).
"""
