"""LZ4 block codec (csrc/lz4block.c) for CSDAT columns."""

import numpy as np

MAX_INPUT: int

def compress(src: bytes | bytearray | memoryview | np.ndarray) -> bytearray: ...
def decompress(
    src: bytes | bytearray | memoryview | np.ndarray,
    dst: bytearray | memoryview | np.ndarray,
    what: str = "",
) -> None: ...
