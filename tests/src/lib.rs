//! Black-box tests of the whole platform live in `tests/`.
