"""Keras callbacks: SignalMonitor logs per-layer signals to TensorBoard during training;
LSUVInit runs LSUV when training starts."""
from .lsuv_init import LSUVInit
from .signal_monitor import FindingError, SignalMonitor

__all__ = ["SignalMonitor", "FindingError", "LSUVInit"]
