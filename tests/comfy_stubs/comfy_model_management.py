"""Stand-in for the cancel part of ComfyUI's ``comfy.model_management`` (written for our tests).

Mirrors ComfyUI 0.3.64 (commit 637221995f7424a561bd825de3e61ea117dfe1e3): the interrupt flag
behind a lock, ``interrupt_current_processing`` (what ``/interrupt`` calls through
``nodes.interrupt_processing``), ``processing_interrupted``, and
``throw_exception_if_processing_interrupted``, which resets the flag as it raises
``InterruptProcessingException`` (execution reports that as ``execution_interrupted``).
Loaded as ``comfy.model_management``; none of the memory management is here.
"""

from __future__ import annotations

import threading


class InterruptProcessingException(Exception):
    pass


interrupt_processing_mutex = threading.RLock()

interrupt_processing = False


def interrupt_current_processing(value: bool = True) -> None:
    global interrupt_processing
    with interrupt_processing_mutex:
        interrupt_processing = value


def processing_interrupted() -> bool:
    with interrupt_processing_mutex:
        return interrupt_processing


def throw_exception_if_processing_interrupted() -> None:
    global interrupt_processing
    with interrupt_processing_mutex:
        if interrupt_processing:
            interrupt_processing = False
            raise InterruptProcessingException()
