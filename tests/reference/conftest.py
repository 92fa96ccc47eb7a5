"""``make_captum_references.py`` needs torch and captum (the ``bench`` extras, not installed in
CI): ``pytest --doctest-modules`` must not import it. The .npz files it writes are read by
tests/test_conformance.py."""

collect_ignore = ["make_captum_references.py"]
