"""Embedded AWS for the demo, the tests and the benchmarks. Never imported by the Lambda path."""

from start_engines.local.clock import ManualClock
from start_engines.local.emulator import Emulator
from start_engines.local.lifecycle import Lifecycle
from start_engines.local.provision import ENGINE_SPECS, Provisioned, provision

__all__ = ["ENGINE_SPECS", "Emulator", "Lifecycle", "ManualClock", "Provisioned", "provision"]
