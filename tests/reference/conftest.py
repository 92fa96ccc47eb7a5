"""The ``make_*.py`` scripts here need torch and captum or zennit (the ``bench`` extras, not
installed in CI): ``pytest --doctest-modules`` must not import them. The .npz files they write
are read by the tests (tests/test_conformance.py; the LRP and DeepLIFT references are for the
coming relevance rules, issue 17)."""

collect_ignore = ["make_captum_references.py", "make_captum_deeplift.py",
                  "make_zennit_references.py", "make_captum_layer_references.py"]
