"""Conformance tests for ``mosec.mpserver`` (a drop-in for mpservice 0.16's ``mpserver``).

The module under test is chosen by the ``MPSERVER_MODULE`` environment variable
(default ``mosec.mpserver``), so the same tests run against mpservice itself::

    MPSERVER_MODULE=mpservice.mpserver python -m pytest tests/mpserver --confcutdir=tests/mpserver

See ``docs/mpserver-contract.md`` for the contract these tests pin down.
"""
