"""A Solute/GetHead/GetTail/GetLen flow.

STAND-IN: mpservice's documented example (its Solute/GetHead/GetTail/GetLen flow and its
documented output) is not in the mpservice 0.16.8 wheel or sdist, nor in 0.10.0, 0.12.0,
0.14.0 or 0.15.0; it lives only in the project's online documentation, which cannot be
reached from here. This test keeps the names and the shape (ensemble of three getters,
joined by a last step; sync and async) with our own classes and the output they define.
Replace it by the documented example and its documented output once that text is at hand.
"""

from __future__ import annotations

import asyncio

from . import workers as w

T = 30

SOLUTES = [
    w.Solute("water", "H2O"),
    w.Solute("salt", ["Na", "Cl"]),
    w.Solute("sugar", "C12H22O11"),
]
EXPECTED = [
    "water: head=H tail=O len=3",
    "salt: head=Na tail=Cl len=2",
    "sugar: head=C tail=1 len=9",
]


def build(mp):
    return mp.SequentialServlet(
        mp.EnsembleServlet(
            mp.ThreadServlet(mp.PassThrough),
            mp.ProcessServlet(w.GetHead),
            mp.ProcessServlet(w.GetTail, cpus=2),
            mp.ThreadServlet(w.GetLen),
        ),
        mp.ThreadServlet(mp.make_worker(w.describe_solute)),
    )


def test_solute_flow(mp):
    with mp.Server(build(mp)) as server:
        assert server.call(SOLUTES[0], timeout=T) == EXPECTED[0]
        assert list(server.stream(SOLUTES, timeout=T)) == EXPECTED
        pairs = list(server.stream(SOLUTES, return_x=True, timeout=T))
        assert [p[0] for p in pairs] == SOLUTES


def test_solute_flow_async(mp):
    async def main():
        async def gen():
            for s in SOLUTES:
                yield s

        async with mp.AsyncServer(build(mp)) as server:
            one = await server.call(SOLUTES[1], timeout=T)
            many = [y async for y in server.stream(gen(), timeout=T)]
            return one, many

    one, many = asyncio.run(asyncio.wait_for(main(), 90))
    assert one == EXPECTED[1]
    assert many == EXPECTED
