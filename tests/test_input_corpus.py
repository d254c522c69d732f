"""The fast subset of the damaged-input corpus (``tests/corpus.py``; the whole: ``python tests/corpus.py``).

Every case: refused with one line naming the damaged file (exit 2; with
--keep-going exit 1 and the rest as the clean reference), or accepted with
every BCD equal to the reference wherever its mask says nothing; never a
traceback, a hang, or a modified input.  Cases owned by the lead (stim
checks, per-DCE batching) are xfail until their fix is merged.
"""
from __future__ import annotations

import hashlib

import pytest
from astropy.io import fits

from tests import corpus


@pytest.fixture(scope="session")
def corpus_ctx(tmp_path_factory):
    """The clean folders (simulated once per session) and their reference products."""
    return corpus.build_context(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def corpus_cases(corpus_ctx):
    return {c.id: c for c in corpus.build_cases(corpus_ctx)}


def test_corpus_is_large_and_covers_both_readers(corpus_cases):
    cases = list(corpus_cases.values())
    assert len(cases) >= 300
    assert set(corpus.FAST_IDS) <= set(corpus_cases)
    for band in (70, 24):
        mine = [c for c in cases if c.band == band]
        assert any(c.expect == corpus.REFUSE for c in mine)
        assert any(c.expect == corpus.ACCEPT for c in mine)
        assert any(c.keep_going for c in mine)


@pytest.mark.parametrize("case_id", corpus.FAST_IDS)
def test_damaged_input(case_id, corpus_ctx, corpus_cases, tmp_path, request):
    case = corpus_cases[case_id]
    if case.xfail:
        request.applymarker(pytest.mark.xfail(reason=case.xfail, strict=False))
    ok, what = corpus.run_case(case, corpus_ctx, tmp_path)
    assert ok, f"{case_id}: {what}"


@pytest.mark.parametrize("band", [70, 24])
def test_every_product_carries_the_raw_files_sha1(corpus_ctx, tmp_path, band):
    clean = corpus_ctx[band]
    obs = tmp_path / "obs"
    corpus.shutil.copytree(clean.obs / "raw", obs / "raw")
    assert corpus.run_cli(["reprocess", str(obs)])[0] == 0
    products = sorted((obs / "bcd").glob("*.fits"))
    assert len(products) == 3 * len(clean.ref)
    for f in products:
        hdr = fits.getheader(f)
        raw = obs / "raw" / hdr["RAWFILE"]
        assert hdr["RAWSHA1"] == hashlib.sha1(raw.read_bytes()).hexdigest(), f.name
