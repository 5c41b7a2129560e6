"""Keras callbacks: SignalMonitor logs per-layer signals to TensorBoard during training."""
from .signal_monitor import FindingError, SignalMonitor

__all__ = ["SignalMonitor", "FindingError"]
