"""A known load on every CUDA device, through the CUDA driver API alone (``libcuda.so.1``, which the NVIDIA
driver installs): no CUDA toolkit, no framework.

On each device CUDA sees (whole GPUs; a MIG instance only where ``CUDA_VISIBLE_DEVICES`` names it) it allocates
``memory_bytes`` and runs, back to back until stopped, a kernel that keeps every SM
busy with dependent single-precision FMAs (8 blocks of 256 threads per SM): the driver's utilization should read
about 100 %, GPM's SM activity high, its tensor activity about 0 (no tensor-core instruction), and memory in use
should rise by about the allocation plus the context. The kernel is PTX, compiled by the driver when loaded.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass, field

_PTX = rb"""
.version 6.0
.target sm_50
.address_size 64
.visible .entry spin(.param .u64 out, .param .u32 rounds)
{
    .reg .pred %p;
    .reg .b32 %r<4>;
    .reg .f32 %f<3>;
    .reg .b64 %rd<3>;
    ld.param.u32 %r1, [rounds];
    mov.u32 %r2, 0;
    mov.f32 %f1, 0f3F800000;
    mov.f32 %f2, 0f3F7FBE77;
LOOP:
    fma.rn.f32 %f1, %f1, %f2, 0f3F800000;
    add.u32 %r2, %r2, 1;
    setp.lt.u32 %p, %r2, %r1;
    @%p bra LOOP;
    ld.param.u64 %rd1, [out];
    cvta.to.global.u64 %rd2, %rd1;
    st.global.f32 [%rd2], %f1;
    ret;
}
"""
_SM_COUNT_ATTRIBUTE = 16  # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
_ROUNDS = 2_000_000  # FMAs per thread per launch: tens of milliseconds on a current GPU


class LoadUnavailable(Exception):
    """No CUDA driver here, or it refused: the check runs its idle phase only."""


@dataclass
class Load:
    """The load running on each device until ``stop``."""

    devices: int
    memory_bytes: int
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)


def _driver() -> ctypes.CDLL:
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA's device order is then NVML's
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        raise LoadUnavailable(f"no CUDA driver library (libcuda.so.1): {exc}") from exc
    return cuda


def _check(cuda: ctypes.CDLL, result: int, call: str) -> None:
    if result != 0:
        name = ctypes.c_char_p()
        cuda.cuGetErrorName(result, ctypes.byref(name))
        raise LoadUnavailable(f"{call} failed: {(name.value or b'').decode() or result}")


def start(memory_bytes: int = 2 * 1024**3) -> Load:
    """Start the load on every device CUDA sees; raises LoadUnavailable when there is none or no driver."""
    cuda = _driver()
    _check(cuda, cuda.cuInit(0), "cuInit")
    count = ctypes.c_int()
    _check(cuda, cuda.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    if count.value == 0:
        raise LoadUnavailable("CUDA sees no device")
    load = Load(count.value, memory_bytes)
    ready = threading.Barrier(count.value + 1, timeout=120)
    for ordinal in range(count.value):
        thread = threading.Thread(target=_run, args=(cuda, ordinal, load, ready), name=f"load-{ordinal}",
                                  daemon=True)
        thread.start()
        load.threads.append(thread)
    try:
        ready.wait()  # every device has its context, memory and module before the phase starts
    except threading.BrokenBarrierError as exc:
        load.stop()
        raise LoadUnavailable(f"the load did not start: {'; '.join(load.errors) or exc}") from exc
    return load


def _run(cuda: ctypes.CDLL, ordinal: int, load: Load, ready: threading.Barrier) -> None:
    """Set up one device, wait for the others, then launch until stopped; whatever was made is freed."""
    device, context, module, function = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    buffer, sms = ctypes.c_uint64(), ctypes.c_int()
    try:
        _check(cuda, cuda.cuDeviceGet(ctypes.byref(device), ordinal), "cuDeviceGet")
        _check(cuda, cuda.cuDeviceGetAttribute(ctypes.byref(sms), _SM_COUNT_ATTRIBUTE, device), "cuDeviceGetAttribute")
        _check(cuda, cuda.cuCtxCreate_v2(ctypes.byref(context), 0, device), "cuCtxCreate")
        _check(cuda, cuda.cuMemAlloc_v2(ctypes.byref(buffer), ctypes.c_size_t(load.memory_bytes)), "cuMemAlloc")
        _check(cuda, cuda.cuMemsetD8_v2(buffer, 1, ctypes.c_size_t(load.memory_bytes)), "cuMemsetD8")  # resident
        _check(cuda, cuda.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(_PTX)), "cuModuleLoadData")
        _check(cuda, cuda.cuModuleGetFunction(ctypes.byref(function), module, b"spin"), "cuModuleGetFunction")
        ready.wait()
        rounds = ctypes.c_uint32(_ROUNDS)
        parameters = (ctypes.c_void_p * 2)(ctypes.cast(ctypes.byref(buffer), ctypes.c_void_p),
                                           ctypes.cast(ctypes.byref(rounds), ctypes.c_void_p))
        while not load.stopping.is_set():
            _check(cuda, cuda.cuLaunchKernel(function, sms.value * 8, 1, 1, 256, 1, 1, 0, None, parameters, None),
                   "cuLaunchKernel")
            _check(cuda, cuda.cuCtxSynchronize(), "cuCtxSynchronize")
    except LoadUnavailable as exc:
        load.errors.append(f"device {ordinal}: {exc}")
        ready.abort()
    except threading.BrokenBarrierError:
        pass  # another device failed to start: its error says why
    finally:
        if buffer.value:
            cuda.cuMemFree_v2(buffer)
        if context.value:
            cuda.cuCtxDestroy_v2(context)
