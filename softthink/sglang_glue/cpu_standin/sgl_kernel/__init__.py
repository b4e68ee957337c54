"""Stand-in for `sgl_kernel` on CPU-only machines (docs/sglang.md, "The CPU path").

The PyPI `sglang-kernel` wheel is CUDA-only, yet SGLang 0.5.23 imports a few CPU kv-cache kernels at module level
(`sglang/kernels/ops/kvcache/cache_move.py`). On the CPU path the plugin uses (torch-native attention, pytorch
sampling, fp32) none of them is ever called: every layer takes SGLang's own `forward_native` torch code.

This module makes those imports succeed and nothing more: every attribute is a function that raises
`NotImplementedError` when called, so nothing can be computed by a fake. It is put on the path only by
`softthink.sglang_glue.cpu.cpu_env()`, and only when no real `sgl_kernel` is importable: it never shadows a real
install.
"""
STANDIN = True


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def _missing(*args, **kwargs):
        raise NotImplementedError(
            f"sgl_kernel.{name} was called, but this is softthink's CPU stand-in for sgl_kernel (no kernels). "
            "Install a real sgl-kernel build for this machine, or keep the CPU settings of softthink's "
            "SGLangEngine(device='cpu') (torch_native attention, pytorch sampling).")

    _missing.__name__ = name
    _missing.__qualname__ = name
    return _missing
