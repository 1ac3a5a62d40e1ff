"""Shared pytest fixtures: the test PKI of tests/pki.py, generated once per session.

Kept import-light: nothing here imports the C extension.
"""

from __future__ import annotations

from pathlib import Path

import pytest

try:  # tests/ on sys.path (pytest's rootdir conftest handling)
    from pki import PKI, PKIPaths, build_pki
except ImportError:  # tests imported as a package
    from tests.pki import PKI, PKIPaths, build_pki

WOLFSSL_CREDS = Path(__file__).parent / "vectors" / "wolfssl" / "creds"


@pytest.fixture(scope="session")
def pki() -> PKI:
    """The test PKI: `pki.server`, `pki.client`, `pki.expired`, ... and `pki.ca_pem`."""
    return build_pki()


@pytest.fixture(scope="session")
def pki_paths(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> PKIPaths:
    """The test PKI as PEM files: `pki_paths.cafile`, `.certfile`, `.keyfile`,
    `pki_paths["client"].certfile`, ..."""
    return pki.write(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def wolfssl_creds() -> Path:
    """The directory of the wolfSSL interop credentials (server-ecc.pem, ca-ecc-cert.pem, ...)."""
    return WOLFSSL_CREDS
