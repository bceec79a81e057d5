"""Three compiled stacks in one CLI: numpy (C, Fortran BLAS), cryptography (Rust, OpenSSL),
kiwisolver (C++)."""
