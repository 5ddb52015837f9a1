"""Deployment builds of hdm's super-resolution generators: ONNX (:mod:`.to_onnx`; run by ONNX Runtime through
:class:`hdm.sr.onnx_runtime.OnnxSR`), ncnn (:mod:`.to_ncnn`: the Vulkan upscalers'
format), TensorRT engines (:mod:`.tensorrt_engine`) and their speed (:mod:`.speed`).
``hdm export --help``; the deployment recipes (build commands, a Triton template) are in the repository's
``export/`` folder."""
