"""``edgepack board``: start an emulated Cortex-M board that runs a model as edgepack's C program
with the serial firmware, for ``edgepack bench --device serial:PORT`` (mcu/cprog_board.py)."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from ..errors import DeviceError, ExitStatus, UsageError
from .options import number

CORES = ("cortex-m4", "cortex-m7", "cortex-m55")


def add(sub) -> None:
    """Add the command's parser to ``sub``."""
    b = sub.add_parser("board", help="start an emulated Cortex-M board serving a model over the serial protocol",
                       description="Generate MODEL's C program (an int8 .tflite), compile it with the serial firmware "
                                   "for the core, and run it on QEMU's board for that core (mps2-an386 for the M4, "
                                   "mps2-an500 for the M7, mps3-an547 for the M55) with its UART on a pseudo-terminal. "
                                   "Prints the --device to bench it with, then serves until interrupted (Ctrl-C) or "
                                   "--seconds pass. What the board reports is labelled emulated: its counts are "
                                   "instructions executed, not cycles or time (docs/serial-protocol.md).",
                       epilog="example:\n  edgepack board dist/cortex-m4/model_int8.tflite --core cortex-m4 &\n"
                              "  edgepack bench dist/cortex-m4/model_int8.tflite --target cortex-m4 --device serial:/dev/pts/3\n\n"
                              "exit status: 0 stopped; 2 bad model or core; 3 arm-none-eabi-gcc or qemu-system-arm missing; 5 the board stopped on its own.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("model", metavar="MODEL", help="an int8 .tflite (a bundle's model_int8.tflite)")
    b.add_argument("--core", choices=CORES, default="cortex-m4", help="the emulated core (default: cortex-m4)")
    b.add_argument("--seconds", type=number(0.0, 7 * 86400.0, lo_open=True), default=None, metavar="S",
                   help="stop after S seconds, at most a week (default: run until Ctrl-C)")
    b.set_defaults(func=_cmd_board)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _cmd_board(args: argparse.Namespace) -> int:
    from ..mcu.cprog_board import EmulatedBoard
    from ..measure.bench import read_artifact
    from ..measure.mcu_emulated import emulable_program

    data, fmt = read_artifact(args.model)
    path = Path(args.model)
    if fmt != "tflite":
        raise UsageError(f"{path}: the emulated board runs an int8 .tflite as edgepack's C program; pass model.tflite")
    program = emulable_program(data, str(path))
    signal.signal(signal.SIGTERM, _stop)  # `kill` stops it as Ctrl-C does: QEMU goes with it
    with EmulatedBoard(data, args.core, program=program) as board:
        print(f"emulated {args.core} (QEMU {board.machine}) serving {path.name} as edgepack's C program "
              f"(arena {program.arena_bytes:,} bytes) on {board.port}", flush=True)
        print(f"  bench it: edgepack bench {path} --target <profile> --device {board.device}", flush=True)
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        try:
            while deadline is None or time.monotonic() < deadline:
                if not board.running:
                    raise DeviceError(f"the emulated board stopped on its own: {board.said[-300:].strip()}")
                time.sleep(0.2)
        except KeyboardInterrupt:  # the usual way to stop it
            pass
    print("emulated board stopped", flush=True)
    return ExitStatus.OK
